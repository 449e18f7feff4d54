//! The notes: rows of a SQLite database (the C amalgamation rusqlite
//! bundles), each note's text kept compressed by libzstd (zstd-sys's C).

use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

/// zstd's default level: what `zstd` on the command line uses.
const LEVEL: i32 = 3;

/// A note as stored: its compressed bytes and its length before.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Stored {
    pub(crate) compressed: Vec<u8>,
    pub(crate) size: usize,
}

/// What failed: SQLite, or zstd.
#[derive(Debug)]
pub(crate) enum StoreError {
    Sqlite(rusqlite::Error),
    Zstd(std::io::Error),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Sqlite(e) => write!(f, "sqlite: {e}"),
            StoreError::Zstd(e) => write!(f, "zstd: {e}"),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        StoreError::Sqlite(e)
    }
}

/// One connection, shared: SQLite serialises writers anyway, and the
/// compression runs outside the lock.
pub(crate) struct Store {
    db: Mutex<Connection>,
}

impl Store {
    /// Opens (creating if need be) the database at `path`; `:memory:` is one
    /// that lives as long as the process.
    pub(crate) fn open(path: &str) -> Result<Store, StoreError> {
        let db = Connection::open(path)?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS notes (
                 id INTEGER PRIMARY KEY,
                 size INTEGER NOT NULL,
                 body BLOB NOT NULL
             )",
        )?;
        Ok(Store { db: Mutex::new(db) })
    }

    /// Stores a note; returns its id and what it was compressed to.
    pub(crate) fn add(&self, text: &[u8]) -> Result<(i64, Stored), StoreError> {
        let compressed = zstd::bulk::compress(text, LEVEL).map_err(StoreError::Zstd)?;
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        db.execute(
            "INSERT INTO notes (size, body) VALUES (?1, ?2)",
            params![text.len() as i64, compressed],
        )?;
        let stored = Stored {
            compressed,
            size: text.len(),
        };
        Ok((db.last_insert_rowid(), stored))
    }

    /// A note as stored, if there is one with this id.
    pub(crate) fn stored(&self, id: i64) -> Result<Option<Stored>, StoreError> {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let row = db
            .query_row(
                "SELECT size, body FROM notes WHERE id = ?1",
                params![id],
                |row| {
                    Ok(Stored {
                        size: row.get::<_, i64>(0)? as usize,
                        compressed: row.get(1)?,
                    })
                },
            )
            .optional()?;
        Ok(row)
    }

    /// A note's text, if there is one with this id.
    pub(crate) fn text(&self, id: i64) -> Result<Option<Vec<u8>>, StoreError> {
        match self.stored(id)? {
            Some(s) => Ok(Some(
                zstd::bulk::decompress(&s.compressed, s.size).map_err(StoreError::Zstd)?,
            )),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_is_stored_compressed_and_read_back() {
        let dir = std::env::temp_dir().join(format!("notes-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notes.db");
        let text = "scratch ".repeat(100);
        {
            let store = Store::open(path.to_str().unwrap()).unwrap();
            let (id, stored) = store.add(text.as_bytes()).unwrap();
            assert_eq!(id, 1);
            assert_eq!(stored.size, 800);
            // A zstd frame, and much smaller than the repeated text.
            assert_eq!(&stored.compressed[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
            assert!(stored.compressed.len() < 100, "{}", stored.compressed.len());
        }
        // The file outlives the connection.
        let store = Store::open(path.to_str().unwrap()).unwrap();
        assert_eq!(store.text(1).unwrap().unwrap(), text.as_bytes());
        assert_eq!(store.text(2).unwrap(), None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}

//! Image layers (image-spec "Image Layer Filesystem Changeset"): a
//! deterministic tar of an explicit entry list, written straight into the
//! pinned compressor of [`super::compress`] (the tar itself is never held
//! whole), with its `diff_id` and digest.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::compress::{Compression, Encoder};
use super::{Blob, Digest, tar};

/// What a layer entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind<'a> {
    Dir,
    File(&'a [u8]),
    /// A host file read while it is packed, so a large binary is never held
    /// whole; its bytes must still be the ones proven and hashed before.
    Streamed(Streamed<'a>),
}

/// A host file of known size and digest, streamed into the layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Streamed<'a> {
    pub path: &'a Path,
    pub size: u64,
    pub digest: &'a Digest,
}

/// One path in a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Relative, normalised path (no leading slash, no `.` or `..`).
    pub path: String,
    pub mode: u32,
    pub kind: EntryKind<'a>,
}

/// A compressed layer and the digest of its uncompressed tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub blob: Blob,
    pub diff_id: Digest,
    /// Size of the uncompressed tar.
    pub tar_size: u64,
}

/// Mode of the parent directories a layer adds on its own.
const PARENT_DIR_MODE: u32 = 0o755;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayerError {
    #[error("`{0}` is listed twice")]
    Duplicate(String),
    #[error("`{0}` is a file but another entry lies inside it")]
    FileAsParent(String),
    #[error("reading {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{0} changed while it was packed")]
    Changed(PathBuf),
}

impl Layer {
    /// Builds a layer from `entries` plus every missing parent directory.
    ///
    /// Entries are written byte-sorted by path, so a parent (a prefix) always
    /// precedes its children; `mtime` is the only time written.
    pub fn build(
        entries: Vec<Entry<'_>>,
        mtime: u64,
        compression: Compression,
    ) -> Result<Layer, LayerError> {
        let mut all: BTreeMap<String, Entry<'_>> = BTreeMap::new();
        for e in entries {
            if all.contains_key(&e.path) {
                return Err(LayerError::Duplicate(e.path));
            }
            all.insert(e.path.clone(), e);
        }
        let parents: Vec<String> = all
            .keys()
            .flat_map(|p| p.match_indices('/').map(move |(i, _)| p[..i].to_owned()))
            .collect();
        for parent in parents {
            match all.get(&parent) {
                Some(Entry {
                    kind: EntryKind::File(_) | EntryKind::Streamed(_),
                    ..
                }) => return Err(LayerError::FileAsParent(parent)),
                Some(_) => {}
                None => {
                    all.insert(
                        parent.clone(),
                        Entry {
                            path: parent,
                            mode: PARENT_DIR_MODE,
                            kind: EntryKind::Dir,
                        },
                    );
                }
            }
        }

        let mut out = Encoder::new(compression);
        for e in all.values() {
            let header = |size| tar::Header {
                path: &e.path,
                mode: e.mode,
                size,
                mtime,
                is_dir: e.kind == EntryKind::Dir,
            };
            match &e.kind {
                EntryKind::Dir => tar::append(&mut out, &header(0), &[]),
                EntryKind::File(data) => tar::append(&mut out, &header(data.len() as u64), data),
                EntryKind::Streamed(file) => {
                    tar::append_streamed(&mut out, &header(file.size), |out| stream(file, out))?;
                }
            }
        }
        tar::finish(&mut out);
        let done = out.finish();
        Ok(Layer {
            // The collector hashed the blob as it was made.
            blob: Blob {
                media_type: compression.media_type(),
                digest: done.digest,
                bytes: done.bytes,
            },
            diff_id: done.input_digest,
            tar_size: done.input_size,
        })
    }
}

/// Copies a streamed file into the tar, checking it is still the file that
/// was proven: the same size and the same sha256.
fn stream(file: &Streamed<'_>, out: &mut Encoder) -> Result<(), LayerError> {
    let read_err = |e: std::io::Error| LayerError::Read {
        path: file.path.to_owned(),
        reason: e.to_string(),
    };
    let f = std::fs::File::open(file.path).map_err(read_err)?;
    // One byte more than expected is read, to notice a file that grew.
    let mut limited = f.take(file.size + 1);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; STREAM_CHUNK];
    let mut total = 0u64;
    loop {
        let n = match limited.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        };
        total += n as u64;
        if total > file.size {
            return Err(LayerError::Changed(file.path.to_owned()));
        }
        // Hashed in line: sha256 is fast next to compression, and a join per
        // read would make every read wait for another thread to wake.
        hasher.update(&buf[..n]);
        out.write(&buf[..n]);
    }
    if total != file.size || Digest::from_hasher(hasher) != *file.digest {
        return Err(LayerError::Changed(file.path.to_owned()));
    }
    Ok(())
}

/// Reads a whole file and hashes it, the hashing of each chunk running on
/// another thread while the next chunk is read: a binary is proven and
/// hashed before it is packed, and this is the part of a build that no other
/// work can overlap.
pub fn read_hashed(path: &Path) -> std::io::Result<(Vec<u8>, Digest)> {
    let mut f = std::fs::File::open(path)?;
    let expected = f.metadata()?.len();
    if expected <= 4 * STREAM_CHUNK as u64 {
        // Too little to gain from a second thread.
        let mut bytes = Vec::with_capacity(expected as usize);
        f.read_to_end(&mut bytes)?;
        let digest = Digest::of(&bytes);
        return Ok((bytes, digest));
    }
    // The buffer is filled chunk by chunk; a file that grew meanwhile is
    // read on to its end after it, and hashed then.
    let mut bytes = vec![0u8; usize::try_from(expected).unwrap_or(usize::MAX)];
    let (tx, rx) = std::sync::mpsc::channel::<&[u8]>();
    let (filled, hasher) = std::thread::scope(|s| {
        let hashing = s.spawn(move || {
            let mut hasher = Sha256::new();
            for chunk in rx {
                hasher.update(chunk);
            }
            hasher
        });
        let mut filled = 0;
        let mut result = Ok(());
        'chunks: for chunk in bytes.chunks_mut(STREAM_CHUNK) {
            let mut at = 0;
            while at < chunk.len() {
                match f.read(&mut chunk[at..]) {
                    Ok(0) => break,
                    Ok(n) => at += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        result = Err(e);
                        break 'chunks;
                    }
                }
            }
            filled += at;
            let short = at < chunk.len();
            // The hashing thread ends only with its channel, so it is there.
            let _ = tx.send(&chunk[..at]);
            if short {
                break;
            }
        }
        drop(tx);
        let hasher = hashing
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        result.map(|()| (filled, hasher))
    })?;
    bytes.truncate(filled);
    let mut hasher = hasher;
    if filled as u64 == expected {
        let start = bytes.len();
        f.read_to_end(&mut bytes)?;
        hasher.update(&bytes[start..]);
    }
    Ok((bytes, Digest::from_hasher(hasher)))
}

/// How much of a streamed file is read at once.
const STREAM_CHUNK: usize = 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::compress::Pool;

    fn streamed_layer(
        path: &Path,
        size: u64,
        digest: &Digest,
        kind: Compression,
    ) -> Result<Layer, LayerError> {
        let entries = vec![Entry {
            path: "app".to_owned(),
            mode: 0o755,
            kind: EntryKind::Streamed(Streamed { path, size, digest }),
        }];
        Layer::build(entries, 0, kind)
    }

    /// Several megabytes of a real program's bytes: this test binary.
    fn program() -> Vec<u8> {
        let mut bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        bytes.truncate(9 << 20);
        bytes
    }

    #[test]
    fn a_streamed_file_is_the_same_layer_as_its_bytes_with_any_thread_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app");
        let bytes = program();
        std::fs::write(&path, &bytes).unwrap();
        let digest = Digest::of(&bytes);
        for &kind in crate::oci::compress::tests::kinds() {
            let in_memory = Layer::build(
                vec![Entry {
                    path: "app".to_owned(),
                    mode: 0o755,
                    kind: EntryKind::File(&bytes),
                }],
                0,
                kind,
            )
            .unwrap();
            for threads in [1, 2, 8] {
                let pool = Pool::new(threads);
                let layer = pool
                    .install(|| streamed_layer(&path, bytes.len() as u64, &digest, kind))
                    .unwrap();
                assert!(layer == in_memory, "{kind:?} with {threads} threads");
            }
        }
    }

    #[test]
    fn layers_failing_midway_leave_the_pool_whole() {
        // A binary that no longer matches its proof fails after megabytes
        // of blocks were sent; on a one-thread pool (four slots) a leaked
        // buffer or a stuck thread would stall the layers after it.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app");
        let bytes = program();
        std::fs::write(&path, &bytes).unwrap();
        let digest = Digest::of(&bytes);
        let wrong = Digest::of(b"other bytes");
        let pool = Pool::new(1);
        for &kind in crate::oci::compress::tests::kinds() {
            let want = streamed_layer(&path, bytes.len() as u64, &digest, kind).unwrap();
            pool.install(|| {
                for _ in 0..5 {
                    let err = streamed_layer(&path, bytes.len() as u64, &wrong, kind).unwrap_err();
                    assert_eq!(err, LayerError::Changed(path.clone()));
                }
                let layer = streamed_layer(&path, bytes.len() as u64, &digest, kind).unwrap();
                assert!(layer == want, "{kind:?}");
            });
        }
    }

    #[test]
    fn read_hashed_gives_the_bytes_and_their_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app");
        let bytes = program();
        for len in [
            0,
            1,
            STREAM_CHUNK - 1,
            STREAM_CHUNK,
            3 * STREAM_CHUNK + 5,
            bytes.len(),
        ] {
            std::fs::write(&path, &bytes[..len]).unwrap();
            let (read, digest) = read_hashed(&path).unwrap();
            assert!(read == bytes[..len], "length {len}");
            assert_eq!(digest, Digest::of(&bytes[..len]), "length {len}");
        }
        std::fs::remove_file(&path).unwrap();
        assert!(read_hashed(&path).is_err());
    }

    #[test]
    fn a_file_changed_since_its_proof_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app");
        std::fs::write(&path, b"proven bytes").unwrap();
        let digest = Digest::of(b"proven bytes");
        assert!(streamed_layer(&path, 12, &digest, Compression::Gzip).is_ok());
        for now in [&b"proven bytez"[..], b"proven bytes and more", b"proven"] {
            std::fs::write(&path, now).unwrap();
            let err = streamed_layer(&path, 12, &digest, Compression::Gzip).unwrap_err();
            assert_eq!(err, LayerError::Changed(path.clone()), "{now:?}");
        }
        std::fs::remove_file(&path).unwrap();
        let err = streamed_layer(&path, 12, &digest, Compression::Gzip).unwrap_err();
        assert!(matches!(err, LayerError::Read { .. }), "{err}");
    }
}

//! Writing results into the output directory so that readers only ever see a
//! complete old or a complete new version: everything is written under a
//! private temporary name, then renamed into place; a lock keeps two runs on
//! one output directory from interleaving their renames.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, RenameFlags, flock, renameat_with};

/// The directory inside the output directory that holds scratchpack's own
/// state: the lock, temporary files and cache records.
pub const STATE_DIR: &str = ".scratchpack";

/// An exclusive hold on an output directory, released on drop.
pub struct OutputLock {
    _file: File,
    pub dir: PathBuf,
}

impl OutputLock {
    /// Creates `dir` if needed and waits for any other run's lock on it.
    pub fn acquire(dir: &Path) -> std::io::Result<OutputLock> {
        let state = dir.join(STATE_DIR);
        std::fs::create_dir_all(state.join("tmp"))?;
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(state.join("lock"))?;
        flock(&file, FlockOperation::LockExclusive)?;
        // Whatever a killed run left behind is garbage now that we hold the lock.
        if let Ok(entries) = std::fs::read_dir(state.join("tmp")) {
            for e in entries.flatten() {
                let _ = remove_any(&e.path());
            }
        }
        Ok(OutputLock {
            _file: file,
            dir: dir.to_owned(),
        })
    }

    /// A fresh temporary path on the same filesystem as the outputs.
    pub fn temp_path(&self, name: &str) -> PathBuf {
        self.dir
            .join(STATE_DIR)
            .join("tmp")
            .join(format!("{name}.{}", std::process::id()))
    }

    /// Writes `bytes` to `dest` atomically.
    pub fn write_file(&self, dest: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let name = dest
            .file_name()
            .map_or_else(|| "file".to_owned(), |n| n.to_string_lossy().into_owned());
        let tmp = self.temp_path(&name);
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, dest)
    }

    /// Moves the directory `tmp` to `dest`, replacing any directory there in
    /// one atomic exchange, then deletes the old one.
    pub fn publish_dir(&self, tmp: &Path, dest: &Path) -> std::io::Result<()> {
        if std::fs::symlink_metadata(dest).is_err() {
            return std::fs::rename(tmp, dest);
        }
        match renameat_with(
            rustix::fs::CWD,
            tmp,
            rustix::fs::CWD,
            dest,
            RenameFlags::EXCHANGE,
        ) {
            Ok(()) => remove_any(tmp),
            // A filesystem without RENAME_EXCHANGE: move the old one aside
            // first. The window without `dest` is as short as two renames.
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {
                // Image names start with a letter or digit, so this
                // cannot be another image's staging directory.
                let old = self.temp_path(".old");
                std::fs::rename(dest, &old)?;
                std::fs::rename(tmp, dest)?;
                remove_any(&old)
            }
            Err(e) => Err(e.into()),
        }
    }
}

fn remove_any(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(_) => Ok(()),
    }
}

/// Creates `path` with `bytes` and flushes it to disk, so a rename that
/// follows never exposes a file whose data a crash could lose.
pub fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Writes `bytes` to `path` through a temporary file beside it, for outputs
/// outside an output directory (a report the user named).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let name = path
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.tmp.{}", std::process::id()));
    let result = write_synced(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes every file under a new directory `dir` (which must not exist).
pub fn write_tree<'a>(
    dir: &Path,
    files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (rel, bytes) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        write_synced(&path, bytes)?;
    }
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_replaces_a_directory_whole() {
        let root = tempfile::tempdir().unwrap();
        let lock = OutputLock::acquire(root.path()).unwrap();
        let dest = root.path().join("img");
        for generation in ["one", "two"] {
            let tmp = lock.temp_path("img");
            write_tree(&tmp, [("a/b", generation.as_bytes())]).unwrap();
            lock.publish_dir(&tmp, &dest).unwrap();
            assert_eq!(
                std::fs::read(dest.join("a/b")).unwrap(),
                generation.as_bytes()
            );
            assert!(!tmp.exists());
        }
        let left: Vec<_> = std::fs::read_dir(root.path().join(STATE_DIR).join("tmp"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "temporary files left behind: {left:?}");
    }
}

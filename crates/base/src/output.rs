//! Writing results into the output directory so that readers only ever see a
//! complete old or a complete new version: everything is written under a
//! private temporary name, then renamed into place; a lock keeps two runs on
//! one output directory from interleaving their renames.
//!
//! The tool replaces only what it wrote: each image name it publishes is
//! claimed first under `.scratchpack/owned/`, and a file or directory with an
//! image's name but no claim is the user's, refused by name. The state
//! directory is a cache, not a source of trust: a link anywhere in it is
//! refused, never followed or deleted through. Temporaries are removed on
//! every failure, a full disk included.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, RenameFlags, flock, renameat_with};

/// The directory inside the output directory that holds scratchpack's own
/// state: the lock, temporary files, ownership claims and cache records.
pub const STATE_DIR: &str = ".scratchpack";

/// Sub-directories of the state directory.
const STATE_SUBDIRS: [&str; 4] = ["tmp", "owned", "images", "tests"];

/// Why the output directory cannot be written as asked.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(
        "refusing to replace {0}: scratchpack did not write it (it has no claim in the output directory's {STATE_DIR}/owned); move or remove it, or choose another --out"
    )]
    NotOurs(PathBuf),
    #[error(
        "refusing to use {0}: it is a symlink, and scratchpack never follows or deletes through links in its state"
    )]
    StateLink(PathBuf),
    #[error(
        "refusing to write images into {path}: it is {what}; choose a dedicated directory with --out"
    )]
    BadOutDir { path: PathBuf, what: &'static str },
    #[error("preparing the output directory {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Refuses an output directory that is the file system root or the
/// workspace root: image names there collide with everything else.
pub fn check_out_dir(out_dir: &Path, workspace_root: &Path) -> Result<(), OutputError> {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    let out = canon(out_dir);
    let what = if out.parent().is_none() {
        Some("the file system root")
    } else if out == canon(workspace_root) {
        Some("the workspace root")
    } else {
        None
    };
    match what {
        Some(what) => Err(OutputError::BadOutDir {
            path: out_dir.to_owned(),
            what,
        }),
        None => Ok(()),
    }
}

/// Whether `<out>/<name>` and `<out>/<name>.tar` may be replaced: each is
/// absent, or was written by this tool (claimed, and a plain directory or
/// file, not a link). Only reads, so a run can ask before compiling.
pub fn check_replaceable(out_dir: &Path, name: &str) -> Result<(), OutputError> {
    let state = out_dir.join(STATE_DIR);
    let is_file = |p: PathBuf| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file());
    let claimed = is_file(state.join("owned").join(name))
        // Outputs of versions before claims existed have a build record.
        || is_file(state.join("images").join(format!("{name}.json")));
    for (path, want_dir) in [
        (out_dir.join(name), true),
        (out_dir.join(format!("{name}.tar")), false),
    ] {
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
            Ok(m) if claimed && !m.file_type().is_symlink() && m.is_dir() == want_dir => {}
            Ok(_) => return Err(OutputError::NotOurs(path)),
        }
    }
    Ok(())
}

/// Creates `dir` unless it is there; refuses it when it is a link.
fn real_dir(dir: &Path) -> Result<(), OutputError> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => Err(OutputError::StateLink(dir.to_owned())),
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(OutputError::Io {
            path: dir.to_owned(),
            source: std::io::Error::other("it exists and is not a directory"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir(dir).map_err(io_err(dir))
        }
        Err(e) => Err(io_err(dir)(e)),
    }
}

/// An exclusive hold on an output directory, released on drop.
pub struct OutputLock {
    _file: File,
    pub dir: PathBuf,
}

/// A temporary file or directory in the state directory, removed when
/// dropped unless it was published.
pub struct Temp(Option<PathBuf>);

impl Temp {
    pub fn path(&self) -> &Path {
        self.0
            .as_deref()
            .expect("a temporary is used only before publishing")
    }

    fn take(mut self) -> PathBuf {
        self.0.take().expect("published once")
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = remove_any(&p);
        }
    }
}

impl OutputLock {
    /// Creates `dir` if needed and waits for any other run's lock on it.
    pub fn acquire(dir: &Path) -> Result<OutputLock, OutputError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let state = dir.join(STATE_DIR);
        real_dir(&state)?;
        for sub in STATE_SUBDIRS {
            real_dir(&state.join(sub))?;
        }
        let lock_path = state.join("lock");
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(&lock_path)
                .map_err(|e| {
                    if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
                        OutputError::StateLink(lock_path.clone())
                    } else {
                        io_err(&lock_path)(e)
                    }
                })?
        };
        flock(&file, FlockOperation::LockExclusive).map_err(|e| io_err(&lock_path)(e.into()))?;
        // Whatever a killed run left behind is garbage now that we hold the
        // lock. `tmp` was checked to be a real directory above, and
        // `remove_any` unlinks links rather than following them.
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

    fn state(&self, sub: &str) -> PathBuf {
        self.dir.join(STATE_DIR).join(sub)
    }

    /// A fresh temporary path on the same filesystem as the outputs.
    pub fn temp_path(&self, name: &str) -> PathBuf {
        self.state("tmp")
            .join(format!("{name}.{}", std::process::id()))
    }

    /// A temporary path that is removed on drop unless published.
    pub fn temp(&self, name: &str) -> Temp {
        Temp(Some(self.temp_path(name)))
    }

    fn claim_path(&self, name: &str) -> PathBuf {
        self.state("owned").join(name)
    }

    /// See [`check_replaceable`]; under the lock, right before writing.
    pub fn check_replaceable(&self, name: &str) -> Result<(), OutputError> {
        check_replaceable(&self.dir, name)
    }

    /// Records that `name`'s outputs are this tool's to replace.
    pub fn claim(&self, name: &str) -> std::io::Result<()> {
        let path = self.claim_path(name);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
            return Ok(());
        }
        self.write_state(&path, format!("{name}\n{name}.tar\n").as_bytes())
    }

    /// Writes `bytes` to `dest` (in the state directory) atomically.
    pub fn write_state(&self, dest: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let name = dest
            .file_name()
            .map_or_else(|| "file".to_owned(), |n| n.to_string_lossy().into_owned());
        // `~` starts no image name, so this never meets an image's staging.
        let tmp = self.temp(&format!("~{name}"));
        write_synced(tmp.path(), bytes)?;
        std::fs::rename(tmp.take(), dest)
    }

    /// Moves the file `tmp` to `dest`.
    pub fn publish_file(&self, tmp: Temp, dest: &Path) -> std::io::Result<()> {
        std::fs::rename(tmp.path(), dest)?;
        tmp.take();
        Ok(())
    }

    /// Moves the directory `tmp` to `dest`, replacing any directory there in
    /// one atomic exchange, then deletes the old one.
    pub fn publish_dir(&self, tmp: Temp, dest: &Path) -> std::io::Result<()> {
        if std::fs::symlink_metadata(dest).is_err() {
            std::fs::rename(tmp.path(), dest)?;
            tmp.take();
            return Ok(());
        }
        match renameat_with(
            rustix::fs::CWD,
            tmp.path(),
            rustix::fs::CWD,
            dest,
            RenameFlags::EXCHANGE,
        ) {
            // The old directory is now at the temporary path, and the guard
            // deletes it.
            Ok(()) => Ok(()),
            // A filesystem without RENAME_EXCHANGE: move the old one aside
            // first. The window without `dest` is as short as two renames.
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {
                // Image names start with a letter or digit, so this
                // cannot be another image's staging directory.
                let old = self.temp(".old");
                std::fs::rename(dest, old.path())?;
                std::fs::rename(tmp.path(), dest)?;
                tmp.take();
                Ok(())
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
    // Unique per process and per call, so two threads writing the same
    // file never share a temporary one.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".{name}.tmp.{}.{n}", std::process::id()));
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
            let tmp = lock.temp("img");
            let tmp_path = tmp.path().to_owned();
            write_tree(&tmp_path, [("a/b", generation.as_bytes())]).unwrap();
            lock.publish_dir(tmp, &dest).unwrap();
            assert_eq!(
                std::fs::read(dest.join("a/b")).unwrap(),
                generation.as_bytes()
            );
            assert!(!tmp_path.exists());
        }
        let left: Vec<_> = std::fs::read_dir(root.path().join(STATE_DIR).join("tmp"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "temporary files left behind: {left:?}");
    }
}

//! Answers of other programs (a toolchain's versions, git's commit and
//! origin) kept on disk between runs, each under a stamp of everything the
//! answer depends on, so a run where none of that changed starts none of
//! them. A record is only a cache: one that is missing, unreadable or of
//! another stamp is asked again, and one that cannot be written only costs
//! the next run the same question.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The answer recorded at `path` under `stamp` (a record of
/// [`crate::record`], keyed by the stamp's digest), or else what `ask`
/// answers, recorded when it is `Ok`. With no stamp (what the answer depends
/// on is not known), `ask` answers and nothing is recorded.
pub fn remembered<T: Serialize + DeserializeOwned, E>(
    path: &Path,
    stamp: Option<&str>,
    ask: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    let Some(stamp) = stamp else {
        return ask();
    };
    let key = crate::digest::Digest::of(stamp.as_bytes()).to_string();
    if let Some(answer) = crate::record::lookup(path, &key) {
        return Ok(answer);
    }
    let answer = ask()?;
    let _ = crate::output::write_atomic(path, &crate::record::encode(&key, &answer));
    Ok(answer)
}

/// Where the answers are kept: in the target directory, beside the image
/// builds, in `memo`, the directory earlier versions kept them in, so an
/// upgrade keeps them.
pub fn dir(target_dir: &Path) -> PathBuf {
    target_dir.join("scratchpack").join("memo")
}

/// A stamp of a file that changes whenever the file is replaced or written:
/// its path, device, inode, size, modification time and change time (which
/// no one can set back, as `touch` can the modification time). `None` when
/// it cannot be read.
pub fn file_stamp(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    Some(format!(
        "{} {}:{} {} {}.{} {}.{}",
        path.display(),
        m.dev(),
        m.ino(),
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    ))
}

/// A stamp of the running program: records of what its own code worked out
/// (a proof, an object it wrote) are not trusted across a rebuild of it,
/// which may have changed that code without changing its version.
pub fn program_stamp() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| file_stamp(&p))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(asked: &mut u32, answer: &str) -> Result<String, ()> {
        *asked += 1;
        Ok(answer.to_owned())
    }

    #[test]
    fn an_answer_serves_until_its_stamp_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memo");
        let mut asked = 0;
        let mut at = |stamp, answer| remembered(&path, stamp, || ask(&mut asked, answer)).unwrap();
        assert_eq!(at(Some("a"), "one"), "one");
        assert_eq!(at(Some("a"), "two"), "one");
        assert_eq!(at(Some("b"), "three"), "three");
        assert_eq!(at(None, "four"), "four");
        assert_eq!(at(Some("b"), "five"), "three");
        assert_eq!(asked, 3);
    }

    #[test]
    fn a_failed_answer_is_not_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memo");
        assert_eq!(
            remembered::<String, _>(&path, Some("a"), || Err("no")),
            Err("no")
        );
        assert!(!path.exists());
        let two = || Ok::<_, ()>(("x\ny".to_owned(), Some(2)));
        assert_eq!(
            remembered(&path, Some("a"), two).unwrap(),
            ("x\ny".into(), Some(2))
        );
        let asked = remembered::<(String, Option<u8>), _>(&path, Some("a"), || Err(()));
        assert_eq!(asked.unwrap(), ("x\ny".into(), Some(2)));
    }

    #[test]
    fn a_damaged_record_is_asked_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memo");
        std::fs::write(&path, b"\xff\xfe not a record").unwrap();
        let ok = || Ok::<_, ()>("ok".to_owned());
        assert_eq!(remembered(&path, Some("a"), ok).unwrap(), "ok");
        let none = || Err::<String, _>(());
        assert_eq!(remembered(&path, Some("a"), none).unwrap(), "ok");
    }

    #[test]
    fn a_fifo_or_a_link_in_place_of_a_record_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memo");
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        // Nothing blocks on the FIFO: the answer is asked, then recorded in
        // its place.
        let ok = || Ok::<_, ()>("ok".to_owned());
        assert_eq!(remembered(&path, Some("a"), ok).unwrap(), "ok");
        assert!(path.is_file());
        let elsewhere = dir.path().join("elsewhere");
        std::fs::rename(&path, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        let asked = || Ok::<_, ()>("asked".to_owned());
        assert_eq!(remembered(&path, Some("a"), asked).unwrap(), "asked");
    }

    #[test]
    fn a_rewritten_file_stamps_anew() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "one").unwrap();
        let before = file_stamp(&file).unwrap();
        std::fs::write(&file, "three").unwrap();
        assert_ne!(file_stamp(&file).unwrap(), before);
        assert!(file_stamp(&dir.path().join("none")).is_none());
    }
}

//! Answers of other programs (a toolchain's versions, git's commit and
//! origin) kept on disk between runs, each under a stamp of everything the
//! answer depends on, so a run where none of that changed starts none of
//! them. A record is only a cache: one that is missing, unreadable or of
//! another stamp is asked again, and one that cannot be written only costs
//! the next run the same question.

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// The largest record read back.
const MAX_RECORD: u64 = 1024 * 1024;

/// The answer recorded at `path` under `stamp`, or else what `ask` answers
/// (recorded when it answers). With no stamp (what the answer depends on is
/// not known), `ask` answers and nothing is recorded.
pub fn remembered(
    path: &Path,
    stamp: Option<&str>,
    ask: impl FnOnce() -> Option<String>,
) -> Option<String> {
    let Some(stamp) = stamp else {
        return ask();
    };
    let key = crate::oci::hex(&Sha256::digest(stamp.as_bytes()));
    if let Some(answer) = read(path).and_then(|text| {
        let (k, answer) = text.split_once('\n')?;
        (k == key).then(|| answer.to_owned())
    }) {
        return Some(answer);
    }
    let answer = ask()?;
    let _ = crate::output::write_atomic(path, format!("{key}\n{answer}").as_bytes());
    Some(answer)
}

fn read(path: &Path) -> Option<String> {
    String::from_utf8(crate::cache::read_record(path, MAX_RECORD)?).ok()
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

/// A stamp of a small file's bytes (a missing file stamps as missing).
pub fn content_stamp(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => format!(
            "{} {}",
            path.display(),
            crate::oci::hex(&Sha256::digest(&bytes))
        ),
        Err(_) => format!("{} missing", path.display()),
    }
}

/// The directory rustup runs the current toolchain from, when this program
/// was started through rustup (cargo's proxy sets both variables) and no
/// `RUSTC` overrides the compiler.
pub fn rustup_toolchain() -> Option<PathBuf> {
    if std::env::var_os("RUSTC").is_some() {
        return None;
    }
    let home = std::env::var_os("RUSTUP_HOME")?;
    let toolchain = std::env::var_os("RUSTUP_TOOLCHAIN")?;
    let dir = Path::new(&home).join("toolchains").join(toolchain);
    dir.join("bin/rustc").is_file().then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_serves_until_its_stamp_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memo");
        let mut asked = 0;
        let mut ask = |answer: &str| {
            asked += 1;
            Some(answer.to_owned())
        };
        assert_eq!(remembered(&path, Some("a"), || ask("one")).unwrap(), "one");
        assert_eq!(remembered(&path, Some("a"), || ask("two")).unwrap(), "one");
        assert_eq!(
            remembered(&path, Some("b"), || ask("three")).unwrap(),
            "three"
        );
        assert_eq!(remembered(&path, None, || ask("four")).unwrap(), "four");
        assert_eq!(
            remembered(&path, Some("b"), || ask("five")).unwrap(),
            "three"
        );
        assert_eq!(asked, 3);
    }

    #[test]
    fn no_answer_is_not_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memo");
        assert_eq!(remembered(&path, Some("a"), || None), None);
        assert!(!path.exists());
        assert_eq!(
            remembered(&path, Some("a"), || Some("x\ny".into())).unwrap(),
            "x\ny"
        );
        assert_eq!(remembered(&path, Some("a"), || None).unwrap(), "x\ny");
    }

    #[test]
    fn a_damaged_record_is_asked_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memo");
        std::fs::write(&path, b"\xff\xfe not a record").unwrap();
        assert_eq!(
            remembered(&path, Some("a"), || Some("ok".into())).unwrap(),
            "ok"
        );
        assert_eq!(remembered(&path, Some("a"), || None).unwrap(), "ok");
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
        assert_eq!(
            remembered(&path, Some("a"), || Some("ok".into())).unwrap(),
            "ok"
        );
        assert!(path.is_file());
        let elsewhere = dir.path().join("elsewhere");
        std::fs::rename(&path, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        assert_eq!(
            remembered(&path, Some("a"), || Some("asked".into())).unwrap(),
            "asked"
        );
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
        let c = content_stamp(&file);
        std::fs::write(&file, "thre3").unwrap();
        assert_ne!(content_stamp(&file), c);
    }
}

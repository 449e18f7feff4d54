//! What rustc is asked: its version (`rustc -vV`, for action keys and for
//! the commit the `rust-src` remap names), its sysroot, and the targets it
//! knows.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::Env;
use super::answers;

/// The rustc of the environment (`RUSTC`), else the one on `PATH`.
pub fn program(env: &Env) -> OsString {
    env.var_os("RUSTC")
        .map_or_else(|| "rustc".into(), ToOwned::to_owned)
}

/// `rustc -vV` as run in `dir` (so a `rust-toolchain.toml` there applies):
/// the version, commit, host and LLVM version of the compiler.
pub fn verbose_version(env: &Env, dir: &Path) -> std::io::Result<String> {
    let out = Command::new(program(env))
        .arg("-vV")
        .current_dir(dir)
        .output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The toolchain's sysroot (`rustc --print sysroot` in `dir`), when rustc
/// answers.
pub fn sysroot(env: &Env, dir: &Path) -> Option<PathBuf> {
    Command::new(program(env))
        .args(["--print", "sysroot"])
        .current_dir(dir)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
}

/// The commit the toolchain in `sysroot` was built from, as `rustc -vV`
/// names it; `None` when it names none. Asked once per toolchain binary and
/// kept at `record` under a stamp of `sysroot`'s rustc, so a run that needs
/// it again starts no rustc.
pub fn commit(env: &Env, sysroot: &Path, record: &Path) -> Option<String> {
    let stamp = answers::file_stamp(&sysroot.join("bin/rustc"));
    answers::remembered(record, stamp.as_deref(), || {
        let out = Command::new(program(env))
            .arg("-vV")
            .output()
            .map_err(drop)?;
        let text = String::from_utf8_lossy(&out.stdout);
        let commit = text
            .lines()
            .find_map(|l| l.strip_prefix("commit-hash: "))
            .map(|c| c.trim().to_owned())
            .ok_or(())?;
        (out.status.success() && !commit.is_empty() && commit != "unknown")
            .then_some(commit)
            .ok_or(())
    })
    .ok()
}

/// rustc's cfg values for `triple` under `flags` (`rustc --print cfg` in
/// `dir`), one `name` or `name="value"` a line; none when rustc cannot be
/// asked, so that no `cfg(…)` table matches.
pub fn cfg(env: &Env, dir: &Path, triple: &str, flags: &[String]) -> Vec<String> {
    let out = Command::new(program(env))
        .args(["--print", "cfg", "--target", triple])
        .args(flags)
        .current_dir(dir)
        .output();
    match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect(),
        _ => Vec::new(),
    }
}

/// The targets `program` knows (`rustc --print target-list` in `dir`, so
/// the workspace's own toolchain answers); `None` when it cannot be asked.
pub fn target_list(program: &OsStr, dir: &Path) -> Option<BTreeSet<String>> {
    let out = Command::new(program)
        .args(["--print", "target-list"])
        .current_dir(dir)
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect()
    })
}

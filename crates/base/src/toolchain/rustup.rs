//! rustup: where it runs the current toolchain from, and installing the
//! standard library of a target that is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Env, rust_std, rustc};
use crate::shell::Shell;

#[derive(Debug, thiserror::Error)]
#[error("the Rust target {triple} is not installed and `rustup target add {triple}` failed{hint}")]
pub struct TargetError {
    pub triple: String,
    /// Why, or what to do about it.
    pub hint: String,
}

/// The directory rustup runs the current toolchain from, when this program
/// was started through rustup (cargo's proxy sets both variables) and no
/// `RUSTC` overrides the compiler.
pub fn toolchain_dir(env: &Env) -> Option<PathBuf> {
    if env.var_os("RUSTC").is_some() {
        return None;
    }
    let home = env.var_os("RUSTUP_HOME")?;
    let toolchain = env.var_os("RUSTUP_TOOLCHAIN")?;
    let dir = Path::new(home).join("toolchains").join(toolchain);
    dir.join("bin/rustc").is_file().then_some(dir)
}

/// Installs the standard library of each target with rustup when it is
/// missing; returns the toolchain's sysroot when it is known.
pub fn ensure_targets(
    env: &Env,
    workspace_root: &Path,
    triples: &[&str],
    shell: Shell,
) -> Result<Option<PathBuf>, TargetError> {
    // Under rustup, which names the toolchain it runs in the environment,
    // the toolchain's own directory answers without starting rustc, which
    // would cost a no-op run as much as cargo's freshness check.
    if let Some(s) = toolchain_dir(env)
        && triples
            .iter()
            .all(|t| s.join("lib/rustlib").join(t).is_dir())
    {
        return Ok(Some(s));
    }
    let sysroot = rustc::sysroot(env, workspace_root);
    for triple in triples {
        let installed = sysroot
            .as_ref()
            .is_some_and(|s| s.join("lib/rustlib").join(triple).is_dir());
        if installed {
            continue;
        }
        match (install_target(workspace_root, triple, shell), &sysroot) {
            (Ok(()), _) => {}
            // A mirror without the target's std (armv7, riscv64 and
            // ppc64le on some): it is built from the toolchain's sources.
            (Err(e), Some(sysroot)) if rust_std::can_build(triple) => {
                shell.warn(format!("{e}; building it from source instead"));
                rust_std::install(env, workspace_root, sysroot, triple, shell).map_err(|s| {
                    TargetError {
                        triple: (*triple).to_owned(),
                        hint: format!(", and {s}"),
                    }
                })?;
            }
            (Err(e), _) => return Err(e),
        }
    }
    Ok(sysroot)
}

fn install_target(workspace_root: &Path, triple: &str, shell: Shell) -> Result<(), TargetError> {
    shell.status(
        "Installing",
        format!("Rust target {triple} (rustup target add {triple})"),
    );
    let status = Command::new("rustup")
        .args(["target", "add", triple])
        .current_dir(workspace_root)
        .stdout(Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(TargetError {
            triple: triple.to_owned(),
            hint: format!(" ({s})"),
        }),
        Err(e) => Err(TargetError {
            triple: triple.to_owned(),
            hint: format!(": {e}; install rustup, or add the target's standard library by hand"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustups_toolchain_is_the_one_that_runs_unless_rustc_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let toolchain = dir.path().join("toolchains/stable-x");
        std::fs::create_dir_all(toolchain.join("bin")).unwrap();
        std::fs::write(toolchain.join("bin/rustc"), "").unwrap();
        let vars = [
            ("RUSTUP_HOME", dir.path().as_os_str()),
            ("RUSTUP_TOOLCHAIN", "stable-x".as_ref()),
        ];
        assert_eq!(toolchain_dir(&Env::from_vars(vars)), Some(toolchain));
        let named = vars
            .into_iter()
            .chain([("RUSTC", "/elsewhere/rustc".as_ref())]);
        assert_eq!(toolchain_dir(&Env::from_vars(named)), None);
        let other = [
            ("RUSTUP_HOME", dir.path().as_os_str()),
            ("RUSTUP_TOOLCHAIN", "nightly-x".as_ref()),
        ];
        assert_eq!(toolchain_dir(&Env::from_vars(other)), None);
    }
}

//! The versions of the rustc and cargo a workspace builds with, as
//! provenance records them.

use std::path::Path;
use std::process::Command;

use super::{Env, answers, rustup};

/// `rustc -V` and `cargo -V`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Toolchain {
    /// `rustc -V` output, e.g. `rustc 1.85.0 (4d91de4e4 2025-02-17)`.
    pub rustc: String,
    /// `cargo -V` output.
    pub cargo: String,
}

/// `rustc -V` and `cargo -V` as run in the workspace (so a
/// `rust-toolchain.toml` there is honoured). Under rustup, the answers are
/// kept in `answers_dir` under a stamp of the toolchain's two programs.
pub fn toolchain(
    env: &Env,
    workspace_root: &Path,
    answers_dir: &Path,
) -> std::io::Result<Toolchain> {
    let stamp = rustup::toolchain_dir(env).and_then(|dir| {
        let rustc = answers::file_stamp(&dir.join("bin/rustc"))?;
        let cargo = answers::file_stamp(&dir.join("bin/cargo"))?;
        Some(format!("{rustc}\n{cargo}"))
    });
    answers::remembered(&answers_dir.join("toolchain"), stamp.as_deref(), || {
        ask(workspace_root)
    })
}

fn ask(workspace_root: &Path) -> std::io::Result<Toolchain> {
    let version = |tool: &str| -> std::io::Result<String> {
        let out = Command::new(tool)
            .arg("-V")
            .current_dir(workspace_root)
            .output()?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!(
                "`{tool} -V` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    Ok(Toolchain {
        rustc: version("rustc")?,
        cargo: version("cargo")?,
    })
}

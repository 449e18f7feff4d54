//! What scratchpack reads of `cargo metadata --format-version 1`: workspace
//! members, their targets, features and dependencies; every package's
//! version, license and source. Only the fields used are declared; cargo's
//! documented format adds fields freely, and unknown ones are ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Env;
use super::cargo::CargoTarget;

/// The answer of `cargo metadata`.
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub packages: Vec<Package>,
    pub workspace_members: Vec<String>,
    pub workspace_root: PathBuf,
    pub target_directory: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Package {
    pub id: String,
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub license: Option<String>,
    /// `None` for a package on disk (a member or a path dependency).
    #[serde(default)]
    pub source: Option<String>,
    pub manifest_path: PathBuf,
    #[serde(default)]
    pub targets: Vec<CargoTarget>,
    #[serde(default)]
    pub features: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub dependencies: Vec<Dependency>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Dependency {
    pub name: String,
    #[serde(default)]
    pub rename: Option<String>,
    #[serde(default)]
    pub optional: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("running `cargo metadata`")]
    Spawn(#[source] std::io::Error),
    #[error("`cargo metadata` failed ({status}): {stderr}")]
    Failed { status: String, stderr: String },
    #[error("reading what `cargo metadata` printed")]
    Json(#[source] serde_json::Error),
}

impl Metadata {
    /// Runs `cargo metadata` in `dir`; with `no_deps`, only the workspace's
    /// own packages are described (and nothing is resolved or downloaded).
    /// Otherwise every package any feature of any member can reach is
    /// described (`--all-features`): without it cargo leaves out the optional
    /// dependencies only a non-default feature enables, which an image's
    /// `features` may well select.
    pub fn read(env: &Env, dir: &Path, no_deps: bool) -> Result<Metadata, MetadataError> {
        let mut cmd = super::cargo::command(env);
        cmd.current_dir(dir)
            .args(["metadata", "--format-version", "1"]);
        cmd.arg(if no_deps {
            "--no-deps"
        } else {
            "--all-features"
        });
        let out = cmd.output().map_err(MetadataError::Spawn)?;
        if !out.status.success() {
            return Err(MetadataError::Failed {
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        serde_json::from_slice(&out.stdout).map_err(MetadataError::Json)
    }

    /// The workspace's own packages, in the order cargo listed them.
    pub fn workspace_packages(&self) -> impl Iterator<Item = &Package> {
        self.packages
            .iter()
            .filter(|p| self.workspace_members.contains(&p.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_told_from_dependencies() {
        let json = r#"{
            "packages": [
                {"id": "path+file:///w/a#0.1.0", "name": "a", "version": "0.1.0", "license": null,
                 "source": null, "manifest_path": "/w/a/Cargo.toml",
                 "targets": [{"name": "a", "kind": ["bin"]}],
                 "features": {"fast": ["dep:x"]},
                 "dependencies": [{"name": "x", "rename": "y", "optional": true, "req": "^1"}]},
                {"id": "registry+https://github.com/rust-lang/crates.io-index#x@1.0.0", "name": "x",
                 "version": "1.0.0", "license": "MIT", "manifest_path": "/c/x/Cargo.toml",
                 "source": "registry+https://github.com/rust-lang/crates.io-index"}
            ],
            "workspace_members": ["path+file:///w/a#0.1.0"],
            "workspace_root": "/w",
            "target_directory": "/w/target",
            "version": 1
        }"#;
        let m: Metadata = serde_json::from_str(json).unwrap();
        let members: Vec<&str> = m.workspace_packages().map(|p| p.name.as_str()).collect();
        assert_eq!(members, ["a"]);
        let a = &m.packages[0];
        assert!(a.targets[0].is_bin());
        assert_eq!(a.dependencies[0].rename.as_deref(), Some("y"));
        assert!(a.dependencies[0].optional);
        assert_eq!(m.packages[1].license.as_deref(), Some("MIT"));
    }

    #[test]
    fn a_failing_cargo_metadata_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let e = Metadata::read(&Env::from_process(), dir.path(), true).unwrap_err();
        assert!(e.to_string().contains("could not find `Cargo.toml`"), "{e}");
    }
}

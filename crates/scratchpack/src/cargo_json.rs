//! What scratchpack reads of cargo's JSON: `cargo metadata --format-version
//! 1` (workspace members, their targets, features and dependencies; every
//! package's version, license and source) and the `compiler-artifact`
//! messages of `cargo build --message-format=json`. Only the fields used are
//! declared; cargo's documented format adds fields freely, and unknown ones
//! are ignored.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

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
    pub targets: Vec<Target>,
    #[serde(default)]
    pub features: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub dependencies: Vec<Dependency>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Target {
    pub name: String,
    #[serde(default)]
    pub kind: Vec<String>,
}

impl Target {
    pub fn is_bin(&self) -> bool {
        self.kind.iter().any(|k| k == "bin")
    }
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
    pub fn read(dir: &Path, no_deps: bool) -> Result<Metadata, MetadataError> {
        let mut cmd = Command::new(crate::compile::cargo());
        cmd.current_dir(dir)
            .args(["metadata", "--format-version", "1"]);
        if no_deps {
            cmd.arg("--no-deps");
        }
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

/// A binary `cargo build --message-format=json` reports having built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltBinary {
    pub manifest_path: PathBuf,
    pub name: String,
    pub executable: PathBuf,
}

/// The binaries among the messages of a `cargo build
/// --message-format=json` on `stdout`; lines that are not JSON messages, and
/// messages of other kinds, are passed over.
pub fn built_binaries(stdout: impl BufRead) -> Vec<BuiltBinary> {
    #[derive(Deserialize)]
    struct Message {
        reason: String,
        #[serde(default)]
        manifest_path: Option<PathBuf>,
        #[serde(default)]
        target: Option<Target>,
        #[serde(default)]
        executable: Option<PathBuf>,
    }
    stdout
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| serde_json::from_str::<Message>(&line).ok())
        .filter(|m| m.reason == "compiler-artifact")
        .filter_map(|m| {
            let target = m.target.filter(Target::is_bin)?;
            Some(BuiltBinary {
                manifest_path: m.manifest_path?,
                name: target.name,
                executable: m.executable?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_binary_artifacts_with_an_executable_are_taken() {
        let stdout = concat!(
            r#"{"reason":"compiler-artifact","manifest_path":"/w/a/Cargo.toml","target":{"name":"a","kind":["lib"]},"executable":null,"fresh":true}"#,
            "\n",
            "not json at all\n",
            r#"{"reason":"compiler-message","message":{}}"#,
            "\n",
            r#"{"reason":"compiler-artifact","manifest_path":"/w/a/Cargo.toml","target":{"name":"tool","kind":["bin"],"src_path":"/w/a/src/main.rs"},"executable":"/t/release/tool","fresh":false}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
            "\n",
        );
        let bins = built_binaries(stdout.as_bytes());
        assert_eq!(
            bins,
            [BuiltBinary {
                manifest_path: "/w/a/Cargo.toml".into(),
                name: "tool".into(),
                executable: "/t/release/tool".into(),
            }]
        );
    }

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
        let e = Metadata::read(dir.path(), true).unwrap_err();
        assert!(e.to_string().contains("could not find `Cargo.toml`"), "{e}");
    }
}

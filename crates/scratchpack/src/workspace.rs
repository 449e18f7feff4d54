//! What the workspace holds, from `cargo metadata`: its root, its target
//! directory, and the binaries each member package has.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The facts about a workspace that a manifest is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub root: PathBuf,
    pub target_dir: PathBuf,
    /// Member package name -> its binary targets, sorted.
    pub packages: BTreeMap<String, Vec<String>>,
    /// Member package name -> its `Cargo.toml`.
    pub manifests: BTreeMap<String, PathBuf>,
}

#[derive(Debug, thiserror::Error)]
#[error("reading the workspace with `cargo metadata` in {dir}")]
pub struct WorkspaceError {
    dir: PathBuf,
    #[source]
    source: cargo_metadata::Error,
}

impl Workspace {
    /// Reads the workspace that `dir` belongs to.
    pub fn load(dir: &Path) -> Result<Workspace, WorkspaceError> {
        let metadata = cargo_metadata::MetadataCommand::new()
            .current_dir(dir)
            .no_deps()
            .exec()
            .map_err(|source| WorkspaceError {
                dir: dir.to_owned(),
                source,
            })?;
        let mut packages = BTreeMap::new();
        let mut manifests = BTreeMap::new();
        for package in metadata.workspace_packages() {
            manifests.insert(
                package.name.to_string(),
                package.manifest_path.clone().into_std_path_buf(),
            );
            let mut bins: Vec<String> = package
                .targets
                .iter()
                .filter(|t| t.is_bin())
                .map(|t| t.name.clone())
                .collect();
            bins.sort();
            packages.insert(package.name.to_string(), bins);
        }
        Ok(Workspace {
            root: metadata.workspace_root.into_std_path_buf(),
            target_dir: metadata.target_directory.into_std_path_buf(),
            packages,
            manifests,
        })
    }
}

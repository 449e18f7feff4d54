//! What the workspace holds, from one `cargo metadata` call and its root
//! `Cargo.toml`: its root, its target directory, each member's binaries,
//! features and dependencies, its custom profiles, and (asked of rustc only
//! when a manifest overrides a target) the target triples rustc knows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The facts about a workspace that a manifest is checked against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workspace {
    pub root: PathBuf,
    pub target_dir: PathBuf,
    /// Member package name -> its binary targets, sorted.
    pub packages: BTreeMap<String, Vec<String>>,
    /// Member package name -> its `Cargo.toml`.
    pub manifests: BTreeMap<String, PathBuf>,
    /// Member package name -> the features it declares, the implicit features
    /// of its optional dependencies included.
    pub features: BTreeMap<String, BTreeSet<String>>,
    /// Member package name -> the names its dependencies go by in its
    /// `Cargo.toml` (renames applied).
    pub dependencies: BTreeMap<String, BTreeSet<String>>,
    /// The `[profile.*]` tables of the workspace's `Cargo.toml`, each with
    /// whether it says which profile it `inherits` (custom ones must).
    pub profiles: BTreeMap<String, bool>,
    /// The targets `rustc --print target-list` names; `None` inside when rustc
    /// could not be asked, so nothing is refused for want of an answer.
    pub target_list: OnceLock<Option<BTreeSet<String>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("reading the workspace with `cargo metadata` in {dir}")]
    Metadata {
        dir: PathBuf,
        #[source]
        source: cargo_metadata::Error,
    },
    #[error("reading the profiles of {path}")]
    Profiles {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Workspace {
    /// Reads the workspace that `dir` belongs to.
    pub fn load(dir: &Path) -> Result<Workspace, WorkspaceError> {
        let metadata = cargo_metadata::MetadataCommand::new()
            .current_dir(dir)
            .no_deps()
            .exec()
            .map_err(|source| WorkspaceError::Metadata {
                dir: dir.to_owned(),
                source,
            })?;
        let mut ws = Workspace {
            root: metadata.workspace_root.clone().into_std_path_buf(),
            target_dir: metadata.target_directory.clone().into_std_path_buf(),
            ..Workspace::default()
        };
        for package in metadata.workspace_packages() {
            let name = package.name.to_string();
            ws.manifests.insert(
                name.clone(),
                package.manifest_path.clone().into_std_path_buf(),
            );
            let mut bins: Vec<String> = package
                .targets
                .iter()
                .filter(|t| t.is_bin())
                .map(|t| t.name.clone())
                .collect();
            bins.sort();
            ws.packages.insert(name.clone(), bins);
            let mut features: BTreeSet<String> = package.features.keys().cloned().collect();
            // An optional dependency not named with `dep:` anywhere is a
            // feature of its own name.
            let explicit: BTreeSet<&str> = package
                .features
                .values()
                .flatten()
                .filter_map(|f| f.strip_prefix("dep:"))
                .collect();
            let mut deps = BTreeSet::new();
            for d in &package.dependencies {
                let dep_name = d.rename.clone().unwrap_or_else(|| d.name.clone());
                if d.optional && !explicit.contains(dep_name.as_str()) {
                    features.insert(dep_name.clone());
                }
                deps.insert(dep_name);
            }
            ws.features.insert(name.clone(), features);
            ws.dependencies.insert(name, deps);
        }
        let cargo_toml = ws.root.join("Cargo.toml");
        ws.profiles = read_profiles(&cargo_toml).map_err(|source| WorkspaceError::Profiles {
            path: cargo_toml.clone(),
            source,
        })?;
        Ok(ws)
    }

    /// The targets rustc knows, asked of the workspace's own toolchain (its
    /// `rust-toolchain.toml` applies) once, on first use.
    pub fn target_list(&self) -> Option<&BTreeSet<String>> {
        self.target_list
            .get_or_init(|| {
                let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
                let out = std::process::Command::new(rustc)
                    .args(["--print", "target-list"])
                    .current_dir(&self.root)
                    .output()
                    .ok()?;
                out.status.success().then(|| {
                    String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .map(|l| l.trim().to_owned())
                        .filter(|l| !l.is_empty())
                        .collect()
                })
            })
            .as_ref()
    }
}

/// The `[profile.*]` tables of a workspace's `Cargo.toml`, each with whether
/// it has an `inherits` key.
fn read_profiles(
    cargo_toml: &Path,
) -> Result<BTreeMap<String, bool>, Box<dyn std::error::Error + Send + Sync>> {
    let text = std::fs::read_to_string(cargo_toml)?;
    let table: toml::Table = toml::from_str(&text)?;
    Ok(table
        .get("profile")
        .and_then(|p| p.as_table())
        .map(|p| {
            p.iter()
                .map(|(name, t)| (name.clone(), t.get("inherits").is_some()))
                .collect()
        })
        .unwrap_or_default())
}

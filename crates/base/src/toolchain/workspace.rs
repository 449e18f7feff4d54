//! What the workspace holds, from one `cargo metadata` call and its root
//! `Cargo.toml`: its root, its target directory, each member's binaries,
//! features and dependencies, its custom profiles, and (asked of rustc only
//! when a manifest overrides a target) the target triples rustc knows.
//! Those facts are kept in a record beside the running program, with the
//! hashes and listings of everything `cargo metadata` read to find them, so a
//! run where none of that changed asks cargo nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::Env;
use super::metadata::{Metadata, MetadataError};

/// The facts about a workspace that a manifest is checked against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workspace {
    pub root: PathBuf,
    pub target_dir: PathBuf,
    /// Member package name -> its binary targets, sorted.
    pub packages: BTreeMap<String, Vec<String>>,
    /// Member package name -> its `Cargo.toml`.
    pub manifests: BTreeMap<String, PathBuf>,
    /// Member package name -> its version, as cargo resolved it (a version
    /// the workspace's `Cargo.toml` gives included).
    pub versions: BTreeMap<String, String>,
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
    /// The rustc that [`Workspace::target_list`] asks: the environment's
    /// `RUSTC`, else the one on `PATH`. Empty in a workspace made by hand,
    /// which can run no rustc.
    pub rustc: OsString,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("reading the workspace with `cargo metadata` in {dir}")]
    Metadata {
        dir: PathBuf,
        #[source]
        source: MetadataError,
    },
    #[error("reading the profiles of {path}")]
    Profiles {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Where the facts of a [`Workspace::load_cached`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `cargo metadata` was run.
    Metadata,
    /// The record of an earlier run still held: nothing it was made from changed.
    Record,
}

impl Workspace {
    /// Reads the workspace that `dir` belongs to, from its record in
    /// `record_dir` when everything the last `cargo metadata` call read is as
    /// it was then; otherwise as [`Workspace::load`] does. Keep the record
    /// with [`Kept::keep`] once the workspace has served (it then also holds
    /// the target list, if it was asked for).
    /// With `reuse` false the record is not read, only replaced.
    pub fn load_cached(
        env: &Env,
        dir: &Path,
        record_dir: &Path,
        reuse: bool,
    ) -> Result<(Workspace, Kept), WorkspaceError> {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
        let path = record_path(&dir, record_dir);
        let record = reuse.then(|| Record::read(&path)).flatten();
        if let Some((ws, inputs)) = record.and_then(|r| r.current(env, &dir)) {
            let had_list = ws.target_list.get().is_some();
            let kept = Kept {
                path,
                dir,
                inputs: Some(inputs),
                origin: Origin::Record,
                had_list,
            };
            return Ok((ws, kept));
        }
        let ws = Self::load(env, &dir)?;
        // Gathered right after cargo answered, so the record describes what
        // it read.
        let inputs = Inputs::gather(env, &dir, &ws);
        let kept = Kept {
            path,
            dir,
            inputs,
            origin: Origin::Metadata,
            had_list: false,
        };
        Ok((ws, kept))
    }

    /// Reads the workspace that `dir` belongs to.
    pub fn load(env: &Env, dir: &Path) -> Result<Workspace, WorkspaceError> {
        let metadata =
            Metadata::read(env, dir, true).map_err(|source| WorkspaceError::Metadata {
                dir: dir.to_owned(),
                source,
            })?;
        let mut ws = Workspace {
            root: metadata.workspace_root.clone(),
            target_dir: metadata.target_directory.clone(),
            rustc: super::rustc::program(env),
            ..Workspace::default()
        };
        for package in metadata.workspace_packages() {
            let name = package.name.to_string();
            ws.manifests
                .insert(name.clone(), package.manifest_path.clone());
            ws.versions.insert(name.clone(), package.version.clone());
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
            .get_or_init(|| super::rustc::target_list(&self.rustc, &self.root))
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

/// Where a [`Workspace::load_cached`] came from, and what its record needs.
#[derive(Debug)]
pub struct Kept {
    path: PathBuf,
    dir: PathBuf,
    inputs: Option<Inputs>,
    origin: Origin,
    had_list: bool,
}

impl Kept {
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// Writes the record when it is new or `ws` learnt the target list since.
    /// Best effort: a record that cannot be written only means the next run
    /// asks cargo again.
    pub fn keep(&self, ws: &Workspace) {
        let learnt = !self.had_list && ws.target_list.get().is_some();
        let Some(inputs) = &self.inputs else {
            return;
        };
        if self.origin == Origin::Record && !learnt {
            return;
        }
        let record = Record {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            dir: self.dir.clone(),
            inputs: inputs.clone(),
            facts: Facts::from(ws),
        };
        let (Some(parent), Ok(bytes)) = (self.path.parent(), serde_json::to_vec(&record)) else {
            return;
        };
        if std::fs::create_dir_all(parent).is_err() {
            return;
        }
        // Written aside and renamed, so a concurrent run reads the old record
        // or the new one, never part of one.
        let tmp = self
            .path
            .with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, bytes).is_err() || std::fs::rename(&tmp, &self.path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

/// The record of one directory's workspace: in a file named by a hash of the
/// directory, so each directory a program is run from has its own.
fn record_path(dir: &Path, record_dir: &Path) -> PathBuf {
    let hex = crate::digest::sha256_hex(dir.as_os_str().as_encoded_bytes());
    record_dir.join(format!("workspace-{}.json", &hex[..32]))
}

/// The largest record read back; a workspace of thousands of members fits.
const MAX_RECORD: u64 = 16 * 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    /// Records of another version of this crate are not read.
    version: String,
    dir: PathBuf,
    inputs: Inputs,
    facts: Facts,
}

impl Record {
    fn read(path: &Path) -> Option<Record> {
        use std::io::Read;
        let file = std::fs::File::open(path).ok()?;
        let mut bytes = Vec::new();
        file.take(MAX_RECORD).read_to_end(&mut bytes).ok()?;
        let record: Record = serde_json::from_slice(&bytes).ok()?;
        (record.version == env!("CARGO_PKG_VERSION")).then_some(record)
    }

    /// The workspace, if the record is of `dir` and nothing it was made from
    /// has changed.
    fn current(self, env: &Env, dir: &Path) -> Option<(Workspace, Inputs)> {
        if self.dir != dir {
            return None;
        }
        let ws = self.facts.into_workspace(super::rustc::program(env));
        let now = Inputs::gather(env, dir, &ws)?;
        (now == self.inputs).then_some((ws, now))
    }
}

/// Everything `cargo metadata --no-deps` reads to answer for a directory,
/// and what the record adds from rustc.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Inputs {
    /// Environment variables that move the target directory or change the
    /// toolchain, with their values.
    env: BTreeMap<String, Option<String>>,
    /// File -> sha256 of its bytes, or `None` when there is no such file:
    /// every member's `Cargo.toml`, the root's and its `Cargo.lock`, cargo's
    /// configuration and rustup's toolchain files from `dir` up to `/`.
    files: BTreeMap<PathBuf, Option<String>>,
    /// Directory -> its entries' names, or `None` when it is not there: what
    /// cargo lists to find members (the root's `members` globs) and binaries
    /// (each member's `src/bin`).
    dirs: BTreeMap<PathBuf, Option<BTreeSet<String>>>,
    /// Whether each member's `src/main.rs` is there.
    exists: BTreeMap<PathBuf, bool>,
}

/// Environment variables whose values are part of a record.
const ENV: [&str; 6] = [
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_HOME",
    "RUSTC",
    "RUSTUP_TOOLCHAIN",
    "CARGO",
];

impl Inputs {
    /// `None` when the workspace is one a record cannot describe (a member
    /// glob other than `*` and `?` wildcards).
    fn gather(env: &Env, dir: &Path, ws: &Workspace) -> Option<Inputs> {
        let mut inputs = Inputs {
            env: ENV
                .iter()
                .map(|k| ((*k).to_owned(), env.var(k).map(str::to_owned)))
                .collect(),
            files: BTreeMap::new(),
            dirs: BTreeMap::new(),
            exists: BTreeMap::new(),
        };
        let root_toml = ws.root.join("Cargo.toml");
        inputs.hash(&root_toml);
        inputs.hash(&ws.root.join("Cargo.lock"));
        for ancestor in dir.ancestors().chain(ws.root.ancestors()) {
            for name in [
                ".cargo/config.toml",
                ".cargo/config",
                "rust-toolchain.toml",
                "rust-toolchain",
            ] {
                inputs.hash(&ancestor.join(name));
            }
        }
        if let Some(home) = env.cargo_home() {
            inputs.hash(&home.join("config.toml"));
            inputs.hash(&home.join("config"));
        }
        for manifest in ws.manifests.values() {
            inputs.hash(manifest);
            let package = manifest.parent()?;
            inputs.list(&package.join("src/bin"));
            inputs.exists.insert(
                package.join("src/main.rs"),
                package.join("src/main.rs").is_file(),
            );
        }
        for pattern in member_globs(inputs.files.get(&root_toml)?.as_ref()?, &root_toml)? {
            inputs.expand(&ws.root, &pattern)?;
        }
        Some(inputs)
    }

    fn hash(&mut self, path: &Path) {
        if self.files.contains_key(path) {
            return;
        }
        let hash = std::fs::read(path)
            .ok()
            .map(|bytes| crate::digest::sha256_hex(&bytes));
        self.files.insert(path.to_owned(), hash);
    }

    fn list(&mut self, dir: &Path) -> Option<BTreeSet<String>> {
        let names: Option<BTreeSet<String>> = std::fs::read_dir(dir).ok().map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        });
        self.dirs.insert(dir.to_owned(), names.clone());
        names
    }

    /// Lists every directory a `members` glob is matched in, the way cargo
    /// walks it; `None` for a pattern this does not understand.
    fn expand(&mut self, root: &Path, pattern: &str) -> Option<()> {
        let mut dirs = vec![root.to_owned()];
        for component in pattern.split('/').filter(|c| !c.is_empty() && *c != ".") {
            if component.contains(['[', ']', '{', '}']) || component.contains("**") {
                return None;
            }
            if !component.contains(['*', '?']) {
                dirs = dirs.into_iter().map(|d| d.join(component)).collect();
                continue;
            }
            let mut next = Vec::new();
            for d in dirs {
                for name in self.list(&d).unwrap_or_default() {
                    if wildcard(component.as_bytes(), name.as_bytes()) {
                        next.push(d.join(name));
                    }
                }
            }
            dirs = next;
        }
        Some(())
    }
}

/// The `workspace.members` entries of the root `Cargo.toml` that are globs;
/// `None` when the file's text changed since it was hashed (it is read again
/// here) or cannot be read.
fn member_globs(hash: &str, root_toml: &Path) -> Option<Vec<String>> {
    let bytes = std::fs::read(root_toml).ok()?;
    let now = crate::digest::sha256_hex(&bytes);
    if now != hash {
        return None;
    }
    let table: toml::Table = toml::from_str(std::str::from_utf8(&bytes).ok()?).ok()?;
    let members = table
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(|m| m.as_array());
    Some(
        members
            .into_iter()
            .flatten()
            .filter_map(|m| m.as_str())
            .filter(|m| m.contains(['*', '?', '[', '{']))
            .map(str::to_owned)
            .collect(),
    )
}

/// Matches `name` against a glob component of `*` and `?` wildcards.
fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.split_first(), name.split_first()) {
        (None, None) => true,
        (Some((b'*', rest)), _) => {
            wildcard(rest, name)
                || name
                    .split_first()
                    .is_some_and(|(_, n)| wildcard(pattern, n))
        }
        (Some((b'?', rest)), Some((_, n))) => wildcard(rest, n),
        (Some((p, rest)), Some((c, n))) if p == c => wildcard(rest, n),
        _ => false,
    }
}

/// The facts of a [`Workspace`], as a record holds them.
#[derive(Debug, Serialize, Deserialize)]
struct Facts {
    root: PathBuf,
    target_dir: PathBuf,
    packages: BTreeMap<String, Vec<String>>,
    manifests: BTreeMap<String, PathBuf>,
    versions: BTreeMap<String, String>,
    features: BTreeMap<String, BTreeSet<String>>,
    dependencies: BTreeMap<String, BTreeSet<String>>,
    profiles: BTreeMap<String, bool>,
    /// Present when the run that wrote the record asked rustc.
    target_list: Option<Option<BTreeSet<String>>>,
}

impl From<&Workspace> for Facts {
    fn from(ws: &Workspace) -> Self {
        Facts {
            root: ws.root.clone(),
            target_dir: ws.target_dir.clone(),
            packages: ws.packages.clone(),
            manifests: ws.manifests.clone(),
            versions: ws.versions.clone(),
            features: ws.features.clone(),
            dependencies: ws.dependencies.clone(),
            profiles: ws.profiles.clone(),
            target_list: ws.target_list.get().cloned(),
        }
    }
}

impl Facts {
    fn into_workspace(self, rustc: OsString) -> Workspace {
        let ws = Workspace {
            root: self.root,
            target_dir: self.target_dir,
            packages: self.packages,
            manifests: self.manifests,
            versions: self.versions,
            features: self.features,
            dependencies: self.dependencies,
            profiles: self.profiles,
            target_list: OnceLock::new(),
            rustc,
        };
        if let Some(list) = self.target_list {
            let _ = ws.target_list.set(list);
        }
        ws
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn package(root: &Path, name: &str, extra: &str) {
        write(
            &root.join("crates").join(name).join("Cargo.toml"),
            &format!("[package]\nname = \"{name}\"\nedition = \"2021\"\n{extra}"),
        );
        write(
            &root.join("crates").join(name).join("src/main.rs"),
            "fn main() {}\n",
        );
    }

    fn env() -> Env {
        Env::from_process()
    }

    /// Loads through the record and keeps it, as the command line does.
    fn load(root: &Path, records: &Path) -> (Workspace, Origin) {
        let (ws, kept) = Workspace::load_cached(&env(), root, records, true).unwrap();
        kept.keep(&ws);
        (ws, kept.origin())
    }

    #[test]
    fn the_record_serves_until_an_input_of_cargo_metadata_changes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ws");
        let records = dir.path().join("records");
        write(
            &root.join("Cargo.toml"),
            "[workspace]\nresolver = \"2\"\nmembers = [\"crates/*\"]\n",
        );
        package(&root, "alpha", "");

        let (first, origin) = load(&root, &records);
        assert_eq!(origin, Origin::Metadata);
        assert_eq!(first.packages["alpha"], ["alpha"]);
        let (again, origin) = load(&root, &records);
        assert_eq!(origin, Origin::Record);
        assert_eq!(again, first);

        // A binary cargo finds by looking, with no Cargo.toml changed.
        write(
            &root.join("crates/alpha/src/bin/extra.rs"),
            "fn main() {}\n",
        );
        let (ws, origin) = load(&root, &records);
        assert_eq!(origin, Origin::Metadata);
        assert_eq!(ws.packages["alpha"], ["alpha", "extra"]);
        assert_eq!(load(&root, &records).1, Origin::Record);

        // A member the root's glob finds.
        package(&root, "beta", "");
        let (ws, origin) = load(&root, &records);
        assert_eq!(origin, Origin::Metadata);
        assert!(ws.packages.contains_key("beta"), "{ws:?}");

        // A member's Cargo.toml.
        package(&root, "beta", "[features]\nloud = []\n");
        let (ws, origin) = load(&root, &records);
        assert_eq!(origin, Origin::Metadata);
        assert!(ws.features["beta"].contains("loud"), "{ws:?}");

        // Cargo's configuration moves the target directory.
        write(
            &root.join(".cargo/config.toml"),
            "[build]\ntarget-dir = \"elsewhere\"\n",
        );
        let (ws, origin) = load(&root, &records);
        assert_eq!(origin, Origin::Metadata);
        assert_eq!(ws.target_dir, root.join("elsewhere"));

        // The root's profiles.
        let toml = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        write(
            &root.join("Cargo.toml"),
            &format!("{toml}[profile.dist]\ninherits = \"release\"\n"),
        );
        let (ws, origin) = load(&root, &records);
        assert_eq!(origin, Origin::Metadata);
        assert_eq!(ws.profiles.get("dist"), Some(&true));
        assert_eq!(load(&root, &records).1, Origin::Record);

        // Asked from inside a member, the same workspace has a record of its own.
        let (ws, origin) = load(&root.join("crates/alpha"), &records);
        assert_eq!(origin, Origin::Metadata);
        assert_eq!(ws.root, root);
    }

    #[test]
    fn the_record_keeps_the_target_list_once_asked() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ws");
        let records = dir.path().join("records");
        write(
            &root.join("Cargo.toml"),
            "[package]\nname = \"solo\"\nedition = \"2021\"\n",
        );
        write(&root.join("src/main.rs"), "fn main() {}\n");
        let (ws, kept) = Workspace::load_cached(&env(), &root, &records, true).unwrap();
        kept.keep(&ws);
        let (ws, kept) = Workspace::load_cached(&env(), &root, &records, true).unwrap();
        assert_eq!(kept.origin(), Origin::Record);
        assert!(ws.target_list.get().is_none());
        let list = ws.target_list().cloned();
        kept.keep(&ws);
        let (ws, kept) = Workspace::load_cached(&env(), &root, &records, true).unwrap();
        assert_eq!(kept.origin(), Origin::Record);
        assert_eq!(ws.target_list.get(), Some(&list));
        // Not reused when asked not to.
        let (_, kept) = Workspace::load_cached(&env(), &root, &records, false).unwrap();
        assert_eq!(kept.origin(), Origin::Metadata);
    }

    #[test]
    fn a_damaged_record_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ws");
        let records = dir.path().join("records");
        write(
            &root.join("Cargo.toml"),
            "[package]\nname = \"solo\"\nedition = \"2021\"\n",
        );
        write(&root.join("src/main.rs"), "fn main() {}\n");
        load(&root, &records);
        for entry in std::fs::read_dir(&records).unwrap() {
            std::fs::write(entry.unwrap().path(), b"{\"version\":").unwrap();
        }
        assert_eq!(load(&root, &records).1, Origin::Metadata);
        assert_eq!(load(&root, &records).1, Origin::Record);
    }

    #[test]
    fn member_globs_match_like_cargo() {
        assert!(wildcard(b"*", b"hello"));
        assert!(wildcard(b"svc-*", b"svc-a"));
        assert!(!wildcard(b"svc-*", b"lib-a"));
        assert!(wildcard(b"a?c", b"abc"));
        assert!(!wildcard(b"a?c", b"ac"));
        assert!(wildcard(b"*-*", b"x-y-z"));
    }
}

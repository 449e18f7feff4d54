//! The crates a binary links, from the build's own resolve: the crates
//! reached from a package through normal dependencies for a target triple
//! and feature selection (cargo's own resolver, through `cargo tree`), with
//! each one's license and source from `cargo metadata` and its checksum from
//! Cargo.lock. What cargo answers is kept in
//! `<target>/scratchpack/crate-trees/` and asked again only when Cargo.lock or
//! a manifest on disk changed. The SBOMs and the crate list embedded in each
//! binary are both made from these values.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::Env;
use super::metadata::Metadata;

/// Whose records of [`Packages`] are read back: this crate's version, and
/// after the slash how the answer was asked (2: `cargo metadata
/// --all-features`; 1 described only what default features reach).
const TOOL: &str = concat!("scratchpack-", env!("CARGO_PKG_VERSION"), "/2");

#[derive(Debug, thiserror::Error)]
pub enum CratesError {
    #[error("asking cargo metadata for the licenses and sources of the crates")]
    Metadata(#[source] super::metadata::MetadataError),
    #[error("resolving the crates of `{package}` for {triple} (cargo tree): {message}")]
    Tree {
        package: String,
        triple: String,
        message: String,
    },
    #[error("reading {}: {source}", path.display())]
    Lock {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("Cargo.lock is not valid TOML: {0}")]
    LockSyntax(String),
}

/// One crate linked into the binary.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Crate {
    pub name: String,
    pub version: String,
    /// The SPDX license expression from `Cargo.toml`, old `/` separators
    /// read as `OR`.
    pub license: Option<String>,
    /// Where cargo got it: `registry+https://...`, `git+...`, or none for a
    /// path dependency.
    pub source: Option<String>,
    /// The sha256 Cargo.lock records for a registry crate.
    pub checksum: Option<String>,
}

/// The crates of one binary and how they depend on each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedCrates {
    /// `name@version` of the image's package.
    pub root: String,
    /// By `name@version`.
    pub crates: BTreeMap<String, Crate>,
    /// `name@version` → the `name@version`s it depends on.
    pub edges: BTreeMap<String, BTreeSet<String>>,
}

/// The crates `package` links for `triple` with the image's feature
/// selection. Cargo's own feature resolver decides, through `cargo tree -e
/// normal` (the dependency graph, per package and target, with features as
/// that package's build activates them); `cargo metadata` resolves features
/// for the whole workspace at once, so a feature only a test or another
/// member enables would add crates this binary never links. Licenses and
/// sources come from `cargo metadata`, checksums from Cargo.lock.
///
/// One run asks cargo once per package, target and feature selection: every
/// image of a package on a platform links the same crates, and the SBOMs and
/// the crate list embedded in each binary both need them.
pub fn load(
    env: &Env,
    workspace_root: &Path,
    target_dir: &Path,
    package: &str,
    triple: &str,
    features: &[String],
    default_features: bool,
) -> Result<LinkedCrates, CratesError> {
    type Key = (std::path::PathBuf, String, String, Vec<String>, bool);
    static RESOLVED: std::sync::OnceLock<std::sync::Mutex<BTreeMap<Key, LinkedCrates>>> =
        std::sync::OnceLock::new();
    let key: Key = (
        workspace_root.to_owned(),
        package.to_owned(),
        triple.to_owned(),
        features.to_vec(),
        default_features,
    );
    let memo = RESOLVED.get_or_init(Default::default);
    if let Some(found) = memo.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(found);
    }
    let crates = resolve(
        env,
        workspace_root,
        target_dir,
        package,
        triple,
        features,
        default_features,
    )?;
    if let Ok(mut m) = memo.lock() {
        m.insert(key, crates.clone());
    }
    Ok(crates)
}

/// What an SBOM says of one package, as `cargo metadata` describes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Described {
    name: String,
    version: String,
    license: Option<String>,
    source: Option<String>,
    /// From Cargo.lock, for a registry package.
    checksum: Option<String>,
}

/// Every package of a workspace's resolve, as `cargo metadata` (with
/// dependencies) described them, and the manifests on disk it read: the
/// answer changes only with Cargo.lock (registry and git packages are
/// pinned there, and their manifests never change) and those manifests.
#[derive(Debug, Serialize, Deserialize)]
struct Packages {
    /// Records of another version of this crate are not read.
    tool: String,
    /// The digest of Cargo.lock the answer was given for.
    lock: String,
    /// Each manifest of a package on disk, and the workspace's root
    /// manifest (members inherit fields from it) -> the digest of its bytes.
    on_disk: BTreeMap<PathBuf, String>,
    packages: Vec<Described>,
}

/// The largest record of [`Packages`] read back.
const MAX_PACKAGES_RECORD: u64 = 64 * 1024 * 1024;

impl Packages {
    /// Asks `cargo metadata`, which also writes Cargo.lock when there is
    /// none yet; the lock is read after it answered.
    fn ask(env: &Env, workspace_root: &Path) -> Result<Packages, CratesError> {
        let metadata = Metadata::read(env, workspace_root, false).map_err(CratesError::Metadata)?;
        let lock = read_lock(workspace_root)?;
        let mut checksums = lock_checksums(&lock)?;
        let mut on_disk = BTreeMap::new();
        let root_manifest = metadata.workspace_root.join("Cargo.toml");
        for path in metadata
            .packages
            .iter()
            .filter(|p| p.source.is_none())
            .map(|p| &p.manifest_path)
            .chain([&root_manifest])
        {
            on_disk.insert(path.clone(), file_digest(path));
        }
        Ok(Packages {
            tool: TOOL.to_owned(),
            lock: crate::digest::sha256_hex(lock.as_bytes()),
            on_disk,
            packages: metadata
                .packages
                .into_iter()
                .map(|p| Described {
                    checksum: checksums.remove(&(p.name.clone(), p.version.clone())),
                    name: p.name,
                    version: p.version,
                    license: p.license,
                    source: p.source,
                })
                .collect(),
        })
    }

    /// The record at `path`, if it answers for the lock file whose digest is
    /// `lock` and no manifest it read has changed since.
    fn recorded(path: &Path, lock: &str) -> Option<Packages> {
        let bytes = crate::record::read_record(path, MAX_PACKAGES_RECORD)?;
        let known: Packages = serde_json::from_slice(&bytes).ok()?;
        let current = known.tool == TOOL && known.lock == lock && unchanged(&known.on_disk);
        current.then_some(known)
    }
}

/// Whether every file in `on_disk` still has the digest recorded for it.
fn unchanged(on_disk: &BTreeMap<PathBuf, String>) -> bool {
    on_disk
        .iter()
        .all(|(path, digest)| file_digest(path) == *digest)
}

/// The digest of a file's bytes; a file that cannot be read has the empty
/// string, which no digest equals, so a record naming it is not trusted.
fn file_digest(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| crate::digest::sha256_hex(&b))
        .unwrap_or_default()
}

/// The packages of the workspace at `workspace_root`, asked of cargo once
/// per run and kept in `target_dir` between runs (see [`Packages`]), so a
/// run where Cargo.lock and the manifests on disk are as they were asks
/// cargo nothing.
fn workspace_packages(
    env: &Env,
    workspace_root: &Path,
    target_dir: &Path,
) -> Result<Arc<Packages>, CratesError> {
    // No lock file yet: cargo metadata writes one.
    let lock = match std::fs::read(workspace_root.join("Cargo.lock")) {
        Ok(bytes) => crate::digest::sha256_hex(&bytes),
        Err(_) => String::new(),
    };
    type Known = BTreeMap<PathBuf, Arc<Packages>>;
    static KNOWN: std::sync::OnceLock<std::sync::Mutex<Known>> = std::sync::OnceLock::new();
    let known = KNOWN.get_or_init(Default::default);
    if let Some(m) = known
        .lock()
        .ok()
        .and_then(|k| k.get(workspace_root).cloned())
        .filter(|m| m.lock == lock)
    {
        return Ok(m);
    }
    let record = target_dir.join("scratchpack/crate-trees").join(format!(
        "packages-{}.json",
        &crate::digest::sha256_hex(workspace_root.as_os_str().as_encoded_bytes())[..32]
    ));
    let packages = match Packages::recorded(&record, &lock) {
        Some(p) => p,
        None => {
            let p = Packages::ask(env, workspace_root)?;
            if let Ok(bytes) = serde_json::to_vec(&p) {
                // Only a cache: a failed write costs one `cargo metadata` next time.
                let _ = crate::output::write_atomic(&record, &bytes);
            }
            p
        }
    };
    let packages = Arc::new(packages);
    if let Ok(mut k) = known.lock() {
        k.insert(workspace_root.to_owned(), Arc::clone(&packages));
    }
    Ok(packages)
}

/// The digest of Cargo.lock and of each manifest on disk (path packages and
/// the workspace's root manifest): everything besides the question that
/// what [`load`] answers depends on.
pub fn inputs(
    env: &Env,
    workspace_root: &Path,
    target_dir: &Path,
) -> Result<(String, BTreeMap<PathBuf, String>), CratesError> {
    let packages = workspace_packages(env, workspace_root, target_dir)?;
    Ok((packages.lock.clone(), packages.on_disk.clone()))
}

/// Whether Cargo.lock and every manifest in `on_disk` still have the
/// digests [`inputs`] gave.
pub fn inputs_unchanged(
    workspace_root: &Path,
    lock: &str,
    on_disk: &BTreeMap<PathBuf, String>,
) -> bool {
    file_digest(&workspace_root.join("Cargo.lock")) == lock && unchanged(on_disk)
}

fn resolve(
    env: &Env,
    workspace_root: &Path,
    target_dir: &Path,
    package: &str,
    triple: &str,
    features: &[String],
    default_features: bool,
) -> Result<LinkedCrates, CratesError> {
    let tree_err = |message: String| CratesError::Tree {
        package: package.to_owned(),
        triple: triple.to_owned(),
        message,
    };
    let packages = workspace_packages(env, workspace_root, target_dir)?;
    // What `cargo tree` answers depends on the lock file, the manifests of
    // the packages on disk (path dependencies can change features and
    // dependencies) and the question; the answer is kept under a digest of
    // those, so a run where none changed asks cargo nothing.
    let mut key = Sha256::new();
    for part in [
        packages.lock.as_str(),
        package,
        triple,
        &features.join(","),
        &default_features.to_string(),
    ] {
        key.update(part.as_bytes());
        key.update([0]);
    }
    for (path, digest) in &packages.on_disk {
        key.update(path.as_os_str().as_encoded_bytes());
        key.update([0]);
        key.update(digest.as_bytes());
        key.update([0]);
    }
    let kept = target_dir
        .join("scratchpack/crate-trees")
        .join(crate::digest::hex(&key.finalize()));
    let recorded = crate::record::read_record(&kept, MAX_PACKAGES_RECORD)
        .and_then(|b| String::from_utf8(b).ok());
    let tree = match recorded {
        Some(tree) => tree,
        None => {
            let tree = cargo_tree(
                env,
                workspace_root,
                package,
                triple,
                features,
                default_features,
            )
            .map_err(tree_err)?;
            // Only a cache: a failed write costs one `cargo tree` next time.
            let _ = crate::output::write_atomic(&kept, tree.as_bytes());
            tree
        }
    };
    from_tree(&tree, &packages.packages).map_err(tree_err)
}

/// `cargo tree -e normal` of `package` for `triple`: each linked crate as a
/// depth, a name and a version.
fn cargo_tree(
    env: &Env,
    workspace_root: &Path,
    package: &str,
    triple: &str,
    features: &[String],
    default_features: bool,
) -> Result<String, String> {
    let mut cmd = super::cargo::command(env);
    cmd.current_dir(workspace_root).args([
        "tree",
        "-e",
        "normal",
        "--prefix",
        "depth",
        "-f",
        "{p}",
        "--charset",
        "ascii",
        "--target",
        triple,
        "-p",
        package,
    ]);
    if !features.is_empty() {
        cmd.arg("--features").arg(features.join(","));
    }
    if !default_features {
        cmd.arg("--no-default-features");
    }
    let out = cmd.output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    String::from_utf8(out.stdout).map_err(|e| e.to_string())
}

/// Reads `cargo tree --prefix depth -f {p}` output: each line is a depth,
/// a name and a `v`-prefixed version; a line's parent is the closest line
/// above it one level shallower.
fn from_tree(tree: &str, described: &[Described]) -> Result<LinkedCrates, String> {
    let packages: BTreeMap<(String, String), &Described> = described
        .iter()
        .map(|p| ((p.name.clone(), p.version.clone()), p))
        .collect();
    let mut crates = BTreeMap::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack: Vec<String> = Vec::new();
    let mut root = None;
    for line in tree.lines().filter(|l| !l.trim().is_empty()) {
        let digits = line.bytes().take_while(u8::is_ascii_digit).count();
        let depth: usize = line[..digits]
            .parse()
            .map_err(|_| format!("unexpected cargo tree line `{line}`"))?;
        let mut words = line[digits..].split_whitespace();
        let (Some(name), Some(version)) = (words.next(), words.next()) else {
            return Err(format!("unexpected cargo tree line `{line}`"));
        };
        let version = version.trim_start_matches('v');
        let key = format!("{name}@{version}");
        if depth > stack.len() {
            return Err(format!("cargo tree line `{line}` skips a level"));
        }
        stack.truncate(depth);
        match stack.last() {
            Some(parent) => {
                edges.entry(parent.clone()).or_default().insert(key.clone());
            }
            None => root = Some(key.clone()),
        }
        edges.entry(key.clone()).or_default();
        stack.push(key.clone());
        let p = packages
            .get(&(name.to_owned(), version.to_owned()))
            .ok_or_else(|| format!("cargo tree names {key}, which cargo metadata does not know"))?;
        crates.entry(key).or_insert_with(|| Crate {
            checksum: p.checksum.clone(),
            name: name.to_owned(),
            version: version.to_owned(),
            license: p.license.as_deref().map(normalise_license),
            source: p.source.clone(),
        });
    }
    Ok(LinkedCrates {
        root: root.ok_or("cargo tree printed nothing")?,
        crates,
        edges,
    })
}

fn read_lock(workspace_root: &Path) -> Result<String, CratesError> {
    let path = workspace_root.join("Cargo.lock");
    std::fs::read_to_string(&path).map_err(|source| CratesError::Lock { path, source })
}

/// `(name, version)` → checksum for every registry package in Cargo.lock.
fn lock_checksums(lock: &str) -> Result<BTreeMap<(String, String), String>, CratesError> {
    #[derive(serde::Deserialize)]
    struct Lock {
        #[serde(default)]
        package: Vec<LockPackage>,
    }
    #[derive(serde::Deserialize)]
    struct LockPackage {
        name: String,
        version: String,
        checksum: Option<String>,
    }
    let lock: Lock = toml::from_str(lock).map_err(|e| CratesError::LockSyntax(e.to_string()))?;
    Ok(lock
        .package
        .into_iter()
        .filter_map(|p| Some(((p.name, p.version), p.checksum?)))
        .collect())
}

/// Cargo once allowed `MIT/Apache-2.0`; SPDX spells it `MIT OR Apache-2.0`.
fn normalise_license(license: &str) -> String {
    license
        .split('/')
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" OR ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A crate only a non-default feature reaches is described: the
    /// packages are asked of cargo with every feature on, the tree with the
    /// image's.
    #[test]
    fn a_crate_only_a_feature_reaches_is_described() {
        let dir = tempfile::tempdir().unwrap();
        let write = |path: &str, text: &str| {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write(
            "ws/Cargo.toml",
            "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
             [features]\nmore = [\"dep:extra\"]\n\
             [dependencies]\nextra = { path = \"../extra\", optional = true }\n",
        );
        write("ws/src/main.rs", "fn main() {}\n");
        // Outside the workspace's directory, so not a member of it.
        write(
            "extra/Cargo.toml",
            "[package]\nname = \"extra\"\nversion = \"0.1.0\"\nedition = \"2021\"\nlicense = \"MIT\"\n",
        );
        write("extra/src/lib.rs", "");
        let ws = dir.path().join("ws");
        let env = Env::from_process();
        let triple = "x86_64-unknown-linux-gnu";
        let with = load(
            &env,
            &ws,
            &ws.join("target"),
            "app",
            triple,
            &["more".into()],
            true,
        )
        .unwrap();
        assert_eq!(with.root, "app@0.1.0");
        assert_eq!(with.crates["extra@0.1.0"].license.as_deref(), Some("MIT"));
        assert!(with.edges["app@0.1.0"].contains("extra@0.1.0"));
        let without = load(&env, &ws, &ws.join("target"), "app", triple, &[], true).unwrap();
        assert_eq!(without.crates.keys().collect::<Vec<_>>(), ["app@0.1.0"]);
    }

    #[test]
    fn licenses_use_spdx_operators() {
        assert_eq!(normalise_license("MIT/Apache-2.0"), "MIT OR Apache-2.0");
        assert_eq!(normalise_license("MIT OR Apache-2.0"), "MIT OR Apache-2.0");
    }
}

//! Action keys: what an image's binary and image will be, known before
//! anything is compiled, so a shared cache can be asked for them (the way
//! Bazel keys an action by its inputs rather than by its outputs).
//!
//! A platform's key covers the tracked source files of the image's packages
//! (its own and those of its `binaries`) and of the workspace packages they
//! depend on by path, the workspace's
//! `Cargo.toml`, `Cargo.lock` and `.cargo/config.toml`, the resolved build
//! settings (profile, features, the image's rustflags, the caller's
//! `RUSTFLAGS` and cargo's `CARGO_*` build variables, the rustflags of
//! cargo's configuration files, the target triple and the linker), `rustc -vV`, the C compiler (zig's version, when zig
//! compiles C), the image's plan and the bytes of its files, the epoch, and
//! the format version of these keys. Files are named by their path
//! relative to the workspace root, never by where the checkout is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::manifest::{FileSource, ImagePlan, PlatformTarget};
use crate::oci::{Digest, canonical_json};
use crate::toolchain::cargo_config::CargoConfig;
use crate::toolchain::workspace::Workspace;
use crate::toolchain::{Env, git, rustc};

/// Bumped whenever what a key covers, or what a cache entry holds, changes.
pub const FORMAT_VERSION: u32 = 1;

/// Why a key could not be computed (the image is then built as usual).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("reading {path} for the action key")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("running `rustc -vV` for the action key")]
    Rustc(#[source] std::io::Error),
}

/// The keys of one image: one per platform, and the image's over them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageKey {
    pub image: String,
    pub platforms: Vec<String>,
}

impl ImageKey {
    /// The registry tag an image is cached under: `ak-` and 64 hex digits
    /// fit a tag's 128 characters.
    pub fn tag(&self) -> String {
        format!("ak-{}", self.image)
    }
}

/// Everything about the workspace and the toolchain a key is computed
/// against; source digests are computed once per package.
pub struct KeyContext {
    root: PathBuf,
    /// Member package -> its directory, relative to the root when inside it.
    package_dirs: BTreeMap<String, PathBuf>,
    dependencies: BTreeMap<String, BTreeSet<String>>,
    /// Files every key covers: the workspace's `Cargo.toml`, `Cargo.lock`,
    /// `.cargo/config.toml`, toolchain files (path -> digest).
    workspace_files: BTreeMap<String, Option<Digest>>,
    rustc: String,
    /// What compiles C, when anything does: zig and its version.
    c_compiler: Option<String>,
    /// The rustflags of cargo's configuration files, the workspace's and
    /// those above it and in cargo's home, which image builds apply.
    cargo_config: CargoConfig,
    /// The build variables of the environment that change what cargo builds.
    env: BTreeMap<String, String>,
    epoch: u64,
    version: String,
    /// Tracked files relative to the root, sorted; `None` outside git.
    tracked: Option<Vec<String>>,
    target_dir: PathBuf,
    sources: std::cell::RefCell<BTreeMap<String, BTreeMap<String, Digest>>>,
}

/// Files of the workspace root that shape every build.
const WORKSPACE_FILES: &[&str] = &[
    "Cargo.toml",
    "Cargo.lock",
    ".cargo/config.toml",
    ".cargo/config",
    "rust-toolchain.toml",
    "rust-toolchain",
];

impl KeyContext {
    /// Reads the workspace's own files, asks `rustc -vV` and lists the
    /// tracked files (`git ls-files`, else every file outside `target/`).
    pub fn new(ws: &Workspace, env: &Env, epoch: u64) -> Result<KeyContext, KeyError> {
        let rustc = rustc::verbose_version(env, &ws.root).map_err(KeyError::Rustc)?;
        KeyContext::with(ws, rustc, env, epoch)
    }

    /// [`KeyContext::new`] with the toolchain's answer given (the test
    /// seam).
    pub fn with(
        ws: &Workspace,
        rustc: String,
        env: &Env,
        epoch: u64,
    ) -> Result<KeyContext, KeyError> {
        let root = ws.root.clone();
        let package_dirs = ws
            .manifests
            .iter()
            .map(|(name, manifest)| {
                let dir = manifest.parent().unwrap_or(Path::new(""));
                let rel = dir.strip_prefix(&root).unwrap_or(dir);
                (name.clone(), rel.to_owned())
            })
            .collect();
        let mut workspace_files = BTreeMap::new();
        for name in WORKSPACE_FILES {
            workspace_files.insert((*name).to_owned(), file_digest(&root.join(name))?);
        }
        Ok(KeyContext {
            tracked: git::ls_files(&root),
            root,
            package_dirs,
            dependencies: ws.dependencies.clone(),
            workspace_files,
            rustc,
            c_compiler: None,
            cargo_config: CargoConfig::read(env, &ws.root),
            env: env.build_variables(),
            epoch,
            version: format!("{}/{FORMAT_VERSION}", env!("CARGO_PKG_VERSION")),
            target_dir: ws.target_dir.clone(),
            sources: Default::default(),
        })
    }

    /// The context with what compiles C for image builds (the compiler's
    /// description, `None` when nothing does).
    pub fn compiling_c_with(self, c_compiler: Option<String>) -> KeyContext {
        KeyContext { c_compiler, ..self }
    }

    /// The package and every workspace package it depends on, directly or
    /// not: cargo builds path dependencies from their sources, so their
    /// files are inputs; registry dependencies are pinned by `Cargo.lock`.
    fn closure(&self, package: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![package.to_owned()];
        while let Some(p) = todo.pop() {
            if !seen.insert(p.clone()) {
                continue;
            }
            for dep in self.dependencies.get(&p).into_iter().flatten() {
                if self.package_dirs.contains_key(dep) {
                    todo.push(dep.clone());
                }
            }
        }
        seen
    }

    /// Path -> digest of every tracked file in the package's directory.
    fn package_sources(&self, package: &str) -> Result<BTreeMap<String, Digest>, KeyError> {
        if let Some(done) = self.sources.borrow().get(package) {
            return Ok(done.clone());
        }
        let dir = self.package_dirs.get(package).cloned().unwrap_or_default();
        let files: Vec<String> = match &self.tracked {
            Some(tracked) => tracked
                .iter()
                .filter(|f| dir.as_os_str().is_empty() || Path::new(f).starts_with(&dir))
                .cloned()
                .collect(),
            None => {
                let mut found = Vec::new();
                walk(
                    &self.root,
                    &self.root.join(&dir),
                    &self.target_dir,
                    &mut found,
                );
                found.sort();
                found
            }
        };
        let mut out = BTreeMap::new();
        for f in files {
            // A tracked file deleted from the work tree is not built from.
            if let Some(d) = file_digest(&self.root.join(&f))? {
                out.insert(f, d);
            }
        }
        self.sources
            .borrow_mut()
            .insert(package.to_owned(), out.clone());
        Ok(out)
    }

    /// The key of one platform of `image`; `files` are the bytes of the
    /// image's files in plan order.
    fn platform_key(
        &self,
        image: &ImagePlan,
        target: &PlatformTarget,
        files: &[Digest],
    ) -> Result<String, KeyError> {
        let mut sources = BTreeMap::new();
        let packages =
            std::iter::once(&image.package).chain(image.binaries.iter().map(|b| &b.package));
        for package in packages {
            for p in self.closure(package) {
                sources.extend(self.package_sources(&p)?);
            }
        }
        let mut plan = serde_json::to_value(image).expect("plans serialize");
        if let Some(obj) = plan.as_object_mut() {
            // Each platform's key names only its own target; the name is
            // left out (and the tags, which only name it) so two images with
            // one definition share an entry.
            obj.remove("targets");
            obj.remove("name");
            obj.remove("tags");
        }
        if let Some(files) = plan.get_mut("files").and_then(|f| f.as_array_mut()) {
            for f in files {
                if let Some(f) = f.as_object_mut() {
                    f.remove("src");
                }
            }
        }
        #[derive(Serialize)]
        struct Inputs<'a> {
            version: &'a str,
            sources: BTreeMap<String, Digest>,
            workspace_files: &'a BTreeMap<String, Option<Digest>>,
            rustc: &'a str,
            // Left out when nothing compiles C, so that pure-Rust keys are
            // what they were.
            #[serde(skip_serializing_if = "Option::is_none")]
            c_compiler: Option<&'a str>,
            cargo_config: &'a CargoConfig,
            env: &'a BTreeMap<String, String>,
            platform: String,
            triple: &'a str,
            linker: &'static str,
            triple_flags: &'static [&'static str],
            plan: serde_json::Value,
            files: &'a [Digest],
            epoch: u64,
        }
        let inputs = Inputs {
            version: &self.version,
            sources,
            workspace_files: &self.workspace_files,
            rustc: &self.rustc,
            c_compiler: self.c_compiler.as_deref(),
            cargo_config: &self.cargo_config,
            env: &self.env,
            platform: target.platform.to_string(),
            triple: &target.triple,
            linker: if crate::compile::is_foreign(&target.triple) {
                "rust-lld"
            } else {
                "default"
            },
            triple_flags: crate::compile::triple_rustflags(&target.triple),
            plan,
            files,
            epoch: self.epoch,
        };
        Ok(crate::digest::sha256_hex(&canonical_json(&inputs)))
    }

    /// The keys of every platform of `image`, and the image's key over them.
    pub fn image_key(&self, image: &ImagePlan) -> Result<ImageKey, KeyError> {
        let mut files = Vec::new();
        for f in &image.files {
            files.push(match &f.src {
                FileSource::Host(path) => {
                    let bytes = std::fs::read(path).map_err(|source| KeyError::Read {
                        path: path.clone(),
                        source,
                    })?;
                    Digest::of(&bytes)
                }
                FileSource::Generated(bytes) => Digest::of(bytes),
            });
        }
        let platforms = image
            .targets
            .iter()
            .map(|t| self.platform_key(image, t, &files))
            .collect::<Result<Vec<_>, _>>()?;
        let mut h = Sha256::new();
        h.update(self.version.as_bytes());
        for p in &platforms {
            h.update([0]);
            h.update(p.as_bytes());
        }
        Ok(ImageKey {
            image: crate::digest::hex(&h.finalize()),
            platforms,
        })
    }
}

/// A file's digest (a symlink's is that of its target's name, as git
/// tracks it), or `None` when there is no such file.
fn file_digest(path: &Path) -> Result<Option<Digest>, KeyError> {
    let err = |source| KeyError::Read {
        path: path.to_owned(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err(e)),
        Ok(m) if m.is_symlink() => {
            let target = std::fs::read_link(path).map_err(err)?;
            let mut bytes = b"link:".to_vec();
            bytes.extend(target.as_os_str().as_encoded_bytes());
            Ok(Some(Digest::of(&bytes)))
        }
        Ok(m) if m.is_file() => Ok(Some(Digest::of(&std::fs::read(path).map_err(err)?))),
        // A submodule or a directory where a file was tracked.
        Ok(_) => Ok(None),
    }
}

/// Every file under `dir` (relative to `root`), skipping `target`
/// directories, the target directory wherever it is, and `.git`.
fn walk(root: &Path, dir: &Path, target_dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() {
            let name = e.file_name();
            if name == "target" || name == ".git" || path == target_dir {
                continue;
            }
            walk(root, &path, target_dir, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
}

#[cfg(test)]
#[path = "action_key_tests.rs"]
mod tests;

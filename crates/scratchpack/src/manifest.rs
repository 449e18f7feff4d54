//! `images.toml`: the raw TOML as written (with spans), and its one-time
//! resolution against the workspace into a validated [`Plan`].
//!
//! Nothing downstream re-checks what this module checked: a `Plan` holds only
//! valid, fully defaulted values.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::diagnostic::{Diagnostic, SourceErrors};
use crate::platform::Platform;
use crate::workspace::Workspace;

pub const FILE_NAME: &str = "images.toml";

/// The default user: a non-root uid and gid, as distroless's `nonroot`.
pub const DEFAULT_USER: User = User {
    uid: 65532,
    gid: 65532,
};

// ---------------------------------------------------------------------------
// Raw: exactly what the TOML says.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    pub defaults: Option<Spanned<RawImage>>,
    #[serde(default)]
    pub images: BTreeMap<Spanned<String>, Spanned<RawImage>>,
}

/// One image table, or the `[defaults]` table (which may not name a package,
/// binary, binary path or entrypoint).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawImage {
    pub package: Option<Spanned<String>>,
    pub bin: Option<Spanned<String>>,
    pub platforms: Option<Spanned<Vec<Spanned<String>>>>,
    pub targets: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    pub rustflags: Option<Vec<String>>,
    pub profile: Option<Spanned<String>>,
    pub features: Option<Vec<String>>,
    pub default_features: Option<bool>,
    pub entrypoint: Option<Spanned<Vec<String>>>,
    pub binary_path: Option<Spanned<String>>,
    pub cmd: Option<Spanned<Vec<String>>>,
    pub env: Option<BTreeMap<Spanned<String>, String>>,
    pub user: Option<Spanned<String>>,
    pub workdir: Option<Spanned<String>>,
    pub labels: Option<BTreeMap<String, String>>,
    pub annotations: Option<BTreeMap<String, String>>,
    pub ports: Option<Vec<Spanned<String>>>,
    pub stop_signal: Option<Spanned<String>>,
    pub files: Option<Vec<Spanned<RawFile>>>,
    pub dirs: Option<Vec<Spanned<RawDir>>>,
    pub tags: Option<Vec<Spanned<String>>>,
    pub registry: Option<Spanned<String>>,
    pub repository: Option<Spanned<String>>,
    pub insecure: Option<bool>,
    pub tests: Option<BTreeMap<Spanned<String>, Spanned<RawTest>>>,
    /// Bounds on unpacking the image for its tests; keys left out keep the
    /// defaults (per key, the image's over [defaults]).
    pub unpack_limits: Option<RawUnpackLimits>,
    /// Whether a test that cannot run on this host (no emulator for its
    /// platform) fails `test-images` instead of being skipped.
    pub require_all_platforms: Option<bool>,
}

/// `unpack-limits = { max-bytes = …, max-entries = …, max-depth = …,
/// max-name-bytes = … }`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawUnpackLimits {
    pub max_bytes: Option<u64>,
    pub max_entries: Option<u64>,
    pub max_depth: Option<u64>,
    pub max_name_bytes: Option<u64>,
}

/// How an image's tests are run, beyond the tests themselves.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct TestSettings {
    /// The image's and [defaults]' keys merged, image first.
    pub unpack_limits: RawUnpackLimits,
    pub require_all_platforms: bool,
}

/// One named image test: a command to run, structure to check, or both.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawTest {
    pub args: Option<Vec<String>>,
    pub env: Option<BTreeMap<Spanned<String>, String>>,
    pub stdin: Option<String>,
    /// Seconds; fractions allowed.
    pub timeout: Option<Spanned<f64>>,
    pub user: Option<Spanned<String>>,
    pub workdir: Option<Spanned<String>>,
    pub exit_code: Option<Spanned<i32>>,
    pub stdout: Option<RawOutput>,
    pub stderr: Option<RawOutput>,
    /// `false` runs the command without the sandbox's seccomp filter.
    pub seccomp: Option<bool>,
    pub files: Option<Vec<Spanned<RawFileCheck>>>,
    pub absent: Option<Vec<Spanned<String>>>,
    pub config: Option<RawConfigCheck>,
}

/// Expectations on one output stream.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawOutput {
    pub equals: Option<String>,
    pub contains: Option<Vec<String>>,
    pub regex: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFileCheck {
    pub path: Spanned<String>,
    pub mode: Option<Spanned<RawMode>>,
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
}

/// Expected values in the image config; keys left out are not checked.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawConfigCheck {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub user: Option<Spanned<String>>,
    pub workdir: Option<Spanned<String>>,
    /// Variables that must be set to these values (others may be set too).
    pub env: Option<BTreeMap<String, String>>,
    pub ports: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    pub src: Spanned<String>,
    pub dst: Spanned<String>,
    pub mode: Option<Spanned<RawMode>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDir {
    pub path: Spanned<String>,
    pub mode: Option<Spanned<RawMode>>,
}

/// A mode as TOML can write it: `0o644` or `"0644"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawMode {
    Int(i64),
    Str(String),
}

// ---------------------------------------------------------------------------
// Plan: validated, defaulted, ready to build.

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub workspace_root: PathBuf,
    pub target_dir: PathBuf,
    pub images: Vec<ImagePlan>,
    /// Each image's test settings, by image name.
    pub test_settings: BTreeMap<String, TestSettings>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImagePlan {
    pub name: String,
    pub package: String,
    pub bin: String,
    /// One entry per platform, in the order images.toml lists them.
    pub targets: Vec<PlatformTarget>,
    pub build: BuildSettings,
    pub binary_path: ImagePath,
    pub files: Vec<FileEntry>,
    pub dirs: Vec<DirEntry>,
    pub config: RunConfig,
    pub annotations: BTreeMap<String, String>,
    pub tags: Vec<String>,
    /// Where `push` sends the image, when a registry is configured. Not part
    /// of what is built, so left out of the image's cache key.
    #[serde(skip)]
    pub push: Option<PushTarget>,
    /// Tests do not shape the image either; each has its own cache key.
    #[serde(skip)]
    pub tests: Vec<TestPlan>,
}

/// `registry/repository`, and whether plain HTTP is allowed for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushTarget {
    pub registry: String,
    pub repository: String,
    pub insecure: bool,
}

/// One image test, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestPlan {
    pub name: String,
    pub command: Option<CommandTest>,
    pub structure: Option<StructureTest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandTest {
    /// Replaces the image's `cmd` when given (appended to the entrypoint).
    pub args: Option<Vec<String>>,
    /// Added to (and overriding) the image's env.
    pub env: BTreeMap<String, String>,
    pub stdin: Option<String>,
    pub timeout_ms: u64,
    pub user: Option<User>,
    pub workdir: Option<ImagePath>,
    pub exit_code: i32,
    pub stdout: OutputExpect,
    pub stderr: OutputExpect,
    /// Whether the sandbox's seccomp filter is on (the default).
    pub seccomp: bool,
}

/// Default wall-time limit of a command test, in milliseconds.
pub const DEFAULT_TEST_TIMEOUT_MS: u64 = 10_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OutputExpect {
    pub equals: Option<String>,
    pub contains: Vec<String>,
    /// A pattern already checked to compile with `regex_lite`.
    pub regex: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StructureTest {
    pub files: Vec<FileCheck>,
    pub absent: Vec<ImagePath>,
    pub config: ConfigCheck,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileCheck {
    pub path: ImagePath,
    pub mode: Option<u32>,
    pub kind: Option<FileKind>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    File,
    Dir,
    Symlink,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConfigCheck {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub user: Option<User>,
    pub workdir: Option<ImagePath>,
    pub env: BTreeMap<String, String>,
    pub ports: Option<BTreeSet<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlatformTarget {
    pub platform: Platform,
    pub triple: String,
}

/// How the binary is compiled; images that share these and a triple share one
/// cargo invocation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct BuildSettings {
    pub profile: String,
    pub rustflags: Vec<String>,
    pub features: Vec<String>,
    pub default_features: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileEntry {
    /// Absolute path on the host, inside the workspace.
    pub src: PathBuf,
    pub dst: ImagePath,
    pub mode: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirEntry {
    pub path: ImagePath,
    pub mode: u32,
}

/// What the image config tells a runtime (image-spec `config` object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub user: User,
    pub workdir: ImagePath,
    pub labels: BTreeMap<String, String>,
    /// `port/proto`, e.g. `8080/tcp`.
    pub exposed_ports: BTreeSet<String>,
    pub stop_signal: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
}

impl std::fmt::Display for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

/// An absolute, normalised path inside an image: starts with `/`, has no `.`,
/// `..` or empty components, no trailing slash (except the root itself).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ImagePath(String);

impl ImagePath {
    pub fn parse(s: &str) -> Result<ImagePath, &'static str> {
        if !s.starts_with('/') {
            return Err("is relative; paths in the image are absolute");
        }
        if s.contains('\0') {
            return Err("contains a NUL byte");
        }
        let mut parts = Vec::new();
        for part in s.split('/').filter(|p| !p.is_empty()) {
            match part {
                "." => {}
                ".." => return Err("contains `..`; paths may not climb out of their parent"),
                _ => parts.push(part),
            }
        }
        Ok(ImagePath(format!("/{}", parts.join("/"))))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form used inside a layer tar: no leading slash.
    pub fn relative(&self) -> &str {
        &self.0[1..]
    }

    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// Proper ancestors, nearest last, excluding the root.
    pub fn ancestors(&self) -> impl Iterator<Item = &str> {
        let rel = self.relative();
        rel.match_indices('/').map(move |(i, _)| &rel[..i])
    }
}

impl std::fmt::Display for ImagePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------------------
// Loading and resolving.

/// Reads and resolves `images.toml` at `path` against `workspace`.
pub fn load(path: &Path, workspace: &Workspace) -> Result<Plan, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text, workspace).map_err(LoadError::Invalid)
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(SourceErrors),
}

/// Parses and resolves manifest text; `path` is used for messages and to find
/// `src` files relative to the workspace root.
pub fn parse(path: &Path, text: &str, workspace: &Workspace) -> Result<Plan, SourceErrors> {
    let fail = |diagnostics| SourceErrors {
        path: path.to_owned(),
        source_text: text.to_owned(),
        diagnostics,
    };
    let raw: RawManifest = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().trim_end_matches('\n').to_owned();
        fail(vec![
            Diagnostic::new(format!("invalid {FILE_NAME}: {message}"), span)
                .help("see the images.toml reference in scratchpack's README for every key"),
        ])
    })?;
    let mut r = Resolver {
        workspace,
        diagnostics: Vec::new(),
    };
    let plan = r.resolve(raw, text.len());
    if r.diagnostics.is_empty() {
        Ok(plan)
    } else {
        Err(fail(r.diagnostics))
    }
}

struct Resolver<'w> {
    workspace: &'w Workspace,
    diagnostics: Vec<Diagnostic>,
}

fn span_of<T>(s: &Spanned<T>) -> Range<usize> {
    s.span()
}

fn quoted_list<'a>(items: impl IntoIterator<Item = &'a String>) -> String {
    let list: Vec<String> = items.into_iter().map(|s| format!("`{s}`")).collect();
    if list.is_empty() {
        "none".to_owned()
    } else {
        list.join(", ")
    }
}

impl Resolver<'_> {
    fn error(&mut self, d: Diagnostic) {
        self.diagnostics.push(d);
    }

    fn resolve(&mut self, raw: RawManifest, text_len: usize) -> Plan {
        let defaults = match raw.defaults {
            Some(d) => {
                let d = d.into_inner();
                for (key, set) in [
                    ("package", d.package.as_ref().map(span_of)),
                    ("bin", d.bin.as_ref().map(span_of)),
                    ("binary-path", d.binary_path.as_ref().map(span_of)),
                    ("entrypoint", d.entrypoint.as_ref().map(span_of)),
                    ("repository", d.repository.as_ref().map(span_of)),
                    (
                        "tests",
                        d.tests.as_ref().and_then(|t| t.keys().next()).map(span_of),
                    ),
                ] {
                    if let Some(s) = set {
                        self.error(
                            Diagnostic::new(
                                format!("`{key}` cannot be set in [defaults]"),
                                s.start..s.end,
                            )
                            .label("set it per image")
                            .help(format!("move `{key}` into each [images.<name>] table")),
                        );
                    }
                }
                d
            }
            None => RawImage::default(),
        };
        if raw.images.is_empty() {
            self.error(
                Diagnostic::new("no images are declared", 0..text_len.min(1))
                    .help("declare one with an `[images.<name>]` table naming a `package`"),
            );
        }
        let mut images = Vec::new();
        let mut test_settings = BTreeMap::new();
        for (name, image) in raw.images {
            let name_span = span_of(&name);
            let name = name.into_inner();
            if let Some(problem) = invalid_image_name(&name) {
                self.error(
                    Diagnostic::new(format!("invalid image name `{name}`: {problem}"), name_span)
                        .help("image names use lowercase letters, digits, `.`, `_` and `-`"),
                );
                continue;
            }
            let image = image.into_inner();
            let (own, shared) = (
                image.unpack_limits.unwrap_or_default(),
                defaults.unpack_limits.unwrap_or_default(),
            );
            let settings = TestSettings {
                unpack_limits: RawUnpackLimits {
                    max_bytes: own.max_bytes.or(shared.max_bytes),
                    max_entries: own.max_entries.or(shared.max_entries),
                    max_depth: own.max_depth.or(shared.max_depth),
                    max_name_bytes: own.max_name_bytes.or(shared.max_name_bytes),
                },
                require_all_platforms: image
                    .require_all_platforms
                    .or(defaults.require_all_platforms)
                    .unwrap_or(false),
            };
            if let Some(plan) = self.image(&name, name_span, image, &defaults) {
                images.push(plan);
                test_settings.insert(name, settings);
            }
        }
        Plan {
            workspace_root: self.workspace.root.clone(),
            target_dir: self.workspace.target_dir.clone(),
            images,
            test_settings,
        }
    }

    fn image(
        &mut self,
        name: &str,
        name_span: Range<usize>,
        raw: RawImage,
        defaults: &RawImage,
    ) -> Option<ImagePlan> {
        let errors_before = self.diagnostics.len();

        // Package and binary.
        let Some(package) = &raw.package else {
            self.error(
                Diagnostic::new(format!("image `{name}` names no `package`"), name_span)
                    .label("missing `package`")
                    .help(format!(
                        "workspace packages with binaries: {}",
                        self.packages_with_bins()
                    )),
            );
            return None;
        };
        let Some(bins) = self.workspace.packages.get(package.get_ref()) else {
            self.error(
                Diagnostic::new(
                    format!(
                        "package `{}` is not a member of the workspace",
                        package.get_ref()
                    ),
                    span_of(package),
                )
                .label("no such package")
                .help(format!(
                    "workspace packages with binaries: {}",
                    self.packages_with_bins()
                )),
            );
            return None;
        };
        let bin = match &raw.bin {
            Some(bin) if bins.contains(bin.get_ref()) => bin.get_ref().clone(),
            Some(bin) => {
                self.error(
                    Diagnostic::new(
                        format!(
                            "package `{}` has no binary `{}`",
                            package.get_ref(),
                            bin.get_ref()
                        ),
                        span_of(bin),
                    )
                    .label("no such binary")
                    .help(format!(
                        "binaries of `{}`: {}",
                        package.get_ref(),
                        quoted_list(bins)
                    )),
                );
                return None;
            }
            None => match bins.as_slice() {
                [only] => only.clone(),
                [] => {
                    self.error(
                        Diagnostic::new(
                            format!("package `{}` has no binary target", package.get_ref()),
                            span_of(package),
                        )
                        .label("nothing to put in an image")
                        .help(format!(
                            "workspace packages with binaries: {}",
                            self.packages_with_bins()
                        )),
                    );
                    return None;
                }
                _ => {
                    self.error(
                        Diagnostic::new(
                            format!(
                                "package `{}` has several binaries; name one with `bin`",
                                package.get_ref()
                            ),
                            span_of(package),
                        )
                        .label("which binary?")
                        .help(format!(
                            "binaries of `{}`: {}",
                            package.get_ref(),
                            quoted_list(bins)
                        )),
                    );
                    return None;
                }
            },
        };

        // Platforms and target triples.
        let platforms = raw.platforms.as_ref().or(defaults.platforms.as_ref());
        let mut targets = Vec::new();
        match platforms {
            None => targets.push(Platform::LinuxAmd64),
            Some(list) => {
                if list.get_ref().is_empty() {
                    self.error(Diagnostic::new("`platforms` is empty", span_of(list)).help(
                        format!("supported platforms: {}", Platform::supported_list()),
                    ));
                }
                for p in list.get_ref() {
                    match Platform::parse(p.get_ref()) {
                        Some(platform) if targets.contains(&platform) => self.error(
                            Diagnostic::new(
                                format!("platform `{platform}` is listed twice"),
                                span_of(p),
                            )
                            .label("duplicate"),
                        ),
                        Some(platform) => targets.push(platform),
                        None => self.error(
                            Diagnostic::new(
                                format!("unsupported platform `{}`", p.get_ref()),
                                span_of(p),
                            )
                            .label("not supported")
                            .help(format!(
                                "supported platforms: {}",
                                Platform::supported_list()
                            )),
                        ),
                    }
                }
            }
        }
        let mut overrides: BTreeMap<Platform, String> = BTreeMap::new();
        for table in [defaults.targets.as_ref(), raw.targets.as_ref()]
            .into_iter()
            .flatten()
        {
            for (platform, triple) in table {
                let Some(p) = Platform::parse(platform.get_ref()) else {
                    self.error(
                        Diagnostic::new(
                            format!("unsupported platform `{}` in `targets`", platform.get_ref()),
                            span_of(platform),
                        )
                        .help(format!(
                            "supported platforms: {}",
                            Platform::supported_list()
                        )),
                    );
                    continue;
                };
                if invalid_triple(triple.get_ref()) {
                    self.error(
                        Diagnostic::new(
                            format!("`{}` is not a target triple", triple.get_ref()),
                            span_of(triple),
                        )
                        .help(format!("for example `{}`", p.default_triple())),
                    );
                    continue;
                }
                overrides.insert(p, triple.get_ref().clone());
            }
        }
        let targets: Vec<PlatformTarget> = targets
            .into_iter()
            .map(|platform| PlatformTarget {
                platform,
                triple: overrides
                    .get(&platform)
                    .cloned()
                    .unwrap_or_else(|| platform.default_triple().to_owned()),
            })
            .collect();

        // Build settings: lists from the image replace those from defaults.
        let profile = raw
            .profile
            .as_ref()
            .or(defaults.profile.as_ref())
            .map(|p| p.get_ref().clone())
            .unwrap_or_else(|| "release".to_owned());
        if let Some(p) = raw.profile.as_ref().or(defaults.profile.as_ref())
            && (p.get_ref().is_empty()
                || !p
                    .get_ref()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            self.error(
                Diagnostic::new(
                    format!("invalid profile name `{}`", p.get_ref()),
                    span_of(p),
                )
                .help("use a cargo profile such as `release` or one from [profile.*]"),
            );
        }
        let build = BuildSettings {
            profile,
            rustflags: raw
                .rustflags
                .clone()
                .or_else(|| defaults.rustflags.clone())
                .unwrap_or_default(),
            features: raw
                .features
                .clone()
                .or_else(|| defaults.features.clone())
                .unwrap_or_default(),
            default_features: raw
                .default_features
                .or(defaults.default_features)
                .unwrap_or(true),
        };

        // Paths in the image.
        let binary_path = match &raw.binary_path {
            Some(p) => self.image_path(p, "binary-path")?,
            None => ImagePath(format!("/{bin}")),
        };
        if binary_path.is_root() {
            let p = raw.binary_path.as_ref().map_or(name_span.clone(), span_of);
            self.error(Diagnostic::new("`binary-path` cannot be `/`", p).label("not a file path"));
        }
        let mut taken: BTreeMap<ImagePath, &'static str> = BTreeMap::new();
        taken.insert(binary_path.clone(), "the binary");

        let mut files = Vec::new();
        for file in [defaults.files.as_ref(), raw.files.as_ref()]
            .into_iter()
            .flatten()
            .flatten()
        {
            let f = file.get_ref();
            let Some(dst) = self.image_path(&f.dst, "dst") else {
                continue;
            };
            if dst.is_root() {
                self.error(Diagnostic::new("`dst` cannot be `/`", span_of(&f.dst)));
                continue;
            }
            if let Some(what) = taken.get(&dst) {
                self.error(
                    Diagnostic::new(format!("`{dst}` collides with {what}"), span_of(&f.dst))
                        .label("already in the image")
                        .help("give every file its own path in the image"),
                );
                continue;
            }
            let Some(src) = self.source_file(&f.src) else {
                continue;
            };
            let mode = self.mode(f.mode.as_ref(), 0o644);
            taken.insert(dst.clone(), "a file from `files`");
            files.push(FileEntry { src, dst, mode });
        }

        let mut dirs = Vec::new();
        for dir in [defaults.dirs.as_ref(), raw.dirs.as_ref()]
            .into_iter()
            .flatten()
            .flatten()
        {
            let d = dir.get_ref();
            let Some(path) = self.image_path(&d.path, "path") else {
                continue;
            };
            if path.is_root() {
                self.error(
                    Diagnostic::new("`path` cannot be `/`", span_of(&d.path))
                        .label("the root is always there"),
                );
                continue;
            }
            if let Some(what) = taken.get(&path) {
                self.error(
                    Diagnostic::new(format!("`{path}` collides with {what}"), span_of(&d.path))
                        .label("already in the image"),
                );
                continue;
            }
            let mode = self.mode(d.mode.as_ref(), 0o755);
            taken.insert(path.clone(), "a directory from `dirs`");
            dirs.push(DirEntry { path, mode });
        }
        // A file cannot also be the parent of another entry.
        let file_paths: BTreeSet<&str> = std::iter::once(binary_path.relative())
            .chain(files.iter().map(|f| f.dst.relative()))
            .collect();
        for path in taken.keys() {
            if let Some(parent) = path.ancestors().find(|a| file_paths.contains(a)) {
                let span = raw
                    .files
                    .iter()
                    .flatten()
                    .find(|f| ImagePath::parse(f.get_ref().dst.get_ref()).as_ref() == Ok(path))
                    .map(|f| span_of(&f.get_ref().dst))
                    .unwrap_or(name_span.clone());
                self.error(
                    Diagnostic::new(
                        format!("`{path}` would be inside `/{parent}`, which is a file"),
                        span,
                    )
                    .label("parent is a file"),
                );
            }
        }

        // Run configuration.
        let entrypoint = match &raw.entrypoint {
            Some(e) if e.get_ref().is_empty() => {
                self.error(
                    Diagnostic::new("`entrypoint` is empty", span_of(e))
                        .help(format!("leave it out to run `{binary_path}`")),
                );
                Vec::new()
            }
            Some(e) => {
                self.no_nul(span_of(e), "`entrypoint`", e.get_ref());
                e.get_ref().clone()
            }
            None => vec![binary_path.as_str().to_owned()],
        };
        let cmd = raw.cmd.as_ref().or(defaults.cmd.as_ref());
        if let Some(c) = cmd {
            self.no_nul(span_of(c), "`cmd`", c.get_ref());
        }
        let cmd = cmd.map(|c| c.get_ref().clone()).unwrap_or_default();
        let mut env = BTreeMap::new();
        for table in [defaults.env.as_ref(), raw.env.as_ref()]
            .into_iter()
            .flatten()
        {
            for (key, value) in table {
                if self.env_var(key, value) {
                    env.insert(key.get_ref().clone(), value.clone());
                }
            }
        }
        let user = raw
            .user
            .as_ref()
            .or(defaults.user.as_ref())
            .and_then(|u| self.user(u))
            .unwrap_or(DEFAULT_USER);
        let workdir = match raw.workdir.as_ref().or(defaults.workdir.as_ref()) {
            Some(w) => self
                .image_path(w, "workdir")
                .unwrap_or(ImagePath("/".into())),
            None => ImagePath("/".into()),
        };
        let mut exposed_ports = BTreeSet::new();
        for port in [defaults.ports.as_ref(), raw.ports.as_ref()]
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Some(p) = self.port(port) {
                exposed_ports.insert(p);
            }
        }
        let stop_signal = match raw.stop_signal.as_ref().or(defaults.stop_signal.as_ref()) {
            Some(s) if SIGNALS.contains(&s.get_ref().as_str()) => Some(s.get_ref().clone()),
            Some(s) => {
                self.error(
                    Diagnostic::new(format!("unknown signal `{}`", s.get_ref()), span_of(s))
                        .help(format!("signals: {}", SIGNALS.join(", "))),
                );
                None
            }
            None => None,
        };
        let mut labels = defaults.labels.clone().unwrap_or_default();
        labels.extend(raw.labels.clone().unwrap_or_default());
        let mut annotations = defaults.annotations.clone().unwrap_or_default();
        annotations.extend(raw.annotations.clone().unwrap_or_default());
        for (what, table) in [("labels", &labels), ("annotations", &annotations)] {
            let strings: Vec<String> = table
                .iter()
                .flat_map(|(k, v)| [k.clone(), v.clone()])
                .collect();
            self.no_nul(
                name_span.clone(),
                &format!("`{what}` of image `{name}`"),
                &strings,
            );
        }

        let mut tags = Vec::new();
        for tag in raw
            .tags
            .as_ref()
            .or(defaults.tags.as_ref())
            .into_iter()
            .flatten()
        {
            if !valid_tag(tag.get_ref()) {
                self.error(
                    Diagnostic::new(format!("invalid tag `{}`", tag.get_ref()), span_of(tag))
                        .help("tags match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"),
                );
            } else if !tags.contains(tag.get_ref()) {
                tags.push(tag.get_ref().clone());
            }
        }
        if tags.is_empty() {
            tags.push("latest".to_owned());
        }

        let push = match raw.registry.as_ref().or(defaults.registry.as_ref()) {
            Some(registry) => {
                let repository = raw
                    .repository
                    .as_ref()
                    .map_or_else(|| name.to_owned(), |r| r.get_ref().clone());
                let reference = format!("{}/{repository}", registry.get_ref());
                match crate::registry::Repository::parse(&reference) {
                    Ok(_) => Some(PushTarget {
                        registry: registry.get_ref().clone(),
                        repository,
                        insecure: raw.insecure.or(defaults.insecure).unwrap_or(false),
                    }),
                    Err(e) => {
                        let span = raw
                            .repository
                            .as_ref()
                            .map_or_else(|| span_of(registry), span_of);
                        self.error(
                            Diagnostic::new(format!("invalid image reference `{reference}`: {e}"), span)
                                .help("write `registry = \"host[:port][/namespace]\"` and `repository = \"name\"`, e.g. `ghcr.io/acme` and `api`"),
                        );
                        None
                    }
                }
            }
            None => {
                if let Some(r) = &raw.repository {
                    self.error(
                        Diagnostic::new("`repository` is set but no `registry` is", span_of(r))
                            .help("add `registry = \"host/namespace\"` here or in [defaults]"),
                    );
                }
                None
            }
        };

        let mut tests = Vec::new();
        for (test_name, test) in raw.tests.iter().flatten() {
            if let Some(t) = self.test(test_name, test, &binary_path) {
                tests.push(t);
            }
        }

        if self.diagnostics.len() > errors_before {
            return None;
        }
        Some(ImagePlan {
            name: name.to_owned(),
            package: package.get_ref().clone(),
            bin,
            targets,
            build,
            binary_path,
            files,
            dirs,
            config: RunConfig {
                entrypoint,
                cmd,
                env,
                user,
                workdir,
                labels,
                exposed_ports,
                stop_signal,
            },
            annotations,
            tags,
            push,
            tests,
        })
    }

    fn test(
        &mut self,
        name: &Spanned<String>,
        raw: &Spanned<RawTest>,
        binary_path: &ImagePath,
    ) -> Option<TestPlan> {
        let t = raw.get_ref();
        let name_span = span_of(name);
        if invalid_image_name(name.get_ref()).is_some() {
            self.error(
                Diagnostic::new(
                    format!("invalid test name `{}`", name.get_ref()),
                    name_span.clone(),
                )
                .help("test names use lowercase letters, digits, `.`, `_` and `-`"),
            );
        }
        let is_command = t.args.is_some()
            || t.env.is_some()
            || t.stdin.is_some()
            || t.timeout.is_some()
            || t.user.is_some()
            || t.workdir.is_some()
            || t.exit_code.is_some()
            || t.stdout.is_some()
            || t.stderr.is_some()
            || t.seccomp.is_some();
        let is_structure = t.files.is_some() || t.absent.is_some() || t.config.is_some();
        if !is_command && !is_structure {
            self.error(
                Diagnostic::new(format!("test `{}` checks nothing", name.get_ref()), name_span)
                    .help("give a command test `exit-code`, `stdout` or `args`, or a structure test `files`, `absent` or `config`"),
            );
            return None;
        }
        let command = is_command.then(|| {
            if let Some(args) = &t.args {
                self.no_nul(
                    name_span.clone(),
                    &format!("`args` of test `{}`", name.get_ref()),
                    args,
                );
            }
            let mut env = BTreeMap::new();
            for (k, v) in t.env.iter().flatten() {
                if self.env_var(k, v) {
                    env.insert(k.get_ref().clone(), v.clone());
                }
            }
            let timeout_ms = match &t.timeout {
                Some(s) if *s.get_ref() > 0.0 && *s.get_ref() <= 3600.0 => {
                    (*s.get_ref() * 1000.0).ceil() as u64
                }
                Some(s) => {
                    self.error(
                        Diagnostic::new("invalid timeout", span_of(s))
                            .label("seconds, more than 0 and at most 3600"),
                    );
                    DEFAULT_TEST_TIMEOUT_MS
                }
                None => DEFAULT_TEST_TIMEOUT_MS,
            };
            let user = t.user.as_ref().and_then(|u| self.user(u));
            let workdir = t
                .workdir
                .as_ref()
                .and_then(|w| self.image_path(w, "workdir"));
            CommandTest {
                args: t.args.clone(),
                env,
                stdin: t.stdin.clone(),
                timeout_ms,
                user,
                workdir,
                exit_code: match &t.exit_code {
                    Some(code) if (0..=255).contains(code.get_ref()) => *code.get_ref(),
                    Some(code) => {
                        self.error(
                            Diagnostic::new(
                                format!("exit code {} can never happen", code.get_ref()),
                                span_of(code),
                            )
                            .label("exit codes are 0 to 255"),
                        );
                        0
                    }
                    None => 0,
                },
                stdout: self.output(t.stdout.as_ref()),
                stderr: self.output(t.stderr.as_ref()),
                seccomp: t.seccomp.unwrap_or(true),
            }
        });
        let structure = is_structure.then(|| {
            let mut files = Vec::new();
            for f in t.files.iter().flatten() {
                let f = f.get_ref();
                let Some(path) = self.image_path(&f.path, "path") else {
                    continue;
                };
                let mode = f.mode.as_ref().map(|m| self.mode(Some(m), 0));
                let kind = match f.kind.as_ref() {
                    None => None,
                    Some(k) => match k.get_ref().as_str() {
                        "file" => Some(FileKind::File),
                        "dir" => Some(FileKind::Dir),
                        "symlink" => Some(FileKind::Symlink),
                        other => {
                            self.error(
                                Diagnostic::new(format!("unknown file type `{other}`"), span_of(k))
                                    .help("types: `file`, `dir`, `symlink`"),
                            );
                            None
                        }
                    },
                };
                files.push(FileCheck { path, mode, kind });
            }
            let mut absent = Vec::new();
            for a in t.absent.iter().flatten() {
                if let Some(p) = self.image_path(a, "absent") {
                    if &p == binary_path {
                        self.error(
                            Diagnostic::new(format!("`{p}` is the image's binary"), span_of(a))
                                .label("always present"),
                        );
                    }
                    absent.push(p);
                }
            }
            let config = match &t.config {
                None => ConfigCheck::default(),
                Some(c) => ConfigCheck {
                    entrypoint: c.entrypoint.clone(),
                    cmd: c.cmd.clone(),
                    user: c.user.as_ref().and_then(|u| self.user(u)),
                    workdir: c
                        .workdir
                        .as_ref()
                        .and_then(|w| self.image_path(w, "workdir")),
                    env: c.env.clone().unwrap_or_default(),
                    ports: c
                        .ports
                        .as_ref()
                        .map(|ports| ports.iter().filter_map(|p| self.port(p)).collect()),
                },
            };
            StructureTest {
                files,
                absent,
                config,
            }
        });
        Some(TestPlan {
            name: name.get_ref().clone(),
            command,
            structure,
        })
    }

    /// Whether an environment variable can be passed to a process.
    fn env_var(&mut self, key: &Spanned<String>, value: &str) -> bool {
        let k = key.get_ref();
        let ok = !k.is_empty() && !k.contains(['=', '\0']) && !value.contains('\0');
        if !ok {
            self.error(
                Diagnostic::new(format!("invalid environment variable `{k}`"), span_of(key))
                    .help("names are non-empty without `=`; neither names nor values hold NUL"),
            );
        }
        ok
    }

    /// Strings handed to `execve` cannot hold a NUL byte.
    fn no_nul(&mut self, span: Range<usize>, what: &str, strings: &[String]) {
        if strings.iter().any(|s| s.contains('\0')) {
            self.error(
                Diagnostic::new(format!("{what} contains a NUL byte"), span)
                    .label("not representable in an image"),
            );
        }
    }

    fn output(&mut self, raw: Option<&RawOutput>) -> OutputExpect {
        let Some(raw) = raw else {
            return OutputExpect::default();
        };
        if let Some(re) = &raw.regex
            && let Err(e) = regex_lite::Regex::new(re.get_ref())
        {
            self.error(
                Diagnostic::new(format!("invalid regex: {e}"), span_of(re))
                    .label("does not compile"),
            );
        }
        OutputExpect {
            equals: raw.equals.clone(),
            contains: raw.contains.clone().unwrap_or_default(),
            regex: raw.regex.as_ref().map(|r| r.get_ref().clone()),
        }
    }

    fn user(&mut self, u: &Spanned<String>) -> Option<User> {
        match parse_user(u.get_ref()) {
            Ok(user) => Some(user),
            Err(problem) => {
                self.error(
                    Diagnostic::new(format!("invalid user `{}`: {problem}", u.get_ref()), span_of(u))
                        .label("expected `uid:gid`")
                        .help("give numeric ids, e.g. `65532:65532`; a scratch image has no /etc/passwd to look names up in"),
                );
                None
            }
        }
    }

    fn port(&mut self, port: &Spanned<String>) -> Option<String> {
        match parse_port(port.get_ref()) {
            Ok(p) => Some(p),
            Err(problem) => {
                self.error(
                    Diagnostic::new(
                        format!("invalid port `{}`: {problem}", port.get_ref()),
                        span_of(port),
                    )
                    .label("expected `port` or `port/tcp|udp|sctp`")
                    .help("for example `8080`, `8080/tcp` or `53/udp`"),
                );
                None
            }
        }
    }

    fn packages_with_bins(&self) -> String {
        quoted_list(
            self.workspace
                .packages
                .iter()
                .filter(|(_, bins)| !bins.is_empty())
                .map(|(name, _)| name),
        )
    }

    fn image_path(&mut self, raw: &Spanned<String>, key: &str) -> Option<ImagePath> {
        match ImagePath::parse(raw.get_ref()) {
            Ok(p) => Some(p),
            Err(problem) => {
                self.error(
                    Diagnostic::new(
                        format!("`{key}` `{}` {problem}", raw.get_ref()),
                        span_of(raw),
                    )
                    .label("invalid path in the image")
                    .help("write an absolute path such as `/etc/app/config.toml`"),
                );
                None
            }
        }
    }

    fn source_file(&mut self, raw: &Spanned<String>) -> Option<PathBuf> {
        let rel = Path::new(raw.get_ref());
        let escapes = rel.is_absolute()
            || rel
                .components()
                .any(|c| matches!(c, Component::ParentDir | Component::Prefix(_)));
        if escapes || raw.get_ref().is_empty() {
            self.error(
                Diagnostic::new(
                    format!("`src` `{}` is not inside the workspace", raw.get_ref()),
                    span_of(raw),
                )
                .label("must be relative to the workspace root, without `..`"),
            );
            return None;
        }
        let path = self.workspace.root.join(rel);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Some(path),
            Ok(_) => {
                self.error(
                    Diagnostic::new(
                        format!("`src` `{}` is not a regular file", raw.get_ref()),
                        span_of(raw),
                    )
                    .label("not a file")
                    .help("list each file of a directory as its own entry"),
                );
                None
            }
            Err(e) => {
                self.error(
                    Diagnostic::new(
                        format!("`src` `{}` cannot be read: {e}", raw.get_ref()),
                        span_of(raw),
                    )
                    .label("missing file")
                    .help(format!(
                        "paths are relative to the workspace root, {}",
                        self.workspace.root.display()
                    )),
                );
                None
            }
        }
    }

    fn mode(&mut self, raw: Option<&Spanned<RawMode>>, default: u32) -> u32 {
        let Some(raw) = raw else { return default };
        let parsed = match raw.get_ref() {
            RawMode::Int(i) => u32::try_from(*i).ok(),
            RawMode::Str(s) => {
                let digits = s.strip_prefix("0o").unwrap_or(s);
                if digits.is_empty() || digits.len() > 4 {
                    None
                } else {
                    u32::from_str_radix(digits, 8).ok()
                }
            }
        };
        match parsed {
            Some(m) if m <= 0o7777 => m,
            _ => {
                self.error(
                    Diagnostic::new("invalid mode", span_of(raw))
                        .label("expected an octal mode up to 7777")
                        .help("write it as `0o644` or `\"0644\"`"),
                );
                default
            }
        }
    }
}

fn invalid_image_name(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > 128 {
        return Some("names are 1 to 128 characters long");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
    {
        return Some("it has a character other than a-z, 0-9, `.`, `_` or `-`");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Some("names start with a letter or digit");
    }
    if name.ends_with(".tar") {
        // `<out>/<name>.tar` is the archive of the image called `<name>`.
        return Some("names cannot end in `.tar`, the archives' suffix");
    }
    None
}

fn invalid_triple(t: &str) -> bool {
    t.split('-').count() < 2
        || !t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `uid:gid` or `uid`, numeric only (a scratch image has no passwd file).
pub(crate) fn parse_user(s: &str) -> Result<User, &'static str> {
    let (uid, gid) = s.split_once(':').unwrap_or((s, s));
    let id = |v: &str| {
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err("ids are numbers");
        }
        v.parse::<u32>().map_err(|_| "id is out of range")
    };
    Ok(User {
        uid: id(uid)?,
        gid: id(gid)?,
    })
}

fn parse_port(s: &str) -> Result<String, &'static str> {
    let (port, proto) = s.split_once('/').unwrap_or((s, "tcp"));
    if !matches!(proto, "tcp" | "udp" | "sctp") {
        return Err("the protocol is tcp, udp or sctp");
    }
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the port is a number");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(format!("{p}/{proto}")),
        _ => Err("the port is between 1 and 65535"),
    }
}

/// The distribution spec's tag grammar.
fn valid_tag(t: &str) -> bool {
    let mut chars = t.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && t.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Signal names a runtime accepts in `StopSignal`.
const SIGNALS: &[&str] = &[
    "SIGHUP", "SIGINT", "SIGQUIT", "SIGKILL", "SIGUSR1", "SIGUSR2", "SIGTERM", "SIGPWR", "SIGWINCH",
];

#[cfg(test)]
mod tests;

//! The validated plan an `images.toml` resolves to: every value parsed into
//! its type and defaulted, so nothing downstream re-checks or re-parses it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;

use crate::oci::Compression;
use crate::platform::Platform;

/// The default user: a non-root uid and gid, as distroless's `nonroot`.
pub const DEFAULT_USER: User = User {
    uid: 65532,
    gid: 65532,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub workspace_root: PathBuf,
    pub target_dir: PathBuf,
    pub images: Vec<ImagePlan>,
    /// The image timestamp `[defaults]` asks for, if it asks for one; the
    /// command line and `SOURCE_DATE_EPOCH` take precedence over it.
    #[serde(skip)]
    pub source_date_epoch: Option<ManifestEpoch>,
    /// The registry build cache `[defaults]` names (`cache`), checked.
    #[serde(skip)]
    pub cache: Option<crate::registry::Repository>,
    /// The key files `[defaults]` names for cache entries.
    #[serde(skip)]
    pub cache_keys: CacheKeyFiles,
    /// `[defaults]`' `registry-limits` over the defaults.
    #[serde(skip)]
    pub registry_limits: crate::registry::RegistryLimits,
    /// One line per tag template that had no value in this checkout and
    /// was skipped, for the command line to show.
    #[serde(skip)]
    pub notices: Vec<String>,
    /// Who compiles the C and C++ of image builds (`c-compiler` in
    /// `[defaults]`). What it shapes, action keys record from the compiler
    /// itself.
    #[serde(skip)]
    pub c_compiler: CCompiler,
}

/// `cache-sign-key` and `cache-verify-key`, as paths from the workspace
/// root; read when a run uses the cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheKeyFiles {
    /// cosign's private key: what a run pushes to the cache is signed.
    pub sign: Option<PathBuf>,
    /// A PEM public key: only entries it verifies are used.
    pub verify: Option<PathBuf>,
}

/// `c-compiler`: zig when a crate of the images compiles C (no key),
/// zig always (`"zig"`), or only what the caller's `CC_<triple>`
/// variables name (`"none"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CCompiler {
    #[default]
    ZigWhenNeeded,
    Zig,
    None,
}

/// `source-date-epoch` in `[defaults]`, checked but not yet looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestEpoch {
    /// A number of seconds since 1970.
    Seconds(u64),
    /// `"git"`: the time of the workspace's last commit.
    Git,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImagePlan {
    pub name: String,
    pub package: String,
    pub bin: String,
    /// The package's version (`org.opencontainers.image.version`, `{version}`).
    pub version: String,
    /// The binaries `binaries` adds beside the image's own, in the order
    /// images.toml lists them.
    pub binaries: Vec<ExtraBinary>,
    /// One entry per platform, in the order images.toml lists them.
    pub targets: Vec<PlatformTarget>,
    pub build: BuildSettings,
    pub binary_path: ImagePath,
    pub files: Vec<FileEntry>,
    pub dirs: Vec<DirEntry>,
    pub config: RunConfig,
    pub annotations: BTreeMap<String, String>,
    /// How the layer is compressed (`gzip` unless images.toml says).
    pub compression: Compression,
    /// Whether manifests and the index carry the annotations that say
    /// where the image came from (revision, source, version, created).
    pub source_annotations: bool,
    /// Names of the image, never part of what is built or of any key: a
    /// run that changes only tags packs nothing.
    #[serde(skip)]
    pub tags: Vec<Tag>,
    /// Where `push` sends the image, when a registry is configured. Not part
    /// of what is built, so left out of the image's cache key.
    #[serde(skip)]
    pub push: Option<PushTarget>,
    /// What `sign` attaches and `verify` requires: SBOM formats, provenance,
    /// signature formats, the builder id. They describe the image without
    /// shaping it, so they stay out of its cache key.
    #[serde(skip)]
    pub release: super::ReleaseSettings,
    /// Tests do not shape the image either; each has its own cache key.
    #[serde(skip)]
    pub tests: Vec<TestPlan>,
    /// How the tests run: not part of the image either.
    #[serde(skip)]
    pub test_settings: TestSettings,
}

/// A binary an image holds beside its own (`binaries`): built for every
/// platform of the image, proven static and listed in its SBOMs like the
/// image's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtraBinary {
    pub package: String,
    pub bin: String,
    pub path: ImagePath,
    /// The image's own settings for a binary of its package; for another
    /// package, the same but with that package's default features.
    pub build: BuildSettings,
}

/// How an image's tests are run, beyond the tests themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TestSettings {
    /// The `unpack-limits` keys set, the image's over `[defaults]`' per key;
    /// those left out keep the unpacker's defaults.
    pub unpack_limits: UnpackLimitKeys,
    /// Whether a test that cannot run on this host (no emulator for its
    /// platform) fails `test-images` instead of being skipped.
    pub require_all_platforms: bool,
}

/// `unpack-limits`: each bound images.toml sets, at least 1.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UnpackLimitKeys {
    pub max_bytes: Option<u64>,
    pub max_entries: Option<u64>,
    pub max_depth: Option<u64>,
    pub max_name_bytes: Option<u64>,
}

/// `registry/repository`, and whether plain HTTP is allowed for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushTarget {
    /// `registry` as images.toml writes it: a host and maybe a namespace.
    pub registry: String,
    /// `repository` (else the image name) as written, under `registry`.
    pub repository: String,
    /// The two together, parsed once.
    pub reference: crate::registry::Repository,
    pub insecure: bool,
}

/// One image test, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestPlan {
    pub name: String,
    pub command: Option<CommandTest>,
    pub structure: Option<StructureTest>,
    /// Set for a service test: the command is started and left running,
    /// reached on its port, then stopped; `command` says how it runs, its
    /// exit code is the one expected after the stop, its timeout bounds the
    /// whole test, and its output is checked once it has stopped.
    pub service: Option<ServiceTest>,
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
    /// Whether the sandbox's seccomp filter is on (the default); `seccomp =
    /// false` is for a program that needs a call the filter denies.
    pub seccomp: bool,
}

/// Default wall-time limit of a command test, in milliseconds.
pub const DEFAULT_TEST_TIMEOUT_MS: u64 = 10_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OutputExpect {
    pub equals: Option<String>,
    pub contains: Vec<String>,
    /// Byte sequences (`contains-hex`) the output must hold, for binary
    /// protocols and output. Left out of the serialised form when empty, so
    /// tests without them keep their cache keys.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub contains_bytes: Vec<Vec<u8>>,
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
    /// Left out of the test's JSON when absent, so the cache keys of the
    /// tests that do not check volumes stay as they were.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeSet<String>>,
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
    /// Whether the binary carries its crate list in a `.dep-v0` section.
    pub auditable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileEntry {
    pub src: FileSource,
    pub dst: ImagePath,
    pub mode: u32,
}

/// Where the bytes of a file in the image come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    /// A regular file on the host, inside the workspace (symlinks resolved).
    Host(PathBuf),
    /// Bytes scratchpack writes itself, such as `/etc/passwd`.
    Generated(Vec<u8>),
}

impl Serialize for FileSource {
    /// A host file is named by its path; generated bytes by their sha256, so a
    /// cache key over the plan stays small while still changing with them.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            FileSource::Host(path) => path.serialize(s),
            FileSource::Generated(bytes) => {
                let hex = crate::digest::sha256_hex(bytes);
                s.collect_str(&format_args!("generated:sha256:{hex}"))
            }
        }
    }
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
    /// Directories where the program writes (the config's `Volumes`); each
    /// is also a directory of the image. Left out of the plan's JSON when
    /// empty, so the action keys of images without volumes stay as they were.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub volumes: BTreeSet<ImagePath>,
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

/// An image tag, valid under the distribution spec's grammar
/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Tag(String);

impl Tag {
    pub fn parse(s: &str) -> Option<Tag> {
        let mut chars = s.chars();
        let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
            && s.len() <= 128
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        valid.then(|| Tag(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<&str> for Tag {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// An absolute, normalised path inside an image: starts with `/`, has no `.`,
/// `..` or empty components, no trailing slash (except the root itself).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ImagePath(String);

impl ImagePath {
    /// The root directory.
    pub fn root() -> ImagePath {
        ImagePath("/".to_owned())
    }

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

/// A service test: how the program is known to be ready, what it is asked,
/// and how long it has to stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceTest {
    /// The TCP port the program listens on inside the sandbox.
    pub port: u16,
    pub ready_timeout_ms: u64,
    /// A path whose answer must have a 2xx status before the program counts
    /// as ready; without one, the first accepted connection is enough.
    pub ready_http: Option<String>,
    /// Sent in order, each on a connection of its own.
    pub requests: Vec<ServiceRequest>,
    /// How long the program has to end after its stop signal.
    pub stop_timeout_ms: u64,
}

/// Default `ready-timeout` and `stop.timeout` of a service test, in
/// milliseconds (`docker stop` waits ten seconds too).
pub const DEFAULT_SERVICE_TIMEOUT_MS: u64 = 10_000;

/// The longest one request of a service test may take, from connecting to
/// the end of its answer.
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceRequest {
    Http(HttpRequest),
    Tcp(TcpExchange),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpRequest {
    /// An HTTP method: uppercase letters.
    pub method: String,
    /// The request target, starting with `/`.
    pub path: String,
    /// Sent as written, after `Host` and `Connection: close`.
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    /// The status expected; without one, any 2xx.
    pub status: Option<u16>,
    /// Header values expected, by lowercase name.
    pub response_headers: BTreeMap<String, String>,
    pub body_expect: OutputExpect,
}

/// A non-HTTP exchange: bytes sent, and what the program must send back
/// before it closes the connection or the request's time is up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TcpExchange {
    /// `send`'s UTF-8 or `send-hex`'s bytes.
    pub send: Vec<u8>,
    pub expect: OutputExpect,
}

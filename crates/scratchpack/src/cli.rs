//! The command line, shared by every workspace's xtask: `cargo xtask images`
//! and friends. Exit codes: 0 success, 1 build failure, 2 bad manifest or usage.

mod images;
#[cfg(feature = "sign")]
mod keygen;
mod load;
#[cfg(feature = "push")]
mod push;
#[cfg(feature = "push")]
mod resolve;
#[cfg(target_os = "linux")]
mod run;
#[cfg(feature = "sign")]
mod sign;
#[cfg(feature = "push")]
mod tag;
#[cfg(target_os = "linux")]
mod test_images;
#[cfg(feature = "sign")]
mod verify;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use clap::{Parser, Subcommand};

use crate::build::{BuildOptions, BuiltImage};
use crate::compile::{CCompilers, Cargo};
use crate::manifest::ImagePlan;

use crate::build::assemble;
use crate::diagnostic::SourceErrors;
use crate::manifest::{self, GitField, LoadError, Plan, PlatformTarget, Tag, TagInputs};
use crate::oci::Digest;
use crate::platform::Platform;
use crate::registry::Repository;
use crate::release::documents::{BuildInputs, DocumentError, Facts};
#[cfg(feature = "sign")]
use crate::release::keys::{self, PrivateKey};
#[cfg(feature = "sign")]
use crate::release::publish::{self, LocateError, LocateOptions, Located, Publisher};
#[cfg(feature = "sign")]
use crate::release::sign::KeySigner;
use crate::shell::Shell;
use crate::toolchain::crates::LinkedCrates;
use crate::toolchain::git::{Checkout, GitSource};
use crate::toolchain::workspace::{Origin, Workspace};
use crate::toolchain::{self, Env};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    version,
    about = "Build minimal FROM-scratch container images from this workspace's binaries",
    long_about = "Build minimal, reproducible FROM-scratch OCI images from this workspace's \
                  binaries, as declared in images.toml at the workspace root."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the images declared in images.toml (all, or those named)
    Images(images::Args),
    /// Build what is out of date, then load the images into the local podman or docker
    Load(load::Args),
    /// Write a new signing key pair (cosign.key, cosign.pub) in cosign's formats
    #[cfg(feature = "sign")]
    Keygen(keygen::Args),
    /// Write a signing key pair (needs the `sign` feature)
    #[cfg(not(feature = "sign"))]
    Keygen(NeedsFeature),
    /// Build what is out of date, then push images to their registries
    #[cfg(feature = "push")]
    Push(push::Args),
    /// Push images to their registries (needs the `push` feature)
    #[cfg(not(feature = "push"))]
    Push(NeedsFeature),
    /// Build and push the images YAML names as scratchpack://NAME, and print the YAML with their digests
    #[cfg(feature = "push")]
    Resolve(resolve::Args),
    /// Resolve scratchpack:// references in YAML (needs the `push` feature)
    #[cfg(not(feature = "push"))]
    Resolve(NeedsFeature),
    /// Add tags to an image already in its registry, without rebuilding it
    #[cfg(feature = "push")]
    Tag(tag::Args),
    /// Add tags to an image in its registry (needs the `push` feature)
    #[cfg(not(feature = "push"))]
    Tag(NeedsFeature),
    /// Sign pushed images and attach their SBOMs and provenance (cosign's formats)
    #[cfg(feature = "sign")]
    Sign(sign::Args),
    /// Sign pushed images (needs the `sign` feature)
    #[cfg(not(feature = "sign"))]
    Sign(NeedsFeature),
    /// Build what is out of date, then run the tests images.toml declares, in a sandbox
    #[cfg(target_os = "linux")]
    TestImages(test_images::Args),
    /// Run the tests images.toml declares (needs Linux)
    #[cfg(not(target_os = "linux"))]
    TestImages(NeedsLinux),
    /// Check the signatures and attestations of pushed images against a public key
    #[cfg(feature = "sign")]
    Verify(verify::Args),
    /// Check signatures and attestations (needs the `sign` feature)
    #[cfg(not(feature = "sign"))]
    Verify(NeedsFeature),
    /// Build the image if out of date, then run it in a sandbox, like `docker run --rm`
    #[cfg(target_os = "linux")]
    Run(run::Args),
    /// Run an image in a sandbox (needs Linux)
    #[cfg(not(target_os = "linux"))]
    Run(NeedsLinux),
}

impl Command {
    /// `--no-cache` of `images` and `test-images` also leaves out the
    /// registry cache.
    fn with_no_cache(mut self) -> Self {
        match &mut self {
            Command::Images(a) => a.common.no_cache |= a.no_cache,
            #[cfg(target_os = "linux")]
            Command::TestImages(a) => a.common.no_cache |= a.no_cache,
            _ => {}
        }
        self
    }
}

/// Options every command shares.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// The manifest to read [default: images.toml at the workspace root]
    #[arg(long, value_name = "PATH", global = true)]
    manifest_path: Option<PathBuf>,
    /// Where images are written [default: <target-dir>/images]
    #[arg(long, value_name = "DIR", global = true)]
    out: Option<PathBuf>,
    /// Print no status lines
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Image timestamp in seconds since 1970, or `git` for the last commit's
    /// time; beats SOURCE_DATE_EPOCH and images.toml's `source-date-epoch`
    #[arg(long, value_name = "SECONDS|git", global = true)]
    source_date_epoch: Option<String>,
    /// Threads that pack images (and, in test-images, tests run at once)
    /// [default: the number of cores]
    #[arg(long, short, value_name = "N", global = true, value_parser = clap::value_parser!(u16).range(1..))]
    jobs: Option<u16>,
    /// Pull images whose action key is in this registry repository instead
    /// of compiling them [default: images.toml's `cache`]
    #[arg(long, value_name = "REGISTRY/REPO", global = true)]
    cache_from: Option<String>,
    /// Push what is built to this registry repository under its action key
    /// [default: images.toml's `cache`]
    #[arg(long, value_name = "REGISTRY/REPO", global = true)]
    cache_to: Option<String>,
    /// Sign what is pushed to the registry cache with this cosign private
    /// key (password in COSIGN_PASSWORD) [default: images.toml's `cache-sign-key`]
    #[arg(long, value_name = "FILE", global = true)]
    cache_sign_key: Option<PathBuf>,
    /// Use only registry cache entries signed by this public key (PEM)
    /// [default: images.toml's `cache-verify-key`]
    #[arg(long, value_name = "FILE", global = true)]
    cache_verify_key: Option<PathBuf>,
    /// Fail a registry request when no byte moves for this long; retried
    /// within --registry-timeout [default: images.toml's
    /// `registry-limits.idle-timeout`, else 30]
    #[arg(long, value_name = "SECONDS", global = true, value_parser = clap::value_parser!(u64).range(1..))]
    registry_idle_timeout: Option<u64>,
    /// The most one registry operation may take, its retries included
    /// [default: images.toml's `registry-limits.timeout`, else 600]
    #[arg(long, value_name = "SECONDS", global = true, value_parser = clap::value_parser!(u64).range(1..))]
    registry_timeout: Option<u64>,
    /// Use no registry cache, whatever images.toml or the flags say: set
    /// by the `--no-cache` of the commands that have one.
    #[arg(skip)]
    no_cache: bool,
}

/// How `resolve` builds and pushes the images it names, giving each name's
/// pinned reference: `push`'s own push, handed to it by [`dispatch`], since
/// no file of `cli/` imports another.
#[cfg(feature = "push")]
pub type PushImages =
    dyn Fn(&Context, &[String], &Target) -> Result<Vec<(String, String)>, Failure>;

/// `--tag TAG` of the commands that build or name images.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TagFlags {
    /// Tag every selected image TAG in this run instead of with images.toml's
    /// `tags` (repeatable)
    #[arg(long = "tag", value_name = "TAG", value_parser = parse_tag)]
    pub(super) tags: Vec<Tag>,
}

fn parse_tag(s: &str) -> Result<Tag, String> {
    Tag::parse(s).ok_or_else(|| {
        format!("`{s}` is not a tag: tags match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}")
    })
}

/// The loaded context of a command: environment, workspace, plan and
/// settings.
pub struct Context {
    /// The process's environment, read once here and passed down.
    pub env: Env,
    pub workspace: Workspace,
    /// The git checkout the workspace is in, asked only what a run needs.
    pub checkout: Checkout,
    pub plan: Plan,
    pub out_dir: PathBuf,
    pub shell: Shell,
    pub epoch: u64,
    /// Threads that pack (`-j`); 0 for one per core.
    pub jobs: usize,
    /// The registry build cache to read and write.
    pub cache: crate::action_cache::CacheSettings,
    /// The bounds every registry is held to: the flags over images.toml's
    /// `registry-limits`.
    pub registry: crate::registry::RegistryLimits,
}

/// Why a command failed, and so its exit code.
pub enum Failure {
    /// Bad manifest or usage: exit 2.
    Usage(anyhow::Error),
    /// Anything else: exit 1.
    Build(anyhow::Error),
    /// SIGINT or SIGTERM stopped the command before it had done anything
    /// it could not take back: exit 130, as a shell reports Ctrl-C.
    Interrupted,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Build(e.into())
    }
}

/// The `git.*` fields of tag templates, from the checkout. A commit is
/// named only by a clean checkout: an image built from changes not
/// committed is no build of that commit.
struct CheckoutValues<'a>(&'a Checkout);

impl manifest::GitValues for CheckoutValues<'_> {
    fn value(&self, field: GitField) -> Result<String, String> {
        let head = self.0.head().ok_or("the workspace is not a git checkout")?;
        match field {
            GitField::Branch => head
                .branch
                .clone()
                .ok_or_else(|| "HEAD is detached".to_owned()),
            _ if self.0.dirty() != Some(false) => {
                Err("tracked files have changes not committed".to_owned())
            }
            GitField::Commit => Ok(head.commit.clone()),
            GitField::Short => Ok(head.commit.chars().take(7).collect()),
            GitField::Tag => self
                .0
                .tags_at_head()
                .first()
                .cloned()
                .ok_or_else(|| "HEAD has no tag".to_owned()),
        }
    }
}

impl Common {
    fn load(&self) -> Result<Context, Failure> {
        self.load_with(Env::from_process(), &[])
    }

    /// Loads the context with `env` (read once, by the caller) and `tags`
    /// in place of images.toml's when there are any.
    fn load_with(&self, env: Env, tags: &[Tag]) -> Result<Context, Failure> {
        // Refused before anything is read, as every flag of a feature left
        // out of the build is.
        #[cfg(not(feature = "sign"))]
        for (flag, given) in [
            ("--cache-sign-key", &self.cache_sign_key),
            ("--cache-verify-key", &self.cache_verify_key),
        ] {
            if given.is_some() {
                return Err(NeedsFeature::refusal(flag, "sign"));
            }
        }
        let shell = Shell::new(self.quiet);
        let cwd = std::env::current_dir().map_err(|e| Failure::Build(e.into()))?;
        let start = self
            .manifest_path
            .as_deref()
            .and_then(Path::parent)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(&cwd);
        let records = record_dir();
        let load_workspace = |reuse: bool| match &records {
            Some(dir) => {
                Workspace::load_cached(&env, start, dir, reuse).map(|(ws, k)| (ws, Some(k)))
            }
            None => Workspace::load(&env, start).map(|ws| (ws, None)),
        };
        let (mut workspace, mut kept) =
            load_workspace(true).map_err(|e| Failure::Usage(e.into()))?;
        let manifest_path = self
            .manifest_path
            .clone()
            .unwrap_or_else(|| workspace.root.join(manifest::FILE_NAME));
        let checkout = Checkout::new(
            &env,
            &workspace.root,
            &toolchain::answers::dir(&workspace.target_dir),
        );
        let inputs = TagInputs {
            git: &CheckoutValues(&checkout),
            replace: (!tags.is_empty()).then_some(tags),
        };
        let mut plan = manifest::load_with(&manifest_path, &workspace, inputs);
        // A record is as current as the files it hashed, not as the toolchain
        // (whose target list it may hold): a manifest it finds wrong is checked
        // again against what cargo and rustc say now before anything is reported.
        if plan.is_err() && kept.as_ref().is_some_and(|k| k.origin() == Origin::Record) {
            (workspace, kept) = load_workspace(false).map_err(|e| Failure::Usage(e.into()))?;
            plan = manifest::load_with(&manifest_path, &workspace, inputs);
        }
        let plan = match plan {
            Ok(plan) => plan,
            Err(LoadError::Invalid(errors)) => return Err(Failure::Usage(errors.into())),
            Err(e) => return Err(Failure::Usage(e.into())),
        };
        if let Some(kept) = &kept {
            kept.keep(&workspace);
        }
        for notice in &plan.notices {
            shell.status("Skipping", notice);
        }
        let epoch = source_date_epoch(
            self.source_date_epoch.as_deref(),
            env.source_date_epoch(),
            plan.source_date_epoch,
            &workspace.root,
        )
        .map_err(Failure::Usage)?;
        let out_dir = match &self.out {
            // `.` components say nothing, and would show in every message.
            Some(out) => cwd
                .join(out)
                .components()
                .filter(|c| *c != std::path::Component::CurDir)
                .collect(),
            None => workspace.target_dir.join("images"),
        };
        crate::output::check_out_dir(&out_dir, &workspace.root)
            .map_err(|e| Failure::Usage(e.into()))?;
        let registry = self.registry_limits(plan.registry_limits);
        let cache = self.cache_settings(&plan, registry)?;
        Ok(Context {
            env,
            cache,
            registry,
            checkout,
            workspace,
            plan,
            out_dir,
            shell,
            epoch,
            jobs: self.jobs.map_or(0, usize::from),
        })
    }
}

/// The release documents' facts, asked of the toolchain in the workspace
/// with the process's environment. rustc's, cargo's and git's answers are
/// kept in the target directory between runs ([`toolchain::answers`]), and
/// the crate lists with them ([`toolchain::crates`]).
impl Facts for Context {
    fn build_inputs(&self) -> Result<BuildInputs, DocumentError> {
        let root = &self.workspace.root;
        let answers = toolchain::answers::dir(&self.workspace.target_dir);
        let lock_path = root.join("Cargo.lock");
        let lock = std::fs::read(&lock_path).map_err(|source| DocumentError::Io {
            what: format!("reading {}", lock_path.display()),
            source,
        })?;
        let versions =
            toolchain::versions::toolchain(&self.env, root, &answers).map_err(|source| {
                DocumentError::Io {
                    what: "asking rustc and cargo for their versions".into(),
                    source,
                }
            })?;
        Ok(BuildInputs {
            source: self.checkout.head().map(GitSource::from),
            toolchain: versions,
            cargo_lock: Digest::of(&lock),
        })
    }

    fn linked_crates(
        &self,
        image: &ImagePlan,
        target: &PlatformTarget,
    ) -> Result<Vec<LinkedCrates>, DocumentError> {
        let own = (&image.package, &image.build);
        let extras = image.binaries.iter().map(|b| (&b.package, &b.build));
        std::iter::once(own)
            .chain(extras)
            .map(|(package, build)| {
                Ok(toolchain::crates::load(
                    &self.env,
                    &self.workspace.root,
                    &self.workspace.target_dir,
                    package,
                    &target.triple,
                    &build.features,
                    build.default_features,
                )?)
            })
            .collect()
    }
}

/// Where the workspace record is kept: beside the running program when cargo
/// built it, in a profile directory of a target directory (which cargo marks
/// with `.fingerprint`), and so never in the output directory. A program
/// installed elsewhere asks cargo every time.
fn record_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    dir.join(".fingerprint")
        .is_dir()
        .then(|| dir.join(".scratchpack"))
}

impl Common {
    /// The flags over images.toml's `registry-limits`.
    fn registry_limits(
        &self,
        manifest: crate::registry::RegistryLimits,
    ) -> crate::registry::RegistryLimits {
        let seconds = std::time::Duration::from_secs;
        crate::registry::RegistryLimits {
            idle_timeout: self
                .registry_idle_timeout
                .map_or(manifest.idle_timeout, seconds),
            timeout: self.registry_timeout.map_or(manifest.timeout, seconds),
            ..manifest
        }
    }

    /// The flags win over images.toml's `cache`, `cache-sign-key` and
    /// `cache-verify-key`; `--no-cache` over both.
    fn cache_settings(
        &self,
        plan: &Plan,
        limits: crate::registry::RegistryLimits,
    ) -> Result<crate::action_cache::CacheSettings, Failure> {
        if self.no_cache {
            return Ok(Default::default());
        }
        let manifest = plan.cache.as_ref();
        let parse = |flag: &str, v: &Option<String>| {
            v.as_deref()
                .map(|r| {
                    crate::registry::Repository::parse(r)
                        .map_err(|e| Failure::Usage(anyhow!("{flag} `{r}`: {e}")))
                })
                .transpose()
        };
        let from = parse("--cache-from", &self.cache_from)?.or_else(|| manifest.cloned());
        let to = parse("--cache-to", &self.cache_to)?.or_else(|| manifest.cloned());
        let key =
            |flag: &Option<PathBuf>, file: &Option<PathBuf>, name: &'static str| match (flag, file)
            {
                (Some(f), _) => Some((f.clone(), format!("--{name}"))),
                (None, Some(f)) => Some((f.clone(), format!("images.toml's `{name}`"))),
                (None, None) => None,
            };
        let sign = key(
            &self.cache_sign_key,
            &plan.cache_keys.sign,
            "cache-sign-key",
        );
        let verify = key(
            &self.cache_verify_key,
            &plan.cache_keys.verify,
            "cache-verify-key",
        );
        // Keys matter only to a run that uses the cache.
        let active = from.is_some() || to.is_some();
        #[cfg(feature = "sign")]
        let keys = if active {
            cache_keys(sign, verify)?
        } else {
            None
        };
        // Without the `sign` feature a key images.toml names cannot be
        // used: refused, rather than using entries nobody vouched for.
        #[cfg(not(feature = "sign"))]
        if active && let Some((_, from)) = sign.or(verify) {
            return Err(Failure::Usage(anyhow!(
                "{from} needs scratchpack's `sign` feature, which this xtask was built \
                 without; add it to the scratchpack dependency in the xtask's Cargo.toml: \
                 `features = [\"sign\"]`"
            )));
        }
        let settings = crate::action_cache::CacheSettings::new(from, to, limits);
        #[cfg(feature = "sign")]
        let settings = crate::action_cache::CacheSettings { keys, ..settings };
        Ok(settings)
    }
}

/// The cache's signing and verifying keys, read once: a file that cannot be
/// read, or a key that cannot be decrypted, is a usage error naming where it
/// was set.
#[cfg(feature = "sign")]
fn cache_keys(
    sign: Option<(PathBuf, String)>,
    verify: Option<(PathBuf, String)>,
) -> Result<Option<std::sync::Arc<dyn crate::action_cache::EntryKeys>>, Failure> {
    use crate::action_cache::keys::CacheKeys;
    if sign.is_none() && verify.is_none() {
        return Ok(None);
    }
    let read = |(path, from): &(PathBuf, String), what: &str| {
        anyhow!(
            "reading the cache's {what} key {} (from {from})",
            path.display()
        )
    };
    let signer = sign
        .as_ref()
        .map(|s| {
            CacheKeys::read_signing(&s.0)
                .map_err(|e| Failure::Usage(anyhow::Error::new(e).context(read(s, "signing"))))
        })
        .transpose()?;
    let verifier = verify
        .as_ref()
        .map(|v| {
            CacheKeys::read_verifying(&v.0)
                .map_err(|e| Failure::Usage(anyhow::Error::new(e).context(read(v, "verifying"))))
        })
        .transpose()?;
    Ok(Some(std::sync::Arc::new(CacheKeys::new(signer, verifier))))
}

/// How `images` and `push` print results: a table, or one JSON object per image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MessageFormat {
    Human,
    Json,
}

/// Where images go when the command line overrides images.toml; shared by
/// `push` and `images --push`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Target {
    /// Push every selected image to this registry instead of the one images.toml names
    #[arg(long, value_name = "HOST[/NAMESPACE]")]
    registry: Option<String>,
    /// Allow plain HTTP to the registry (images.toml's `insecure = true` allows it per image)
    #[arg(long)]
    insecure: bool,
}

impl Target {
    /// Where `image` is in a registry: under `--registry` (plain HTTP only
    /// with `--insecure`), else where images.toml says.
    pub fn repository(&self, image: &ImagePlan) -> Result<(Repository, bool), Failure> {
        let repository = image
            .push
            .as_ref()
            .map_or(image.name.as_str(), |p| p.repository.as_str());
        match (&self.registry, &image.push) {
            (Some(r), _) => Repository::parse(&format!("{r}/{repository}"))
                .map(|repo| (repo, self.insecure))
                .map_err(|e| Failure::Usage(anyhow!("--registry `{r}`: {e}"))),
            (None, Some(p)) => Ok((p.reference.clone(), self.insecure || p.insecure)),
            (None, None) => Err(Failure::Usage(anyhow!(
                "image `{}` has no registry: set `registry` in images.toml or pass \
                 `--registry HOST[/NAMESPACE]`",
                image.name
            ))),
        }
    }

    /// `images` takes these flags only together with `--push`.
    pub fn require_push(&self, push: bool) -> Result<(), Failure> {
        if !push && (self.registry.is_some() || self.insecure) {
            return Err(Failure::Usage(anyhow!(
                "--registry and --insecure only apply with --push"
            )));
        }
        Ok(())
    }
}

/// `--sign --key FILE` of `images` and `push`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SignFlags {
    /// Sign the images and attest their SBOMs and provenance (in the registry
    /// after a push, in `<out>/<name>.release/` otherwise)
    #[arg(long, requires = "key")]
    pub(super) sign: bool,
    /// cosign's encrypted private key for --sign (password in COSIGN_PASSWORD)
    #[arg(long, value_name = "FILE", requires = "sign")]
    pub(super) key: Option<PathBuf>,
}

#[cfg(feature = "sign")]
impl SignFlags {
    /// The signer, read before anything is built or pushed so that a wrong
    /// password stops the run early.
    pub fn signer(&self) -> Result<Option<KeySigner>, Failure> {
        match (&self.sign, &self.key) {
            (true, Some(key)) => load_signer(key).map(Some),
            _ => Ok(None),
        }
    }
}

/// Reads the private key, with the password from `COSIGN_PASSWORD`.
#[cfg(feature = "sign")]
pub fn load_signer(path: &Path) -> Result<KeySigner, Failure> {
    let password = keys::password_from_env().map_err(|e| Failure::Usage(e.into()))?;
    let key: PrivateKey = keys::read_private_key(path, &password)
        .map_err(|e| Failure::Usage(anyhow::Error::new(e).context("reading the signing key")))?;
    Ok(KeySigner::new(&key))
}

/// Which pushed image a command is about, shared by `sign` and `verify`.
#[cfg(feature = "sign")]
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Selection {
    /// The pushed image's digest, when no push of it is recorded (one NAME only)
    #[arg(long, value_name = "DIGEST")]
    digest: Option<String>,
    /// The registry the image is in, instead of the one images.toml names
    #[arg(long, value_name = "HOST[/NAMESPACE]")]
    registry: Option<String>,
    /// Allow plain HTTP to the registry
    #[arg(long)]
    insecure: bool,
}

/// The images `names` selects (all with a recorded push when none), where
/// they were pushed, as [`publish::locate`] finds them.
#[cfg(feature = "sign")]
pub fn locate<'p>(
    ctx: &'p Context,
    names: &[String],
    select: &Selection,
    digest_required: bool,
) -> Result<Vec<Located<'p>>, Failure> {
    let options = LocateOptions {
        digest: select.digest.as_deref(),
        registry: select.registry.as_deref(),
        insecure: select.insecure,
    };
    publish::locate(
        &ctx.plan.images,
        &ctx.out_dir,
        names,
        &options,
        digest_required,
    )
    .map_err(|e| match e {
        LocateError::Asked(_) => Failure::Usage(e.into()),
        LocateError::Record(_) => Failure::Build(e.into()),
    })
}

/// Signs the located images and attaches their documents: `sign`, and
/// `push --sign` after its push.
#[cfg(feature = "sign")]
pub fn sign_located(
    ctx: &Context,
    common: &Common,
    signer: &KeySigner,
    located: &[Located<'_>],
) -> Result<(), Failure> {
    let targets: Vec<&str> = located.iter().map(|l| l.repository.registry()).collect();
    let creds = crate::registry::default_credentials(&targets);
    let publisher = Publisher {
        facts: ctx,
        manifest_path: relative_manifest_path(common, ctx),
        epoch: ctx.epoch,
        signer,
        creds: &creds,
        limits: ctx.registry,
    };
    Ok(publisher.sign_located(located, ctx.shell)?)
}

/// images.toml's path, relative to the workspace root when it is inside it.
pub fn manifest_path(common: &Common, ctx: &Context) -> PathBuf {
    common
        .manifest_path
        .as_ref()
        .map(|p| {
            std::env::current_dir()
                .map(|c| c.join(p))
                .unwrap_or(p.clone())
        })
        .unwrap_or_else(|| ctx.workspace.root.join(manifest::FILE_NAME))
}

/// images.toml's path as provenance records it: relative to the workspace
/// root, so that checkouts at different paths record the same.
pub fn relative_manifest_path(common: &Common, ctx: &Context) -> String {
    let manifest = manifest_path(common, ctx);
    manifest
        .strip_prefix(&ctx.workspace.root)
        .unwrap_or(&manifest)
        .to_string_lossy()
        .into_owned()
}

/// Selects images by name (all when `names` is empty) and builds them; shared
/// with the commands that need images built first.
pub fn build_selected(ctx: &Context, names: &[String]) -> Result<Vec<BuiltImage>, Failure> {
    let selected = select(&ctx.plan.images, names)?;
    let c_compilers = CCompilers::decide(&ctx.env, &ctx.plan)?;
    let compiler = Cargo {
        env: &ctx.env,
        workspace_root: &ctx.workspace.root,
        target_dir: &ctx.workspace.target_dir,
        manifests: &ctx.workspace.manifests,
        c_compilers: &c_compilers,
        shell: ctx.shell,
    };
    let opts = BuildOptions {
        out_dir: ctx.out_dir.clone(),
        epoch: ctx.epoch,
        jobs: ctx.jobs,
        proofs: Some(toolchain::answers::dir(&ctx.workspace.target_dir).join("proven.json")),
        source: source_annotations(ctx, &selected),
        c_compiler: c_compilers.key(),
    };
    let started = std::time::Instant::now();
    let built = crate::action_cache::build_cached(
        &ctx.cache,
        &ctx.env,
        &ctx.workspace,
        &selected,
        &compiler,
        &opts,
        ctx.shell,
    );
    // Nothing is started after an interrupt: not the images' tests, not a
    // run, not a push, whether the build was stopped or had just ended.
    if crate::compile::interrupt::interrupted() {
        return Err(Failure::Interrupted);
    }
    let built = built?;
    ctx.shell.status(
        "Finished",
        format!(
            "{} image{} in {:.2}s, in {}",
            built.len(),
            if built.len() == 1 { "" } else { "s" },
            started.elapsed().as_secs_f64(),
            ctx.out_dir.display()
        ),
    );
    Ok(built)
}

/// Where the images come from, for their source annotations: asked of git
/// only when one of `images` carries them. A checkout with changes not
/// committed records no revision, and says so.
fn source_annotations(ctx: &Context, images: &[&ImagePlan]) -> assemble::Source {
    if !images.iter().any(|i| i.source_annotations) {
        return assemble::Source::default();
    }
    let Some(head) = ctx.checkout.head() else {
        return assemble::Source::default();
    };
    let clean = ctx.checkout.dirty() == Some(false);
    if !clean {
        ctx.shell.warn(format!(
            "tracked files have changes not committed: the images record no \
             `{}` (HEAD is {})",
            assemble::ANNOTATION_REVISION,
            head.commit
        ));
    }
    assemble::Source {
        revision: clean.then(|| head.commit.clone()),
        url: head.origin.as_deref().and_then(assemble::source_url),
    }
}

/// Writes `--image-refs FILE`: one `registry/repository@sha256:…` per line,
/// in plan order (ko's format), written aside and renamed into place, so a
/// deploy step never reads half a list.
pub fn write_image_refs(path: &Path, references: &[String]) -> Result<(), Failure> {
    let mut text = String::new();
    for r in references {
        text.push_str(r);
        text.push('\n');
    }
    crate::output::write_atomic(path, text.as_bytes()).map_err(|e| {
        Failure::Build(anyhow::Error::new(e).context(format!("writing {}", path.display())))
    })
}

/// `(name, reference)` pairs sorted by where their image is in images.toml,
/// whatever order they were named or built in; only the references.
pub fn in_plan_order(ctx: &Context, mut pairs: Vec<(String, String)>) -> Vec<String> {
    let place = |name: &str| ctx.plan.images.iter().position(|i| i.name == name);
    pairs.sort_by_key(|(name, _)| place(name));
    pairs.into_iter().map(|(_, r)| r).collect()
}

/// The names a partitioned run builds; `None` when its share is empty (said
/// on stderr), since no names would mean every image.
pub fn partitioned(
    ctx: &Context,
    names: &[String],
    partition: Option<crate::partition::Partition>,
) -> Result<Option<Vec<String>>, Failure> {
    let Some(p) = partition else {
        return Ok(Some(names.to_vec()));
    };
    let selected = select(&ctx.plan.images, names)?;
    let mine = p.select(&selected);
    if mine.is_empty() {
        ctx.shell
            .status("Finished", format!("partition {p} has no images"));
        return Ok(None);
    }
    Ok(Some(mine.into_iter().map(|i| i.name.clone()).collect()))
}

/// `--platform` of `images` and `test-images`: only these platforms of each
/// selected image are built (and tested).
#[derive(Debug, Default, clap::Args)]
pub struct PlatformFlags {
    /// Only this platform of each image, e.g. linux/arm64 (repeatable, or
    /// comma-separated) [default: every platform images.toml gives it]
    #[arg(
        long = "platform",
        value_name = "OS/ARCH[/VARIANT]",
        value_delimiter = ',',
        value_parser = parse_platform
    )]
    pub(super) platforms: Vec<Platform>,
}

fn parse_platform(s: &str) -> Result<Platform, String> {
    Platform::parse(s).ok_or_else(|| {
        format!(
            "`{s}` is not a supported platform; platforms: {}",
            Platform::supported_list()
        )
    })
}

impl Context {
    /// Keeps only `platforms` of the images `names` selects (every image
    /// when none are named), so that a build compiles and packs those alone
    /// and writes images of those platforms. An image with none of them is
    /// an error naming the platforms it has; no platforms keeps everything.
    pub fn keep_platforms(
        &mut self,
        names: &[String],
        platforms: &[Platform],
    ) -> Result<(), Failure> {
        if platforms.is_empty() {
            return Ok(());
        }
        let selected: Vec<String> = select(&self.plan.images, names)?
            .into_iter()
            .map(|i| i.name.clone())
            .collect();
        for image in &mut self.plan.images {
            if !selected.contains(&image.name) {
                continue;
            }
            let has: Vec<String> = image
                .targets
                .iter()
                .map(|t| t.platform.to_string())
                .collect();
            image.targets.retain(|t| platforms.contains(&t.platform));
            if image.targets.is_empty() {
                let wanted: Vec<String> = platforms.iter().map(ToString::to_string).collect();
                return Err(Failure::Usage(anyhow!(
                    "image `{}` is not built for {} (images.toml gives it {})",
                    image.name,
                    wanted.join(", "),
                    has.join(", ")
                )));
            }
        }
        Ok(())
    }
}

pub fn select<'p>(
    images: &'p [ImagePlan],
    names: &[String],
) -> Result<Vec<&'p ImagePlan>, Failure> {
    if names.is_empty() {
        return Ok(images.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            images.iter().find(|i| &i.name == n).ok_or_else(|| {
                let known: Vec<&str> = images.iter().map(|i| i.name.as_str()).collect();
                Failure::Usage(anyhow!(
                    "no image named `{n}` in images.toml; images: {}",
                    known.join(", ")
                ))
            })
        })
        .collect()
}

/// The image timestamp, from the first of: `--source-date-epoch`, the
/// `SOURCE_DATE_EPOCH` variable (reproducible-builds.org), `source-date-epoch`
/// in images.toml; else 0. The flag comes first because a release pipeline
/// that changes an environment variable on every commit also reruns the
/// build scripts of the xtask's dependencies that watch it.
fn source_date_epoch(
    flag: Option<&str>,
    env: Option<&str>,
    manifest: Option<manifest::ManifestEpoch>,
    root: &Path,
) -> Result<u64, anyhow::Error> {
    let given = |value: &str, source: &str| -> Result<u64, anyhow::Error> {
        let v = value.trim();
        if v == "git" {
            return git_epoch(root).map_err(|e| e.context(format!("{source} is `git`")));
        }
        match v.parse::<u64>() {
            Ok(epoch) if epoch <= manifest::LATEST_EPOCH => Ok(epoch),
            Ok(_) => Err(anyhow::anyhow!(
                "{source} is `{value}`, later than a layer's tar headers can record ({})",
                manifest::LATEST_EPOCH
            )),
            Err(_) => Err(anyhow::anyhow!(
                "{source} is `{value}`, not a number of seconds since 1970 or `git`"
            )),
        }
    };
    if let Some(v) = flag {
        return given(v, "--source-date-epoch");
    }
    if let Some(v) = env.filter(|v| !v.trim().is_empty()) {
        return given(v, "SOURCE_DATE_EPOCH");
    }
    match manifest {
        Some(manifest::ManifestEpoch::Seconds(s)) => Ok(s),
        Some(manifest::ManifestEpoch::Git) => {
            git_epoch(root).map_err(|e| e.context("images.toml sets `source-date-epoch = \"git\"`"))
        }
        None => Ok(0),
    }
}

/// The committer time of the workspace's last commit.
fn git_epoch(root: &Path) -> Result<u64, anyhow::Error> {
    Ok(toolchain::git::last_commit_time(root)?)
}

/// What a command left out of this build takes: anything, so the refusal
/// says which feature brings it back rather than that the command is unknown.
#[cfg(not(all(feature = "push", feature = "sign")))]
#[derive(Debug, clap::Args)]
pub struct NeedsFeature {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    rest: Vec<String>,
}

#[cfg(not(all(feature = "push", feature = "sign")))]
impl NeedsFeature {
    /// `what` is a command (`push`) or a flag (`--push`).
    fn refusal(what: &str, feature: &str) -> Failure {
        let what = if what.starts_with('-') {
            format!("`{what}`")
        } else {
            format!("`cargo xtask {what}`")
        };
        Failure::Usage(anyhow!(
            "{what} needs scratchpack's `{feature}` feature, which this xtask was built \
             without; add it to the scratchpack dependency in the xtask's Cargo.toml: \
             `features = [\"{feature}\"]`"
        ))
    }
}

/// What `test-images` and `run` take where there is no sandbox: anything,
/// so the refusal says why rather than complaining about flags.
#[cfg(not(target_os = "linux"))]
#[derive(Debug, clap::Args)]
pub struct NeedsLinux {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    rest: Vec<String>,
}

#[cfg(not(target_os = "linux"))]
impl NeedsLinux {
    fn refusal(command: &str) -> Failure {
        Failure::Usage(anyhow!(
            "`cargo xtask {command}` runs images in a Linux namespace sandbox, which this \
             system does not have; building, pushing and signing work here, image tests \
             need Linux (a CI runner, a VM or WSL)"
        ))
    }
}

/// Makes SIGINT and SIGTERM stop every running sandbox, so what they had
/// unpacked can be removed before the process ends, and stop the build if
/// one runs; the flag says a signal came. Must be called before any thread
/// starts, as `on_termination` requires.
#[cfg(target_os = "linux")]
fn stop_sandboxes_on_termination() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>, Failure>
{
    on_termination(|_, _| sandbox::signals::stop_all())
}

/// Makes SIGINT and SIGTERM set the returned flag, stop the build if one
/// runs (every cargo then runs in a process group of its own, which the
/// signal is passed to), then call `then` with the signal and whether a
/// build was stopped. A second signal ends the process at once. Must be
/// called before any thread starts, as `on_termination` requires.
#[cfg(target_os = "linux")]
fn on_termination(
    then: impl FnOnce(i32, bool) + Send + 'static,
) -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>, Failure> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let cancelled = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cancelled);
    sandbox::signals::on_termination(move |signal| {
        flag.store(true, Ordering::SeqCst);
        let building = crate::compile::interrupt::interrupt(signal);
        then(signal, building);
    })
    .map_err(|e| Failure::Build(anyhow::Error::new(e).context("handling termination signals")))?;
    crate::compile::interrupt::arm();
    Ok(cancelled)
}

/// Runs the command line and returns the process's exit code.
pub fn main() -> ExitCode {
    // Image tests re-execute this program as the sandbox helper; it must
    // become the helper before anything else runs, threads above all.
    #[cfg(target_os = "linux")]
    sandbox::helper::run_if_requested();
    // Build scripts run this program as their C compiler, with cargo's
    // variables, those of rustc's wrapper below among them: it is asked
    // first.
    toolchain::cc::wrapper::run_if_requested();
    toolchain::cc::cmake::run_if_requested();
    // Cargo runs this program as rustc's wrapper to link crate lists in.
    crate::compile::dep_v0::run_if_requested();
    let command = Cli::parse().command;
    let result = stop_builds_on_termination(&command).and_then(|()| dispatch(command));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => {
            report(&e);
            ExitCode::from(2)
        }
        Err(Failure::Build(e)) => {
            report(&e);
            ExitCode::from(1)
        }
        Err(Failure::Interrupted) => {
            Shell::new(false).warn("interrupted: the build was stopped and nothing was started");
            ExitCode::from(130)
        }
    }
}

/// `images` and `push` take SIGINT and SIGTERM over only to stop a build
/// with them; at any other time they end at once, as without a handler.
/// `test-images` and `run` take them over themselves; the other commands
/// build nothing.
fn stop_builds_on_termination(command: &Command) -> Result<(), Failure> {
    #[cfg(target_os = "linux")]
    if matches!(command, Command::Images(_) | Command::Push(_)) {
        on_termination(|signal, building| {
            if !building {
                std::process::exit(128 + signal);
            }
        })?;
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
    Ok(())
}

/// Runs one parsed command.
fn dispatch(command: Command) -> Result<(), Failure> {
    match command.with_no_cache() {
        #[cfg(not(feature = "sign"))]
        Command::Images(args) if args.sign.sign => Err(NeedsFeature::refusal("--sign", "sign")),
        Command::Images(args) if args.push && args.partition.is_some() => {
            Err(Failure::Usage(anyhow!(
                "--partition does not apply with --push: push once, after the partitioned builds"
            )))
        }
        Command::Images(args) if args.push && !args.platforms.platforms.is_empty() => {
            Err(Failure::Usage(anyhow!(
                "--platform does not apply with --push: a tag in a registry names the whole \
                 image, every platform images.toml gives it"
            )))
        }
        // `images --push` is `push` with the same selection and format.
        #[cfg(feature = "push")]
        Command::Images(args) if args.push => args.push_target.require_push(true).and_then(|()| {
            push::run(push::Args {
                names: args.names,
                target: args.push_target,
                message_format: args.message_format,
                tags: args.tags,
                image_refs: args.image_refs,
                #[cfg(feature = "sign")]
                sign: args.sign,
                common: args.common,
            })
        }),
        #[cfg(not(feature = "push"))]
        Command::Images(args) if args.push => Err(NeedsFeature::refusal("--push", "push")),
        Command::Images(args) => images::run(args),
        Command::Load(args) => load::run(args),
        #[cfg(target_os = "linux")]
        Command::TestImages(args) => test_images::run(args),
        #[cfg(not(target_os = "linux"))]
        Command::TestImages(_) => Err(NeedsLinux::refusal("test-images")),
        #[cfg(feature = "push")]
        Command::Push(args) => push::run(args),
        #[cfg(not(feature = "push"))]
        Command::Push(_) => Err(NeedsFeature::refusal("push", "push")),
        #[cfg(feature = "push")]
        Command::Resolve(args) => resolve::run(args, &push::push_quietly),
        #[cfg(not(feature = "push"))]
        Command::Resolve(_) => Err(NeedsFeature::refusal("resolve", "push")),
        #[cfg(feature = "push")]
        Command::Tag(args) => tag::run(args),
        #[cfg(not(feature = "push"))]
        Command::Tag(_) => Err(NeedsFeature::refusal("tag", "push")),
        #[cfg(feature = "sign")]
        Command::Keygen(args) => keygen::run(args),
        #[cfg(feature = "sign")]
        Command::Sign(args) => sign::run(args),
        #[cfg(feature = "sign")]
        Command::Verify(args) => verify::run(args),
        #[cfg(not(feature = "sign"))]
        Command::Keygen(_) => Err(NeedsFeature::refusal("keygen", "sign")),
        #[cfg(not(feature = "sign"))]
        Command::Sign(_) => Err(NeedsFeature::refusal("sign", "sign")),
        #[cfg(not(feature = "sign"))]
        Command::Verify(_) => Err(NeedsFeature::refusal("verify", "sign")),
        #[cfg(target_os = "linux")]
        Command::Run(args) => run::run(args),
        #[cfg(not(target_os = "linux"))]
        Command::Run(_) => Err(NeedsLinux::refusal("run")),
    }
}

fn report(e: &anyhow::Error) {
    let shell = Shell::new(false);
    if let Some(errors) = e.downcast_ref::<SourceErrors>() {
        eprint!("{}", errors.render(shell.color()));
        return;
    }
    let label = shell.paint("error", "1;31");
    eprintln!("{label}: {e}");
    for cause in e.chain().skip(1) {
        eprintln!("\nCaused by:\n    {cause}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ManifestEpoch;

    /// What `cargo xtask ARGS` answers before it reads any workspace: a
    /// usage refusal's words, or `None` when it went on.
    #[cfg(not(all(feature = "push", feature = "sign")))]
    fn refusal(args: &[&str]) -> Option<String> {
        let cli = Cli::try_parse_from(std::iter::once("xtask").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?} did not parse: {e}"));
        match dispatch(cli.command) {
            Err(Failure::Usage(e)) => Some(e.to_string()),
            _ => None,
        }
    }

    /// A command left out of the build is still known, and says which
    /// feature brings it back, whatever flags it is given.
    #[cfg(not(feature = "push"))]
    #[test]
    fn without_push_the_push_commands_name_the_feature() {
        for args in [
            &["push"][..],
            &["push", "hello", "--registry", "r.example/x", "--sign"],
            &["images", "--push"],
        ] {
            let e = refusal(args).unwrap();
            assert!(e.contains("`push` feature"), "{args:?}: {e}");
            assert!(e.contains(r#"features = ["push"]"#), "{args:?}: {e}");
        }
    }

    #[cfg(not(feature = "sign"))]
    #[test]
    fn without_sign_the_signing_commands_name_the_feature() {
        for args in [
            &["sign", "hello"][..],
            &["keygen", "--out", "/nonexistent"],
            &["verify", "--key", "k.pub", "hello"],
            &["images", "--sign", "--key", "k"],
            &["images", "--cache-sign-key", "cache.key"],
            &["images", "--cache-verify-key", "cache.pub", "--no-cache"],
        ] {
            let e = refusal(args).unwrap();
            assert!(e.contains("`sign` feature"), "{args:?}: {e}");
            assert!(e.contains(r#"features = ["sign"]"#), "{args:?}: {e}");
        }
    }

    #[test]
    fn the_flag_beats_the_variable_which_beats_the_manifest() {
        let root = Path::new("/");
        let m = Some(ManifestEpoch::Seconds(3));
        assert_eq!(source_date_epoch(Some("1"), Some("2"), m, root).unwrap(), 1);
        assert_eq!(source_date_epoch(None, Some("2"), m, root).unwrap(), 2);
        assert_eq!(source_date_epoch(None, Some(" "), m, root).unwrap(), 3);
        assert_eq!(source_date_epoch(None, None, None, root).unwrap(), 0);
    }

    #[test]
    fn a_bad_value_names_its_source() {
        let root = Path::new("/");
        let e = source_date_epoch(Some("soon"), None, None, root).unwrap_err();
        assert!(
            e.to_string().contains("--source-date-epoch is `soon`"),
            "{e}"
        );
        let e = source_date_epoch(None, Some("-1"), None, root).unwrap_err();
        assert!(e.to_string().contains("SOURCE_DATE_EPOCH is `-1`"), "{e}");
        let e = source_date_epoch(None, Some("99999999999999"), None, root).unwrap_err();
        assert!(e.to_string().contains("later than"), "{e}");
    }

    #[test]
    fn git_takes_the_last_commit_time() {
        let dir = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let ok = std::process::Command::new("git")
                .args(args)
                .current_dir(dir.path())
                .env("GIT_COMMITTER_DATE", "@1700000000 +0000")
                .env("GIT_AUTHOR_DATE", "@1700000000 +0000")
                .output()
                .unwrap()
                .status
                .success();
            assert!(ok, "git {args:?}");
        };
        let e = source_date_epoch(None, None, Some(ManifestEpoch::Git), dir.path()).unwrap_err();
        assert!(format!("{e:#}").contains("source-date-epoch"), "{e:#}");
        git(&["init", "-q"]);
        git(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "t",
        ]);
        let got = source_date_epoch(None, None, Some(ManifestEpoch::Git), dir.path()).unwrap();
        assert_eq!(got, 1_700_000_000);
        let got = source_date_epoch(Some("git"), Some("5"), None, dir.path()).unwrap();
        assert_eq!(got, 1_700_000_000);
    }
}

//! The command line, shared by every workspace's xtask: `cargo xtask images`
//! and friends. Exit codes: 0 success, 1 build failure, 2 bad manifest or usage.

mod images;
#[cfg(feature = "sign")]
mod keygen;
#[cfg(feature = "push")]
mod push;
#[cfg(target_os = "linux")]
mod run;
#[cfg(feature = "sign")]
mod sign;
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

use crate::diagnostic::SourceErrors;
use crate::manifest::{self, LoadError, Plan, PlatformTarget};
use crate::oci::Digest;
use crate::release::documents::{BuildInputs, DocumentError, Facts};
#[cfg(feature = "sign")]
use crate::release::keys::{self, PrivateKey};
#[cfg(feature = "sign")]
use crate::release::publish::{self, LocateError, LocateOptions, Located, Publisher};
#[cfg(feature = "sign")]
use crate::release::sign::KeySigner;
use crate::shell::Shell;
use crate::toolchain::crates::LinkedCrates;
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
    /// Use no registry cache, whatever images.toml or the flags say: set
    /// by the `--no-cache` of the commands that have one.
    #[arg(skip)]
    no_cache: bool,
}

/// The loaded context of a command: environment, workspace, plan and
/// settings.
pub struct Context {
    /// The process's environment, read once here and passed down.
    pub env: Env,
    pub workspace: Workspace,
    pub plan: Plan,
    pub out_dir: PathBuf,
    pub shell: Shell,
    pub epoch: u64,
    /// Threads that pack (`-j`); 0 for one per core.
    pub jobs: usize,
    /// The registry build cache to read and write.
    pub cache: crate::action_cache::CacheSettings,
}

/// Why a command failed, and so its exit code.
pub enum Failure {
    /// Bad manifest or usage: exit 2.
    Usage(anyhow::Error),
    /// Anything else: exit 1.
    Build(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Build(e.into())
    }
}

impl Common {
    fn load(&self) -> Result<Context, Failure> {
        let env = Env::from_process();
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
        let mut plan = manifest::load(&manifest_path, &workspace);
        // A record is as current as the files it hashed, not as the toolchain
        // (whose target list it may hold): a manifest it finds wrong is checked
        // again against what cargo and rustc say now before anything is reported.
        if plan.is_err() && kept.as_ref().is_some_and(|k| k.origin() == Origin::Record) {
            (workspace, kept) = load_workspace(false).map_err(|e| Failure::Usage(e.into()))?;
            plan = manifest::load(&manifest_path, &workspace);
        }
        let plan = match plan {
            Ok(plan) => plan,
            Err(LoadError::Invalid(errors)) => return Err(Failure::Usage(errors.into())),
            Err(e) => return Err(Failure::Usage(e.into())),
        };
        if let Some(kept) = &kept {
            kept.keep(&workspace);
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
        let cache = self.cache_settings(plan.cache.as_ref())?;
        Ok(Context {
            env,
            cache,
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
            source: toolchain::git::source(&self.env, root, &answers),
            toolchain: versions,
            cargo_lock: Digest::of(&lock),
        })
    }

    fn linked_crates(
        &self,
        image: &ImagePlan,
        target: &PlatformTarget,
    ) -> Result<LinkedCrates, DocumentError> {
        Ok(toolchain::crates::load(
            &self.env,
            &self.workspace.root,
            &self.workspace.target_dir,
            &image.package,
            &target.triple,
            &image.build.features,
            image.build.default_features,
        )?)
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
    /// The flags win over images.toml's `cache`; `--no-cache` over both.
    fn cache_settings(
        &self,
        manifest: Option<&crate::registry::Repository>,
    ) -> Result<crate::action_cache::CacheSettings, Failure> {
        if self.no_cache {
            return Ok(Default::default());
        }
        let parse = |flag: &str, v: &Option<String>| {
            v.as_deref()
                .map(|r| {
                    crate::registry::Repository::parse(r)
                        .map_err(|e| Failure::Usage(anyhow!("{flag} `{r}`: {e}")))
                })
                .transpose()
        };
        Ok(crate::action_cache::CacheSettings {
            from: parse("--cache-from", &self.cache_from)?.or_else(|| manifest.cloned()),
            to: parse("--cache-to", &self.cache_to)?.or_else(|| manifest.cloned()),
        })
    }
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
    )?;
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
/// unpacked can be removed before the process ends; the flag says a signal
/// came. Must be called before any thread starts, as `on_termination`
/// requires.
#[cfg(target_os = "linux")]
fn stop_sandboxes_on_termination() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>, Failure>
{
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let cancelled = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cancelled);
    sandbox::signals::on_termination(move |_| {
        flag.store(true, Ordering::SeqCst);
        sandbox::signals::stop_all();
    })
    .map_err(|e| Failure::Build(anyhow::Error::new(e).context("handling termination signals")))?;
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
    // Cargo runs this program as rustc's wrapper to link crate lists in.
    crate::compile::dep_v0::run_if_requested();
    let result = dispatch(Cli::parse().command);
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
    }
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
        // `images --push` is `push` with the same selection and format.
        #[cfg(feature = "push")]
        Command::Images(args) if args.push => args.push_target.require_push(true).and_then(|()| {
            push::run(push::Args {
                names: args.names,
                target: args.push_target,
                message_format: args.message_format,
                #[cfg(feature = "sign")]
                sign: args.sign,
                common: args.common,
            })
        }),
        #[cfg(not(feature = "push"))]
        Command::Images(args) if args.push => Err(NeedsFeature::refusal("--push", "push")),
        Command::Images(args) => images::run(args),
        #[cfg(target_os = "linux")]
        Command::TestImages(args) => test_images::run(args),
        #[cfg(not(target_os = "linux"))]
        Command::TestImages(_) => Err(NeedsLinux::refusal("test-images")),
        #[cfg(feature = "push")]
        Command::Push(args) => push::run(args),
        #[cfg(not(feature = "push"))]
        Command::Push(_) => Err(NeedsFeature::refusal("push", "push")),
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

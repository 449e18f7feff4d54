//! The command line, shared by every workspace's xtask: `cargo xtask images`
//! and friends. Exit codes: 0 success, 1 build failure, 2 bad manifest or usage.

mod images;
mod push;
mod run;
mod table;
mod test_images;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::diagnostic::SourceErrors;
use crate::manifest::{self, LoadError, Plan};
use crate::shell::Shell;
use crate::workspace::Workspace;

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
    /// Build what is out of date, then push images to their registries
    Push(push::Args),
    /// Build what is out of date, then run the tests images.toml declares, in a sandbox
    TestImages(test_images::Args),
    /// Build the image if out of date, then run it in a sandbox, like `docker run --rm`
    Run(run::Args),
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
}

/// The loaded context of a command: workspace, plan and settings.
pub struct Context {
    pub workspace: Workspace,
    pub plan: Plan,
    pub out_dir: PathBuf,
    pub shell: Shell,
    pub epoch: u64,
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
        let shell = Shell::new(self.quiet);
        let cwd = std::env::current_dir().map_err(|e| Failure::Build(e.into()))?;
        let start = self
            .manifest_path
            .as_deref()
            .and_then(Path::parent)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(&cwd);
        let workspace = Workspace::load(start).map_err(|e| Failure::Usage(e.into()))?;
        let manifest_path = self
            .manifest_path
            .clone()
            .unwrap_or_else(|| workspace.root.join(manifest::FILE_NAME));
        let plan = match manifest::load(&manifest_path, &workspace) {
            Ok(plan) => plan,
            Err(LoadError::Invalid(errors)) => return Err(Failure::Usage(errors.into())),
            Err(e) => return Err(Failure::Usage(e.into())),
        };
        let epoch = source_date_epoch().map_err(Failure::Usage)?;
        let out_dir = match &self.out {
            Some(out) => cwd.join(out),
            None => workspace.target_dir.join("images"),
        };
        Ok(Context {
            workspace,
            plan,
            out_dir,
            shell,
            epoch,
        })
    }
}

/// `SOURCE_DATE_EPOCH` (reproducible-builds.org), else 0.
fn source_date_epoch() -> Result<u64, anyhow::Error> {
    // The latest time a ustar header's 11 octal digits hold (in 2242).
    const LATEST: u64 = 0o77_777_777_777;
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => match v.trim().parse::<u64>() {
            Ok(epoch) if epoch <= LATEST => Ok(epoch),
            Ok(_) => Err(anyhow::anyhow!(
                "SOURCE_DATE_EPOCH is `{v}`, later than a layer's tar headers can record ({LATEST})"
            )),
            Err(_) => Err(anyhow::anyhow!(
                "SOURCE_DATE_EPOCH is `{v}`, not a number of seconds since 1970"
            )),
        },
        _ => Ok(0),
    }
}

/// Runs the command line and returns the process's exit code.
pub fn main() -> ExitCode {
    // Image tests re-execute this program as the sandbox helper; it must
    // become the helper before anything else runs, threads above all.
    sandbox::helper::run_if_requested();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Images(args) => images::run(args),
        Command::TestImages(args) => test_images::run(args),
        Command::Push(args) => push::run(args),
        Command::Run(args) => run::run(args),
    };
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

//! `cargo xtask test-images [NAME…]`: build what is out of date, then run
//! every test images.toml declares for the selected images, on every
//! platform, in the namespace sandbox; report like `cargo test` does.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use anyhow::{Context as _, anyhow};

use super::{Common, Context, Failure, PlatformFlags};
use crate::build::BuiltImage;
use crate::output::OutputLock;
use crate::testing::{self, Subject, TestReport, Verdict, junit};
use crate::unpack;

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Images to test [default: all in images.toml]
    #[arg(value_name = "NAME")]
    names: Vec<String>,
    /// Also write the results as JUnit XML to this file
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Run every test, even those that passed before with the same image,
    /// and build without the registry cache
    #[arg(long)]
    pub(super) no_cache: bool,
    /// Test only this run's share of the images: `hash:I/N` or `count:I/N`
    #[arg(long, value_name = "hash:I/N")]
    partition: Option<crate::partition::Partition>,
    /// Fail when a test is skipped because this host cannot run its platform
    /// (no qemu-user-static for it)
    #[arg(long)]
    require_all_platforms: bool,
    #[command(flatten)]
    platforms: PlatformFlags,
    #[command(flatten)]
    pub(super) common: Common,
}

pub(super) fn run(args: Args) -> Result<(), Failure> {
    // Ctrl-C or SIGTERM stops the sandboxes and lets every unpacked image be
    // removed before the process ends (a second signal ends it at once).
    // Nothing has started a thread yet.
    let cancelled = super::stop_sandboxes_on_termination()?;
    let mut ctx = args.common.load()?;
    let Some(names) = super::partitioned(&ctx, &args.names, args.partition)? else {
        return Ok(());
    };
    ctx.keep_platforms(&names, &args.platforms.platforms)?;
    let built = super::build_selected(&ctx, &names)?;
    // Held while tests read the layouts, so another run cannot replace an
    // image under them.
    let lock = OutputLock::acquire(&ctx.out_dir)
        .with_context(|| format!("locking {}", ctx.out_dir.display()))?;
    let (subjects, strict) = subjects(&ctx, &built)?;

    let total: usize = subjects.iter().map(|s| s.tests.len()).sum();
    let opts = testing::TestOptions {
        out_dir: ctx.out_dir.clone(),
        use_cache: !args.no_cache,
        // `-j` (shared with packing) bounds the tests run at once too.
        jobs: match ctx.jobs {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            n => n,
        },
        helper: None,
        emulator_dir: ctx.env.emulator_dir(),
        cancelled: std::sync::Arc::clone(&cancelled),
    };
    // Which limits hold depends on the host and the caller: said once.
    ctx.shell.status("Sandbox", sandbox::cgroup::notice());
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "\nrunning {total} image test{}",
        if total == 1 { "" } else { "s" }
    )?;
    let reports = testing::run(&subjects, &opts, |r| {
        let status = match r.verdict {
            Verdict::Passed => ctx.shell.paint("ok", "32"),
            Verdict::Failed => ctx.shell.paint("FAILED", "31"),
            Verdict::Cached => ctx.shell.paint("cached", "36"),
            Verdict::Skipped => ctx.shell.paint("skipped", "33"),
        };
        let _ = writeln!(stdout, "test {} ... {status}", r.id);
        if r.verdict == Verdict::Skipped {
            let reason = r.failure.as_deref().unwrap_or("skipped");
            let _ = writeln!(stdout, "    skipped: {}", testing::printable(reason));
        }
    });

    if cancelled.load(Ordering::SeqCst) {
        // Every sandbox has stopped and every unpacked image is removed.
        stdout.flush()?;
        drop(lock);
        ctx.shell.warn(format!(
            "interrupted: {} of {total} image tests ran; unpacked images removed",
            reports.len()
        ));
        std::process::exit(130);
    }
    report(&ctx, &args, &reports, &mut stdout)?;
    outcome(&args, &reports, &strict)
}

/// What to test: each platform of each built image that declares tests,
/// read back from the layout this run built; and the images whose manifest
/// asks that every platform run.
fn subjects(ctx: &Context, built: &[BuiltImage]) -> Result<(Vec<Subject>, Vec<String>), Failure> {
    let mut subjects = Vec::new();
    let mut strict: Vec<String> = Vec::new();
    for b in built {
        let plan = ctx
            .plan
            .images
            .iter()
            .find(|i| i.name == b.name)
            .ok_or_else(|| anyhow!("built image `{}` is not in the plan", b.name))?;
        if plan.tests.is_empty() {
            continue;
        }
        // Another run may have replaced the layout between this run's build
        // and its taking the lock: test only what this run built.
        let index = crate::oci::LayoutDir::open(&b.layout)
            .and_then(|l| l.read_small("index.json"))
            .with_context(|| format!("reading the image layout {}", b.layout.display()))?;
        if crate::oci::Digest::of(&index).as_str() != b.index_json {
            return Err(Failure::Build(anyhow!(
                "image `{}` at {} was replaced by another run after this one built it; run again",
                b.name,
                b.layout.display()
            )));
        }
        let images = unpack::read_layout(&b.layout)
            .with_context(|| format!("reading the image layout {}", b.layout.display()))?;
        let settings = &plan.test_settings;
        if settings.require_all_platforms {
            strict.push(b.name.clone());
        }
        for image in images {
            subjects.push(Subject {
                name: b.name.clone(),
                layout: b.layout.clone(),
                image,
                tests: plan.tests.clone(),
                unpack_limits: unpack::UnpackLimits::from_keys(&settings.unpack_limits),
            });
        }
    }
    Ok((subjects, strict))
}

/// The closing report, as `cargo test` prints it: each failure with what the
/// program printed, the JUnit file if asked for, why tests were skipped, and
/// the counts.
fn report(
    ctx: &Context,
    args: &Args,
    reports: &[TestReport],
    stdout: &mut impl Write,
) -> Result<(), Failure> {
    let failed: Vec<&TestReport> = reports
        .iter()
        .filter(|r| r.verdict == Verdict::Failed)
        .collect();
    if !failed.is_empty() {
        writeln!(stdout, "\nfailures:")?;
        for r in &failed {
            writeln!(stdout, "\n---- {} ----", r.id)?;
            // Failures quote what the program printed: escaped, so it cannot
            // rewrite the lines around it on a terminal.
            let failure = r.failure.as_deref().unwrap_or("failed");
            writeln!(stdout, "{}", testing::printable(failure))?;
            if !r.output.is_empty() {
                write!(stdout, "{}", testing::printable(&r.output))?;
            }
        }
        writeln!(stdout, "\nfailures:")?;
        for r in &failed {
            writeln!(stdout, "    {}", r.id)?;
        }
    }
    if let Some(path) = &args.junit {
        testing::write_atomic(path, junit::render(reports).as_bytes())
            .with_context(|| format!("writing the JUnit report {}", path.display()))?;
    }
    let count = |v: Verdict| reports.iter().filter(|r| r.verdict == v).count();
    let skipped = count(Verdict::Skipped);
    if skipped > 0 {
        // Said loudly, once, at the end: which platforms did not run and why.
        let mut reasons: Vec<&str> = reports
            .iter()
            .filter(|r| r.verdict == Verdict::Skipped)
            .filter_map(|r| r.failure.as_deref())
            .collect();
        reasons.sort_unstable();
        reasons.dedup();
        ctx.shell.warn(format!(
            "{skipped} image test{} skipped: {}",
            if skipped == 1 { " was" } else { "s were" },
            reasons.join("; ")
        ));
    }
    // A cached test is a pass whose image and definition have not changed;
    // the closing line, as test runners print it, counts it as passed.
    writeln!(
        stdout,
        "\n{} cached (image and test unchanged since they passed)\n{} passed, {} failed, {skipped} skipped",
        count(Verdict::Cached),
        count(Verdict::Passed) + count(Verdict::Cached),
        count(Verdict::Failed),
    )?;
    stdout.flush()?;
    Ok(())
}

/// The run fails when a test failed, or when a test was skipped that had
/// to run (`--require-all-platforms`, or the image's `require-all-platforms`).
fn outcome(args: &Args, reports: &[TestReport], strict: &[String]) -> Result<(), Failure> {
    let count = |v: Verdict| reports.iter().filter(|r| r.verdict == v).count();
    let failed = count(Verdict::Failed);
    if failed > 0 {
        return Err(Failure::Build(anyhow!(
            "{failed} image test{} failed",
            if failed == 1 { "" } else { "s" }
        )));
    }
    let skipped = count(Verdict::Skipped);
    if skipped > 0 && args.require_all_platforms {
        return Err(Failure::Build(anyhow!(
            "{skipped} image test{} skipped and --require-all-platforms was given",
            if skipped == 1 { " was" } else { "s were" }
        )));
    }
    let strict_skips: Vec<String> = reports
        .iter()
        .filter(|r| r.verdict == Verdict::Skipped && strict.contains(&r.id.image))
        .map(|r| r.id.to_string())
        .collect();
    if !strict_skips.is_empty() {
        return Err(Failure::Build(anyhow!(
            "skipped, but images.toml sets `require-all-platforms` for the image: {}",
            strict_skips.join(", ")
        )));
    }
    Ok(())
}

//! `cargo xtask test-images [NAME…]`: build what is out of date, then run
//! every test images.toml declares for the selected images, on every
//! platform, in the namespace sandbox; report like `cargo test` does.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, anyhow};

use super::{Common, Failure};
use crate::output::OutputLock;
use crate::testing::{self, Subject, TestReport, Verdict, junit, unpack};

#[derive(Debug, clap::Args)]
pub struct Args {
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
    /// How many tests run at once [default: the number of CPUs]
    #[arg(long, short, value_name = "N")]
    jobs: Option<usize>,
    #[command(flatten)]
    pub(super) common: Common,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let ctx = args.common.load()?;
    let Some(names) = super::partitioned(&ctx, &args.names, args.partition)? else {
        return Ok(());
    };
    let built = super::build_selected(&ctx, &names)?;
    // Held while tests read the layouts, so another run cannot replace an
    // image under them.
    let _lock = OutputLock::acquire(&ctx.out_dir)
        .with_context(|| format!("locking {}", ctx.out_dir.display()))?;

    let mut subjects = Vec::new();
    for b in &built {
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
        for image in images {
            subjects.push(Subject {
                name: b.name.clone(),
                layout: b.layout.clone(),
                image,
                tests: plan.tests.clone(),
            });
        }
    }

    let total: usize = subjects.iter().map(|s| s.tests.len()).sum();
    let opts = testing::Options {
        out_dir: ctx.out_dir.clone(),
        use_cache: !args.no_cache,
        jobs: args.jobs.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        }),
        helper: None,
    };
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
        };
        let _ = writeln!(stdout, "test {} ... {status}", r.id);
    });

    let failed: Vec<&TestReport> = reports
        .iter()
        .filter(|r| r.verdict == Verdict::Failed)
        .collect();
    if !failed.is_empty() {
        writeln!(stdout, "\nfailures:")?;
        for r in &failed {
            writeln!(stdout, "\n---- {} ----", r.id)?;
            writeln!(stdout, "{}", r.failure.as_deref().unwrap_or("failed"))?;
            if !r.output.is_empty() {
                write!(stdout, "{}", r.output)?;
            }
        }
        writeln!(stdout, "\nfailures:")?;
        for r in &failed {
            writeln!(stdout, "    {}", r.id)?;
        }
    }
    if let Some(path) = &args.junit {
        testing::write_atomic(path, junit::render(&reports).as_bytes())
            .with_context(|| format!("writing the JUnit report {}", path.display()))?;
    }
    let count = |v: Verdict| reports.iter().filter(|r| r.verdict == v).count();
    // A cached test is a pass whose image and definition have not changed;
    // the closing line, `N passed, N failed` alone as test runners print it,
    // counts it as passed.
    writeln!(
        stdout,
        "\n{} cached (image and test unchanged since they passed)\n{} passed, {} failed",
        count(Verdict::Cached),
        count(Verdict::Passed) + count(Verdict::Cached),
        count(Verdict::Failed),
    )?;
    stdout.flush()?;
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::Build(anyhow!(
            "{} image test{} failed",
            failed.len(),
            if failed.len() == 1 { "" } else { "s" }
        )))
    }
}

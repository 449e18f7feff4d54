//! `cargo xtask verify [NAME…] --key cosign.pub`: checks, from the registry,
//! the signatures and attestations of pushed images with
//! [`crate::release::verify`], prints each check, and fails naming every one
//! that did not pass.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, anyhow};

use super::{Common, Failure, Selection, TagFlags, locate};
use crate::registry;
use crate::release::directory;
use crate::release::keys;
use crate::release::verify::{Check, Expected, verify_image};
use crate::release::verify_layout::verify_layout;

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Images to verify [default: every image with a recorded push or a registry]
    #[arg(value_name = "NAME")]
    names: Vec<String>,
    /// The public key (PEM) signatures must verify with
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Check the layouts and release files `images --sign` wrote in the
    /// output directory instead of the registry
    #[arg(long, conflicts_with_all = ["digest", "registry", "insecure"])]
    layout: bool,
    #[command(flatten)]
    select: Selection,
    #[command(flatten)]
    tags: TagFlags,
    #[command(flatten)]
    common: Common,
}

pub(super) fn run(args: Args) -> Result<(), Failure> {
    let ctx = args
        .common
        .load_with(crate::toolchain::Env::from_process(), &args.tags.tags)?;
    let key = keys::read_public_key(&args.key)
        .map_err(|e| Failure::Usage(anyhow::Error::new(e).context("reading the public key")))?;
    let mut results: Vec<(String, Vec<Check>)> = Vec::new();
    if args.layout {
        for image in super::select(&ctx.plan.images, &args.names)? {
            let layout = ctx.out_dir.join(&image.name);
            let release = ctx.out_dir.join(directory::dir_name(&image.name));
            let checks =
                verify_layout(&key, &layout, &release, &image.release).with_context(|| {
                    format!("verifying image `{}` in {}", image.name, layout.display())
                })?;
            results.push((image.name.clone(), checks));
        }
    } else {
        let located = locate(&ctx, &args.names, &args.select, false)?;
        let targets: Vec<&str> = located.iter().map(|l| l.repository.registry()).collect();
        let creds = registry::default_credentials(&targets);
        for l in &located {
            let tags: Vec<String> = l.image.tags.iter().map(ToString::to_string).collect();
            let expected = Expected {
                repository: &l.repository,
                insecure: l.insecure,
                tags: &tags,
                digest: l.digest.as_ref(),
                settings: &l.image.release,
                limits: ctx.registry,
            };
            let checks: Vec<Check> = verify_image(&key, &creds, &expected).with_context(|| {
                format!("verifying image `{}` in {}", l.image.name, l.repository)
            })?;
            results.push((l.image.name.clone(), checks));
        }
    }
    let mut stdout = std::io::stdout().lock();
    let mut failed: Vec<String> = Vec::new();
    let mut passed = 0usize;
    for (name, checks) in results {
        for check in checks {
            match check.outcome {
                Ok(()) => {
                    passed += 1;
                    writeln!(stdout, "verified {}: {}", name, check.what)?;
                }
                Err(reason) => {
                    writeln!(stdout, "FAILED   {}: {}: {reason}", name, check.what)?;
                    failed.push(format!("{}: {}: {reason}", name, check.what));
                }
            }
        }
    }
    writeln!(stdout, "{passed} verified, {} failed", failed.len())?;
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::Build(anyhow!(
            "verification failed for {} check{}:\n  {}",
            failed.len(),
            if failed.len() == 1 { "" } else { "s" },
            failed.join("\n  ")
        )))
    }
}

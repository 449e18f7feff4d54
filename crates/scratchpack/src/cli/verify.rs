//! `cargo xtask verify [NAME…] --key cosign.pub`: checks, from the registry,
//! the signatures and attestations of pushed images with
//! [`crate::release::verify`], prints each check, and fails naming every one
//! that did not pass.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, anyhow};

use super::sign::{Selection, locate};
use super::{Common, Failure};
use crate::registry;
use crate::release::keys;
use crate::release::verify::{Check, Expected, verify_image};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Images to verify [default: every image with a recorded push or a registry]
    #[arg(value_name = "NAME")]
    names: Vec<String>,
    /// The public key (PEM) signatures must verify with
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    #[command(flatten)]
    select: Selection,
    #[command(flatten)]
    common: Common,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let ctx = args.common.load()?;
    let key = keys::read_public_key(&args.key)
        .map_err(|e| Failure::Usage(anyhow::Error::new(e).context("reading the public key")))?;
    let located = locate(&ctx, &args.names, &args.select, false)?;
    let creds = registry::default_credentials();
    let mut stdout = std::io::stdout().lock();
    let mut failed: Vec<String> = Vec::new();
    let mut passed = 0usize;
    for l in &located {
        let tags: Vec<String> = l.image.tags.iter().map(ToString::to_string).collect();
        let expected = Expected {
            repository: &l.repository,
            insecure: l.insecure,
            tags: &tags,
            digest: l.digest.as_ref(),
            settings: &l.image.release,
        };
        let checks: Vec<Check> = verify_image(&key, &creds, &expected)
            .with_context(|| format!("verifying image `{}` in {}", l.image.name, l.repository))?;
        for check in checks {
            match check.outcome {
                Ok(()) => {
                    passed += 1;
                    writeln!(stdout, "verified {}: {}", l.image.name, check.what)?;
                }
                Err(reason) => {
                    writeln!(
                        stdout,
                        "FAILED   {}: {}: {reason}",
                        l.image.name, check.what
                    )?;
                    failed.push(format!("{}: {}: {reason}", l.image.name, check.what));
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

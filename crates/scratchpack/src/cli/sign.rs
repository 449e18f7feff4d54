//! `cargo xtask sign [NAME…] --key cosign.key`: signs images already pushed
//! (the digests the last push recorded, or `--digest`), and attaches their
//! SBOMs and provenance, through [`crate::release::publish`].

use std::path::PathBuf;

use super::{Common, Failure, Selection, load_signer, locate, sign_located};

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Images to sign [default: every image with a recorded push]
    #[arg(value_name = "NAME")]
    names: Vec<String>,
    /// cosign's encrypted private key (password in COSIGN_PASSWORD)
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    #[command(flatten)]
    select: Selection,
    #[command(flatten)]
    common: Common,
}

pub(super) fn run(args: Args) -> Result<(), Failure> {
    let ctx = args.common.load()?;
    let signer = load_signer(&args.key)?;
    let located = locate(&ctx, &args.names, &args.select, true)?;
    sign_located(&ctx, &args.common, &signer, &located)
}

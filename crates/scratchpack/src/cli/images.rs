//! `cargo xtask images [NAME…]`: build images and print what was built.

use std::io::Write;
use std::path::PathBuf;

use super::{
    Common, Context, Failure, MessageFormat, PlatformFlags, SignFlags, TagFlags, Target,
    build_selected, in_plan_order, relative_manifest_path, write_image_refs,
};
use crate::build::{BuiltImage, assemble, short};
use crate::release::directory::{self, BundleSigner};
use crate::shell::table::{human_size, render};

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Images to build [default: all in images.toml]
    #[arg(value_name = "NAME")]
    pub(super) names: Vec<String>,
    /// How to print results: a table, or one JSON object per image
    #[arg(long, value_enum, default_value_t = MessageFormat::Human)]
    pub(super) message_format: MessageFormat,
    /// Push the images after building them, printing what `push` prints
    #[arg(long)]
    pub(super) push: bool,
    #[command(flatten)]
    pub(super) push_target: Target,
    /// Build without the registry cache, whatever images.toml or the flags say
    #[arg(long)]
    pub(super) no_cache: bool,
    /// Build only this run's share of the images: `hash:I/N` or `count:I/N`
    #[arg(long, value_name = "hash:I/N")]
    pub(super) partition: Option<crate::partition::Partition>,
    #[command(flatten)]
    pub(super) platforms: PlatformFlags,
    #[command(flatten)]
    pub(super) sign: SignFlags,
    #[command(flatten)]
    pub(super) tags: TagFlags,
    /// Write `repository@sha256:…` of every built image to FILE, one per
    /// line, in images.toml's order (with `--push`, the pushed references)
    #[arg(long, value_name = "FILE")]
    pub(super) image_refs: Option<PathBuf>,
    #[command(flatten)]
    pub(super) common: Common,
}

/// Builds; `images --push` is dispatched to `push` by [`super::main`].
pub(super) fn run(args: Args) -> Result<(), Failure> {
    args.push_target.require_push(args.push)?;
    let mut ctx = args
        .common
        .load_with(crate::toolchain::Env::from_process(), &args.tags.tags)?;
    let signer = signer(&args.sign)?;
    let Some(names) = super::partitioned(&ctx, &args.names, args.partition)? else {
        return Ok(());
    };
    ctx.keep_platforms(&names, &args.platforms.platforms)?;
    let built = build_selected(&ctx, &names)?;
    write_release_files(&ctx, &args.common, &built, signer.as_deref())?;
    if let Some(path) = &args.image_refs {
        write_image_refs(path, &in_plan_order(&ctx, references(&ctx, &built)))?;
    }
    let mut out = std::io::stdout().lock();
    match args.message_format {
        MessageFormat::Json => {
            for b in &built {
                let mut v = serde_json::to_value(b)?;
                v["fresh"] = b.fresh.into();
                writeln!(out, "{v}")?;
            }
        }
        MessageFormat::Human => write!(out, "{}", table(&built))?,
    }
    Ok(())
}

/// Each built image's name and `repository@digest`, the repository as
/// loaders name it (`registry/repository`, or the image's name).
fn references(ctx: &Context, built: &[BuiltImage]) -> Vec<(String, String)> {
    built
        .iter()
        .filter_map(|b| {
            let plan = ctx.plan.images.iter().find(|i| i.name == b.name)?;
            let repository = assemble::repository(plan);
            Some((b.name.clone(), format!("{repository}@{}", b.digest)))
        })
        .collect()
}

/// The key `--sign` names, read before anything is built so that a wrong
/// password stops the run early.
#[cfg(feature = "sign")]
fn signer(flags: &SignFlags) -> Result<Option<Box<dyn BundleSigner>>, Failure> {
    Ok(flags
        .signer()?
        .map(|s| Box::new(s) as Box<dyn BundleSigner>))
}

/// Nothing signs without the `sign` feature; [`super::main`] refuses `--sign`.
#[cfg(not(feature = "sign"))]
fn signer(_: &SignFlags) -> Result<Option<Box<dyn BundleSigner>>, Failure> {
    Ok(None)
}

/// Writes each image's SBOMs and provenance (signed, with a key) into
/// `<out>/<name>.release/`.
fn write_release_files(
    ctx: &Context,
    common: &Common,
    built: &[BuiltImage],
    signer: Option<&dyn BundleSigner>,
) -> Result<(), Failure> {
    let pairs: Vec<_> = built
        .iter()
        .filter_map(|b| {
            let plan = ctx.plan.images.iter().find(|i| i.name == b.name)?;
            Some((plan, b))
        })
        .collect();
    let manifest_path = relative_manifest_path(common, ctx);
    let cargo_manifests: Vec<PathBuf> = std::iter::once(ctx.workspace.root.join("Cargo.toml"))
        .chain(ctx.workspace.manifests.values().cloned())
        .collect();
    let ws = directory::Workspace {
        facts: ctx,
        manifest_path: &manifest_path,
        epoch: ctx.epoch,
        cargo_manifests: cargo_manifests.iter().map(PathBuf::as_path).collect(),
    };
    for (dir, count) in directory::write(&ctx.out_dir, &pairs, &ws, signer)? {
        ctx.shell.status(
            if signer.is_some() {
                "Signed"
            } else {
                "Described"
            },
            format!(
                "{} ({count} file{})",
                dir.display(),
                if count == 1 { "" } else { "s" }
            ),
        );
    }
    Ok(())
}

/// The closing table: image, platform, digest and compressed size.
fn table(built: &[BuiltImage]) -> String {
    let mut rows = vec![vec![
        "IMAGE".to_owned(),
        "PLATFORM".to_owned(),
        "DIGEST".to_owned(),
        "SIZE".to_owned(),
    ]];
    for b in built {
        for p in &b.platforms {
            rows.push(vec![
                b.name.clone(),
                p.platform.clone(),
                short(&p.manifest).to_owned(),
                human_size(p.layer_size),
            ]);
        }
        if b.platforms.len() > 1 {
            rows.push(vec![
                b.name.clone(),
                "(index)".to_owned(),
                short(&b.digest).to_owned(),
                String::new(),
            ]);
        }
    }
    render(&rows, 3)
}

//! `cargo xtask images [NAME…]`: build images and print what was built.

use std::io::Write;

use anyhow::anyhow;

use super::table::human_size;
use super::{Common, Context, Failure};
use crate::build::{self, BuiltImage, Options, short};
use crate::compile::Cargo;
use crate::manifest::ImagePlan;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Images to build [default: all in images.toml]
    #[arg(value_name = "NAME")]
    names: Vec<String>,
    /// How to print results: a table, or one JSON object per image
    #[arg(long, value_enum, default_value_t = MessageFormat::Human)]
    message_format: MessageFormat,
    /// Push the images after building them, printing what `push` prints
    #[arg(long)]
    push: bool,
    #[command(flatten)]
    push_target: super::push::Target,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MessageFormat {
    Human,
    Json,
}

pub fn run(args: Args) -> Result<(), Failure> {
    args.push_target.require_push(args.push)?;
    let ctx = args.common.load()?;
    if args.push {
        let format = args.message_format;
        return super::push::build_and_push(&ctx, &args.names, &args.push_target, format);
    }
    let built = build_selected(&ctx, &args.names)?;
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

/// Selects images by name (all when `names` is empty) and builds them; shared
/// with the commands that need images built first.
pub fn build_selected(ctx: &Context, names: &[String]) -> Result<Vec<BuiltImage>, Failure> {
    let selected = select(&ctx.plan.images, names)?;
    let compiler = Cargo {
        workspace_root: &ctx.workspace.root,
        target_dir: &ctx.workspace.target_dir,
        manifests: &ctx.workspace.manifests,
        shell: ctx.shell,
    };
    let opts = Options {
        out_dir: ctx.out_dir.clone(),
        epoch: ctx.epoch,
    };
    let started = std::time::Instant::now();
    let built = build::build(&selected, &compiler, &opts, ctx.shell)?;
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

pub(super) fn select<'p>(
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
    super::table::render(&rows, 3)
}

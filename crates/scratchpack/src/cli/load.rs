//! `cargo xtask load [NAME…]`: builds what is out of date, then puts the
//! images into the local podman or docker (as `docker load` of the archive
//! would), each under every tag, for one platform: the host's unless
//! `--platform` names another. Only that platform is built, so the output
//! holds images of that platform alone. The archive is handed to the
//! runtime's `load` through a pipe: the output's own archive, or one made
//! in memory from the layout's blobs when `--registry` renames the image.
//! An image the runtime already has under every name is left alone.

use anyhow::anyhow;

use super::{Common, Context, Failure, TagFlags, build_selected};
use crate::build::{BuiltImage, assemble};
use crate::manifest::ImagePlan;
use crate::oci::LayoutDir;
use crate::oci::archive::{ReadBack, archive_of};
use crate::oci::source::{index, resolve, select};
use crate::platform::Platform;
use crate::toolchain::Env;
use crate::toolchain::runtime::{self, Kind, Runtime};

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Images to load [default: all in images.toml]
    #[arg(value_name = "NAME")]
    names: Vec<String>,
    /// The runtime to load into (repeatable) [default: podman if it is on
    /// PATH, else docker]
    #[arg(long, value_enum, value_name = "RUNTIME")]
    runtime: Vec<Kind>,
    /// The platform to load [default: this host's]
    #[arg(long, value_name = "OS/ARCH")]
    platform: Option<String>,
    /// Name the images as if pushed to this registry: `HOST[/NAMESPACE]/REPOSITORY:TAG`
    #[arg(long, value_name = "HOST[/NAMESPACE]")]
    registry: Option<String>,
    #[command(flatten)]
    tags: TagFlags,
    #[command(flatten)]
    common: Common,
}

pub(super) fn run(args: Args) -> Result<(), Failure> {
    let env = Env::from_process();
    // Found before anything is built, so a machine without a runtime
    // learns it at once.
    let runtimes = runtimes(&env, &args.runtime)?;
    let platform = match &args.platform {
        Some(p) => Platform::parse(p).ok_or_else(|| {
            Failure::Usage(anyhow!(
                "--platform `{p}` is not a supported platform; platforms: {}",
                Platform::supported_list()
            ))
        })?,
        None => Platform::host().ok_or_else(|| {
            Failure::Usage(anyhow!(
                "this host's architecture builds no image platform; name one with --platform"
            ))
        })?,
    };
    let mut ctx = args.common.load_with(env, &args.tags.tags)?;
    // Only the platform loaded is compiled and packed; an image without it
    // is refused before anything is built.
    ctx.keep_platforms(&args.names, &[platform])?;
    let selected = super::select(&ctx.plan.images, &args.names)?;
    let built = build_selected(&ctx, &args.names)?;
    for (image, done) in selected.iter().zip(&built) {
        let names = names(image, done, args.registry.as_deref())?;
        let mut archive = None;
        for rt in &runtimes {
            load_one(&ctx, rt, image, done, platform, &names, &mut archive)?;
        }
    }
    Ok(())
}

/// The runtimes to load into: those named, else the first of podman and
/// docker on `PATH`; an error naming what to install when there is none.
fn runtimes(env: &Env, named: &[Kind]) -> Result<Vec<Runtime>, Failure> {
    let wanted: &[Kind] = if named.is_empty() {
        &[Kind::Podman, Kind::Docker]
    } else {
        named
    };
    let found: Vec<Runtime> = wanted
        .iter()
        .filter_map(|k| Runtime::find(env, *k))
        .collect();
    if named.is_empty() {
        return found.into_iter().next().map(|r| vec![r]).ok_or_else(|| {
            Failure::Build(anyhow!(
                "no container runtime on PATH to load images into: install podman \
                 (Debian/Ubuntu: `apt-get install podman`) or docker, or pass --runtime"
            ))
        });
    }
    if let Some(missing) = named.iter().find(|k| !found.iter().any(|r| r.kind == **k)) {
        return Err(Failure::Build(anyhow!(
            "--runtime {0}: `{0}` is not on PATH; install it, or load into {1}",
            missing.program(),
            runtime::names(&[Kind::Podman, Kind::Docker])
        )));
    }
    Ok(found)
}

/// `[registry/]repository:tag` for every tag: the archive's own names, or
/// under `--registry`.
fn names(
    image: &ImagePlan,
    done: &BuiltImage,
    registry: Option<&str>,
) -> Result<Vec<String>, Failure> {
    let repository = match registry {
        Some(r) => {
            let repository = image
                .push
                .as_ref()
                .map_or(image.name.as_str(), |p| p.repository.as_str());
            let full = format!("{r}/{repository}");
            crate::registry::Repository::parse(&full)
                .map_err(|e| Failure::Usage(anyhow!("--registry `{r}`: {e}")))?;
            full
        }
        None => assemble::repository(image),
    };
    Ok(done
        .tags
        .iter()
        .map(|t| format!("{repository}:{t}"))
        .collect())
}

/// Loads one image into one runtime, unless every name there already
/// stands for it. `archive` keeps the bytes made for the first runtime.
fn load_one(
    ctx: &Context,
    rt: &Runtime,
    image: &ImagePlan,
    done: &BuiltImage,
    platform: Platform,
    names: &[String],
    archive: &mut Option<Vec<u8>>,
) -> Result<(), Failure> {
    let program = rt.kind.program();
    let built = done
        .platforms
        .iter()
        .find(|p| p.platform == platform.to_string())
        .expect("the image was checked to have the platform");
    // podman and docker name an image by its config's digest, docker's
    // containerd store by its manifest's.
    let ours = [&built.config, &built.manifest];
    let present = |name: &str| -> Result<bool, Failure> {
        let id = rt.image_id(name).map_err(|e| Failure::Build(e.into()))?;
        Ok(id.is_some_and(|id| ours.iter().any(|d| **d == id)))
    };
    let mut all_there = true;
    for name in names {
        all_there &= present(name)?;
    }
    if all_there {
        ctx.shell.status(
            "Fresh",
            format!(
                "{} ({platform}) in {program} as {}",
                image.name,
                names.join(", ")
            ),
        );
        return Ok(());
    }
    if archive.is_none() {
        *archive = Some(archive_bytes(image, done, platform, names, ctx.epoch)?);
    }
    rt.load(archive.as_deref().expect("made above"))
        .map_err(|e| {
            Failure::Build(anyhow::Error::new(e).context(format!("loading image `{}`", image.name)))
        })?;
    for name in names {
        if !present(name)? {
            return Err(Failure::Build(anyhow!(
                "{program} loaded image `{}`, but `{name}` does not name it there",
                image.name
            )));
        }
    }
    ctx.shell.status(
        "Loaded",
        format!(
            "{} ({platform}) into {program} as {}",
            image.name,
            names.join(", ")
        ),
    );
    Ok(())
}

/// The archive to load: the output's own when it names the image `names`,
/// else one made in memory from the layout's blobs (read back and checked
/// as any layout is).
fn archive_bytes(
    image: &ImagePlan,
    done: &BuiltImage,
    platform: Platform,
    names: &[String],
    epoch: u64,
) -> Result<Vec<u8>, Failure> {
    // The output's archive holds the one platform built, under its own names.
    if names == self::names(image, done, None)? {
        return std::fs::read(&done.archive).map_err(|e| {
            Failure::Build(
                anyhow::Error::new(e).context(format!("reading {}", done.archive.display())),
            )
        });
    }
    let unreadable = |e: crate::oci::ReadError| {
        Failure::Build(anyhow::Error::new(e).context(format!("reading {}", done.layout.display())))
    };
    let layout = LayoutDir::open(&done.layout).map_err(unreadable)?;
    let (_, top_index) = index(&layout).map_err(unreadable)?;
    let top = select(&top_index, None).map_err(unreadable)?;
    let resolved = resolve(&layout, top).map_err(unreadable)?;
    let read = ReadBack::read(&layout, &resolved, &assemble::oci_platform(platform))
        .map_err(unreadable)?
        .ok_or_else(|| {
            Failure::Build(anyhow!(
                "the layout of `{}` has no {platform} image",
                image.name
            ))
        })?;
    Ok(archive_of(&read.loaded(), names, epoch))
}

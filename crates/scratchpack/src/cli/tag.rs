//! `cargo xtask tag NAME --from TAG|DIGEST --to TAG…`: promotes an image
//! already in its registry without rebuilding it, as `crane tag` does: the
//! manifest (or index) `--from` names is read as the exact bytes the
//! registry holds and put again under each new tag (OCI distribution spec,
//! "Pulling manifests" and "Pushing manifests"). The digest is unchanged,
//! so the signatures and attestations made for it (keyed by digest, never
//! by tag) stay attached and valid.

use std::io::Write as _;

use anyhow::anyhow;

use super::{Common, Failure, Target, parse_tag, select};
use crate::manifest::Tag;
use crate::oci::Digest;
use crate::registry::{self, PushOptions, Session};

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// The image, by its name in images.toml
    #[arg(value_name = "NAME")]
    name: String,
    /// What the image is in the registry now: a tag, or a digest `sha256:…`
    #[arg(long, value_name = "TAG|DIGEST")]
    from: String,
    /// A tag to add (repeatable)
    #[arg(long = "to", value_name = "TAG", required = true, value_parser = parse_tag)]
    to: Vec<Tag>,
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    common: Common,
}

pub(super) fn run(args: Args) -> Result<(), Failure> {
    if Digest::parse(&args.from).is_none() && Tag::parse(&args.from).is_none() {
        return Err(Failure::Usage(anyhow!(
            "--from `{}` is neither a tag nor a digest `sha256:<64 hex digits>`",
            args.from
        )));
    }
    let ctx = args.common.load()?;
    let image = select(&ctx.plan.images, std::slice::from_ref(&args.name))?[0];
    let (repo, insecure) = args.target.repository(image)?;
    let creds = registry::default_credentials(&[repo.registry()]);
    let opts = PushOptions {
        insecure,
        ..PushOptions::default()
    };
    let failed = |e: registry::RegistryError| {
        Failure::Build(anyhow::Error::new(e).context(format!("tagging {repo}")))
    };
    let mut session = Session::open(&repo, &creds, &opts).map_err(failed)?;
    let manifest = session
        .get_manifest(&args.from)
        .map_err(failed)?
        .ok_or_else(|| Failure::Build(anyhow!("{repo} has no `{}`", args.from)))?;
    let mut stdout = std::io::stdout().lock();
    for tag in &args.to {
        // The bytes read are the bytes put: the registry stores them under
        // the same digest, which the answer must confirm.
        let stored = session
            .put_manifest(tag.as_str(), &manifest.media_type, &manifest.bytes)
            .map_err(failed)?;
        if stored.digest != manifest.digest {
            return Err(Failure::Build(anyhow!(
                "tagging {repo}:{tag}: the registry stored {}, not {}",
                stored.digest,
                manifest.digest
            )));
        }
        ctx.shell
            .status("Tagged", format!("{repo}:{tag} as {}", manifest.digest));
        writeln!(stdout, "{repo}:{tag}@{}", manifest.digest)?;
    }
    Ok(())
}

//! `cargo xtask sign [NAME…] --key cosign.key`: signs images already pushed
//! (the digests the last push recorded, or `--digest`), and attaches their
//! SBOMs and provenance, through [`crate::release::publish`]; also the
//! `--sign --key` step `push` ends with.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};

use super::{Common, Context, Failure, SignFlags, relative_manifest_path};
use crate::manifest::ImagePlan;
use crate::oci::Digest;
use crate::registry::{self, Repository};
use crate::release::keys::{self, PrivateKey};
use crate::release::publish::{self, Publisher, SignReport};
use crate::release::sign::KeySigner;

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

/// Which pushed image a command is about, shared by `sign` and `verify`.
#[derive(Debug, Clone, Default, clap::Args)]
pub(super) struct Selection {
    /// The pushed image's digest, when no push of it is recorded (one NAME only)
    #[arg(long, value_name = "DIGEST")]
    digest: Option<String>,
    /// The registry the image is in, instead of the one images.toml names
    #[arg(long, value_name = "HOST[/NAMESPACE]")]
    registry: Option<String>,
    /// Allow plain HTTP to the registry
    #[arg(long)]
    insecure: bool,
}

/// One image to sign or verify: where it is and which digest.
pub(super) struct Located<'p> {
    pub image: &'p ImagePlan,
    pub repository: Repository,
    pub insecure: bool,
    /// `None` only for `verify` without a record: the tags decide.
    pub digest: Option<Digest>,
}

/// Resolves the images named (all when none) to repositories and digests.
pub(super) fn locate<'p>(
    ctx: &'p Context,
    names: &[String],
    select: &Selection,
    digest_required: bool,
) -> Result<Vec<Located<'p>>, Failure> {
    let usage = |m: String| Failure::Usage(anyhow!(m));
    let pinned = match &select.digest {
        None => None,
        Some(d) => {
            if names.len() != 1 {
                return Err(usage(
                    "--digest names one image's digest: give exactly one NAME with it".into(),
                ));
            }
            Some(Digest::parse(d).ok_or_else(|| {
                usage(format!(
                    "--digest `{d}` is not a digest like sha256:<64 hex digits>"
                ))
            })?)
        }
    };
    let images: Vec<&ImagePlan> = if names.is_empty() {
        ctx.plan
            .images
            .iter()
            // `verify` without a record checks what the tags point at.
            .filter(|i| {
                publish::last_push(&ctx.out_dir, &i.name).is_some()
                    || (!digest_required && i.push.is_some())
            })
            .collect()
    } else {
        let mut out = Vec::new();
        for name in names {
            let image = ctx
                .plan
                .images
                .iter()
                .find(|i| &i.name == name)
                .ok_or_else(|| {
                    let known: Vec<&str> =
                        ctx.plan.images.iter().map(|i| i.name.as_str()).collect();
                    usage(format!(
                        "no image `{name}` in images.toml (it has {})",
                        known.join(", ")
                    ))
                })?;
            out.push(image);
        }
        out
    };
    if images.is_empty() {
        return Err(usage(format!(
            "no push is recorded in {}: push first (cargo xtask push), or name an image \
             and pass --digest",
            ctx.out_dir.display()
        )));
    }
    let mut found = Vec::new();
    for image in images {
        let record = publish::last_push(&ctx.out_dir, &image.name);
        let (repository, insecure) = match (&select.registry, &image.push, &record) {
            (Some(r), _, _) => {
                let name = image
                    .push
                    .as_ref()
                    .map_or(image.name.as_str(), |p| p.repository.as_str());
                let repo = Repository::parse(&format!("{r}/{name}"))
                    .map_err(|e| usage(format!("--registry for image `{}`: {e}", image.name)))?;
                (repo, select.insecure)
            }
            (None, _, Some(rec)) if pinned.is_none() => {
                let repo = Repository::parse(&rec.repository).map_err(|e| {
                    Failure::Build(anyhow!("the push record of `{}`: {e}", image.name))
                })?;
                (repo, select.insecure || rec.insecure)
            }
            (None, Some(p), _) => {
                let repo = Repository::parse(&format!("{}/{}", p.registry, p.repository))
                    .map_err(|e| usage(format!("image `{}`: {e}", image.name)))?;
                (repo, select.insecure || p.insecure)
            }
            (None, None, _) => {
                return Err(usage(format!(
                    "image `{}` has no registry: set `registry` in images.toml or pass --registry",
                    image.name
                )));
            }
        };
        let digest = match (&pinned, &record) {
            (Some(d), _) => Some(d.clone()),
            (None, Some(rec)) => Some(Digest::parse(&rec.digest).ok_or_else(|| {
                Failure::Build(anyhow!(
                    "the push record of `{}` holds `{}`, not a digest",
                    image.name,
                    rec.digest
                ))
            })?),
            (None, None) if digest_required => {
                return Err(usage(format!(
                    "no push of image `{}` is recorded in {}: push it first (cargo xtask push {}) \
                     or pass --digest with the pushed digest",
                    image.name,
                    ctx.out_dir.display(),
                    image.name
                )));
            }
            (None, None) => None,
        };
        found.push(Located {
            image,
            repository,
            insecure,
            digest,
        });
    }
    Ok(found)
}

/// Reads the private key, with the password from `COSIGN_PASSWORD`.
pub(super) fn load_signer(path: &Path) -> Result<KeySigner, Failure> {
    let password = keys::password_from_env().map_err(|e| Failure::Usage(e.into()))?;
    let key: PrivateKey = keys::read_private_key(path, &password)
        .map_err(|e| Failure::Usage(anyhow::Error::new(e).context("reading the signing key")))?;
    Ok(KeySigner::new(&key))
}

impl SignFlags {
    /// The signer, read before anything is pushed so a wrong password stops
    /// the run early.
    pub fn signer(&self) -> Result<Option<KeySigner>, Failure> {
        match (&self.sign, &self.key) {
            (true, Some(key)) => load_signer(key).map(Some),
            _ => Ok(None),
        }
    }
}

/// Signs the images `names` selects whose pushes are recorded: what `push
/// --sign` does once the push is done.
pub(super) fn sign_recorded(
    ctx: &Context,
    common: &Common,
    names: &[String],
    signer: Option<&KeySigner>,
) -> Result<(), Failure> {
    let Some(signer) = signer else {
        return Ok(());
    };
    let located = locate(ctx, names, &Selection::default(), true)?;
    sign_all(ctx, common, signer, &located)
}

pub(super) fn run(args: Args) -> Result<(), Failure> {
    let ctx = args.common.load()?;
    let signer = load_signer(&args.key)?;
    let located = locate(&ctx, &args.names, &args.select, true)?;
    sign_all(&ctx, &args.common, &signer, &located)
}

fn sign_all(
    ctx: &Context,
    common: &Common,
    signer: &KeySigner,
    located: &[Located<'_>],
) -> Result<(), Failure> {
    let relative = relative_manifest_path(common, ctx);
    let targets: Vec<&str> = located.iter().map(|l| l.repository.registry()).collect();
    let creds = registry::default_credentials(&targets);
    let publisher = Publisher {
        env: &ctx.env,
        workspace_root: ctx.workspace.root.clone(),
        target_dir: ctx.workspace.target_dir.clone(),
        manifest_path: relative,
        epoch: ctx.epoch,
        signer,
        creds: &creds,
        limits: ctx.registry,
    };
    for l in located {
        let digest = l.digest.as_ref().expect("signing always has a digest");
        ctx.shell.status(
            "Signing",
            format!("{} {}@{digest}", l.image.name, l.repository),
        );
        let report: SignReport = publisher
            .sign_pushed(l.image, &l.repository, digest.as_str(), l.insecure)
            .with_context(|| format!("signing image `{}` in {}", l.image.name, l.repository))?;
        ctx.shell.status(
            "Signed",
            format!(
                "{} ({} digest{}, {} attestation{})",
                l.image.name,
                report.signed.len(),
                if report.signed.len() == 1 { "" } else { "s" },
                report.attested.len(),
                if report.attested.len() == 1 { "" } else { "s" },
            ),
        );
    }
    Ok(())
}

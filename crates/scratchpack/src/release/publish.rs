//! Signing what was pushed: for an image's digest in a registry, signatures of
//! the index and of every platform manifest in cosign's `.sig` tag and as
//! Sigstore bundle referrers, and per platform the SBOMs and SLSA provenance
//! as DSSE-signed in-toto attestations, stored as cosign's `.att` tag and as
//! bundle referrers (cosign's storage conventions; OCI distribution v1.1
//! referrers, with the referrers tag schema where the API is missing). Also
//! the record of what `push` sent, and where the images `sign` and `verify`
//! name are: in the recorded repository at the recorded digest, unless the
//! caller says otherwise ([`locate`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::bundle::{Bundle, PREDICATE_COSIGN_SIGN, Referrer};
use super::documents::{DocumentError, Facts, Platform as DocumentsOf, documents};
use super::dsse::{Envelope, MEDIA_TYPE_DSSE};
use super::sign::{
    ANNOTATION_SIGNATURE, MEDIA_TYPE_SIMPLE_SIGNING, SignatureImage, SignedLayer, Signer,
    attestation_tag, signature_tag,
};
use super::statement::Statement;
use crate::manifest::{ImagePlan, ReleaseSettings};
use crate::oci::image::rfc3339;
use crate::oci::{Blob, Config, Descriptor, Digest, Index, MEDIA_TYPE_MANIFEST, Manifest};
use crate::registry::{
    CredentialSource, PushOptions, RegistryError, RegistryLimits, Repository, Session,
};
use crate::shell::Shell;

/// The layer annotation cosign gives an attestation's predicate type.
pub const ANNOTATION_PREDICATE_TYPE: &str = "predicateType";
/// The largest signature, attestation or config blob read back.
pub const MAX_SMALL_BLOB: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{0}")]
    Image(String),
    #[error(transparent)]
    Documents(#[from] DocumentError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("signing image `{image}` in {repository}")]
    Signing {
        image: String,
        repository: String,
        #[source]
        source: Box<PublishError>,
    },
}

fn image_error(message: impl Into<String>) -> PublishError {
    PublishError::Image(message.into())
}

/// What `push` recorded about one image, in
/// `<out>/.scratchpack/pushed/<name>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushRecord {
    pub repository: String,
    pub digest: String,
    pub insecure: bool,
}

fn record_path(out_dir: &Path, name: &str) -> PathBuf {
    crate::record::record_path(out_dir, "pushed", name)
}

/// Notes that `name` was pushed to `repository` as `digest`.
pub fn record_push(
    out_dir: &Path,
    name: &str,
    repository: &Repository,
    digest: &str,
    insecure: bool,
) -> Result<(), PublishError> {
    let path = record_path(out_dir, name);
    let record = PushRecord {
        repository: repository.to_string(),
        digest: digest.to_owned(),
        insecure,
    };
    let io = |source| PublishError::Io {
        what: format!("recording the push of `{name}` in {}", path.display()),
        source,
    };
    std::fs::create_dir_all(path.parent().expect("records live in a directory")).map_err(io)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, crate::record::encode(digest, &record)).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)
}

/// The last push of `name` recorded in `out_dir`, if any.
pub fn last_push(out_dir: &Path, name: &str) -> Option<PushRecord> {
    #[derive(Deserialize)]
    struct Raw {
        value: PushRecord,
    }
    let bytes = std::fs::read(record_path(out_dir, name)).ok()?;
    serde_json::from_slice::<Raw>(&bytes).ok().map(|r| r.value)
}

/// What the caller says of the images it names beyond images.toml: a digest
/// when no push of it is recorded, another registry, plain HTTP.
#[derive(Debug, Clone, Default)]
pub struct LocateOptions<'a> {
    /// The pushed image's digest, for exactly one named image.
    pub digest: Option<&'a str>,
    /// The registry (`HOST[/NAMESPACE]`) the images are in.
    pub registry: Option<&'a str>,
    pub insecure: bool,
}

/// Why images could not be located.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    /// The names or options ask for what is not there, or not enough.
    #[error("{0}")]
    Asked(String),
    /// A push record holds what `push` never writes.
    #[error("{0}")]
    Record(String),
}

/// One image to sign or verify: where it is and which digest.
pub struct Located<'p> {
    pub image: &'p ImagePlan,
    pub repository: Repository,
    pub insecure: bool,
    /// `None` only when no digest is required and none is recorded: the
    /// tags decide.
    pub digest: Option<Digest>,
}

/// Resolves the images `names` (every image with a recorded push when none;
/// without `digest_required`, every image with a registry too) to
/// repositories and digests: the options first, then the push recorded in
/// `out_dir`, then images.toml's registry.
pub fn locate<'p>(
    images: &'p [ImagePlan],
    out_dir: &Path,
    names: &[String],
    options: &LocateOptions<'_>,
    digest_required: bool,
) -> Result<Vec<Located<'p>>, LocateError> {
    let pinned = pinned_digest(names, options)?;
    let images = named_images(images, out_dir, names, digest_required)?;
    let mut found = Vec::new();
    for image in images {
        let record = last_push(out_dir, &image.name);
        let (repository, insecure) =
            repository_of(image, record.as_ref(), options, pinned.is_some())?;
        let digest = match (&pinned, &record) {
            (Some(d), _) => Some(d.clone()),
            (None, Some(rec)) => Some(Digest::parse(&rec.digest).ok_or_else(|| {
                LocateError::Record(format!(
                    "the push record of `{}` holds `{}`, not a digest",
                    image.name, rec.digest
                ))
            })?),
            (None, None) if digest_required => {
                return Err(LocateError::Asked(format!(
                    "no push of image `{}` is recorded in {}: push it first (cargo xtask push {}) \
                     or pass --digest with the pushed digest",
                    image.name,
                    out_dir.display(),
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

/// The digest the options pin, which names one image's.
fn pinned_digest(
    names: &[String],
    options: &LocateOptions<'_>,
) -> Result<Option<Digest>, LocateError> {
    let Some(d) = options.digest else {
        return Ok(None);
    };
    if names.len() != 1 {
        return Err(LocateError::Asked(
            "--digest names one image's digest: give exactly one NAME with it".into(),
        ));
    }
    Digest::parse(d).map(Some).ok_or_else(|| {
        LocateError::Asked(format!(
            "--digest `{d}` is not a digest like sha256:<64 hex digits>"
        ))
    })
}

/// The images `names` names, or, when it names none, those with a recorded
/// push (and, when no digest is required, those with a registry, whose tags
/// say what to check).
fn named_images<'p>(
    images: &'p [ImagePlan],
    out_dir: &Path,
    names: &[String],
    digest_required: bool,
) -> Result<Vec<&'p ImagePlan>, LocateError> {
    let named: Vec<&ImagePlan> = if names.is_empty() {
        images
            .iter()
            .filter(|i| {
                last_push(out_dir, &i.name).is_some() || (!digest_required && i.push.is_some())
            })
            .collect()
    } else {
        let mut out = Vec::new();
        for name in names {
            let image = images.iter().find(|i| &i.name == name).ok_or_else(|| {
                let known: Vec<&str> = images.iter().map(|i| i.name.as_str()).collect();
                LocateError::Asked(format!(
                    "no image `{name}` in images.toml (it has {})",
                    known.join(", ")
                ))
            })?;
            out.push(image);
        }
        out
    };
    if named.is_empty() {
        return Err(LocateError::Asked(format!(
            "no push is recorded in {}: push first (cargo xtask push), or name an image \
             and pass --digest",
            out_dir.display()
        )));
    }
    Ok(named)
}

/// Where `image` is and whether plain HTTP is allowed: the registry the
/// options name, else the recorded push's repository (unless a digest is
/// pinned, which is not the record's), else images.toml's registry.
fn repository_of(
    image: &ImagePlan,
    record: Option<&PushRecord>,
    options: &LocateOptions<'_>,
    pinned: bool,
) -> Result<(Repository, bool), LocateError> {
    match (options.registry, &image.push, record) {
        (Some(r), _, _) => {
            let name = image
                .push
                .as_ref()
                .map_or(image.name.as_str(), |p| p.repository.as_str());
            let repo = Repository::parse(&format!("{r}/{name}")).map_err(|e| {
                LocateError::Asked(format!("--registry for image `{}`: {e}", image.name))
            })?;
            Ok((repo, options.insecure))
        }
        (None, _, Some(rec)) if !pinned => {
            let repo = Repository::parse(&rec.repository).map_err(|e| {
                LocateError::Record(format!("the push record of `{}`: {e}", image.name))
            })?;
            Ok((repo, options.insecure || rec.insecure))
        }
        (None, Some(p), _) => {
            let repo = Repository::parse(&format!("{}/{}", p.registry, p.repository))
                .map_err(|e| LocateError::Asked(format!("image `{}`: {e}", image.name)))?;
            Ok((repo, options.insecure || p.insecure))
        }
        (None, None, _) => Err(LocateError::Asked(format!(
            "image `{}` has no registry: set `registry` in images.toml or pass --registry",
            image.name
        ))),
    }
}

/// What signing needs beyond the image plan: the workspace's facts and the
/// key.
pub struct Publisher<'a> {
    /// What the SBOMs and provenance record, asked when they are made.
    pub facts: &'a dyn Facts,
    /// images.toml relative to the workspace root, as provenance records it.
    pub manifest_path: String,
    /// `SOURCE_DATE_EPOCH`: the `created` time of the referrer manifests.
    pub epoch: u64,
    pub signer: &'a dyn Signer,
    pub creds: &'a dyn CredentialSource,
    /// The bounds the registry is held to.
    pub limits: RegistryLimits,
}

/// One platform manifest of a pushed image.
#[derive(Debug, Clone)]
pub struct PlatformManifest {
    pub descriptor: Descriptor,
    pub os: String,
    pub architecture: String,
    /// The CPU variant (`v7` of `linux/arm/v7`), when the image names one.
    pub variant: Option<String>,
}

impl PlatformManifest {
    /// `os/architecture[/variant]`, as images.toml names platforms.
    pub fn name(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// A pushed image as the registry holds it.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub top: Descriptor,
    /// The platform manifests: the index's children, or the top manifest.
    pub platforms: Vec<PlatformManifest>,
}

impl Pushed {
    /// Every digest that is signed: the top one, then each platform's.
    pub fn signed_digests(&self) -> Vec<&Descriptor> {
        let mut out = vec![&self.top];
        for p in &self.platforms {
            if p.descriptor.digest != self.top.digest {
                out.push(&p.descriptor);
            }
        }
        out
    }
}

/// Reads `digest` and its platform manifests back from the registry.
pub fn read_pushed(session: &mut Session<'_, '_>, digest: &Digest) -> Result<Pushed, PublishError> {
    let repo = session.repository().clone();
    let top = session
        .get_manifest(digest.as_str())?
        .ok_or_else(|| image_error(format!("{repo} has no manifest {digest}")))?;
    let top_descriptor = Descriptor::new(
        top.media_type.clone(),
        top.digest.clone(),
        top.bytes.len() as u64,
    );
    let mut platforms = Vec::new();
    if top.is_index() {
        let index: Index = serde_json::from_slice(&top.bytes)
            .map_err(|e| image_error(format!("index {digest} in {repo} is not an index: {e}")))?;
        let children = distinct_within(index.manifests, session.walk_limits().documents)
            .map_err(|n| image_error(format!("index {digest} in {repo} lists {n}")))?;
        for child in children {
            let Some(platform) = child.platform else {
                return Err(image_error(format!(
                    "index {digest} in {repo} lists manifest {} without a platform",
                    child.digest
                )));
            };
            let manifest = session
                .get_manifest(child.digest.as_str())?
                .ok_or_else(|| {
                    image_error(format!(
                        "{repo} lacks manifest {} that index {digest} lists",
                        child.digest
                    ))
                })?;
            platforms.push(PlatformManifest {
                descriptor: Descriptor::new(
                    manifest.media_type.clone(),
                    child.digest,
                    manifest.bytes.len() as u64,
                ),
                os: platform.os,
                architecture: platform.architecture,
                variant: platform.variant,
            });
        }
    } else {
        let manifest: Manifest = serde_json::from_slice(&top.bytes).map_err(|e| {
            image_error(format!(
                "manifest {digest} in {repo} is not a manifest: {e}"
            ))
        })?;
        let bytes = session.get_blob(&manifest.config.digest, MAX_SMALL_BLOB)?;
        let config: Config = serde_json::from_slice(&bytes)
            .map_err(|e| image_error(format!("config of {digest} in {repo}: {e}")))?;
        platforms.push(PlatformManifest {
            descriptor: top_descriptor.clone(),
            os: config.os,
            architecture: config.architecture,
            variant: config.variant,
        });
    }
    Ok(Pushed {
        top: top_descriptor,
        platforms,
    })
}

/// What a signing run attached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignReport {
    /// Digests signed.
    pub signed: Vec<String>,
    /// `(platform digest, predicate type)` of each attestation.
    pub attested: Vec<(String, String)>,
}

impl Publisher<'_> {
    /// Signs every located image, each at its digest, with a status line
    /// before and after each: what `sign` does, and `push --sign` once its
    /// push is recorded.
    pub fn sign_located(&self, located: &[Located<'_>], shell: Shell) -> Result<(), PublishError> {
        for l in located {
            let digest = l.digest.as_ref().expect("signing always has a digest");
            shell.status(
                "Signing",
                format!("{} {}@{digest}", l.image.name, l.repository),
            );
            let report = self
                .sign_pushed(l.image, &l.repository, digest.as_str(), l.insecure)
                .map_err(|source| PublishError::Signing {
                    image: l.image.name.clone(),
                    repository: l.repository.to_string(),
                    source: Box::new(source),
                })?;
            shell.status(
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

    /// Signs the image `image` pushed to `repository` as `digest`: the top
    /// digest and every platform manifest's, then attaches each platform's
    /// SBOMs and provenance, in the formats its settings ask for. Running it
    /// again adds nothing: signatures are deterministic and already-present
    /// layers and referrers are kept, not repeated.
    pub fn sign_pushed(
        &self,
        image: &ImagePlan,
        repository: &Repository,
        digest: &str,
        insecure: bool,
    ) -> Result<SignReport, PublishError> {
        let digest = Digest::parse(digest)
            .ok_or_else(|| image_error(format!("`{digest}` is not a sha256 digest")))?;
        let settings = &image.release;
        let opts = PushOptions {
            insecure,
            limits: self.limits,
            ..PushOptions::default()
        };
        let mut session = Session::open(repository, self.creds, &opts)?;
        let pushed = read_pushed(&mut session, &digest)?;
        let created = rfc3339(self.epoch);
        let reference = repository.to_string();
        let mut report = SignReport::default();
        for subject in pushed.signed_digests() {
            self.sign_digest(&mut session, settings, &reference, subject, &created)?;
            report.signed.push(subject.digest.to_string());
        }
        let inputs = if settings.provenance {
            Some(self.facts.build_inputs()?)
        } else {
            None
        };
        for platform in &pushed.platforms {
            let name = platform.name();
            let target = image
                .targets
                .iter()
                .find(|t| t.platform.to_string() == name)
                .ok_or_else(|| {
                    image_error(format!(
                        "{repository}@{digest} holds {name}, which image `{}` does not build",
                        image.name
                    ))
                })?;
            let of = DocumentsOf {
                image,
                target,
                digest: &platform.descriptor.digest,
                name: &name,
                os: &platform.os,
                architecture: &platform.architecture,
                reference: &reference,
                repository: Some(&reference),
            };
            let statements: Vec<Statement> = documents(
                &of,
                self.facts,
                &self.manifest_path,
                self.epoch,
                inputs.as_ref(),
            )?
            .into_iter()
            .map(|d| d.statement)
            .collect();
            self.attest(
                &mut session,
                settings,
                &platform.descriptor,
                &statements,
                &created,
            )?;
            for statement in statements {
                report.attested.push((
                    platform.descriptor.digest.to_string(),
                    statement.predicate_type,
                ));
            }
        }
        Ok(report)
    }

    /// Signs `subject` in the formats `settings` asks for: a simple-signing
    /// layer in cosign's `.sig` tag, and a bundle referrer.
    fn sign_digest(
        &self,
        session: &mut Session<'_, '_>,
        settings: &ReleaseSettings,
        reference: &str,
        subject: &Descriptor,
        created: &str,
    ) -> Result<(), PublishError> {
        if settings.signature_format.tags() {
            let layer = SignedLayer::simple_signing(
                self.signer,
                reference,
                &subject.digest,
                &BTreeMap::new(),
            );
            append_layers(session, &signature_tag(&subject.digest), vec![layer])?;
        }
        if settings.signature_format.bundles() {
            let bundle = Bundle::sign_image(self.signer, reference, &subject.digest);
            attach_bundle(session, &bundle, subject, PREDICATE_COSIGN_SIGN, created)?;
        }
        Ok(())
    }

    /// Attaches each statement about the platform manifest `subject`, signed,
    /// in the formats `settings` asks for: as layers of cosign's `.att` tag
    /// and as bundle referrers.
    fn attest(
        &self,
        session: &mut Session<'_, '_>,
        settings: &ReleaseSettings,
        subject: &Descriptor,
        statements: &[Statement],
        created: &str,
    ) -> Result<(), PublishError> {
        let mut layers = Vec::new();
        for statement in statements {
            // One envelope for both stores: the bundle wraps the very
            // envelope the `.att` layer holds.
            let bundle = Bundle::sign(self.signer, statement);
            if settings.signature_format.tags() {
                layers.push(attestation_layer(
                    &bundle.dsse_envelope,
                    &statement.predicate_type,
                ));
            }
            if settings.signature_format.bundles() {
                attach_bundle(
                    session,
                    &bundle,
                    subject,
                    &statement.predicate_type,
                    created,
                )?;
            }
        }
        if !layers.is_empty() {
            append_layers(session, &attestation_tag(&subject.digest), layers)?;
        }
        Ok(())
    }
}

/// An `.att` layer: the DSSE envelope, with cosign's annotations (an empty
/// signature annotation, since the signature is inside the envelope).
pub fn attestation_layer(envelope: &Envelope, predicate_type: &str) -> SignedLayer {
    SignedLayer {
        payload: Blob::new(MEDIA_TYPE_DSSE, envelope.to_json()),
        annotations: BTreeMap::from([
            (ANNOTATION_SIGNATURE.to_owned(), String::new()),
            (
                ANNOTATION_PREDICATE_TYPE.to_owned(),
                predicate_type.to_owned(),
            ),
        ]),
    }
}

/// `listed` with each digest once (the first kept), or, when that is still
/// more than `limit`, how many distinct manifests it lists.
fn distinct_within(listed: Vec<Descriptor>, limit: usize) -> Result<Vec<Descriptor>, String> {
    let mut seen = std::collections::BTreeSet::new();
    let distinct: Vec<Descriptor> = listed
        .into_iter()
        .filter(|d| seen.insert(d.digest.clone()))
        .collect();
    if distinct.len() > limit {
        return Err(format!(
            "{} manifests, more than the {limit} one walk reads",
            distinct.len()
        ));
    }
    Ok(distinct)
}

/// The layers of the cosign signature or attestation image under `tag`, with
/// their payloads read back: a layer listed again is read once, and the
/// layers together are bounded in number and bytes before any is read.
pub fn read_layers(
    session: &mut Session<'_, '_>,
    tag: &str,
) -> Result<Option<Vec<SignedLayer>>, PublishError> {
    let Some(manifest) = session.get_manifest(tag)? else {
        return Ok(None);
    };
    let repo = session.repository().clone();
    let manifest: Manifest = serde_json::from_slice(&manifest.bytes)
        .map_err(|e| image_error(format!("{repo}:{tag} is not an image manifest: {e}")))?;
    let mut seen = std::collections::BTreeSet::new();
    let listed: Vec<Descriptor> = manifest
        .layers
        .into_iter()
        .filter(|l| seen.insert((l.digest.clone(), l.annotations.clone())))
        .collect();
    let walk = session.walk_limits();
    let bytes: u64 = listed.iter().map(|l| l.size).fold(0, u64::saturating_add);
    if listed.len() > walk.documents || bytes > walk.bytes {
        return Err(image_error(format!(
            "{repo}:{tag} lists {} layers of {bytes} bytes together, more than one walk \
             reads ({} documents, {} bytes)",
            listed.len(),
            walk.documents,
            walk.bytes
        )));
    }
    // Where each digest's bytes were first read into `layers`.
    let mut read: BTreeMap<Digest, usize> = BTreeMap::new();
    let mut layers: Vec<SignedLayer> = Vec::new();
    for layer in listed {
        let media_type = match layer.media_type.as_str() {
            MEDIA_TYPE_SIMPLE_SIGNING => MEDIA_TYPE_SIMPLE_SIGNING,
            MEDIA_TYPE_DSSE => MEDIA_TYPE_DSSE,
            other => {
                return Err(image_error(format!(
                    "{repo}:{tag} has a layer of media type {other:?}, neither a \
                     simple-signing payload nor a DSSE envelope"
                )));
            }
        };
        let bytes = match read.get(&layer.digest) {
            Some(&at) => layers[at].payload.bytes.clone(),
            None => {
                let max =
                    usize::try_from(layer.size).map_or(MAX_SMALL_BLOB, |s| s.min(MAX_SMALL_BLOB));
                let bytes = session.get_blob(&layer.digest, max)?;
                // The size counted above is the size read.
                if bytes.len() as u64 != layer.size {
                    return Err(image_error(format!(
                        "{repo}:{tag} says layer {} has {} bytes; it has {}",
                        layer.digest,
                        layer.size,
                        bytes.len()
                    )));
                }
                read.insert(layer.digest.clone(), layers.len());
                bytes
            }
        };
        layers.push(SignedLayer {
            payload: Blob::new(media_type, bytes),
            annotations: layer.annotations,
        });
    }
    Ok(Some(layers))
}

/// Adds `new` to the cosign image under `tag` (created if missing), after
/// its existing layers, skipping any layer already there.
pub(crate) fn append_layers(
    session: &mut Session<'_, '_>,
    tag: &str,
    new: Vec<SignedLayer>,
) -> Result<(), PublishError> {
    let mut layers = read_layers(session, tag)?.unwrap_or_default();
    let before = layers.len();
    for layer in new {
        if !layers.contains(&layer) {
            layers.push(layer);
        }
    }
    if layers.len() == before && before > 0 {
        return Ok(());
    }
    let image = SignatureImage::new(&layers);
    session.put_blob(&image.config.bytes)?;
    for layer in &image.layers {
        session.put_blob(&layer.bytes)?;
    }
    session.put_manifest(tag, MEDIA_TYPE_MANIFEST, &image.manifest.bytes)?;
    Ok(())
}

/// Pushes `bundle` as a referrer of `subject` and makes it findable.
fn attach_bundle(
    session: &mut Session<'_, '_>,
    bundle: &Bundle,
    subject: &Descriptor,
    predicate_type: &str,
    created: &str,
) -> Result<(), PublishError> {
    let referrer = Referrer::new(bundle, subject, predicate_type, created);
    session.put_blob(&referrer.config.bytes)?;
    session.put_blob(&referrer.bundle.bytes)?;
    let stored = session.put_manifest(
        referrer.manifest.digest.as_str(),
        MEDIA_TYPE_MANIFEST,
        &referrer.manifest.bytes,
    )?;
    session.add_referrer(
        &subject.digest,
        &referrer.index_descriptor(predicate_type),
        &stored,
    )?;
    Ok(())
}

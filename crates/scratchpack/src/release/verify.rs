//! Checking from the registry what `sign` attached: each tag resolves to the
//! pushed digest, the index and every platform manifest carry a signature the
//! key verifies (cosign's `.sig` tag and/or a Sigstore bundle referrer, as the
//! image's `signature-format` says), and each platform's SBOMs and provenance
//! are DSSE envelopes the key verifies whose in-toto subjects are exactly the
//! pushed digests. Every check is reported, passed or failed, so a failure
//! names what is missing or wrong. What the registry lists is read within
//! the session's walk limits: each subject's referrers are listed and read
//! once, whatever the number of checks that look at them.

use std::collections::{BTreeMap, BTreeSet};

use super::bundle::{Bundle, MEDIA_TYPE_BUNDLE, PREDICATE_COSIGN_SIGN};
use super::dsse::Envelope;
use super::keys::PublicKey;
use super::provenance::PREDICATE_SLSA;
use super::publish::{
    ANNOTATION_PREDICATE_TYPE, MAX_SMALL_BLOB, PublishError, Pushed, read_layers, read_pushed,
};
use super::sign::{ANNOTATION_SIGNATURE, VerifyError, signature_tag, verify_simple_signing};
use super::statement::Statement;
use crate::manifest::ReleaseSettings;
use crate::oci::{Descriptor, Digest, Manifest};
use crate::registry::{
    CredentialSource, Failure, PushOptions, RegistryLimits, Repository, Session,
};

/// One thing checked, and why it failed if it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub what: String,
    pub outcome: Result<(), String>,
}

impl Check {
    fn new(what: String, outcome: Result<(), String>) -> Check {
        Check { what, outcome }
    }
}

/// What an image is checked against.
pub struct Expected<'a> {
    pub repository: &'a Repository,
    pub insecure: bool,
    /// The tags that must resolve to the pushed digest.
    pub tags: &'a [String],
    /// The digest push recorded (or the command line named); without it, the
    /// digests the tags resolve to are checked.
    pub digest: Option<&'a Digest>,
    pub settings: &'a ReleaseSettings,
    /// The bounds the registry is held to.
    pub limits: RegistryLimits,
}

/// Runs every check for one image. A registry that cannot be read at all is
/// an error; everything else is a failed check.
pub fn verify_image(
    key: &PublicKey,
    creds: &dyn CredentialSource,
    expected: &Expected<'_>,
) -> Result<Vec<Check>, PublishError> {
    let repo = expected.repository;
    let opts = PushOptions {
        insecure: expected.insecure,
        limits: expected.limits,
        ..PushOptions::default()
    };
    let mut session = Session::open(repo, creds, &opts)?;
    let mut checks = Vec::new();
    let mut tops: BTreeSet<Digest> = expected.digest.cloned().into_iter().collect();
    for tag in expected.tags {
        let what = format!("tag {repo}:{tag}");
        match session.get_manifest(tag)? {
            None => checks.push(Check::new(what, Err("the registry has no such tag".into()))),
            Some(m) => match expected.digest {
                Some(pinned) if &m.digest != pinned => checks.push(Check::new(
                    what,
                    Err(format!(
                        "it points at {}, not at the pushed {pinned}",
                        m.digest
                    )),
                )),
                _ => {
                    checks.push(Check::new(format!("{what} is {}", m.digest), Ok(())));
                    tops.insert(m.digest);
                }
            },
        }
    }
    for top in &tops {
        let pushed = read_pushed(&mut session, top)?;
        verify_pushed(&mut session, key, expected.settings, &pushed, &mut checks)?;
    }
    Ok(checks)
}

fn verify_pushed(
    session: &mut Session<'_, '_>,
    key: &PublicKey,
    settings: &ReleaseSettings,
    pushed: &Pushed,
    checks: &mut Vec<Check>,
) -> Result<(), PublishError> {
    let format = settings.signature_format;
    let mut allowed: BTreeSet<Digest> = BTreeSet::new();
    allowed.insert(pushed.top.digest.clone());
    for p in &pushed.platforms {
        allowed.insert(p.descriptor.digest.clone());
    }
    // The last subject's bundle referrers, read once for all its checks
    // in a row; one subject's at a time are held.
    let mut bundles = Bundles::default();
    for subject in pushed.signed_digests() {
        let d = &subject.digest;
        if format.tags() {
            let outcome = check_sig_tag(session, key, d)?;
            checks.push(Check::new(
                format!("signature {} of {d}", signature_tag(d)),
                outcome,
            ));
        }
        if format.bundles() {
            let listed = bundles.of(session, d)?;
            let outcome = check_bundles(listed, key, d, PREDICATE_COSIGN_SIGN, &allowed);
            checks.push(Check::new(
                format!("signature bundle referrer of {d}"),
                outcome,
            ));
        }
    }
    let mut predicates: Vec<(&str, &str)> = settings
        .sbom
        .iter()
        .map(|f| (f.name(), f.predicate_type()))
        .collect();
    if settings.provenance {
        predicates.push(("SLSA provenance", PREDICATE_SLSA));
    }
    for platform in &pushed.platforms {
        let d = &platform.descriptor.digest;
        let arch = platform.name();
        let att = if format.tags() {
            read_layers(session, &super::sign::attestation_tag(d))?
        } else {
            None
        };
        for (name, predicate) in &predicates {
            let label = if *predicate == PREDICATE_SLSA {
                (*name).to_owned()
            } else {
                format!(
                    "{} SBOM",
                    name.to_uppercase().replace("CYCLONEDX", "CycloneDX")
                )
            };
            if format.tags() {
                let outcome = match &att {
                    None => Err(format!(
                        "the registry has no attestation tag {}",
                        super::sign::attestation_tag(d)
                    )),
                    Some(layers) => first_ok(
                        layers
                            .iter()
                            .filter(|l| {
                                l.annotations
                                    .get(ANNOTATION_PREDICATE_TYPE)
                                    .map(String::as_str)
                                    == Some(*predicate)
                            })
                            .map(|l| {
                                serde_json::from_slice::<Envelope>(&l.payload.bytes)
                                    .map_err(|e| format!("the layer is not a DSSE envelope: {e}"))
                                    .and_then(|env| {
                                        check_envelope(&env, key, d, predicate, &allowed)
                                    })
                            }),
                        "it holds no attestation of that type",
                    ),
                };
                checks.push(Check::new(
                    format!("{label} attestation (.att) of {arch} {d}"),
                    outcome,
                ));
            }
            if format.bundles() {
                let listed = bundles.of(session, d)?;
                let outcome = check_bundles(listed, key, d, predicate, &allowed);
                checks.push(Check::new(
                    format!("{label} attestation bundle referrer of {arch} {d}"),
                    outcome,
                ));
            }
        }
    }
    Ok(())
}

/// Ok when some result is; else the most telling failure (one that got as
/// far as a signature over the wrong thing beats a missing one).
fn first_ok(results: impl Iterator<Item = Result<(), String>>, none: &str) -> Result<(), String> {
    let mut first_err = None;
    for r in results {
        match r {
            Ok(()) => return Ok(()),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or_else(|| none.to_owned()))
}

fn check_sig_tag(
    session: &mut Session<'_, '_>,
    key: &PublicKey,
    digest: &Digest,
) -> Result<Result<(), String>, PublishError> {
    let Some(layers) = read_layers(session, &signature_tag(digest))? else {
        return Ok(Err(
            "the registry has no such tag: the image is not signed".into()
        ));
    };
    let mut results = Vec::new();
    for layer in &layers {
        let signature = layer
            .annotations
            .get(ANNOTATION_SIGNATURE)
            .cloned()
            .unwrap_or_default();
        results.push(
            verify_simple_signing(key, &layer.payload.bytes, &signature, digest)
                .map(drop)
                .map_err(|e| match e {
                    VerifyError::BadSignature => {
                        "no signature in it verifies with the key".to_owned()
                    }
                    other => other.to_string(),
                }),
        );
    }
    // A signature for another digest says more than one that does not verify.
    results.sort_by_key(|r| match r {
        Ok(()) => 0,
        Err(e) if e.contains("not for") => 1,
        Err(_) => 2,
    });
    Ok(first_ok(results.into_iter(), "it holds no signature"))
}

/// What one subject's bundle referrers held: each readable bundle, or why
/// a referrer gave none; or, when the listing itself could not be used, why.
type Listed = Result<Vec<Result<Bundle, String>>, String>;

/// The bundle referrers of the subject checked last.
#[derive(Default)]
struct Bundles {
    last: Option<(Digest, Listed)>,
}

impl Bundles {
    fn of(&mut self, session: &mut Session<'_, '_>, d: &Digest) -> Result<&Listed, PublishError> {
        if self.last.as_ref().is_none_or(|(last, _)| last != d) {
            // The previous subject's go before the next are read.
            self.last = None;
            self.last = Some((d.clone(), bundle_referrers(session, d)?));
        }
        Ok(&self.last.as_ref().expect("just read").1)
    }
}

/// Lists the referrers of `digest` once, and reads each bundle referrer's
/// manifest and bundle once: the listing is deduplicated and bounded by the
/// session (a registry can list any number), and the bytes read are
/// counted against the walk's bound before each read.
fn bundle_referrers(
    session: &mut Session<'_, '_>,
    digest: &Digest,
) -> Result<Listed, PublishError> {
    let referrers = match session.referrers(digest) {
        Ok(r) => r,
        // A listing refused for its size fails the checks that need it.
        Err(e) if matches!(e.failure(), Some(Failure::Protocol(_))) => {
            return Ok(Err(e.to_string()));
        }
        Err(e) => return Err(e.into()),
    };
    let budget = session.walk_limits().bytes;
    let mut read = 0u64;
    let mut found = Vec::new();
    // A descriptor without `artifactType` is looked at too: copiers that
    // predate OCI 1.1 (skopeo 1.9) rewrite a referrers tag index without it,
    // and the referrer manifest's own `artifactType` decides.
    // Entries that are not descriptors (no digest) cannot name a referrer.
    let descriptors = referrers
        .descriptors
        .iter()
        .filter_map(|d| serde_json::from_value::<Descriptor>(d.clone()).ok());
    for descriptor in descriptors.filter(|d| {
        d.artifact_type.is_none() || d.artifact_type.as_deref() == Some(MEDIA_TYPE_BUNDLE)
    }) {
        let manifest_digest = descriptor.digest;
        let Some(manifest) = session.get_manifest(manifest_digest.as_str())? else {
            found.push(Err(format!(
                "referrer {manifest_digest} is listed but missing"
            )));
            continue;
        };
        read = read.saturating_add(manifest.bytes.len() as u64);
        let Ok(manifest) = serde_json::from_slice::<Manifest>(&manifest.bytes) else {
            continue;
        };
        if manifest.artifact_type.as_deref() != Some(MEDIA_TYPE_BUNDLE) {
            continue;
        }
        if manifest.subject.as_ref().map(|s| &s.digest) != Some(digest) {
            found.push(Err(format!(
                "referrer {manifest_digest} is about another subject"
            )));
            continue;
        }
        let Some(layer) = manifest.layers.first() else {
            found.push(Err(format!(
                "referrer {manifest_digest} has no bundle layer"
            )));
            continue;
        };
        read = read.saturating_add(layer.size);
        if read > budget {
            return Ok(Err(format!(
                "the referrers of {digest} add up to more than the {budget} bytes one walk \
                 reads (raise `registry-limits.max-bytes` if they are that large)"
            )));
        }
        let max = usize::try_from(layer.size).map_or(MAX_SMALL_BLOB, |s| s.min(MAX_SMALL_BLOB));
        let bytes = session.get_blob(&layer.digest, max)?;
        found.push(
            serde_json::from_slice::<Bundle>(&bytes)
                .map_err(|e| format!("referrer {manifest_digest} holds no Sigstore bundle: {e}")),
        );
    }
    Ok(Ok(found))
}

/// Some bundle referrer of `digest` holds a statement of `predicate` about
/// exactly the pushed digests, signed by `key`.
fn check_bundles(
    listed: &Listed,
    key: &PublicKey,
    digest: &Digest,
    predicate: &str,
    allowed: &BTreeSet<Digest>,
) -> Result<(), String> {
    let found = listed.as_ref().map_err(Clone::clone)?;
    let mut results = Vec::new();
    for bundle in found {
        let outcome = bundle
            .clone()
            .and_then(|b| check_envelope(&b.dsse_envelope, key, digest, predicate, allowed));
        // Bundles of other predicate types are not this check's business.
        match outcome {
            Err(e) if e.starts_with("it is a statement of type") => {}
            other => results.push(other),
        }
    }
    first_ok(
        results.into_iter(),
        "the registry lists no bundle of that type for it",
    )
}

/// The envelope verifies with `key` and holds an in-toto statement of
/// `predicate` about `digest` whose subjects are all pushed digests.
pub(super) fn check_envelope(
    envelope: &Envelope,
    key: &PublicKey,
    digest: &Digest,
    predicate: &str,
    allowed: &BTreeSet<Digest>,
) -> Result<(), String> {
    let payload = envelope
        .verify(key)
        .map_err(|_| "its DSSE signature does not verify with the key".to_owned())?;
    let statement: Statement = serde_json::from_slice(&payload)
        .map_err(|e| format!("its payload is not an in-toto statement: {e}"))?;
    if statement.predicate_type != predicate {
        return Err(format!(
            "it is a statement of type {}",
            statement.predicate_type
        ));
    }
    if !statement.names(digest) {
        return Err(format!("its subjects do not name {digest}"));
    }
    let named: BTreeMap<_, _> = statement
        .subject
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                s.digest.get("sha256").cloned().unwrap_or_default(),
            )
        })
        .collect();
    for (name, hex) in named {
        if !allowed.iter().any(|d| d.hex() == hex) {
            return Err(format!(
                "its subject {name} is sha256:{hex}, not a pushed digest"
            ));
        }
    }
    Ok(())
}

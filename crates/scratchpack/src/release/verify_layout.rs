//! Checking what `images --sign` wrote, offline: the layout `<out>/<name>`
//! and the Sigstore bundles and documents in `<out>/<name>.release/`. The
//! index and every platform manifest carry a signature bundle the key
//! verifies; every SBOM and provenance the image's settings ask for has an
//! attestation bundle the key verifies, about that platform's manifest and
//! nothing but the image's digests, whose statement is exactly the document
//! written beside it.

use std::collections::BTreeSet;
use std::path::Path;

use super::bundle::{Bundle, PREDICATE_COSIGN_SIGN};
use super::keys::PublicKey;
use super::provenance::PREDICATE_SLSA;
use super::publish::PublishError;
use super::verify::{Check, check_envelope};
use crate::manifest::ReleaseSettings;
use crate::oci::source::{resolve, select};
use crate::oci::{Digest, LayoutDir, source};

/// The largest bundle or document read back.
const MAX_FILE: u64 = 64 * 1024 * 1024;

/// A file of the release directory: a regular file, not a link, bounded.
fn read(dir: &Path, name: &str) -> Result<Vec<u8>, String> {
    let path = dir.join(name);
    let meta = std::fs::symlink_metadata(&path).map_err(|_| format!("{name} is missing"))?;
    if !meta.is_file() {
        return Err(format!("{name} is not a regular file"));
    }
    if meta.len() > MAX_FILE {
        return Err(format!("{name} is larger than {MAX_FILE} bytes"));
    }
    std::fs::read(&path).map_err(|e| format!("reading {name}: {e}"))
}

/// The bundle in `file` verifies with `key` and holds a statement of
/// `predicate` about `digest`; returns the statement as JSON.
fn check_bundle(
    dir: &Path,
    file: &str,
    key: &PublicKey,
    digest: &Digest,
    predicate: &str,
    allowed: &BTreeSet<Digest>,
) -> Result<serde_json::Value, String> {
    let bundle: Bundle = serde_json::from_slice(&read(dir, file)?)
        .map_err(|e| format!("{file} is not a Sigstore bundle: {e}"))?;
    check_envelope(&bundle.dsse_envelope, key, digest, predicate, allowed)
        .map_err(|e| format!("{file}: {e}"))?;
    let payload = bundle
        .dsse_envelope
        .verify(key)
        .map_err(|_| format!("{file}: its signature does not verify"))?;
    serde_json::from_slice(&payload).map_err(|e| format!("{file}: {e}"))
}

/// Every check for the image whose layout is `layout` and whose release
/// files are in `release`. A layout that cannot be read is an error; the
/// rest are checks that pass or fail.
pub fn verify_layout(
    key: &PublicKey,
    layout: &Path,
    release: &Path,
    settings: &ReleaseSettings,
) -> Result<Vec<Check>, PublishError> {
    let bad = |e: crate::oci::ReadError| {
        PublishError::Image(format!("reading the layout {}: {e}", layout.display()))
    };
    let dir = LayoutDir::open(layout).map_err(bad)?;
    let (_, index) = source::index(&dir).map_err(bad)?;
    let top = select(&index, None).map_err(bad)?;
    let resolved = resolve(&dir, top).map_err(bad)?;
    let top = top.digest.clone();
    let mut allowed: BTreeSet<Digest> = BTreeSet::new();
    allowed.insert(top.clone());
    allowed.extend(resolved.images.iter().map(|i| i.manifest_digest.clone()));

    let mut checks = Vec::new();
    let mut check = |what: String, outcome: Result<(), String>| {
        checks.push(Check { what, outcome });
    };
    if !resolved.images.iter().any(|i| i.manifest_digest == top) {
        let outcome = check_bundle(
            release,
            "index.sigstore.json",
            key,
            &top,
            PREDICATE_COSIGN_SIGN,
            &allowed,
        );
        check(format!("signature of index {top}"), outcome.map(drop));
    }
    let mut kinds: Vec<(&str, &str, String)> = settings
        .sbom
        .iter()
        .map(|f| {
            let label = format!(
                "{} SBOM",
                f.name().to_uppercase().replace("CYCLONEDX", "CycloneDX")
            );
            (f.name(), f.predicate_type(), label)
        })
        .collect();
    if settings.provenance {
        kinds.push(("provenance", PREDICATE_SLSA, "SLSA provenance".to_owned()));
    }
    for image in &resolved.images {
        let d = &image.manifest_digest;
        let stem = image.platform.to_string().replace('/', "-");
        let outcome = check_bundle(
            release,
            &format!("{stem}.manifest.sigstore.json"),
            key,
            d,
            PREDICATE_COSIGN_SIGN,
            &allowed,
        );
        check(
            format!("signature of {} manifest {d}", image.platform),
            outcome.map(drop),
        );
        for (kind, predicate, label) in &kinds {
            let bundle = format!("{stem}.{kind}.sigstore.json");
            let file = format!("{stem}.{kind}.json");
            let outcome =
                check_bundle(release, &bundle, key, d, predicate, &allowed).and_then(|statement| {
                    let document: serde_json::Value =
                        serde_json::from_slice(&read(release, &file)?)
                            .map_err(|e| format!("{file} is not JSON: {e}"))?;
                    // Provenance is written as its statement; an SBOM as the
                    // statement's predicate.
                    let signed = if *kind == "provenance" {
                        &statement
                    } else {
                        &statement["predicate"]
                    };
                    if signed == &document {
                        Ok(())
                    } else {
                        Err(format!("{file} differs from what {bundle} signs"))
                    }
                });
            check(
                format!("{label} of {} {d} ({file})", image.platform),
                outcome,
            );
        }
    }
    Ok(checks)
}

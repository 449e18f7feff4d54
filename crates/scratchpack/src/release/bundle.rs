//! Sigstore bundles v0.3 (sigstore protobuf-specs `sigstore_bundle.proto`,
//! JSON form) holding a DSSE envelope, and the OCI 1.1 referrer manifest that
//! attaches one to the image it is about (image-spec v1.1 `subject` and
//! `artifactType`; an empty config). This is what cosign v3 writes by
//! default: an image signature is a DSSE-wrapped in-toto statement with
//! predicate type `https://sigstore.dev/cosign/sign/v1` and the image digest
//! as its subject; an attestation is the same with its own predicate.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::directory::BundleSigner;
use super::dsse::Envelope;
use super::sign::{Signer, VerificationMaterial};
use super::statement::{Statement, Subject};
use crate::oci::{Blob, Descriptor, Digest, MEDIA_TYPE_MANIFEST, Manifest};

pub const MEDIA_TYPE_BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
pub const MEDIA_TYPE_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// The predicate type of an image signature in a bundle.
pub const PREDICATE_COSIGN_SIGN: &str = "https://sigstore.dev/cosign/sign/v1";
pub const ANNOTATION_BUNDLE_CONTENT: &str = "dev.sigstore.bundle.content";
pub const ANNOTATION_BUNDLE_PREDICATE: &str = "dev.sigstore.bundle.predicateType";
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";

/// A Sigstore bundle with a DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    pub media_type: String,
    pub verification_material: Material,
    pub dsse_envelope: Envelope,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Material {
    pub public_key: PublicKeyIdentifier,
    /// Empty: a key-based signature made offline has no transparency log
    /// entry; verifiers are told to require none.
    pub tlog_entries: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyIdentifier {
    pub hint: String,
}

impl Bundle {
    /// Signs `statement` into a bundle.
    pub fn sign(signer: &dyn Signer, statement: &Statement) -> Bundle {
        let VerificationMaterial::PublicKey { hint } = signer.material();
        Bundle {
            media_type: MEDIA_TYPE_BUNDLE.to_owned(),
            verification_material: Material {
                public_key: PublicKeyIdentifier { hint },
                tlog_entries: Vec::new(),
            },
            dsse_envelope: statement.sign(signer),
        }
    }

    /// The bundle for an image signature: a `cosign/sign/v1` statement whose
    /// subject is the image's digest.
    pub fn sign_image(signer: &dyn Signer, repository: &str, digest: &Digest) -> Bundle {
        let statement = Statement::new(
            vec![Subject::new(repository, digest)],
            PREDICATE_COSIGN_SIGN,
            serde_json::json!({}),
        );
        Bundle::sign(signer, &statement)
    }

    pub fn to_json(&self) -> Vec<u8> {
        crate::oci::canonical_json(self)
    }
}

/// Any signer signs the release files `images` writes.
impl<S: Signer> BundleSigner for S {
    fn attest(&self, statement: &Statement) -> Vec<u8> {
        Bundle::sign(self, statement).to_json()
    }

    fn sign_image(&self, reference: &str, digest: &Digest) -> Vec<u8> {
        Bundle::sign_image(self, reference, digest).to_json()
    }

    fn key_hint(&self) -> String {
        format!("{:?}", self.material())
    }
}

/// The referrer manifest that attaches a bundle to `subject`, with the
/// bundle as its one layer; each blob is the exact bytes to push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    pub manifest: Blob,
    pub config: Blob,
    pub bundle: Blob,
}

impl Referrer {
    /// `subject` is the descriptor of the manifest or index signed;
    /// `predicate_type` the bundled statement's; `created` an RFC 3339 time
    /// (the image's epoch, so the manifest is reproducible).
    pub fn new(
        bundle: &Bundle,
        subject: &Descriptor,
        predicate_type: &str,
        created: &str,
    ) -> Referrer {
        let config = Blob::new(MEDIA_TYPE_EMPTY, b"{}".to_vec());
        let bundle = Blob::new(MEDIA_TYPE_BUNDLE, bundle.to_json());
        let subject = Descriptor {
            platform: None,
            annotations: BTreeMap::new(),
            ..subject.clone()
        };
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_MANIFEST.to_owned()),
            artifact_type: Some(MEDIA_TYPE_BUNDLE.to_owned()),
            config: config.descriptor(),
            layers: vec![bundle.descriptor()],
            subject: Some(subject),
            annotations: BTreeMap::from([
                (
                    ANNOTATION_BUNDLE_CONTENT.to_owned(),
                    "dsse-envelope".to_owned(),
                ),
                (
                    ANNOTATION_BUNDLE_PREDICATE.to_owned(),
                    predicate_type.to_owned(),
                ),
                (ANNOTATION_CREATED.to_owned(), created.to_owned()),
            ]),
        };
        let manifest = Blob::json(MEDIA_TYPE_MANIFEST, &manifest);
        Referrer {
            manifest,
            config,
            bundle,
        }
    }

    /// The descriptor a referrers index lists for this manifest: its
    /// `artifactType` and annotations, as the referrers API would report them.
    pub fn index_descriptor(&self, predicate_type: &str) -> Descriptor {
        Descriptor {
            artifact_type: Some(MEDIA_TYPE_BUNDLE.to_owned()),
            annotations: BTreeMap::from([
                (
                    ANNOTATION_BUNDLE_CONTENT.to_owned(),
                    "dsse-envelope".to_owned(),
                ),
                (
                    ANNOTATION_BUNDLE_PREDICATE.to_owned(),
                    predicate_type.to_owned(),
                ),
            ]),
            ..self.manifest.descriptor()
        }
    }
}

#[cfg(test)]
#[path = "bundle_tests.rs"]
mod tests;

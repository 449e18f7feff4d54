//! Signatures over image digests in cosign's legacy format: the simple-signing
//! payload (containers/image "signature" format as cosign writes it), signed
//! with ECDSA P-256 over SHA-256, and the signature image stored under the tag
//! `sha256-<hex>.sig` (one layer per signature, the signature in the layer's
//! `dev.cosignproject.cosign/signature` annotation).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use serde::{Deserialize, Serialize};

use super::keys::{PrivateKey, PublicKey};
use crate::oci::spec::RootFs;
use crate::oci::{
    Blob, Config, Descriptor, Digest, MEDIA_TYPE_CONFIG, MEDIA_TYPE_MANIFEST, Manifest,
};

pub const MEDIA_TYPE_SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const ANNOTATION_SIGNATURE: &str = "dev.cosignproject.cosign/signature";
/// The `critical.type` every cosign image signature carries.
pub const SIMPLE_SIGNING_TYPE: &str = "cosign container image signature";

/// What signs: the key-based signer here, and later a keyless one (an
/// ephemeral key certified by Fulcio, its signatures logged in Rekor), which
/// only changes what a bundle's verification material holds.
pub trait Signer {
    /// An ECDSA P-256 signature over SHA-256 of `message`, DER-encoded.
    fn sign(&self, message: &[u8]) -> Vec<u8>;
    /// What a verifier is told about the key in a Sigstore bundle.
    fn material(&self) -> VerificationMaterial;
}

/// A bundle's `verificationMaterial` content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerificationMaterial {
    /// A key the verifier already holds, named by a hint.
    PublicKey { hint: String },
}

/// Signs with a private key held locally (cosign's `--key`).
pub struct KeySigner {
    key: p256::ecdsa::SigningKey,
    hint: String,
}

impl KeySigner {
    pub fn new(key: &PrivateKey) -> KeySigner {
        KeySigner {
            key: key.ecdsa(),
            hint: key.public_key().hint(),
        }
    }
}

impl Signer for KeySigner {
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        // RFC 6979 nonces: the same key and message always give the same
        // signature, so signed outputs are as reproducible as the rest.
        let signature: p256::ecdsa::Signature = self.key.sign(message);
        signature.to_der().as_bytes().to_vec()
    }

    fn material(&self) -> VerificationMaterial {
        VerificationMaterial::PublicKey {
            hint: self.hint.clone(),
        }
    }
}

/// Why a signature did not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("the signature is not base64")]
    NotBase64,
    #[error("the signature does not match the payload and key")]
    BadSignature,
    #[error("the signed payload is not a cosign simple-signing payload: {0}")]
    BadPayload(String),
    #[error("the signature is for {signed}, not for {expected}")]
    OtherDigest { signed: String, expected: String },
}

/// Checks a DER ECDSA P-256 signature over SHA-256 of `message`.
pub fn verify_der(key: &PublicKey, message: &[u8], der: &[u8]) -> Result<(), VerifyError> {
    let signature =
        p256::ecdsa::DerSignature::from_bytes(der).map_err(|_| VerifyError::BadSignature)?;
    key.ecdsa()
        .verify(message, &signature)
        .map_err(|_| VerifyError::BadSignature)
}

/// The simple-signing payload cosign signs for an image: exactly these
/// `critical` fields (verifiers refuse unknown ones), extras only in
/// `optional`. Canonical JSON, so the bytes depend only on the inputs.
pub fn simple_signing_payload(
    docker_reference: &str,
    digest: &Digest,
    optional: &BTreeMap<String, String>,
) -> Vec<u8> {
    crate::oci::canonical_json(&SimpleSigning {
        critical: Critical {
            identity: Identity {
                docker_reference: docker_reference.to_owned(),
            },
            image: ImageRef {
                docker_manifest_digest: digest.as_str().to_owned(),
            },
            kind: SIMPLE_SIGNING_TYPE.to_owned(),
        },
        optional: (!optional.is_empty()).then(|| optional.clone()),
    })
}

/// Verifies a `.sig` layer: the signature over the exact payload bytes, then
/// that the payload is a cosign image signature for `expected`. Gives the
/// payload's `optional` fields, which the signature covers too.
pub fn verify_simple_signing(
    key: &PublicKey,
    payload: &[u8],
    signature_b64: &str,
    expected: &Digest,
) -> Result<BTreeMap<String, String>, VerifyError> {
    let der = STANDARD
        .decode(signature_b64.trim())
        .map_err(|_| VerifyError::NotBase64)?;
    verify_der(key, payload, &der)?;
    let parsed: SimpleSigning =
        serde_json::from_slice(payload).map_err(|e| VerifyError::BadPayload(e.to_string()))?;
    if parsed.critical.kind != SIMPLE_SIGNING_TYPE {
        return Err(VerifyError::BadPayload(format!(
            "critical.type is `{}`",
            parsed.critical.kind
        )));
    }
    if parsed.critical.image.docker_manifest_digest != expected.as_str() {
        return Err(VerifyError::OtherDigest {
            signed: parsed.critical.image.docker_manifest_digest,
            expected: expected.to_string(),
        });
    }
    Ok(parsed.optional.unwrap_or_default())
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimpleSigning {
    critical: Critical,
    optional: Option<BTreeMap<String, String>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Critical {
    identity: Identity,
    image: ImageRef,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageRef {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// The tag cosign stores an image's signatures under: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &Digest) -> String {
    format!("sha256-{}.sig", digest.hex())
}

/// The tag cosign stores an image's attestations under: `sha256-<hex>.att`.
pub fn attestation_tag(digest: &Digest) -> String {
    format!("sha256-{}.att", digest.hex())
}

/// One signed payload of a cosign signature or attestation image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedLayer {
    pub payload: Blob,
    pub annotations: BTreeMap<String, String>,
}

impl SignedLayer {
    /// A `.sig` layer: the simple-signing payload for `digest`, signed.
    pub fn simple_signing(
        signer: &dyn Signer,
        docker_reference: &str,
        digest: &Digest,
        optional: &BTreeMap<String, String>,
    ) -> SignedLayer {
        let payload = simple_signing_payload(docker_reference, digest, optional);
        let signature = STANDARD.encode(signer.sign(&payload));
        SignedLayer {
            payload: Blob::new(MEDIA_TYPE_SIMPLE_SIGNING, payload),
            annotations: BTreeMap::from([(ANNOTATION_SIGNATURE.to_owned(), signature)]),
        }
    }
}

/// A cosign signature or attestation image: its manifest, config and layers,
/// each the exact bytes to push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureImage {
    pub manifest: Blob,
    pub config: Blob,
    pub layers: Vec<Blob>,
}

impl SignatureImage {
    /// The image holding `layers` in order (cosign appends a new signature
    /// as a new layer, so an existing image's layers come first).
    pub fn new(layers: &[SignedLayer]) -> SignatureImage {
        // cosign's signature images have an empty platform and no run
        // configuration; the diff ids are the payloads', as they are not
        // compressed.
        let config = Config {
            rootfs: RootFs {
                kind: "layers".to_owned(),
                diff_ids: layers.iter().map(|l| l.payload.digest.clone()).collect(),
            },
            ..Config::default()
        };
        let config = Blob::json(MEDIA_TYPE_CONFIG, &config);
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_MANIFEST.to_owned()),
            artifact_type: None,
            config: config.descriptor(),
            layers: layers
                .iter()
                .map(|l| Descriptor {
                    annotations: l.annotations.clone(),
                    ..l.payload.descriptor()
                })
                .collect(),
            subject: None,
            annotations: BTreeMap::new(),
        };
        let manifest = Blob::json(MEDIA_TYPE_MANIFEST, &manifest);
        SignatureImage {
            manifest,
            config,
            layers: layers.iter().map(|l| l.payload.clone()).collect(),
        }
    }
}

#[cfg(test)]
#[path = "sign_tests.rs"]
mod tests;

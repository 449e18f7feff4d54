//! Attestations: an in-toto Statement v1 ([`super::statement`]) signed in a
//! DSSE envelope (secure-systems-lab DSSE v1.0: the signature covers the
//! pre-authentication encoding of payload type and payload, never the payload
//! alone).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::keys::PublicKey;
use super::sign::{Signer, VerifyError, verify_der};
use super::statement::Statement;

pub const PAYLOAD_TYPE_IN_TOTO: &str = "application/vnd.in-toto+json";
/// The media type cosign gives a DSSE envelope stored as an `.att` layer.
pub const MEDIA_TYPE_DSSE: &str = "application/vnd.dsse.envelope.v1+json";

/// DSSE's pre-authentication encoding: `DSSEv1 <len> <type> <len> <body>`,
/// lengths in ASCII decimal, so no two (type, body) pairs encode alike.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// A DSSE envelope in its JSON form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Standard base64 of the payload bytes.
    pub payload: String,
    pub payload_type: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// Empty, as cosign leaves it for key-based signatures: the verifier
    /// picks the key, the envelope does not.
    pub keyid: String,
    /// Standard base64 of the DER signature over the PAE.
    pub sig: String,
}

impl Envelope {
    /// Signs `payload` of `payload_type`.
    pub fn sign(signer: &dyn Signer, payload_type: &str, payload: &[u8]) -> Envelope {
        let signature = signer.sign(&pae(payload_type, payload));
        Envelope {
            payload: STANDARD.encode(payload),
            payload_type: payload_type.to_owned(),
            signatures: vec![EnvelopeSignature {
                keyid: String::new(),
                sig: STANDARD.encode(signature),
            }],
        }
    }

    /// The envelope's canonical JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        crate::oci::canonical_json(self)
    }

    /// The payload, once some signature in the envelope verifies with `key`.
    pub fn verify(&self, key: &PublicKey) -> Result<Vec<u8>, VerifyError> {
        let payload = STANDARD
            .decode(&self.payload)
            .map_err(|_| VerifyError::BadPayload("the envelope's payload is not base64".into()))?;
        let message = pae(&self.payload_type, &payload);
        let verified = self.signatures.iter().any(|s| {
            STANDARD
                .decode(&s.sig)
                .is_ok_and(|der| verify_der(key, &message, &der).is_ok())
        });
        if verified {
            Ok(payload)
        } else {
            Err(VerifyError::BadSignature)
        }
    }
}

// The statement itself is `statement`'s; signing it is this module's.
impl Statement {
    /// The statement signed in a DSSE envelope.
    pub fn sign(&self, signer: &dyn Signer) -> Envelope {
        Envelope::sign(signer, PAYLOAD_TYPE_IN_TOTO, &self.to_json())
    }
}

#[cfg(test)]
#[path = "dsse_tests.rs"]
mod tests;

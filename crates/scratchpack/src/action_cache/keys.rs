//! Cache entries signed with cosign keys (README's "Scaling out"): a run
//! with the signing key signs each entry it pushes in cosign's `.sig`
//! format, the simple-signing payload naming the entry's digest and, among
//! its `optional` fields, the action key's tag; a run with the verifying key
//! uses an entry only when such a signature verifies. Binding the tag means
//! an entry signed for one action key cannot be re-tagged as another's.
//! cosign checks them too: `cosign verify --key cache.pub
//! -a dev.scratchpack.cache.action-key=ak-… REPO@DIGEST`.

use std::collections::BTreeMap;
use std::path::Path;

use super::EntryKeys;
use crate::oci::Digest;
use crate::registry::Session;
use crate::release::keys::{self, KeyError, PrivateKey, PublicKey};
use crate::release::publish::{append_layers, read_layers};
use crate::release::sign::{
    ANNOTATION_SIGNATURE, KeySigner, MEDIA_TYPE_SIMPLE_SIGNING, SignedLayer, signature_tag,
    verify_simple_signing,
};

/// The `optional` field of a cache entry's signature that names the action
/// key's tag the entry was pushed under.
pub const ACTION_KEY_FIELD: &str = "dev.scratchpack.cache.action-key";

/// The cache's keys: either, both, or (never built) neither.
pub struct CacheKeys {
    signer: Option<KeySigner>,
    verifier: Option<PublicKey>,
}

impl std::fmt::Debug for CacheKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheKeys")
            .field("signs", &self.signer.is_some())
            .field("verifier", &self.verifier.as_ref().map(PublicKey::hint))
            .finish()
    }
}

impl CacheKeys {
    pub fn new(signer: Option<PrivateKey>, verifier: Option<PublicKey>) -> CacheKeys {
        CacheKeys {
            signer: signer.as_ref().map(KeySigner::new),
            verifier,
        }
    }

    /// cosign's encrypted private key, its password from `COSIGN_PASSWORD`.
    pub fn read_signing(path: &Path) -> Result<PrivateKey, KeyError> {
        keys::read_private_key(path, &keys::password_from_env()?)
    }

    /// A PEM public key.
    pub fn read_verifying(path: &Path) -> Result<PublicKey, KeyError> {
        keys::read_public_key(path)
    }
}

impl EntryKeys for CacheKeys {
    fn signs(&self) -> bool {
        self.signer.is_some()
    }

    fn verifies(&self) -> bool {
        self.verifier.is_some()
    }

    fn sign(
        &self,
        session: &mut Session<'_, '_>,
        digest: &Digest,
        tag: &str,
    ) -> Result<(), String> {
        let Some(signer) = &self.signer else {
            return Ok(());
        };
        let optional = BTreeMap::from([(ACTION_KEY_FIELD.to_owned(), tag.to_owned())]);
        let reference = session.repository().to_string();
        let layer = SignedLayer::simple_signing(signer, &reference, digest, &optional);
        append_layers(session, &signature_tag(digest), vec![layer]).map_err(|e| e.to_string())
    }

    fn check(
        &self,
        session: &mut Session<'_, '_>,
        digest: &Digest,
        tag: &str,
    ) -> Result<(), String> {
        let Some(key) = &self.verifier else {
            return Ok(());
        };
        let sig_tag = signature_tag(digest);
        let layers = read_layers(session, &sig_tag)
            .map_err(|e| format!("reading {sig_tag}: {e}"))?
            .ok_or_else(|| format!("it has no signature ({sig_tag})"))?;
        let mut other_key = false;
        for layer in &layers {
            if layer.payload.media_type != MEDIA_TYPE_SIMPLE_SIGNING {
                continue;
            }
            let signature = layer
                .annotations
                .get(ANNOTATION_SIGNATURE)
                .map_or("", String::as_str);
            match verify_simple_signing(key, &layer.payload.bytes, signature, digest) {
                Ok(optional) if optional.get(ACTION_KEY_FIELD).map(String::as_str) == Some(tag) => {
                    return Ok(());
                }
                Ok(_) => other_key = true,
                Err(_) => {}
            }
        }
        Err(if other_key {
            "its signature is for another action key".to_owned()
        } else {
            format!("no signature in {sig_tag} verifies with the key")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_say_what_they_do() {
        let key = PrivateKey::generate();
        let both = CacheKeys::new(Some(key.clone()), Some(key.public_key()));
        assert!(both.signs() && both.verifies());
        let verify_only = CacheKeys::new(None, Some(key.public_key()));
        assert!(!verify_only.signs() && verify_only.verifies());
        let shown = format!("{verify_only:?}");
        assert!(shown.contains("signs: false"), "{shown}");
    }
}

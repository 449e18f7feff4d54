//! Content digests (image-spec "Digests": sha256 only) and canonical JSON,
//! the one encoding whose bytes are hashed, stored and pushed. A leaf: it
//! knows nothing of images, so anything that hashes may use it.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// A sha256 content digest (image-spec "Digests").
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(String);

impl Digest {
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_hasher(Sha256::new_with_prefix(bytes))
    }

    pub fn from_hasher(hasher: Sha256) -> Digest {
        Digest(format!("sha256:{}", hex(&hasher.finalize())))
    }

    /// Parses `sha256:<64 lowercase hex>`.
    pub fn parse(s: &str) -> Option<Digest> {
        let hex = s.strip_prefix("sha256:")?;
        (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Digest(s.to_owned()))
    }

    /// The hex part, used as the blob's file name.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Only sha256 digests are read: a descriptor naming another algorithm is a
/// parse error where it is read, not a surprise later.
impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!("`{s}` is not a sha256 digest (sha256:<64 hex>)"))
        })
    }
}

/// A digest reads as its text wherever text is expected (messages, paths).
impl std::ops::Deref for Digest {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Digest {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&Digest> for &str {
    fn eq(&self, other: &&Digest) -> bool {
        *self == other.0
    }
}

/// The sha256 of `bytes` as lower-case hexadecimal, for keys and file
/// names where the `sha256:` prefix of a [`Digest`] would be noise.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Bytes as lower-case hexadecimal, two digits each.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// JSON with object keys sorted and no insignificant whitespace: one value has
/// one encoding, so its digest depends on nothing but its content. Going
/// through `serde_json::Value` sorts keys, since serde_json's map is a BTreeMap
/// (the `preserve_order` feature is never enabled in this workspace).
pub fn canonical_json(value: &impl Serialize) -> Vec<u8> {
    let value = serde_json::to_value(value).expect("image metadata always serializes to JSON");
    serde_json::to_vec(&value).expect("a JSON value always serializes")
}

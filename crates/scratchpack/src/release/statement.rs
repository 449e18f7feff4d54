//! The in-toto Statement v1 (in-toto attestation framework,
//! `spec/v1/statement.md`) that SBOMs and provenance are wrapped in: written
//! unsigned beside a layout, and signed as a DSSE attestation.

use serde::{Deserialize, Serialize};

use crate::oci::Digest;

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";

/// An in-toto Statement v1 about artefacts named by digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub kind: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: serde_json::Value,
}

/// A statement's `ResourceDescriptor` subject: a name and its sha256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub name: String,
    pub digest: std::collections::BTreeMap<String, String>,
}

impl Subject {
    pub fn new(name: &str, digest: &Digest) -> Subject {
        Subject {
            name: name.to_owned(),
            digest: [("sha256".to_owned(), digest.hex().to_owned())].into(),
        }
    }
}

impl Statement {
    pub fn new(
        subject: Vec<Subject>,
        predicate_type: &str,
        predicate: serde_json::Value,
    ) -> Statement {
        Statement {
            kind: STATEMENT_TYPE.to_owned(),
            subject,
            predicate_type: predicate_type.to_owned(),
            predicate,
        }
    }

    /// The statement's canonical JSON bytes: what a DSSE envelope carries.
    pub fn to_json(&self) -> Vec<u8> {
        crate::oci::canonical_json(self)
    }

    /// Whether `digest` is among the subjects.
    pub fn names(&self, digest: &Digest) -> bool {
        self.subject
            .iter()
            .any(|s| s.digest.get("sha256").map(String::as_str) == Some(digest.hex()))
    }
}

//! Typed push errors, with the registry's own words from the distribution spec's
//! error body (`{"errors":[{"code","message"}]}`, "Error Codes").

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::credentials::CredentialError;
use super::reference::ReferenceError;

/// Why a push stopped. Every message says what was being done.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("reading image layout {path}: {message}")]
    Layout { path: PathBuf, message: String },
    #[error("looking up credentials for {registry}: {source}")]
    Credentials {
        registry: String,
        #[source]
        source: CredentialError,
    },
    #[error("{action}: {failure}{}", tries_suffix(*tries))]
    Request {
        action: String,
        failure: Failure,
        tries: u32,
    },
}

impl RegistryError {
    /// What the registry or the connection did, when the error came from a request.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            RegistryError::Request { failure, .. } => Some(failure),
            _ => None,
        }
    }
}

fn tries_suffix(tries: u32) -> String {
    if tries > 1 {
        format!(" (after {tries} tries)")
    } else {
        String::new()
    }
}

/// One entry of the distribution spec's error body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RemoteError {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<RemoteError>,
}

/// What went wrong with one request.
#[derive(Debug, Clone)]
pub enum Failure {
    /// The registry answered with a status the operation cannot go on with.
    Status {
        status: u16,
        errors: Vec<RemoteError>,
        /// How long the registry asked to wait (`Retry-After`), if it did.
        retry_after: Option<Duration>,
        /// Extra words from the client, e.g. that the credentials were refused.
        note: Option<String>,
    },
    /// The connection failed; `transient` says whether trying again may help.
    Transport { message: String, transient: bool },
    /// The registry answered something the spec does not allow, e.g. a wrong digest.
    Protocol(String),
    /// The operation's time budget ran out while a request was under way,
    /// or before it could start.
    BudgetSpent,
    /// The operation's time budget ran out; `last` is how its tries failed
    /// before that.
    OutOfTime {
        last: Box<Failure>,
        spent: Duration,
        budget: Duration,
    },
}

impl Failure {
    pub(crate) fn from_status(status: u16, body: &[u8], retry_after: Option<Duration>) -> Self {
        let errors = serde_json::from_slice::<ErrorBody>(body)
            .map(|b| b.errors)
            .unwrap_or_default();
        Failure::Status {
            status,
            errors,
            retry_after,
            note: None,
        }
    }

    pub(crate) fn with_note(mut self, text: String) -> Self {
        if let Failure::Status { note, .. } = &mut self {
            *note = Some(text);
        }
        self
    }

    /// Whether trying the same operation again may succeed: connection trouble,
    /// 5xx, 408 and 429. Everything else (401 after auth, 403, 400, 404) is final.
    pub fn is_transient(&self) -> bool {
        match self {
            Failure::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            Failure::Transport { transient, .. } => *transient,
            Failure::Protocol(_) | Failure::BudgetSpent | Failure::OutOfTime { .. } => false,
        }
    }

    /// The HTTP status, when the registry answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Failure::Status { status, .. } => Some(*status),
            Failure::OutOfTime { last, .. } => last.status(),
            _ => None,
        }
    }

    /// The distribution error codes the registry sent, e.g. `MANIFEST_INVALID`.
    pub fn codes(&self) -> Vec<&str> {
        match self {
            Failure::Status { errors, .. } => errors.iter().map(|e| e.code.as_str()).collect(),
            Failure::OutOfTime { last, .. } => last.codes(),
            _ => Vec::new(),
        }
    }

    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Status {
                status,
                errors,
                note,
                ..
            } => {
                let reason = ureq::http::StatusCode::from_u16(*status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                write!(f, "registry answered {status} {reason}")?;
                for (i, e) in errors.iter().enumerate() {
                    let sep = if i == 0 { ": " } else { "; " };
                    write!(f, "{sep}{} ({})", e.message, e.code)?;
                }
                if let Some(note) = note {
                    write!(f, " ({note})")?;
                }
                Ok(())
            }
            Failure::Transport { message, .. } => write!(f, "connection failed: {message}"),
            Failure::Protocol(message) => f.write_str(message),
            Failure::BudgetSpent => f.write_str("the operation's time budget ran out"),
            Failure::OutOfTime {
                last,
                spent,
                budget,
            } => write!(
                f,
                "{last}; gave up after {:.1} s, the operation's time budget being {} s",
                spent.as_secs_f64(),
                budget.as_secs_f64()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_message_carries_the_registry_words() {
        let body =
            br#"{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid","detail":{}}]}"#;
        let e = RegistryError::Request {
            action: "pushing manifest sha256:ab to localhost:5000/hello".into(),
            failure: Failure::from_status(400, body, None),
            tries: 1,
        };
        assert_eq!(
            e.to_string(),
            "pushing manifest sha256:ab to localhost:5000/hello: registry answered 400 Bad Request: \
             manifest invalid (MANIFEST_INVALID)"
        );
        assert!(!e.failure().unwrap().is_transient());
    }

    #[test]
    fn retried_failures_say_how_often() {
        let e = RegistryError::Request {
            action: "uploading blob sha256:ab to localhost:5000/hello".into(),
            failure: Failure::from_status(500, b"not json", None),
            tries: 4,
        };
        assert_eq!(
            e.to_string(),
            "uploading blob sha256:ab to localhost:5000/hello: registry answered 500 Internal Server Error \
             (after 4 tries)"
        );
        assert!(e.failure().unwrap().is_transient());
    }

    #[test]
    fn classifies_statuses() {
        for (status, transient) in [
            (500, true),
            (503, true),
            (429, true),
            (401, false),
            (403, false),
            (404, false),
        ] {
            assert_eq!(
                Failure::from_status(status, b"", None).is_transient(),
                transient,
                "{status}"
            );
        }
    }
}

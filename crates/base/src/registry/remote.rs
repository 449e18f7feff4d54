//! Reading and writing single objects in a repository, for what is attached
//! to images already pushed (OCI distribution spec v1.1: "Pulling manifests",
//! "Pushing manifests" with exact bytes, monolithic blob uploads, "Listing
//! Referrers", and the referrers tag schema for registries without that API).
//! Every manifest and blob read is bounded in size and checked against its
//! digest; a blob too large for memory is streamed to a file; a referrers
//! list is deduplicated and bounded before anything it names is read.

use std::fs::File;
use std::io::{Seek, Write};

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use ureq::http::Method;

use super::api::check_digest;
use super::credentials::CredentialSource;
use super::error::{Failure, RegistryError};
use super::options::PushOptions;
use super::reference::Repository;
use super::transport::{Answer, Client, Want, with_query};
use crate::oci::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, Descriptor, Digest, MEDIA_TYPE_INDEX,
    MEDIA_TYPE_MANIFEST, WalkLimits, canonical_json,
};

/// The largest manifest read: the size the distribution spec asks every
/// registry to accept, so nothing legitimate is larger.
pub const MAX_MANIFEST: usize = 4 * 1024 * 1024;

/// Every manifest kind a reader here understands, for `Accept`.
const ACCEPT_MANIFESTS: [&str; 4] = [
    MEDIA_TYPE_MANIFEST,
    MEDIA_TYPE_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// A manifest or index as the registry stores it: exact bytes, verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

impl RemoteManifest {
    /// The bytes as JSON.
    pub fn json(&self) -> Result<Value, String> {
        serde_json::from_slice(&self.bytes)
            .map_err(|e| format!("manifest {} is not JSON: {e}", self.digest))
    }

    pub fn is_index(&self) -> bool {
        self.media_type == MEDIA_TYPE_INDEX || self.media_type == DOCKER_MANIFEST_LIST
    }
}

/// What a manifest PUT told about the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub digest: Digest,
    /// The registry answered `OCI-Subject`: it indexed the manifest's
    /// `subject` itself, so its referrers API lists it with no client help.
    pub subject_indexed: bool,
}

/// Referrers of one manifest, and where the list came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Referrers {
    /// The descriptors of the referrers index, as the registry wrote them.
    pub descriptors: Vec<Value>,
    /// True when the registry's referrers API answered; false when the list
    /// is the referrers tag schema's `sha256-<hex>` index (or nothing).
    pub from_api: bool,
}

/// A session with one repository.
pub struct Session<'o, 'p> {
    client: Client<'o, 'p>,
    walk: WalkLimits,
}

impl<'o, 'p> Session<'o, 'p> {
    /// Looks up credentials, then checks the registry answers (learning how
    /// it wants to be authenticated).
    pub fn open(
        repo: &Repository,
        creds: &dyn CredentialSource,
        opts: &'o PushOptions<'p>,
    ) -> Result<Self, RegistryError> {
        let credential =
            creds
                .credential(repo.registry())
                .map_err(|source| RegistryError::Credentials {
                    registry: repo.registry().to_owned(),
                    source,
                })?;
        let mut client = Client::new(repo, credential, opts);
        client.retrying(&format!("connecting to {}", repo.registry()), Client::ping)?;
        Ok(Session {
            client,
            walk: opts.limits.walk,
        })
    }

    pub fn repository(&self) -> &Repository {
        &self.client.repo
    }

    /// How much one walk of documents over this session may read.
    pub fn walk_limits(&self) -> WalkLimits {
        self.walk
    }

    fn url(&self, tail: &str) -> String {
        format!("{}/v2/{}/{tail}", self.client.base, self.client.repo.name())
    }

    /// `GET /v2/<name>/manifests/<reference>` (a tag or a digest); `None` when
    /// the registry has no such manifest.
    pub fn get_manifest(
        &mut self,
        reference: &str,
    ) -> Result<Option<RemoteManifest>, RegistryError> {
        let url = self.url(&format!("manifests/{reference}"));
        let repo = self.client.repo.clone();
        let action = format!("reading manifest {repo}:{reference}");
        let accept = [("accept", ACCEPT_MANIFESTS.join(", "))];
        self.client.retrying(&action, |c| {
            let answer = c.request(
                Method::GET,
                &url,
                &accept,
                None,
                &mut Want::Bytes(MAX_MANIFEST as u64),
            )?;
            match answer.status {
                200 => read_manifest(&answer, reference).map(Some),
                404 => Ok(None),
                _ => Err(answer.failure()),
            }
        })
    }

    /// `PUT /v2/<name>/manifests/<reference>` with exactly `bytes`.
    pub fn put_manifest(
        &mut self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Stored, RegistryError> {
        let url = self.url(&format!("manifests/{reference}"));
        let digest = Digest::of(bytes);
        let action = format!(
            "pushing manifest {digest} to {}:{reference}",
            self.client.repo
        );
        let headers = [("content-type", media_type.to_owned())];
        self.client.retrying(&action, |c| {
            let answer = c.request(Method::PUT, &url, &headers, Some(bytes), &mut Want::Words)?;
            if answer.status != 201 {
                return Err(answer.failure());
            }
            check_digest(&answer, digest.as_str(), "manifest")?;
            Ok(Stored {
                digest: digest.clone(),
                subject_indexed: answer.header("oci-subject").is_some(),
            })
        })
    }

    /// Uploads `bytes` as one blob in a single request, unless the registry
    /// has it already.
    pub fn put_blob(&mut self, bytes: &[u8]) -> Result<Digest, RegistryError> {
        let digest = Digest::of(bytes);
        let repo = self.client.repo.clone();
        let uploads = self.url("blobs/uploads/");
        let action = format!("uploading blob {digest} to {repo}");
        self.client.retrying(&action, |c| {
            if c.blob_exists(digest.as_str())? {
                return Ok(());
            }
            let answer = c.request(Method::POST, &uploads, &[], Some(&[]), &mut Want::Words)?;
            if answer.status != 202 {
                return Err(answer.failure());
            }
            let location = c.location(&answer)?;
            let url = with_query(&location, "digest", digest.as_str());
            let headers = [("content-type", "application/octet-stream".to_owned())];
            let answer = c.request(Method::PUT, &url, &headers, Some(bytes), &mut Want::Words)?;
            if answer.status != 201 {
                return Err(answer.failure());
            }
            c.stats.bytes_uploaded += bytes.len() as u64;
            check_digest(&answer, digest.as_str(), "blob")
        })?;
        Ok(digest)
    }

    /// `GET /v2/<name>/blobs/<digest>` into memory, refusing more than `max`
    /// bytes and bytes that do not hash to `digest`.
    pub fn get_blob(&mut self, digest: &Digest, max: usize) -> Result<Vec<u8>, RegistryError> {
        let url = self.url(&format!("blobs/{digest}"));
        let action = format!("reading blob {digest} from {}", self.client.repo);
        self.client.retrying(&action, |c| {
            let answer = c.request(Method::GET, &url, &[], None, &mut Want::Bytes(max as u64))?;
            if answer.status != 200 {
                return Err(answer.failure());
            }
            let got = Digest::of(&answer.body);
            if &got != digest {
                return Err(Failure::Protocol(format!(
                    "the registry sent bytes whose digest is {got}"
                )));
            }
            Ok(answer.body)
        })
    }

    /// `GET /v2/<name>/blobs/<digest>` streamed into `file` (emptied first,
    /// and again before each retry), `size` bytes exactly, which must hash
    /// to `digest`: a blob of any size, never held in memory.
    pub fn get_blob_to(
        &mut self,
        digest: &Digest,
        size: u64,
        file: &mut File,
    ) -> Result<(), RegistryError> {
        let url = self.url(&format!("blobs/{digest}"));
        let action = format!("reading blob {digest} from {}", self.client.repo);
        self.client.retrying(&action, |c| {
            let local = |e: std::io::Error| Failure::Protocol(format!("writing the blob: {e}"));
            file.set_len(0).map_err(local)?;
            file.rewind().map_err(local)?;
            let mut to = Hashing::new(&mut *file);
            let answer = c.request(
                Method::GET,
                &url,
                &[],
                None,
                &mut Want::Stream {
                    to: &mut to,
                    limit: size,
                },
            )?;
            if answer.status != 200 {
                return Err(answer.failure());
            }
            let (written, got) = to.finish();
            if written != size || &got != digest {
                return Err(Failure::Protocol(format!(
                    "the registry sent {written} bytes whose digest is {got}, not the \
                     {size} bytes of {digest}"
                )));
            }
            Ok(())
        })
    }

    /// The manifests that name `subject` as their subject: from the referrers
    /// API when the registry has it, else from the referrers tag schema's
    /// `sha256-<hex>` index.
    pub fn referrers(&mut self, subject: &Digest) -> Result<Referrers, RegistryError> {
        let url = self.url(&format!("referrers/{subject}"));
        let action = format!("listing referrers of {subject} in {}", self.client.repo);
        let accept = [("accept", MEDIA_TYPE_INDEX.to_owned())];
        let from_api = self.client.retrying(&action, |c| {
            let answer = c.request(
                Method::GET,
                &url,
                &accept,
                None,
                &mut Want::Bytes(MAX_MANIFEST as u64),
            )?;
            match answer.status {
                200 => index_descriptors(&answer.body, "referrers index").map(Some),
                // The spec forbids 404 from a registry that has the API, so 404
                // (and 405 from routers that know no such path) means it has none.
                404 | 405 => Ok(None),
                _ => Err(answer.failure()),
            }
        })?;
        let (descriptors, from_api) = match from_api {
            Some(descriptors) => (descriptors, true),
            None => match self.get_manifest(&fallback_tag(subject))? {
                Some(index) => (
                    index_descriptors(&index.bytes, "referrers tag index").map_err(|f| {
                        RegistryError::Request {
                            action: action.clone(),
                            failure: f,
                            tries: 1,
                        }
                    })?,
                    false,
                ),
                None => (Vec::new(), false),
            },
        };
        let descriptors =
            bounded_referrers(descriptors, self.walk.documents).map_err(|failure| {
                RegistryError::Request {
                    action,
                    failure,
                    tries: 1,
                }
            })?;
        Ok(Referrers {
            descriptors,
            from_api,
        })
    }

    /// Makes `descriptor` (of a manifest whose `subject` is `subject`) findable.
    /// A registry that indexed the subject on PUT needs nothing more; for one
    /// without the referrers API the `sha256-<hex>` tag's index is read,
    /// given the descriptor unless it lists that digest already, and written
    /// back with every other entry kept.
    pub fn add_referrer(
        &mut self,
        subject: &Digest,
        descriptor: &Descriptor,
        stored: &Stored,
    ) -> Result<(), RegistryError> {
        if stored.subject_indexed {
            return Ok(());
        }
        // The index's other entries are kept as the registry holds them,
        // fields this crate does not know included; only ours is typed.
        let descriptor =
            serde_json::to_value(descriptor).expect("a descriptor always serializes to JSON");
        let tag = fallback_tag(subject);
        let action = format!("reading referrers tag {}:{tag}", self.client.repo);
        let mut descriptors = match self.get_manifest(&tag)? {
            Some(index) => {
                index_descriptors(&index.bytes, "referrers tag index").map_err(|failure| {
                    RegistryError::Request {
                        action,
                        failure,
                        tries: 1,
                    }
                })?
            }
            None => Vec::new(),
        };
        if descriptors
            .iter()
            .any(|d| d.get("digest") == descriptor.get("digest"))
        {
            return Ok(());
        }
        descriptors.push(descriptor);
        let index = canonical_json(&json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_INDEX,
            "manifests": descriptors,
        }));
        self.put_manifest(&tag, MEDIA_TYPE_INDEX, &index)?;
        Ok(())
    }
}

/// A referrers list with each digest once (the first entry kept), refused
/// when it still names more referrers than one walk reads: every one a
/// reader looks at is a request, and a registry could list any number.
fn bounded_referrers(descriptors: Vec<Value>, limit: usize) -> Result<Vec<Value>, Failure> {
    let mut seen = std::collections::BTreeSet::new();
    let listed = descriptors.len();
    let unique: Vec<Value> = descriptors
        .into_iter()
        .filter(|d| match d.get("digest").and_then(Value::as_str) {
            Some(digest) => seen.insert(digest.to_owned()),
            // Not a descriptor: nothing to read, kept for the caller to judge.
            None => true,
        })
        .collect();
    if unique.len() > limit {
        return Err(Failure::Protocol(format!(
            "the registry lists {} referrers ({listed} entries), more than the {limit} one \
             walk reads (raise `registry-limits.max-documents` if there are that many)",
            unique.len()
        )));
    }
    Ok(unique)
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    fn finish(self) -> (u64, Digest) {
        (self.written, Digest::from_hasher(self.hasher))
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The referrers tag schema's tag for `subject`: `sha256-<hex>`.
pub fn fallback_tag(subject: &Digest) -> String {
    format!("sha256-{}", subject.hex())
}

/// The manifest an answer holds (read within [`MAX_MANIFEST`]), checked
/// against the digest asked for and the one the registry names.
fn read_manifest(answer: &Answer, reference: &str) -> Result<RemoteManifest, Failure> {
    let digest = Digest::of(&answer.body);
    if let Some(asked) = Digest::parse(reference)
        && asked != digest
    {
        return Err(Failure::Protocol(format!(
            "asked for {asked}, the registry sent bytes whose digest is {digest}"
        )));
    }
    check_digest(answer, digest.as_str(), "manifest")?;
    // The body's own `mediaType` wins over the header: it is what the digest
    // covers.
    let declared = serde_json::from_slice::<Value>(&answer.body)
        .ok()
        .and_then(|v| {
            v.get("mediaType")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
    let media_type = declared
        .or_else(|| {
            answer
                .header("content-type")
                .map(|t| t.split(';').next().unwrap_or(t).trim().to_owned())
        })
        .unwrap_or_default();
    Ok(RemoteManifest {
        digest,
        media_type,
        bytes: answer.body.clone(),
    })
}

fn index_descriptors(bytes: &[u8], what: &str) -> Result<Vec<Value>, Failure> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| Failure::Protocol(format!("the {what} is not JSON: {e}")))?;
    match value.get("manifests") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(list)) => Ok(list.clone()),
        Some(_) => Err(Failure::Protocol(format!(
            "the {what}'s `manifests` is not a list"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_tags_follow_the_schema() {
        let d = Digest::of(b"x");
        assert_eq!(fallback_tag(&d), format!("sha256-{}", d.hex()));
    }

    #[test]
    fn referrer_lists_are_deduplicated_then_bounded() {
        let d = |n: u32| json!({"digest": format!("sha256:{n:064x}")});
        let listed = vec![d(1), d(2), d(1), d(1), json!({"odd": true}), d(3)];
        let kept = bounded_referrers(listed.clone(), 4).unwrap();
        assert_eq!(kept, vec![d(1), d(2), json!({"odd": true}), d(3)]);
        let e = bounded_referrers(listed, 3).unwrap_err().to_string();
        assert!(
            e.contains("lists 4 referrers (6 entries), more than the 3"),
            "{e}"
        );
        let many: Vec<Value> = (0..12_000).map(|_| d(7)).collect();
        assert_eq!(bounded_referrers(many, 1).unwrap(), vec![d(7)]);
    }

    #[test]
    fn hashing_writer_counts_and_hashes() {
        let mut out = Vec::new();
        let mut w = Hashing::new(&mut out);
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let (n, digest) = w.finish();
        assert_eq!((n, digest), (11, Digest::of(b"hello world")));
        assert_eq!(out, b"hello world");
    }

    #[test]
    fn index_lists_are_read_or_refused() {
        assert_eq!(
            index_descriptors(br#"{"manifests":[{"digest":"a"}]}"#, "x").unwrap(),
            vec![json!({"digest":"a"})]
        );
        assert!(index_descriptors(br#"{}"#, "x").unwrap().is_empty());
        assert!(index_descriptors(br#"{"manifests":{}}"#, "x").is_err());
        assert!(index_descriptors(b"<html>", "x").is_err());
    }
}

//! Pushes an OCI image layout to a registry, per the OCI distribution spec's
//! "Push" section: blobs first (skipped when present, mounted or uploaded), then
//! child manifests by digest, and only then the tags, so a failed push never leaves
//! a tag pointing at an incomplete image.

mod auth;
mod client;
pub mod credentials;
mod error;
mod layout;
pub mod reference;
pub mod remote;

use std::path::Path;
use std::time::{Duration, Instant};

pub use credentials::{
    Anonymous, Chain, Credential, CredentialError, CredentialSource, DockerConfig, EnvCredentials,
    StaticCredential, default_credentials,
};
pub use error::{Failure, RegistryError, RemoteError};
pub use reference::{Reference, ReferenceError, Repository};
pub use remote::{Manifest, Referrers, Session, Stored};

use client::{BlobOutcome, Client};

/// What a push reports as it goes, for the CLI to render.
#[derive(Debug, Clone, PartialEq)]
pub enum ProgressEvent<'a> {
    /// The registry already has this blob.
    BlobSkipped { digest: &'a str, size: u64 },
    /// The registry linked the blob from the `mount_from` repository.
    BlobMounted { digest: &'a str, size: u64 },
    /// An upload session started.
    BlobStarted { digest: &'a str, size: u64 },
    /// Bytes of the blob the registry has accepted so far (after each chunk, and
    /// once at the end).
    BlobProgress {
        digest: &'a str,
        sent: u64,
        size: u64,
    },
    /// A manifest or index is in place under `reference` (a digest or a tag).
    ManifestPushed { reference: &'a str, digest: &'a str },
    /// A transient failure; the operation is tried again after `delay`.
    Retrying {
        action: &'a str,
        attempt: u32,
        delay: Duration,
        reason: &'a str,
    },
}

/// How a push talks to the registry.
#[derive(Clone)]
pub struct PushOptions<'a> {
    /// Allow plain HTTP. Off by default: HTTPS only.
    pub insecure: bool,
    /// Blobs larger than this go up in chunks of this size; smaller ones in one PUT.
    pub chunk_size: usize,
    /// How often a transiently failed operation is tried again.
    pub retries: u32,
    /// The first retry's delay; each later one doubles it.
    pub backoff: Duration,
    /// The longest wait between tries, also capping a registry's `Retry-After`.
    pub max_backoff: Duration,
    /// Connect and per-request timeout.
    pub timeout: Duration,
    /// A repository on the same registry to mount existing blobs from.
    pub mount_from: Option<String>,
    pub progress: Option<&'a dyn Fn(&ProgressEvent<'_>)>,
}

impl Default for PushOptions<'_> {
    fn default() -> Self {
        PushOptions {
            insecure: false,
            // Big enough that scratch images' configs and small layers go in one
            // request, small enough that a retry re-sends little.
            chunk_size: 8 * 1024 * 1024,
            retries: 4,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            timeout: Duration::from_secs(300),
            mount_from: None,
            progress: None,
        }
    }
}

impl std::fmt::Debug for PushOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushOptions")
            .field("insecure", &self.insecure)
            .field("chunk_size", &self.chunk_size)
            .field("retries", &self.retries)
            .field("backoff", &self.backoff)
            .field("max_backoff", &self.max_backoff)
            .field("timeout", &self.timeout)
            .field("mount_from", &self.mount_from)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// What a finished push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReport {
    /// Where the image went, e.g. `localhost:5000/team/hello`.
    pub repository: String,
    /// Digest of the top-level manifest or index the tags point at.
    pub digest: String,
    pub media_type: String,
    pub tags: Vec<String>,
    pub blobs_uploaded: usize,
    pub blobs_skipped: usize,
    pub blobs_mounted: usize,
    /// Blob bytes sent, including those of tries that failed.
    pub bytes_uploaded: u64,
    /// Manifests PUT, counting the top-level one once per tag.
    pub manifests_pushed: usize,
    pub requests: u32,
    pub retries: u32,
    pub elapsed: Duration,
}

/// Pushes the image named `ref_name` in the layout's `index.json` (or its only
/// image when `None`) to `target`, tagging it with each of `tags`. With no tags the
/// image is pushed by digest only.
///
/// ```no_run
/// use scratchpack::registry::{PushOptions, Repository, default_credentials, push_layout};
///
/// let target = Repository::parse("localhost:5000/team/hello")?;
/// let opts = PushOptions { insecure: true, ..PushOptions::default() };
/// let tags = vec!["1.0".to_owned()];
/// let report = push_layout(
///     "target/images/hello".as_ref(),
///     None,
///     &target,
///     &tags,
///     &default_credentials(),
///     &opts,
/// )?;
/// println!("pushed {}@{}", report.repository, report.digest);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn push_layout(
    layout_dir: &Path,
    ref_name: Option<&str>,
    target: &Repository,
    tags: &[String],
    creds: &dyn CredentialSource,
    opts: &PushOptions<'_>,
) -> Result<PushReport, RegistryError> {
    let started = Instant::now();
    for tag in tags {
        reference::validate_tag(&format!("{target}:{tag}"), tag)?;
    }
    if let Some(from) = &opts.mount_from {
        Repository::new(target.registry(), from)?;
    }
    let plan = layout::read_plan(layout_dir, ref_name)?;
    let credential =
        creds
            .credential(target.registry())
            .map_err(|source| RegistryError::Credentials {
                registry: target.registry().to_owned(),
                source,
            })?;
    let mut client = Client::new(target, credential, opts);
    let mut report = PushReport {
        repository: target.to_string(),
        digest: plan.top.digest.clone(),
        media_type: plan.top.media_type.clone(),
        tags: tags.to_vec(),
        blobs_uploaded: 0,
        blobs_skipped: 0,
        blobs_mounted: 0,
        bytes_uploaded: 0,
        manifests_pushed: 0,
        requests: 0,
        retries: 0,
        elapsed: Duration::ZERO,
    };
    client.retrying(
        &format!("connecting to {}", target.registry()),
        Client::ping,
    )?;

    for blob in &plan.blobs {
        let action = format!("checking blob {} in {target}", blob.digest);
        if client.retrying(&action, |c| c.blob_exists(&blob.digest))? {
            report.blobs_skipped += 1;
            progress(
                opts,
                ProgressEvent::BlobSkipped {
                    digest: &blob.digest,
                    size: blob.size,
                },
            );
            continue;
        }
        // The whole upload is the unit of retry: a session cut mid-way is
        // abandoned and a new one started, which every registry supports. A retry
        // first asks again whether the blob is there, since the failure may have
        // hit only the answer to a final PUT the registry did complete.
        let action = format!("uploading blob {} to {target}", blob.digest);
        let mut attempt = 0;
        let outcome = client.retrying(&action, |c| {
            attempt += 1;
            if attempt > 1 && c.blob_exists(&blob.digest)? {
                return Ok(None);
            }
            c.upload_blob(blob).map(Some)
        })?;
        match outcome {
            None => report.blobs_skipped += 1,
            Some(BlobOutcome::Mounted) => {
                report.blobs_mounted += 1;
                progress(
                    opts,
                    ProgressEvent::BlobMounted {
                        digest: &blob.digest,
                        size: blob.size,
                    },
                );
            }
            Some(BlobOutcome::Uploaded) => report.blobs_uploaded += 1,
        }
    }

    for child in &plan.children {
        let action = format!("checking manifest {} in {target}", child.digest);
        if client.retrying(&action, |c| c.manifest_exists(child))? {
            continue;
        }
        let action = format!("pushing manifest {} to {target}", child.digest);
        client.retrying(&action, |c| c.put_manifest(&child.digest, child))?;
        report.manifests_pushed += 1;
        progress(
            opts,
            ProgressEvent::ManifestPushed {
                reference: &child.digest,
                digest: &child.digest,
            },
        );
    }

    // Tags last: everything they reach is in place by now.
    let references: Vec<&str> = if tags.is_empty() {
        vec![plan.top.digest.as_str()]
    } else {
        tags.iter().map(String::as_str).collect()
    };
    for reference in references {
        let action = if reference == plan.top.digest {
            format!("pushing manifest {} to {target}", plan.top.digest)
        } else {
            format!("tagging {} as {target}:{reference}", plan.top.digest)
        };
        client.retrying(&action, |c| c.put_manifest(reference, &plan.top))?;
        report.manifests_pushed += 1;
        progress(
            opts,
            ProgressEvent::ManifestPushed {
                reference,
                digest: &plan.top.digest,
            },
        );
    }

    report.bytes_uploaded = client.stats.bytes_uploaded;
    report.requests = client.stats.requests;
    report.retries = client.stats.retries;
    report.elapsed = started.elapsed();
    Ok(report)
}

fn progress(opts: &PushOptions<'_>, event: ProgressEvent<'_>) {
    if let Some(report) = opts.progress {
        report(&event);
    }
}

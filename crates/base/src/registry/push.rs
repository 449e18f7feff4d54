//! The push flow of [`push_layout`] (OCI distribution spec "Push"): blobs
//! several at once, each checked with HEAD first, mounted or uploaded and an
//! interrupted chunked upload resumed from the registry's offset; then child
//! manifests, then the tags.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::api::{Started, Upload};
use super::credentials::CredentialSource;
use super::error::RegistryError;
use super::options::{ProgressEvent, PushOptions};
use super::outgoing::{self, BlobFile};
use super::reference::{self, Repository};
use super::transport::{self, Client, Sink};

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
/// image is pushed by digest only. A workspace's xtask reaches it as
/// `scratchpack::registry::push_layout`.
///
/// ```no_run
/// use scratchpack_base::registry::{PushOptions, Repository, default_credentials, push_layout};
///
/// let target = Repository::parse("localhost:5000/team/hello")?;
/// let opts = PushOptions { insecure: true, ..PushOptions::default() };
/// let tags = vec!["1.0".to_owned()];
/// let report = push_layout(
///     "target/images/hello".as_ref(),
///     None,
///     &target,
///     &tags,
///     &default_credentials(&[target.registry()]),
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
    let plan = outgoing::read_plan(layout_dir, ref_name)?;
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

    let sent = send_blobs(&client, &plan.blobs, target, opts)?;
    report.blobs_uploaded = sent.uploaded;
    report.blobs_skipped = sent.skipped;
    report.blobs_mounted = sent.mounted;

    for child in &plan.children {
        let action = format!("checking manifest {} in {target}", child.digest);
        if client.retrying(&action, |c| c.manifest_exists(child))? {
            continue;
        }
        let action = format!("pushing manifest {} to {target}", child.digest);
        client
            .retrying(&action, |c| c.put_manifest(&child.digest, child))
            .map_err(|e| blob_unknown(e, &sent.skipped_digests))?;
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
        client
            .retrying(&action, |c| c.put_manifest(reference, &plan.top))
            .map_err(|e| blob_unknown(e, &sent.skipped_digests))?;
        report.manifests_pushed += 1;
        progress(
            opts,
            ProgressEvent::ManifestPushed {
                reference,
                digest: &plan.top.digest,
            },
        );
    }

    report.bytes_uploaded = client.stats.bytes_uploaded + sent.stats.bytes_uploaded;
    report.requests = client.stats.requests + sent.stats.requests;
    report.retries = client.stats.retries + sent.stats.retries;
    report.elapsed = started.elapsed();
    Ok(report)
}

fn progress(opts: &PushOptions<'_>, event: ProgressEvent<'_>) {
    if let Some(report) = opts.progress {
        report(&event);
    }
}

/// A manifest the registry refused for naming a blob it does not know, when
/// the registry had said it held some of the blobs, which were therefore not
/// sent: that claim is the cause, and the error names the blobs.
fn blob_unknown(e: RegistryError, skipped: &[String]) -> RegistryError {
    match e {
        RegistryError::Request {
            action,
            failure,
            tries,
        } if !skipped.is_empty() && failure.codes().contains(&"MANIFEST_BLOB_UNKNOWN") => {
            let note = format!(
                "the registry had answered that it held {}, so they were not uploaded",
                skipped.join(", ")
            );
            RegistryError::Request {
                action,
                failure: failure.with_note(note),
                tries,
            }
        }
        other => other,
    }
}

/// How the blobs of a push reached the registry, and what that took.
#[derive(Default)]
struct Sent {
    uploaded: usize,
    skipped: usize,
    /// The blobs the registry said it had.
    skipped_digests: Vec<String>,
    mounted: usize,
    stats: transport::Stats,
}

/// How one blob reached the registry.
enum Outcome {
    Skipped,
    Mounted,
    Uploaded,
}

/// What an upload thread tells the pushing thread: an event, or how one
/// blob (named by its digest) went.
enum Message {
    Event(OwnedEvent),
    Done(String, Result<Outcome, RegistryError>),
}

/// A progress event that can cross threads; the caller's callback is only
/// ever called on the caller's thread.
enum OwnedEvent {
    Skipped {
        digest: String,
        size: u64,
    },
    Mounted {
        digest: String,
        size: u64,
    },
    Started {
        digest: String,
        size: u64,
    },
    Progress {
        digest: String,
        sent: u64,
        size: u64,
    },
    Retrying {
        action: String,
        attempt: u32,
        delay: Duration,
        reason: String,
    },
}

impl OwnedEvent {
    fn new(event: &ProgressEvent<'_>) -> Option<OwnedEvent> {
        Some(match *event {
            ProgressEvent::BlobSkipped { digest, size } => OwnedEvent::Skipped {
                digest: digest.to_owned(),
                size,
            },
            ProgressEvent::BlobMounted { digest, size } => OwnedEvent::Mounted {
                digest: digest.to_owned(),
                size,
            },
            ProgressEvent::BlobStarted { digest, size } => OwnedEvent::Started {
                digest: digest.to_owned(),
                size,
            },
            ProgressEvent::BlobProgress { digest, sent, size } => OwnedEvent::Progress {
                digest: digest.to_owned(),
                sent,
                size,
            },
            ProgressEvent::Retrying {
                action,
                attempt,
                delay,
                reason,
            } => OwnedEvent::Retrying {
                action: action.to_owned(),
                attempt,
                delay,
                reason: reason.to_owned(),
            },
            ProgressEvent::ManifestPushed { .. } => return None,
        })
    }

    fn event(&self) -> ProgressEvent<'_> {
        match self {
            OwnedEvent::Skipped { digest, size } => ProgressEvent::BlobSkipped {
                digest,
                size: *size,
            },
            OwnedEvent::Mounted { digest, size } => ProgressEvent::BlobMounted {
                digest,
                size: *size,
            },
            OwnedEvent::Started { digest, size } => ProgressEvent::BlobStarted {
                digest,
                size: *size,
            },
            OwnedEvent::Progress { digest, sent, size } => ProgressEvent::BlobProgress {
                digest,
                sent: *sent,
                size: *size,
            },
            OwnedEvent::Retrying {
                action,
                attempt,
                delay,
                reason,
            } => ProgressEvent::Retrying {
                action,
                attempt: *attempt,
                delay: *delay,
                reason,
            },
        }
    }
}

impl Sink for mpsc::Sender<Message> {
    fn event(&self, event: &ProgressEvent<'_>) {
        if let Some(owned) = OwnedEvent::new(event) {
            // The receiver outlives every sender; a send cannot fail.
            let _ = self.send(Message::Event(owned));
        }
    }
}

/// Sends every blob, `opts.uploads` at a time, each thread on a client of its
/// own that starts from what `client` learnt. After the first failure no new
/// blob is started; the blobs under way finish, and the failure is returned.
fn send_blobs(
    client: &Client<'_, '_>,
    blobs: &[BlobFile],
    target: &Repository,
    opts: &PushOptions<'_>,
) -> Result<Sent, RegistryError> {
    let mut sent = Sent::default();
    let threads = opts.uploads.clamp(1, blobs.len().max(1));
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let mut failure = None;
    let (tx, rx) = mpsc::channel::<Message>();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let mut c = client.with_sink(tx.clone());
                let (next, stop) = (&next, &stop);
                scope.spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let Some(blob) = blobs.get(next.fetch_add(1, Ordering::SeqCst)) else {
                            break;
                        };
                        let result = send_blob(&mut c, blob, target);
                        if result.is_err() {
                            stop.store(true, Ordering::SeqCst);
                        }
                        let _ = c.sink.send(Message::Done(blob.digest.clone(), result));
                    }
                    c.stats
                })
            })
            .collect();
        // The loop below ends once every thread has dropped its sender.
        drop(tx);
        for message in rx {
            match message {
                Message::Event(event) => progress(opts, event.event()),
                Message::Done(digest, Ok(Outcome::Skipped)) => {
                    sent.skipped += 1;
                    sent.skipped_digests.push(digest);
                }
                Message::Done(_, Ok(Outcome::Mounted)) => sent.mounted += 1,
                Message::Done(_, Ok(Outcome::Uploaded)) => sent.uploaded += 1,
                Message::Done(_, Err(e)) => {
                    failure.get_or_insert(e);
                }
            }
        }
        for handle in handles {
            let stats = handle.join().expect("an upload thread panicked");
            sent.stats.requests += stats.requests;
            sent.stats.retries += stats.retries;
            sent.stats.bytes_uploaded += stats.bytes_uploaded;
        }
    });
    match failure {
        Some(e) => Err(e),
        None => Ok(sent),
    }
}

/// Sends one blob unless the registry has it. A failed try resumes the
/// upload session where the registry says it stands, so a chunk it holds is
/// not sent again; a session the registry no longer knows is replaced by a
/// new one, after asking again whether the blob is there, since the failure
/// may have hit only the answer to a final PUT the registry did complete.
fn send_blob<S: Sink>(
    c: &mut Client<'_, '_, S>,
    blob: &BlobFile,
    target: &Repository,
) -> Result<Outcome, RegistryError> {
    let action = format!("checking blob {} in {target}", blob.digest);
    if c.retrying(&action, |c| c.blob_exists(&blob.digest))? {
        c.sink.event(&ProgressEvent::BlobSkipped {
            digest: &blob.digest,
            size: blob.size,
        });
        return Ok(Outcome::Skipped);
    }
    let action = format!("uploading blob {} to {target}", blob.digest);
    let mut upload: Option<Upload> = None;
    let mut attempt = 0;
    let outcome = c.retrying(&action, |c| {
        attempt += 1;
        if attempt > 1 {
            if let Some(u) = &upload {
                upload = c.upload_status(u)?;
                if let Some(u) = &upload {
                    c.sink.event(&ProgressEvent::BlobStarted {
                        digest: &blob.digest,
                        size: blob.size,
                    });
                    c.sink.event(&ProgressEvent::BlobProgress {
                        digest: &blob.digest,
                        sent: u.offset,
                        size: blob.size,
                    });
                }
            }
            if upload.is_none() && c.blob_exists(&blob.digest)? {
                return Ok(Outcome::Skipped);
            }
        }
        let session = match &mut upload {
            Some(u) => u,
            None => match c.start_upload(blob)? {
                Started::Mounted => return Ok(Outcome::Mounted),
                Started::Session(u) => upload.insert(u),
            },
        };
        c.finish_upload(blob, session)?;
        Ok(Outcome::Uploaded)
    })?;
    if let Outcome::Mounted = outcome {
        c.sink.event(&ProgressEvent::BlobMounted {
            digest: &blob.digest,
            size: blob.size,
        });
    }
    Ok(outcome)
}

//! How a client talks to a registry (timeouts, retries, chunks, mounts,
//! parallel uploads), and the progress it reports as it goes.

use std::time::Duration;

use super::limits::RegistryLimits;

/// What a push reports as it goes, for the CLI to render.
#[derive(Debug, Clone, PartialEq)]
pub enum ProgressEvent<'a> {
    /// The registry already has this blob.
    BlobSkipped { digest: &'a str, size: u64 },
    /// The registry linked the blob from the `mount_from` repository.
    BlobMounted { digest: &'a str, size: u64 },
    /// An upload session started, or one resumes after a failure.
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
    /// How many blobs go up at once, each on a connection of its own.
    pub uploads: usize,
    /// How often a transiently failed operation is tried again.
    pub retries: u32,
    /// The first retry's delay; each later one doubles it.
    pub backoff: Duration,
    /// The longest wait between tries, also capping a registry's `Retry-After`.
    pub max_backoff: Duration,
    /// The idle timeout, each operation's time budget, and how much one walk
    /// of documents may read.
    pub limits: RegistryLimits,
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
            // Enough to keep a link busy while one upload waits on the
            // registry's answer, few enough not to look like a flood.
            uploads: 4,
            retries: 4,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            limits: RegistryLimits::default(),
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
            .field("uploads", &self.uploads)
            .field("retries", &self.retries)
            .field("backoff", &self.backoff)
            .field("max_backoff", &self.max_backoff)
            .field("limits", &self.limits)
            .field("mount_from", &self.mount_from)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

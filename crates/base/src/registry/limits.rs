//! How long a registry may keep a run waiting, and how much it may make a
//! run read: the bounds every client here holds a registry to, whatever it
//! answers. Always built, since the command line and images.toml carry
//! them whether or not this build can talk to a registry.

use std::time::Duration;

use crate::oci::WalkLimits;

/// The time and size bounds of every conversation with a registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryLimits {
    /// A request on which no byte moves for this long fails (and is retried
    /// within the operation's budget): a registry that accepts and never
    /// answers, or stops half-way. An answer's headers must also be
    /// complete within it, so headers sent a byte at a time cannot hold a
    /// request open either.
    pub idle_timeout: Duration,
    /// The most one operation may take, its retries and the waits between
    /// them included: a request still under way then is cut off, and no
    /// retry starts after it. An operation is one request and its retries;
    /// a blob's upload is one, whose budget starts again with each chunk the
    /// registry accepts, so a large blob is bounded by its progress.
    pub timeout: Duration,
    /// How much one walk of indexes, referrers or signature layers reads.
    pub walk: WalkLimits,
}

impl Default for RegistryLimits {
    fn default() -> Self {
        RegistryLimits {
            idle_timeout: Duration::from_secs(30),
            // Ten minutes: a large layer on a slow link fits, a registry
            // that answers nothing useful is given up on in a bounded time.
            timeout: Duration::from_secs(600),
            walk: WalkLimits::default(),
        }
    }
}

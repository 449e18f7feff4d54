//! The registry-backed build cache: an image is pushed to a cache repository
//! under a tag derived from its action key (`ak-<hex>`, see [`crate::build::action_key`])
//! after it is built, and before building, an image whose key is there is
//! pulled instead of compiled (OCI distribution spec "Pulling manifests" and
//! "Pulling blobs", through [`Session`]).
//!
//! A pulled entry is hostile input. It is read through the same
//! [`crate::oci::source`] walk as a layout on disk (every manifest and config
//! checked against its digest and size, within the registry's walk limits),
//! each layer streamed to disk and checked against its digest, size and the
//! config's `diff_id` as it is decompressed, never held in memory, each
//! binary taken from the layer must pass the static proof, and the image
//! reassembled from those binaries under this run's plan (with the entry's
//! own source annotations) must have exactly the pulled digest. Only then
//! are the binaries handed to the build in place of cargo's, so the outputs are
//! written by the same code, with the same bytes, as a local build's.
//! A miss, an unreachable registry or a corrupt entry is one status line and
//! a local build: the cache never fails a build nor changes its bytes.
//!
//! Those checks prove an entry consistent, not who made it: anyone who can
//! write to the cache repository can put there a binary built from other
//! source, and it passes them. With [`EntryKeys`] a run signs what it
//! pushes, and uses only entries signed by the verifying key; an entry
//! without such a signature is a miss like any other.

#[cfg(feature = "sign")]
pub mod keys;
#[cfg(feature = "push")]
mod registry;

use crate::build::{self, BuildError, BuildOptions, BuiltImage};
use crate::compile::Compiler;
use crate::manifest::ImagePlan;
#[cfg(feature = "push")]
use crate::oci::Digest;
#[cfg(feature = "push")]
use crate::registry::Session;
use crate::registry::{RegistryLimits, Repository};
use crate::shell::Shell;
use crate::toolchain::Env;
use crate::toolchain::workspace::Workspace;

#[cfg(feature = "push")]
pub use registry::{Hit, MAX_LAYER, Pulled, RemoteCache, is_loopback, pulled_dir};

/// Where the cache is read from and written to, and how far its entries
/// are trusted.
#[derive(Debug, Clone, Default)]
pub struct CacheSettings {
    pub from: Option<Repository>,
    pub to: Option<Repository>,
    /// The bounds the cache's registry is held to.
    pub limits: RegistryLimits,
    /// Who signs what is pushed, and whose signature an entry needs to be
    /// used; `None`: entries are neither signed nor asked for signatures.
    #[cfg(feature = "push")]
    pub keys: Option<std::sync::Arc<dyn EntryKeys>>,
}

impl CacheSettings {
    /// A cache read from `from` and written to `to`, its entries neither
    /// signed nor asked for signatures.
    pub fn new(from: Option<Repository>, to: Option<Repository>, limits: RegistryLimits) -> Self {
        CacheSettings {
            from,
            to,
            limits,
            #[cfg(feature = "push")]
            keys: None,
        }
    }
}

/// Signs cache entries and checks their signatures. The command line makes
/// one from cosign keys (the `sign` feature's), so the cache holds no
/// signing code; a signature binds an entry's digest to its action key's
/// tag, so an entry signed for one key cannot be tagged as another's.
#[cfg(feature = "push")]
pub trait EntryKeys: std::fmt::Debug {
    /// Whether what a run pushes is signed.
    fn signs(&self) -> bool;
    /// Whether an entry is used only with a signature [`Self::check`] accepts.
    fn verifies(&self) -> bool;
    /// Signs the entry `digest`, pushed under `tag` in the session's repository.
    fn sign(&self, session: &mut Session<'_, '_>, digest: &Digest, tag: &str)
    -> Result<(), String>;
    /// Whether the entry `digest` under `tag` carries a signature of the
    /// verifying key naming both; the error says why not, in a few words.
    fn check(
        &self,
        session: &mut Session<'_, '_>,
        digest: &Digest,
        tag: &str,
    ) -> Result<(), String>;
}

/// [`build::build`] with the cache: each image is looked up first, the
/// compiler is asked only for what was not pulled, and what was built here
/// is pushed to the cache afterwards. Without a cache configured it is
/// [`build::build`]; so it is in a program built without scratchpack's
/// `push` feature (the cache speaks the distribution protocol), with one
/// line saying so.
pub fn build_cached(
    settings: &CacheSettings,
    env: &Env,
    workspace: &Workspace,
    images: &[&ImagePlan],
    compiler: &dyn Compiler,
    opts: &BuildOptions,
    shell: Shell,
) -> Result<Vec<BuiltImage>, BuildError> {
    if settings.from.is_none() && settings.to.is_none() {
        return build::build(images, compiler, opts, shell);
    }
    #[cfg(feature = "push")]
    {
        registry::build_cached(settings, env, workspace, images, compiler, opts, shell)
    }
    #[cfg(not(feature = "push"))]
    {
        let _ = (env, workspace);
        shell.warn(
            "cache: the registry cache needs scratchpack's `push` feature, which this \
             xtask was built without; building without the cache",
        );
        build::build(images, compiler, opts, shell)
    }
}

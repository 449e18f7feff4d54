//! The registry-backed build cache: an image is pushed to a cache repository
//! under a tag derived from its action key (`ak-<hex>`, see [`crate::build::action_key`])
//! after it is built, and before building, an image whose key is there is
//! pulled instead of compiled (OCI distribution spec "Pulling manifests" and
//! "Pulling blobs", through [`Session`]).
//!
//! A pulled entry is hostile input. It is read through the same
//! [`crate::oci::source`] walk as a layout on disk (every manifest and config
//! checked against its digest and size), each layer's bytes against its
//! digest, size and the config's `diff_id`, the binary taken from the layer
//! must pass the static proof, and the image reassembled from that binary
//! under this run's plan must have exactly the pulled digest. Only then is
//! the binary handed to the build in place of cargo's, so the outputs are
//! written by the same code, with the same bytes, as a local build's.
//! A miss, an unreachable registry or a corrupt entry is one status line and
//! a local build: the cache never fails a build nor changes its bytes.

#[cfg(feature = "push")]
mod registry;

use crate::build::{self, BuildError, BuildOptions, BuiltImage};
use crate::compile::Compiler;
use crate::manifest::ImagePlan;
use crate::registry::Repository;
use crate::shell::Shell;
use crate::toolchain::Env;
use crate::toolchain::workspace::Workspace;

#[cfg(feature = "push")]
pub use registry::{Hit, Pulled, RemoteCache, is_loopback, pulled_dir};

/// Where the cache is read from and written to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheSettings {
    pub from: Option<Repository>,
    pub to: Option<Repository>,
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

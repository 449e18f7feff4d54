//! Pushes an OCI image layout to a registry, per the OCI distribution spec's
//! "Push" section: blobs first (skipped when present, mounted or uploaded,
//! several at once, an interrupted chunked upload resumed from the offset the
//! registry reports), then child manifests by digest, and only then the tags,
//! so a failed push never leaves a tag pointing at an incomplete image.
//!
//! Image references ([`reference`]) are part of every plan; everything that
//! talks to a registry is the `push` feature's.

#[cfg(feature = "push")]
mod api;
#[cfg(feature = "push")]
mod auth;
#[cfg(feature = "push")]
pub mod credentials;
#[cfg(feature = "push")]
mod error;
pub mod limits;
#[cfg(feature = "push")]
mod options;
#[cfg(feature = "push")]
mod outgoing;
#[cfg(feature = "push")]
mod push;
pub mod reference;
#[cfg(feature = "push")]
pub mod remote;
#[cfg(feature = "push")]
mod transport;

#[cfg(feature = "push")]
pub use credentials::{
    Anonymous, Chain, Credential, CredentialError, CredentialSource, DockerConfig, EnvCredentials,
    StaticCredential, default_credentials,
};
#[cfg(feature = "push")]
pub use error::{Failure, RegistryError, RemoteError};
pub use limits::RegistryLimits;
#[cfg(feature = "push")]
pub use options::{ProgressEvent, PushOptions};
#[cfg(feature = "push")]
pub use push::{PushReport, push_layout};
pub use reference::{Reference, ReferenceError, Repository};
#[cfg(feature = "push")]
pub use remote::{Referrers, RemoteManifest, Session, Stored};

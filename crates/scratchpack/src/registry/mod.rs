//! Pushes an OCI image layout to a registry, per the OCI distribution spec's
//! "Push" section: blobs first (skipped when present, mounted or uploaded,
//! several at once, an interrupted chunked upload resumed from the offset the
//! registry reports), then child manifests by digest, and only then the tags,
//! so a failed push never leaves a tag pointing at an incomplete image.
//!
//! Image references ([`reference`]) are part of every plan; everything that
//! talks to a registry is the `push` feature's.

#[cfg(feature = "push")]
mod auth;
#[cfg(feature = "push")]
mod client;
#[cfg(feature = "push")]
pub mod credentials;
#[cfg(feature = "push")]
mod error;
#[cfg(feature = "push")]
mod layout;
#[cfg(feature = "push")]
mod push;
pub mod reference;
#[cfg(feature = "push")]
pub mod remote;

#[cfg(feature = "push")]
pub use push::*;
pub use reference::{Reference, ReferenceError, Repository};

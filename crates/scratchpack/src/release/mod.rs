//! Release artefacts for built images: signing keys in cosign's formats,
//! signatures (cosign's `.sig` tag and Sigstore bundles), DSSE attestations
//! with in-toto statements, SBOMs and SLSA provenance. Everything here is
//! made from values and bytes; pushing them is the registry's business.

// The SBOMs and provenance are made by every build; keys, signatures,
// attestations and what reads them back from a registry are the `sign`
// feature's.
#[cfg(feature = "sign")]
pub mod bundle;
pub mod directory;
pub mod documents;
#[cfg(feature = "sign")]
pub mod dsse;
#[cfg(feature = "sign")]
pub mod keys;
pub mod provenance;
#[cfg(feature = "sign")]
pub mod publish;
pub mod sbom;
#[cfg(feature = "sign")]
pub mod sign;
pub mod statement;
#[cfg(feature = "sign")]
pub mod verify;
#[cfg(feature = "sign")]
pub mod verify_layout;

#[cfg(feature = "sign")]
pub use keys::{KeyError, PrivateKey, PublicKey};

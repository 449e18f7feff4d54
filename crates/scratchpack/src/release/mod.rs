//! Release artefacts for built images: signing keys in cosign's formats,
//! signatures (cosign's `.sig` tag and Sigstore bundles), DSSE attestations
//! with in-toto statements, SBOMs and SLSA provenance. Everything here is
//! made from values and bytes; pushing them is the registry's business.

pub mod auditable;
pub mod bundle;
pub mod documents;
pub mod dsse;
pub mod keys;
pub mod outputs;
pub mod provenance;
pub mod publish;
pub mod sbom;
pub mod settings;
pub mod sign;
pub mod verify;
pub mod verify_layout;

pub use keys::{KeyError, PrivateKey, PublicKey};

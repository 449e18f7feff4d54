//! One image's release settings, the typed form of images.toml's `sbom`,
//! `provenance`, `signature-format` and `builder-id` (checked and defaulted by
//! `manifest::resolve`): what `sign` attaches and what `verify` requires.

/// The builder id provenance records when the CI system names none.
pub const DEFAULT_BUILDER_ID: &str = "urn:scratchpack:builder:local";
/// The in-toto predicate type of an SPDX SBOM.
pub const PREDICATE_SPDX: &str = "https://spdx.dev/Document";
/// The in-toto predicate type of a CycloneDX SBOM.
pub const PREDICATE_CYCLONEDX: &str = "https://cyclonedx.org/bom";

/// Which cosign wire formats signatures and attestations are stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureFormat {
    /// Both below: what every cosign version can read.
    Both,
    /// cosign's legacy tags, `sha256-<hex>.sig` and `sha256-<hex>.att`.
    Sig,
    /// Sigstore bundles attached as OCI 1.1 referrers (cosign v3's default).
    Bundle,
}

impl SignatureFormat {
    pub fn tags(self) -> bool {
        self != SignatureFormat::Bundle
    }

    pub fn bundles(self) -> bool {
        self != SignatureFormat::Sig
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SbomFormat {
    Spdx,
    CycloneDx,
}

impl SbomFormat {
    pub fn name(self) -> &'static str {
        match self {
            SbomFormat::Spdx => "spdx",
            SbomFormat::CycloneDx => "cyclonedx",
        }
    }

    pub fn predicate_type(self) -> &'static str {
        match self {
            SbomFormat::Spdx => PREDICATE_SPDX,
            SbomFormat::CycloneDx => PREDICATE_CYCLONEDX,
        }
    }
}

/// One image's release settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseSettings {
    pub sbom: Vec<SbomFormat>,
    pub provenance: bool,
    pub signature_format: SignatureFormat,
    pub builder_id: String,
}

impl Default for ReleaseSettings {
    fn default() -> Self {
        ReleaseSettings {
            sbom: vec![SbomFormat::Spdx],
            provenance: true,
            signature_format: SignatureFormat::Both,
            builder_id: DEFAULT_BUILDER_ID.to_owned(),
        }
    }
}

//! The documents made about one platform of a built image: its SBOMs (SPDX
//! 2.3, CycloneDX 1.6) and SLSA v1 provenance, each also as the in-toto
//! Statement v1 that an attestation signs. `sign` attaches them to a pushed
//! image and `images` writes them beside the layout, from this one place so
//! that both say the same.

use super::provenance;
use super::sbom;
use super::statement::{Statement, Subject};
use crate::manifest::{ImagePlan, PlatformTarget, SbomFormat};
use crate::oci::Digest;
use crate::toolchain::crates::{CratesError, LinkedCrates};
use crate::toolchain::git::GitSource;
use crate::toolchain::versions::Toolchain;

#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// The built image does not match its plan.
    #[error("{0}")]
    Image(String),
    #[error(transparent)]
    Crates(#[from] CratesError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

/// What provenance records about the workspace, asked once per run.
#[derive(Debug, Clone)]
pub struct BuildInputs {
    pub source: Option<GitSource>,
    pub toolchain: Toolchain,
    pub cargo_lock: Digest,
}

/// The facts about the workspace that the documents record and only cargo,
/// rustc and git can tell. The caller gathers them: the documents are
/// rendered from values, and nothing here starts a program. They are asked
/// for only when a document needs them, so a run whose release files are
/// current asks for none, and a test hands in what it wants.
pub trait Facts {
    /// Cargo.lock's digest, rustc's and cargo's versions and the git commit.
    fn build_inputs(&self) -> Result<BuildInputs, DocumentError>;
    /// The crates each binary of `image` (its own, then its `binaries`)
    /// links when built for `target`: what its SBOMs list.
    fn linked_crates(
        &self,
        image: &ImagePlan,
        target: &PlatformTarget,
    ) -> Result<Vec<LinkedCrates>, DocumentError>;
}

/// One document about one platform manifest.
#[derive(Debug, Clone)]
pub struct Document {
    /// What it is, as its file names say: `spdx`, `cyclonedx` or `provenance`.
    pub kind: &'static str,
    /// The document itself (for provenance, the statement).
    pub bytes: Vec<u8>,
    /// The in-toto statement an attestation signs.
    pub statement: Statement,
}

/// Where the documents of one platform come from.
pub struct Platform<'a> {
    pub image: &'a ImagePlan,
    pub target: &'a PlatformTarget,
    /// The platform manifest's digest: the subject of every statement.
    pub digest: &'a Digest,
    /// `os/architecture[/variant]`, as provenance records it.
    pub name: &'a str,
    pub os: &'a str,
    pub architecture: &'a str,
    /// The name subjects carry: `registry/repository`, or the image name.
    pub reference: &'a str,
    /// `registry/repository` when the image has one, for the SBOM's purl.
    pub repository: Option<&'a str>,
}

/// The SBOMs and provenance the image's release settings ask for, in a fixed
/// order (the SBOM formats sorted, then provenance). `inputs` is needed only
/// when provenance is asked for; the crates the SBOMs list are asked of
/// `facts` only when SBOMs are.
pub fn documents(
    p: &Platform<'_>,
    facts: &dyn Facts,
    manifest_path: &str,
    epoch: u64,
    inputs: Option<&BuildInputs>,
) -> Result<Vec<Document>, DocumentError> {
    let image = p.image;
    let settings = &image.release;
    let subject = vec![Subject::new(p.reference, p.digest)];
    let mut out = Vec::new();
    if !settings.sbom.is_empty() {
        let crates = facts.linked_crates(image, p.target)?;
        let info = sbom::ImageInfo {
            name: image.name.clone(),
            repository: p.repository.map(str::to_owned),
            digest: p.digest.clone(),
            os: p.os.to_owned(),
            architecture: p.architecture.to_owned(),
            epoch,
        };
        for format in &settings.sbom {
            let bytes = match format {
                SbomFormat::Spdx => sbom::spdx(&crates, &info),
                SbomFormat::CycloneDx => sbom::cyclonedx(&crates, &info),
            };
            let document = serde_json::from_slice(&bytes).expect("SBOMs are written as JSON");
            out.push(Document {
                kind: format.name(),
                statement: Statement::new(subject.clone(), format.predicate_type(), document),
                bytes,
            });
        }
    }
    if settings.provenance {
        let inputs = inputs.expect("provenance inputs are read when provenance is asked for");
        let build = provenance::Build {
            manifest_path: manifest_path.to_owned(),
            image: image.name.clone(),
            platform: p.name.to_owned(),
            package: image.package.clone(),
            target: p.target.triple.clone(),
            profile: image.build.profile.clone(),
            features: image.build.features.clone(),
            default_features: image.build.default_features,
            source: inputs.source.clone(),
            cargo_lock: inputs.cargo_lock.clone(),
            toolchain: inputs.toolchain.clone(),
            builder_id: settings.builder_id.clone(),
        };
        let statement = provenance::statement(subject, &build);
        out.push(Document {
            kind: "provenance",
            bytes: statement.to_json(),
            statement,
        });
    }
    Ok(out)
}

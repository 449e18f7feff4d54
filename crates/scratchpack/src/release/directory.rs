//! The release files `images` writes beside each layout, in
//! `<out>/<name>.release/`: per platform each SBOM and the provenance as
//! plain JSON, and, when a key is given, Sigstore bundles (v0.3, the format
//! `cosign verify-blob --bundle` and `@sigstore/verify` read) signing the
//! index, each platform manifest and each of those documents as a DSSE
//! attestation. The directory is staged, claimed and renamed into place by
//! the output directory's rules ([`crate::output`]), like the layout.

use std::path::{Path, PathBuf};

use super::documents::{BuildInputs, DocumentError, Facts, Platform, documents};
use super::statement::Statement;
use crate::build::BuiltImage;
use crate::manifest::ImagePlan;
use crate::oci::Digest;
use crate::output::{OutputError, OutputLock, write_tree};

/// What the release directory of an image is called in the output directory.
pub fn dir_name(image: &str) -> String {
    format!("{image}.release")
}

#[derive(Debug, thiserror::Error)]
pub enum OutputsError {
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("making the release files of image `{image}`")]
    Documents {
        image: String,
        #[source]
        source: Box<DocumentError>,
    },
    #[error("writing {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What signs the release files as Sigstore bundles. With the `sign`
/// feature every signing key is one (`release::bundle` makes the bundles);
/// without it nothing signs, and only the plain documents are written. The
/// trait is here, where it is used, so this file needs nothing of signing.
pub trait BundleSigner {
    /// A bundle holding `statement` as a DSSE attestation.
    fn attest(&self, statement: &Statement) -> Vec<u8>;
    /// A bundle signing the image manifest or index `digest` of `reference`.
    fn sign_image(&self, reference: &str, digest: &Digest) -> Vec<u8>;
    /// What names the key, so that a new key signs anew.
    fn key_hint(&self) -> String;
}

/// Where the documents are made from: the workspace's facts, and
/// images.toml's path in it as provenance records it.
pub struct Workspace<'a> {
    /// Asked only for the documents of images whose files are not current.
    pub facts: &'a dyn Facts,
    pub manifest_path: &'a str,
    pub epoch: u64,
    /// Every member's Cargo.toml: what `cargo tree` reads besides Cargo.lock,
    /// so part of what decides whether the files are still current.
    pub cargo_manifests: Vec<&'a Path>,
}

/// Everything the release files of one image are made from, for the record
/// that lets a run with nothing changed skip `cargo tree` and signing. Paths
/// are left out, so checkouts elsewhere share it.
#[derive(serde::Serialize)]
struct KeyInputs<'a> {
    image: &'a str,
    settings: String,
    build: String,
    targets: Vec<&'a str>,
    reference: String,
    top: &'a str,
    manifests: Vec<&'a str>,
    manifest_path: &'a str,
    epoch: u64,
    cargo_lock: String,
    cargo_manifests: Vec<String>,
    source: String,
    toolchain: String,
    /// The key's hint: a new key signs anew.
    signer: Option<String>,
}

fn key(
    image: &ImagePlan,
    built: &BuiltImage,
    ws: &Workspace<'_>,
    inputs: &BuildInputs,
    manifests: &[String],
    signer: Option<&dyn BundleSigner>,
) -> String {
    crate::record::key(&KeyInputs {
        image: &image.name,
        settings: format!("{:?}", image.release),
        build: format!("{:?}", image.build),
        targets: image.targets.iter().map(|t| t.triple.as_str()).collect(),
        reference: crate::build::assemble::repository(image),
        top: &built.digest,
        manifests: built
            .platforms
            .iter()
            .map(|p| p.manifest.as_str())
            .collect(),
        manifest_path: ws.manifest_path,
        epoch: ws.epoch,
        cargo_lock: inputs.cargo_lock.to_string(),
        cargo_manifests: manifests.to_vec(),
        source: format!("{:?}", inputs.source),
        toolchain: format!("{:?}", inputs.toolchain),
        signer: signer.map(BundleSigner::key_hint),
    })
}

/// Whether the release directory still holds exactly the recorded files.
fn intact(dir: &Path, recorded: &[(String, String)]) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    if entries.count() != recorded.len() {
        return false;
    }
    recorded.iter().all(|(name, digest)| {
        let path = dir.join(name);
        std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file())
            && std::fs::read(&path).is_ok_and(|b| Digest::of(&b).as_str() == digest)
    })
}

/// The files of one image's release directory, by file name, in the order
/// they are made. Nothing in them depends on where the workspace is.
pub fn files(
    image: &ImagePlan,
    built: &BuiltImage,
    ws: &Workspace<'_>,
    inputs: Option<&BuildInputs>,
    signer: Option<&dyn BundleSigner>,
) -> Result<Vec<(String, Vec<u8>)>, DocumentError> {
    let reference = crate::build::assemble::repository(image);
    let repository = image.push.as_ref().map(|_| reference.as_str());
    let bad = |what: &str| DocumentError::Image(format!("image `{}`: {what}", image.name));
    let mut out = Vec::new();
    for p in &built.platforms {
        let stem = p.platform.replace('/', "-");
        let digest = Digest::parse(&p.manifest).ok_or_else(|| bad("a manifest digest is bad"))?;
        // `os/architecture[/variant]`: the SBOM names the first two.
        let mut parts = p.platform.split('/');
        let (Some(os), Some(architecture)) = (parts.next(), parts.next()) else {
            return Err(bad("a platform has no architecture"));
        };
        let target = image
            .targets
            .iter()
            .find(|t| t.platform.to_string() == p.platform)
            .ok_or_else(|| bad("a built platform is not in the plan"))?;
        let platform = Platform {
            image,
            target,
            digest: &digest,
            name: &p.platform,
            os,
            architecture,
            reference: &reference,
            repository,
        };
        for d in documents(&platform, ws.facts, ws.manifest_path, ws.epoch, inputs)? {
            if let Some(signer) = signer {
                out.push((
                    format!("{stem}.{}.sigstore.json", d.kind),
                    signer.attest(&d.statement),
                ));
            }
            out.push((format!("{stem}.{}.json", d.kind), d.bytes));
        }
        if let Some(signer) = signer {
            out.push((
                format!("{stem}.manifest.sigstore.json"),
                signer.sign_image(&reference, &digest),
            ));
        }
    }
    if let Some(signer) = signer
        && built.platforms.len() > 1
    {
        let digest = Digest::parse(&built.digest).ok_or_else(|| bad("its digest is bad"))?;
        out.push((
            "index.sigstore.json".to_owned(),
            signer.sign_image(&reference, &digest),
        ));
    }
    out.sort();
    Ok(out)
}

/// Writes the release directory of each built image whose settings ask for
/// anything (or when signing), replacing the previous one whole; returns the
/// directories written. A directory whose inputs did not change and whose
/// files are as recorded is left as it is. Nothing is replaced that this tool
/// did not write.
pub fn write(
    out_dir: &Path,
    images: &[(&ImagePlan, &BuiltImage)],
    ws: &Workspace<'_>,
    signer: Option<&dyn BundleSigner>,
) -> Result<Vec<(PathBuf, usize)>, OutputsError> {
    let wanted: Vec<_> = images
        .iter()
        .filter(|(plan, _)| {
            signer.is_some() || plan.release.provenance || !plan.release.sbom.is_empty()
        })
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let lock = OutputLock::acquire(out_dir)?;
    for (plan, _) in &wanted {
        lock.check_replaceable(&dir_name(&plan.name))?;
    }
    let inputs = ws
        .facts
        .build_inputs()
        .map_err(|source| OutputsError::Documents {
            image: wanted[0].0.name.clone(),
            source: Box::new(source),
        })?;
    let manifests: Vec<String> = ws
        .cargo_manifests
        .iter()
        .map(|p| std::fs::read(p).map_or_else(|_| String::new(), |b| Digest::of(&b).to_string()))
        .collect();
    // Every document is made before anything is written.
    let mut made = Vec::new();
    for (plan, built) in &wanted {
        let name = dir_name(&plan.name);
        let key = key(plan, built, ws, &inputs, &manifests, signer);
        let record = crate::record::record_path(out_dir, "images", &name);
        if let Some(recorded) = crate::record::lookup::<Vec<(String, String)>>(&record, &key)
            && intact(&out_dir.join(&name), &recorded)
        {
            continue;
        }
        let files = files(plan, built, ws, Some(&inputs), signer).map_err(|source| {
            OutputsError::Documents {
                image: plan.name.clone(),
                source: Box::new(source),
            }
        })?;
        made.push((name, key, record, files));
    }
    let mut written = Vec::new();
    for (name, key, record, files) in made {
        let dest = out_dir.join(&name);
        let write_err = |source| OutputsError::Write {
            path: dest.clone(),
            source,
        };
        let tmp = lock.temp(&name);
        write_tree(
            tmp.path(),
            files.iter().map(|(f, b)| (f.as_str(), b.as_slice())),
        )
        .map_err(write_err)?;
        lock.claim(&name).map_err(write_err)?;
        lock.publish_dir(tmp, &dest).map_err(write_err)?;
        let recorded: Vec<(String, String)> = files
            .iter()
            .map(|(f, b)| (f.clone(), Digest::of(b).to_string()))
            .collect();
        lock.write_state(&record, &crate::record::encode(&key, &recorded))
            .map_err(|source| OutputsError::Write {
                path: record.clone(),
                source,
            })?;
        written.push((dest, files.len()));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::build::BuiltPlatform;
    use crate::manifest::PlatformTarget;
    use crate::toolchain::crates::LinkedCrates;
    use crate::toolchain::workspace::Workspace as CargoWorkspace;

    /// The facts of a run that makes no document: asking for one fails the
    /// test.
    struct Unasked;

    impl Facts for Unasked {
        fn build_inputs(&self) -> Result<BuildInputs, DocumentError> {
            panic!("no document is made, so no build input is needed")
        }

        fn linked_crates(
            &self,
            _: &ImagePlan,
            _: &PlatformTarget,
        ) -> Result<Vec<LinkedCrates>, DocumentError> {
            panic!("no SBOM is made, so no crate list is needed")
        }
    }

    fn workspace() -> Workspace<'static> {
        Workspace {
            facts: &Unasked,
            manifest_path: "images.toml",
            epoch: 0,
            cargo_manifests: Vec::new(),
        }
    }

    fn plan(root: &Path, extra: &str) -> ImagePlan {
        let ws = CargoWorkspace {
            root: root.to_owned(),
            target_dir: root.join("target"),
            packages: BTreeMap::from([("app".to_owned(), vec!["app".to_owned()])]),
            ..CargoWorkspace::default()
        };
        let text = format!("[images.app]\npackage = \"app\"\n{extra}");
        crate::manifest::parse(&root.join("images.toml"), &text, &ws)
            .unwrap()
            .images
            .remove(0)
    }

    fn built(out: &Path) -> BuiltImage {
        let d = Digest::of(b"manifest").to_string();
        BuiltImage {
            name: "app".into(),
            digest: d.clone(),
            media_type: crate::oci::MEDIA_TYPE_MANIFEST.into(),
            tags: vec!["latest".into()],
            layout: out.join("app"),
            archive: out.join("app.tar"),
            platforms: vec![BuiltPlatform {
                platform: "linux/amd64".into(),
                manifest: d,
                config: Digest::of(b"config").to_string(),
                layer: Digest::of(b"layer").to_string(),
                layer_size: 5,
                unpacked_size: 5,
                binary: PathBuf::new(),
                extra_binaries: Vec::new(),
            }],
            index_json: Digest::of(b"index").to_string(),
            archive_size: 0,
            fresh: false,
            retagged: false,
        }
    }

    #[test]
    fn a_release_directory_the_tool_did_not_write_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(out.join("app.release")).unwrap();
        std::fs::write(out.join("app.release/notes.txt"), "mine").unwrap();
        let image = plan(dir.path(), "");
        let b = built(&out);
        let ws = workspace();
        let e = write(&out, &[(&image, &b)], &ws, None).unwrap_err();
        assert!(
            matches!(&e, OutputsError::Output(OutputError::NotOurs(p)) if p.ends_with("app.release")),
            "{e}"
        );
        assert_eq!(
            std::fs::read_to_string(out.join("app.release/notes.txt")).unwrap(),
            "mine"
        );
    }

    #[test]
    fn nothing_asked_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let image = plan(dir.path(), "sbom = []\nprovenance = false\n");
        let b = built(&out);
        let ws = workspace();
        assert!(write(&out, &[(&image, &b)], &ws, None).unwrap().is_empty());
        assert!(!out.join("app.release").exists());
    }
}

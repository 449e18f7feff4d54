//! Reads what a push needs from an OCI image layout (image-spec "Image Layout":
//! `oci-layout`, `index.json`, `blobs/<alg>/<hex>`): the chosen top-level manifest
//! or index, its child manifests and every blob they reference, each checked
//! against its digest and size before anything is sent.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::RegistryError;

use crate::oci::blob::{self, BlobError};
pub use crate::oci::{
    ANNOTATION_REF_NAME as REF_NAME, MEDIA_TYPE_INDEX as OCI_INDEX,
    MEDIA_TYPE_MANIFEST as OCI_MANIFEST,
};
use crate::oci::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST as DOCKER_LIST};

/// Indexes nest; this bounds a malicious or broken cycle.
const MAX_DEPTH: usize = 8;

#[derive(Debug, Clone, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Document {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// A manifest or index, with the exact bytes that are pushed.
#[derive(Debug, Clone)]
pub struct ManifestBlob {
    pub digest: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// A config or layer blob in the layout.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BlobFile {
    pub digest: String,
    pub size: u64,
    pub path: PathBuf,
}

/// Everything one push sends, in the order it must arrive.
#[derive(Debug)]
pub struct PushPlan {
    /// Configs and layers, each once.
    pub blobs: Vec<BlobFile>,
    /// Manifests referenced by the top-level index, children before parents.
    pub children: Vec<ManifestBlob>,
    /// The manifest or index the tags point at.
    pub top: ManifestBlob,
}

fn layout_error(dir: &Path, message: impl Into<String>) -> RegistryError {
    RegistryError::Layout {
        path: dir.to_path_buf(),
        message: message.into(),
    }
}

/// Picks the `index.json` entry named `ref_name` (or the only entry) and gathers
/// everything under it.
pub fn read_plan(dir: &Path, ref_name: Option<&str>) -> Result<PushPlan, RegistryError> {
    let layout_file = dir.join("oci-layout");
    let layout: serde_json::Value = read_json(dir, &layout_file)?;
    if layout
        .get("imageLayoutVersion")
        .and_then(|v| v.as_str())
        .is_none()
    {
        return Err(layout_error(dir, "oci-layout has no imageLayoutVersion"));
    }
    let index: Document = read_json(dir, &dir.join("index.json"))?;
    let entry = match ref_name {
        Some(name) => index
            .manifests
            .iter()
            .find(|d| d.annotations.get(REF_NAME).map(String::as_str) == Some(name))
            .ok_or_else(|| {
                let names: Vec<&str> = index
                    .manifests
                    .iter()
                    .filter_map(|d| d.annotations.get(REF_NAME).map(String::as_str))
                    .collect();
                layout_error(
                    dir,
                    format!("index.json has no image named {name:?} (it has {names:?})"),
                )
            })?,
        None => match index.manifests.as_slice() {
            [only] => only,
            [] => return Err(layout_error(dir, "index.json lists no image")),
            _ => {
                return Err(layout_error(
                    dir,
                    format!(
                        "index.json lists {} images; name the one to push",
                        index.manifests.len()
                    ),
                ));
            }
        },
    };
    let mut plan = Gather {
        dir,
        blobs: BTreeSet::new(),
        children: Vec::new(),
    };
    let top = plan.manifest(entry, 0)?;
    let mut seen = BTreeSet::new();
    // A manifest shared by two parents is pushed once.
    plan.children.retain(|m| seen.insert(m.digest.clone()));
    Ok(PushPlan {
        blobs: plan.blobs.into_iter().collect(),
        children: plan.children,
        top,
    })
}

struct Gather<'a> {
    dir: &'a Path,
    blobs: BTreeSet<BlobFile>,
    children: Vec<ManifestBlob>,
}

impl Gather<'_> {
    fn manifest(&mut self, desc: &Descriptor, depth: usize) -> Result<ManifestBlob, RegistryError> {
        if depth > MAX_DEPTH {
            return Err(layout_error(
                self.dir,
                format!("indexes nest deeper than {MAX_DEPTH} levels"),
            ));
        }
        let bytes = self.read_blob(desc)?;
        let doc: Document = serde_json::from_slice(&bytes).map_err(|e| {
            layout_error(self.dir, format!("parsing manifest {}: {e}", desc.digest))
        })?;
        // The descriptor names the type; a manifest's own field backs it up.
        let media_type = if desc.media_type.is_empty() {
            doc.media_type.clone().unwrap_or_default()
        } else {
            desc.media_type.clone()
        };
        match media_type.as_str() {
            OCI_INDEX | DOCKER_LIST => {
                for child in &doc.manifests {
                    let m = self.manifest(child, depth + 1)?;
                    self.children.push(m);
                }
            }
            OCI_MANIFEST | DOCKER_MANIFEST => {
                let config = doc.config.as_ref().ok_or_else(|| {
                    layout_error(self.dir, format!("manifest {} has no config", desc.digest))
                })?;
                for b in std::iter::once(config).chain(&doc.layers) {
                    let path = blob::check_file(self.dir, &b.digest, b.size)
                        .map_err(|e| self.blob_error(e))?;
                    self.blobs.insert(BlobFile {
                        digest: b.digest.clone(),
                        size: b.size,
                        path,
                    });
                }
            }
            other => {
                return Err(layout_error(
                    self.dir,
                    format!(
                        "{} has media type {other:?}, not an image manifest or index",
                        desc.digest
                    ),
                ));
            }
        }
        Ok(ManifestBlob {
            digest: desc.digest.clone(),
            media_type,
            bytes,
        })
    }

    fn read_blob(&self, desc: &Descriptor) -> Result<Vec<u8>, RegistryError> {
        blob::read(self.dir, &desc.digest, desc.size).map_err(|e| self.blob_error(e))
    }

    fn blob_error(&self, e: BlobError) -> RegistryError {
        layout_error(self.dir, error_chain(&e))
    }
}

/// An error and its causes on one line, for a layout error's message.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(&format!(": {c}"));
        cause = c.source();
    }
    s
}

fn read_json<T: serde::de::DeserializeOwned>(dir: &Path, path: &Path) -> Result<T, RegistryError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bytes =
        std::fs::read(path).map_err(|e| layout_error(dir, format!("reading {name}: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| layout_error(dir, format!("parsing {name}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(dir: &Path, bytes: &[u8]) -> String {
        let hex = crate::oci::Digest::of(bytes).hex().to_owned();
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("blobs/sha256").join(&hex), bytes).unwrap();
        format!("sha256:{hex}")
    }

    fn desc(media_type: &str, digest: &str, size: usize) -> String {
        format!(r#"{{"mediaType":"{media_type}","digest":"{digest}","size":{size}}}"#)
    }

    /// A layout with an index over two manifests that share one layer.
    fn layout(dir: &Path) -> (String, String) {
        let layer = put(dir, b"layer");
        let mut manifests = Vec::new();
        for arch in ["amd64", "arm64"] {
            let config_bytes = format!(r#"{{"architecture":"{arch}"}}"#);
            let config = put(dir, config_bytes.as_bytes());
            let m = format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{},"layers":[{}]}}"#,
                desc(
                    "application/vnd.oci.image.config.v1+json",
                    &config,
                    config_bytes.len()
                ),
                desc("application/vnd.oci.image.layer.v1.tar+gzip", &layer, 5)
            );
            manifests.push(desc(OCI_MANIFEST, &put(dir, m.as_bytes()), m.len()));
        }
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
            manifests.join(",")
        );
        let index_digest = put(dir, index.as_bytes());
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        std::fs::write(
            dir.join("index.json"),
            format!(
                r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_INDEX}","digest":"{index_digest}","size":{},"annotations":{{"{REF_NAME}":"hello"}}}}]}}"#,
                index.len()
            ),
        )
        .unwrap();
        (index_digest, layer)
    }

    #[test]
    fn gathers_children_and_unique_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let (index_digest, layer) = layout(dir.path());
        let plan = read_plan(dir.path(), Some("hello")).unwrap();
        assert_eq!(plan.top.digest, index_digest);
        assert_eq!(plan.top.media_type, OCI_INDEX);
        assert_eq!(plan.children.len(), 2);
        // Two configs and the one shared layer.
        assert_eq!(plan.blobs.len(), 3);
        assert!(plan.blobs.iter().any(|b| b.digest == layer));
        let plan = read_plan(dir.path(), None).unwrap();
        assert_eq!(plan.top.digest, index_digest);
    }

    #[test]
    fn unknown_name_and_corrupt_blob_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_, layer) = layout(dir.path());
        let e = read_plan(dir.path(), Some("other"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no image named \"other\"") && e.contains("hello"),
            "{e}"
        );
        std::fs::write(
            dir.path()
                .join("blobs/sha256")
                .join(&layer["sha256:".len()..]),
            b"LAYER",
        )
        .unwrap();
        let e = read_plan(dir.path(), None).unwrap_err().to_string();
        assert!(
            e.starts_with("reading image layout") && e.contains(&layer),
            "{e}"
        );
    }
}

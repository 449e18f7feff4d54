//! What a push sends, read from an OCI image layout (image-spec "Image Layout"): the
//! chosen top-level manifest or index, its child manifests and every blob
//! they reference, read through [`LayoutDir`] (hostile input: no links
//! followed, only regular files, every size bounded) and each checked
//! against its digest and size before anything is sent.

use std::path::{Path, PathBuf};

use super::error::RegistryError;

use crate::oci::source::{self, StoredDocument};
use crate::oci::{LayoutDir, ReadError};

/// A manifest or index, with the exact bytes that are pushed.
#[derive(Debug, Clone)]
pub(super) struct ManifestBlob {
    pub digest: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

impl From<StoredDocument> for ManifestBlob {
    fn from(d: StoredDocument) -> Self {
        ManifestBlob {
            digest: d.descriptor.digest.to_string(),
            media_type: d.media_type,
            bytes: d.bytes,
        }
    }
}

/// A config or layer blob in the layout.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct BlobFile {
    pub digest: String,
    pub size: u64,
    pub path: PathBuf,
}

/// Everything one push sends, in the order it must arrive.
#[derive(Debug)]
pub(super) struct PushPlan {
    /// Configs and layers, each once.
    pub blobs: Vec<BlobFile>,
    /// Manifests referenced by the top-level index, children before parents.
    pub children: Vec<ManifestBlob>,
    /// The manifest or index the tags point at.
    pub top: ManifestBlob,
}

fn layout_error(dir: &Path, e: &ReadError) -> RegistryError {
    RegistryError::Layout {
        path: dir.to_path_buf(),
        message: error_chain(e),
    }
}

/// Picks the `index.json` entry named `ref_name` (or the one image all
/// entries name) and gathers everything under it.
pub(super) fn read_plan(dir: &Path, ref_name: Option<&str>) -> Result<PushPlan, RegistryError> {
    let fail = |e: ReadError| layout_error(dir, &e);
    let layout = LayoutDir::open(dir).map_err(fail)?;
    layout.check_marker().map_err(fail)?;
    let (_, index) = source::index(&layout).map_err(fail)?;
    let entry = source::select(&index, ref_name).map_err(fail)?;
    let resolved = source::resolve(&layout, entry).map_err(fail)?;
    let mut blobs = Vec::new();
    for d in resolved.blobs() {
        // Hashed once here, in one streaming pass.
        let (_, path) = layout.blob_file(d).map_err(fail)?;
        blobs.push(BlobFile {
            digest: d.digest.to_string(),
            size: d.size,
            path,
        });
    }
    Ok(PushPlan {
        blobs,
        children: resolved.children.into_iter().map(Into::into).collect(),
        top: resolved.top.into(),
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{
        ANNOTATION_REF_NAME as REF_NAME, MEDIA_TYPE_INDEX as OCI_INDEX,
        MEDIA_TYPE_MANIFEST as OCI_MANIFEST,
    };

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
            e.contains("no image named `other`") && e.contains("hello"),
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

//! The two on-disk forms of an image set: an OCI image layout
//! (image-spec `image-layout.md`) and one tar that is both that layout and a
//! `docker load` / `podman load` archive (a `manifest.json` with `RepoTags`,
//! whose paths point into `blobs/sha256/`).
//!
//! Both are built from one list of files, so they cannot disagree.

use serde::Serialize;

use super::image::ImageSet;
use super::{ANNOTATION_REF_NAME, Blob, MEDIA_TYPE_INDEX, canonical_json, tar};

/// One file of a layout: its relative path and bytes.
pub struct LayoutFile<'a> {
    pub path: String,
    pub bytes: &'a [u8],
}

/// The layout's small metadata files, owned so the file list can borrow them.
pub struct LayoutMeta {
    oci_layout: Vec<u8>,
    index_json: Vec<u8>,
}

impl LayoutMeta {
    /// `index.json` lists one entry, the set's top descriptor, named by the
    /// first tag: tools then open the layout without being told which image
    /// (`skopeo inspect oci:DIR`) or by that tag (`oci:DIR:TAG`).
    pub fn new(set: &ImageSet) -> LayoutMeta {
        let mut top = set.top();
        top.annotations
            .insert(ANNOTATION_REF_NAME.to_owned(), set.tags[0].clone());
        LayoutMeta {
            oci_layout: canonical_json(&serde_json::json!({ "imageLayoutVersion": "1.0.0" })),
            index_json: canonical_json(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": MEDIA_TYPE_INDEX,
                "manifests": [top],
            })),
        }
    }

    /// The digest of `index.json` as written, which changes whenever anything
    /// in the layout does.
    pub fn index_json(&self) -> &[u8] {
        &self.index_json
    }
}

/// Every file of the layout, in a fixed order: metadata first, then blobs.
pub fn layout_files<'a>(set: &'a ImageSet, meta: &'a LayoutMeta) -> Vec<LayoutFile<'a>> {
    let mut files = vec![
        LayoutFile {
            path: "oci-layout".to_owned(),
            bytes: &meta.oci_layout,
        },
        LayoutFile {
            path: "index.json".to_owned(),
            bytes: &meta.index_json,
        },
    ];
    files.extend(set.blobs().into_iter().map(blob_file));
    files
}

fn blob_file(blob: &Blob) -> LayoutFile<'_> {
    LayoutFile {
        path: format!("blobs/sha256/{}", blob.digest.hex()),
        bytes: &blob.bytes,
    }
}

/// docker's `manifest.json` entry (docker image spec, "save" format).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

/// The archive: the layout plus docker's `manifest.json`, as a deterministic
/// tar whose entries all carry `mtime`.
///
/// docker's classic store holds one platform per tag, and tools reading a
/// docker archive expect one entry, so `manifest.json` lists only the first
/// platform images.toml names: the same on every build host, so the archive
/// is as reproducible as the layout. The other platforms stay reachable
/// through the OCI layout in the same tar.
pub fn archive(set: &ImageSet, meta: &LayoutMeta, repository: &str, mtime: u64) -> Vec<u8> {
    let files = layout_files(set, meta);
    let loaded = &set.images[0];
    let docker = [DockerEntry {
        config: format!("blobs/sha256/{}", loaded.config.digest.hex()),
        repo_tags: set
            .tags
            .iter()
            .map(|t| format!("{repository}:{t}"))
            .collect(),
        layers: vec![format!("blobs/sha256/{}", loaded.layer.blob.digest.hex())],
    }];
    let manifest_json = canonical_json(&docker);

    let mut out = Vec::new();
    let mut dirs_written = std::collections::BTreeSet::new();
    let mut entries: Vec<(&str, &[u8])> = files
        .iter()
        .map(|f| (f.path.as_str(), f.bytes))
        .chain(std::iter::once(("manifest.json", manifest_json.as_slice())))
        .collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    for (path, bytes) in entries {
        for (i, _) in path.match_indices('/') {
            let dir = &path[..i];
            if dirs_written.insert(dir.to_owned()) {
                let header = tar::Header {
                    path: dir,
                    mode: 0o755,
                    size: 0,
                    mtime,
                    is_dir: true,
                };
                tar::append(&mut out, &header, &[]);
            }
        }
        let header = tar::Header {
            path,
            mode: 0o644,
            size: bytes.len() as u64,
            mtime,
            is_dir: false,
        };
        tar::append(&mut out, &header, bytes);
    }
    tar::finish(&mut out);
    out
}

//! The on-disk OCI image layout of an image set (image-spec
//! `image-layout.md`): `oci-layout`, `index.json` with one entry per tag
//! (each named by `org.opencontainers.image.ref.name`, so `oci:DIR:TAG`
//! reaches every tag), and `blobs/sha256/`. The set in memory is also a
//! [`Source`], so what is about to be written reads exactly as what was
//! written.

use super::error::{ReadError, blob_path, verify};
use super::image::ImageSet;
use super::source::Source;
use super::spec::Index;
use super::{ANNOTATION_REF_NAME, Blob, Descriptor, MEDIA_TYPE_INDEX, canonical_json};

/// One file of a layout: its relative path and bytes.
pub struct LayoutFile<'a> {
    pub path: String,
    pub bytes: &'a [u8],
}

/// The layout's small metadata files, owned so the file list can borrow them.
pub struct LayoutMeta {
    pub(crate) oci_layout: Vec<u8>,
    index_json: Vec<u8>,
}

/// `index.json` listing `target` once per name, in the order given.
pub fn index_json<'a>(target: &Descriptor, names: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
    let manifests = names
        .into_iter()
        .map(|name| {
            let mut d = target.clone();
            d.annotations
                .insert(ANNOTATION_REF_NAME.to_owned(), name.to_owned());
            d
        })
        .collect();
    canonical_json(&Index {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_INDEX.to_owned()),
        manifests,
        subject: None,
        annotations: Default::default(),
    })
}

/// `oci-layout`, the layout's version marker.
pub(crate) fn oci_layout() -> Vec<u8> {
    canonical_json(&serde_json::json!({ "imageLayoutVersion": "1.0.0" }))
}

impl LayoutMeta {
    /// `index.json` lists the set's top descriptor once per tag, in the order
    /// images.toml gives them, each named by its tag: `skopeo inspect
    /// oci:DIR:TAG` finds any of them, and a set with one tag opens without
    /// one (`oci:DIR`).
    pub fn new(set: &ImageSet) -> LayoutMeta {
        LayoutMeta {
            oci_layout: oci_layout(),
            index_json: index_json(&set.top(), set.tags.iter().map(String::as_str)),
        }
    }

    /// The bytes of `index.json` as written.
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
        path: blob_path(&blob.digest),
        bytes: &blob.bytes,
    }
}

/// A layout not yet written: the set and its metadata, read like one on disk.
pub struct InMemory<'a> {
    pub set: &'a ImageSet,
    pub meta: &'a LayoutMeta,
}

impl Source for InMemory<'_> {
    fn index_bytes(&self) -> Result<Vec<u8>, ReadError> {
        Ok(self.meta.index_json.clone())
    }

    fn blob(&self, d: &Descriptor, limit: u64) -> Result<Vec<u8>, ReadError> {
        let path = blob_path(&d.digest);
        let blob = self
            .set
            .blobs()
            .into_iter()
            .find(|b| b.digest == d.digest)
            .ok_or_else(|| ReadError::Missing(path.clone()))?;
        let size = blob.bytes.len() as u64;
        if size > limit {
            return Err(ReadError::TooLarge { path, size, limit });
        }
        // The digest was computed from these bytes when the blob was made.
        verify(d, size, blob.digest.clone())?;
        Ok(blob.bytes.clone())
    }
}

//! OCI images as values (image-spec v1.1): layers, configs, manifests and
//! indexes are built once, immutable, and carry the exact bytes that are
//! hashed, stored and pushed.

pub mod archive;
pub mod compress;
pub mod error;
pub mod image;
pub mod layer;
pub mod layer_tar;
pub mod layout;
pub mod read;
pub mod source;
pub mod spec;
mod tar;

use serde::Serialize;

pub use crate::digest::{Digest, canonical_json};
pub use compress::Compression;
pub use error::ReadError;
pub use image::{Image, ImageMeta, ImageSet};
pub use layer::{Entry, EntryKind, Layer};
pub use layer_tar::{LayerBlob, LayerTar};
pub use read::LayoutDir;
pub use source::{ResolvedImage, Source, StoredDocument, WalkLimits};
pub use spec::{Config, Descriptor, Index, Manifest, PlatformSpec, PlatformSpecError};

pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_TYPE_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const MEDIA_TYPE_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// docker's equivalents, which images from other tools may use.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A stored blob: its bytes and their digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub media_type: &'static str,
    pub digest: Digest,
    pub bytes: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: &'static str, bytes: Vec<u8>) -> Blob {
        Blob {
            media_type,
            digest: Digest::of(&bytes),
            bytes,
        }
    }

    /// A JSON blob in canonical form (see [`canonical_json`]).
    pub fn json(media_type: &'static str, value: &impl Serialize) -> Blob {
        Blob::new(media_type, canonical_json(value))
    }

    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            self.media_type,
            self.digest.clone(),
            self.bytes.len() as u64,
        )
    }
}

#[cfg(test)]
pub(crate) mod tests;

//! Image layers (image-spec "Image Layer Filesystem Changeset"): a
//! deterministic tar of an explicit entry list, gzip-compressed with pinned
//! settings, with its `diff_id` and digest.

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};

use super::{Blob, Digest, MEDIA_TYPE_LAYER_GZIP, tar};

/// What a layer entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File(Vec<u8>),
}

/// One path in a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative, normalised path (no leading slash, no `.` or `..`).
    pub path: String,
    pub mode: u32,
    pub kind: EntryKind,
}

/// A compressed layer and the digest of its uncompressed tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub blob: Blob,
    pub diff_id: Digest,
    /// Size of the uncompressed tar.
    pub tar_size: u64,
}

/// Mode of the parent directories a layer adds on its own.
const PARENT_DIR_MODE: u32 = 0o755;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayerError {
    #[error("`{0}` is listed twice")]
    Duplicate(String),
    #[error("`{0}` is a file but another entry lies inside it")]
    FileAsParent(String),
}

impl Layer {
    /// Builds a layer from `entries` plus every missing parent directory.
    ///
    /// Entries are written byte-sorted by path, so a parent (a prefix) always
    /// precedes its children; `mtime` is the only time written.
    pub fn build(entries: Vec<Entry>, mtime: u64) -> Result<Layer, LayerError> {
        let mut all: BTreeMap<String, Entry> = BTreeMap::new();
        for e in entries {
            if all.contains_key(&e.path) {
                return Err(LayerError::Duplicate(e.path));
            }
            all.insert(e.path.clone(), e);
        }
        let parents: Vec<String> = all
            .keys()
            .flat_map(|p| p.match_indices('/').map(move |(i, _)| p[..i].to_owned()))
            .collect();
        for parent in parents {
            match all.get(&parent) {
                Some(Entry {
                    kind: EntryKind::File(_),
                    ..
                }) => return Err(LayerError::FileAsParent(parent)),
                Some(_) => {}
                None => {
                    all.insert(
                        parent.clone(),
                        Entry {
                            path: parent,
                            mode: PARENT_DIR_MODE,
                            kind: EntryKind::Dir,
                        },
                    );
                }
            }
        }

        let mut tar_bytes = Vec::new();
        for e in all.values() {
            let data: &[u8] = match &e.kind {
                EntryKind::Dir => &[],
                EntryKind::File(data) => data,
            };
            let header = tar::Header {
                path: &e.path,
                mode: e.mode,
                size: data.len() as u64,
                mtime,
                is_dir: e.kind == EntryKind::Dir,
            };
            tar::append(&mut tar_bytes, &header, data);
        }
        tar::finish(&mut tar_bytes);

        let diff_id = Digest::from_hasher(Sha256::new_with_prefix(&tar_bytes));
        Ok(Layer {
            blob: Blob::new(MEDIA_TYPE_LAYER_GZIP, gzip(&tar_bytes)),
            diff_id,
            tar_size: tar_bytes.len() as u64,
        })
    }
}

/// gzip (RFC 1952) with every header byte pinned: no flags (so no file name
/// or comment), mtime 0, XFL 2 ("maximum compression"), OS 255 ("unknown",
/// so the build host's OS does not show); then raw deflate from the one
/// pinned implementation at its best level, and the CRC-32 and length.
fn gzip(data: &[u8]) -> Vec<u8> {
    const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 255];
    let deflated = miniz_oxide::deflate::compress_to_vec(data, 9);
    let mut out = Vec::with_capacity(HEADER.len() + deflated.len() + 8);
    out.extend_from_slice(&HEADER);
    out.extend_from_slice(&deflated);
    out.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    // ISIZE is the length modulo 2^32, as the format defines it.
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

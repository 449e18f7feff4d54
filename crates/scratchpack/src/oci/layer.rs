//! Image layers (image-spec "Image Layer Filesystem Changeset"): a
//! deterministic tar of an explicit entry list, written straight into the
//! pinned compressor of [`super::compress`] (the tar itself is never held
//! whole), with its `diff_id` and digest.

use std::collections::BTreeMap;

use super::compress::{Compression, Encoder};
use super::{Blob, Digest, tar};

/// What a layer entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind<'a> {
    Dir,
    File(&'a [u8]),
}

/// One path in a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Relative, normalised path (no leading slash, no `.` or `..`).
    pub path: String,
    pub mode: u32,
    pub kind: EntryKind<'a>,
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
    pub fn build(
        entries: Vec<Entry<'_>>,
        mtime: u64,
        compression: Compression,
    ) -> Result<Layer, LayerError> {
        let mut all: BTreeMap<String, Entry<'_>> = BTreeMap::new();
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

        let mut out = Encoder::new(compression);
        for e in all.values() {
            let data: &[u8] = match e.kind {
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
            tar::append(&mut out, &header, data);
        }
        tar::finish(&mut out);
        let done = out.finish();
        Ok(Layer {
            blob: Blob::new(compression.media_type(), done.bytes),
            diff_id: done.input_digest,
            tar_size: done.input_size,
        })
    }
}

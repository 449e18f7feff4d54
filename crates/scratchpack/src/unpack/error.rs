//! Why an image could not be unpacked: its layout, a layer, or one entry
//! of a layer, named.

use std::path::PathBuf;

use crate::oci::{Digest, ReadError};

/// A layout or layer that could not be read or unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("reading the image layout {path}")]
    Layout {
        path: PathBuf,
        #[source]
        source: ReadError,
    },
    #[error("the image lists {layers} layers but its config has {diff_ids} diff_ids")]
    LayerCount { layers: usize, diff_ids: usize },
    #[error("layer {layer} unpacks to {actual}, but the config's diff_id is {expected}")]
    DiffId {
        layer: Digest,
        expected: Digest,
        actual: String,
    },
    #[error("reading layer {layer}")]
    Layer {
        layer: String,
        #[source]
        source: std::io::Error,
    },
    #[error("layer {layer}, entry `{path}`: {problem}")]
    Entry {
        layer: String,
        path: String,
        problem: EntryProblem,
    },
    #[error("creating a directory to unpack into")]
    TempDir(#[source] std::io::Error),
}

/// Why one layer entry was refused.
#[derive(Debug, thiserror::Error)]
pub enum EntryProblem {
    #[error("absolute paths are refused; layer paths are relative to the root")]
    Absolute,
    #[error("the path climbs out of the root with `..`")]
    Climbs,
    #[error("the path is not UTF-8")]
    NotUtf8,
    #[error("the symlink points to `{0}`, outside the image root")]
    SymlinkEscape(String),
    #[error("`{0}` is a symlink; the unpacker never writes through one")]
    ThroughSymlink(String),
    #[error("`{0}` is not a directory")]
    ParentNotDir(String),
    #[error("device nodes and fifos are refused in test images")]
    Device,
    #[error("the hard link target `{0}` is not a regular file unpacked before it")]
    HardlinkTarget(String),
    #[error("entries of type {0:?} are not supported")]
    Unsupported(tar::EntryType),
    #[error("{0}")]
    Limit(String),
    #[error("{0}")]
    Io(#[source] std::io::Error),
}

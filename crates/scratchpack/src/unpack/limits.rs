//! What unpacking one image may cost: the limits (images.toml's
//! `unpack-limits`, each key left out at its default) and what the layers
//! have used of them.

use crate::manifest::UnpackLimitKeys;

/// Bounds on what unpacking one image may cost, whatever its layers say.
/// A layer is untrusted input: a few megabytes of gzip can expand to
/// gigabytes, a PAX header can name a path of any length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct UnpackLimits {
    /// Uncompressed bytes of all layers together (tar headers included).
    pub max_bytes: u64,
    /// Entries of all layers together.
    pub max_entries: u64,
    /// Components of any one path.
    pub max_depth: usize,
    /// Bytes of any one path or link target (Linux's `PATH_MAX` is 4096).
    pub max_name_bytes: usize,
    /// Bytes of any one PAX extended header.
    pub max_pax_bytes: u64,
}

impl Default for UnpackLimits {
    fn default() -> UnpackLimits {
        UnpackLimits {
            max_bytes: 2 << 30,
            max_entries: 100_000,
            max_depth: 64,
            max_name_bytes: 4096,
            max_pax_bytes: 64 << 10,
        }
    }
}

impl UnpackLimits {
    /// The limits images.toml sets for an image, each key it leaves out at
    /// its default.
    pub fn from_keys(keys: &UnpackLimitKeys) -> UnpackLimits {
        let d = UnpackLimits::default();
        UnpackLimits {
            max_bytes: keys.max_bytes.unwrap_or(d.max_bytes),
            max_entries: keys.max_entries.unwrap_or(d.max_entries),
            max_depth: keys
                .max_depth
                .map_or(d.max_depth, |n| usize::try_from(n).unwrap_or(usize::MAX)),
            max_name_bytes: keys.max_name_bytes.map_or(d.max_name_bytes, |n| {
                usize::try_from(n).unwrap_or(usize::MAX)
            }),
            max_pax_bytes: d.max_pax_bytes,
        }
    }
}

/// What the layers of one image have used of its [`UnpackLimits`] so far.
#[derive(Debug)]
pub(super) struct Budget {
    pub(super) limits: UnpackLimits,
    pub(super) bytes: u64,
    pub(super) entries: u64,
}

impl Budget {
    pub(super) fn new(limits: UnpackLimits) -> Budget {
        Budget {
            limits,
            bytes: 0,
            entries: 0,
        }
    }

    /// The uncompressed bytes the image's remaining layers may have.
    pub(super) fn bytes_left(&self) -> u64 {
        self.limits.max_bytes.saturating_sub(self.bytes)
    }
}

//! Why an image, or a part of one, cannot be read, and the checks every
//! reader of one (a layout directory, the archive, the set in memory, a
//! registry) makes before it hands bytes on: where a blob is in a layout
//! (image-spec `image-layout.md`), how large a document or blob may be, and
//! that a blob has its descriptor's size and digest (`descriptor.md`).

use std::io::Read;

use super::{Descriptor, Digest};

/// Why a layout, or something in it, cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("`{0}` is a symlink; nothing in an image layout is followed through a link")]
    Symlink(String),
    #[error("`{path}` is {kind}, not a regular file")]
    NotRegular { path: String, kind: &'static str },
    #[error("`{path}` is {size} bytes, more than the {limit} bytes allowed for it")]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("reading `{path}`")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing {what} `{path}`")]
    Json {
        what: &'static str,
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "blob {digest} is corrupt: it is {size} bytes{}, but its descriptor says {expected_size} bytes",
        match .actual { Some(d) => format!(" hashing to {d}"), None => String::new() }
    )]
    Mismatch {
        digest: Digest,
        expected_size: u64,
        size: u64,
        /// `None` when the size alone was wrong, so nothing was read.
        actual: Option<Digest>,
    },
    #[error("{digest} has media type `{media_type}`, not an image manifest or index")]
    MediaType { digest: Digest, media_type: String },
    #[error(
        "layer {digest} has media type `{media_type}`, which is not a layer this program reads"
    )]
    LayerMediaType { digest: Digest, media_type: String },
    #[error("index.json has no image named `{name}` (it has {names:?})")]
    NoSuchRef { name: String, names: Vec<String> },
    #[error("index.json lists no image")]
    Empty,
    #[error("index.json lists {0} different images; name the one to read")]
    Ambiguous(usize),
    #[error("image indexes nest deeper than {0} levels")]
    TooDeep(usize),
    #[error(
        "the image lists more than {0} documents (indexes, manifests and configs, each \
         counted once); no more are read"
    )]
    TooManyDocuments(usize),
    #[error("the image's documents add up to more than {0} bytes; no more are read")]
    TooManyBytes(u64),
    #[error("the archive has no file `{0}`")]
    Missing(String),
    #[error("the archive has more than {0} entries")]
    TooManyEntries(usize),
}

impl ReadError {
    pub(crate) fn io(path: &str) -> impl FnOnce(std::io::Error) -> ReadError + '_ {
        move |source| ReadError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// The most bytes a JSON document (index, manifest, config, `oci-layout`)
/// may have. Real ones are a few KiB; this only stops a hostile one.
pub const MAX_JSON: u64 = 4 << 20;

/// The most bytes a blob read into memory may have (a layer the unpacker
/// reads whole); larger blobs are refused before a byte is read.
pub const MAX_BLOB_IN_MEMORY: u64 = 1 << 30;

/// The most bytes a blob streamed from disk (a layer being pushed) may have.
pub const MAX_BLOB: u64 = 64 << 30;

/// `blobs/sha256/<hex>`: the digest is already checked to be sha256 and hex,
/// so this path has no `..` and no `/` of its own.
pub fn blob_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// Refuses a blob whose file has another size than its descriptor says,
/// before reading any of it.
pub(crate) fn check_size(d: &Descriptor, size: u64) -> Result<(), ReadError> {
    if size == d.size {
        return Ok(());
    }
    Err(ReadError::Mismatch {
        digest: d.digest.clone(),
        expected_size: d.size,
        size,
        actual: None,
    })
}

/// Refuses bytes read for a descriptor whose size or digest is not the
/// descriptor's.
pub fn verify(d: &Descriptor, size: u64, actual: Digest) -> Result<(), ReadError> {
    if size == d.size && actual == d.digest {
        return Ok(());
    }
    Err(ReadError::Mismatch {
        digest: d.digest.clone(),
        expected_size: d.size,
        size,
        actual: Some(actual),
    })
}

/// Reads at most `limit` bytes (and `size` expected): a file that grows
/// while it is read is cut off rather than read without end.
pub(crate) fn read_bounded(
    file: impl Read,
    size: u64,
    limit: u64,
    rel: &str,
) -> Result<Vec<u8>, ReadError> {
    let mut bytes = Vec::with_capacity(usize::try_from(size.min(limit)).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(ReadError::io(rel))?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge {
            path: rel.to_owned(),
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

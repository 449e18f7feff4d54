//! Reading blobs back from an OCI image layout (image-spec `image-layout.md`,
//! "Blobs"), trusting nothing: the digest names the file, and its bytes must
//! hash to that digest and have the descriptor's size.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::Digest;

/// Why a blob in a layout cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("`{0}` is not a sha256 digest")]
    BadDigest(String),
    #[error("reading blob {digest}")]
    Read {
        digest: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "blob {digest} is corrupt: it is {size} bytes hashing to {actual}, but its descriptor says {expected_size} bytes"
    )]
    Mismatch {
        digest: String,
        expected_size: u64,
        size: u64,
        actual: Digest,
    },
}

/// Where the blob `digest` lives in the layout at `dir`.
pub fn path(dir: &Path, digest: &str) -> Result<PathBuf, BlobError> {
    let d = Digest::parse(digest).ok_or_else(|| BlobError::BadDigest(digest.to_owned()))?;
    Ok(dir.join("blobs").join("sha256").join(d.hex()))
}

/// The verified bytes of a blob.
pub fn read(dir: &Path, digest: &str, size: u64) -> Result<Vec<u8>, BlobError> {
    let path = path(dir, digest)?;
    let bytes = std::fs::read(&path).map_err(|source| BlobError::Read {
        digest: digest.to_owned(),
        source,
    })?;
    verify(digest, size, bytes.len() as u64, Digest::of(&bytes))?;
    Ok(bytes)
}

/// Verifies a blob file in one streaming pass, so a large layer is never
/// held in memory; returns its path.
pub fn check_file(dir: &Path, digest: &str, size: u64) -> Result<PathBuf, BlobError> {
    let path = path(dir, digest)?;
    let fail = |source| BlobError::Read {
        digest: digest.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(&path).map_err(fail)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut read = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(fail)?;
        if n == 0 {
            break;
        }
        read += n as u64;
        hasher.update(&buf[..n]);
    }
    verify(digest, size, read, Digest::from_hasher(hasher))?;
    Ok(path)
}

fn verify(digest: &str, expected_size: u64, size: u64, actual: Digest) -> Result<(), BlobError> {
    if size == expected_size && actual.as_str() == digest {
        return Ok(());
    }
    Err(BlobError::Mismatch {
        digest: digest.to_owned(),
        expected_size,
        size,
        actual,
    })
}

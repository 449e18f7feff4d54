//! Skipping work whose result is already on disk: a result is recorded with a
//! key over every input that shapes it (the image's plan, the bytes of its
//! binaries and files, the timestamp, and this crate's version), the way
//! Bazel keys actions. Same key, same outputs: nothing to pack.
//!
//! Records are a cache, never a source of trust: one that is a link, not a
//! regular file, too large or unreadable counts as absent. Keys and records
//! hold no host paths, so checkouts at different paths write the same bytes.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::digest::canonical_json;
use crate::output::STATE_DIR;

/// A cache key: the sha256 of the canonical JSON of all inputs.
pub fn key(inputs: &impl Serialize) -> String {
    let mut h = Sha256::new();
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update([0]);
    h.update(canonical_json(inputs));
    crate::digest::hex(&h.finalize())
}

/// Where the record for `name` lives.
pub fn record_path(out_dir: &Path, kind: &str, name: &str) -> PathBuf {
    out_dir
        .join(STATE_DIR)
        .join(kind)
        .join(format!("{name}.json"))
}

#[derive(Serialize, Deserialize)]
struct Record<T> {
    key: String,
    value: T,
}

/// The most bytes a record may have; real ones are about a KiB.
const MAX_RECORD: u64 = 1 << 20;

/// The recorded value for `path` if it was stored under `key`.
pub fn lookup<T: for<'de> Deserialize<'de>>(path: &Path, key: &str) -> Option<T> {
    let bytes = read_record(path, MAX_RECORD)?;
    let record: Record<T> = serde_json::from_slice(&bytes).ok()?;
    (record.key == key).then_some(record.value)
}

/// The bytes of a record file: a regular file of at most `max` bytes,
/// opened without following a link at its last component and without
/// blocking (a FIFO put in its place gives `None`, not a hang).
pub fn read_record(path: &Path, max: u64) -> Option<Vec<u8>> {
    read_regular(path, max, false).ok()
}

/// The bytes of a regular file of at most `max` bytes, following a link at
/// its last component only when `follow` says so. It is opened without
/// blocking: a FIFO or a device is refused at once, not waited on.
pub fn read_regular(path: &Path, max: u64, follow: bool) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut flags = rustix::fs::OFlags::NONBLOCK;
    if !follow {
        flags |= rustix::fs::OFlags::NOFOLLOW;
    }
    let file = std::fs::File::options()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    // Refused before reading when its size already says so.
    if meta.len() > max {
        return Err(too_big(max));
    }
    read_within(file, max)
}

/// Everything `from` gives, refused past `max` bytes without reading
/// further.
pub fn read_within(from: impl std::io::Read, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    from.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_big(max));
    }
    Ok(bytes)
}

fn too_big(max: u64) -> std::io::Error {
    std::io::Error::other(format!("more than {} MiB", max.div_ceil(1 << 20)))
}

/// The bytes of a record, to be written atomically by the caller.
pub fn encode<T: Serialize>(key: &str, value: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(&Record {
        key: key.to_owned(),
        value,
    })
    .expect("records serialize");
    bytes.push(b'\n');
    bytes
}

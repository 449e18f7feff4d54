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
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::File::options()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > max {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes).ok()?;
    Some(bytes)
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

//! Small OCI image layouts written by the tests themselves: gzip layers, configs,
//! manifests and, for multi-platform images, an index, with real digests and sizes.

use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

pub(crate) struct TestLayout {
    _dir: TempDir,
    pub path: PathBuf,
    /// Digest of the manifest or index `index.json` names.
    pub top: String,
    /// Every config and layer digest (each once).
    pub blobs: Vec<String>,
    /// The child manifests of an index.
    pub children: Vec<String>,
    /// The largest blob's size, to compare with the chunk size.
    pub largest_blob: u64,
}

impl TestLayout {
    /// The bytes of one blob in the layout.
    pub(crate) fn blob(&self, digest: &str) -> Vec<u8> {
        std::fs::read(blob_path(&self.path, digest)).unwrap()
    }

    pub(crate) fn blob_bytes_total(&self) -> u64 {
        self.blobs.iter().map(|d| self.blob(d).len() as u64).sum()
    }
}

pub(crate) fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

pub(crate) fn sha256(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// Deterministic bytes that do not compress, so a layer of them stays big.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

struct Writer {
    path: PathBuf,
    blobs: Vec<String>,
    largest: u64,
}

impl Writer {
    fn put(&mut self, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        std::fs::write(blob_path(&self.path, &digest), bytes).unwrap();
        digest
    }

    fn put_blob(&mut self, bytes: &[u8]) -> String {
        let digest = self.put(bytes);
        if !self.blobs.contains(&digest) {
            self.blobs.push(digest.clone());
        }
        self.largest = self.largest.max(bytes.len() as u64);
        digest
    }

    /// A gzip layer holding one file; returns (descriptor JSON, diff_id).
    fn layer(&mut self, name: &str, contents: &[u8]) -> (String, String) {
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, name, contents).unwrap();
        let tar = tar.into_inner().unwrap();
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let digest = self.put_blob(&gz);
        (
            descriptor(
                "application/vnd.oci.image.layer.v1.tar+gzip",
                &digest,
                gz.len(),
                "",
            ),
            sha256(&tar),
        )
    }

    /// A manifest for `arch` over `layers`; returns its descriptor JSON and digest.
    fn manifest(&mut self, arch: &str, layers: &[(String, String)]) -> (String, String) {
        let diff_ids: Vec<String> = layers.iter().map(|(_, d)| format!("\"{d}\"")).collect();
        let config = format!(
            r#"{{"architecture":"{arch}","config":{{"Entrypoint":["/hello"]}},"created":"1970-01-01T00:00:00Z","os":"linux","rootfs":{{"diff_ids":[{}],"type":"layers"}}}}"#,
            diff_ids.join(",")
        );
        let config_digest = self.put_blob(config.as_bytes());
        let layer_descs: Vec<&str> = layers.iter().map(|(d, _)| d.as_str()).collect();
        let manifest = format!(
            r#"{{"config":{},"layers":[{}],"mediaType":"{OCI_MANIFEST}","schemaVersion":2}}"#,
            descriptor(
                "application/vnd.oci.image.config.v1+json",
                &config_digest,
                config.len(),
                ""
            ),
            layer_descs.join(",")
        );
        let digest = self.put(manifest.as_bytes());
        let platform = format!(r#","platform":{{"architecture":"{arch}","os":"linux"}}"#);
        (
            descriptor(OCI_MANIFEST, &digest, manifest.len(), &platform),
            digest,
        )
    }
}

fn descriptor(media_type: &str, digest: &str, size: usize, extra: &str) -> String {
    format!(r#"{{"digest":"{digest}","mediaType":"{media_type}","size":{size}{extra}}}"#)
}

fn finish(
    w: Writer,
    dir: TempDir,
    media_type: &str,
    top: String,
    children: Vec<String>,
    ref_name: &str,
) -> TestLayout {
    std::fs::write(
        w.path.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    // The entry in index.json names the image, as the layout writer does.
    let size = std::fs::metadata(blob_path(&w.path, &top)).unwrap().len() as usize;
    let annotations =
        format!(r#","annotations":{{"org.opencontainers.image.ref.name":"{ref_name}"}}"#);
    let entry = descriptor(media_type, &top, size, &annotations);
    std::fs::write(
        w.path.join("index.json"),
        format!(r#"{{"manifests":[{entry}],"schemaVersion":2}}"#),
    )
    .unwrap();
    TestLayout {
        _dir: dir,
        path: w.path,
        top,
        blobs: w.blobs,
        children,
        largest_blob: w.largest,
    }
}

fn writer() -> (TempDir, Writer) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layout");
    std::fs::create_dir_all(path.join("blobs/sha256")).unwrap();
    (
        dir,
        Writer {
            path,
            blobs: Vec::new(),
            largest: 0,
        },
    )
}

/// A single-platform image: a small layer and, when `big_layer` is non-zero, a
/// layer of that many incompressible bytes. `seed` makes each test's blobs its own.
pub(crate) fn single(seed: u64, big_layer: usize) -> TestLayout {
    let (dir, mut w) = writer();
    let mut layers = vec![w.layer("hello.txt", format!("hello from test {seed}\n").as_bytes())];
    if big_layer > 0 {
        layers.push(w.layer("data.bin", &noise(seed, big_layer)));
    }
    let (_, top) = w.manifest("amd64", &layers);
    finish(w, dir, OCI_MANIFEST, top, Vec::new(), "hello")
}

/// A two-platform image: an index over amd64 and arm64 manifests that share one
/// layer and each have their own, one of them big.
pub(crate) fn multi(seed: u64, big_layer: usize) -> TestLayout {
    let (dir, mut w) = writer();
    let shared = w.layer("etc/greeting.txt", format!("shared {seed}\n").as_bytes());
    let amd = w.layer("hello", &noise(seed + 1, big_layer));
    let arm = w.layer("hello", format!("arm64 binary {seed}\n").as_bytes());
    let (amd_desc, amd_digest) = w.manifest("amd64", &[shared.clone(), amd]);
    let (arm_desc, arm_digest) = w.manifest("arm64", &[shared, arm]);
    let index = format!(
        r#"{{"manifests":[{amd_desc},{arm_desc}],"mediaType":"{OCI_INDEX}","schemaVersion":2}}"#
    );
    let top = w.put(index.as_bytes());
    finish(
        w,
        dir,
        OCI_INDEX,
        top,
        vec![amd_digest, arm_digest],
        "hello",
    )
}

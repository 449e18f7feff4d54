//! The one validator every test that makes an image ends with: an OCI layout
//! is checked blob by blob against the image spec's rules, with no trust in
//! the code that wrote it.

use std::io::Read;
use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// Reads a blob and checks its digest and size against the descriptor.
fn blob(layout: &Path, desc: &Value) -> Vec<u8> {
    let digest = desc["digest"].as_str().expect("descriptor has a digest");
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    let bytes = std::fs::read(layout.join("blobs/sha256").join(hex))
        .unwrap_or_else(|e| panic!("blob {digest} missing from {}: {e}", layout.display()));
    assert_eq!(
        sha256(&bytes),
        digest,
        "blob {digest} does not hash to its name"
    );
    assert_eq!(
        desc["size"].as_u64(),
        Some(bytes.len() as u64),
        "descriptor size of {digest}"
    );
    bytes
}

/// What a validated layout holds, for further checks.
pub(crate) struct Validated {
    /// Per platform (`os/arch`): the manifest digest, config and layer tars.
    pub images: Vec<ValidatedImage>,
    pub top_digest: String,
}

pub(crate) struct ValidatedImage {
    pub platform: String,
    pub manifest_digest: String,
    pub config: Value,
    /// Uncompressed layer tars, in order.
    pub layers: Vec<Vec<u8>>,
}

/// Validates an OCI image layout: `oci-layout`, `index.json`, every blob's
/// digest and size, manifests' and configs' media types, diff_ids against the
/// uncompressed layers, and platforms against configs.
pub(crate) fn layout(layout: &Path) -> Validated {
    let oci_layout: Value =
        serde_json::from_slice(&std::fs::read(layout.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(oci_layout["imageLayoutVersion"], "1.0.0");
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    let entries = index["manifests"].as_array().unwrap();
    assert!(!entries.is_empty(), "index.json names the image");
    // One entry per tag, each named, all the same image.
    let top = &entries[0];
    let mut names = std::collections::BTreeSet::new();
    for e in entries {
        let name = e["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .expect("every index.json entry is named");
        assert!(names.insert(name.to_owned()), "`{name}` named twice");
        assert_eq!(e["digest"], top["digest"], "entries name one image");
        assert_eq!(e["size"], top["size"]);
        assert_eq!(e["mediaType"], top["mediaType"]);
    }
    let top_bytes = blob(layout, top);
    let top_json: Value = serde_json::from_slice(&top_bytes).unwrap();
    assert_eq!(top_json["mediaType"], top["mediaType"]);

    let manifests: Vec<(Value, Value)> = match top["mediaType"].as_str().unwrap() {
        "application/vnd.oci.image.index.v1+json" => top_json["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                let m: Value = serde_json::from_slice(&blob(layout, d)).unwrap();
                (d.clone(), m)
            })
            .collect(),
        "application/vnd.oci.image.manifest.v1+json"
        | "application/vnd.docker.distribution.manifest.v2+json" => {
            vec![(top.clone(), top_json)]
        }
        other => panic!("unexpected top media type {other}"),
    };
    let mut images = Vec::new();
    for (desc, manifest) in manifests {
        assert_eq!(manifest["schemaVersion"], 2);
        // A copy made by another tool may use docker's equivalent types.
        let docker =
            manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json";
        if !docker {
            assert_eq!(
                manifest["mediaType"],
                "application/vnd.oci.image.manifest.v1+json"
            );
        }
        assert_eq!(
            manifest["config"]["mediaType"],
            if docker {
                "application/vnd.docker.container.image.v1+json"
            } else {
                "application/vnd.oci.image.config.v1+json"
            }
        );
        let config: Value = serde_json::from_slice(&blob(layout, &manifest["config"])).unwrap();
        let platform_name = |v: &Value| match v["variant"].as_str() {
            Some(variant) => format!(
                "{}/{}/{variant}",
                v["os"].as_str().unwrap(),
                v["architecture"].as_str().unwrap()
            ),
            None => format!(
                "{}/{}",
                v["os"].as_str().unwrap(),
                v["architecture"].as_str().unwrap()
            ),
        };
        let platform = platform_name(&config);
        if let Some(p) = desc.get("platform") {
            assert_eq!(
                platform_name(p),
                platform,
                "descriptor platform matches the config"
            );
        }
        let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
        let layer_descs = manifest["layers"].as_array().unwrap();
        assert_eq!(diff_ids.len(), layer_descs.len());
        let mut layers = Vec::new();
        for (d, diff_id) in layer_descs.iter().zip(diff_ids) {
            let stored = blob(layout, d);
            let media_type = d["mediaType"].as_str().unwrap();
            // docker's archives label uncompressed layers as gzip, so trust
            // the bytes: ours must be gzip and labelled so.
            let gzipped = stored.starts_with(&[0x1f, 0x8b]);
            if media_type.starts_with("application/vnd.oci") {
                assert_eq!(gzipped, media_type.ends_with("+gzip"), "{media_type}");
            }
            let tar = match media_type {
                "application/vnd.oci.image.layer.v1.tar+gzip"
                | "application/vnd.docker.image.rootfs.diff.tar.gzip"
                    if gzipped =>
                {
                    let mut tar = Vec::new();
                    flate2::read::GzDecoder::new(stored.as_slice())
                        .read_to_end(&mut tar)
                        .unwrap();
                    tar
                }
                "application/vnd.oci.image.layer.v1.tar+zstd" => {
                    let mut tar = Vec::new();
                    scratchpack::oci::compress::zstd_reader(stored.as_slice())
                        .read_to_end(&mut tar)
                        .unwrap();
                    tar
                }
                "application/vnd.oci.image.layer.v1.tar"
                | "application/vnd.docker.image.rootfs.diff.tar"
                | "application/vnd.docker.image.rootfs.diff.tar.gzip" => stored,
                other => panic!("unexpected layer media type {other}"),
            };
            assert_eq!(
                &sha256(&tar),
                diff_id,
                "diff_id is the uncompressed layer's digest"
            );
            layers.push(tar);
        }
        images.push(ValidatedImage {
            platform,
            manifest_digest: desc["digest"].as_str().unwrap().to_owned(),
            config,
            layers,
        });
    }
    Validated {
        images,
        top_digest: top["digest"].as_str().unwrap().to_owned(),
    }
}

/// One layer entry as `tar tv` would show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TarEntry {
    pub path: String,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub kind: char,
}

pub(crate) fn tar_entries(tar: &[u8]) -> Vec<TarEntry> {
    let mut archive = tar::Archive::new(tar);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            TarEntry {
                path: e.path().unwrap().to_string_lossy().into_owned(),
                mode: h.mode().unwrap(),
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                mtime: h.mtime().unwrap(),
                kind: if h.entry_type().is_dir() { 'd' } else { '-' },
            }
        })
        .collect()
}

//! Snapshots of the exact bytes that ship, so any change to them shows up in
//! review, and the layer rules checked on real tar output.

use std::collections::BTreeMap;
use std::io::Read;

use super::*;
use crate::manifest::{ImagePlan, parse};
use crate::platform::Platform;
use crate::workspace::Workspace;

fn plan() -> ImagePlan {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("motd"), "hi\n").unwrap();
    let mut packages = BTreeMap::new();
    packages.insert("hello".to_owned(), vec!["hello".to_owned()]);
    let ws = Workspace {
        root: dir.path().to_owned(),
        target_dir: dir.path().join("target"),
        packages,
        manifests: BTreeMap::new(),
        ..Workspace::default()
    };
    let text = r#"
[images.hello]
package = "hello"
platforms = ["linux/amd64", "linux/arm64"]
cmd = ["world"]
env = { B = "2", A = "1" }
labels = { "org.example.team" = "core" }
annotations = { "org.opencontainers.image.version" = "1.0" }
ports = ["8080"]
stop-signal = "SIGINT"
files = [{ src = "motd", dst = "/etc/motd/today", mode = "0444" }]
dirs = [{ path = "/tmp", mode = "1777" }]
tags = ["1.0", "latest"]
"#;
    parse(&dir.path().join("images.toml"), text, &ws)
        .unwrap()
        .images
        .remove(0)
}

fn assemble(epoch: u64) -> ImageSet {
    let plan = plan();
    let files = vec![b"hi\n".to_vec()];
    let images = plan
        .targets
        .iter()
        .map(|t| {
            let contents = image::Contents {
                binary: b"\x7fELF not really",
                files: &files,
            };
            Image::assemble(&plan, t.platform, &contents, epoch).unwrap()
        })
        .collect();
    ImageSet::new(&plan, images)
}

fn text(blob: &Blob) -> String {
    String::from_utf8(blob.bytes.clone()).unwrap()
}

#[test]
fn config_manifest_and_index_bytes() {
    let set = assemble(0);
    insta::assert_snapshot!("config_amd64", text(&set.images[0].config));
    insta::assert_snapshot!("manifest_amd64", text(&set.images[0].manifest));
    insta::assert_snapshot!("index", text(set.index.as_ref().unwrap()));
    let meta = layout::LayoutMeta::new(&set);
    insta::assert_snapshot!(
        "layout_index_json",
        String::from_utf8(meta.index_json().to_vec()).unwrap()
    );
}

fn tar_listing(layer: &Layer) -> Vec<(String, u32, u64, u64, u64, u64)> {
    let mut gz = flate2::read::GzDecoder::new(layer.blob.bytes.as_slice());
    let mut tar_bytes = Vec::new();
    gz.read_to_end(&mut tar_bytes).unwrap();
    assert_eq!(Digest::of(&tar_bytes), layer.diff_id);
    assert_eq!(tar_bytes.len() as u64, layer.tar_size);
    let mut archive = ::tar::Archive::new(tar_bytes.as_slice());
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                e.path().unwrap().to_string_lossy().into_owned(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.mtime().unwrap(),
                h.size().unwrap(),
            )
        })
        .collect()
}

#[test]
fn layer_holds_exactly_the_declared_entries_and_parents() {
    let set = assemble(0);
    let listing = tar_listing(&set.images[0].layer);
    let names: Vec<&str> = listing.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        names,
        ["etc/", "etc/motd/", "etc/motd/today", "hello", "tmp/"]
    );
    let modes: Vec<u32> = listing.iter().map(|e| e.1).collect();
    assert_eq!(modes, [0o755, 0o755, 0o444, 0o755, 0o1777]);
    assert!(listing.iter().all(|e| e.2 == 0 && e.3 == 0 && e.4 == 0));
}

#[test]
fn gzip_header_is_pinned() {
    let set = assemble(0);
    let gz = &set.images[0].layer.blob.bytes;
    // magic, deflate, no flags (no name/comment), mtime 0, OS 255.
    assert_eq!(&gz[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 255]);
}

#[test]
fn same_inputs_same_bytes() {
    assert_eq!(assemble(0), assemble(0));
}

#[test]
fn epoch_changes_only_created_and_mtimes() {
    let a = assemble(0);
    let b = assemble(1_700_000_000);
    let la = tar_listing(&a.images[0].layer);
    let lb = tar_listing(&b.images[0].layer);
    assert!(lb.iter().all(|e| e.4 == 1_700_000_000));
    let strip_mtime = |l: &[(String, u32, u64, u64, u64, u64)]| {
        l.iter()
            .map(|e| (e.0.clone(), e.1, e.2, e.3, e.5))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip_mtime(&la), strip_mtime(&lb));
    let mut ca: serde_json::Value = serde_json::from_slice(&a.images[0].config.bytes).unwrap();
    let cb: serde_json::Value = serde_json::from_slice(&b.images[0].config.bytes).unwrap();
    assert_eq!(cb["created"], "2023-11-14T22:13:20Z");
    ca["created"] = cb["created"].clone();
    ca["history"][0]["created"] = cb["created"].clone();
    ca["rootfs"] = cb["rootfs"].clone();
    assert_eq!(ca, cb);
}

#[test]
fn archive_is_a_layout_plus_docker_manifest() {
    let set = assemble(0);
    let meta = layout::LayoutMeta::new(&set);
    let tar = layout::archive(&set, &meta, "hello", 0);
    let mut archive = ::tar::Archive::new(tar.as_slice());
    let mut names = Vec::new();
    let mut docker = None;
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        if name == "manifest.json" {
            let mut s = String::new();
            e.read_to_string(&mut s).unwrap();
            docker = Some(s);
        }
        names.push(name);
    }
    for blob in set.blobs() {
        assert!(names.contains(&format!("blobs/sha256/{}", blob.digest.hex())));
    }
    assert!(names.contains(&"oci-layout".to_owned()));
    assert!(names.contains(&"index.json".to_owned()));
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries are byte-sorted");
    let docker: serde_json::Value = serde_json::from_str(&docker.unwrap()).unwrap();
    let tagged = docker.as_array().unwrap();
    assert_eq!(tagged.len(), 1, "one image for docker load");
    assert_eq!(
        tagged[0]["RepoTags"],
        serde_json::json!(["hello:1.0", "hello:latest"])
    );
    // The first platform images.toml names, whatever the build host.
    assert_eq!(set.images[0].platform, Platform::LinuxAmd64);
    assert_eq!(
        tagged[0]["Config"],
        format!("blobs/sha256/{}", set.images[0].config.digest.hex())
    );
}

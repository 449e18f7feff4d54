//! Layer compression end to end: the examples' digests under the current
//! layer format, and zstd images read by skopeo, podman and `test-images`.

use std::path::Path;
use std::process::Command;

use sha2::Digest as _;

use crate::support::{Fixture, HELLO_MAIN, examples, require_tool, run};
use crate::validate;

/// Layer format 2 (README, "Layer format"): each example's layer and
/// manifest digest, for the binary (by sha256) it was built from. A
/// different compiler gives different binaries; this pins what the packing
/// makes of the same binary.
const PINNED: &[(&str, &str, &str, &str, &str)] = &[
    (
        "greeter",
        "linux/amd64",
        "sha256:f2e3eb638a1d97e7fea8a3b24e1b1ecb27eb6dd740a90c6ebc51815f13fbd071",
        "sha256:74e4e2698721c695bfbc846ae031df52a417d486234f30f3181cdea7978ce6fd",
        "sha256:1f7ac05113e1cd685f65f5ecde60d1d1e22f974148a7c09ce041fecaeea03735",
    ),
    (
        "greeter",
        "linux/arm64",
        "sha256:739431cd55529a0a7e9d55cb3285c9f09bbe06e0e4c2afe96f8de3dbfcafdb9e",
        "sha256:e0e241d915f669e866a7d955ba80c7fe83455e3fe8ef450a36fc9fe9864ed0ec",
        "sha256:a3e8dfa2f4cb9075c342314df544d3e7883c2dd686c0fd1589457774c69290c7",
    ),
    (
        "hello",
        "linux/amd64",
        "sha256:65a7b4dbfbdbaccd802fa2b66e424f76fcd6cbb6a8d246a383ff0c02b23d07b4",
        "sha256:9fdb4eee86462f5814a21b4bf93295437609ee9216ee48348356caafd4303099",
        "sha256:048593c425c7773eb34ea39e7d2f9e60e40a9ca1ad54e53ef512a3c4b4a8c3c6",
    ),
    (
        "hello",
        "linux/arm64",
        "sha256:813c0fe7a722cc667990b1067c963fdaaea0c725405fc569812b07717eb82879",
        "sha256:777ef32c423885a3c225ff100c35f52fdcdfa7cc7275d7d0c348dc8bf761ad21",
        "sha256:2cddbb148d7e016875898adff9b97aa32d0669e2c9613d2b90140b330134af5c",
    ),
];

#[test]
fn the_examples_have_the_pinned_digests() {
    let ex = examples();
    for (name, platform, binary, layer, manifest) in PINNED {
        let built = ex.image(name)["platforms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["platform"] == *platform)
            .unwrap_or_else(|| panic!("no {platform} in image {name}"));
        let bytes = std::fs::read(built["binary"].as_str().unwrap()).unwrap();
        let actual_binary = format!("sha256:{:x}", sha2::Sha256::digest(&bytes));
        assert_eq!(
            actual_binary, *binary,
            "{name} {platform}: the compiler made another binary, so these pins \
             say nothing; pin the digests of this toolchain's build instead \
             (layer {}, manifest {})",
            built["layer"], built["manifest"]
        );
        assert_eq!(built["layer"], *layer, "{name} {platform} layer");
        assert_eq!(built["manifest"], *manifest, "{name} {platform} manifest");
    }
}

/// A podman with a private store, as `podman load` needs no daemon.
fn podman(podman: &Path, store: &Path) -> Command {
    let mut cmd = Command::new(podman);
    cmd.arg("--root")
        .arg(store.join("root"))
        .arg("--runroot")
        .arg(store.join("run"))
        .args([
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
        ]);
    cmd
}

#[test]
fn zstd_images_are_read_by_skopeo_podman_and_test_images() {
    let fx = Fixture::new(
        &[("app", HELLO_MAIN)],
        "[defaults]\ncompression = \"zstd\"\n\n\
         [images.app]\npackage = \"app\"\nplatforms = [\"linux/amd64\"]\n\n\
         [images.app.tests.runs]\nstdout = { equals = \"hello from a fixture\\n\" }\n",
    );
    // test-images builds the image, unpacks its zstd layer and runs it.
    let out = fx.cli(&["test-images"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l == "test app/runs [linux/amd64] ... ok"),
        "{stdout}"
    );
    let layout = fx.path().join("target/images/app");
    let image = validate::layout(&layout);
    let manifest_digest = image.images[0].manifest_digest.clone();
    let manifest_hex = manifest_digest.strip_prefix("sha256:").unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(layout.join("blobs/sha256").join(manifest_hex)).unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );

    if let Some(skopeo) = require_tool("skopeo", "skopeo") {
        let out = run(Command::new(&skopeo)
            .args(["inspect", "--raw"])
            .arg(format!("oci:{}", layout.display())));
        assert!(out.status.success());
        let raw: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            raw["layers"][0]["mediaType"],
            manifest["layers"][0]["mediaType"]
        );
        let out = run(Command::new(&skopeo)
            .arg("inspect")
            .arg(format!("oci:{}", layout.display())));
        assert!(out.status.success());
        let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(info["Digest"], manifest_digest.as_str());
        // A copy keeps the zstd layer and so the manifest's digest.
        let copy = fx.path().join("copy");
        let out = run(Command::new(&skopeo)
            .args(["copy", "--quiet"])
            .arg(format!("oci:{}", layout.display()))
            .arg(format!("oci:{}:app", copy.display())));
        assert!(out.status.success());
        let copied = validate::layout(&copy);
        assert_eq!(copied.images[0].manifest_digest, manifest_digest);
        assert_eq!(copied.images[0].layers, image.images[0].layers);
    }

    if let Some(bin) = require_tool("podman", "podman") {
        let store = tempfile::tempdir().unwrap();
        let archive = fx.path().join("target/images/app.tar");
        let out = run(podman(&bin, store.path())
            .arg("load")
            .arg("-i")
            .arg(&archive));
        assert!(out.status.success(), "podman load -i {}", archive.display());
        let out = run(podman(&bin, store.path()).args([
            "image",
            "inspect",
            "--format",
            "{{.Os}}/{{.Architecture}}",
            "app:latest",
        ]));
        assert!(out.status.success(), "podman has no app:latest");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "linux/amd64");
    }
}

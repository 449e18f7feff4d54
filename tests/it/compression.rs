//! Layer compression end to end: the examples' digests under the current
//! layer format, and zstd images read by skopeo, podman and `test-images`.

use std::process::Command;

use sha2::Digest as _;

use crate::support::{self, Fixture, HELLO_MAIN, examples, require_tool, run};
use crate::validate;

/// Layer format 2 (README, "Layer format"): each example's layer and
/// manifest digest, for the binary (by sha256) it was built from. A
/// different compiler gives different binaries; this pins what the packing
/// makes of the same binary. The binaries carry their crate list (the
/// `.dep-v0` section, on by default).
const PINNED: &[(&str, &str, &str, &str, &str)] = &[
    (
        "greeter",
        "linux/amd64",
        "sha256:f2ff38540fff58108fda52c4e673dabfe748523ee47354417d5c6b5bea7e664a",
        "sha256:098603f8f1f7189d9533348dcbd68b871bc454f319be4ae50821fb6af861230b",
        "sha256:61488f77882c72d8883a9b01a0de6f81eca431cfe2aa2371d1004da883f13432",
    ),
    (
        "greeter",
        "linux/arm64",
        "sha256:bd2ec1f730a191f502d5f596afd84501f7b4974b48b7678e7bd989abad1ab020",
        "sha256:e6720ebfeb226187cc18f8e07f91afd10f5ddfcb026ead5e2425390236b97710",
        "sha256:67e39c4e8253b0b738635112c996a9e59e1fd207fac987e94f4f900327055ed9",
    ),
    (
        "hello",
        "linux/amd64",
        "sha256:694069c421302fc2585f7fe2d55757f71731404b0a4e49d60b086561ab26e2dd",
        "sha256:ff189c632a81aa1b0af03eacdfeb9550376239edccfd08c4c569385541d721e3",
        "sha256:6a7096cc8efb35e5dfc7d918574085b20bab4067616c8c5bbd13cadb06c0ac48",
    ),
    (
        "hello",
        "linux/arm64",
        "sha256:0f4d295d39234bdea167be2585415784c6640a80444f0ceac696f0d0d5582e71",
        "sha256:65ee638ea2c183046468e0c0054607c739bfa020f2b577cc0fef223b1dc97f84",
        "sha256:5a6a76f89bdfd9250ca3f70806e6235508273d9d302ac134a11cfe23afbaad6e",
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

    if let Some(podman) = support::Podman::new() {
        let archive = fx.path().join("target/images/app.tar");
        podman.load(archive.to_str().unwrap());
        let (platform, _) = podman.inspect("app:latest");
        assert_eq!(platform, "linux/amd64");
    }
}

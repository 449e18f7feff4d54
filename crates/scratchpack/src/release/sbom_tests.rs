use std::collections::{BTreeMap, BTreeSet};

use super::*;

fn sample() -> (LinkedCrates, ImageInfo) {
    let c = |name: &str, license: Option<&str>, checksum: Option<&str>| Crate {
        name: name.into(),
        version: "1.0.0".into(),
        license: license.map(Into::into),
        source: checksum.map(|_| "registry+https://github.com/rust-lang/crates.io-index".into()),
        checksum: checksum.map(Into::into),
    };
    let crates = BTreeMap::from([
        ("app@1.0.0".to_owned(), c("app", None, None)),
        (
            "dep_a@1.0.0".to_owned(),
            c("dep_a", Some("MIT OR Apache-2.0"), Some("aa")),
        ),
    ]);
    let edges = BTreeMap::from([
        (
            "app@1.0.0".to_owned(),
            BTreeSet::from(["dep_a@1.0.0".to_owned()]),
        ),
        ("dep_a@1.0.0".to_owned(), BTreeSet::new()),
    ]);
    let image = ImageInfo {
        name: "app".into(),
        repository: Some("registry.example:5000/team/app".into()),
        digest: Digest::of(b"manifest"),
        os: "linux".into(),
        architecture: "amd64".into(),
        epoch: 86400,
    };
    (
        LinkedCrates {
            root: "app@1.0.0".into(),
            crates,
            edges,
        },
        image,
    )
}

#[test]
fn the_image_purl_names_digest_arch_and_repository() {
    let (_, image) = sample();
    assert_eq!(
        image.purl(),
        format!(
            "pkg:oci/app@sha256%3A{}?arch=amd64&repository_url=registry.example%3A5000%2Fteam%2Fapp",
            image.digest.hex()
        )
    );
}

#[test]
fn spdx_describes_the_image_containing_the_crates() {
    let (crates, image) = sample();
    let doc: Value = serde_json::from_slice(&spdx(std::slice::from_ref(&crates), &image)).unwrap();
    assert_eq!(doc["creationInfo"]["created"], "1970-01-02T00:00:00Z");
    assert!(
        doc["documentNamespace"]
            .as_str()
            .unwrap()
            .ends_with(image.digest.hex())
    );
    let dep = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "dep_a")
        .unwrap();
    assert_eq!(dep["SPDXID"], "SPDXRef-Crate-dep.a-1.0.0");
    assert_eq!(dep["licenseDeclared"], "MIT OR Apache-2.0");
    assert_eq!(dep["checksums"][0]["checksumValue"], "aa");
    assert_eq!(
        dep["externalRefs"][0]["referenceLocator"],
        "pkg:cargo/dep_a@1.0.0"
    );
    let rels = doc["relationships"].as_array().unwrap();
    assert!(rels.contains(&json!({"spdxElementId": "SPDXRef-Image", "relationshipType": "CONTAINS", "relatedSpdxElement": "SPDXRef-Crate-app-1.0.0"})));
    assert!(rels.contains(&json!({"spdxElementId": "SPDXRef-Crate-app-1.0.0", "relationshipType": "DEPENDS_ON", "relatedSpdxElement": "SPDXRef-Crate-dep.a-1.0.0"})));
}

#[test]
fn cyclonedx_serial_numbers_follow_the_digest() {
    let (crates, mut image) = sample();
    let a: Value =
        serde_json::from_slice(&cyclonedx(std::slice::from_ref(&crates), &image)).unwrap();
    let serial = a["serialNumber"].as_str().unwrap().to_owned();
    assert!(
        regex_lite::Regex::new(
            "^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
        )
        .unwrap()
        .is_match(&serial),
        "{serial}"
    );
    assert_eq!(
        cyclonedx(std::slice::from_ref(&crates), &image),
        cyclonedx(std::slice::from_ref(&crates), &image)
    );
    image.digest = Digest::of(b"other");
    let b: Value =
        serde_json::from_slice(&cyclonedx(std::slice::from_ref(&crates), &image)).unwrap();
    assert_ne!(b["serialNumber"], serial);
    assert_eq!(a["components"][1]["hashes"][0]["content"], "aa");
    assert_eq!(a["dependencies"][0]["dependsOn"][0], "pkg:cargo/app@1.0.0");
}

/// An image with a second binary lists both binaries' crates, each once,
/// and contains both binaries' packages.
#[test]
fn every_binary_of_an_image_is_in_its_sboms() {
    let (app, image) = sample();
    let tool = LinkedCrates {
        root: "tool@1.0.0".into(),
        crates: BTreeMap::from([
            (
                "tool@1.0.0".to_owned(),
                Crate {
                    name: "tool".into(),
                    ..app.crates["app@1.0.0"].clone()
                },
            ),
            ("dep_a@1.0.0".to_owned(), app.crates["dep_a@1.0.0"].clone()),
        ]),
        edges: BTreeMap::from([(
            "tool@1.0.0".to_owned(),
            BTreeSet::from(["dep_a@1.0.0".to_owned()]),
        )]),
    };
    let both = [app.clone(), tool];
    let doc: Value = serde_json::from_slice(&spdx(&both, &image)).unwrap();
    let names: Vec<&str> = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["app", "app", "dep_a", "tool"]);
    let contained: Vec<&str> = doc["relationships"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["relationshipType"] == "CONTAINS")
        .map(|r| r["relatedSpdxElement"].as_str().unwrap())
        .collect();
    assert_eq!(
        contained,
        ["SPDXRef-Crate-app-1.0.0", "SPDXRef-Crate-tool-1.0.0"]
    );
    let bom: Value = serde_json::from_slice(&cyclonedx(&both, &image)).unwrap();
    assert_eq!(
        bom["dependencies"][0]["dependsOn"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // One binary gives the bytes it always gave.
    assert_eq!(
        spdx(&[app.clone(), app.clone()], &image),
        spdx(std::slice::from_ref(&app), &image)
    );
}

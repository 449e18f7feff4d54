//! SBOMs for one platform of an image, from the crates its binaries link
//! ([`LinkedCrates`], the build's own resolve for the image's target triple
//! and features, one per binary, merged), written as
//! SPDX 2.3 JSON (spdx-spec v2.3) and CycloneDX 1.6 JSON (ECMA-424), with
//! `pkg:cargo` purls (purl-spec), Cargo.lock checksums and the image itself
//! as the described package (`pkg:oci`). The bytes depend on nothing but the
//! inputs: keys and lists sorted, time from the image's epoch, document
//! namespace and serial number derived from the image digest.

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::oci::Digest;
use crate::oci::image::rfc3339;
use crate::toolchain::crates::{Crate, LinkedCrates};

const TOOL: &str = concat!("scratchpack-", env!("CARGO_PKG_VERSION"));

/// The image platform an SBOM describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// The image's name in images.toml.
    pub name: String,
    /// `registry/repository` when the image is pushed somewhere.
    pub repository: Option<String>,
    /// The platform manifest's digest.
    pub digest: Digest,
    pub os: String,
    pub architecture: String,
    /// `SOURCE_DATE_EPOCH`, the time the image records.
    pub epoch: u64,
}

impl ImageInfo {
    /// `pkg:oci/<name>@sha256%3A<hex>?arch=<arch>[&repository_url=<repo>]`.
    pub fn purl(&self) -> String {
        let name = self
            .repository
            .as_deref()
            .and_then(|r| r.rsplit('/').next())
            .unwrap_or(&self.name)
            .to_lowercase();
        let mut purl = format!(
            "pkg:oci/{name}@sha256%3A{}?arch={}",
            self.digest.hex(),
            self.architecture
        );
        if let Some(repo) = &self.repository {
            purl.push_str("&repository_url=");
            purl.push_str(&repo.replace('/', "%2F").replace(':', "%3A"));
        }
        purl
    }
}

/// `pkg:cargo/<name>@<version>`.
fn purl(c: &Crate) -> String {
    format!("pkg:cargo/{}@{}", c.name, c.version)
}

fn from_crates_io(c: &Crate) -> bool {
    c.source.as_deref().is_some_and(|s| {
        s == "registry+https://github.com/rust-lang/crates.io-index"
            || s == "sparse+https://index.crates.io/"
    })
}

fn spdx_id(c: &Crate) -> String {
    // SPDX ids allow letters, digits, `.` and `-`; crate names never contain
    // `.`, so mapping `_` and `+` to `.` keeps ids distinct.
    let clean = |s: &str| s.replace(['_', '+'], ".");
    format!("SPDXRef-Crate-{}-{}", clean(&c.name), clean(&c.version))
}

/// The crates of every binary of an image as one graph: each crate once,
/// edges joined, and the binaries' packages as its roots (in the order of
/// the binaries, each once).
struct Merged {
    roots: Vec<String>,
    crates: std::collections::BTreeMap<String, Crate>,
    edges: std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
}

impl Merged {
    fn of(binaries: &[LinkedCrates]) -> Merged {
        let mut m = Merged {
            roots: Vec::new(),
            crates: Default::default(),
            edges: Default::default(),
        };
        for b in binaries {
            if !m.roots.contains(&b.root) {
                m.roots.push(b.root.clone());
            }
            m.crates.extend(b.crates.clone());
            for (from, tos) in &b.edges {
                m.edges.entry(from.clone()).or_default().extend(tos.clone());
            }
        }
        m
    }
}

/// SPDX 2.3 JSON, canonical bytes, listing what every binary links.
pub fn spdx(binaries: &[LinkedCrates], image: &ImageInfo) -> Vec<u8> {
    let crates = Merged::of(binaries);
    let noassertion = "NOASSERTION";
    let mut packages = vec![json!({
        "SPDXID": "SPDXRef-Image",
        "name": image.name,
        "versionInfo": image.digest.as_str(),
        "downloadLocation": noassertion,
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
        "checksums": [{"algorithm": "SHA256", "checksumValue": image.digest.hex()}],
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": image.purl(),
        }],
        "licenseConcluded": noassertion,
        "licenseDeclared": noassertion,
        "copyrightText": noassertion,
    })];
    for (key, c) in &crates.crates {
        let mut p = json!({
            "SPDXID": spdx_id(c),
            "name": c.name,
            "versionInfo": c.version,
            "downloadLocation": if from_crates_io(c) {
                format!("https://crates.io/api/v1/crates/{}/{}/download", c.name, c.version)
            } else {
                noassertion.to_owned()
            },
            "filesAnalyzed": false,
            "primaryPackagePurpose": if crates.roots.contains(key) { "APPLICATION" } else { "LIBRARY" },
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": purl(c),
            }],
            "licenseConcluded": noassertion,
            "licenseDeclared": c.license.as_deref().unwrap_or(noassertion),
            "copyrightText": noassertion,
        });
        if let Some(sum) = &c.checksum {
            p["checksums"] = json!([{"algorithm": "SHA256", "checksumValue": sum}]);
        }
        packages.push(p);
    }
    let mut relationships = vec![
        json!({"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": "SPDXRef-Image"}),
    ];
    for root in &crates.roots {
        relationships.push(json!({"spdxElementId": "SPDXRef-Image", "relationshipType": "CONTAINS", "relatedSpdxElement": spdx_id(&crates.crates[root])}));
    }
    for (from, tos) in &crates.edges {
        for to in tos {
            relationships.push(json!({
                "spdxElementId": spdx_id(&crates.crates[from]),
                "relationshipType": "DEPENDS_ON",
                "relatedSpdxElement": spdx_id(&crates.crates[to]),
            }));
        }
    }
    crate::oci::canonical_json(&json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{}-{}", image.name, image.architecture),
        // Unique per image digest, as the spec asks, and the same on every
        // build of that digest.
        "documentNamespace": format!(
            "https://spdx.org/spdxdocs/scratchpack/{}-{}",
            image.name,
            image.digest.hex()
        ),
        "creationInfo": {
            "created": rfc3339(image.epoch),
            "creators": [format!("Tool: {TOOL}")],
        },
        "documentDescribes": ["SPDXRef-Image"],
        "packages": packages,
        "relationships": relationships,
    }))
}

/// CycloneDX 1.6 JSON, canonical bytes, listing what every binary links.
pub fn cyclonedx(binaries: &[LinkedCrates], image: &ImageInfo) -> Vec<u8> {
    let crates = Merged::of(binaries);
    let image_ref = image.purl();
    let components: Vec<Value> = crates
        .crates
        .iter()
        .map(|(key, c)| {
            let mut v = json!({
                "type": if crates.roots.contains(key) { "application" } else { "library" },
                "bom-ref": purl(c),
                "name": c.name,
                "version": c.version,
                "purl": purl(c),
            });
            if let Some(sum) = &c.checksum {
                v["hashes"] = json!([{"alg": "SHA-256", "content": sum}]);
            }
            if let Some(license) = &c.license {
                v["licenses"] = json!([{"expression": license}]);
            }
            v
        })
        .collect();
    let mut dependencies = vec![json!({
        "ref": image_ref,
        "dependsOn": crates.roots.iter().map(|r| purl(&crates.crates[r])).collect::<Vec<_>>(),
    })];
    for (from, tos) in &crates.edges {
        dependencies.push(json!({
            "ref": purl(&crates.crates[from]),
            "dependsOn": tos.iter().map(|t| purl(&crates.crates[t])).collect::<Vec<_>>(),
        }));
    }
    crate::oci::canonical_json(&json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": serial_number(&image.digest),
        "version": 1,
        "metadata": {
            "timestamp": rfc3339(image.epoch),
            "tools": {"components": [{"type": "application", "name": "scratchpack", "version": env!("CARGO_PKG_VERSION")}]},
            "component": {
                "type": "container",
                "bom-ref": image_ref,
                "name": image.name,
                "version": image.digest.as_str(),
                "purl": image.purl(),
                "hashes": [{"alg": "SHA-256", "content": image.digest.hex()}],
            },
        },
        "components": components,
        "dependencies": dependencies,
    }))
}

/// A version 5-style UUID URN from the digest: the same image always gets
/// the same serial number, and different images different ones.
fn serial_number(digest: &Digest) -> String {
    let h = Sha256::digest(format!("scratchpack-cyclonedx:{digest}"));
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = crate::digest::hex(&b);
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
#[path = "sbom_tests.rs"]
mod tests;

//! SBOMs from the build's resolve: the crates listed are exactly those
//! `cargo tree -e normal --target <triple> -p <package>` shows, SPDX
//! validates with pyspdxtools and CycloneDX with cyclonedx-python-lib.

use std::collections::BTreeSet;
use std::process::Command;

use scratchpack::oci::Digest;
use scratchpack::release::sbom::{self, ImageInfo};
use scratchpack::toolchain::Env;
use scratchpack::toolchain::crates::{self, LinkedCrates};

use crate::release_oracles::{assert_accepted, oracles};
use crate::support::{repo_root, run};

const TRIPLES: [&str; 2] = ["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"];

/// `name@version` of every crate `cargo tree` shows for `package`.
fn cargo_tree(package: &str, triple: &str) -> BTreeSet<String> {
    let out = run(Command::new(env!("CARGO")).current_dir(repo_root()).args([
        "tree", "-e", "normal", "--prefix", "none", "-f", "{p}", "--target", triple, "-p", package,
    ]));
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next().unwrap();
            let version = words.next().unwrap().trim_start_matches('v');
            format!("{name}@{version}")
        })
        .collect()
}

/// The crates `package` links for `triple` with its default features,
/// cargo's answers kept in `kept`.
fn resolve(kept: &std::path::Path, package: &str, triple: &str) -> LinkedCrates {
    let env = Env::from_process();
    crates::load(&env, &repo_root(), kept, package, triple, &[], true).unwrap()
}

fn image(name: &str, arch: &str) -> ImageInfo {
    ImageInfo {
        name: name.into(),
        repository: Some("127.0.0.1:5000/scratchpack/".to_owned() + name),
        digest: Digest::of(name.as_bytes()),
        os: "linux".into(),
        architecture: arch.into(),
        epoch: 1_700_000_000,
    }
}

#[test]
fn the_crates_listed_are_those_cargo_tree_shows() {
    // The examples have no dependencies of their own; the engine, with
    // dozens and some only for some targets, is the harder case.
    let kept = tempfile::tempdir().unwrap();
    for package in ["hello", "greeter", "probe", "scratchpack"] {
        for triple in TRIPLES {
            let linked = resolve(kept.path(), package, triple);
            let listed: BTreeSet<String> = linked.crates.keys().cloned().collect();
            assert_eq!(
                listed,
                cargo_tree(package, triple),
                "{package} for {triple}"
            );
            assert!(linked.crates.contains_key(&linked.root));
        }
    }
}

#[test]
fn a_feature_only_tests_enable_adds_no_crate() {
    // The engine's tests enable tar's default features (xattr); the engine
    // itself does not, so its binary links no xattr crate, although cargo
    // metadata's workspace-wide resolve lists one.
    let kept = tempfile::tempdir().unwrap();
    let linked = resolve(kept.path(), "scratchpack", TRIPLES[0]);
    assert!(linked.crates.keys().any(|k| k.starts_with("tar@")));
    assert!(
        !linked.crates.keys().any(|k| k.starts_with("xattr@")),
        "{:?}",
        linked.crates.keys()
    );
    assert!(
        linked.edges[&linked.root]
            .iter()
            .any(|k| k.starts_with("scratchpack-sandbox@"))
    );
}

#[test]
fn spdx_and_cyclonedx_validate_and_are_reproducible() {
    let Some(oracles) = oracles() else { return };
    let work = tempfile::tempdir().unwrap();
    let kept = tempfile::tempdir().unwrap();
    let linked = resolve(kept.path(), "scratchpack", TRIPLES[0]);
    let info = image("scratchpack", "amd64");
    let spdx = sbom::spdx(std::slice::from_ref(&linked), &info);
    let cdx = sbom::cyclonedx(std::slice::from_ref(&linked), &info);
    // A second resolve gives the same bytes.
    let again = resolve(kept.path(), "scratchpack", TRIPLES[0]);
    assert_eq!(sbom::spdx(std::slice::from_ref(&again), &info), spdx);
    assert_eq!(sbom::cyclonedx(std::slice::from_ref(&again), &info), cdx);

    let spdx_path = work.path().join("scratchpack.spdx.json");
    std::fs::write(&spdx_path, &spdx).unwrap();
    let out = run(oracles.venv_tool("pyspdxtools").arg("-i").arg(&spdx_path));
    assert_accepted(&out, "the SPDX document");
    let cdx_path = work.path().join("scratchpack.cdx.json");
    std::fs::write(&cdx_path, &cdx).unwrap();
    assert_accepted(
        &oracles.check(&[&"cyclonedx", &cdx_path]),
        "the CycloneDX BOM",
    );

    // A broken document is caught, so the validators above do check.
    let mut broken: serde_json::Value = serde_json::from_slice(&spdx).unwrap();
    broken["packages"][1]["SPDXID"] = "not an id".into();
    std::fs::write(&spdx_path, broken.to_string()).unwrap();
    let out = oracles
        .venv_tool("pyspdxtools")
        .arg("-i")
        .arg(&spdx_path)
        .output()
        .unwrap();
    assert!(!out.status.success(), "pyspdxtools accepted a bad SPDXID");
}

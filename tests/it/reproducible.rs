//! Reproducibility as a user sees it: two checkouts in different directories,
//! built at different times, give the same digests; so does a rebuild after
//! `cargo clean`; `SOURCE_DATE_EPOCH` changes timestamps and nothing else;
//! the example that compiles C gives the same bytes from another checkout.

use std::collections::BTreeMap;
use std::path::Path;

use crate::support::{self, built_images, run};
use crate::validate;

/// The example crates a checkout holds.
const EXAMPLES: [&str; 4] = ["hello", "greeter", "web", "notes"];

/// The pure-Rust examples: built from clean three times below. `notes`
/// compiles aws-lc, SQLite, zstd and mimalloc for every platform, minutes
/// of C per platform, and has a test of its own.
const PURE_RUST: [&str; 3] = ["hello", "greeter", "web"];

/// A copy of the repository's example workspace (the example crates, their
/// images.toml and lock file) at a fresh path.
fn checkout() -> tempfile::TempDir {
    let root = support::repo_root();
    let dir = tempfile::Builder::new()
        .prefix("scratchpack-checkout-")
        .tempdir()
        .unwrap();
    let cargo_toml = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let members_line = cargo_toml
        .lines()
        .find(|l| l.starts_with("members"))
        .unwrap();
    let cargo_toml = cargo_toml.replace(
        members_line,
        "members = [\"crates/hello\", \"crates/greeter\", \"crates/web\", \"crates/notes\"]",
    );
    std::fs::write(dir.path().join("Cargo.toml"), cargo_toml).unwrap();
    for file in ["Cargo.lock", "images.toml"] {
        std::fs::copy(root.join(file), dir.path().join(file)).unwrap();
    }
    for krate in EXAMPLES {
        copy_tree(
            &root.join("crates").join(krate),
            &dir.path().join("crates").join(krate),
        );
    }
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// Builds the pure-Rust images in `dir` and returns name -> (top digest,
/// per-platform manifest digests, archive digest), checking each layout on
/// the way.
fn build(dir: &Path, epoch: Option<&str>) -> BTreeMap<String, (String, Vec<String>, String)> {
    let mut cmd = support::cli();
    cmd.current_dir(dir)
        .env_remove("CARGO_TARGET_DIR")
        .args(["images", "--message-format", "json"])
        .args(PURE_RUST);
    if let Some(e) = epoch {
        cmd.env("SOURCE_DATE_EPOCH", e);
    }
    let out = run(&mut cmd);
    assert!(out.status.success());
    built_images(&out)
        .into_iter()
        .map(|i| {
            let v = validate::layout(Path::new(i["layout"].as_str().unwrap()));
            assert_eq!(v.top_digest, i["digest"].as_str().unwrap());
            let manifests = v.images.iter().map(|m| m.manifest_digest.clone()).collect();
            let archive = std::fs::read(i["archive"].as_str().unwrap()).unwrap();
            let archive = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&archive));
            (
                i["name"].as_str().unwrap().to_owned(),
                (v.top_digest, manifests, archive),
            )
        })
        .collect()
}

#[test]
fn two_checkouts_a_clean_rebuild_and_the_epoch() {
    let a = checkout();
    let first = build(a.path(), None);
    assert_eq!(first.len(), 3);

    // Another directory, later, with every file newer.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = checkout();
    let second = build(b.path(), None);
    assert_eq!(first, second, "checkouts at different paths differ");
    // The whole output directories, records and all, are byte-identical:
    // either checkout can be published.
    let diff = run(std::process::Command::new("diff")
        .arg("-r")
        .arg(a.path().join("target/images"))
        .arg(b.path().join("target/images")));
    assert!(
        diff.status.success(),
        "output directories differ:\n{}",
        String::from_utf8_lossy(&diff.stdout)
    );

    // That comparison covers the SBOMs and provenance beside each layout;
    // they are there, and about the very manifests both checkouts built.
    for (name, (_, manifests, _)) in &first {
        let dir = a
            .path()
            .join("target/images")
            .join(format!("{name}.release"));
        for platform in ["linux-amd64", "linux-arm64"] {
            for kind in ["spdx", "provenance"] {
                let path = dir.join(format!("{platform}.{kind}.json"));
                let doc: serde_json::Value = serde_json::from_slice(
                    &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
                )
                .unwrap();
                let about = match kind {
                    "spdx" => doc["packages"][0]["versionInfo"]
                        .as_str()
                        .map(str::to_owned),
                    _ => doc["subject"][0]["digest"]["sha256"]
                        .as_str()
                        .map(|h| format!("sha256:{h}")),
                };
                assert!(
                    about.as_ref().is_some_and(|d| manifests.contains(d)),
                    "{} is about {about:?}, not one of {manifests:?}",
                    path.display()
                );
            }
        }
    }

    // After `cargo clean` everything is compiled again.
    let clean = run(std::process::Command::new(env!("CARGO"))
        .arg("clean")
        .current_dir(a.path())
        .env_remove("CARGO_TARGET_DIR"));
    assert!(clean.status.success());
    let rebuilt = build(a.path(), None);
    assert_eq!(first, rebuilt, "a clean rebuild differs");

    // SOURCE_DATE_EPOCH: only `created` and mtimes change.
    let layouts = |dir: &Path| {
        let out = dir.join("target/images");
        PURE_RUST.map(|n| validate::layout(&out.join(n)))
    };
    let before = layouts(a.path());
    let dated = build(a.path(), Some("1700000000"));
    assert_ne!(first, dated);
    let after = layouts(a.path());
    for (x, y) in before.iter().zip(&after) {
        for (ix, iy) in x.images.iter().zip(&y.images) {
            let mut cx = ix.config.clone();
            let cy = &iy.config;
            assert_eq!(cy["created"], "2023-11-14T22:13:20Z");
            for e in validate::tar_entries(&iy.layers[0]) {
                assert_eq!(e.mtime, 1_700_000_000, "{}", e.path);
            }
            let strip = |entries: Vec<validate::TarEntry>| {
                entries
                    .into_iter()
                    .map(|e| validate::TarEntry { mtime: 0, ..e })
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                strip(validate::tar_entries(&ix.layers[0])),
                strip(validate::tar_entries(&iy.layers[0]))
            );
            // Apart from timestamps and the layer digest that follows from
            // them, the configs are equal.
            cx["created"] = cy["created"].clone();
            cx["history"][0]["created"] = cy["history"][0]["created"].clone();
            cx["rootfs"] = cy["rootfs"].clone();
            assert_eq!(&cx, cy);
        }
    }
}

/// `notes` links the C of aws-lc, SQLite, zstd and mimalloc. Built in a
/// checkout at another path, with a target directory of its own, its image
/// is the one the repository's examples build has: the same binary (every C
/// object in it), manifest and release files. One platform, linux/arm64
/// (cross-compiled, its C by zig for aarch64), is built here: all six are
/// what the examples build compiles once, and compiling them all again would
/// add minutes of C per platform to the test command.
#[test]
fn the_c_example_from_another_checkout_is_the_same() {
    let ex = support::examples();
    let theirs = ex.image("notes");
    let their_platform = theirs["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["platform"] == "linux/arm64")
        .expect("the examples build notes for linux/arm64");

    let a = checkout();
    let images = a.path().join("images.toml");
    let toml = std::fs::read_to_string(&images).unwrap();
    assert!(toml.contains("[images.notes]\n"));
    let toml = toml.replace(
        "[images.notes]\n",
        "[images.notes]\nplatforms = [\"linux/arm64\"]\n",
    );
    std::fs::write(&images, toml).unwrap();
    let out = run(support::cli()
        .current_dir(a.path())
        .env_remove("CARGO_TARGET_DIR")
        .args(["images", "notes", "--message-format", "json"]));
    assert!(out.status.success());
    let built = built_images(&out);
    let ours = &built[0]["platforms"][0];
    validate::layout(Path::new(built[0]["layout"].as_str().unwrap()));
    assert_eq!(ours["platform"], "linux/arm64");

    let bytes = |p: &serde_json::Value| std::fs::read(p["binary"].as_str().unwrap()).unwrap();
    let (mine, other) = (bytes(ours), bytes(their_platform));
    assert!(
        mine == other,
        "the notes binaries differ ({} and {} bytes): {} and {}",
        mine.len(),
        other.len(),
        ours["binary"],
        their_platform["binary"]
    );
    for key in ["layer", "config", "manifest"] {
        assert_eq!(ours[key], their_platform[key], "{key}");
    }
    // That platform's SBOM, byte for byte. Its provenance differs by
    // design: the repository's records the git commit it was built from, the
    // checkout (no git) none; it is about the same manifest.
    let release = |root: &Path| root.join("notes.release");
    let mine = release(&a.path().join("target/images"));
    let other = release(&ex.out_dir);
    let spdx = "linux-arm64.spdx.json";
    let diff = run(std::process::Command::new("diff")
        .arg(mine.join(spdx))
        .arg(other.join(spdx)));
    assert!(
        diff.status.success(),
        "{spdx} differs:\n{}",
        String::from_utf8_lossy(&diff.stdout)
    );
    let provenance: serde_json::Value =
        serde_json::from_slice(&std::fs::read(mine.join("linux-arm64.provenance.json")).unwrap())
            .unwrap();
    assert_eq!(
        format!(
            "sha256:{}",
            provenance["subject"][0]["digest"]["sha256"]
                .as_str()
                .unwrap()
        ),
        their_platform["manifest"].as_str().unwrap()
    );
}

//! Manifest errors through the command line: each names the file, line and
//! column, exits with code 2, and leaves the output directory as it was.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::support::{Fixture, HELLO_MAIN};

const GOOD: &str =
    "[images.app]\npackage = \"app\"\ndirs = [{ path = \"/tmp\", mode = \"1777\" }]\n";

/// Every file under `dir` with the hash of its contents.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
                out.insert(rel, "dir".to_owned());
            } else {
                let bytes = std::fs::read(e.path()).unwrap();
                out.insert(rel, format!("{:x}", Sha256::digest(&bytes)));
            }
        }
    }
    out
}

#[test]
fn each_manifest_error_is_reported_with_its_place_and_exit_code_2() {
    let fx = Fixture::new(&[("app", HELLO_MAIN)], GOOD);
    std::fs::write(fx.path().join("motd"), "hi\n").unwrap();
    let ok = fx.cli(&["images"]);
    assert!(ok.status.success(), "the good manifest builds");
    let out_dir = fx.path().join("target/images");
    let before = snapshot(&out_dir);
    assert!(before.contains_key("app/index.json"));

    let base = "[images.app]\npackage = \"app\"\n";
    let cases: Vec<(String, &str, &str)> = vec![
        (
            format!("{base}[images.app]\npackage = \"app\"\n"),
            "3:",
            "duplicate",
        ),
        ("[images.app]\npackage = \"ap\"\n".into(), "2:11", "`ap`"),
        (format!("{base}bin = \"nope\"\n"), "3:7", "no binary `nope`"),
        (
            format!("{base}platforms = [\"linux/mips\"]\n"),
            "3:14",
            "unsupported platform",
        ),
        (
            format!("{base}files = [{{ src = \"motd\", dst = \"etc/motd\" }}]\n"),
            "3:",
            "relative",
        ),
        (
            format!("{base}files = [{{ src = \"motd\", dst = \"/etc/../../motd\" }}]\n"),
            "3:",
            "`..`",
        ),
        (
            format!("{base}files = [{{ src = \"motd\", dst = \"/app\" }}]\n"),
            "3:",
            "collides with the binary",
        ),
        (
            format!("{base}files = [{{ src = \"nope.txt\", dst = \"/motd\" }}]\n"),
            "3:18",
            "cannot be read",
        ),
        (format!("{base}user = \"root\"\n"), "3:8", "invalid user"),
        (
            format!("{base}ports = [\"80/xyz\"]\n"),
            "3:10",
            "invalid port",
        ),
        (
            format!("{base}files = [{{ src = \"motd\", dst = \"/motd\", mode = \"888\" }}]\n"),
            "3:",
            "invalid mode",
        ),
        (
            format!("{base}colour = \"blue\"\n"),
            "3:1",
            "unknown field `colour`",
        ),
    ];
    for (manifest, place, message) in cases {
        std::fs::write(fx.path().join("images.toml"), &manifest).unwrap();
        let out = fx.cli(&["images"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{manifest}\n{stderr}");
        assert!(
            stderr.contains(&format!("images.toml:{place}")),
            "expected images.toml:{place} in:\n{stderr}"
        );
        assert!(
            stderr.contains(message),
            "expected {message:?} in:\n{stderr}"
        );
        assert!(
            stderr.contains('^'),
            "the offending text is underlined:\n{stderr}"
        );
        assert_eq!(
            snapshot(&out_dir),
            before,
            "the output changed for:\n{manifest}"
        );
    }
}

#[test]
fn usage_errors_exit_2_and_help_works() {
    let fx = Fixture::new(&[("app", HELLO_MAIN)], GOOD);
    let out = fx.cli(&["images", "nosuchimage"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no image named `nosuchimage`"));
    let out = fx.cli(&["images", "--frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    for args in [&["--help"][..], &["images", "--help"]] {
        let out = fx.cli(args);
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"));
    }
}

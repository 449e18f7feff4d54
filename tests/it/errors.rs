//! Errors through the command line. Manifest errors each name the file,
//! line and column, exit with code 2, and leave the output directory as it
//! was; a failed build says what scratchpack saw of its cause.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::support::{Fixture, HELLO_MAIN};

const GOOD: &str = "[images.app]\npackage = \"app\"\n";

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

/// The bad-manifest corpus, shared with the parser's unit tests.
fn corpus() -> Vec<(String, String)> {
    let dir = crate::support::repo_root().join("tests/fixtures/bad-manifests");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// `(line:column, words)` for each `# L:C words` line of a corpus file.
fn expectations(text: &str) -> Vec<(String, String)> {
    text.lines()
        .take_while(|l| l.starts_with('#'))
        .filter_map(|l| {
            let (place, words) = l.strip_prefix("# ")?.split_once(' ')?;
            let (line, col) = place.split_once(':')?;
            (line.parse::<u32>().is_ok() && col.parse::<u32>().is_ok())
                .then(|| (place.to_owned(), words.to_owned()))
        })
        .collect()
}

/// A workspace like the one the corpus is written against: a `hello` binary
/// with a `loud` feature, a `dist` profile, a file to ship, and symlinks that
/// lead out of the workspace.
fn corpus_fixture() -> Fixture {
    let fx = Fixture::new(
        &[("hello", HELLO_MAIN)],
        "[images.hello]\npackage = \"hello\"\n",
    );
    let root = fx.path();
    let append = |path: &str, text: &str| {
        let mut s = std::fs::read_to_string(root.join(path)).unwrap();
        s.push_str(text);
        std::fs::write(root.join(path), s).unwrap();
    };
    append("crates/hello/Cargo.toml", "\n[features]\nloud = []\n");
    append("Cargo.toml", "\n[profile.dist]\ninherits = \"release\"\n");
    std::fs::create_dir_all(root.join("assets")).unwrap();
    std::fs::write(root.join("assets/app.toml"), "x = 1\n").unwrap();
    std::fs::create_dir_all(root.join("deploy")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("deploy/link")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("outside-dir")).unwrap();
    std::os::unix::fs::symlink("nowhere", root.join("deploy/dangling")).unwrap();
    std::os::unix::fs::symlink("../assets", root.join("deploy/to-dir")).unwrap();
    fx
}

/// Runs one corpus manifest and checks exit code 2, every place and wording,
/// and the underline.
fn assert_refused(fx: &Fixture, name: &str, text: &str) {
    std::fs::write(fx.path().join("images.toml"), text).unwrap();
    let out = fx.cli(&["images"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{name}\n{stderr}");
    let want = expectations(text);
    assert!(!want.is_empty(), "{name} expects nothing");
    assert_eq!(
        stderr.matches("\nerror: ").count() + usize::from(stderr.starts_with("error: ")),
        want.len(),
        "{name}: one error per problem:\n{stderr}"
    );
    for (place, words) in &want {
        assert!(
            stderr.contains(&format!("images.toml:{place}")),
            "{name}: expected images.toml:{place} in:\n{stderr}"
        );
        assert!(
            stderr.contains(words.as_str()),
            "{name}: expected {words:?} in:\n{stderr}"
        );
    }
    assert!(
        stderr.contains('^'),
        "{name}: the offending text is underlined:\n{stderr}"
    );
}

#[test]
fn the_corpus_marked_for_the_command_line_exits_2_and_leaves_the_output_as_it_was() {
    let fx = corpus_fixture();
    let ok = fx.cli(&["images"]);
    assert!(ok.status.success(), "the good manifest builds");
    let out_dir = fx.path().join("target/images");
    let before = snapshot(&out_dir);
    assert!(before.contains_key("hello/index.json"));

    let sample: Vec<_> = corpus()
        .into_iter()
        .filter(|(_, text)| text.lines().any(|l| l == "# cli"))
        .collect();
    assert!(sample.len() >= 50, "{} command-line cases", sample.len());
    for (name, text) in sample {
        assert_refused(&fx, &name, &text);
        assert_eq!(snapshot(&out_dir), before, "the output changed for {name}");
    }
}

/// Problems cargo, rustup or the ELF check used to find after other images
/// had compiled are manifest errors now: nothing is compiled at all.
#[test]
fn profile_feature_triple_symlink_and_empty_tags_are_refused_before_anything_compiles() {
    let fx = corpus_fixture();
    let corpus = corpus();
    for wanted in [
        "value-profile-fast-does-not-exist",
        "value-package-hello-has-no-feature-nope",
        "value-rustc-knows-no-target",
        "value-target-aarch64-unknown-linux-musl-builds-for",
        "escape-src-deploy-link-leaves-the-workspace",
        "escape-src-outside-dir-passwd-leaves-the-workspace",
        "value-tags-is-empty",
    ] {
        let (name, text) = corpus
            .iter()
            .find(|(name, _)| name.contains(wanted))
            .unwrap_or_else(|| panic!("no corpus file for {wanted}"));
        // A second, valid image that would compile first if checks came late.
        let text = format!("{text}\n[images.second]\npackage = \"hello\"\n");
        assert_refused(&fx, name, &text);
        assert!(
            !fx.path().join("target").exists(),
            "{name}: something was compiled"
        );
    }
}

#[test]
fn a_file_that_is_not_utf8_points_at_the_first_bad_byte() {
    let fx = corpus_fixture();
    let mut bytes = b"[images.hello]\npackage = \"hello\"\nuser = \"caf".to_vec();
    bytes.extend([0xe9, b'"', b'\n']);
    std::fs::write(fx.path().join("images.toml"), bytes).unwrap();
    let out = fx.cli(&["images"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("images.toml:3:12"), "{stderr}");
    assert!(stderr.contains("not UTF-8: byte 0xe9"), "{stderr}");
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

/// A build on a nearly full disk fails with a word on the space left: a
/// compiler that cannot write does not always say so (zig aborts), so the
/// build's own messages may not name the cause. A build that fails for
/// another reason, with room to spare, gets no such word.
#[test]
fn a_build_on_a_full_disk_says_how_much_space_is_left() {
    let Some(unshare) = crate::support::require_tool("unshare", "util-linux") else {
        return;
    };
    let fx = Fixture::new(&[("app", HELLO_MAIN)], GOOD);
    // A 100 KiB filesystem for the target directory, in a mount namespace
    // of this test's own: the link of the binary cannot fit.
    let target = fx.path().join("small-target");
    std::fs::create_dir(&target).unwrap();
    let out = crate::support::run(
        std::process::Command::new(unshare)
            .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
            .arg(r#"mount -t tmpfs -o size=100k tmpfs "$1" && shift && exec "$@""#)
            .arg("sh")
            .arg(&target)
            .arg(crate::support::cli().get_program())
            .arg("images")
            .env("NO_COLOR", "1")
            .env_remove("SOURCE_DATE_EPOCH")
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(fx.path()),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    let hint = format!("help: the filesystem of {} has ", target.display());
    assert!(stderr.contains(&hint), "no hint on space in:\n{stderr}");
    assert!(stderr.contains("free some space and run again"), "{stderr}");

    // The same crate failing to compile, on a disk with room.
    std::fs::write(
        fx.path().join("crates/app/src/main.rs"),
        "fn main() { let x: u8 = \"not a number\"; }\n",
    )
    .unwrap();
    let out = fx.cli(&["images"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("mismatched types"), "{stderr}");
    assert!(!stderr.contains("help: the filesystem"), "{stderr}");
}

//! The output directory under failure and concurrency: a failed run leaves
//! the last good output as it was, and runs at the same time do not corrupt
//! each other's results.

use std::path::Path;

use crate::support::{self, Fixture, HELLO_MAIN, built_images};
use crate::validate;

const MANIFEST: &str = "[images.app]\npackage = \"app\"\ntags = [\"v1\", \"latest\"]\n";

fn index_json(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("target/images/app/index.json")).unwrap()
}

#[test]
fn a_failed_compile_keeps_the_last_good_output() {
    let fx = Fixture::new(&[("app", HELLO_MAIN)], MANIFEST);
    assert!(fx.cli(&["images"]).status.success());
    let before = index_json(fx.path());
    let archive_before = std::fs::read(fx.path().join("target/images/app.tar")).unwrap();

    std::fs::write(
        fx.path().join("crates/app/src/main.rs"),
        "fn main() { this does not compile }\n",
    )
    .unwrap();
    let out = fx.cli(&["images"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error"),
        "cargo's diagnostics reach the user:\n{stderr}"
    );
    assert!(stderr.contains("cargo build"), "{stderr}");

    assert_eq!(index_json(fx.path()), before);
    assert_eq!(
        std::fs::read(fx.path().join("target/images/app.tar")).unwrap(),
        archive_before
    );
    validate::layout(&fx.path().join("target/images/app"));
}

#[test]
fn concurrent_runs_leave_valid_outputs() {
    let fx = Fixture::new(&[("app", HELLO_MAIN)], MANIFEST);
    // Compile once so the runs race on packing and writing, not on cargo's lock.
    assert!(fx.cli(&["images"]).status.success());
    let expected = index_json(fx.path());
    // Different epochs give different images, so the last writer is visible.
    let runs: Vec<_> = ["0", "1700000000", "0", "1700000000"]
        .into_iter()
        .map(|epoch| {
            support::cli()
                .current_dir(fx.path())
                .env_remove("CARGO_TARGET_DIR")
                .env("SOURCE_DATE_EPOCH", epoch)
                .args(["images", "-q", "--message-format", "json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in runs {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(built_images(&out).len(), 1);
    }
    let layout = fx.path().join("target/images/app");
    validate::layout(&layout);
    // The archive and layout agree with each other whoever wrote last.
    let tmp = tempfile::tempdir().unwrap();
    let mut archive =
        tar::Archive::new(std::fs::File::open(fx.path().join("target/images/app.tar")).unwrap());
    archive.unpack(tmp.path()).unwrap();
    validate::layout(tmp.path());
    // Nothing temporary is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(fx.path().join("target/images/.scratchpack/tmp"))
        .unwrap()
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // A final run at epoch 0 comes back to the first result.
    assert!(fx.cli(&["images"]).status.success());
    assert_eq!(index_json(fx.path()), expected);
}

//! `--platform`: a build, a test run, a `run` and a `load` compile and pack
//! only the platforms they need, and say so when an image has none of them.

use std::process::Output;

use crate::support::{Fixture, built_images};
use crate::validate;

/// Prints its architecture, as each platform's binary sees it.
const ARCH_MAIN: &str = "fn main() { println!(\"arch: {}\", std::env::consts::ARCH); }\n";

const IMAGES: &str = "[defaults]\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n\n\
    [images.app]\npackage = \"app\"\n\n\
    [images.app.tests.runs]\nstdout = { regex = \"^arch: (x86_64|aarch64)\\n$\" }\n\n\
    [images.only]\npackage = \"app\"\nplatforms = [\"linux/amd64\"]\n";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The platforms of the layout `images` last wrote for `name`.
fn layout_platforms(fx: &Fixture, name: &str) -> Vec<String> {
    validate::layout(&fx.path().join("target/images").join(name))
        .images
        .iter()
        .map(|i| i.platform.clone())
        .collect()
}

/// Whether `app` was compiled for `triple` in the fixture's target dir.
fn compiled_for(fx: &Fixture, triple: &str) -> bool {
    scratchpack::compile::build_dir(&fx.path().join("target"))
        .join(triple)
        .join("release/app")
        .exists()
}

fn built_platforms(out: &Output) -> Vec<String> {
    built_images(out)[0]["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["platform"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn platform_builds_tests_and_runs_only_what_it_names() {
    let fx = Fixture::new(&[("app", ARCH_MAIN)], IMAGES);

    // One platform: compiled for its triple alone, an index of that image.
    let out = fx.cli(&[
        "images",
        "app",
        "--platform",
        "linux/arm64",
        "--message-format",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(built_platforms(&out), ["linux/arm64"]);
    assert_eq!(layout_platforms(&fx, "app"), ["linux/arm64"]);
    assert!(compiled_for(&fx, "aarch64-unknown-linux-musl"));
    assert!(!compiled_for(&fx, "x86_64-unknown-linux-musl"));

    // An image without the platform is named with what it has, before
    // anything is built or written.
    let out = fx.cli(&["images", "--platform", "linux/arm64"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(
            "image `only` is not built for linux/arm64 (images.toml gives it linux/amd64)"
        ),
        "{}",
        text(&out.stderr)
    );
    assert!(!fx.path().join("target/images/only").exists());
    assert_eq!(layout_platforms(&fx, "app"), ["linux/arm64"]);

    // A platform scratchpack does not build is refused with the list.
    let out = fx.cli(&["images", "--platform", "linux/s390x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("`linux/s390x` is not a supported platform; platforms: "),
        "{}",
        text(&out.stderr)
    );

    // A push sends whole images.
    let out = fx.cli(&["images", "app", "--push", "--platform", "linux/amd64"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--platform does not apply with --push"),
        "{}",
        text(&out.stderr)
    );

    // Comma-separated, in images.toml's order whatever the flag's.
    let out = fx.cli(&[
        "images",
        "app",
        "--platform",
        "linux/arm64,linux/amd64",
        "--message-format",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(built_platforms(&out), ["linux/amd64", "linux/arm64"]);

    // test-images tests only the platforms named.
    let out = fx.cli(&["test-images", "app", "--platform", "linux/amd64"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("test app/runs [linux/amd64] ... ok"),
        "{stdout}"
    );
    assert!(!stdout.contains("linux/arm64"), "{stdout}");
    assert_eq!(layout_platforms(&fx, "app"), ["linux/amd64"]);

    // `run` builds the platform it runs: the host's.
    let out = fx.cli(&["run", "app"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "arch: x86_64\n");
    assert_eq!(layout_platforms(&fx, "app"), ["linux/amd64"]);
    let out = fx.cli(&["run", "only", "--platform", "linux/arm64"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("image `only` has no platform linux/arm64; it has linux/amd64"),
        "{}",
        text(&out.stderr)
    );

    // Without the flag, every platform again.
    let out = fx.cli(&["images", "app", "--message-format", "json"]);
    assert!(out.status.success());
    assert_eq!(built_platforms(&out), ["linux/amd64", "linux/arm64"]);
}

//! `volumes`: the directories a program writes to. The image's config names
//! them (skopeo reads them back) and its layer holds each as a directory;
//! `test-images` and `run` give each an empty writable tmpfs, as a runtime
//! gives each an anonymous volume, while the rest of the root stays
//! read-only.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::{Fixture, cli, nested_target_dir, require_tool, run};
use crate::test_images::fixture_with;

const IMAGES: &str = r#"
[defaults]
platforms = ["linux/amd64"]

[images.writer]
package = "isoprobe"
volumes = ["/data", "/var/cache/app"]
# Listing a volume in `dirs` too is allowed, with its mode (1777) only.
dirs = [{ path = "/var/cache/app", mode = "1777" }]

[images.writer.tests.writes-its-volume]
args = ["write", "/data/note"]
stdout = { contains = ['"path":"/data/note","ok":true'] }

[images.writer.tests.writes-its-other-volume-as-another-user]
args = ["write", "/var/cache/app/entry"]
user = "1000:1000"
stdout = { contains = ['"ok":true'] }

[images.writer.tests.writes-nothing-else]
args = ["write", "/etc-note"]
exit-code = 1
stdout = { contains = ['"ok":false', "Read-only file system"] }

[images.writer.tests.structure]
files = [{ path = "/data", type = "dir", mode = "1777" }]
config = { volumes = ["/data", "/var/cache/app"] }

[images.plain]
package = "isoprobe"
# The same directory, as a plain directory: read-only like the rest.
dirs = [{ path = "/data", mode = "1777" }]

[images.plain.tests.structure]
config = { volumes = [] }

[images.plain.tests.has-no-volume]
args = ["write", "/data/note"]
exit-code = 1
stdout = { contains = ["Read-only file system"] }
"#;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `cargo xtask COMMAND --out OUT REST…` in the fixture.
fn xtask(fx: &Fixture, command: &str, rest: &[&str]) -> Output {
    run(cli()
        .current_dir(fx.path())
        .env("CARGO_TARGET_DIR", nested_target_dir())
        .args([command, "--out"])
        .arg(fx.path().join("out"))
        .args(rest))
}

/// The image config of the layout at `layout`, as skopeo reads it.
fn config(skopeo: &Path, layout: &Path) -> serde_json::Value {
    let out = run(Command::new(skopeo)
        .args(["inspect", "--config"])
        .arg(format!("oci:{}", layout.display())));
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `ls -l`-style lines of the layer's tar listing, from GNU tar.
fn layer_listing(layout: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let blob = |digest: &str| layout.join("blobs/sha256").join(&digest["sha256:".len()..]);
    let digest = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(&digest)).unwrap()).unwrap();
    // An index of one platform, or the manifest itself.
    if let Some(first) = doc["manifests"].get(0) {
        let digest = first["digest"].as_str().unwrap().to_owned();
        doc = serde_json::from_slice(&std::fs::read(blob(&digest)).unwrap()).unwrap();
    }
    let layer = doc["layers"][0]["digest"].as_str().unwrap();
    let out = run(Command::new("tar")
        .arg("-tvzf")
        .arg(blob(layer))
        .arg("--numeric-owner"));
    assert!(out.status.success());
    text(&out.stdout)
}

#[test]
fn volumes_are_in_the_config_and_the_layer_and_writable_in_tests_and_run() {
    let fx = fixture_with(IMAGES);
    let out = xtask(&fx, "test-images", &["--no-cache"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for test in [
        "writer/writes-its-volume",
        "writer/writes-its-other-volume-as-another-user",
        "writer/writes-nothing-else",
        "writer/structure",
        "plain/has-no-volume",
        "plain/structure",
    ] {
        assert!(
            stdout.contains(&format!("test {test} [linux/amd64] ... ok")),
            "{test} did not pass:\n{stdout}"
        );
    }

    let layout = fx.path().join("out/writer");
    if let Some(skopeo) = require_tool("skopeo", "skopeo") {
        let writer = config(&skopeo, &layout);
        assert_eq!(
            writer["config"]["Volumes"],
            serde_json::json!({ "/data": {}, "/var/cache/app": {} }),
            "{writer:#}"
        );
        // An image without volumes has no `Volumes` in its config.
        let plain = config(&skopeo, &fx.path().join("out/plain"));
        assert!(plain["config"].get("Volumes").is_none(), "{plain:#}");
    }
    // Each volume is a directory of the layer, of mode 1777.
    let listing = layer_listing(&layout);
    let line = |path: &str| {
        listing
            .lines()
            .find(|l| l.trim_end().ends_with(&format!(" {path}/")))
            .unwrap_or_else(|| panic!("no {path}/ in the layer:\n{listing}"))
            .to_owned()
    };
    assert!(line("data").starts_with("drwxrwxrwt"), "{listing}");
    assert!(line("var/cache/app").starts_with("drwxrwxrwt"), "{listing}");

    // `run` gives the same volumes; the root stays read-only.
    let out = xtask(&fx, "run", &["writer", "--", "write", "/data/from-run"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(r#""ok":true"#),
        "{}",
        text(&out.stdout)
    );
    let out = xtask(&fx, "run", &["writer", "--", "write", "/from-run"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("Read-only file system"));
}

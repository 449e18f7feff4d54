//! `test-images` end to end: the repository's examples pass on every
//! platform (the foreign ones under qemu) and are cached the second time; a fixture
//! with a wrong expectation fails with a diff; the probe, unpacked from its
//! image and run by the runner, finds itself isolated.

use std::path::Path;
use std::process::Output;
use std::time::Instant;

use crate::support::{
    self, EXAMPLE_PLATFORMS, Fixture, cli, nested_target_dir, repo_root, require_tool, run,
};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The closing lines, `N cached (…)` then `N passed, N failed, N skipped`,
/// as (passed and run, failed, cached).
fn summary(out: &Output) -> (usize, usize, usize) {
    let (run, failed, cached, skipped) = summary_with_skipped(out);
    assert_eq!(skipped, 0, "{}", stdout(out));
    (run, failed, cached)
}

/// As [`summary`], with the skipped count as well.
fn summary_with_skipped(out: &Output) -> (usize, usize, usize, usize) {
    let text = stdout(out);
    let mut lines = text.lines().rev().filter(|l| !l.trim().is_empty());
    let last = lines.next().expect("test-images printed nothing");
    let cached_line = lines
        .next()
        .expect("a cached count before the closing line");
    let number = |s: &str| -> usize {
        s.split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a count: {s}"))
    };
    let parts: Vec<&str> = last.split(", ").collect();
    assert!(
        parts.len() == 3
            && parts[0].ends_with(" passed")
            && parts[1].ends_with(" failed")
            && parts[2].ends_with(" skipped"),
        "not a summary line: {last}"
    );
    assert!(cached_line.contains(" cached "), "{cached_line}");
    let cached = number(cached_line);
    (
        number(parts[0]) - cached,
        number(parts[1]),
        cached,
        number(parts[2]),
    )
}

/// The tests images.toml declares: `image/test` for each
/// `[images.<image>.tests.<test>]` table.
fn declared_tests() -> Vec<String> {
    let toml = std::fs::read_to_string(repo_root().join("images.toml")).unwrap();
    toml.lines()
        .filter_map(|l| l.trim().strip_prefix("[images.")?.strip_suffix(']'))
        .filter_map(|t| {
            let (image, test) = t.split_once(".tests.")?;
            Some(format!("{image}/{test}"))
        })
        .collect()
}

fn test_images_in_repo(out_dir: &Path, extra: &[&str]) -> Output {
    run(cli()
        .current_dir(repo_root())
        .env("CARGO_TARGET_DIR", nested_target_dir())
        .arg("test-images")
        .arg("--out")
        .arg(out_dir)
        .args(extra))
}

#[test]
fn the_examples_pass_on_every_platform_then_come_from_the_cache() {
    for qemu in ["aarch64", "arm", "i386", "riscv64", "ppc64le"] {
        if require_tool(&format!("qemu-{qemu}-static"), "qemu-user-static").is_none() {
            return;
        }
    }
    std::fs::create_dir_all(nested_target_dir()).unwrap();
    let out_dir = tempfile::tempdir_in(nested_target_dir()).unwrap();
    let junit = out_dir.path().join("reports/junit.xml");
    let declared = declared_tests();
    assert!(
        declared.len() >= 4,
        "images.toml declares too few tests: {declared:?}"
    );
    let expected = declared.len() * EXAMPLE_PLATFORMS.len();

    let first = test_images_in_repo(
        out_dir.path(),
        &[
            "--require-all-platforms",
            "--junit",
            junit.to_str().unwrap(),
        ],
    );
    assert!(first.status.success(), "test-images failed on the examples");
    let text = stdout(&first);
    for test in &declared {
        for platform in EXAMPLE_PLATFORMS {
            let line = format!("test {test} [{platform}] ... ok");
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
    }
    assert_eq!(summary(&first), (expected, 0, 0), "{text}");

    // The JUnit report, read by an XML parser nobody here wrote.
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}:\n{xml}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    assert_eq!(root.attribute("tests"), Some(expected.to_string().as_str()));
    assert_eq!(root.attribute("failures"), Some("0"));
    let suites: Vec<_> = root
        .children()
        .filter(|n| n.has_tag_name("testsuite"))
        .collect();
    let images_with_tests: std::collections::BTreeSet<&str> = declared
        .iter()
        .filter_map(|t| t.split_once('/').map(|(image, _)| image))
        .collect();
    assert_eq!(
        suites.len(),
        images_with_tests.len() * EXAMPLE_PLATFORMS.len(),
        "one suite per image and platform"
    );
    // A service test keeps what the service printed, passed or not.
    let serves = suites
        .iter()
        .filter(|n| n.attribute("name") == Some("web [linux/amd64]"))
        .flat_map(|n| n.children())
        .find(|n| n.attribute("name") == Some("serves"))
        .expect("the web example's service test");
    let out = serves
        .children()
        .find(|n| n.has_tag_name("system-out"))
        .and_then(|n| n.text())
        .unwrap_or_default();
    assert!(out.contains("web: listening on port 8080"), "{xml}");
    let cases = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .count();
    assert_eq!(cases, expected);
    assert_eq!(
        doc.descendants()
            .filter(|n| n.has_tag_name("failure"))
            .count(),
        0
    );

    // Nothing changed: every test is cached.
    let second = test_images_in_repo(out_dir.path(), &[]);
    assert!(second.status.success());
    let text = stdout(&second);
    assert_eq!(summary(&second), (0, 0, expected), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.ends_with(" ... cached")).count(),
        expected
    );

    // --no-cache runs one image's tests again.
    let third = test_images_in_repo(out_dir.path(), &["--no-cache", "hello"]);
    assert!(third.status.success());
    let hello = declared.iter().filter(|t| t.starts_with("hello/")).count();
    assert_eq!(
        summary(&third),
        (hello * EXAMPLE_PLATFORMS.len(), 0, 0),
        "{}",
        stdout(&third)
    );
}

/// A `main.rs` that greets; the fixture's image test expects other words.
const FX_MAIN: &str =
    "fn main() {\n    println!(\"hello from a fixture\");\n    println!(\"second line\");\n}\n";

const FIXTURE_IMAGES: &str = r#"
[defaults]
platforms = ["linux/amd64"]

[images.fx]
package = "fx"

[images.fx.tests.right]
stdout = { contains = ["hello from a fixture"] }

[images.fx.tests.wrong]
stdout = { equals = "hello from a mixture\nsecond line\n" }

[images.iso]
package = "isoprobe"
user = "4242:4243"

[images.iso.tests.isolated]
args = ["report"]
stdout = { contains = [
    '"uid":4242,',
    '"gid":4243,',
    '"ppid":1,',
    '"pids":[1,2]',
    '"interfaces":["lo"]',
    '"visible_host_paths":[]',
    '"cap_eff":"0000000000000000"',
    '"no_new_privs":"1"',
    '"cwd":"/"',
], regex = '"root_write_error":"[^"]+"' }

[images.iso.tests.structure]
files = [{ path = "/isoprobe", mode = "0755", type = "file" }]
absent = ["/etc/passwd", "/bin/sh"]
config = { user = "4242:4243", entrypoint = ["/isoprobe"] }

[images.iso.tests.fake-ok]
args = ["fake-ok"]
"#;

/// A fixture workspace with a greeter and the probe, whose images carry one
/// wrong expectation and an isolation check.
fn fixture() -> Fixture {
    fixture_with(FIXTURE_IMAGES)
}

/// A fixture workspace with a greeter and the probe, and `images` as its
/// images.toml.
pub(crate) fn fixture_with(images: &str) -> Fixture {
    let probe = std::fs::read_to_string(repo_root().join("crates/probe/src/main.rs")).unwrap();
    let fx = Fixture::new(&[("fx", FX_MAIN), ("isoprobe", &probe)], images);
    // The probe needs libc; the repository's lock file pins the version the
    // rest of the tests already fetched.
    let manifest = fx.path().join("crates/isoprobe/Cargo.toml");
    let mut toml = std::fs::read_to_string(&manifest).unwrap();
    toml.push_str("\n[dependencies]\nlibc = \"0.2\"\n");
    std::fs::write(&manifest, toml).unwrap();
    std::fs::copy(repo_root().join("Cargo.lock"), fx.path().join("Cargo.lock")).unwrap();
    fx
}

fn test_images_in(fx: &Fixture) -> Output {
    run(cli()
        .current_dir(fx.path())
        .env("CARGO_TARGET_DIR", nested_target_dir())
        .args(["test-images", "--out"])
        .arg(fx.path().join("out")))
}

#[test]
fn a_wrong_expectation_fails_with_a_diff_and_the_probe_finds_itself_isolated() {
    let fx = fixture();
    let first = test_images_in(&fx);
    let text = stdout(&first);
    assert_eq!(first.status.code(), Some(1), "{text}");
    for line in [
        "test fx/right [linux/amd64] ... ok",
        "test fx/wrong [linux/amd64] ... FAILED",
        "test iso/isolated [linux/amd64] ... ok",
        "test iso/structure [linux/amd64] ... ok",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
    // The failure shows the command, and the expected and actual lines as a
    // diff, and what the program printed.
    let details = text
        .split("---- fx/wrong [linux/amd64] ----")
        .nth(1)
        .expect(&text);
    assert!(
        details.contains("command: /fx (as 65532:65532 in /)"),
        "{details}"
    );
    assert!(
        details.contains("stdout differs (- expected, + actual)"),
        "{details}"
    );
    assert!(details.contains("    -hello from a mixture"), "{details}");
    assert!(details.contains("    +hello from a fixture"), "{details}");
    assert!(details.contains("     second line"), "{details}");
    assert!(
        details.contains("--- stdout\nhello from a fixture\n"),
        "{details}"
    );
    // A failing program's output cannot rewrite the runner's lines: its
    // carriage returns and escape sequences arrive escaped.
    assert!(
        text.lines()
            .any(|l| l == "test iso/fake-ok [linux/amd64] ... FAILED"),
        "{text}"
    );
    assert!(!text.contains('\r') && !text.contains('\u{1b}'), "{text:?}");
    let faked = text
        .split("---- iso/fake-ok [linux/amd64] ----")
        .nth(1)
        .expect(&text);
    assert!(faked.contains("\\r\\u{1b}[2Ktest faked ... ok"), "{faked}");
    assert!(!text.lines().any(|l| l.starts_with("test faked")), "{text}");
    assert_eq!(summary(&first), (3, 2, 0), "{text}");
    assert!(String::from_utf8_lossy(&first.stderr).contains("2 image tests failed"));

    // Passes are cached, failures never are.
    let second = test_images_in(&fx);
    assert_eq!(second.status.code(), Some(1));
    let text = stdout(&second);
    assert!(
        text.contains("test fx/wrong [linux/amd64] ... FAILED"),
        "{text}"
    );
    assert_eq!(summary(&second), (0, 2, 3), "{text}");

    // Fixing the expectation changes the test's key: it runs, and passes.
    let images = fx.path().join("images.toml");
    let fixed = FIXTURE_IMAGES
        .split("[images.iso.tests.fake-ok]")
        .next()
        .unwrap()
        .replace("from a mixture", "from a fixture");
    std::fs::write(&images, fixed).unwrap();
    let third = test_images_in(&fx);
    assert!(third.status.success(), "{}", stdout(&third));
    assert_eq!(summary(&third), (1, 0, 3), "{}", stdout(&third));
}

#[test]
fn an_unknown_image_name_is_a_usage_error() {
    let out = run(cli()
        .current_dir(repo_root())
        .env("CARGO_TARGET_DIR", nested_target_dir())
        .args(["test-images", "no-such-image", "--out"])
        .arg(support::nested_target_dir().join("unused-out")));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no image named `no-such-image`"));
}

const TWO_PLATFORMS: &str = r#"
[defaults]
platforms = ["linux/amd64", "linux/arm64"]

[images.fx]
package = "fx"

[images.fx.tests.right]
stdout = { contains = ["hello from a fixture"] }

[images.fx.tests.shape]
files = [{ path = "/fx", type = "file" }]
"#;

#[test]
fn a_platform_without_an_emulator_is_skipped_and_named() {
    let fx = Fixture::new(&[("fx", FX_MAIN)], TWO_PLATFORMS);
    let no_emulators = tempfile::tempdir().unwrap();
    let run_with = |extra: &[&str]| {
        run(cli()
            .current_dir(fx.path())
            .env("CARGO_TARGET_DIR", nested_target_dir())
            .env("SCRATCHPACK_EMULATOR_DIR", no_emulators.path())
            .args(["test-images", "--no-cache", "--out"])
            .arg(fx.path().join("out"))
            .args(extra))
    };
    let out = run_with(&[]);
    let text = stdout(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}\n{stderr}");
    for line in [
        "test fx/right [linux/amd64] ... ok",
        "test fx/shape [linux/amd64] ... ok",
        "test fx/right [linux/arm64] ... skipped",
        // A structure test needs no emulator: it still runs.
        "test fx/shape [linux/arm64] ... ok",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
    assert!(text.contains("qemu-user-static"), "{text}");
    assert!(
        stderr.contains("1 image test was skipped") && stderr.contains("qemu-aarch64-static"),
        "{stderr}"
    );
    assert_eq!(summary_with_skipped(&out), (3, 0, 0, 1), "{text}");

    let strict = run_with(&["--require-all-platforms"]);
    assert_eq!(strict.status.code(), Some(1), "{}", stdout(&strict));
    assert!(
        String::from_utf8_lossy(&strict.stderr).contains("--require-all-platforms"),
        "{}",
        String::from_utf8_lossy(&strict.stderr)
    );

    // The same, asked for by images.toml.
    let strict_toml = TWO_PLATFORMS.replace(
        "[images.fx]\n",
        "[images.fx]\nrequire-all-platforms = true\n",
    );
    std::fs::write(fx.path().join("images.toml"), strict_toml).unwrap();
    let strict = run_with(&[]);
    let stderr = String::from_utf8_lossy(&strict.stderr);
    assert_eq!(strict.status.code(), Some(1), "{}", stdout(&strict));
    assert!(
        stderr.contains("`require-all-platforms`") && stderr.contains("fx/right [linux/arm64]"),
        "{stderr}"
    );
}

#[test]
fn images_toml_sets_the_filter_and_the_unpack_limits() {
    let fx = fixture_with(
        r#"
[defaults]
platforms = ["linux/amd64"]

[images.iso]
package = "isoprobe"

[images.iso.tests.filtered]
args = ["hostile", "unshare-user"]
stdout = { contains = ['"unshare-user":1}'] }

[images.iso.tests.unfiltered]
args = ["hostile", "unshare-user"]
seccomp = false
stdout = { contains = ['"unshare-user":0}'] }

[images.fx]
package = "fx"
unpack-limits = { max-bytes = 4096 }

[images.fx.tests.right]
stdout = { contains = ["hello from a fixture"] }
"#,
    );
    let out = test_images_in(&fx);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for line in [
        "test iso/filtered [linux/amd64] ... ok",
        "test iso/unfiltered [linux/amd64] ... ok",
        "test fx/right [linux/amd64] ... FAILED",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
    assert!(text.contains("max-bytes"), "{text}");
}

/// Host processes whose command line contains `tag`.
fn processes_tagged(tag: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline"))
            && String::from_utf8_lossy(&cmdline).contains(tag)
        {
            found.push(name);
        }
    }
    found
}

#[test]
fn an_interrupted_run_stops_its_sandboxes_and_removes_what_it_unpacked() {
    let tag = format!("--tag=interrupted-{}", std::process::id());
    let images = format!(
        r#"
[defaults]
platforms = ["linux/amd64"]

[images.iso]
package = "isoprobe"

[images.iso.tests.hangs]
args = ["ignore-term", "{tag}"]
# Only the interruption can end it in time for the test to finish.
timeout = 3600
"#
    );
    let fx = fixture_with(&images);
    let tmp = tempfile::tempdir().unwrap();
    for signal in ["INT", "TERM"] {
        let child = cli()
            .current_dir(fx.path())
            .env("CARGO_TARGET_DIR", nested_target_dir())
            .env("TMPDIR", tmp.path())
            .args(["test-images", "--no-cache", "--out"])
            .arg(fx.path().join("out"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The build comes first; the probe shows up once its test runs.
        let started = Instant::now();
        while processes_tagged(&tag).is_empty() {
            assert!(started.elapsed().as_secs() < 600, "the probe never started");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let unpacked: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().collect();
        assert!(!unpacked.is_empty(), "nothing unpacked under TMPDIR");
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "SIG{signal}: {stderr}");
        assert!(stderr.contains("interrupted"), "{stderr}");
        assert_eq!(processes_tagged(&tag), Vec::<String>::new(), "SIG{signal}");
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "SIG{signal} left {left:?}");
    }
}

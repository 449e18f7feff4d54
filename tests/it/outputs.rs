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

/// Everything under `dir`, as relative path -> bytes (directories as empty),
/// to show nothing changed.
fn snapshot(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            let ty = e.file_type().unwrap();
            if ty.is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                walk(root, &e.path(), out);
            } else if ty.is_symlink() {
                let target = std::fs::read_link(e.path()).unwrap();
                out.insert(format!("{rel}@"), target.display().to_string().into_bytes());
            } else {
                out.insert(rel, std::fs::read(e.path()).unwrap());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn a_users_own_directory_or_file_with_an_images_name_is_never_replaced() {
    let fx = Fixture::new(&[("app", HELLO_MAIN)], MANIFEST);
    let out_dir = fx.path().join("target/images");
    let mine = out_dir.join("app");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), "mine\n").unwrap();
    let out = fx.cli(&["images"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("refusing to replace {}", mine.display()))
            && stderr.contains("did not write it"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(mine.join("notes.txt")).unwrap(), b"mine\n");
    assert!(!out_dir.join("app.tar").exists(), "nothing is written");

    // A file named like the archive is the user's too.
    std::fs::remove_dir_all(&mine).unwrap();
    std::fs::write(out_dir.join("app.tar"), "my tar\n").unwrap();
    let out = fx.cli(&["images"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("app.tar"));
    assert_eq!(std::fs::read(out_dir.join("app.tar")).unwrap(), b"my tar\n");
    assert!(!mine.exists());

    // Once it is gone, the tool writes its own outputs and replaces them later.
    std::fs::remove_file(out_dir.join("app.tar")).unwrap();
    assert!(fx.cli(&["images"]).status.success());
    assert!(fx.cli(&["images"]).status.success());
    std::fs::remove_file(out_dir.join("app/index.json")).unwrap();
    assert!(
        fx.cli(&["images"]).status.success(),
        "a damaged output of ours is rebuilt"
    );
    validate::layout(&mine);
}

#[test]
fn out_to_a_source_directory_the_workspace_root_or_slash_is_refused() {
    let fx = Fixture::new(&[("app", HELLO_MAIN)], MANIFEST);
    let before = snapshot(fx.path());
    // `--out .` in `crates/`: the image `app` would replace the crate `app`.
    let out = run_in(&fx.path().join("crates"), &["images", "--out", "."]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "refusing to replace {}",
            fx.path().join("crates/app").display()
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains("Compiling"),
        "refused before compiling: {stderr}"
    );
    let mut after = snapshot(fx.path());
    // The build itself may have left cargo's target directory; nothing else changed.
    after.retain(|k, _| !k.starts_with("target/") && k != "Cargo.lock");
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    assert_eq!(after, before);

    for (out_arg, words) in [(".", "the workspace root"), ("/", "the file system root")] {
        let out = fx.cli(&["images", "--out", out_arg]);
        assert_eq!(out.status.code(), Some(2), "--out {out_arg}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(words), "--out {out_arg}: {stderr}");
    }
    assert!(!Path::new("/app").exists() && !Path::new("/.scratchpack").exists());
}

fn run_in(dir: &Path, args: &[&str]) -> std::process::Output {
    support::run(
        support::cli()
            .current_dir(dir)
            .env_remove("CARGO_TARGET_DIR")
            .args(args),
    )
}

#[test]
fn a_state_directory_that_is_a_link_is_refused_not_followed() {
    let fx = Fixture::new(&[("app", HELLO_MAIN)], MANIFEST);
    let out_dir = fx.path().join("target/images");
    std::fs::create_dir_all(&out_dir).unwrap();
    // A directory the link points to, holding what a state directory would.
    let victim = fx.path().join("victim");
    std::fs::create_dir_all(victim.join("tmp")).unwrap();
    std::fs::write(victim.join("tmp/precious"), "keep\n").unwrap();
    std::os::unix::fs::symlink(&victim, out_dir.join(".scratchpack")).unwrap();
    let before = snapshot(&victim);
    let out = fx.cli(&["images"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(".scratchpack") && stderr.contains("is a symlink"),
        "{stderr}"
    );
    assert_eq!(
        snapshot(&victim),
        before,
        "nothing deleted through the link"
    );

    // The same for a link inside the state directory.
    std::fs::remove_file(out_dir.join(".scratchpack")).unwrap();
    std::fs::create_dir_all(out_dir.join(".scratchpack")).unwrap();
    std::os::unix::fs::symlink(victim.join("tmp"), out_dir.join(".scratchpack/tmp")).unwrap();
    let out = fx.cli(&["images"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a symlink"));
    assert_eq!(
        snapshot(&victim),
        before,
        "nothing deleted through the link"
    );
}

/// A small tmpfs, unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                !std::env::var("CI").is_ok_and(|v| v == "true"),
                "mounting a tmpfs needs root; CI runs the tests as root"
            );
            eprintln!("skipping: mounting a tmpfs needs root");
            return None;
        }
        Some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

/// Bytes no compressor shrinks: a sha256 chain.
fn incompressible(len: usize) -> Vec<u8> {
    use sha2::Digest;
    let mut out = Vec::with_capacity(len + 32);
    let mut block = sha2::Sha256::digest(b"seed");
    while out.len() < len {
        out.extend_from_slice(&block);
        block = sha2::Sha256::digest(block);
    }
    out.truncate(len);
    out
}

#[test]
fn a_full_disk_fails_cleanly_and_keeps_the_last_good_output() {
    let Some(disk) = Tmpfs::mount("2m") else {
        return;
    };
    let out_dir = disk.0.path().join("images");
    let fx = Fixture::new(
        &[("app", HELLO_MAIN)],
        "[images.app]\npackage = \"app\"\nfiles = [{ src = \"data.bin\", dst = \"/data.bin\" }]\n",
    );
    std::fs::write(fx.path().join("data.bin"), b"small\n").unwrap();
    let out_arg = out_dir.to_str().unwrap();
    let first = fx.cli(&["images", "--out", out_arg]);
    assert!(first.status.success());
    let before = snapshot(&out_dir);

    // 1.5 MiB that does not compress: the layout and the archive cannot
    // both fit in what is left of 2 MiB.
    std::fs::write(fx.path().join("data.bin"), incompressible(1536 * 1024)).unwrap();
    let out = fx.cli(&["images", "--out", out_arg]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("No space left on device") && stderr.contains("writing"),
        "{stderr}"
    );
    assert!(
        std::fs::read_dir(out_dir.join(".scratchpack/tmp"))
            .unwrap()
            .next()
            .is_none(),
        "temporary files left behind"
    );
    assert_eq!(snapshot(&out_dir), before, "the last good output is intact");
    validate::layout(&out_dir.join("app"));
}

#[test]
fn a_run_interrupted_while_packing_keeps_the_last_good_output() {
    // Ctrl-C while a layer is being written: the published outputs are
    // those of the last good run, byte for byte, and what was being written
    // is gone once the next run has taken the output's lock.
    let fx = Fixture::new(
        &[("app", HELLO_MAIN)],
        "[images.app]\npackage = \"app\"\nplatforms = [\"linux/amd64\"]\n\
         files = [{ src = \"data.bin\", dst = \"/data.bin\" }]\n",
    );
    let data = fx.path().join("data.bin");
    std::fs::write(&data, b"small\n").unwrap();
    assert!(fx.cli(&["images"]).status.success());
    let out_dir = fx.path().join("target/images");
    let tmp = out_dir.join(".scratchpack/tmp");
    let published = |dir: &Path| {
        let mut s = snapshot(dir);
        s.retain(|k, _| !k.starts_with(".scratchpack/tmp/"));
        s
    };
    let before = published(&out_dir);

    // 96 MiB that gzip cannot shrink (the 1 MiB blocks repeat farther apart
    // than its window), so packing takes long enough to be caught at it.
    std::fs::write(&data, incompressible(1 << 20).repeat(96)).unwrap();
    let mut child = support::cli()
        .current_dir(fx.path())
        .env_remove("CARGO_TARGET_DIR")
        .arg("images")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let mut caught = false;
    while started.elapsed() < std::time::Duration::from_secs(120) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if std::fs::read_dir(&tmp).is_ok_and(|mut d| d.next().is_some()) {
            caught = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(caught, "the run was not caught while packing");
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = child.wait().unwrap();
    assert!(!status.success(), "an interrupted run reported success");
    assert_eq!(published(&out_dir), before, "the last good output changed");
    validate::layout(&out_dir.join("app"));

    std::fs::write(&data, b"small again\n").unwrap();
    assert!(fx.cli(&["images"]).status.success());
    assert!(
        std::fs::read_dir(&tmp).unwrap().next().is_none(),
        "what the interrupted run was writing is still there"
    );
}

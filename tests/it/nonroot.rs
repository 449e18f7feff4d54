//! `test-images` and `run` as an ordinary user, end to end. Root builds the
//! fixture once with its own toolchain, recording what cargo and rustc
//! answered; the ordinary user (`nobody`, through `setpriv`) then runs the
//! same commands, its cargo and rustc replaying those answers, because
//! root's toolchain lives where no other user may look. Everything else,
//! the sandbox above all, runs for real and unprivileged, on amd64 and, under
//! qemu, on the 32-bit platforms (qemu-arm reserves the whole 4 GiB guest
//! space, which only the raised address-space limit of emulated programs
//! admits when there is no cgroup).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{require_tool, run};
use crate::test_images::fixture_with;

const IMAGES: &str = r#"
[defaults]
platforms = ["linux/amd64"]

[images.iso]
package = "isoprobe"
user = "4242:4243"

[images.iso.tests.isolated]
args = ["report"]
stdout = { contains = ['"uid":4242,', '"pids":[1,2]', '"interfaces":["lo"]', '"cap_eff":"0000000000000000"', '"visible_host_paths":[]'] }

[images.iso.tests.filtered]
args = ["hostile", "unshare-user", "socket-vsock"]
stdout = { contains = ['"unshare-user":1,', '"socket-vsock":1}'] }

[images.iso32]
package = "isoprobe"
user = "4242:4243"
platforms = ["linux/arm/v7", "linux/386"]

[images.iso32.tests.isolated]
args = ["report"]
stdout = { contains = ['"uid":4242,', '"interfaces":["lo"]', '"cap_eff":"0000000000000000"', '"visible_host_paths":[]'] }
"#;

/// A `cargo` that records (as root) or replays (as anyone) the
/// standard output and exit code of each distinct command line.
fn shim(dir: &Path, name: &str, real: &str) -> PathBuf {
    let script = format!(
        r#"#!/bin/sh
records='{records}'
key=$(printf '%s\n' "{name}" "$@" | sha256sum | cut -c1-32)
if [ -n "$SHIM_RECORD" ]; then
  env -u RUSTC '{real}' "$@" > "$records/$key.out"
  code=$?
  echo "$code" > "$records/$key.code"
  cat "$records/$key.out"
  exit "$code"
fi
if [ ! -f "$records/$key.out" ]; then
  echo "{name}: nothing recorded for: $*" >&2
  exit 101
fi
cat "$records/$key.out"
exit "$(cat "$records/$key.code")"
"#,
        records = dir.join("records").display(),
    );
    let path = dir.join("bin").join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::create_dir_all(dir.join("records")).unwrap();
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn chown_tree(path: &Path) {
    let status = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn test_images_and_run_work_as_an_ordinary_user() {
    let root = effective_uid() == 0;
    if root && require_tool("setpriv", "util-linux").is_none() {
        return;
    }
    for qemu in ["qemu-arm-static", "qemu-i386-static"] {
        if require_tool(qemu, "qemu-user-static").is_none() {
            return;
        }
    }
    let fx = fixture_with(IMAGES);
    std::fs::set_permissions(fx.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let work = tempfile::Builder::new()
        .prefix("scratchpack-nonroot-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let real_cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let cargo = shim(work.path(), "cargo", &real_cargo);
    // Only asked for its sysroot, to see which targets' standard libraries
    // are installed: those built for are (root's toolchain has them).
    let sysroot = work.path().join("sysroot");
    for triple in [
        "x86_64-unknown-linux-musl",
        "armv7-unknown-linux-musleabihf",
        "i686-unknown-linux-musl",
    ] {
        std::fs::create_dir_all(sysroot.join("lib/rustlib").join(triple)).unwrap();
    }
    let rustc = work.path().join("bin/rustc");
    std::fs::write(&rustc, format!("#!/bin/sh\necho '{}'\n", sysroot.display())).unwrap();
    std::fs::set_permissions(&rustc, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out_dir = work.path().join("out");
    let tmp = work.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let target_dir = fx.path().join("target");

    let command = |record: bool, args: &[&str]| -> Command {
        let cli = env!("CARGO_BIN_EXE_scratchpack");
        let mut cmd = if root && !record {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", cli]);
            c
        } else {
            Command::new(cli)
        };
        cmd.current_dir(fx.path())
            .env_remove("SOURCE_DATE_EPOCH")
            .env("NO_COLOR", "1")
            .env("CARGO", &cargo)
            .env("RUSTC", &rustc)
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("TMPDIR", &tmp)
            .env("HOME", work.path())
            .arg(args[0])
            .arg("--out")
            .arg(&out_dir)
            .args(&args[1..]);
        if record {
            cmd.env("SHIM_RECORD", "1");
        }
        cmd
    };
    let test_images = ["test-images", "--no-cache", "--require-all-platforms"];
    let run_iso = ["run", "iso", "--", "report"];

    // Root builds and records.
    for args in [&test_images[..], &run_iso[..]] {
        let out = run(&mut command(true, args));
        assert!(out.status.success(), "recording {args:?}");
    }
    if root {
        for dir in [&out_dir, &tmp, &work.path().join("records")] {
            chown_tree(dir);
        }
        // Cargo's build output, read back as the artifacts' paths.
        let status = Command::new("chmod")
            .args(["-R", "a+rX"])
            .arg(&target_dir)
            .status()
            .unwrap();
        assert!(status.success());
    }

    let out: Output = run(&mut command(false, &test_images));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for line in [
        "test iso/isolated [linux/amd64] ... ok",
        "test iso/filtered [linux/amd64] ... ok",
        "test iso32/isolated [linux/arm/v7] ... ok",
        "test iso32/isolated [linux/386] ... ok",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "no `{line}` in:\n{stdout}"
        );
    }
    if root {
        // Said once: an ordinary user here has no cgroup to limit with.
        assert!(stderr.contains("no writable cgroup"), "{stderr}");
    }

    let out = run(&mut command(false, &run_iso));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("\"uid\":4242,"), "{stdout}");
    assert!(stdout.contains("\"interfaces\":[\"lo\"]"), "{stdout}");
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().flatten().collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
}

/// This process's effective uid, from `/proc/self/status`.
fn effective_uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

//! Stopping every running sandbox at once (`signals::stop_all`, what a
//! runner does on Ctrl-C), from a caller that blocks the termination signals
//! as `signals::on_termination` does. A test binary of its own: stopping
//! all sandboxes would stop other tests' too.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sandbox::{Limits, Sandbox, StopReason};

const HELPER: &str = env!("CARGO_BIN_EXE_scratchpack-sandbox");

/// The probe, built static as the sandbox tests build it.
fn probe() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target_dir = root.join("target/sandbox-tests");
    let target = "x86_64-unknown-linux-musl";
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "-p", "probe", "--release", "--target", target])
        .env("CARGO_TARGET_DIR", &target_dir)
        .status()
        .unwrap();
    assert!(status.success());
    target_dir.join(target).join("release/probe")
}

fn tagged(tag: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(tag))
    })
}

#[test]
fn stop_all_cancels_a_running_sandbox_even_with_signals_blocked() {
    let dir = std::env::temp_dir().join(format!("sandbox-signals-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::copy(probe(), dir.join("probe")).unwrap();
    let tag = format!("--tag=signals-{}", std::process::id());

    let root = dir.clone();
    let tag_in = tag.clone();
    let run = std::thread::spawn(move || {
        // What `on_termination` leaves behind in every thread: the
        // termination signals blocked, a mask child processes inherit.
        // SAFETY: a valid set; the old mask is not wanted.
        unsafe {
            let mut set = std::mem::zeroed::<libc::sigset_t>();
            libc::sigemptyset(&mut set);
            for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                libc::sigaddset(&mut set, s);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
        Sandbox::new(root)
            .args(["/probe", "ignore-term", &tag_in])
            .user(65532, 65532)
            .limits(Limits {
                wall_time: Duration::from_secs(3600),
                ..Limits::default()
            })
            .helper(HELPER)
            .run()
    });
    while !tagged(&tag) {
        std::thread::sleep(Duration::from_millis(10));
    }
    sandbox::signals::stop_all();
    let out = run.join().unwrap().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.stopped, Some(StopReason::Cancelled), "{out:?}");
    assert!(!tagged(&tag), "the probe outlived the stop");
}

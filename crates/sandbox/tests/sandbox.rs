//! End-to-end checks of the sandbox: the probe binary, built static for musl,
//! alone in an image root, reports what it sees from inside, and misbehaves
//! to show that every limit stops it and nothing is left behind. As a
//! server (`probe serve`), it is reached through a running sandbox and a
//! published port, and stopped.
//!
//! Needs the Rust targets x86_64-unknown-linux-musl (added with rustup when
//! missing) and aarch64-unknown-linux-musl, and the Debian packages
//! util-linux (setpriv) and qemu-user-static. Under `CI=true` a missing tool
//! fails the test that needs it.

use std::collections::BTreeMap;
use std::io::{BufRead, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sandbox::{Error, Limits, Outcome, Running, Sandbox, Status, StopReason};
use serde_json::Value;

const HELPER: &str = env!("CARGO_BIN_EXE_scratchpack-sandbox");

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Whether `tool` is on PATH. Missing under CI is a failure; elsewhere the
/// caller skips, saying so.
fn have_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            !ci(),
            "{tool} is required under CI=true but is not installed"
        );
        eprintln!("SKIPPING: {tool} is not installed");
    }
    found
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Builds the probe for a musl target, once per target, into a target
/// directory of its own (the outer cargo holds the lock on the main one).
fn build_probe(target: &str) -> PathBuf {
    let root = workspace_root();
    let target_dir = root.join("target/sandbox-tests");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(target))
        .unwrap_or(false);
    if !installed {
        let status = Command::new("rustup")
            .args(["target", "add", target])
            .status()
            .expect("running rustup");
        assert!(status.success(), "rustup target add {target} failed");
    }
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "-p", "probe", "--release", "--target", target])
        .env("CARGO_TARGET_DIR", &target_dir);
    if target.starts_with("aarch64") {
        // No C cross toolchain needed: the probe is pure Rust plus libc's
        // bundled musl, linked by the linker rustup ships.
        cmd.env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER", "rust-lld");
    }
    let status = cmd.status().expect("running cargo build for the probe");
    assert!(status.success(), "building the probe for {target} failed");
    let probe = target_dir.join(target).join("release/probe");
    // Readable and executable by the unprivileged user the tests switch to.
    for dir in probe
        .ancestors()
        .skip(1)
        .take_while(|d| d.starts_with(&target_dir))
    {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    }
    probe
}

fn probe() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| build_probe("x86_64-unknown-linux-musl"))
}

fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// An image root holding nothing but the probe, readable by everyone.
struct Rootfs {
    dir: PathBuf,
}

impl Rootfs {
    fn with(binary: &Path) -> Rootfs {
        let probe = copy_for_everyone(binary, "sandbox-rootfs", "probe");
        Rootfs {
            dir: probe.parent().unwrap().to_owned(),
        }
    }

    fn new() -> Rootfs {
        Rootfs::with(probe())
    }

    /// Names, sizes and modes of everything in the root, to show it unchanged.
    fn snapshot(&self) -> BTreeMap<String, (u64, u32)> {
        std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let m = e.metadata().unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    (m.len(), m.permissions().mode()),
                )
            })
            .collect()
    }
}

impl Drop for Rootfs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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

fn host_mounts() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count()
}

fn limits() -> Limits {
    Limits {
        wall_time: Duration::from_secs(10),
        ..Limits::default()
    }
}

/// Runs the probe with `args` plus a unique tag, then checks that nothing
/// the run started is still alive, no mount leaked to the host and the image
/// root is unchanged.
fn run_probe(
    rootfs: &Rootfs,
    args: &[&str],
    configure: impl FnOnce(Sandbox) -> Sandbox,
) -> Outcome {
    let tag = format!("--tag={}", unique("sandbox-test"));
    let before = rootfs.snapshot();
    let mounts = host_mounts();
    let mut argv = vec!["/probe"];
    argv.extend_from_slice(args);
    argv.push(&tag);
    let sandbox = Sandbox::new(&rootfs.dir)
        .args(argv)
        .user(65532, 65532)
        .limits(limits())
        .helper(HELPER);
    let outcome = configure(sandbox).run().expect("running the probe");
    assert_eq!(
        processes_tagged(&tag),
        Vec::<String>::new(),
        "processes left behind"
    );
    assert_eq!(host_mounts(), mounts, "mounts leaked to the host");
    assert_eq!(rootfs.snapshot(), before, "the image root was modified");
    outcome
}

fn json(bytes: &[u8]) -> Value {
    let text = String::from_utf8_lossy(bytes);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("probe output {text:?}: {e}"))
}

/// The isolation every sandbox must show, whoever runs it.
fn assert_isolated(report: &Value, uid: u64, gid: u64, hostname: &str) {
    let pid = report["pid"].as_u64().unwrap();
    let pids: Vec<u64> = report["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    // The program is the only child of the sandbox's init, pid 1.
    assert_eq!(pid, 2, "{report}");
    assert_eq!(report["ppid"], 1, "{report}");
    assert_eq!(pids, [1, 2], "host processes are visible: {report}");
    assert_eq!(report["uid"], uid, "{report}");
    assert_eq!(report["gid"], gid, "{report}");
    assert_eq!(report["hostname"], hostname, "{report}");
    assert_eq!(report["interfaces"], serde_json::json!(["lo"]), "{report}");
    assert_eq!(report["loopback_works"], true, "{report}");
    assert!(
        report["root_write_error"]
            .as_str()
            .is_some_and(|e| e.contains("Read-only")),
        "/ is writable: {report}"
    );
    assert_eq!(report["tmp_write_error"], Value::Null, "{report}");
    assert_eq!(
        report["visible_host_paths"],
        serde_json::json!([]),
        "{report}"
    );
    assert_eq!(
        report["root_entries"],
        serde_json::json!(["dev", "probe", "proc", "tmp"]),
        "{report}"
    );
    for cap in ["cap_eff", "cap_prm", "cap_inh", "cap_bnd", "cap_amb"] {
        assert_eq!(report[cap], "0000000000000000", "{cap}: {report}");
    }
    assert_eq!(report["no_new_privs"], "1", "{report}");
    let fds: Vec<&str> = report["open_fds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(fds.len(), 3, "descriptors leaked into the sandbox: {fds:?}");
    assert!(
        fds[0].starts_with("0 -> ") && fds[2].starts_with("2 -> "),
        "{fds:?}"
    );
}

#[test]
fn isolation_as_the_calling_user() {
    let rootfs = Rootfs::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    // A host directory left inheritable by the caller must not reach the
    // program: it would be a way out of its root.
    let leaky = std::fs::File::open("/").unwrap();
    // SAFETY: clears close-on-exec on a descriptor this test owns.
    unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&leaky), libc::F_SETFD, 0) };
    let out = run_probe(&rootfs, &["report", "--connect", &port], |s| {
        s.hostname("isolated").workdir("/tmp")
    });
    assert_eq!(out.status, Status::Exit(0), "{out:?}");
    assert_eq!(out.stopped, None);
    let report = json(&out.stdout);
    assert_isolated(&report, 65532, 65532, "isolated");
    assert_eq!(report["cwd"], "/tmp");
    assert_eq!(report["tcp_connect"]["connected"], false, "{report}");
}

#[test]
fn image_root_is_not_host_root() {
    let rootfs = Rootfs::new();
    let out = run_probe(&rootfs, &["report"], |s| s.user(0, 0));
    let report = json(&out.stdout);
    assert_isolated(&report, 0, 0, "sandbox");

    // Seen from the host, the program is an unprivileged user.
    let tag = format!("--tag={}", unique("sandbox-hostuid"));
    let dir = rootfs.dir.clone();
    let tag_in = tag.clone();
    let run = std::thread::spawn(move || {
        Sandbox::new(dir)
            .args(["/probe", "spin", &tag_in])
            .user(0, 0)
            .limits(Limits {
                wall_time: Duration::from_secs(5),
                ..Limits::default()
            })
            .helper(HELPER)
            .run()
    });
    let mut host_uids = Vec::new();
    for _ in 0..200 {
        for pid in processes_tagged(&tag) {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            if let Some(uid) = status.lines().find_map(|l| l.strip_prefix("Uid:")) {
                host_uids.push(uid.split_whitespace().next().unwrap().to_string());
            }
        }
        if !host_uids.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = run.join().unwrap().unwrap();
    assert_eq!(out.stopped, Some(StopReason::Timeout));
    assert!(
        !host_uids.is_empty(),
        "the spinning probe was never seen from the host"
    );
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() }.to_string();
    let expected = if is_root() { "65534".to_string() } else { me };
    assert!(
        host_uids.iter().all(|u| *u == expected),
        "host uids {host_uids:?}"
    );
}

/// Runs the command-line helper as `nobody` (when root) and parses the
/// probe's report from its stdout.
fn run_as_unprivileged(rootfs: &Rootfs, user: &str, tag: &str) -> Value {
    let mut cmd = if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(helper_for_everyone());
        c
    } else {
        Command::new(HELPER)
    };
    let out = cmd
        .args(["--user", user, "--hostname", "unpriv"])
        .arg(&rootfs.dir)
        .args(["/probe", "report", tag])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "helper failed: {stderr}");
    assert!(
        stderr
            .trim_end()
            .ends_with("outcome status=exit:0 stopped=none"),
        "{stderr}"
    );
    json(&out.stdout)
}

/// A copy of the helper that any user can run: the checkout (and so the
/// target directory) may sit below a directory only root can enter.
fn helper_for_everyone() -> &'static Path {
    static COPY: OnceLock<PathBuf> = OnceLock::new();
    COPY.get_or_init(|| {
        copy_for_everyone(Path::new(HELPER), "sandbox-helper", "scratchpack-sandbox")
    })
}

/// Copies `binary` as `name` into a new temporary directory (named after
/// `prefix`), both mode 0755 so the sandbox's unprivileged ids can reach it.
fn copy_for_everyone(binary: &Path, prefix: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(prefix));
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dest = dir.join(name);
    std::fs::copy(binary, &dest).unwrap();
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755)).unwrap();
    dest
}

#[test]
fn isolation_as_an_unprivileged_user() {
    if is_root() && !have_tool("setpriv") {
        return;
    }
    let rootfs = Rootfs::new();
    for (user, uid) in [("65532:65532", 65532), ("0:0", 0), ("1000:1000", 1000)] {
        let tag = format!("--tag={}", unique("sandbox-unpriv"));
        let report = run_as_unprivileged(&rootfs, user, &tag);
        assert_isolated(&report, uid, uid, "unpriv");
        assert_eq!(processes_tagged(&tag), Vec::<String>::new());
    }
}

#[test]
fn environment_stdin_and_exit_status_are_the_programs() {
    let rootfs = Rootfs::new();
    let out = run_probe(&rootfs, &["env"], |s| {
        s.env([("ONLY", "this"), ("PATH", "/")])
    });
    let mut lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    lines.sort();
    assert_eq!(lines, ["ONLY=this", "PATH=/"]);

    let input: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let out = run_probe(&rootfs, &["cat"], |s| s.stdin(input.clone()));
    assert_eq!(out.stdout, input);

    let out = run_probe(&rootfs, &["exit", "7"], |s| s);
    assert_eq!(out.status, Status::Exit(7));
    assert_eq!(out.stopped, None);
}

#[test]
fn setup_failures_are_errors() {
    let rootfs = Rootfs::new();
    let err = Sandbox::new(&rootfs.dir)
        .args(["/missing"])
        .helper(HELPER)
        .run()
        .unwrap_err();
    assert!(
        matches!(err, Error::Exec(ref m) if m.contains("/missing")),
        "{err}"
    );
    let err = Sandbox::new(rootfs.dir.join("nope"))
        .args(["/probe"])
        .helper(HELPER)
        .run()
        .unwrap_err();
    assert!(matches!(err, Error::NotADirectory(_)), "{err}");
    let err = Sandbox::new(&rootfs.dir)
        .args(["/probe"])
        .workdir("/does-not-exist")
        .helper(HELPER)
        .run()
        .unwrap_err();
    assert!(err.to_string().contains("working directory"), "{err}");
}

fn short(wall: u64) -> Limits {
    Limits {
        wall_time: Duration::from_millis(wall),
        kill_grace: Duration::from_millis(200),
        ..Limits::default()
    }
}

#[test]
fn a_fork_bomb_hits_the_process_limit_and_is_stopped() {
    let rootfs = Rootfs::new();
    let out = run_probe(&rootfs, &["fork-bomb"], |s| {
        s.limits(Limits {
            max_processes: 24,
            ..short(1000)
        })
    });
    assert_eq!(out.stopped, Some(StopReason::Timeout), "{out:?}");
    let report = json(&out.stdout);
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("Resource temporarily unavailable"),
        "{report}"
    );
    assert!(report["forks"].as_u64().unwrap() < 24, "{report}");
    assert!(out.duration < Duration::from_secs(5), "{:?}", out.duration);
}

/// Whether this process can give sandboxes a cgroup (root on this kind of
/// host, or a delegated v2 subtree): the memory tests differ without one.
fn cgroups() -> bool {
    let found = sandbox::cgroup::parent().is_some();
    if !found {
        // Root always can on the machines CI uses.
        assert!(
            !(ci() && is_root()),
            "no cgroup for the sandbox as root under CI"
        );
        eprintln!("NOTE: {}", sandbox::cgroup::notice());
    }
    found
}

#[test]
fn a_memory_hog_is_refused_memory() {
    let rootfs = Rootfs::new();
    let limit = 64u64 << 20;
    let out = run_probe(&rootfs, &["alloc", "1073741824"], |s| {
        s.limits(Limits {
            memory_bytes: limit,
            ..limits()
        })
    });
    assert_eq!(out.stopped, Some(StopReason::Memory), "{out:?}");
    if cgroups() {
        // Killed by the kernel's OOM killer in its cgroup.
        assert_eq!(out.status, Status::Signal(libc::SIGKILL));
    } else {
        // Refused by the address-space rlimit.
        assert_eq!(out.status, Status::Signal(libc::SIGABRT));
        assert!(String::from_utf8_lossy(&out.stderr).contains("allocation refused"));
    }
    assert!(
        out.peak_memory_bytes <= limit + (4 << 20),
        "peak {}",
        out.peak_memory_bytes
    );
}

/// Memory limits per sandbox, not per process: what a per-process limit
/// lets through must stop the sandbox, reported as memory.
fn stopped_for_memory(args: &[&str], limits: Limits) {
    if !cgroups() {
        return;
    }
    let rootfs = Rootfs::new();
    let out = run_probe(&rootfs, args, |s| s.limits(limits));
    assert_eq!(out.stopped, Some(StopReason::Memory), "{args:?}: {out:?}");
    assert!(
        out.peak_memory_bytes <= limits.memory_bytes + (4 << 20),
        "{args:?}: peak {}",
        out.peak_memory_bytes
    );
}

#[test]
fn many_processes_share_one_memory_limit() {
    // 8 × 400 MiB under a 512 MiB limit: each process alone fits.
    stopped_for_memory(
        &["hog-children", "8", "419430400"],
        Limits {
            memory_bytes: 512 << 20,
            wall_time: Duration::from_secs(30),
            ..limits()
        },
    );
}

#[test]
fn memfd_pages_count_as_memory() {
    stopped_for_memory(
        &["memfd", "1073741824"],
        Limits {
            memory_bytes: 256 << 20,
            max_file_bytes: u64::MAX,
            wall_time: Duration::from_secs(30),
            ..limits()
        },
    );
}

#[test]
fn tmp_pages_count_as_memory() {
    stopped_for_memory(
        &["tmp-fill", "805306368"],
        Limits {
            memory_bytes: 256 << 20,
            max_file_bytes: u64::MAX,
            tmp_bytes: 1 << 30,
            wall_time: Duration::from_secs(30),
            ..limits()
        },
    );
}

#[test]
fn the_cgroup_is_removed_after_the_run() {
    let Some(parent) = sandbox::cgroup::parent() else {
        return;
    };
    let rootfs = Rootfs::new();
    let children = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("scratchpack-sandbox-"))
            .collect()
    };
    // A group left by a helper killed outright is removed by the next run.
    let dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    let mut dead = dead;
    dead.wait().unwrap();
    let stale = parent
        .memory
        .join(format!("{}{dead_pid}", sandbox::cgroup::PREFIX));
    std::fs::create_dir(&stale).unwrap();
    let out = run_probe(&rootfs, &["sleep-child"], |s| s);
    assert_eq!(out.status, Status::Exit(0));
    assert!(!stale.exists(), "stale group {} kept", stale.display());
    // Other tests run at the same time: only this run's group must be gone,
    // and it was named after its helper, whose pid is unknown here. No group
    // may be left whose processes are all gone, though.
    for name in children(&parent.memory) {
        let procs = std::fs::read_to_string(parent.memory.join(&name).join("cgroup.procs"))
            .unwrap_or_default();
        if procs.trim().is_empty() {
            // A group being torn down right now is removed within moments.
            std::thread::sleep(Duration::from_millis(500));
            assert!(
                !parent.memory.join(&name).exists(),
                "empty cgroup {name} left behind"
            );
        }
    }
}
#[test]
fn an_endless_loop_is_stopped_at_the_wall_time() {
    let rootfs = Rootfs::new();
    let out = run_probe(&rootfs, &["spin"], |s| s.limits(short(500)));
    assert_eq!(out.stopped, Some(StopReason::Timeout));
    assert_eq!(out.status, Status::Signal(libc::SIGTERM));
    assert!(out.duration >= Duration::from_millis(500));
}

#[test]
fn a_sigterm_ignorer_is_killed_after_the_grace_period() {
    let rootfs = Rootfs::new();
    let out = run_probe(&rootfs, &["ignore-term"], |s| s.limits(short(500)));
    assert_eq!(out.stopped, Some(StopReason::Timeout));
    assert_eq!(out.status, Status::Signal(libc::SIGKILL));
    assert_eq!(out.stdout, b"ignoring SIGTERM\n");
    assert!(
        out.duration >= Duration::from_millis(700),
        "{:?}",
        out.duration
    );
}

#[test]
fn an_output_flood_is_capped_and_stopped() {
    let rootfs = Rootfs::new();
    let cap = 1 << 20;
    let out = run_probe(&rootfs, &["flood"], |s| {
        s.limits(Limits {
            max_output_bytes: cap,
            ..limits()
        })
    });
    assert_eq!(out.stopped, Some(StopReason::OutputLimit));
    assert_eq!(out.stdout.len() as u64, cap);
    assert!(out.stdout.iter().all(|b| *b == b'x'));
    assert!(out.duration < Duration::from_secs(5), "{:?}", out.duration);
}

#[test]
fn writes_outside_tmp_are_refused() {
    let rootfs = Rootfs::new();
    for path in ["/probe", "/new-file", "/dev/new-file", "/proc/new-file"] {
        let out = run_probe(&rootfs, &["write", path], |s| s);
        let report = json(&out.stdout);
        assert_eq!(report["ok"], false, "{path}: {report}");
        assert_eq!(out.status, Status::Exit(1));
    }
    let out = run_probe(&rootfs, &["write", "/tmp/file"], |s| s);
    assert_eq!(json(&out.stdout)["ok"], true);
}

#[test]
fn processes_that_outlive_the_program_are_killed() {
    let rootfs = Rootfs::new();
    // `run_probe` checks that the tagged child is gone once the run returns.
    let out = run_probe(&rootfs, &["sleep-child"], |s| s);
    assert_eq!(out.status, Status::Exit(0));
    assert!(json(&out.stdout)["child"].as_u64().unwrap() > 2);
}

#[test]
fn a_dead_caller_takes_the_sandbox_with_it() {
    let rootfs = Rootfs::new();
    let tag = format!("--tag={}", unique("sandbox-orphan"));
    // The command-line helper is the caller here; killing it must end the
    // sandbox even though the wall time is far away.
    let mut caller = Command::new(HELPER)
        .args(["--timeout", "60"])
        .arg(&rootfs.dir)
        .args(["/probe", "ignore-term", &tag])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = false;
    for _ in 0..300 {
        if !processes_tagged(&tag).is_empty() {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(seen, "the probe never started");
    caller.kill().unwrap();
    caller.wait().unwrap();
    let mut left = processes_tagged(&tag);
    for _ in 0..200 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        left = processes_tagged(&tag);
    }
    assert_eq!(left, Vec::<String>::new(), "sandbox outlived its caller");
}

#[test]
fn an_arm64_image_runs_under_the_emulator() {
    if !have_tool("qemu-aarch64-static") {
        return;
    }
    let emulator = sandbox::emulator_for("arm64").unwrap();
    assert!(emulator.is_some());
    let rootfs = Rootfs::with(&build_probe("aarch64-unknown-linux-musl"));
    // The filter holds for the host calls qemu makes on the guest's behalf.
    let out = run_probe(
        &rootfs,
        &["hostile", "socket-vsock", "unshare-user", "keyctl"],
        |s| s.emulator(emulator.clone()),
    );
    let report = json(&out.stdout);
    for name in ["socket-vsock", "unshare-user", "keyctl"] {
        assert_ne!(report[name], 0, "{name} under qemu: {report}");
    }
    let out = run_probe(&rootfs, &["report"], |s| s.emulator(emulator));
    assert_eq!(out.status, Status::Exit(0), "{out:?}");
    let report = json(&out.stdout);
    assert_eq!(report["arch"], "aarch64");
    assert_eq!(report["uid"], 65532);
    assert_eq!(report["interfaces"], serde_json::json!(["lo"]));
    assert_eq!(report["visible_host_paths"], serde_json::json!([]));
    assert_eq!(report["cap_eff"], "0000000000000000");
}

/// Runs `f` on a thread of its own whose session keyring is a new one
/// holding the key `scratchpack-probe-secret`: the test process's own
/// keyring (and the user's) is left alone. Returns `f`'s result and the
/// new keyring's serial.
fn with_secret_in_session_keyring<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> (T, i64) {
    std::thread::spawn(move || {
        // SAFETY (both calls): NUL-terminated strings that outlive the call.
        let keyring =
            unsafe { libc::syscall(libc::SYS_keyctl, 1, c"scratchpack-sandbox-test".as_ptr()) };
        assert!(keyring > 0, "joining a session keyring failed");
        let key = unsafe {
            libc::syscall(
                libc::SYS_add_key,
                c"user".as_ptr(),
                c"scratchpack-probe-secret".as_ptr(),
                c"hunter2".as_ptr(),
                7usize,
                -3, // KEY_SPEC_SESSION_KEYRING
            )
        };
        assert!(key > 0, "adding the test key failed");
        (f(), keyring)
    })
    .join()
    .unwrap()
}

#[test]
fn the_program_gets_a_fresh_session_keyring() {
    let rootfs = Rootfs::new();
    let dir = rootfs.dir.clone();
    let ((without_filter, with_filter), host_keyring) = with_secret_in_session_keyring(move || {
        let run = |seccomp: bool| {
            Sandbox::new(&dir)
                .args(["/probe", "keys"])
                .user(65532, 65532)
                .limits(limits())
                .seccomp(seccomp)
                .helper(HELPER)
                .run()
                .unwrap()
        };
        (run(false), run(true))
    });
    let report = json(&without_filter.stdout);
    // Not the caller's keyring, and the caller's key cannot be found.
    let session = report["session"].as_i64().unwrap();
    assert!(session > 0, "{report}");
    assert_ne!(session, host_keyring, "{report}");
    assert_eq!(report["found"], -i64::from(libc::ENOKEY), "{report}");
    // With the default filter the keyring calls are refused outright.
    let report = json(&with_filter.stdout);
    assert_eq!(report["session"], -i64::from(libc::EPERM), "{report}");
    assert_eq!(report["found"], -i64::from(libc::EPERM), "{report}");
}

#[test]
fn every_call_the_filter_lists_is_refused() {
    let rootfs = Rootfs::new();
    let denied = sandbox::seccomp::denied();
    let mut args: Vec<String> = vec!["syscalls".into()];
    args.extend(denied.iter().map(|(_, nr)| nr.to_string()));
    args.push(libc::SYS_clone3.to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_probe(&rootfs, &args, |s| s);
    let report = json(&out.stdout);
    for (name, nr) in &denied {
        assert_eq!(report[nr.to_string()], libc::EPERM, "{name}: {report}");
    }
    // clone3 says it does not exist, so the C library falls back to clone.
    assert_eq!(
        report[libc::SYS_clone3.to_string()],
        libc::ENOSYS,
        "{report}"
    );
}

const HOSTILE: [&str; 9] = [
    "socket-vsock",
    "socket-packet",
    "unshare-user",
    "keyctl",
    "add-key",
    "io-uring",
    "userfaultfd",
    "bpf",
    "perf-event-open",
];

#[test]
fn hostile_calls_are_refused_by_the_filter() {
    let rootfs = Rootfs::new();
    let mut args = vec!["hostile", "socket-inet"];
    args.extend(HOSTILE);
    let out = run_probe(&rootfs, &args, |s| s);
    let report = json(&out.stdout);
    for name in HOSTILE {
        assert_eq!(report[name], libc::EPERM, "{name}: {report}");
    }
    assert_eq!(report["socket-inet"], 0, "{report}");
    // Without the filter the same calls reach the kernel: nested user
    // namespaces, keyrings, io_uring and userfaultfd all work.
    let out = run_probe(&rootfs, &args, |s| s.seccomp(false));
    let report = json(&out.stdout);
    for name in [
        "unshare-user",
        "keyctl",
        "add-key",
        "io-uring",
        "userfaultfd",
    ] {
        assert_eq!(report[name], 0, "{name} without the filter: {report}");
    }
}

#[test]
fn tmp_has_an_inode_limit() {
    let rootfs = Rootfs::new();
    let out = run_probe(&rootfs, &["inode-bomb", "20000"], |s| {
        s.limits(Limits {
            tmp_inodes: 1000,
            ..limits()
        })
    });
    let report = json(&out.stdout);
    let created = report["created"].as_u64().unwrap();
    assert!(created < 1000, "{report}");
    assert!(
        report["error"]
            .as_str()
            .is_some_and(|e| e.contains("No space left")),
        "{report}"
    );
}

#[test]
fn the_init_shows_nothing_of_the_host() {
    let rootfs = Rootfs::new();
    let out = run_probe(&rootfs, &["proc1"], |s| s);
    let report = json(&out.stdout);
    let cmdline = report["cmdline"].as_str().unwrap();
    assert_eq!(cmdline.trim_end_matches('\0'), "sandbox-init", "{report}");
    assert_eq!(report["comm"], "sandbox-init", "{report}");
    let helper_name = Path::new(HELPER).file_name().unwrap().to_str().unwrap();
    assert!(!cmdline.contains(helper_name), "{report}");
    // Nor do the mounts name where the image was unpacked.
    let mountinfo = report["mountinfo"].as_str().unwrap();
    let dir = rootfs.dir.file_name().unwrap().to_str().unwrap();
    assert!(!mountinfo.contains(dir), "{mountinfo}");
}

#[test]
fn the_sandbox_cgroup_carries_its_limits() {
    let Some(parent) = sandbox::cgroup::parent() else {
        return;
    };
    if parent.kind != sandbox::cgroup::Kind::V1 {
        // The v2 file names differ; this host layout is what CI runs on.
        return;
    }
    let rootfs = Rootfs::new();
    let tag = format!("--tag={}", unique("sandbox-cgroup"));
    let dir = rootfs.dir.clone();
    let tag_in = tag.clone();
    let run = std::thread::spawn(move || {
        Sandbox::new(dir)
            .args(["/probe", "spin", &tag_in])
            .limits(Limits {
                wall_time: Duration::from_secs(3),
                memory_bytes: 300 << 20,
                max_processes: 33,
                cpu_millis: 500,
                ..Limits::default()
            })
            .helper(HELPER)
            .run()
    });
    let mut pid = None;
    while pid.is_none() {
        pid = processes_tagged(&tag).pop();
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = pid.unwrap();
    // The group that holds the probe, in each hierarchy.
    let group_of = |base: &Path| -> PathBuf {
        std::fs::read_dir(base)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                std::fs::read_to_string(p.join("cgroup.procs"))
                    .is_ok_and(|procs| procs.lines().any(|l| l == pid))
            })
            .unwrap_or_else(|| panic!("no group under {} holds {pid}", base.display()))
    };
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap().trim().to_owned();
    let memory = group_of(&parent.memory);
    assert_eq!(
        read(memory.join("memory.limit_in_bytes")),
        (300u64 << 20).to_string()
    );
    if let Some(pids) = &parent.pids {
        assert_eq!(read(group_of(pids).join("pids.max")), "33");
    }
    if let Some(cpu) = &parent.cpu {
        let cpu = group_of(cpu);
        assert_eq!(read(cpu.join("cpu.cfs_quota_us")), "50000");
        assert_eq!(read(cpu.join("cpu.cfs_period_us")), "100000");
    }
    let out = run.join().unwrap().unwrap();
    assert_eq!(out.stopped, Some(StopReason::Timeout));
    assert!(!memory.exists(), "{} outlived the run", memory.display());
}

#[test]
fn a_program_signalling_everyone_still_gets_its_own_result() {
    let rootfs = Rootfs::new();
    // Root in its sandbox, so every process there is its to signal. The
    // signals reach the init at random points of its work: a few runs.
    for _ in 0..5 {
        let out = run_probe(&rootfs, &["signal-all", "exit", "3"], |s| s.user(0, 0));
        assert_eq!(out.status, Status::Exit(3), "{out:?}");
        assert_eq!(out.stopped, None, "{out:?}");
        let report = json(&out.stdout);
        assert_eq!(report["parent"], 1, "{report}");
        assert_eq!(report["init-term"], 0, "{report}");
    }
    let out = run_probe(&rootfs, &["signal-all", "raise", "10"], |s| s.user(0, 0));
    assert_eq!(out.status, Status::Signal(libc::SIGUSR1), "{out:?}");
    assert_eq!(out.stopped, None, "{out:?}");
    json(&out.stdout);
}

// ---- services: a running sandbox, connected to from outside ----------------

/// Starts the probe as `probe serve ARGS... --tag=…` in a sandbox of its
/// own; returns the running sandbox and the tag that finds its processes.
fn spawn_probe(
    rootfs: &Rootfs,
    args: &[&str],
    configure: impl FnOnce(Sandbox) -> Sandbox,
) -> (Running, String) {
    let tag = format!("--tag={}", unique("sandbox-service"));
    let mut argv = vec!["/probe", "serve"];
    argv.extend_from_slice(args);
    argv.push(&tag);
    let sandbox = Sandbox::new(&rootfs.dir)
        .args(argv)
        .user(65532, 65532)
        .limits(limits())
        .helper(HELPER);
    let running = configure(sandbox).spawn().expect("starting the probe");
    (running, tag)
}

/// Connects to `port` in the sandbox as soon as the program listens there:
/// the connection, and how many times it was refused first.
fn ready(running: &Running, port: u16, within: Duration) -> (TcpStream, u32) {
    let deadline = Instant::now() + within;
    let mut refused = 0;
    loop {
        match running.connect(port) {
            Ok(stream) => return (stream, refused),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused && Instant::now() < deadline => {
                refused += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!(
                "connecting to port {port} after {refused} refusals: {e}; {:?}",
                running.wait_timeout(Duration::ZERO)
            ),
        }
    }
}

/// An HTTP answer: status, headers (names in lower case) and body.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

/// Sends one request that closes the connection, and reads the whole answer.
fn http(mut stream: TcpStream, method: &str, path: &str, body: Option<(&str, &[u8])>) -> Answer {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: probe\r\nconnection: close\r\n");
    if let Some((kind, bytes)) = body {
        request.push_str(&format!(
            "content-type: {kind}\r\ncontent-length: {}\r\n",
            bytes.len()
        ));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body.map_or(&[][..], |(_, b)| b));
    stream.write_all(&bytes).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    parse_answer(&answer)
}

fn parse_answer(answer: &[u8]) -> Answer {
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(answer)));
    let head = String::from_utf8_lossy(&answer[..split]);
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: answer[split + 4..].to_vec(),
    }
}

/// Nothing the sandbox started may outlive it.
fn assert_gone(tag: &str) {
    assert_eq!(
        processes_tagged(tag),
        Vec::<String>::new(),
        "processes left behind"
    );
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_server_in_the_sandbox_answers_through_connect() {
    let rootfs = Rootfs::new();
    let (running, tag) = spawn_probe(&rootfs, &["8080"], |s| s);
    let (stream, _) = ready(&running, 8080, Duration::from_secs(5));
    let answer = http(stream, "GET", "/", None);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(text(&answer.body), "hello from probe (x86_64)\n");
    let answer = http(running.connect(8080).unwrap(), "GET", "/status/503", None);
    assert_eq!(answer.status, 503, "{answer:?}");
    let json = br#"{"echo":true}"#;
    let answer = http(
        running.connect(8080).unwrap(),
        "POST",
        "/echo",
        Some(("application/json", json)),
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.headers["content-type"], "application/json");
    assert_eq!(answer.body, json);

    // Many connections at once, from several threads sharing the handle.
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let running = &running;
            scope.spawn(move || {
                let streams: Vec<TcpStream> =
                    (0..8).map(|_| running.connect(8080).unwrap()).collect();
                for (i, stream) in streams.into_iter().enumerate() {
                    let body = format!("thread {thread} request {i}");
                    let answer = http(
                        stream,
                        "POST",
                        "/echo",
                        Some(("text/plain", body.as_bytes())),
                    );
                    assert_eq!(text(&answer.body), body);
                }
            });
        }
    });
    // Nothing else listens in there.
    let err = running.connect(8081).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");

    assert_eq!(running.wait_timeout(Duration::ZERO).unwrap(), None);
    running.kill();
    let out = running.wait().unwrap();
    assert_eq!(out.status, Status::Signal(libc::SIGKILL), "{out:?}");
    assert_eq!(out.stopped, Some(StopReason::Cancelled), "{out:?}");
    // What it wrote until then is kept, and every waiter gets the same.
    assert!(
        text(&out.stdout).contains("listening on port 8080"),
        "{out:?}"
    );
    assert_eq!(running.wait().unwrap(), out);
    // Once it has ended, it says so, rather than refusing connections.
    let err = running.connect(8080).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotConnected, "{err}");
    let err = running.signal(libc::SIGTERM).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ESRCH), "{err}");
    assert_gone(&tag);
}

#[test]
fn readiness_polling_is_refused_until_the_server_listens() {
    let rootfs = Rootfs::new();
    let (running, tag) = spawn_probe(&rootfs, &["8080", "--listen-after", "700"], |s| s);
    let started = Instant::now();
    let (stream, refused) = ready(&running, 8080, Duration::from_secs(10));
    assert!(refused > 0, "never refused");
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(http(stream, "GET", "/", None).status, 200);
    drop(running);
    assert_gone(&tag);
}

#[test]
fn two_sandboxes_listen_on_the_same_port_at_once() {
    let rootfs = Rootfs::new();
    let (a, tag_a) = spawn_probe(&rootfs, &["8080", "--name", "first"], |s| s);
    let (b, tag_b) = spawn_probe(&rootfs, &["8080", "--name", "second"], |s| s);
    // Both bound the port: neither failed to listen.
    let (stream_a, _) = ready(&a, 8080, Duration::from_secs(5));
    let (stream_b, _) = ready(&b, 8080, Duration::from_secs(5));
    assert_eq!(
        text(&http(stream_b, "GET", "/", None).body),
        "hello from second (x86_64)\n"
    );
    assert_eq!(
        text(&http(stream_a, "GET", "/", None).body),
        "hello from first (x86_64)\n"
    );
    for _ in 0..3 {
        let body_a = http(a.connect(8080).unwrap(), "GET", "/", None).body;
        let body_b = http(b.connect(8080).unwrap(), "GET", "/", None).body;
        assert!(text(&body_a).contains("first") && text(&body_b).contains("second"));
    }
    for (running, tag) in [(a, tag_a), (b, tag_b)] {
        running.signal(libc::SIGTERM).unwrap();
        let out = running.wait().unwrap();
        assert_eq!(out.status, Status::Signal(libc::SIGTERM), "{out:?}");
        assert_eq!(out.stopped, None);
        assert_gone(&tag);
    }
}

#[test]
fn sigterm_ends_a_server_with_its_own_exit_code() {
    let rootfs = Rootfs::new();
    let (running, tag) = spawn_probe(&rootfs, &["8080", "--term-exit", "7"], |s| s);
    let (stream, _) = ready(&running, 8080, Duration::from_secs(5));
    assert_eq!(http(stream, "GET", "/", None).status, 200);
    running.signal(libc::SIGTERM).unwrap();
    let out = running
        .wait_timeout(Duration::from_secs(5))
        .unwrap()
        .expect("the server ended on SIGTERM");
    assert_eq!(out.status, Status::Exit(7), "{out:?}");
    assert_eq!(out.stopped, None, "{out:?}");
    assert!(text(&out.stdout).contains("stopping on SIGTERM"), "{out:?}");
    assert_gone(&tag);
}

#[test]
fn a_server_deaf_to_sigterm_is_killed() {
    let rootfs = Rootfs::new();
    let (running, tag) = spawn_probe(&rootfs, &["8080", "--ignore-term"], |s| s);
    ready(&running, 8080, Duration::from_secs(5));
    running.signal(libc::SIGTERM).unwrap();
    assert_eq!(
        running.wait_timeout(Duration::from_millis(500)).unwrap(),
        None
    );
    // Still serving after the signal it ignored.
    assert_eq!(
        http(running.connect(8080).unwrap(), "GET", "/", None).status,
        200
    );
    running.kill();
    let out = running.wait().unwrap();
    assert_eq!(out.status, Status::Signal(libc::SIGKILL), "{out:?}");
    assert_eq!(out.stopped, Some(StopReason::Cancelled), "{out:?}");
    assert_gone(&tag);

    // And by the wall time, without being asked.
    let (running, tag) = spawn_probe(&rootfs, &["8080", "--ignore-term"], |s| {
        s.limits(short(800))
    });
    ready(&running, 8080, Duration::from_secs(5));
    let out = running.wait().unwrap();
    assert_eq!(out.status, Status::Signal(libc::SIGKILL), "{out:?}");
    assert_eq!(out.stopped, Some(StopReason::Timeout), "{out:?}");
    assert!(out.duration >= Duration::from_millis(800), "{out:?}");
    assert_gone(&tag);
}

#[test]
fn a_crashing_server_ends_with_its_signal() {
    let rootfs = Rootfs::new();
    let (running, tag) = spawn_probe(&rootfs, &["8080", "--crash-after", "2"], |s| s);
    let (stream, _) = ready(&running, 8080, Duration::from_secs(5));
    assert_eq!(http(stream, "GET", "/", None).status, 200);
    assert_eq!(
        http(running.connect(8080).unwrap(), "GET", "/", None).status,
        200
    );
    let out = running.wait().unwrap();
    assert_eq!(out.status, Status::Signal(libc::SIGABRT), "{out:?}");
    assert_eq!(out.stopped, None, "{out:?}");
    assert!(
        text(&out.stdout).contains("crashing after 2 requests"),
        "{out:?}"
    );
    assert_eq!(
        running.connect(8080).unwrap_err().kind(),
        ErrorKind::NotConnected
    );
    assert_gone(&tag);
}

#[test]
fn a_server_that_never_listens_leaves_its_output_for_the_report() {
    let rootfs = Rootfs::new();
    let (running, tag) = spawn_probe(&rootfs, &["8080", "--never-listen"], |s| s);
    let deadline = Instant::now() + Duration::from_millis(300);
    while Instant::now() < deadline {
        let err = running.connect(8080).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
        std::thread::sleep(Duration::from_millis(20));
    }
    running.kill();
    let out = running.wait().unwrap();
    assert_eq!(text(&out.stdout), "probe: not listening\n", "{out:?}");
    assert_eq!(out.stopped, Some(StopReason::Cancelled));
    assert_gone(&tag);
}

#[test]
fn spawn_reports_setup_failures_as_run_does() {
    let rootfs = Rootfs::new();
    let err = Sandbox::new(&rootfs.dir)
        .args(["/missing"])
        .helper(HELPER)
        .spawn()
        .unwrap_err();
    assert!(
        matches!(err, Error::Exec(ref m) if m.contains("/missing")),
        "{err}"
    );
    // A program that ends at once is a sandbox that has ended.
    let running = Sandbox::new(&rootfs.dir)
        .args(["/probe", "exit", "4"])
        .helper(HELPER)
        .spawn()
        .unwrap();
    assert_eq!(running.wait().unwrap().status, Status::Exit(4));
}

#[test]
fn a_port_is_published_from_a_host_listener() {
    let rootfs = Rootfs::new();
    let (running, tag) = spawn_probe(&rootfs, &["8080", "--term-exit", "0"], |s| s);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap();
    std::thread::scope(|scope| {
        let publisher = scope.spawn(|| running.publish(listener, 8080));
        ready(&running, 8080, Duration::from_secs(5));
        let answer = http(TcpStream::connect(host).unwrap(), "GET", "/", None);
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(text(&answer.body), "hello from probe (x86_64)\n");

        // A large body, the request half-closed once sent: the answer
        // still comes back whole.
        let body: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
        let mut client = TcpStream::connect(host).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let head = format!(
            "POST /echo HTTP/1.1\r\ncontent-type: application/x-test\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let writer = {
            let mut client = client.try_clone().unwrap();
            let body = body.clone();
            std::thread::spawn(move || {
                client.write_all(head.as_bytes()).unwrap();
                client.write_all(&body).unwrap();
                client.shutdown(std::net::Shutdown::Write).unwrap();
            })
        };
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).unwrap();
        writer.join().unwrap();
        let answer = parse_answer(&answer);
        assert_eq!(answer.headers["content-type"], "application/x-test");
        assert_eq!(answer.body.len(), body.len());
        assert!(answer.body == body);

        // Clients at once.
        std::thread::scope(|inner| {
            for i in 0..4 {
                inner.spawn(move || {
                    let body = format!("client {i}");
                    let answer = http(
                        TcpStream::connect(host).unwrap(),
                        "POST",
                        "/echo",
                        Some(("text/plain", body.as_bytes())),
                    );
                    assert_eq!(text(&answer.body), body);
                });
            }
        });

        // A client that stays connected and silent does not keep the
        // forwarding going once the sandbox has ended.
        let mut idle = TcpStream::connect(host).unwrap();
        idle.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        running.signal(libc::SIGTERM).unwrap();
        let out = running.wait().unwrap();
        assert_eq!(out.status, Status::Exit(0), "{out:?}");
        publisher.join().unwrap().unwrap();
        let mut rest = Vec::new();
        let _ = idle.read_to_end(&mut rest);
        assert!(rest.is_empty());
    });
    assert_gone(&tag);
}

#[test]
fn a_server_signalling_everyone_can_still_be_reached_and_stopped() {
    let rootfs = Rootfs::new();
    for _ in 0..3 {
        let (running, tag) = spawn_probe(
            &rootfs,
            &["8080", "--signal-all", "--term-exit", "5"],
            |s| s.user(0, 0),
        );
        let (stream, _) = ready(&running, 8080, Duration::from_secs(5));
        assert_eq!(http(stream, "GET", "/", None).status, 200);
        running.signal(libc::SIGTERM).unwrap();
        let out = running.wait().unwrap();
        assert_eq!(out.status, Status::Exit(5), "{out:?}");
        assert_eq!(out.stopped, None, "{out:?}");
        let first_line = text(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        let report = json(first_line.as_bytes());
        assert_eq!(report["parent"], 1, "{report}");
        assert_gone(&tag);
    }
}

#[test]
fn an_arm64_server_answers_under_the_emulator() {
    if !have_tool("qemu-aarch64-static") {
        return;
    }
    let emulator = sandbox::emulator_for("arm64").unwrap();
    let rootfs = Rootfs::with(&build_probe("aarch64-unknown-linux-musl"));
    let (running, tag) = spawn_probe(&rootfs, &["8080", "--term-exit", "3"], |s| {
        s.emulator(emulator)
    });
    let (stream, _) = ready(&running, 8080, Duration::from_secs(20));
    let answer = http(stream, "GET", "/", None);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(text(&answer.body), "hello from probe (aarch64)\n");
    let answer = http(
        running.connect(8080).unwrap(),
        "POST",
        "/echo",
        Some(("text/plain", b"under qemu")),
    );
    assert_eq!(answer.body, b"under qemu");
    // The signal reaches the emulated program's own handler.
    running.signal(libc::SIGTERM).unwrap();
    let out = running.wait().unwrap();
    assert_eq!(out.status, Status::Exit(3), "{out:?}");
    assert_gone(&tag);
}

/// What the engine's `run -p` does, from the command-line helper, run by
/// an unprivileged user (nobody, when the tests run as root): connecting
/// into the sandbox needs no privilege.
#[test]
fn publishing_needs_no_privilege() {
    if is_root() && !have_tool("setpriv") {
        return;
    }
    let rootfs = Rootfs::new();
    let tag = format!("--tag={}", unique("sandbox-publish"));
    let mut cmd = if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(helper_for_everyone());
        c
    } else {
        Command::new(HELPER)
    };
    let mut child = cmd
        .args(["--user", "65532:65532", "--timeout", "30"])
        .args(["--publish", "127.0.0.1:0:8080"])
        .arg(&rootfs.dir)
        .args(["/probe", "serve", "8080", "--crash-after", "2", &tag])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let host: std::net::SocketAddr = line
        .trim()
        .strip_prefix("scratchpack-sandbox: publishing ")
        .and_then(|rest| rest.strip_suffix(" -> 8080/tcp"))
        .unwrap_or_else(|| panic!("{line:?}"))
        .parse()
        .unwrap();
    // Until the program listens, a forwarded connection is closed at once.
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        let mut stream = TcpStream::connect(host).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        if !answer.is_empty() {
            break parse_answer(&answer);
        }
        assert!(Instant::now() < deadline, "never answered");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(text(&first.body), "hello from probe (x86_64)\n");
    let answer = http(
        TcpStream::connect(host).unwrap(),
        "POST",
        "/echo",
        Some(("text/plain", b"rootless")),
    );
    assert_eq!(answer.body, b"rootless");
    let status = child.wait().unwrap();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(
        rest.trim_end()
            .ends_with("outcome status=signal:6 stopped=none"),
        "{rest}"
    );
    assert_eq!(status.code(), Some(128 + libc::SIGABRT), "{rest}");
    assert_gone(&tag);
}

//! Benchmark: median wall time of running one command in an image root with
//! this crate's sandbox, bubblewrap (`bwrap`) and `crun run`, interleaved in
//! the same process so all three see the same machine.
//!
//! ```text
//! cargo run -p scratchpack-sandbox --release --example bench -- [--runs N] ROOTFS ARGV...
//! ```
//!
//! Each tool gets the same isolation where it offers it: new user, mount,
//! pid, network, uts and ipc namespaces, a read-only root built from the
//! image's entries, `/proc`, `/dev`, a tmpfs `/tmp`, the same seccomp
//! deny-list, and a cgroup of its own limiting memory, processes and CPU
//! (for bwrap, which makes none, the benchmark makes one around each run,
//! as a runner using bwrap would). crun gets a copy of the root, because it
//! creates its mount points inside the root directory.
//!
//! crun refuses hosts whose cgroup v2 hierarchy sits beside v1 controllers
//! ("hybrid mode"); on such a host, run the benchmark with that hierarchy
//! hidden: `unshare -m --propagation private sh -c 'umount
//! /sys/fs/cgroup/unified && exec target/release/examples/bench ...'`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    sandbox::helper::run_if_requested();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut runs = 50;
    if args.first().map(String::as_str) == Some("--runs") {
        runs = args[1].parse().expect("--runs takes a number");
        args.drain(..2);
    }
    if args.len() < 2 {
        eprintln!("usage: bench [--runs N] ROOTFS ARGV...");
        std::process::exit(2);
    }
    let rootfs = std::path::absolute(&args[0]).expect("resolving the root");
    let argv = args[1..].to_vec();
    let work = std::env::temp_dir().join(format!("sandbox-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("creating the work directory");

    let ours = Ours::new(&rootfs, &argv);
    let bwrap = Bwrap::new(&rootfs, &argv);
    let crun = Crun::new(&rootfs, &argv, &work);
    let tools: Vec<(&str, &dyn Tool)> =
        vec![("sandbox", &ours), ("bwrap", &bwrap), ("crun", &crun)];

    // One unmeasured run each, so the page cache is warm and any failure shows
    // before timing starts.
    for (name, tool) in &tools {
        if let Err(e) = tool.run(0) {
            eprintln!("{name}: {e}");
            let _ = std::fs::remove_dir_all(&work);
            std::process::exit(1);
        }
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); tools.len()];
    for i in 0..runs {
        for (t, (name, tool)) in tools.iter().enumerate() {
            let start = Instant::now();
            if let Err(e) = tool.run(i + 1) {
                eprintln!("{name}: {e}");
                let _ = std::fs::remove_dir_all(&work);
                std::process::exit(1);
            }
            times[t].push(start.elapsed());
        }
    }
    let _ = std::fs::remove_dir_all(&work);

    let medians: Vec<Duration> = times.iter_mut().map(|t| median(t)).collect();
    println!("{runs} runs of {argv:?} in {}", rootfs.display());
    for ((name, _), m) in tools.iter().zip(&medians) {
        println!("  {name:<8} median {:>8.2} ms", m.as_secs_f64() * 1e3);
    }
    for (i, (name, _)) in tools.iter().enumerate().skip(1) {
        println!(
            "  sandbox / {name}: {:.2}",
            medians[0].as_secs_f64() / medians[i].as_secs_f64()
        );
    }
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

trait Tool {
    fn run(&self, i: usize) -> Result<(), String>;
}

fn status(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("starting {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

struct Ours(sandbox::Sandbox);

impl Ours {
    fn new(rootfs: &Path, argv: &[String]) -> Ours {
        Ours(sandbox::Sandbox::new(rootfs).args(argv).user(0, 0))
    }
}

impl Tool for Ours {
    fn run(&self, _: usize) -> Result<(), String> {
        let out = self.0.run().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{:?}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

struct Bwrap {
    args: Vec<String>,
    /// The default filter as `struct sock_filter`s, read by `--seccomp FD`
    /// from the start on each run.
    filter: std::fs::File,
}

/// The descriptor bwrap reads its seccomp program from.
const FILTER_FD: i32 = 9;

impl Bwrap {
    fn new(rootfs: &Path, argv: &[String]) -> Bwrap {
        let mut filter = Vec::new();
        for insn in sandbox::seccomp::default_filter() {
            filter.extend_from_slice(&insn.code.to_ne_bytes());
            filter.push(insn.jt);
            filter.push(insn.jf);
            filter.extend_from_slice(&insn.k.to_ne_bytes());
        }
        let mut args: Vec<String> = [
            "--seccomp",
            "9",
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--clearenv",
            "--uid",
            "0",
            "--gid",
            "0",
            "--hostname",
            "sandbox",
            "--tmpfs",
            "/",
        ]
        .map(String::from)
        .to_vec();
        // The same shape as ours: each top-level entry bound read-only.
        for entry in std::fs::read_dir(rootfs).expect("listing the root") {
            let name = entry.expect("listing the root").file_name();
            let name = name.to_string_lossy();
            if ["proc", "dev", "tmp"].contains(&name.as_ref()) {
                continue;
            }
            args.push("--ro-bind".into());
            args.push(rootfs.join(&*name).display().to_string());
            args.push(format!("/{name}"));
        }
        for a in [
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--tmpfs",
            "/tmp",
            "--remount-ro",
            "/",
            "--",
        ] {
            args.push(a.into());
        }
        args.extend(argv.iter().cloned());
        let filter = tempfile_with(&filter).expect("writing the seccomp program");
        Bwrap { args, filter }
    }
}

impl Tool for Bwrap {
    fn run(&self, i: usize) -> Result<(), String> {
        use std::os::unix::process::CommandExt;
        let cgroup = sandbox::cgroup::parent()
            .map(|p| {
                sandbox::cgroup::Cgroup::create(
                    &p,
                    &format!("bench-bwrap-{}-{i}", std::process::id()),
                    &sandbox::Limits::default(),
                )
            })
            .transpose()
            .map_err(|e| format!("making bwrap's cgroup: {e}"))?
            .map(std::sync::Arc::new);
        std::io::Seek::rewind(&mut &self.filter).map_err(|e| e.to_string())?;
        let raw = std::os::fd::AsRawFd::as_raw_fd(&self.filter);
        let mut cmd = Command::new("bwrap");
        cmd.args(&self.args);
        let cg = cgroup.clone();
        // SAFETY: the bench is single-threaded here, so the forked child may
        // allocate; dup2 and getpid are async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(cg) = &cg {
                    cg.add(libc::getpid())?;
                }
                if libc::dup2(raw, FILTER_FD) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let result = status(&mut cmd);
        drop(cmd);
        if let Some(cg) = cgroup {
            cg.remove();
        }
        result
    }
}

/// An unlinked file holding `bytes`, positioned at its start.
fn tempfile_with(bytes: &[u8]) -> Result<std::fs::File, String> {
    use std::io::{Seek, Write};
    let path = std::env::temp_dir().join(format!("bench-filter-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&path);
    file.write_all(bytes).map_err(|e| e.to_string())?;
    file.rewind().map_err(|e| e.to_string())?;
    Ok(file)
}

struct Crun {
    bundle: PathBuf,
    state: PathBuf,
}

impl Crun {
    fn new(rootfs: &Path, argv: &[String], work: &Path) -> Crun {
        let bundle = work.join("bundle");
        let root = bundle.join("rootfs");
        std::fs::create_dir_all(&root).expect("creating the crun bundle");
        for entry in std::fs::read_dir(rootfs).expect("listing the root") {
            let entry = entry.expect("listing the root");
            let cp = Command::new("cp")
                .arg("-a")
                .arg(entry.path())
                .arg(&root)
                .status()
                .expect("copying the root");
            assert!(cp.success(), "copying the root for crun");
        }
        status(
            Command::new("crun")
                .args(["spec", "--rootless"])
                .current_dir(&bundle),
        )
        .expect("crun spec");
        let path = bundle.join("config.json");
        let mut spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("reading config.json"))
                .expect("parsing config.json");
        spec["root"] = serde_json::json!({ "path": "rootfs", "readonly": true });
        spec["process"]["args"] = serde_json::json!(argv);
        spec["process"]["terminal"] = serde_json::json!(false);
        spec["process"]["env"] = serde_json::json!([]);
        spec["hostname"] = serde_json::json!("sandbox");
        // The same limits and filter as the others.
        let limits = sandbox::Limits::default();
        spec["linux"]["resources"] = serde_json::json!({
            "memory": { "limit": limits.memory_bytes },
            "pids": { "limit": limits.max_processes },
            "cpu": { "quota": 100_000, "period": 100_000 },
        });
        spec["linux"]["cgroupsPath"] =
            serde_json::json!(format!("bench-crun-{}", std::process::id()));
        let denied: Vec<&str> = sandbox::seccomp::denied().iter().map(|(n, _)| *n).collect();
        spec["linux"]["seccomp"] = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{ "names": denied, "action": "SCMP_ACT_ERRNO", "errnoRet": 1 }],
        });
        // No /sys (ours has none) and so no cgroup file system either.
        spec["mounts"]
            .as_array_mut()
            .expect("mounts in config.json")
            .retain(|m| !m["destination"].as_str().unwrap_or("").starts_with("/sys"));
        let namespaces = spec["linux"]["namespaces"]
            .as_array_mut()
            .expect("namespaces in config.json");
        for ns in ["network", "uts", "ipc", "pid", "mount", "user"] {
            if !namespaces.iter().any(|n| n["type"] == ns) {
                namespaces.push(serde_json::json!({ "type": ns }));
            }
        }
        std::fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap())
            .expect("writing config.json");
        let state = work.join("crun-state");
        std::fs::create_dir_all(&state).expect("creating the crun state directory");
        Crun { bundle, state }
    }
}

impl Tool for Crun {
    fn run(&self, i: usize) -> Result<(), String> {
        status(
            Command::new("crun")
                .arg("--root")
                .arg(&self.state)
                .arg("--cgroup-manager=cgroupfs")
                .args(["run", "--bundle"])
                .arg(&self.bundle)
                .arg(format!("bench-{}-{i}", std::process::id())),
        )
    }
}

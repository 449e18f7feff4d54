//! `probe`: a static binary placed alone in a test image. Run without a
//! subcommand (or with `report`) it prints one JSON object describing what it
//! can see and do from inside; the other subcommands misbehave on purpose so
//! tests can check that the sandbox stops them.
//!
//! ```text
//! probe [report] [--connect PORT] [--path PATH]...
//! probe fork-bomb | alloc BYTES | spin | flood | ignore-term | sleep-child
//! probe write PATH | exit CODE | cat | env
//! probe keys | syscalls NR... | hostile CALL... | inode-bomb N | proc1
//! probe hog-children N BYTES | memfd BYTES | tmp-fill BYTES | fake-ok
//! probe signal-all [exit CODE | raise SIGNAL]
//! probe serve PORT [--name NAME] [--listen-after MS] [--never-listen]
//!                  [--crash-after N] [--ignore-term] [--term-exit CODE]
//!                  [--signal-all]
//! ```
//!
//! Arguments starting with `--tag=` are ignored everywhere: tests use them to
//! find the probe's processes from outside.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--tag="))
        .collect();
    let (command, rest) = match args.split_first() {
        Some((c, rest)) if !c.starts_with("--") => (c.as_str(), rest),
        _ => ("report", &args[..]),
    };
    match command {
        "report" => report(rest),
        "fork-bomb" => fork_bomb(),
        "alloc" => alloc(
            rest.first()
                .and_then(|b| b.parse().ok())
                .unwrap_or(u64::MAX),
        ),
        "spin" => loop {
            std::hint::spin_loop();
        },
        "flood" => flood(),
        "ignore-term" => ignore_term(),
        "sleep-child" => sleep_child(),
        "write" => write_file(rest.first().map_or("/probe-write", String::as_str)),
        "exit" => std::process::exit(rest.first().and_then(|c| c.parse().ok()).unwrap_or(1)),
        "cat" => {
            let mut input = Vec::new();
            std::io::stdin()
                .read_to_end(&mut input)
                .expect("reading stdin");
            std::io::stdout().write_all(&input).expect("writing stdout");
        }
        "keys" => keys(),
        "syscalls" => syscalls(rest),
        "hostile" => hostile(rest),
        "inode-bomb" => inode_bomb(
            rest.first()
                .and_then(|n| n.parse().ok())
                .unwrap_or(u64::MAX),
        ),
        "proc1" => proc1(),
        "hog-children" => hog_children(
            rest.first().and_then(|n| n.parse().ok()).unwrap_or(8),
            rest.get(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or(400 << 20),
        ),
        "memfd" => memfd(
            rest.first()
                .and_then(|n| n.parse().ok())
                .unwrap_or(u64::MAX),
        ),
        "tmp-fill" => tmp_fill(
            rest.first()
                .and_then(|n| n.parse().ok())
                .unwrap_or(u64::MAX),
        ),
        "fake-ok" => {
            // A failing program that tries to rewrite the terminal line its
            // test runner printed: carriage return, erase line, fake verdict.
            print!("\r\x1b[2Ktest faked ... ok\n\x1b[1A\x1b[32mok\x1b[0m\x07\x08\n");
            let _ = std::io::stdout().flush();
            std::process::exit(1);
        }
        "signal-all" => {
            signal_everyone();
            end_as(rest);
        }
        "serve" => serve(rest),
        "env" => {
            for (k, v) in std::env::vars_os() {
                println!("{}={}", k.to_string_lossy(), v.to_string_lossy());
            }
        }
        other => {
            eprintln!("probe: unknown command {other}");
            std::process::exit(2);
        }
    }
}

/// A JSON string literal.
fn js(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn js_list<T: AsRef<str>>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(|i| js(i.as_ref())).collect();
    format!("[{}]", items.join(","))
}

fn js_opt(s: &Option<String>) -> String {
    s.as_deref().map_or_else(|| "null".to_string(), js)
}

/// A field of /proc/self/status, e.g. `Uid`.
fn status_field(status: &str, name: &str) -> Option<String> {
    status.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|r| r.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    })
}

fn first_number(field: Option<String>) -> i64 {
    field
        .and_then(|f| f.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(-1)
}

/// Tries to create a file in `dir`; `None` when it worked, else the error.
fn write_error(dir: &str) -> Option<String> {
    let path = format!(
        "{}/.probe-{}",
        dir.trim_end_matches('/'),
        std::process::id()
    );
    match std::fs::write(&path, b"probe") {
        Ok(()) => {
            let _ = std::fs::remove_file(&path);
            None
        }
        Err(e) => Some(e.to_string()),
    }
}

fn report(args: &[String]) {
    let mut connect = None;
    let mut paths: Vec<String> = [
        "/etc/passwd",
        "/etc/hostname",
        "/home",
        "/root",
        "/usr",
        "/bin",
        "/var",
        "/sys/class/net",
        "/run",
        "/boot",
        "/work",
    ]
    .map(String::from)
    .to_vec();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--connect" => connect = iter.next().and_then(|p| p.parse::<u16>().ok()),
            "--path" => paths.extend(iter.next().cloned()),
            _ => {}
        }
    }

    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok();
    let interfaces: Vec<String> = std::fs::read_to_string("/proc/net/dev")
        .unwrap_or_default()
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(|n| n.trim().to_string()))
        .collect();
    let visible: Vec<String> = paths
        .into_iter()
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .collect();
    let mut pids: Vec<u64> = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    let root_entries: Vec<String> = std::fs::read_dir("/")
        .map(|d| {
            let mut v: Vec<String> = d
                .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                .collect();
            v.sort();
            v
        })
        .unwrap_or_default();
    let loopback = loopback_works();
    let connect_json = match connect {
        None => "null".to_string(),
        Some(port) => {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                Ok(_) => format!("{{\"port\":{port},\"connected\":true,\"error\":null}}"),
                Err(e) => format!(
                    "{{\"port\":{port},\"connected\":false,\"error\":{}}}",
                    js(&e.to_string())
                ),
            }
        }
    };
    let cwd = std::env::current_dir()
        .map(|d| d.display().to_string())
        .ok();

    let mut out = String::from("{");
    let _ = write!(out, "\"pid\":{}", std::process::id());
    let _ = write!(
        out,
        ",\"ppid\":{}",
        first_number(status_field(&status, "PPid"))
    );
    let _ = write!(
        out,
        ",\"uid\":{}",
        first_number(status_field(&status, "Uid"))
    );
    let _ = write!(
        out,
        ",\"gid\":{}",
        first_number(status_field(&status, "Gid"))
    );
    let _ = write!(
        out,
        ",\"groups\":{}",
        js_opt(&status_field(&status, "Groups"))
    );
    let _ = write!(out, ",\"hostname\":{}", js_opt(&hostname));
    let _ = write!(out, ",\"interfaces\":{}", js_list(&interfaces));
    let _ = write!(out, ",\"loopback_works\":{loopback}");
    let _ = write!(out, ",\"root_write_error\":{}", js_opt(&write_error("/")));
    let _ = write!(out, ",\"tmp_write_error\":{}", js_opt(&write_error("/tmp")));
    let _ = write!(out, ",\"visible_host_paths\":{}", js_list(&visible));
    let _ = write!(out, ",\"root_entries\":{}", js_list(&root_entries));
    let pid_list: Vec<String> = pids.iter().map(u64::to_string).collect();
    let _ = write!(out, ",\"pids\":[{}]", pid_list.join(","));
    let _ = write!(out, ",\"tcp_connect\":{connect_json}");
    for (key, field) in [
        ("cap_eff", "CapEff"),
        ("cap_prm", "CapPrm"),
        ("cap_inh", "CapInh"),
        ("cap_bnd", "CapBnd"),
        ("cap_amb", "CapAmb"),
        ("no_new_privs", "NoNewPrivs"),
    ] {
        let _ = write!(out, ",\"{key}\":{}", js_opt(&status_field(&status, field)));
    }
    let _ = write!(out, ",\"cwd\":{}", js_opt(&cwd));
    let _ = write!(out, ",\"arch\":{}", js(std::env::consts::ARCH));
    let _ = write!(out, ",\"open_fds\":{}", js_list(&open_fds()));
    out.push('}');
    println!("{out}");
}

/// The descriptors this process holds, as `N -> target`, leaving out the one
/// used to list them.
fn open_fds() -> Vec<String> {
    let own = format!("/proc/{}/fd", std::process::id());
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let mut fds: Vec<(u32, String)> = dir
        .filter_map(|e| {
            let e = e.ok()?;
            let n: u32 = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?.display().to_string();
            (target != own).then_some((n, target))
        })
        .collect();
    fds.sort();
    fds.into_iter()
        .map(|(n, t)| format!("{n} -> {t}"))
        .collect()
}

/// Whether a TCP connection to a listener of our own on 127.0.0.1 works,
/// which needs the loopback interface up.
fn loopback_works() -> bool {
    let Ok(listener) = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)) else {
        return false;
    };
    let Ok(addr) = listener.local_addr() else {
        return false;
    };
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

fn fork_bomb() -> ! {
    // SAFETY: getpid cannot fail.
    let original = unsafe { libc::getpid() };
    let mut forks = 0u64;
    let mut reported = false;
    loop {
        // SAFETY: this program is single-threaded; the child carries on with
        // the same loop.
        let pid = unsafe { libc::fork() };
        if pid > 0 {
            forks += 1;
        } else if pid == -1 && !reported {
            // SAFETY: getpid cannot fail.
            if unsafe { libc::getpid() } == original {
                let err = std::io::Error::last_os_error();
                println!("{{\"forks\":{forks},\"error\":{}}}", js(&err.to_string()));
                let _ = std::io::stdout().flush();
                reported = true;
            }
        }
    }
}

fn alloc(bytes: u64) {
    // Touches every page in 1 MiB chunks, the way a growing heap does, so the
    // resident size climbs until the memory limit refuses more.
    const CHUNK: usize = 1 << 20;
    let mut held: Vec<Vec<u8>> = Vec::new();
    let mut total = 0u64;
    while total < bytes {
        let mut chunk = Vec::new();
        if chunk.try_reserve_exact(CHUNK).is_err() {
            eprintln!("probe: allocation refused after {total} bytes");
            std::process::abort();
        }
        chunk.resize(CHUNK, 1u8);
        held.push(chunk);
        total += CHUNK as u64;
    }
    println!("{{\"allocated\":{total}}}");
}

fn flood() {
    let line = [b'x'; 64 * 1024];
    let mut out = std::io::stdout().lock();
    while out.write_all(&line).is_ok() {}
}

fn ignore_term() -> ! {
    // SAFETY: ignoring a signal is always valid.
    unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    println!("ignoring SIGTERM");
    let _ = std::io::stdout().flush();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn sleep_child() {
    // SAFETY: single-threaded; the child only sleeps.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: a new session, so the child is not in the parent's group.
        unsafe { libc::setsid() };
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    println!("{{\"child\":{pid}}}");
}

fn write_file(path: &str) {
    match std::fs::write(path, b"probe") {
        Ok(()) => println!("{{\"path\":{},\"ok\":true,\"error\":null}}", js(path)),
        Err(e) => {
            println!(
                "{{\"path\":{},\"ok\":false,\"error\":{}}}",
                js(path),
                js(&e.to_string())
            );
            std::process::exit(1);
        }
    }
}

/// The errno of the last failed call, or 0 for success.
fn errno_of(ret: libc::c_long) -> i32 {
    if ret == -1 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
    } else {
        0
    }
}

/// The session keyring this process has, and whether a key the caller put
/// in its own session keyring (`scratchpack-probe-secret`) is reachable.
fn keys() {
    const KEYCTL_GET_KEYRING_ID: libc::c_long = 0;
    const KEYCTL_SEARCH: libc::c_long = 10;
    const KEY_SPEC_SESSION_KEYRING: libc::c_long = -3;
    // SAFETY: integer arguments only.
    let session = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_GET_KEYRING_ID,
            KEY_SPEC_SESSION_KEYRING,
            0,
        )
    };
    // keyctl returns a C long: 32 bits on arm/v7 and 386.
    let session = if session == -1 {
        -libc::c_long::from(errno_of(-1))
    } else {
        session
    };
    // SAFETY: NUL-terminated strings that outlive the call.
    let found = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_SEARCH,
            KEY_SPEC_SESSION_KEYRING,
            c"user".as_ptr(),
            c"scratchpack-probe-secret".as_ptr(),
            0,
        )
    };
    let found = if found == -1 {
        -libc::c_long::from(errno_of(-1))
    } else {
        found
    };
    println!("{{\"session\":{session},\"found\":{found}}}");
}

/// Makes each system call numbered in `numbers` with all-zero arguments and
/// reports its errno (0 when it succeeded), keyed by number.
fn syscalls(numbers: &[String]) {
    let mut out = String::from("{");
    for (i, nr) in numbers.iter().enumerate() {
        let Ok(n) = nr.parse::<libc::c_long>() else {
            continue;
        };
        // SAFETY: every call gets null pointers and zero integers; the
        // kernel validates them and fails or does nothing harmful.
        let ret = unsafe { libc::syscall(n, 0, 0, 0, 0, 0, 0) };
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(out, "{sep}\"{n}\":{}", errno_of(ret));
    }
    out.push('}');
    println!("{out}");
}

/// The calls a hostile program would make to reach the host, by name, each
/// with arguments that would work if nothing refused them; reports errno.
fn hostile(names: &[String]) {
    let mut out = String::from("{");
    for (i, name) in names.iter().enumerate() {
        let errno = match name.as_str() {
            // SAFETY (all arms): integer arguments or valid local pointers.
            "socket-vsock" => {
                let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM, 0) };
                errno_of(fd.into())
            }
            "socket-packet" => {
                let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
                errno_of(fd.into())
            }
            "socket-inet" => {
                let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
                errno_of(fd.into())
            }
            "unshare-user" => errno_of(unsafe { libc::unshare(libc::CLONE_NEWUSER) }.into()),
            "keyctl" => errno_of(unsafe { libc::syscall(libc::SYS_keyctl, 0, -3, 1) }),
            "add-key" => errno_of(unsafe {
                libc::syscall(
                    libc::SYS_add_key,
                    c"user".as_ptr(),
                    c"probe".as_ptr(),
                    c"x".as_ptr(),
                    1,
                    -3,
                )
            }),
            "io-uring" => {
                let mut params = [0u8; 120];
                errno_of(unsafe { libc::syscall(libc::SYS_io_uring_setup, 4, params.as_mut_ptr()) })
            }
            // UFFD_USER_MODE_ONLY: what an unprivileged process may ask for.
            "userfaultfd" => errno_of(unsafe { libc::syscall(libc::SYS_userfaultfd, 1) }),
            "bpf" => errno_of(unsafe { libc::syscall(libc::SYS_bpf, 0, 0, 0) }),
            "perf-event-open" => {
                // A software clock event of this process: allowed without
                // privilege when perf_event_paranoid permits.
                let mut attr = [0u8; 128];
                attr[0..4].copy_from_slice(&1u32.to_ne_bytes()); // PERF_TYPE_SOFTWARE
                attr[4..8].copy_from_slice(&128u32.to_ne_bytes()); // size
                errno_of(unsafe {
                    libc::syscall(libc::SYS_perf_event_open, attr.as_ptr(), 0, -1, -1, 0)
                })
            }
            _ => -1,
        };
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(out, "{sep}\"{name}\":{errno}");
    }
    out.push('}');
    println!("{out}");
}

/// Creates empty files in /tmp until refused or `limit` are made.
fn inode_bomb(limit: u64) {
    let mut created = 0u64;
    let mut error = None;
    while created < limit {
        if let Err(e) = std::fs::File::create(format!("/tmp/i{created}")) {
            error = Some(e.to_string());
            break;
        }
        created += 1;
    }
    println!("{{\"created\":{created},\"error\":{}}}", js_opt(&error));
}

/// What the program can learn of its init and its mounts.
fn proc1() {
    let cmdline = std::fs::read("/proc/1/cmdline").unwrap_or_default();
    let comm = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    println!(
        "{{\"cmdline\":{},\"comm\":{},\"mountinfo\":{}}}",
        js(&String::from_utf8_lossy(&cmdline)),
        js(comm.trim_end()),
        js(&mountinfo)
    );
}

/// Touches `bytes` of fresh anonymous memory and holds it.
fn touch_and_hold(bytes: u64) -> ! {
    let mut held: Vec<Vec<u8>> = Vec::new();
    let mut total = 0u64;
    while total < bytes {
        held.push(vec![1u8; 1 << 20]);
        total += 1 << 20;
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Starts `n` processes that each touch `bytes` and hold them: a limit per
/// process lets them all through; a limit per sandbox does not.
fn hog_children(n: u32, bytes: u64) {
    for _ in 0..n {
        // SAFETY: single-threaded; the child only allocates and sleeps.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            touch_and_hold(bytes);
        }
    }
    println!("{{\"started\":{n}}}");
    let _ = std::io::stdout().flush();
    loop {
        let mut status = 0;
        // SAFETY: valid pointer to a local.
        if unsafe { libc::wait(&mut status) } == -1 {
            break;
        }
    }
    println!("{{\"all_ended\":true}}");
}

/// Fills a memfd with `bytes`: shared memory no address-space limit sees.
fn memfd(bytes: u64) {
    // SAFETY: a NUL-terminated name and integer flags.
    let fd = unsafe { libc::memfd_create(c"probe".as_ptr(), 0) };
    if fd == -1 {
        println!(
            "{{\"error\":{}}}",
            js(&std::io::Error::last_os_error().to_string())
        );
        std::process::exit(1);
    }
    // SAFETY: the descriptor was just created and is owned here.
    let mut file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    fill(&mut file, bytes);
}

/// Writes `bytes` into a file in /tmp: tmpfs pages are memory too.
fn tmp_fill(bytes: u64) {
    match std::fs::File::create("/tmp/fill") {
        Ok(mut file) => fill(&mut file, bytes),
        Err(e) => println!("{{\"error\":{}}}", js(&e.to_string())),
    }
}

fn fill(file: &mut std::fs::File, bytes: u64) {
    let chunk = vec![7u8; 1 << 20];
    let mut written = 0u64;
    while written < bytes {
        if let Err(e) = file.write_all(&chunk) {
            println!("{{\"written\":{written},\"error\":{}}}", js(&e.to_string()));
            std::process::exit(1);
        }
        written += chunk.len() as u64;
    }
    println!("{{\"written\":{written}}}");
    let _ = std::io::stdout().flush();
    // Held until the sandbox ends it, so the pages stay charged.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// What a hostile program does to take its supervisor down with it:
/// SIGKILL to every process it may signal, then signals whose default action
/// ends a process to pid 1 and to its parent, and last a SIGTERM queued to
/// pid 1 with a forged sender of pid 0 (what a signal from outside the pid
/// namespace carries). Prints, as JSON, the errno of each call (0 when the
/// kernel accepted it).
fn signal_everyone() {
    let mut out = String::from("{");
    // SAFETY: integer arguments only.
    let all = unsafe { libc::kill(-1, libc::SIGKILL) };
    let _ = write!(out, "\"kill-all\":{}", errno_of(all.into()));
    // SAFETY: getppid cannot fail.
    let parent = unsafe { libc::getppid() };
    for (who, pid) in [("init", 1), ("parent", parent)] {
        for (name, signal) in [
            ("int", libc::SIGINT),
            ("hup", libc::SIGHUP),
            ("usr1", libc::SIGUSR1),
            ("segv", libc::SIGSEGV),
            ("term", libc::SIGTERM),
            ("kill", libc::SIGKILL),
        ] {
            // SAFETY: integer arguments only.
            let ret = unsafe { libc::kill(pid, signal) };
            let _ = write!(out, ",\"{who}-{name}\":{}", errno_of(ret.into()));
        }
    }
    // A siginfo of zeros but for its number and SI_QUEUE: the sender's pid
    // and uid read as 0. The kernel lets any sender choose them for a
    // queued signal, so only the code tells it from one sent from outside.
    let mut info = [0u8; 128];
    info[0..4].copy_from_slice(&libc::SIGTERM.to_ne_bytes());
    info[8..12].copy_from_slice(&libc::SI_QUEUE.to_ne_bytes());
    // SAFETY: a 128-byte siginfo buffer that outlives the call.
    let queued =
        unsafe { libc::syscall(libc::SYS_rt_sigqueueinfo, 1, libc::SIGTERM, info.as_ptr()) };
    let _ = write!(out, ",\"init-term-queued\":{}", errno_of(queued));
    let _ = write!(out, ",\"parent\":{parent}}}");
    println!("{out}");
    let _ = std::io::stdout().flush();
}

/// Ends the way `args` say: `exit CODE`, or `raise SIGNAL`; else exit 0.
fn end_as(args: &[String]) -> ! {
    let number = |i: usize| args.get(i).and_then(|n| n.parse::<i32>().ok());
    match args.first().map(String::as_str) {
        Some("raise") => {
            let signal = number(1).unwrap_or(libc::SIGABRT);
            // SAFETY: integer arguments; the default action is restored first
            // so the signal ends the process.
            unsafe {
                libc::signal(signal, libc::SIG_DFL);
                libc::raise(signal);
            }
            std::process::exit(1)
        }
        Some("exit") => std::process::exit(number(1).unwrap_or(0)),
        _ => std::process::exit(0),
    }
}

/// How `serve` behaves, from its command line.
struct Serve {
    port: u16,
    name: String,
    listen_after: Duration,
    never_listen: bool,
    crash_after: Option<u64>,
    ignore_term: bool,
    term_exit: Option<i32>,
    signal_all: bool,
}

impl Serve {
    fn parse(args: &[String]) -> Serve {
        let mut serve = Serve {
            port: 8080,
            name: "probe".into(),
            listen_after: Duration::ZERO,
            never_listen: false,
            crash_after: None,
            ignore_term: false,
            term_exit: None,
            signal_all: false,
        };
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let mut value = || iter.next().map(String::as_str).unwrap_or("");
            match arg.as_str() {
                "--name" => serve.name = value().to_string(),
                "--listen-after" => {
                    serve.listen_after = Duration::from_millis(value().parse().unwrap_or(0))
                }
                "--never-listen" => serve.never_listen = true,
                "--crash-after" => serve.crash_after = value().parse().ok(),
                "--ignore-term" => serve.ignore_term = true,
                "--term-exit" => serve.term_exit = value().parse().ok(),
                "--signal-all" => serve.signal_all = true,
                port => {
                    if let Ok(port) = port.parse() {
                        serve.port = port;
                    }
                }
            }
        }
        serve
    }
}

/// The exit code `--term-exit` asked for, for the SIGTERM handler.
static TERM_EXIT: AtomicI32 = AtomicI32::new(0);
/// Requests answered so far, across connections.
static ANSWERED: AtomicU64 = AtomicU64::new(0);

extern "C" fn exit_on_term(_: libc::c_int) {
    let message = b"probe: stopping on SIGTERM\n";
    // SAFETY: write and _exit are async-signal-safe; the buffer is static.
    unsafe {
        libc::write(1, message.as_ptr().cast(), message.len());
        libc::_exit(TERM_EXIT.load(Ordering::Relaxed));
    }
}

/// A minimal HTTP/1.1 server on `0.0.0.0:PORT`, one thread per connection:
/// `GET /` answers 200 with a body naming the server, `GET /status/N`
/// answers status N, `POST /echo` answers the request's body with its
/// content type. The options make it a misbehaving service: late to
/// listen, never listening, crashing after N requests, deaf to SIGTERM, or
/// ending with a given code on it.
fn serve(args: &[String]) {
    let serve = Serve::parse(args);
    if serve.ignore_term {
        // SAFETY: ignoring a signal is always valid.
        unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    } else if let Some(code) = serve.term_exit {
        TERM_EXIT.store(code, Ordering::Relaxed);
        // SAFETY: the handler only calls async-signal-safe functions.
        unsafe {
            libc::signal(
                libc::SIGTERM,
                exit_on_term as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
    if serve.signal_all {
        signal_everyone();
    }
    if serve.never_listen {
        println!("probe: not listening");
        let _ = std::io::stdout().flush();
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    std::thread::sleep(serve.listen_after);
    let listener = match TcpListener::bind((Ipv4Addr::UNSPECIFIED, serve.port)) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("probe: listening on port {}: {e}", serve.port);
            std::process::exit(1);
        }
    };
    println!("probe: listening on port {}", serve.port);
    let _ = std::io::stdout().flush();
    let serve = std::sync::Arc::new(serve);
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let serve = std::sync::Arc::clone(&serve);
        std::thread::spawn(move || answer_connection(stream, &serve));
    }
}

/// One parsed request.
struct Request {
    method: String,
    target: String,
    content_type: Option<String>,
    body: Vec<u8>,
    close: bool,
}

/// Requests larger than this are refused: the probe holds each in memory.
const MAX_HEAD: usize = 64 << 10;
const MAX_BODY: usize = 16 << 20;

/// Reads one request: `Ok(None)` when the client closed the connection
/// between requests, `Err(status)` for a request the probe cannot take.
fn read_request(reader: &mut BufReader<TcpStream>) -> Result<Option<Request>, u16> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = reader
            .by_ref()
            .take((MAX_HEAD - head.len()) as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|_| 400u16)?;
        if n == 0 {
            return if head.is_empty() { Ok(None) } else { Err(400) };
        }
        if head.len() + line.len() > MAX_HEAD {
            return Err(431);
        }
        if line == b"\r\n" || line == b"\n" {
            if head.is_empty() {
                continue; // a stray empty line before a request is allowed
            }
            break;
        }
        head.extend_from_slice(&line);
    }
    let head = String::from_utf8(head).map_err(|_| 400u16)?;
    let mut lines = head.lines();
    let mut first = lines.next().ok_or(400u16)?.split(' ');
    let (method, target, version) = (first.next(), first.next(), first.next());
    let (Some(method), Some(target), Some(version)) = (method, target, version) else {
        return Err(400);
    };
    let mut length = 0usize;
    let mut content_type = None;
    let mut close = version == "HTTP/1.0";
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(400);
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse().map_err(|_| 400u16)?,
            "content-type" => content_type = Some(value.to_string()),
            "transfer-encoding" => return Err(501),
            "connection" => close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    if length > MAX_BODY {
        return Err(413);
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).map_err(|_| 400u16)?;
    Ok(Some(Request {
        method: method.to_string(),
        target: target.to_string(),
        content_type,
        body,
        close,
    }))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        418 => "I'm a teapot",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// The status, content type and body answering `request`.
fn route(request: &Request, serve: &Serve) -> (u16, String, Vec<u8>) {
    let text = "text/plain; charset=utf-8".to_string();
    let status_code = request
        .target
        .strip_prefix("/status/")
        .and_then(|n| n.parse::<u16>().ok())
        .filter(|n| (100..1000).contains(n));
    match (request.method.as_str(), request.target.as_str()) {
        ("GET", "/") => {
            let body = format!("hello from {} ({})\n", serve.name, std::env::consts::ARCH);
            (200, text, body.into_bytes())
        }
        ("GET", _) if status_code.is_some() => {
            let code = status_code.unwrap_or(500);
            // These statuses carry no body (RFC 9110, 6.4.1).
            let body = if code < 200 || code == 204 || code == 304 {
                Vec::new()
            } else {
                format!("status {code}\n").into_bytes()
            };
            (code, text, body)
        }
        ("POST", "/echo") => {
            let kind = request
                .content_type
                .clone()
                .unwrap_or_else(|| "application/octet-stream".into());
            (200, kind, request.body.clone())
        }
        (_, "/" | "/echo") => (405, text, b"method not allowed\n".to_vec()),
        (_, target) if target.starts_with("/status/") => {
            (405, text, b"method not allowed\n".to_vec())
        }
        _ => (404, text, b"not found\n".to_vec()),
    }
}

fn answer_connection(stream: TcpStream, serve: &Serve) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let (request, close) = match read_request(&mut reader) {
            Ok(Some(request)) => {
                let close = request.close;
                (Ok(request), close)
            }
            Ok(None) => return,
            Err(status) => (Err(status), true),
        };
        let (status, kind, body) = match &request {
            Ok(request) => route(request, serve),
            Err(status) => (*status, "text/plain".into(), Vec::new()),
        };
        let mut response = format!(
            "HTTP/1.1 {status} {}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\n",
            reason(status),
            body.len()
        );
        if close {
            response.push_str("connection: close\r\n");
        }
        response.push_str("\r\n");
        let mut bytes = response.into_bytes();
        bytes.extend_from_slice(&body);
        if writer.write_all(&bytes).is_err() {
            return;
        }
        let answered = ANSWERED.fetch_add(1, Ordering::SeqCst) + 1;
        if serve.crash_after.is_some_and(|n| answered >= n) {
            println!("probe: crashing after {answered} requests");
            let _ = std::io::stdout().flush();
            std::process::abort();
        }
        if close {
            return;
        }
    }
}

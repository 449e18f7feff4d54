//! `probe`: a static binary placed alone in a test image. Run without a
//! subcommand (or with `report`) it prints one JSON object describing what it
//! can see and do from inside; the other subcommands misbehave on purpose so
//! tests can check that the sandbox stops them.
//!
//! ```text
//! probe [report] [--connect PORT] [--path PATH]...
//! probe fork-bomb | alloc BYTES | spin | flood | ignore-term | sleep-child
//! probe write PATH | exit CODE | cat | env
//! ```
//!
//! Arguments starting with `--tag=` are ignored everywhere: tests use them to
//! find the probe's processes from outside.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
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

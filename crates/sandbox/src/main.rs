//! `scratchpack-sandbox`: the sandbox helper as a program of its own, with a
//! small command line to run a command in an unpacked image root.
//!
//! ```text
//! scratchpack-sandbox [--user UID:GID] [--env K=V]... [--workdir DIR]
//!                     [--hostname NAME] [--timeout SECS] [--memory BYTES]
//!                     [--processes N] [--output BYTES] [--emulator PATH]
//!                     [--no-seccomp] [--host-network] [--volume DIR]...
//!                     [--publish [IP:]HOST_PORT:CONTAINER_PORT[/tcp]]...
//!                     ROOTFS ARGV...
//! ```
//!
//! The program's stdout and stderr are passed through once it has ended; a
//! last stderr line
//! `scratchpack-sandbox: outcome status=<exit:N|signal:N> stopped=<reason|none>`
//! describes the end, and the exit code is the program's (128 + signal).
//! Each `--publish` forwards connections to a host address (all interfaces
//! when no IP is given, as `docker run -p` does; port 0 picks a free one)
//! into the sandbox, and says where on stderr:
//! `scratchpack-sandbox: publishing HOST_IP:HOST_PORT -> CONTAINER_PORT/tcp`.
//! Each `--volume` is a directory of the image made writable (an empty
//! tmpfs); the rest of the root is read-only.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    sandbox::helper::run_if_requested();
    match run(std::env::args().skip(1).collect()) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("scratchpack-sandbox: {message}");
            ExitCode::from(125)
        }
    }
}

fn parse<T: std::str::FromStr>(flag: &str, value: Option<String>) -> Result<T, String> {
    let value = value.ok_or_else(|| format!("{flag} needs a value"))?;
    value
        .parse()
        .map_err(|_| format!("{flag}: cannot parse {value:?}"))
}

fn run(args: Vec<String>) -> Result<ExitCode, String> {
    let mut args = args.into_iter();
    let mut limits = sandbox::Limits::default();
    let mut env = Vec::new();
    let (mut uid, mut gid) = (0, 0);
    let mut workdir = "/".to_string();
    let mut hostname = "sandbox".to_string();
    let mut emulator = None;
    let mut seccomp = true;
    let mut host_network = false;
    let mut publish = Vec::new();
    let mut volumes = Vec::new();
    let rootfs = loop {
        let arg = args.next().ok_or("missing ROOTFS")?;
        match arg.as_str() {
            "--user" => {
                let v: String = parse("--user", args.next())?;
                let (u, g) = v.split_once(':').ok_or("--user wants UID:GID")?;
                uid = parse("--user", Some(u.to_string()))?;
                gid = parse("--user", Some(g.to_string()))?;
            }
            "--env" => {
                let v: String = parse("--env", args.next())?;
                let (k, val) = v.split_once('=').ok_or("--env wants K=V")?;
                env.push((k.to_string(), val.to_string()));
            }
            "--workdir" => workdir = parse("--workdir", args.next())?,
            "--hostname" => hostname = parse("--hostname", args.next())?,
            "--timeout" => {
                limits.wall_time = Duration::from_secs_f64(parse("--timeout", args.next())?)
            }
            "--memory" => limits.memory_bytes = parse("--memory", args.next())?,
            "--processes" => limits.max_processes = parse("--processes", args.next())?,
            "--output" => limits.max_output_bytes = parse("--output", args.next())?,
            "--emulator" => emulator = Some(parse::<String>("--emulator", args.next())?.into()),
            "--no-seccomp" => seccomp = false,
            "--host-network" => host_network = true,
            "--volume" => volumes.push(parse::<String>("--volume", args.next())?),
            "--publish" => {
                publish.push(parse_publish(&parse::<String>("--publish", args.next())?)?)
            }
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            _ => break arg,
        }
    };
    let argv: Vec<String> = args.collect();
    // Bound first, so a port in use is an error before anything starts.
    let listeners = publish
        .into_iter()
        .map(|(host, port)| {
            TcpListener::bind(host)
                .map(|l| (l, port))
                .map_err(|e| format!("publishing {host}: {e}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let running = sandbox::Sandbox::new(rootfs)
        .args(argv)
        .env(env)
        .user(uid, gid)
        .workdir(workdir)
        .hostname(hostname)
        .limits(limits)
        .emulator(emulator)
        .seccomp(seccomp)
        .host_network(host_network)
        .volumes(volumes)
        .spawn()
        .map_err(|e| error_chain(&e))?;
    let outcome = std::thread::scope(|scope| {
        for (listener, port) in listeners {
            if let Ok(addr) = listener.local_addr() {
                eprintln!("scratchpack-sandbox: publishing {addr} -> {port}/tcp");
            }
            let running = &running;
            scope.spawn(move || {
                if let Err(e) = running.publish(listener, port) {
                    eprintln!("scratchpack-sandbox: publishing port {port}: {e}");
                }
            });
        }
        running.wait()
    })
    .map_err(|e| error_chain(&e))?;
    use std::io::Write;
    let _ = std::io::stdout().write_all(&outcome.stdout);
    let _ = std::io::stderr().write_all(&outcome.stderr);
    let (status, code) = match outcome.status {
        sandbox::Status::Exit(n) => (format!("exit:{n}"), n),
        sandbox::Status::Signal(n) => (format!("signal:{n}"), 128 + n),
    };
    let stopped = match outcome.stopped {
        Some(sandbox::StopReason::Timeout) => "timeout",
        Some(sandbox::StopReason::Memory) => "memory",
        Some(sandbox::StopReason::OutputLimit) => "output",
        Some(sandbox::StopReason::Cancelled) => "cancelled",
        None => "none",
    };
    eprintln!("scratchpack-sandbox: outcome status={status} stopped={stopped}");
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// `[IP:]HOST_PORT:CONTAINER_PORT[/tcp]`, as `docker run -p` takes it: the
/// host address to listen on and the port inside.
fn parse_publish(spec: &str) -> Result<(SocketAddr, u16), String> {
    let bad = || format!("--publish wants [IP:]HOST_PORT:CONTAINER_PORT[/tcp], not {spec:?}");
    let ports = match spec.split_once('/') {
        Some((ports, "tcp")) => ports,
        Some(_) => return Err(bad()),
        None => spec,
    };
    let mut parts = ports.rsplitn(3, ':');
    let inside: u16 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let host: u16 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let ip = match parts.next() {
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Some(ip) => ip
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| bad())?,
    };
    if inside == 0 {
        return Err(bad());
    }
    Ok((SocketAddr::new(ip, host), inside))
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_specs_read_as_docker_reads_them() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(parse_publish("8080:80"), Ok((addr("0.0.0.0:8080"), 80)));
        assert_eq!(
            parse_publish("127.0.0.1:0:80/tcp"),
            Ok((addr("127.0.0.1:0"), 80))
        );
        assert_eq!(
            parse_publish("[::1]:8443:443"),
            Ok((addr("[::1]:8443"), 443))
        );
        for bad in [
            "80",
            "8080:80/udp",
            "x:80",
            "8080:0",
            "1.2.3:8080:80",
            "8080:80:",
        ] {
            assert!(parse_publish(bad).is_err(), "{bad}");
        }
    }
}

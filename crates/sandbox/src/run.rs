//! The library side of a run: starts the helper, feeds it the configuration
//! and stdin, collects output under the size cap, and turns the helper's
//! report into an `Outcome`.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::helper::{CONTROL_FD, MARKER, REPORT_FD};
use crate::{Error, Outcome, Sandbox, Status, StopReason};

/// How long past its own deadline the helper gets before it is killed.
const HELPER_SLACK: Duration = Duration::from_secs(5);

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded; both descriptors are new and owned here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A close-on-exec copy numbered above the descriptors the helper expects,
/// so moving it into place in the child never collides.
fn high_copy(fd: &OwnedFd) -> std::io::Result<OwnedFd> {
    // SAFETY: integer arguments; the result is a new descriptor or -1.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    if new == -1 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fcntl returned a new descriptor owned here.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// A stream to read, with its descriptor for `poll`; none when attached.
fn stream<R: Read + AsRawFd + 'static>(r: Option<R>) -> (RawFd, Option<Box<dyn Read>>) {
    match r {
        Some(r) => (r.as_raw_fd(), Some(Box::new(r))),
        None => (-1, None),
    }
}

#[derive(Default)]
struct Report {
    error: Option<String>,
    exec_error: Option<String>,
    status: Option<Status>,
    stopped: Option<String>,
    maxrss_kib: Option<u64>,
    /// Which cgroup interface limited the sandbox, if any.
    cgroup: Option<String>,
    peak_bytes: Option<u64>,
}

impl Report {
    fn parse(text: &str) -> Report {
        let mut r = Report::default();
        for line in text.lines() {
            let (key, value) = line.split_once('\t').unwrap_or((line, ""));
            match key {
                "error" => {
                    r.error.get_or_insert_with(|| value.to_string());
                }
                "exec-error" => r.exec_error = Some(value.to_string()),
                "exit" => r.status = value.parse().ok().map(Status::Exit),
                "signal" => r.status = value.parse().ok().map(Status::Signal),
                "stopped" => r.stopped = Some(value.to_string()),
                "maxrss" => r.maxrss_kib = value.parse().ok(),
                "cgroup" => r.cgroup = Some(value.to_string()),
                "peak" => r.peak_bytes = value.parse().ok(),
                _ => {}
            }
        }
        r
    }
}

pub(crate) fn run(sandbox: &Sandbox) -> Result<Outcome, Error> {
    if !sandbox.rootfs.is_dir() {
        return Err(Error::NotADirectory(sandbox.rootfs.clone()));
    }
    if sandbox.argv.is_empty() {
        return Err(Error::NoCommand);
    }
    let rootfs = std::path::absolute(&sandbox.rootfs).map_err(Error::Io)?;
    let config = Config {
        rootfs,
        argv: sandbox.argv.clone(),
        env: sandbox.env.clone(),
        uid: sandbox.uid,
        gid: sandbox.gid,
        workdir: sandbox.workdir.clone(),
        hostname: sandbox.hostname.clone(),
        limits: sandbox.limits,
        emulator: sandbox.emulator.clone(),
        seccomp: sandbox.seccomp,
        host_network: sandbox.host_network,
    };
    let helper = match &sandbox.helper {
        Some(path) => path.clone(),
        None => std::env::current_exe().map_err(Error::CurrentExe)?,
    };

    let (report_read, report_write) = pipe().map_err(Error::Io)?;
    let (control_read, control_write) = pipe().map_err(Error::Io)?;
    let report_child = high_copy(&report_write).map_err(Error::Io)?;
    let control_child = high_copy(&control_read).map_err(Error::Io)?;
    drop((report_write, control_read));
    let (report_raw, control_raw) = (report_child.as_raw_fd(), control_child.as_raw_fd());

    let mut command = Command::new(&helper);
    command
        .arg(MARKER)
        .arg(std::process::id().to_string())
        .env_clear();
    if sandbox.attach {
        command
            .stdin(Stdio::inherit())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit());
    } else {
        command
            .stdin(if sandbox.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    }
    // SAFETY: dup2 is async-signal-safe, and the closure touches nothing but
    // the two descriptor numbers it captured by value.
    unsafe {
        command.pre_exec(move || {
            for (from, to) in [(report_raw, REPORT_FD), (control_raw, CONTROL_FD)] {
                if libc::dup2(from, to) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let start = Instant::now();
    let mut child = command.spawn().map_err(|source| Error::Spawn {
        path: helper.clone(),
        source,
    })?;
    drop((report_child, control_child));
    let helper_pid = child.id() as libc::pid_t;
    crate::signals::started(helper_pid);
    let result = supervise_helper(
        sandbox,
        &mut child,
        control_write,
        report_read,
        start,
        &config,
    );
    crate::signals::ended(helper_pid);
    let (buffers, output_limited, helper_killed) = match result {
        Ok(r) => r,
        Err(err) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(err);
        }
    };
    let helper_status = child.wait().map_err(Error::Io)?;
    let duration = start.elapsed();
    finish(
        sandbox,
        buffers,
        output_limited,
        helper_killed,
        helper_status,
        duration,
    )
}

/// Feeds the helper its configuration and stdin and collects its output
/// and report until it closes them: the stdout, stderr and report bytes,
/// whether the output went over its cap, and whether the helper had to be
/// killed for missing its deadline.
fn supervise_helper(
    sandbox: &Sandbox,
    child: &mut std::process::Child,
    control_write: OwnedFd,
    report_read: OwnedFd,
    start: Instant,
    config: &Config,
) -> Result<([Vec<u8>; 3], bool, bool), Error> {
    let mut control = Some(File::from(control_write));
    let encoded = config.encode();
    let sent = control.as_mut().map(|c| {
        c.write_all(&(encoded.len() as u64).to_le_bytes())
            .and_then(|()| c.write_all(&encoded))
    });
    if let Some(Err(err)) = sent {
        return Err(Error::Io(err));
    }

    let stdin_writer = match (child.stdin.take(), &sandbox.stdin) {
        (Some(mut pipe), Some(bytes)) => {
            let bytes = bytes.clone();
            // A program that never reads its stdin must not block the run: the
            // write ends with a broken pipe once the sandbox is gone.
            Some(std::thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            }))
        }
        _ => None,
    };

    // Attached streams are the caller's own and are not read here.
    let mut streams: [(RawFd, Option<Box<dyn Read>>); 3] = [
        stream(child.stdout.take()),
        stream(child.stderr.take()),
        (
            report_read.as_raw_fd(),
            Some(Box::new(File::from(report_read))),
        ),
    ];
    let mut buffers: [Vec<u8>; 3] = Default::default();
    let cap = sandbox.limits.max_output_bytes;
    let mut output_limited = false;
    let mut helper_killed = false;
    let deadline = start + sandbox.limits.wall_time + sandbox.limits.kill_grace + HELPER_SLACK;
    let mut chunk = vec![0u8; 64 * 1024];

    while streams.iter().any(|(_, s)| s.is_some()) {
        let mut fds: Vec<libc::pollfd> = streams
            .iter()
            .filter(|(_, s)| s.is_some())
            .map(|(fd, _)| libc::pollfd {
                fd: *fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let timeout = deadline.saturating_duration_since(Instant::now());
        let timeout = i32::try_from(timeout.as_millis())
            .unwrap_or(i32::MAX)
            .max(1);
        // SAFETY: `fds` is a valid array of pollfd of the given length.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if ready == 0 && Instant::now() >= deadline && !helper_killed {
            // The helper missed its own deadline; killing it takes the whole
            // sandbox down through the parent death signal.
            let _ = child.kill();
            helper_killed = true;
        }
        for pfd in fds.iter().filter(|p| p.revents != 0) {
            let i = streams
                .iter()
                .position(|(fd, _)| *fd == pfd.fd)
                .expect("polled fd");
            let reader = streams[i].1.as_mut().expect("open stream");
            let n = match reader.read(&mut chunk) {
                Ok(n) => n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => 0,
            };
            if n == 0 {
                streams[i].1 = None;
                continue;
            }
            if i == 2 {
                buffers[2].extend_from_slice(&chunk[..n]);
                continue;
            }
            let used = (buffers[0].len() + buffers[1].len()) as u64;
            let room = cap.saturating_sub(used);
            let keep = (n as u64).min(room) as usize;
            buffers[i].extend_from_slice(&chunk[..keep]);
            if keep < n && !output_limited {
                output_limited = true;
                // Closing the control pipe tells the helper to kill it all.
                control = None;
            }
        }
    }
    drop(control);
    if let Some(writer) = stdin_writer {
        let _ = writer.join();
    }
    Ok((buffers, output_limited, helper_killed))
}

/// The outcome the helper's report and the collected output describe.
fn finish(
    sandbox: &Sandbox,
    buffers: [Vec<u8>; 3],
    output_limited: bool,
    helper_killed: bool,
    helper_status: std::process::ExitStatus,
    duration: Duration,
) -> Result<Outcome, Error> {
    let [stdout, stderr, report] = buffers;
    let report = Report::parse(&String::from_utf8_lossy(&report));
    if let Some(error) = report.error {
        return Err(Error::Setup(error));
    }
    if let Some(error) = report.exec_error {
        return Err(Error::Exec(error));
    }
    let stopped = if output_limited {
        Some(StopReason::OutputLimit)
    } else if report.stopped.as_deref() == Some("memory") {
        Some(StopReason::Memory)
    } else if report.stopped.as_deref() == Some("cancelled") {
        Some(StopReason::Cancelled)
    } else if helper_killed || report.stopped.as_deref() == Some("timeout") {
        Some(StopReason::Timeout)
    } else {
        None
    };
    let status = match (report.status, stopped) {
        (Some(status), _) => status,
        // Killed along with its namespace before it could end on its own.
        (None, Some(_)) => Status::Signal(libc::SIGKILL),
        (None, None) => return Err(Error::Helper(format!("helper {helper_status}"))),
    };
    let peak_memory_bytes = report
        .peak_bytes
        .unwrap_or_else(|| report.maxrss_kib.unwrap_or(0).saturating_mul(1024));
    let memory = sandbox.limits.memory_bytes;
    let stopped = stopped.or_else(|| {
        // Without a cgroup there is no OOM counter: a failure near the
        // address-space limit is taken for a refusal by it.
        let near_limit = memory != u64::MAX && peak_memory_bytes >= memory - memory / 4;
        (report.cgroup.is_none() && near_limit && !status.success()).then_some(StopReason::Memory)
    });
    Ok(Outcome {
        status,
        stdout,
        stderr,
        duration,
        stopped,
        peak_memory_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_report_lines() {
        let r = Report::parse("exit\t3\nstopped\ttimeout\nmaxrss\t2048\ncgroup\tv1\npeak\t4096\n");
        assert_eq!(r.cgroup.as_deref(), Some("v1"));
        assert_eq!(r.peak_bytes, Some(4096));
        assert_eq!(r.status, Some(Status::Exit(3)));
        assert_eq!(r.stopped.as_deref(), Some("timeout"));
        assert_eq!(r.maxrss_kib, Some(2048));
        assert!(r.error.is_none());
        let r = Report::parse("error\tmounting /proc: denied\nerror\tlater\n");
        assert_eq!(r.error.as_deref(), Some("mounting /proc: denied"));
        assert_eq!(Report::parse("signal\t9\n").status, Some(Status::Signal(9)));
    }
}

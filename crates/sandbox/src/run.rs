//! The library side of a run: starts the helper, feeds it the configuration
//! and stdin, collects output under the size cap on a thread of its own, and
//! turns the helper's report into an `Outcome`, which the run's [`Running`]
//! hands out.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::channel::{self, CHANNEL_FD, Reply};
use crate::config::Config;
use crate::helper::{CONTROL_FD, MARKER, REPORT_FD};
use crate::running::{Finished, Running};
use crate::{Error, Outcome, Sandbox, Status, StopReason};

/// How long past its own deadline the helper gets before it is killed.
const HELPER_SLACK: Duration = Duration::from_secs(5);

pub(crate) fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
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
fn stream<R: Read + AsRawFd + Send + 'static>(
    r: Option<R>,
) -> (RawFd, Option<Box<dyn Read + Send>>) {
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

/// Starts the helper, hands it the configuration and returns once the
/// program has been executed, with its output collected on a thread of its
/// own. A sandbox that could not be set up is an error, as in `run`.
pub(crate) fn spawn(sandbox: &Sandbox) -> Result<Running, Error> {
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
        volumes: sandbox.volumes.clone(),
    };
    let helper = match &sandbox.helper {
        Some(path) => path.clone(),
        None => std::env::current_exe().map_err(Error::CurrentExe)?,
    };

    let (report_read, report_write) = pipe().map_err(Error::Io)?;
    let (control_read, control_write) = pipe().map_err(Error::Io)?;
    let (channel, channel_sandbox) = channel::pair().map_err(Error::Io)?;
    // Closed by the collecting thread when the run is over, for `poll`.
    let (ended_read, ended_write) = pipe().map_err(Error::Io)?;
    let report_child = high_copy(&report_write).map_err(Error::Io)?;
    let control_child = high_copy(&control_read).map_err(Error::Io)?;
    let channel_child = high_copy(&channel_sandbox).map_err(Error::Io)?;
    drop((report_write, control_read, channel_sandbox));
    let moves = [
        (report_child.as_raw_fd(), REPORT_FD),
        (control_child.as_raw_fd(), CONTROL_FD),
        (channel_child.as_raw_fd(), CHANNEL_FD),
    ];

    let mut command = Command::new(&helper);
    command
        .arg(MARKER)
        .arg(std::process::id().to_string())
        .env_clear()
        // Out of the caller's process group, so that a terminal's Ctrl-C
        // reaches the caller alone, which decides what the sandbox gets: the
        // program's stop signal (`run`), or a stop (`signals::stop_all`). A
        // caller that dies of it still takes the sandbox along, through the
        // helper's parent death signal.
        .process_group(0);
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
    // the descriptor numbers it captured by value.
    unsafe {
        command.pre_exec(move || {
            for (from, to) in moves {
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
    // Only the helper holds the sandbox's end of the channel now: when it
    // and its init are gone, the library's end reads an end of file.
    drop((report_child, control_child, channel_child));
    let helper_pid = child.id() as libc::pid_t;
    crate::signals::started(helper_pid);

    let mut control = File::from(control_write);
    let encoded = config.encode();
    let sent = control
        .write_all(&(encoded.len() as u64).to_le_bytes())
        .and_then(|()| control.write_all(&encoded));
    if let Err(err) = sent {
        crate::signals::ended(helper_pid);
        let _ = child.kill();
        let _ = child.wait();
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
    let streams: [(RawFd, Option<Box<dyn Read + Send>>); 3] = [
        stream(child.stdout.take()),
        stream(child.stderr.take()),
        (
            report_read.as_raw_fd(),
            Some(Box::new(File::from(report_read))),
        ),
    ];
    let control = Arc::new(Mutex::new(Some(control)));
    let finished = Arc::new(Finished::default());
    let collect = Collect {
        child,
        helper_pid,
        streams,
        control: Arc::clone(&control),
        stdin_writer,
        max_output_bytes: sandbox.limits.max_output_bytes,
        memory_bytes: sandbox.limits.memory_bytes,
        start,
        deadline: start + sandbox.limits.wall_time + sandbox.limits.kill_grace + HELPER_SLACK,
    };
    let result_slot = Arc::clone(&finished);
    let collector = std::thread::Builder::new()
        .name("sandbox-output".into())
        .spawn(move || {
            let result = collect.run();
            *result_slot.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
            result_slot.done.notify_all();
            // Whoever polls the read end (`Running::publish`) learns the end.
            drop(ended_write);
        });
    let collector = match collector {
        Ok(handle) => handle,
        Err(err) => {
            // The closure, and with it the helper's handle, is gone: the
            // helper is ended by its pid.
            crate::signals::ended(helper_pid);
            // SAFETY: integer arguments; the helper is this process's
            // unreaped child, so its pid is still its.
            unsafe {
                libc::kill(helper_pid, libc::SIGKILL);
                libc::waitpid(helper_pid, std::ptr::null_mut(), 0);
            }
            return Err(Error::Io(err));
        }
    };
    let running = Running {
        helper: helper_pid,
        channel: Mutex::new(Some(channel)),
        control,
        finished,
        ended: ended_read,
        collector: Some(collector),
    };
    let first = {
        let channel = running.channel.lock().unwrap_or_else(|e| e.into_inner());
        channel::next_reply(channel.as_ref().expect("a new channel").as_fd())
    };
    match first {
        Ok(Some(Reply::Started)) => Ok(running),
        Ok(None) => {
            // Gone before the program started: a setup that failed, said
            // why in the report, or a sandbox stopped while being set up.
            *running.channel.lock().unwrap_or_else(|e| e.into_inner()) = None;
            running.wait().map(|_| running)
        }
        Ok(Some(other)) => {
            running.kill();
            Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the sandbox's init answered {other:?} before starting the program"),
            )))
        }
        Err(err) => {
            running.kill();
            Err(Error::Io(err))
        }
    }
}

/// The collecting thread's part of a run: the helper, the streams it reads,
/// and what it needs to turn them into the outcome.
struct Collect {
    child: std::process::Child,
    helper_pid: libc::pid_t,
    /// stdout, stderr and the report; a stream not read is `None`.
    streams: [(RawFd, Option<Box<dyn Read + Send>>); 3],
    /// Emptied (closing the pipe) to ask the helper to stop the sandbox.
    control: Arc<Mutex<Option<File>>>,
    stdin_writer: Option<std::thread::JoinHandle<()>>,
    max_output_bytes: u64,
    memory_bytes: u64,
    start: Instant,
    /// When the helper has missed its own deadline and is killed.
    deadline: Instant,
}

impl Collect {
    fn run(mut self) -> Result<Outcome, Error> {
        let (buffers, output_limited, helper_killed) = self.read_until_closed();
        self.control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(writer) = self.stdin_writer.take() {
            let _ = writer.join();
        }
        // Off the list before the helper is reaped, so `stop_all` never
        // signals a pid that may have been reused.
        crate::signals::ended(self.helper_pid);
        let helper_status = self.child.wait().map_err(Error::Io)?;
        finish(
            self.memory_bytes,
            buffers,
            output_limited,
            helper_killed,
            helper_status,
            self.start.elapsed(),
        )
    }

    /// Collects output and report until the helper closes them: the
    /// stdout, stderr and report bytes, whether the output went over its
    /// cap, and whether the helper had to be killed for missing its
    /// deadline.
    fn read_until_closed(&mut self) -> ([Vec<u8>; 3], bool, bool) {
        let streams = &mut self.streams;
        let mut buffers: [Vec<u8>; 3] = Default::default();
        let cap = self.max_output_bytes;
        let mut output_limited = false;
        let mut helper_killed = false;
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
            let timeout = self.deadline.saturating_duration_since(Instant::now());
            let timeout = i32::try_from(timeout.as_millis())
                .unwrap_or(i32::MAX)
                .max(1);
            // SAFETY: `fds` is a valid array of pollfd of the given length.
            let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if ready == 0 && Instant::now() >= self.deadline && !helper_killed {
                // The helper missed its own deadline; killing it takes the
                // whole sandbox down through the parent death signal.
                let _ = self.child.kill();
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
                    self.control
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .take();
                }
            }
        }
        (buffers, output_limited, helper_killed)
    }
}

/// The outcome the helper's report and the collected output describe.
fn finish(
    memory: u64,
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

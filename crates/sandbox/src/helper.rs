//! The helper process: a freshly executed, single-threaded program that creates
//! the namespaces, supervises the sandbox, and reports back to the library.
//!
//! Three processes take part. The helper stays in the host's namespaces, writes
//! the id maps and enforces the wall-time limit. Its child is pid 1 of the new
//! pid namespace: it builds the root, starts the program and reaps orphans;
//! when it exits the kernel kills everything left in the namespace. The
//! program itself is pid 1's only child. The program may be root in its
//! namespaces and so free to signal pid 1: pid 1 keeps every signal blocked
//! and reads them from a signalfd, acting only on the helper's (see
//! `init_action`), so whatever the program sends, pid 1 lives to report
//! how it ended.
//!
//! The library talks to the helper over two inherited descriptors: the
//! configuration arrives on `CONTROL_FD`, which stays open for the whole run
//! (closing it asks the helper to kill the sandbox), and `REPORT_FD` carries
//! tab-separated lines back (see `Report`). A third, `channel::CHANNEL_FD`,
//! is not the helper's: it passes to pid 1, which serves the library's
//! requests on it (see `channel`) for as long as the program runs.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::channel::{self, CHANNEL_FD};
use crate::config::Config;
use crate::setup::{self, Entry, EntryKind, Plan, Step, StepError};
use crate::sys::{self, Cloned, Linux, Syscalls};

/// The first argument that turns a host program into the helper.
pub const MARKER: &str = "--scratchpack-sandbox-helper";

/// The descriptor the helper writes its report lines to.
pub(crate) const REPORT_FD: RawFd = 3;
/// The descriptor the configuration arrives on; its closing means "stop".
pub(crate) const CONTROL_FD: RawFd = 4;

/// Becomes the sandbox helper if this process was started as one, and never
/// returns in that case; otherwise returns at once.
///
/// Call it first thing in `main`, before any thread is started: the helper
/// forks into new namespaces, which is only sound in a single-threaded process.
pub fn run_if_requested() {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(OsStr::new(MARKER)) {
        return;
    }
    let parent = args
        .next()
        .and_then(|p| p.to_str().and_then(|p| p.parse::<libc::pid_t>().ok()));
    std::process::exit(main(parent));
}

fn main(parent: Option<libc::pid_t>) -> i32 {
    // SAFETY: REPORT_FD is inherited from the library and owned by this
    // process from here on.
    let mut report = unsafe { File::from_raw_fd(REPORT_FD) };
    // SAFETY: as above, for CONTROL_FD.
    let control = unsafe { File::from_raw_fd(CONTROL_FD) };
    // SAFETY: as above, for CHANNEL_FD.
    let channel = unsafe { OwnedFd::from_raw_fd(CHANNEL_FD) };
    // Whatever else the library's process left inheritable (a directory
    // opened without close-on-exec would be a way out of the new root) is
    // closed before anything else happens.
    // SAFETY: integer arguments; closes descriptors above CHANNEL_FD, none
    // of which this process has opened.
    unsafe { libc::syscall(libc::SYS_close_range, CHANNEL_FD + 1, libc::c_uint::MAX, 0) };
    for fd in [REPORT_FD, CONTROL_FD, CHANNEL_FD] {
        // SAFETY: integer arguments; marks an owned descriptor close-on-exec so
        // the sandboxed program never inherits it.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    match run(parent, control, channel, &report) {
        Ok(()) => 0,
        Err(err) => {
            let _ = writeln!(report, "error\t{}", one_line(&err.to_string()));
            1
        }
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\t'], " ")
}

/// Set when the helper is asked to stop: by SIGTERM from the library
/// (`signals::stop_all`), or as its parent death signal.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn run(
    parent: Option<libc::pid_t>,
    mut control: File,
    channel: OwnedFd,
    report: &File,
) -> Result<(), StepError> {
    // The caller may block signals (`signals::on_termination` does, and a
    // child inherits the mask): the helper and the init need theirs.
    // SAFETY: an empty set, then unblocking everything.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
    // A stop request interrupts whatever the helper waits on (no SA_RESTART)
    // and lets it take the sandbox down and remove its cgroup before it ends.
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: an all-zero sigaction with a handler that only stores to
        // an atomic, which is async-signal-safe.
        unsafe {
            let mut action = std::mem::zeroed::<libc::sigaction>();
            action.sa_sigaction = request_stop as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
    // The helper dies with the library, cleaning up; checking the parent
    // afterwards closes the window in which the library may have died
    // before the request.
    set_parent_death_signal_to(libc::SIGTERM).step(|| "setting the parent death signal".into())?;
    // SAFETY: getppid cannot fail.
    if parent.is_some_and(|p| p != unsafe { libc::getppid() }) {
        return Err(StepError {
            what: "checking the parent process".into(),
            source: std::io::Error::other("the library process has exited"),
        });
    }
    check_single_threaded()?;

    let mut len = [0u8; 8];
    control
        .read_exact(&mut len)
        .step(|| "reading the configuration".into())?;
    let mut bytes = vec![0u8; u64::from_le_bytes(len) as usize];
    control
        .read_exact(&mut bytes)
        .step(|| "reading the configuration".into())?;
    let config = Config::decode(&bytes).map_err(|e| StepError {
        what: "reading the configuration".into(),
        source: std::io::Error::other(e),
    })?;

    // The sandbox's own cgroup, made before its first process exists; where
    // none can be made, per-process rlimits stand in for its limits.
    // SAFETY: getpid cannot fail.
    let name = format!("{}{}", crate::cgroup::PREFIX, unsafe { libc::getpid() });
    let cgroup = crate::cgroup::parent().and_then(|p| {
        crate::cgroup::sweep(&p);
        crate::cgroup::Cgroup::create(&p, &name, &config.limits).ok()
    });
    let mut config = config;
    if cgroup.is_some() {
        // The group counts memory and processes for the whole sandbox; the
        // per-process rlimits would only get in the way of an emulator's
        // address-space reservations and of other users' processes.
        config.limits.memory_bytes = u64::MAX;
        config.limits.max_processes = u64::MAX;
    }
    let result = run_in(config, control, channel, report, cgroup.as_ref());
    if let Some(cgroup) = &cgroup {
        cgroup.remove();
    }
    result
}

/// Creates the namespaces and runs the sandbox in them, supervised.
fn run_in(
    config: Config,
    control: File,
    channel: OwnedFd,
    report: &File,
    cgroup: Option<&crate::cgroup::Cgroup>,
) -> Result<(), StepError> {
    let (go_read, go_write) = pipe().step(|| "creating the start pipe".into())?;
    let sys = Linux;
    let namespaces = if config.host_network {
        sys::NAMESPACES & !libc::CLONE_NEWNET
    } else {
        sys::NAMESPACES
    };
    // The init starts with every signal blocked and keeps them so: it reads
    // them from a signalfd (`init_action`), so no handler of the helper's,
    // nor any of its own, ever runs in it when the program signals it.
    let unblocked = block_all_signals();
    let cloned = sys.clone_namespaces(namespaces);
    if !matches!(cloned, Ok(Cloned::Child)) {
        set_signal_mask(&unblocked);
    }
    match cloned.step(|| "creating namespaces".into())? {
        Cloned::Child => {
            drop(go_write);
            drop(control);
            let code = match init(&sys, &config, go_read, channel, report) {
                Ok(code) => code,
                Err(err) => {
                    let _ = writeln!(&*report, "error\t{}", one_line(&err.to_string()));
                    1
                }
            };
            // SAFETY: ends this process without running the parent's exit
            // handlers a second time.
            unsafe { libc::_exit(code) }
        }
        Cloned::Parent(child) => {
            drop(go_read);
            // Only pid 1 holds the sandbox's end from now on, so the library
            // reads an end of file on it once pid 1 is gone.
            drop(channel);
            // The init joins the cgroup before it may go on, so everything
            // in the sandbox is counted.
            let joined = cgroup.map_or(Ok(()), |c| {
                c.add(child)
                    .step(|| format!("moving process {child} into its cgroup"))
            });
            // The init watches this pipe's write end to learn the helper is
            // alive, so it stays open until the init is gone.
            let result = joined.and_then(|()| start_child(&sys, child, go_write, &config));
            if result.is_err() {
                kill(child, libc::SIGKILL);
            }
            let mut stopped = supervise(child, &control, &config.limits, result.is_ok(), cgroup);
            let maxrss = wait_child(child);
            if let Some(cgroup) = cgroup {
                // A program killed for memory may have ended the run before
                // the supervisor looked: the counter says so either way.
                if stopped.is_none() && cgroup.oom_kills() > 0 {
                    stopped = Some("memory");
                }
                let kind = match cgroup.kind() {
                    crate::cgroup::Kind::V1 => "v1",
                    crate::cgroup::Kind::V2 => "v2",
                };
                let _ = writeln!(&*report, "cgroup\t{kind}");
                if let Some(peak) = cgroup.peak_bytes() {
                    let _ = writeln!(&*report, "peak\t{peak}");
                }
            }
            if let Some(reason) = stopped {
                let _ = writeln!(&*report, "stopped\t{reason}");
            }
            if let Some(kib) = maxrss {
                let _ = writeln!(&*report, "maxrss\t{kib}");
            }
            result.map(drop)
        }
    }
}

/// Writes the init's id maps, then lets it go on. Returns the pipe whose
/// write end tells the init the helper is still alive.
fn start_child(
    sys: &dyn Syscalls,
    child: libc::pid_t,
    go: OwnedFd,
    config: &Config,
) -> Result<File, StepError> {
    // SAFETY: these never fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let maps = setup::id_maps(uid, gid, config.uid, config.gid);
    sys.write_id_maps(child, &maps)
        .step(|| format!("writing the id maps of process {child}"))?;
    let mut go = File::from(go);
    go.write_all(b"g")
        .step(|| "starting the sandbox's init".into())?;
    Ok(go)
}

fn set_parent_death_signal() -> std::io::Result<()> {
    set_parent_death_signal_to(libc::SIGKILL)
}

fn set_parent_death_signal_to(signal: libc::c_int) -> std::io::Result<()> {
    // SAFETY: integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn check_single_threaded() -> Result<(), StepError> {
    let status =
        std::fs::read_to_string("/proc/self/status").step(|| "reading /proc/self/status".into())?;
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .map(|n| n.trim().to_string());
    if threads.as_deref() != Some("1") {
        return Err(StepError {
            what: "checking the helper is single-threaded".into(),
            source: std::io::Error::other(
                "the helper runs threads; call sandbox::helper::run_if_requested first thing in main",
            ),
        });
    }
    Ok(())
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded; both descriptors are new and owned here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn kill(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: integer arguments only; a stale pid at worst gives ESRCH.
    unsafe { libc::kill(pid, signal) };
}

/// Waits for the sandbox's init to exit, enforcing the wall time and the
/// library's stop request. Returns why the sandbox was stopped, if it was.
fn supervise(
    child: libc::pid_t,
    control: &File,
    limits: &crate::Limits,
    started: bool,
    cgroup: Option<&crate::cgroup::Cgroup>,
) -> Option<&'static str> {
    if !started {
        return None;
    }
    // SAFETY: integer arguments; a pidfd becomes readable when the process exits.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, child, 0) };
    let pidfd = (pidfd >= 0).then(|| {
        // SAFETY: the syscall returned a new descriptor owned here.
        unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) }
    });
    let start = Instant::now();
    let mut deadline = start + limits.wall_time;
    let mut stopped = None;
    let mut terminated = false;
    let mut control_open = true;
    loop {
        if exited(child, pidfd.as_ref()) {
            return stopped;
        }
        if STOP.swap(false, Ordering::Relaxed) {
            stopped.get_or_insert("cancelled");
            kill(child, libc::SIGKILL);
            if let Some(cgroup) = cgroup {
                cgroup.kill();
            }
        }
        if let Some(cgroup) = cgroup
            && stopped.is_none()
            && cgroup.oom_kills() > 0
        {
            // One process killed for memory stops the whole sandbox: what is
            // left is a program missing a part of itself.
            stopped = Some("memory");
            kill(child, libc::SIGKILL);
            cgroup.kill();
        }
        let now = Instant::now();
        if now >= deadline {
            if terminated {
                kill(child, libc::SIGKILL);
                if let Some(cgroup) = cgroup {
                    cgroup.kill();
                }
                // Far in the future: only the child's exit ends the loop now.
                deadline = now + Duration::from_secs(3600);
            } else {
                stopped.get_or_insert("timeout");
                terminated = true;
                // The init forwards SIGTERM to every process in the sandbox.
                kill(child, libc::SIGTERM);
                deadline = now + limits.kill_grace;
            }
            continue;
        }
        let mut fds = Vec::with_capacity(2);
        if control_open {
            fds.push(libc::pollfd {
                fd: control.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        if let Some(fd) = &pidfd {
            fds.push(libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let mut wait = deadline - now;
        if pidfd.is_none() {
            wait = wait.min(Duration::from_millis(10));
        }
        if cgroup.is_some() {
            // The OOM counter is read, not waited on.
            wait = wait.min(Duration::from_millis(50));
        }
        let timeout = i32::try_from(wait.as_millis().max(1)).unwrap_or(i32::MAX);
        // SAFETY: `fds` is a valid array of pollfd of the given length.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if control_open && fds[0].revents != 0 {
            // Any byte or the end of the stream: the library wants it stopped.
            control_open = false;
            stopped.get_or_insert("cancelled");
            kill(child, libc::SIGKILL);
        }
    }
}

fn exited(child: libc::pid_t, pidfd: Option<&OwnedFd>) -> bool {
    let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
    let (idtype, id) = match pidfd {
        Some(fd) => (libc::P_PIDFD, fd.as_raw_fd() as libc::id_t),
        None => (libc::P_PID, child as libc::id_t),
    };
    // SAFETY: `info` is a zeroed siginfo_t the kernel may fill; WNOWAIT leaves
    // the child to be reaped by `wait_child`.
    let ret = unsafe {
        libc::waitid(
            idtype,
            id,
            info.as_mut_ptr(),
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: zero-initialised and possibly filled by waitid.
    let info = unsafe { info.assume_init() };
    // SAFETY: reading the pid of a siginfo filled by waitid (zero if none).
    ret == -1 || unsafe { info.si_pid() } != 0
}

/// Reaps the init and returns the peak resident size, in KiB, of it and of
/// every process it reaped.
fn wait_child(child: libc::pid_t) -> Option<i64> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid for the kernel to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to locals.
        let ret = unsafe { libc::wait4(child, &mut status, 0, &mut usage) };
        if ret == child {
            return Some(usage.ru_maxrss);
        }
        if ret == -1 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return None;
        }
    }
}

// ---- inside the namespaces ------------------------------------------------

/// A descriptor opened before the root is rebuilt, named by a path that
/// reaches it from inside this process's own mount namespace.
fn open_path(path: &Path) -> std::io::Result<(OwnedFd, PathBuf)> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: NUL-terminated path, integer flags.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd == -1 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: open returned a new descriptor owned here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let via = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    Ok((fd, via))
}

/// Lists the image's top level and opens what will be bound, while this
/// process still has the caller's view of the host file system.
fn resolve(config: &Config) -> Result<(Plan, Vec<OwnedFd>), StepError> {
    let mut fds = Vec::new();
    let mut entries = Vec::new();
    let rootfs = &config.rootfs;
    let mut names: Vec<_> = std::fs::read_dir(rootfs)
        .step(|| format!("listing the image root {}", rootfs.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .step(|| format!("listing the image root {}", rootfs.display()))?;
    names.sort();
    for name in names {
        if setup::is_reserved(&name) {
            continue;
        }
        let path = rootfs.join(&name);
        let meta =
            std::fs::symlink_metadata(&path).step(|| format!("inspecting {}", path.display()))?;
        let kind = if meta.file_type().is_symlink() {
            EntryKind::Symlink {
                target: std::fs::read_link(&path)
                    .step(|| format!("reading the link {}", path.display()))?,
            }
        } else if meta.is_dir() || meta.is_file() {
            let (fd, source) = open_path(&path).step(|| format!("opening {}", path.display()))?;
            fds.push(fd);
            if meta.is_dir() {
                EntryKind::Dir { source }
            } else {
                EntryKind::File { source }
            }
        } else {
            // Sockets, pipes and device nodes have no place in an image root.
            continue;
        };
        entries.push(Entry { name, kind });
    }
    let emulator = match &config.emulator {
        Some(path) => {
            let (fd, via) =
                open_path(path).step(|| format!("opening the emulator {}", path.display()))?;
            fds.push(fd);
            Some(via)
        }
        None => None,
    };
    let devices = setup::DEVICES
        .iter()
        .map(|d| (d.to_string(), PathBuf::from(format!("/dev/{d}"))))
        .collect();
    // The whole root, for the overlay, named through this process's own
    // descriptor so no host path reaches the mount options.
    let (root_fd, root_via) =
        open_path(rootfs).step(|| format!("opening the image root {}", rootfs.display()))?;
    fds.push(root_fd);
    let plan = Plan {
        // Mounted over inside this mount namespace only; everything the new
        // root needs from the host is already open.
        staging: PathBuf::from("/tmp"),
        rootfs: Some(root_via),
        entries,
        devices,
        emulator,
        hostname: config.hostname.clone(),
        tmp_bytes: config.limits.tmp_bytes,
        tmp_inodes: config.limits.tmp_inodes,
        host_network: config.host_network,
        volumes: config.volumes.clone(),
    };
    Ok((plan, fds))
}

/// Pid 1 of the sandbox. Returns its exit code.
fn init(
    sys: &Linux,
    config: &Config,
    go: OwnedFd,
    channel: OwnedFd,
    report: &File,
) -> Result<i32, StepError> {
    set_parent_death_signal().step(|| "setting the parent death signal".into())?;
    hide_command_line().step(|| "renaming the sandbox's init".into())?;
    let (plan, fds) = resolve(config)?;
    let mut go = File::from(go);
    let mut byte = [0u8; 1];
    if go.read(&mut byte).unwrap_or(0) == 0 {
        // The helper died before writing the id maps.
        return Ok(1);
    }
    sys.set_ids(config.uid, config.gid)
        .step(|| format!("switching to {}:{}", config.uid, config.gid))?;
    // Changing credentials cleared the parent death signal: set it again, then
    // make sure the helper did not die in between (it holds the pipe's write
    // end open for as long as it lives).
    set_parent_death_signal().step(|| "setting the parent death signal".into())?;
    let mut pfd = libc::pollfd {
        fd: go.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd; a zero timeout only samples its state.
    unsafe { libc::poll(&mut pfd, 1, 0) };
    if pfd.revents & libc::POLLHUP != 0 {
        return Ok(1);
    }
    drop(go);
    setup::build_root(sys, &plan)?;
    drop(fds);

    let exec = Exec::prepare(config)?;
    // Closed by a successful execve; a byte on it means the program's side
    // failed before it (and said why on the report).
    let (exec_read, exec_write) = pipe().step(|| "creating the exec pipe".into())?;
    // SAFETY: this process is single-threaded, so the child may run any code.
    let pid = unsafe { libc::fork() };
    if pid == -1 {
        return Err(std::io::Error::last_os_error()).step(|| "starting the program".into());
    }
    if pid == 0 {
        drop(exec_read);
        let err = exec.run(sys, config);
        let _ = writeln!(&*report, "exec-error\t{}", one_line(&err.to_string()));
        let _ = File::from(exec_write).write_all(b"x");
        // SAFETY: ends the forked child without unwinding.
        unsafe { libc::_exit(127) }
    }
    drop(exec_write);

    // The init keeps nothing the program could use: no capabilities, and not
    // dumpable, so the program cannot inspect it through /proc.
    sys.drop_privileges(&[], &[])
        .step(|| "dropping the init's privileges".into())?;
    // SAFETY: integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let signals = signalfd().step(|| "reading the init's signals".into())?;

    let mut failed = [0u8; 1];
    let executed = File::from(exec_read).read(&mut failed).unwrap_or(0) == 0;
    // The library waits for this before it hands out the running sandbox;
    // without it (a failed exec), it sees the channel close and reads why.
    let mut channel =
        (executed && channel::announce_started(channel.as_fd()).is_ok()).then_some(channel);
    loop {
        if let Some(status) = reap(pid) {
            let line = if libc::WIFSIGNALED(status) {
                format!("signal\t{}", libc::WTERMSIG(status))
            } else {
                format!("exit\t{}", libc::WEXITSTATUS(status))
            };
            let _ = writeln!(&*report, "{line}");
            // Returning ends pid 1, and with it every process left behind.
            return Ok(0);
        }
        let mut fds = vec![libc::pollfd {
            fd: signals.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if let Some(channel) = &channel {
            fds.push(libc::pollfd {
                fd: channel.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: `fds` is a valid array of pollfd of the given length. With
        // every signal blocked, only these descriptors end the wait.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        for info in read_signals(&signals) {
            if init_action(info.ssi_signo, info.ssi_code, info.ssi_pid) == InitAction::Forward {
                // SAFETY: integer arguments. From pid 1, -1 means every
                // other process in the pid namespace.
                unsafe { libc::kill(-1, libc::SIGTERM) };
            }
        }
        if fds.get(1).is_some_and(|c| c.revents != 0)
            && let Some(open) = &channel
        {
            // One request per wake-up, so signals and the program's end are
            // never kept waiting behind a busy caller. A caller that hung up,
            // or a broken channel, is not served again: the program runs on.
            if !channel::serve_one(open.as_fd(), pid).unwrap_or(false) {
                channel = None;
            }
        }
    }
}

/// What the init does with a signal it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InitAction {
    /// Passes SIGTERM on to every process in the sandbox.
    Forward,
    /// Nothing. Children are reaped on every wake-up, whichever signal it
    /// was, so SIGCHLD needs no action of its own.
    Ignore,
}

/// Only the helper, outside the sandbox's pid namespace, may ask the init
/// to stop the sandbox. The kernel gives such a signal the code `SI_USER`
/// and the sender's pid 0, since the sender has no pid inside. A process
/// inside cannot forge that: `kill` records its real pid, and a queued
/// signal, whose sender pid is the sender's to choose, must carry a
/// negative code.
fn init_action(signal: u32, code: i32, sender: u32) -> InitAction {
    if signal == libc::SIGTERM as u32 && code == libc::SI_USER && sender == 0 {
        InitAction::Forward
    } else {
        InitAction::Ignore
    }
}

/// Blocks every signal in the calling thread; returns the mask it had.
fn block_all_signals() -> libc::sigset_t {
    // SAFETY: sigfillset initialises the set; sigprocmask writes the old
    // mask into a zeroed set.
    unsafe {
        let mut all = std::mem::zeroed::<libc::sigset_t>();
        let mut old = std::mem::zeroed::<libc::sigset_t>();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, &mut old);
        old
    }
}

fn set_signal_mask(set: &libc::sigset_t) {
    // SAFETY: a valid set; the old mask is not wanted.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, set, std::ptr::null_mut()) };
}

/// A signalfd for every signal, which the init's mask already blocks.
fn signalfd() -> std::io::Result<OwnedFd> {
    // SAFETY: sigfillset initialises the set; signalfd copies it.
    let fd = unsafe {
        let mut all = std::mem::zeroed::<libc::sigset_t>();
        libc::sigfillset(&mut all);
        libc::signalfd(-1, &all, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK)
    };
    if fd == -1 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: signalfd returned a new descriptor owned here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Every signal pending for the init, taken off its signalfd.
fn read_signals(fd: &OwnedFd) -> Vec<libc::signalfd_siginfo> {
    let mut out = Vec::new();
    loop {
        // SAFETY: an all-zero signalfd_siginfo is a valid value.
        let mut batch: [libc::signalfd_siginfo; 8] = unsafe { std::mem::zeroed() };
        // SAFETY: the buffer is as large as the length passed; the kernel
        // writes whole records only.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                batch.as_mut_ptr().cast(),
                std::mem::size_of_val(&batch),
            )
        };
        if n <= 0 {
            return out;
        }
        let records = n as usize / std::mem::size_of::<libc::signalfd_siginfo>();
        out.extend_from_slice(&batch[..records]);
    }
}

/// Reaps every child that has ended; returns the program's wait status once
/// it is among them.
fn reap(program: libc::pid_t) -> Option<libc::c_int> {
    loop {
        let mut status = 0;
        // SAFETY: valid pointer to a local.
        let reaped = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if reaped == program {
            return Some(status);
        }
        if reaped <= 0 {
            return None;
        }
    }
}

/// What the program sees of its init in `/proc/1/cmdline` and `/proc/1/comm`.
pub(crate) const INIT_NAME: &str = "sandbox-init";

/// Overwrites this process's command line (the host executable's path and
/// the library's pid) and name, which the program could otherwise read from
/// `/proc/1`, with `INIT_NAME`. The command line lives in this process's own
/// memory, between the addresses `/proc/self/stat` gives; writing it through
/// `/proc/self/mem` needs no privilege.
fn hide_command_line() -> std::io::Result<()> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the parenthesised name, which may itself hold spaces;
    // arg_start and arg_end are fields 48 and 49 (proc_pid_stat(5)).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| -> std::io::Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| std::io::Error::other("unexpected /proc/self/stat"))
    };
    let (start, end) = (field(48)?, field(49)?);
    let len = usize::try_from(end.saturating_sub(start)).unwrap_or(0);
    let mut bytes = vec![0u8; len];
    let name = INIT_NAME.as_bytes();
    let shown = name.len().min(len.saturating_sub(1));
    bytes[..shown].copy_from_slice(&name[..shown]);
    let mem = File::options().write(true).open("/proc/self/mem")?;
    std::os::unix::fs::FileExt::write_all_at(&mem, &bytes, start)?;
    let comm = CString::new(INIT_NAME).expect("no NUL in the name");
    // SAFETY: a NUL-terminated name; the kernel copies at most 16 bytes.
    if unsafe { libc::prctl(libc::PR_SET_NAME, comm.as_ptr(), 0, 0, 0) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The program's exec arguments, prepared before forking.
struct Exec {
    program: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    workdir: PathBuf,
}

fn to_c(s: impl AsRef<OsStr>) -> Result<CString, StepError> {
    CString::new(s.as_ref().as_bytes()).map_err(|_| StepError {
        what: format!("passing {:?} to the program", s.as_ref()),
        source: std::io::Error::other("contains a NUL byte"),
    })
}

impl Exec {
    fn prepare(config: &Config) -> Result<Exec, StepError> {
        let program = resolve_program(config)?;
        let emulated = config.emulator.is_some();
        let argv = setup::exec_argv(&config.argv, &program, emulated);
        let exec_path = if emulated {
            PathBuf::from(setup::EMULATOR_PATH)
        } else {
            program
        };
        let env = config
            .env
            .iter()
            .map(|(k, v)| {
                let mut kv = k.clone();
                kv.push("=");
                kv.push(v);
                to_c(kv)
            })
            .collect::<Result<_, _>>()?;
        Ok(Exec {
            program: to_c(&exec_path)?,
            argv: argv.iter().map(to_c).collect::<Result<_, _>>()?,
            env,
            workdir: config.workdir.clone(),
        })
    }

    /// Runs in the forked program process; returns only on failure.
    fn run(self, sys: &Linux, config: &Config) -> StepError {
        let err = (|| -> Result<(), StepError> {
            set_parent_death_signal().step(|| "setting the parent death signal".into())?;
            // SAFETY: no arguments; detaches from any controlling terminal.
            unsafe { libc::setsid() };
            reset_signals();
            std::env::set_current_dir(&self.workdir).step(|| {
                format!(
                    "changing to the working directory {}",
                    self.workdir.display()
                )
            })?;
            // The filter goes on last: nothing after it but execve.
            let filter = if config.seccomp {
                crate::seccomp::default_filter()
            } else {
                Vec::new()
            };
            sys.drop_privileges(&setup::rlimits(&config.limits), &filter)
                .step(|| "dropping privileges".into())?;
            let mut argv: Vec<*const libc::c_char> = self.argv.iter().map(|a| a.as_ptr()).collect();
            argv.push(std::ptr::null());
            let mut env: Vec<*const libc::c_char> = self.env.iter().map(|e| e.as_ptr()).collect();
            env.push(std::ptr::null());
            // SAFETY: NUL-terminated strings in NULL-terminated arrays, all alive
            // until execve returns (it only returns on failure).
            unsafe { libc::execve(self.program.as_ptr(), argv.as_ptr(), env.as_ptr()) };
            Err(std::io::Error::last_os_error())
                .step(|| format!("executing {}", config.argv[0].to_string_lossy()))
        })();
        err.expect_err("execve returned without an error")
    }
}

/// Finds the program the way a shell would: a name with a slash is a path,
/// any other is looked up in the sandbox's `PATH`.
fn resolve_program(config: &Config) -> Result<PathBuf, StepError> {
    let name = &config.argv[0];
    if name.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(name));
    }
    let path = config
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
    for dir in path.as_bytes().split(|b| *b == b':') {
        let candidate = PathBuf::from(OsString::from_vec(dir.to_vec())).join(name);
        // Called after the pivot: paths are the sandbox's own.
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(StepError {
        what: format!("finding {} in PATH", name.to_string_lossy()),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })
}

fn reset_signals() {
    for signal in 1..libc::SIGRTMIN() {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: restoring the default disposition is always valid.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
    // SAFETY: an empty set, then unblocking everything.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::Recorder;

    /// A minimal configuration for `uid`:`gid`, through its encoding.
    fn round_tripped(uid: u32, gid: u32) -> Config {
        Config::decode(
            &Config {
                rootfs: "/r".into(),
                argv: vec!["/p".into()],
                env: Vec::new(),
                uid,
                gid,
                workdir: "/".into(),
                hostname: "h".into(),
                limits: crate::Limits::default(),
                emulator: None,
                seccomp: true,
                host_network: false,
                volumes: Vec::new(),
            }
            .encode(),
        )
        .unwrap()
    }

    #[test]
    fn the_init_starts_only_after_its_id_maps_are_written() {
        let sys = Recorder::default();
        let (read, write) = pipe().unwrap();
        let config = round_tripped(65532, 65533);
        let _alive = start_child(&sys, 42, write, &config).unwrap();
        let calls = sys.calls();
        assert_eq!(calls.len(), 1);
        assert!(
            calls[0].starts_with("id_maps 42 uid 65532->") && calls[0].contains("gid 65533->"),
            "{calls:?}"
        );
        let mut byte = [0u8; 1];
        File::from(read).read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"g");
    }

    #[test]
    fn a_failed_id_map_never_starts_the_init() {
        let sys = Recorder {
            fail_on: Some("id_maps".into()),
            ..Recorder::default()
        };
        let (read, write) = pipe().unwrap();
        let config = round_tripped(0, 0);
        let err = start_child(&sys, 7, write, &config).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("writing the id maps of process 7"),
            "{err}"
        );
        // The write end is gone without a byte: the init sees end of file.
        let mut rest = Vec::new();
        File::from(read).read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }

    #[test]
    fn only_a_sigterm_from_outside_the_sandbox_reaches_its_processes() {
        let term = libc::SIGTERM as u32;
        assert_eq!(init_action(term, libc::SI_USER, 0), InitAction::Forward);
        // From the program (pid 2) or any process inside.
        assert_eq!(init_action(term, libc::SI_USER, 2), InitAction::Ignore);
        // Queued with a forged sender of pid 0.
        assert_eq!(init_action(term, libc::SI_QUEUE, 0), InitAction::Ignore);
        assert_eq!(init_action(term, libc::SI_TKILL, 0), InitAction::Ignore);
        for other in [libc::SIGINT, libc::SIGHUP, libc::SIGSEGV, libc::SIGUSR1] {
            assert_eq!(
                init_action(other as u32, libc::SI_USER, 0),
                InitAction::Ignore,
                "{other}"
            );
        }
    }

    #[test]
    fn signals_sent_while_blocked_are_read_with_their_sender() {
        // On a thread of its own: the mask is per thread.
        std::thread::spawn(|| {
            let old = block_all_signals();
            let fd = signalfd().unwrap();
            // SAFETY: integer arguments; the signal is blocked, so it waits
            // on the signalfd instead of running a handler.
            unsafe {
                libc::syscall(
                    libc::SYS_tgkill,
                    libc::getpid(),
                    libc::gettid(),
                    libc::SIGUSR2,
                )
            };
            let got = read_signals(&fd);
            set_signal_mask(&old);
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].ssi_signo, libc::SIGUSR2 as u32);
            assert_eq!(got[0].ssi_code, libc::SI_TKILL);
            // SAFETY: getpid cannot fail.
            assert_eq!(got[0].ssi_pid, unsafe { libc::getpid() } as u32);
            assert!(read_signals(&fd).is_empty());
        })
        .join()
        .unwrap();
    }
}

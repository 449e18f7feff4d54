//! Runs a command inside an unpacked image root, isolated by fresh Linux
//! namespaces in the manner of bubblewrap: no daemon, no root required.
//!
//! The caller hands over an already unpacked root directory; this crate knows
//! nothing about images. Every privileged system call of the project lives in
//! this crate, behind the [`sys::Syscalls`] trait.
//!
//! ```no_run
//! // In the host program's `main`, before anything else: a host program may
//! // be re-executed as the helper, and then never gets past this line.
//! sandbox::helper::run_if_requested();
//!
//! let out = sandbox::Sandbox::new("/path/to/rootfs")
//!     .args(["/hello", "world"])
//!     .env([("K", "V")])
//!     .user(65532, 65532)
//!     .run()
//!     .unwrap();
//! assert!(out.status.success());
//! ```
//!
//! A server is started instead of run, connected to inside its own network
//! namespace, and stopped:
//!
//! ```no_run
//! use std::io::{ErrorKind, Write};
//! use std::time::Duration;
//!
//! let running = sandbox::Sandbox::new("/path/to/rootfs")
//!     .args(["/server", "--port", "8080"])
//!     .spawn()
//!     .unwrap();
//! let mut stream = loop {
//!     match running.connect(8080) {
//!         Ok(stream) => break stream,
//!         Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
//!             std::thread::sleep(Duration::from_millis(50))
//!         }
//!         Err(e) => panic!("{e}"),
//!     }
//! };
//! stream.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
//! running.signal(libc::SIGTERM).unwrap();
//! let out = match running.wait_timeout(Duration::from_secs(10)).unwrap() {
//!     Some(out) => out,
//!     None => {
//!         running.kill();
//!         running.wait().unwrap()
//!     }
//! };
//! println!("{:?}", out.status);
//! ```

#![cfg(target_os = "linux")]

pub mod cgroup;
mod channel;
mod config;
mod emulator;
pub mod helper;
mod publish;
mod run;
mod running;
pub mod seccomp;
pub mod setup;
pub mod signals;
pub mod sys;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

pub use emulator::{emulator_for, emulator_in_dir};
pub use running::Running;

/// Resource limits for one run. `u64::MAX` means "no limit" for the byte and
/// count limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long the program may run before it is stopped.
    pub wall_time: Duration,
    /// How long a program stopped at `wall_time` gets between SIGTERM and
    /// SIGKILL.
    pub kill_grace: Duration,
    /// Memory of the whole sandbox, tmpfs and shared pages included, where
    /// it gets a cgroup (see [`cgroup`]); else the address space of each
    /// process (RLIMIT_AS).
    pub memory_bytes: u64,
    /// Processes and threads of the sandbox (its cgroup's `pids.max`); else
    /// of the sandbox's user (RLIMIT_NPROC).
    pub max_processes: u64,
    /// Open descriptors per process (RLIMIT_NOFILE).
    pub max_open_files: u64,
    /// Bytes of stdout and stderr together; the sandbox is stopped when its
    /// output goes past this.
    pub max_output_bytes: u64,
    /// Size of any one file written (RLIMIT_FSIZE).
    pub max_file_bytes: u64,
    /// Size of the writable `/tmp`.
    pub tmp_bytes: u64,
    /// Files and directories `/tmp` can hold: each costs kernel memory even
    /// when empty.
    pub tmp_inodes: u64,
    /// CPU time per wall-clock second, in thousandths of a CPU, where a
    /// cgroup can enforce it.
    pub cpu_millis: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            wall_time: Duration::from_secs(60),
            kill_grace: Duration::from_millis(200),
            memory_bytes: 1 << 30,
            max_processes: 256,
            max_open_files: 1024,
            max_output_bytes: 16 << 20,
            max_file_bytes: 64 << 20,
            tmp_bytes: 64 << 20,
            tmp_inodes: 16 << 10,
            cpu_millis: 1000,
        }
    }
}

/// How the program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Exit(i32),
    Signal(i32),
}

impl Status {
    pub fn success(self) -> bool {
        self == Status::Exit(0)
    }
}

/// Why the sandbox stopped the program before it ended on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// It ran past `Limits::wall_time`.
    Timeout,
    /// The kernel killed a process of the sandbox for going over its
    /// cgroup's memory limit (read from the group's OOM counter), and the
    /// sandbox was stopped. Without a cgroup: it failed after its resident
    /// memory came within a quarter of `Limits::memory_bytes`.
    Memory,
    /// Its output went past `Limits::max_output_bytes`.
    OutputLimit,
    /// The caller asked for it to stop ([`signals::stop_all`]).
    Cancelled,
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    /// At most `Limits::max_output_bytes` bytes, shared with `stderr`.
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub duration: Duration,
    pub stopped: Option<StopReason>,
    /// The most memory the sandbox's cgroup used at once; without a cgroup,
    /// the largest resident size any process in the sandbox reached.
    pub peak_memory_bytes: u64,
}

/// A sandbox that could not be set up or run. Failures of the program itself
/// are an [`Outcome`], not an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the image root {0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("no command given to run in the sandbox")]
    NoCommand,
    #[error("finding the sandbox helper executable")]
    CurrentExe(#[source] std::io::Error),
    #[error("starting the sandbox helper {path}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to the sandbox helper")]
    Io(#[source] std::io::Error),
    #[error("setting up the sandbox: {0}")]
    Setup(String),
    #[error("starting the program in the sandbox: {0}")]
    Exec(String),
    #[error("the sandbox helper ended without a result ({0})")]
    Helper(String),
    #[error(
        "no emulator for {arch}: {path} is missing; install the Debian package qemu-user-static"
    )]
    EmulatorMissing { arch: String, path: PathBuf },
    #[error("unknown architecture {0}")]
    UnknownArch(String),
}

impl Error {
    /// The same error again, for a result handed out more than once: an
    /// `io::Error` is not `Clone`, so its kind, errno and message are kept.
    fn duplicate(&self) -> Error {
        fn io(err: &std::io::Error) -> std::io::Error {
            match err.raw_os_error() {
                Some(errno) => std::io::Error::from_raw_os_error(errno),
                None => std::io::Error::new(err.kind(), err.to_string()),
            }
        }
        match self {
            Error::NotADirectory(path) => Error::NotADirectory(path.clone()),
            Error::NoCommand => Error::NoCommand,
            Error::CurrentExe(err) => Error::CurrentExe(io(err)),
            Error::Spawn { path, source } => Error::Spawn {
                path: path.clone(),
                source: io(source),
            },
            Error::Io(err) => Error::Io(io(err)),
            Error::Setup(message) => Error::Setup(message.clone()),
            Error::Exec(message) => Error::Exec(message.clone()),
            Error::Helper(message) => Error::Helper(message.clone()),
            Error::EmulatorMissing { arch, path } => Error::EmulatorMissing {
                arch: arch.clone(),
                path: path.clone(),
            },
            Error::UnknownArch(arch) => Error::UnknownArch(arch.clone()),
        }
    }
}

/// One command to run in one image root.
#[derive(Debug, Clone)]
pub struct Sandbox {
    rootfs: PathBuf,
    argv: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    uid: u32,
    gid: u32,
    workdir: PathBuf,
    hostname: String,
    stdin: Option<Vec<u8>>,
    limits: Limits,
    emulator: Option<PathBuf>,
    helper: Option<PathBuf>,
    seccomp: bool,
    host_network: bool,
    volumes: Vec<PathBuf>,
    attach: bool,
}

impl Sandbox {
    /// A sandbox over the unpacked image root `rootfs`, which is never
    /// modified. Defaults: no arguments, empty environment, uid and gid 0
    /// inside, working directory `/`, host name `sandbox`, empty stdin,
    /// `Limits::default()`, no emulator, this executable as the helper.
    pub fn new(rootfs: impl Into<PathBuf>) -> Sandbox {
        Sandbox {
            rootfs: rootfs.into(),
            argv: Vec::new(),
            env: Vec::new(),
            uid: 0,
            gid: 0,
            workdir: PathBuf::from("/"),
            hostname: "sandbox".into(),
            stdin: None,
            limits: Limits::default(),
            emulator: None,
            helper: None,
            seccomp: true,
            host_network: false,
            volumes: Vec::new(),
            attach: false,
        }
    }

    /// The command line; `argv[0]` is a path inside the image, or a name
    /// looked up in the `PATH` given with [`Sandbox::env`].
    pub fn args<I, S>(mut self, argv: I) -> Sandbox
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.argv = argv.into_iter().map(Into::into).collect();
        self
    }

    /// The program's entire environment; nothing is inherited from the host.
    pub fn env<I, K, V>(mut self, env: I) -> Sandbox
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        self.env = env.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        self
    }

    /// The uid and gid the program sees itself running as.
    pub fn user(mut self, uid: u32, gid: u32) -> Sandbox {
        self.uid = uid;
        self.gid = gid;
        self
    }

    pub fn workdir(mut self, dir: impl Into<PathBuf>) -> Sandbox {
        self.workdir = dir.into();
        self
    }

    pub fn hostname(mut self, name: impl Into<String>) -> Sandbox {
        self.hostname = name.into();
        self
    }

    /// Bytes fed to the program's stdin, which is then closed.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Sandbox {
        self.stdin = Some(bytes.into());
        self
    }

    pub fn limits(mut self, limits: Limits) -> Sandbox {
        self.limits = limits;
        self
    }

    /// A static user-mode emulator on the host (see [`emulator_for`]) to run a
    /// foreign-architecture program with; it is bound into the sandbox.
    pub fn emulator(mut self, emulator: Option<PathBuf>) -> Sandbox {
        self.emulator = emulator;
        self
    }

    /// The executable to run as the helper: either the `scratchpack-sandbox`
    /// binary or any program that calls [`helper::run_if_requested`] first
    /// thing in `main`. Defaults to the current executable.
    pub fn helper(mut self, path: impl Into<PathBuf>) -> Sandbox {
        self.helper = Some(path.into());
        self
    }

    /// Whether the default seccomp filter (see [`seccomp::denied`]) is
    /// installed before the program starts; on unless turned off.
    pub fn seccomp(mut self, on: bool) -> Sandbox {
        self.seccomp = on;
        self
    }

    /// Shares the host's network namespace instead of a private one with
    /// only a loopback interface, as `docker run --network host` does.
    pub fn host_network(mut self, on: bool) -> Sandbox {
        self.host_network = on;
        self
    }

    /// Directories of the image (absolute paths, each an existing directory
    /// of the root, none at or under `/proc` or `/dev`) that get an empty
    /// writable tmpfs each, mode 1777 and as large as `/tmp`, over whatever
    /// the image has there: the volumes of the image's config, as a runtime
    /// gives each a new anonymous volume. The rest of the root stays
    /// read-only; `/tmp` is always writable and needs no volume.
    pub fn volumes<I, P>(mut self, paths: I) -> Sandbox
    where
        I: IntoIterator<Item = P>,
        P: Into<PathBuf>,
    {
        self.volumes = paths.into_iter().map(Into::into).collect();
        self
    }

    /// Gives the program this process's own stdin, stdout and stderr, as
    /// `docker run` does, instead of capturing its output into the
    /// [`Outcome`] (which then holds none) and feeding it [`Sandbox::stdin`].
    pub fn attach_stdio(mut self, on: bool) -> Sandbox {
        self.attach = on;
        self
    }

    /// Runs the command and waits for it, its whole sandbox torn down.
    pub fn run(&self) -> Result<Outcome, Error> {
        self.spawn()?.wait()
    }

    /// Starts the command and returns once it has been executed, with a
    /// handle to connect to it, signal it and wait for it: what a service
    /// needs. Errors are those of [`Sandbox::run`]; a program that ends at
    /// once is a [`Running`] that has ended.
    pub fn spawn(&self) -> Result<Running, Error> {
        run::spawn(self)
    }
}

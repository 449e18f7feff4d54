//! The privileged system calls: the `Syscalls` trait every namespace, mount,
//! identity and capability change goes through, and its Linux implementation.
//!
//! Nothing outside this module calls `mount(2)`, `pivot_root(2)`, `clone(2)` with
//! namespace flags, `capset(2)` or writes a uid map. Keeping them behind one small
//! trait lets the setup sequence be checked by unit tests with a recording fake.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub use crate::seccomp::Insn;

/// The namespaces every sandbox gets: user, mount, pid, network, uts and ipc.
pub const NAMESPACES: libc::c_int = libc::CLONE_NEWUSER
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC;

/// Which side of a namespace clone the caller is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloned {
    /// The new process, first in its namespaces.
    Child,
    /// The caller; holds the child's pid as seen from the caller's pid namespace.
    Parent(libc::pid_t),
}

/// One id inside the user namespace mapped onto one id outside it. A single id
/// is all an unprivileged user may map, and all a sandboxed program needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub inside: u32,
    pub outside: u32,
}

/// The uid and gid maps written for the sandbox's user namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMaps {
    pub uid: IdMap,
    pub gid: IdMap,
    /// Write `deny` to `setgroups` first: required before an unprivileged user
    /// may write a gid map, and harmless otherwise.
    pub deny_setgroups: bool,
}

/// A file system node created as a mount point or link in the new root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir,
    File,
    Symlink(PathBuf),
}

/// One mount operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountOp {
    /// Make every mount private, so nothing done here propagates to the host.
    MakePrivate,
    /// A fresh tmpfs with the given `mount(8)` style options.
    Tmpfs {
        target: PathBuf,
        options: String,
        noexec: bool,
    },
    /// A proc file system for the current pid namespace.
    Proc { target: PathBuf },
    /// A bind mount of `source` onto the existing `target`.
    Bind {
        source: PathBuf,
        target: PathBuf,
        recursive: bool,
    },
    /// Make the mount at `target` read-only, nosuid and nodev.
    ReadOnly { target: PathBuf, recursive: bool },
    /// A read-only overlay of the `lower` directories (the first on top),
    /// nosuid and nodev.
    Overlay {
        lower: Vec<PathBuf>,
        target: PathBuf,
    },
}

/// A resource limit applied to the sandboxed program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    AddressSpace,
    Processes,
    OpenFiles,
    FileSize,
    Core,
}

/// A resource limit, both soft and hard. `u64::MAX` means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: Resource,
    pub value: u64,
}

/// Every privileged call the sandbox makes.
pub trait Syscalls {
    /// Forks into new namespaces (`clone(2)` with `flags`, fork semantics).
    fn clone_namespaces(&self, flags: libc::c_int) -> io::Result<Cloned>;
    /// Writes the uid and gid maps of the user namespace of process `pid`.
    fn write_id_maps(&self, pid: libc::pid_t, maps: &IdMaps) -> io::Result<()>;
    /// Clears supplementary groups where allowed, then sets all gids and uids.
    fn set_ids(&self, uid: u32, gid: u32) -> io::Result<()>;
    /// Creates a mount point or link.
    fn create(&self, path: &Path, node: &Node) -> io::Result<()>;
    /// Performs one mount operation.
    fn mount(&self, op: &MountOp) -> io::Result<()>;
    /// Makes `new_root` the root directory and detaches the old root.
    fn pivot_root(&self, new_root: &Path) -> io::Result<()>;
    /// Sets the host name of the uts namespace.
    fn sethostname(&self, name: &str) -> io::Result<()>;
    /// Brings the loopback interface of the network namespace up.
    fn loopback_up(&self) -> io::Result<()>;
    /// Joins a fresh, empty session keyring, applies resource limits, sets
    /// no-new-privs, drops every capability (bounding, ambient, effective,
    /// permitted and inheritable sets) and, last, installs `filter` as a
    /// seccomp filter unless it is empty.
    fn drop_privileges(&self, limits: &[Rlimit], filter: &[Insn]) -> io::Result<()>;
}

/// The real system calls.
#[derive(Debug, Default, Clone, Copy)]
pub struct Linux;

fn cstr(path: &OsStr) -> io::Result<CString> {
    CString::new(path.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn raw_mount(
    source: Option<&OsStr>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let source = source.map(cstr).transpose()?;
    let target = cstr(target.as_os_str())?;
    let fstype = fstype.map(|f| cstr(OsStr::new(f))).transpose()?;
    let data = data.map(|d| cstr(OsStr::new(d))).transpose()?;
    // SAFETY: every pointer is either null or a NUL-terminated string that
    // lives until the call returns.
    let ret = unsafe {
        libc::mount(
            source.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            target.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            data.as_ref()
                .map_or(std::ptr::null(), |s| s.as_ptr().cast::<libc::c_void>()),
        )
    };
    check(ret)
}

/// `struct mount_attr` from `linux/mount.h`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;

fn read_only(target: &Path, recursive: bool) -> io::Result<()> {
    let path = cstr(target.as_os_str())?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: `path` is NUL-terminated and `attr` is a properly laid out
    // `struct mount_attr` whose size is passed along; both outlive the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::ENOSYS) {
        return Err(err);
    }
    // Kernels before 5.12: a bind remount changes only this mount's flags and
    // must repeat the flags the mount already has, since a user namespace may
    // not clear flags it inherited.
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is NUL-terminated; `st` is written by the kernel on success.
    check(unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) })?;
    // SAFETY: statvfs succeeded, so `st` is initialised.
    let st = unsafe { st.assume_init() };
    let mut flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID;
    flags |= libc::MS_NODEV;
    for (st_flag, ms_flag) in [
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if st.f_flag & st_flag != 0 {
            flags |= ms_flag;
        }
    }
    raw_mount(None, target, None, flags, None)
}

fn rlimit_resource(resource: Resource) -> libc::c_int {
    (match resource {
        Resource::AddressSpace => libc::RLIMIT_AS,
        Resource::Processes => libc::RLIMIT_NPROC,
        Resource::OpenFiles => libc::RLIMIT_NOFILE,
        Resource::FileSize => libc::RLIMIT_FSIZE,
        Resource::Core => libc::RLIMIT_CORE,
    }) as libc::c_int
}

fn set_rlimit(limit: &Rlimit) -> io::Result<()> {
    let resource = rlimit_resource(limit.resource);
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `current` is a valid rlimit struct for the kernel to fill.
    check(unsafe { libc::getrlimit(resource as _, &mut current) })?;
    // Raising a hard limit needs a capability a user namespace does not give,
    // so a limit above the current hard limit keeps the hard limit.
    let value = (limit.value as libc::rlim_t).min(current.rlim_max);
    let new = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: `new` is a valid rlimit struct.
    check(unsafe { libc::setrlimit(resource as _, &new) })
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

fn prctl(option: libc::c_int, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: the prctl options used here take integer arguments only.
    check(unsafe { libc::prctl(option, arg, 0 as libc::c_ulong, 0 as libc::c_ulong, 0) })
}

impl Syscalls for Linux {
    fn clone_namespaces(&self, flags: libc::c_int) -> io::Result<Cloned> {
        // SAFETY: clone with a null stack behaves like fork. The helper that
        // calls this is single-threaded, so the child's copy of memory holds no
        // lock taken by another thread.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_clone,
                (flags | libc::SIGCHLD) as libc::c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            )
        };
        match ret {
            -1 => Err(io::Error::last_os_error()),
            0 => Ok(Cloned::Child),
            pid => Ok(Cloned::Parent(pid as libc::pid_t)),
        }
    }

    fn write_id_maps(&self, pid: libc::pid_t, maps: &IdMaps) -> io::Result<()> {
        let proc = PathBuf::from(format!("/proc/{pid}"));
        if maps.deny_setgroups {
            std::fs::write(proc.join("setgroups"), "deny")?;
        }
        std::fs::write(
            proc.join("uid_map"),
            format!("{} {} 1\n", maps.uid.inside, maps.uid.outside),
        )?;
        std::fs::write(
            proc.join("gid_map"),
            format!("{} {} 1\n", maps.gid.inside, maps.gid.outside),
        )
    }

    fn set_ids(&self, uid: u32, gid: u32) -> io::Result<()> {
        // SAFETY: an empty group list with a null pointer is valid.
        if unsafe { libc::setgroups(0, std::ptr::null()) } == -1 {
            let err = io::Error::last_os_error();
            // With `setgroups` denied (the unprivileged case) the groups stay;
            // they are the caller's own groups, which it already holds.
            if err.raw_os_error() != Some(libc::EPERM) {
                return Err(err);
            }
        }
        // SAFETY: plain integer arguments.
        check(unsafe { libc::setresgid(gid, gid, gid) })?;
        // SAFETY: plain integer arguments.
        check(unsafe { libc::setresuid(uid, uid, uid) })
    }

    fn create(&self, path: &Path, node: &Node) -> io::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        match node {
            Node::Dir => std::fs::DirBuilder::new().mode(0o755).create(path),
            Node::File => std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o444)
                .open(path)
                .map(drop),
            Node::Symlink(target) => std::os::unix::fs::symlink(target, path),
        }
    }

    fn mount(&self, op: &MountOp) -> io::Result<()> {
        match op {
            MountOp::MakePrivate => raw_mount(
                None,
                Path::new("/"),
                None,
                libc::MS_REC | libc::MS_PRIVATE,
                None,
            ),
            MountOp::Tmpfs {
                target,
                options,
                noexec,
            } => {
                let mut flags = libc::MS_NOSUID | libc::MS_NODEV;
                if *noexec {
                    flags |= libc::MS_NOEXEC;
                }
                raw_mount(
                    Some(OsStr::new("tmpfs")),
                    target,
                    Some("tmpfs"),
                    flags,
                    Some(options),
                )
            }
            MountOp::Proc { target } => raw_mount(
                Some(OsStr::new("proc")),
                target,
                Some("proc"),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                None,
            ),
            MountOp::Bind {
                source,
                target,
                recursive,
            } => {
                let mut flags = libc::MS_BIND;
                if *recursive {
                    flags |= libc::MS_REC;
                }
                raw_mount(Some(source.as_os_str()), target, None, flags, None)
            }
            MountOp::ReadOnly { target, recursive } => read_only(target, *recursive),
            MountOp::Overlay { lower, target } => {
                let mut options = String::from("lowerdir=");
                for (i, dir) in lower.iter().enumerate() {
                    let dir = dir
                        .to_str()
                        .filter(|d| !d.contains([':', ',', '\\']))
                        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
                    if i > 0 {
                        options.push(':');
                    }
                    options.push_str(dir);
                }
                raw_mount(
                    Some(OsStr::new("overlay")),
                    target,
                    Some("overlay"),
                    libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
                    Some(&options),
                )
            }
        }
    }

    fn pivot_root(&self, new_root: &Path) -> io::Result<()> {
        std::env::set_current_dir(new_root)?;
        let dot = c".";
        // SAFETY: both arguments are NUL-terminated strings. Pivoting "." onto
        // "." stacks the old root on top of the new one, ready to be detached.
        let ret = unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) };
        if ret == -1 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: NUL-terminated path, integer flags.
        check(unsafe { libc::umount2(dot.as_ptr(), libc::MNT_DETACH) })?;
        std::env::set_current_dir("/")
    }

    fn sethostname(&self, name: &str) -> io::Result<()> {
        // SAFETY: the pointer and length describe `name`'s bytes.
        check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })
    }

    fn loopback_up(&self) -> io::Result<()> {
        // SAFETY: plain integer arguments; the result is checked.
        let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if sock == -1 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `sock` is a descriptor this function just opened and owns.
        let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(sock) };
        let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
        // SAFETY: an all-zero ifreq is a valid value (empty name, zero flags).
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        // SAFETY: `req` is a valid ifreq naming "lo"; the kernel fills the flags.
        check(unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut req) })?;
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
        unsafe {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        }
        // SAFETY: `req` is a valid ifreq naming "lo" with the new flags.
        check(unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &req) })
    }

    fn drop_privileges(&self, limits: &[Rlimit], filter: &[Insn]) -> io::Result<()> {
        join_session_keyring()?;
        for limit in limits {
            set_rlimit(limit)?;
        }
        prctl(libc::PR_SET_NO_NEW_PRIVS, 1)?;
        // The bounding set must be emptied while CAP_SETPCAP is still held.
        for cap in 0..64 {
            if let Err(err) = prctl(libc::PR_CAPBSET_DROP, cap) {
                if err.raw_os_error() == Some(libc::EINVAL) {
                    break; // past the last capability this kernel knows
                }
                return Err(err);
            }
        }
        // SAFETY: integer arguments only.
        check(unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        })?;
        let header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let data = [CapData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        // SAFETY: a version 3 header with two data structs, as capset expects.
        let ret =
            unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) };
        if ret == -1 {
            return Err(io::Error::last_os_error());
        }
        if !filter.is_empty() {
            install_filter(filter)?;
        }
        Ok(())
    }
}

/// Replaces the session keyring inherited from the caller with a new,
/// anonymous one: the keyring is not namespaced, and a program must neither
/// read the caller's keys nor see another sandbox's.
fn join_session_keyring() -> io::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: a null name asks for a new anonymous keyring; no pointer is read.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            std::ptr::null::<libc::c_char>(),
        )
    };
    if ret == -1 {
        let err = io::Error::last_os_error();
        // A kernel built without keys has no keyring to leak.
        if err.raw_os_error() != Some(libc::ENOSYS) {
            return Err(err);
        }
    }
    Ok(())
}

/// `struct sock_fprog`.
#[repr(C)]
struct SockFprog {
    len: libc::c_ushort,
    filter: *const Insn,
}

fn install_filter(filter: &[Insn]) -> io::Result<()> {
    const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;
    let len = libc::c_ushort::try_from(filter.len())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let prog = SockFprog {
        len,
        filter: filter.as_ptr(),
    };
    // SAFETY: `prog` points at `len` instructions laid out as `struct
    // sock_filter`; both outlive the call, which copies them.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            0 as libc::c_uint,
            &prog as *const SockFprog,
        )
    };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A fake that records every call instead of making it, for unit tests.
#[cfg(test)]
pub mod fake {
    use super::*;
    use std::cell::RefCell;

    #[derive(Debug, Default)]
    pub struct Recorder {
        pub calls: RefCell<Vec<String>>,
        /// The side of the clone the fake reports.
        pub clone_as_parent: Option<libc::pid_t>,
        /// A call whose text starts with this fails with EPERM.
        pub fail_on: Option<String>,
    }

    impl Recorder {
        fn record(&self, call: String) -> io::Result<()> {
            let fail = self.fail_on.as_ref().is_some_and(|f| call.starts_with(f));
            self.calls.borrow_mut().push(call);
            if fail {
                Err(io::Error::from_raw_os_error(libc::EPERM))
            } else {
                Ok(())
            }
        }

        pub fn calls(&self) -> Vec<String> {
            self.calls.borrow().clone()
        }
    }

    impl Syscalls for Recorder {
        fn clone_namespaces(&self, flags: libc::c_int) -> io::Result<Cloned> {
            self.record(format!("clone {flags:#x}"))?;
            Ok(self.clone_as_parent.map_or(Cloned::Child, Cloned::Parent))
        }
        fn write_id_maps(&self, pid: libc::pid_t, m: &IdMaps) -> io::Result<()> {
            self.record(format!(
                "id_maps {pid} uid {}->{} gid {}->{} deny_setgroups={}",
                m.uid.inside, m.uid.outside, m.gid.inside, m.gid.outside, m.deny_setgroups
            ))
        }
        fn set_ids(&self, uid: u32, gid: u32) -> io::Result<()> {
            self.record(format!("set_ids {uid}:{gid}"))
        }
        fn create(&self, path: &Path, node: &Node) -> io::Result<()> {
            let what = match node {
                Node::Dir => "dir".to_string(),
                Node::File => "file".to_string(),
                Node::Symlink(t) => format!("symlink -> {}", t.display()),
            };
            self.record(format!("create {} {what}", path.display()))
        }
        fn mount(&self, op: &MountOp) -> io::Result<()> {
            self.record(match op {
                MountOp::MakePrivate => "mount private /".to_string(),
                MountOp::Tmpfs {
                    target,
                    options,
                    noexec,
                } => format!("mount tmpfs {} {options} noexec={noexec}", target.display()),
                MountOp::Proc { target } => format!("mount proc {}", target.display()),
                MountOp::Bind {
                    source,
                    target,
                    recursive,
                } => format!(
                    "mount bind {} {} recursive={recursive}",
                    source.display(),
                    target.display()
                ),
                MountOp::ReadOnly { target, recursive } => {
                    format!("mount readonly {} recursive={recursive}", target.display())
                }
                MountOp::Overlay { lower, target } => {
                    let lower: Vec<String> =
                        lower.iter().map(|l| l.display().to_string()).collect();
                    format!("mount overlay {} {}", lower.join(":"), target.display())
                }
            })
        }
        fn pivot_root(&self, new_root: &Path) -> io::Result<()> {
            self.record(format!("pivot_root {}", new_root.display()))
        }
        fn sethostname(&self, name: &str) -> io::Result<()> {
            self.record(format!("sethostname {name}"))
        }
        fn loopback_up(&self) -> io::Result<()> {
            self.record("loopback_up".to_string())
        }
        fn drop_privileges(&self, limits: &[Rlimit], filter: &[Insn]) -> io::Result<()> {
            let limits: Vec<String> = limits
                .iter()
                .map(|l| format!("{:?}={}", l.resource, l.value))
                .collect();
            self.record(format!(
                "drop_privileges {} filter={}",
                limits.join(","),
                filter.len()
            ))
        }
    }
}

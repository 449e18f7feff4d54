//! The default seccomp filter (kernel `Documentation/userspace-api/seccomp_filter.rst`),
//! written as classic BPF by a small builder: the architecture is checked
//! first, then a deny-list in the spirit of Docker's and crun's default
//! profiles refuses what a test program has no business calling.
//!
//! The filter is for the host's architecture only: a foreign program runs
//! under qemu-user, which turns each guest system call into a host one, so
//! filtering host calls covers both.

/// One classic BPF instruction, laid out as `struct sock_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

// Opcodes from `linux/bpf_common.h`: class | size | mode (or operation | source).
const BPF_LD: u16 = 0x00;
const BPF_JMP: u16 = 0x05;
const BPF_RET: u16 = 0x06;
const BPF_W_ABS: u16 = 0x20; // BPF_W (0x00) | BPF_ABS (0x20)
const BPF_LD_W_ABS: u16 = BPF_LD | BPF_W_ABS;
const BPF_JEQ_K: u16 = BPF_JMP | 0x10;
const BPF_JGE_K: u16 = BPF_JMP | 0x30;
const BPF_JSET_K: u16 = BPF_JMP | 0x40;
const BPF_RET_K: u16 = BPF_RET;

pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const RET_ERRNO: u32 = 0x0005_0000;
pub const RET_ALLOW: u32 = 0x7fff_0000;

/// Offsets into `struct seccomp_data`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
/// The low 32 bits of the first argument: both supported hosts are
/// little-endian, and every argument checked here is an `int` or flags that
/// fit in 32 bits.
const OFF_ARG0_LO: u32 = 16;

#[cfg(target_arch = "x86_64")]
pub const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
pub const AUDIT_ARCH: u32 = 0xc000_00b7;

/// x86_64's x32 ABI marks its call numbers with this bit; the filter refuses
/// the whole ABI rather than listing every call twice.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Socket families a program may create: local, IPv4, IPv6, and netlink (which
/// the C library uses to list interfaces). Everything else, AF_VSOCK
/// foremost (its port space is the host's), is refused.
pub const ALLOWED_FAMILIES: [u32; 4] = [
    libc::AF_UNIX as u32,
    libc::AF_INET as u32,
    libc::AF_INET6 as u32,
    libc::AF_NETLINK as u32,
];

/// Calls refused outright with EPERM, by name, for the README and error
/// messages, with their numbers on this host.
pub fn denied() -> Vec<(&'static str, libc::c_long)> {
    let mut calls = vec![
        // The kernel keyring is not namespaced.
        ("keyctl", libc::SYS_keyctl),
        ("add_key", libc::SYS_add_key),
        ("request_key", libc::SYS_request_key),
        // Large kernel attack surfaces of no use to a test program.
        ("io_uring_setup", libc::SYS_io_uring_setup),
        ("io_uring_enter", libc::SYS_io_uring_enter),
        ("io_uring_register", libc::SYS_io_uring_register),
        ("bpf", libc::SYS_bpf),
        ("perf_event_open", libc::SYS_perf_event_open),
        ("userfaultfd", libc::SYS_userfaultfd),
        // The machine's kernel, modules and clock belong to the host.
        ("kexec_load", libc::SYS_kexec_load),
        ("kexec_file_load", libc::SYS_kexec_file_load),
        ("init_module", libc::SYS_init_module),
        ("finit_module", libc::SYS_finit_module),
        ("delete_module", libc::SYS_delete_module),
        ("clock_settime", libc::SYS_clock_settime),
        ("clock_adjtime", libc::SYS_clock_adjtime),
        ("settimeofday", libc::SYS_settimeofday),
        ("adjtimex", libc::SYS_adjtimex),
        ("reboot", libc::SYS_reboot),
        ("swapon", libc::SYS_swapon),
        ("swapoff", libc::SYS_swapoff),
        ("acct", libc::SYS_acct),
        ("quotactl", libc::SYS_quotactl),
        ("syslog", libc::SYS_syslog),
        ("vhangup", libc::SYS_vhangup),
        // The sandbox's mounts are fixed once the program starts.
        ("mount", libc::SYS_mount),
        ("umount2", libc::SYS_umount2),
        ("pivot_root", libc::SYS_pivot_root),
        ("fsopen", libc::SYS_fsopen),
        ("fsconfig", libc::SYS_fsconfig),
        ("fsmount", libc::SYS_fsmount),
        ("fspick", libc::SYS_fspick),
        ("move_mount", libc::SYS_move_mount),
        ("open_tree", libc::SYS_open_tree),
        ("mount_setattr", libc::SYS_mount_setattr),
        // Entering other namespaces, or opening files by handle past them.
        ("setns", libc::SYS_setns),
        ("open_by_handle_at", libc::SYS_open_by_handle_at),
        ("name_to_handle_at", libc::SYS_name_to_handle_at),
        ("lookup_dcookie", libc::SYS_lookup_dcookie),
        ("fanotify_init", libc::SYS_fanotify_init),
    ];
    #[cfg(target_arch = "x86_64")]
    calls.extend([
        ("iopl", libc::SYS_iopl),
        ("ioperm", libc::SYS_ioperm),
        ("_sysctl", libc::SYS__sysctl),
        ("uselib", libc::SYS_uselib),
        ("ustat", libc::SYS_ustat),
        ("sysfs", libc::SYS_sysfs),
        ("nfsservctl", libc::SYS_nfsservctl),
    ]);
    calls
}

/// A classic BPF program under construction. Jumps are relative and at most
/// 255 instructions long, so every check is written as a short block that
/// ends in its own return.
#[derive(Debug, Default)]
struct Builder(Vec<Insn>);

impl Builder {
    fn push(&mut self, code: u16, jt: u8, jf: u8, k: u32) {
        self.0.push(Insn { code, jt, jf, k });
    }
    fn load(&mut self, offset: u32) {
        self.push(BPF_LD_W_ABS, 0, 0, offset);
    }
    fn ret(&mut self, value: u32) {
        self.push(BPF_RET_K, 0, 0, value);
    }
    /// `if A == k { return value }`, else go on.
    fn eq_ret(&mut self, k: u32, value: u32) {
        self.push(BPF_JEQ_K, 0, 1, k);
        self.ret(value);
    }
    /// Call `nr` returns `errno` when its first argument has any of `flags`.
    fn deny_flags(&mut self, nr: libc::c_long, flags: u32, errno: u32) {
        // Not this call: skip the block's four instructions.
        self.push(BPF_JEQ_K, 0, 4, nr as u32);
        self.load(OFF_ARG0_LO);
        self.push(BPF_JSET_K, 0, 1, flags);
        self.ret(RET_ERRNO | errno);
        self.ret(RET_ALLOW);
    }
    /// `socket(2)` is allowed only for `ALLOWED_FAMILIES`.
    fn socket_families(&mut self, nr: libc::c_long) {
        let n = ALLOWED_FAMILIES.len() as u8;
        self.push(BPF_JEQ_K, 0, n + 3, nr as u32);
        self.load(OFF_ARG0_LO);
        for (i, family) in ALLOWED_FAMILIES.iter().enumerate() {
            // Jump over the remaining checks and the EPERM to the ALLOW.
            self.push(BPF_JEQ_K, n - i as u8, 0, *family);
        }
        self.ret(RET_ERRNO | libc::EPERM as u32);
        self.ret(RET_ALLOW);
    }
}

/// The default filter for this host's architecture.
pub fn default_filter() -> Vec<Insn> {
    let eperm = RET_ERRNO | libc::EPERM as u32;
    let mut b = Builder::default();
    // A call made through another architecture's entry (i386's int 0x80 on
    // x86_64) has other numbers: the process is killed instead of guessed at.
    b.load(OFF_ARCH);
    b.push(BPF_JEQ_K, 1, 0, AUDIT_ARCH);
    b.ret(RET_KILL_PROCESS);
    b.load(OFF_NR);
    #[cfg(target_arch = "x86_64")]
    {
        b.push(BPF_JGE_K, 0, 1, X32_SYSCALL_BIT);
        b.ret(eperm);
    }
    for (_, nr) in denied() {
        b.eq_ret(nr as u32, eperm);
    }
    // clone3 passes its flags in memory a filter cannot read: ENOSYS makes
    // the C library fall back to clone, whose flags are checked below.
    b.eq_ret(libc::SYS_clone3 as u32, RET_ERRNO | libc::ENOSYS as u32);
    // A block that does not match leaves the call number in A.
    b.deny_flags(
        libc::SYS_clone,
        libc::CLONE_NEWUSER as u32,
        libc::EPERM as u32,
    );
    b.deny_flags(
        libc::SYS_unshare,
        libc::CLONE_NEWUSER as u32,
        libc::EPERM as u32,
    );
    b.socket_families(libc::SYS_socket);
    b.ret(RET_ALLOW);
    b.0
}

/// Runs `program` over one `struct seccomp_data` the way the kernel does, for
/// tests: returns the action.
#[cfg(test)]
pub fn evaluate(program: &[Insn], arch: u32, nr: u32, arg0: u64) -> u32 {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_le_bytes());
    data[4..8].copy_from_slice(&arch.to_le_bytes());
    data[16..24].copy_from_slice(&arg0.to_le_bytes());
    let mut a = 0u32;
    let mut pc = 0usize;
    loop {
        let i = program[pc];
        pc += 1;
        match i.code {
            BPF_LD_W_ABS => {
                let o = i.k as usize;
                a = u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
            }
            BPF_RET_K => return i.k,
            BPF_JEQ_K | BPF_JGE_K | BPF_JSET_K => {
                let taken = match i.code {
                    BPF_JEQ_K => a == i.k,
                    BPF_JGE_K => a >= i.k,
                    _ => a & i.k != 0,
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
            other => panic!("unknown instruction {other:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPERM: u32 = RET_ERRNO | libc::EPERM as u32;

    fn run(nr: libc::c_long, arg0: u64) -> u32 {
        evaluate(&default_filter(), AUDIT_ARCH, nr as u32, arg0)
    }

    #[test]
    fn another_architecture_is_killed() {
        let f = default_filter();
        assert_eq!(
            evaluate(&f, 0x4000_0003, libc::SYS_getpid as u32, 0),
            RET_KILL_PROCESS
        );
    }

    #[test]
    fn every_listed_call_is_refused_and_ordinary_calls_pass() {
        for (name, nr) in denied() {
            assert_eq!(run(nr, 0), EPERM, "{name}");
        }
        for nr in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_execve,
            libc::SYS_mmap,
            libc::SYS_exit_group,
            libc::SYS_futex,
            libc::SYS_ptrace,
        ] {
            assert_eq!(run(nr, 0), RET_ALLOW, "call {nr}");
        }
    }

    #[test]
    fn new_user_namespaces_are_refused_other_clones_allowed() {
        let newuser = libc::CLONE_NEWUSER as u64;
        let thread = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;
        assert_eq!(run(libc::SYS_clone, newuser | 17), EPERM);
        assert_eq!(run(libc::SYS_clone, thread), RET_ALLOW);
        assert_eq!(run(libc::SYS_clone, 17), RET_ALLOW);
        assert_eq!(run(libc::SYS_unshare, newuser), EPERM);
        assert_eq!(run(libc::SYS_unshare, libc::CLONE_NEWNS as u64), RET_ALLOW);
        assert_eq!(
            run(libc::SYS_clone3, 0),
            RET_ERRNO | libc::ENOSYS as u32,
            "clone3 must fall back to clone"
        );
    }

    #[test]
    fn only_inet_unix_and_netlink_sockets() {
        for family in ALLOWED_FAMILIES {
            assert_eq!(run(libc::SYS_socket, family.into()), RET_ALLOW);
        }
        for family in [libc::AF_VSOCK, libc::AF_PACKET, libc::AF_BLUETOOTH, 45] {
            assert_eq!(run(libc::SYS_socket, family as u64), EPERM, "{family}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_x32_abi_is_refused() {
        assert_eq!(run(X32_SYSCALL_BIT as libc::c_long | 39, 0), EPERM);
    }
}

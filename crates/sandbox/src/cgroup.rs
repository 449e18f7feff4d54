//! A control group per sandbox (kernel `Documentation/admin-guide/cgroup-v2.rst`
//! and `cgroup-v1/memory.rst`, `pids.rst`): memory (tmpfs, memfd and other
//! shared pages are charged there, unlike in an address-space rlimit),
//! processes and CPU are limited for the sandbox as a whole, an OOM kill is
//! read from the group's own counters, and the group is killed as one.
//!
//! cgroup v2 is used when the caller's own group is writable and delegates
//! the memory and pids controllers; cgroup v1 controllers when the caller is
//! root on a host that mounts them (hybrid hosts); otherwise nothing, and the
//! sandbox falls back to per-process rlimits.

use std::io;
use std::path::{Path, PathBuf};

use crate::Limits;

/// Which cgroup interface limits a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    V2,
    V1,
}

/// Where new groups are made, and with which interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parent {
    pub kind: Kind,
    /// v2: the caller's group. v1: the caller's group in the memory, pids
    /// and cpu hierarchies (pids and cpu when mounted).
    pub memory: PathBuf,
    pub pids: Option<PathBuf>,
    pub cpu: Option<PathBuf>,
}

/// One sandbox's group (one directory per hierarchy under v1).
#[derive(Debug)]
pub struct Cgroup {
    kind: Kind,
    dirs: Vec<PathBuf>,
    memory: PathBuf,
}

/// The mount point and mount root of each cgroup hierarchy: v1 keyed by
/// controller name, v2 by the empty string.
fn mounts(mountinfo: &str) -> Vec<(String, PathBuf, String)> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 5 || right.len() < 3 {
            continue;
        }
        let (root, point) = (left[3], left[4]);
        match right[0] {
            "cgroup2" => out.push((String::new(), PathBuf::from(point), root.to_owned())),
            "cgroup" => {
                for opt in right[2].split(',') {
                    if matches!(opt, "memory" | "pids" | "cpu") {
                        out.push((opt.to_owned(), PathBuf::from(point), root.to_owned()));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// The caller's group in the hierarchy of `controller` ("" for v2), from
/// `/proc/self/cgroup`.
fn own_path<'a>(proc_cgroup: &'a str, controller: &str) -> Option<&'a str> {
    proc_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let found = if controller.is_empty() {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == controller)
        };
        found.then_some(path)
    })
}

fn dir_of(
    mounts: &[(String, PathBuf, String)],
    proc_cgroup: &str,
    controller: &str,
) -> Option<PathBuf> {
    let (_, point, root) = mounts.iter().find(|(c, _, _)| c == controller)?;
    let own = own_path(proc_cgroup, controller)?;
    // A group outside the mount's root (another namespace's view) is not
    // reachable through this mount.
    let rel = own.strip_prefix(root.trim_end_matches('/')).unwrap_or(own);
    Some(point.join(rel.trim_start_matches('/')))
}

fn writable(dir: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: a NUL-terminated path and integer flags.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// Where this process may make sandbox groups, if anywhere.
pub fn parent() -> Option<Parent> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mounts = mounts(&mountinfo);
    if let Some(dir) = dir_of(&mounts, &proc_cgroup, "") {
        let has = |file: &str, wanted: &[&str]| {
            std::fs::read_to_string(dir.join(file)).is_ok_and(|c| {
                let have: Vec<&str> = c.split_whitespace().collect();
                wanted.iter().all(|w| have.contains(w))
            })
        };
        if writable(&dir) && has("cgroup.controllers", &["memory", "pids"]) {
            // Controllers must be enabled for the children; a group with
            // processes of its own cannot do so (the kernel says EBUSY), and
            // then v2 is not delegated to this caller.
            let enabled = has("cgroup.subtree_control", &["memory", "pids"])
                || std::fs::write(dir.join("cgroup.subtree_control"), "+memory +pids").is_ok();
            if enabled {
                let cpu = has("cgroup.subtree_control", &["cpu"])
                    || (has("cgroup.controllers", &["cpu"])
                        && std::fs::write(dir.join("cgroup.subtree_control"), "+cpu").is_ok());
                return Some(Parent {
                    kind: Kind::V2,
                    memory: dir.clone(),
                    pids: Some(dir.clone()),
                    cpu: cpu.then(|| dir.clone()),
                });
            }
        }
    }
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let memory = dir_of(&mounts, &proc_cgroup, "memory").filter(|d| writable(d))?;
    Some(Parent {
        kind: Kind::V1,
        memory,
        pids: dir_of(&mounts, &proc_cgroup, "pids").filter(|d| writable(d)),
        cpu: dir_of(&mounts, &proc_cgroup, "cpu").filter(|d| writable(d)),
    })
}

/// One line saying which limits hold for sandboxes this process starts.
pub fn notice() -> String {
    match parent() {
        Some(p) => {
            let mut held = vec!["memory (tmpfs and shared memory included)"];
            if p.pids.is_some() {
                held.push("processes");
            }
            if p.cpu.is_some() {
                held.push("CPU");
            }
            let kind = if p.kind == Kind::V2 { "v2" } else { "v1" };
            let last = held.pop().expect("memory is always held");
            let list = if held.is_empty() {
                last.to_owned()
            } else {
                format!("{} and {last}", held.join(", "))
            };
            format!("limits: {list} per sandbox (cgroup {kind})")
        }
        None => "limits: no writable cgroup, so memory and processes are limited per \
                 process with rlimits (shared memory and tmpfs pages not counted) and CPU is not \
                 limited; run as root or in a delegated cgroup v2 subtree for per-sandbox limits"
            .to_owned(),
    }
}

fn write(dir: &Path, file: &str, value: &str) -> io::Result<()> {
    std::fs::write(dir.join(file), value).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("writing {value} to {}: {e}", dir.join(file).display()),
        )
    })
}

/// CFS period and quota for `millis` thousandths of a CPU.
fn cpu_quota(millis: u64) -> (u64, u64) {
    const PERIOD: u64 = 100_000;
    (PERIOD, (millis.saturating_mul(PERIOD) / 1000).max(1000))
}

/// The prefix of the groups sandboxes make; the rest of the name is the
/// pid of the helper that made it.
pub const PREFIX: &str = "scratchpack-sandbox-";

/// Removes groups left by helpers that were killed before they could clean
/// up (SIGKILL leaves no chance): those whose helper is gone and which hold
/// no process. A group of a live helper is never touched.
pub fn sweep(parent: &Parent) {
    let dirs = [
        Some(&parent.memory),
        parent.pids.as_ref(),
        parent.cpu.as_ref(),
    ];
    for dir in dirs.into_iter().flatten() {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix(PREFIX))
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            // Fails, and so keeps the group, while any process is in it.
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

impl Cgroup {
    /// Makes the group `name` under `parent` with `limits`.
    pub fn create(parent: &Parent, name: &str, limits: &Limits) -> io::Result<Cgroup> {
        let mut group = Cgroup {
            kind: parent.kind,
            dirs: Vec::new(),
            memory: parent.memory.join(name),
        };
        let made = (|| -> io::Result<()> {
            let mkdir = |dir: &Path, group: &mut Cgroup| -> io::Result<PathBuf> {
                let d = dir.join(name);
                match std::fs::create_dir(&d) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
                if !group.dirs.contains(&d) {
                    group.dirs.push(d.clone());
                }
                Ok(d)
            };
            let memory = mkdir(&parent.memory, &mut group)?;
            let bytes = limits.memory_bytes;
            match parent.kind {
                Kind::V2 => {
                    if bytes != u64::MAX {
                        write(&memory, "memory.max", &bytes.to_string())?;
                        // No swap either: swapped pages would dodge the limit.
                        let _ = write(&memory, "memory.swap.max", "0");
                    }
                    if limits.max_processes != u64::MAX {
                        write(&memory, "pids.max", &limits.max_processes.to_string())?;
                    }
                    if parent.cpu.is_some() && limits.cpu_millis != u64::MAX {
                        let (period, quota) = cpu_quota(limits.cpu_millis);
                        write(&memory, "cpu.max", &format!("{quota} {period}"))?;
                    }
                }
                Kind::V1 => {
                    if bytes != u64::MAX {
                        write(&memory, "memory.limit_in_bytes", &bytes.to_string())?;
                        if memory.join("memory.memsw.limit_in_bytes").exists() {
                            write(&memory, "memory.memsw.limit_in_bytes", &bytes.to_string())?;
                        }
                        let _ = write(&memory, "memory.swappiness", "0");
                    }
                    if let Some(pids) = &parent.pids {
                        let d = mkdir(pids, &mut group)?;
                        if limits.max_processes != u64::MAX {
                            write(&d, "pids.max", &limits.max_processes.to_string())?;
                        }
                    }
                    if let Some(cpu) = &parent.cpu {
                        let d = mkdir(cpu, &mut group)?;
                        if limits.cpu_millis != u64::MAX {
                            let (period, quota) = cpu_quota(limits.cpu_millis);
                            write(&d, "cpu.cfs_period_us", &period.to_string())?;
                            write(&d, "cpu.cfs_quota_us", &quota.to_string())?;
                        }
                    }
                }
            }
            Ok(())
        })();
        match made {
            Ok(()) => Ok(group),
            Err(e) => {
                group.remove();
                Err(e)
            }
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Moves process `pid` (and so everything it starts) into the group.
    pub fn add(&self, pid: libc::pid_t) -> io::Result<()> {
        for dir in &self.dirs {
            write(dir, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    /// How many processes the kernel killed for going over the memory limit.
    pub fn oom_kills(&self) -> u64 {
        let file = match self.kind {
            Kind::V2 => "memory.events",
            Kind::V1 => "memory.oom_control",
        };
        std::fs::read_to_string(self.memory.join(file))
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse().ok())
                })
            })
            .unwrap_or(0)
    }

    /// The most memory the group used at once, in bytes, where the kernel
    /// records it.
    pub fn peak_bytes(&self) -> Option<u64> {
        let file = match self.kind {
            Kind::V2 => "memory.peak",
            Kind::V1 => "memory.max_usage_in_bytes",
        };
        std::fs::read_to_string(self.memory.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn procs(&self) -> Vec<libc::pid_t> {
        std::fs::read_to_string(self.memory.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Kills every process in the group: at once through `cgroup.kill`
    /// where the kernel has it (v2, Linux 5.14), else one by one.
    pub fn kill(&self) {
        if self.kind == Kind::V2 && write(&self.memory, "cgroup.kill", "1").is_ok() {
            return;
        }
        for pid in self.procs() {
            // SAFETY: integer arguments; a pid that just exited gives ESRCH.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }

    /// Kills what is left and removes the group's directories. A group
    /// whose processes are still being torn down by the kernel cannot be
    /// removed yet, so removal is retried for a while.
    pub fn remove(&self) {
        for attempt in 0..400 {
            if attempt > 0 {
                self.kill();
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            let mut left = false;
            for dir in &self.dirs {
                match std::fs::remove_dir(dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(_) => left = true,
                }
            }
            if !left {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const PROC: &str = "8:pids:/\n4:memory:/jobs/42\n1:cpu:/\n0::/\n";

    #[test]
    fn finds_each_hierarchy_and_the_callers_group() {
        let m = mounts(HYBRID);
        assert_eq!(
            dir_of(&m, PROC, "memory"),
            Some(PathBuf::from("/sys/fs/cgroup/memory/jobs/42"))
        );
        assert_eq!(
            dir_of(&m, PROC, "pids"),
            Some(PathBuf::from("/sys/fs/cgroup/pids"))
        );
        assert_eq!(
            dir_of(&m, PROC, ""),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        // cpuacct is its own hierarchy here, not cpu's.
        assert_eq!(
            dir_of(&m, PROC, "cpu"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu"))
        );
    }

    #[test]
    fn a_mount_rooted_below_the_top_is_joined_relative_to_its_root() {
        let m = mounts("50 1 0:40 /user.slice /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        assert_eq!(
            dir_of(&m, "0::/user.slice/app.scope\n", ""),
            Some(PathBuf::from("/sys/fs/cgroup/app.scope"))
        );
    }

    #[test]
    fn cpu_quota_is_thousandths_of_a_cpu() {
        assert_eq!(cpu_quota(1000), (100_000, 100_000));
        assert_eq!(cpu_quota(2500), (100_000, 250_000));
        assert_eq!(cpu_quota(1), (100_000, 1000));
    }
}

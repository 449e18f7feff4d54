//! The setup sequence: which id maps, mounts and privilege drops a sandbox gets,
//! in which order, expressed against the `Syscalls` trait so it can be checked
//! without making a single privileged call.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::Limits;
use crate::sys::{IdMap, IdMaps, MountOp, Node, Resource, Rlimit, Syscalls};

/// The uid (and gid) outside the sandbox that the image's user runs as when
/// the caller is root: the conventional `nobody`, so a program that is root in
/// its image is never real root, and process limits (which do not apply to
/// real root) do apply.
pub const ROOT_CALLER_OUTSIDE_ID: u32 = 65534;

/// Where the emulator is bound inside the sandbox when one is used.
pub const EMULATOR_PATH: &str = "/dev/.scratchpack-emulator";

/// The device nodes bound from the host into the sandbox's `/dev`.
pub const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// A failed setup step: what was being done, and why it failed.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct StepError {
    pub what: String,
    #[source]
    pub source: std::io::Error,
}

pub(crate) trait Step<T> {
    fn step(self, what: impl FnOnce() -> String) -> Result<T, StepError>;
}

impl<T> Step<T> for std::io::Result<T> {
    fn step(self, what: impl FnOnce() -> String) -> Result<T, StepError> {
        self.map_err(|source| StepError {
            what: what(),
            source,
        })
    }
}

/// Id maps for the sandbox: the caller's own ids become the image's ids. Root
/// may map any id and maps onto an unprivileged one instead of itself.
pub fn id_maps(caller_uid: u32, caller_gid: u32, uid: u32, gid: u32) -> IdMaps {
    let root = caller_uid == 0;
    let outside = |caller: u32| if root { ROOT_CALLER_OUTSIDE_ID } else { caller };
    IdMaps {
        uid: IdMap {
            inside: uid,
            outside: outside(caller_uid),
        },
        gid: IdMap {
            inside: gid,
            outside: outside(caller_gid),
        },
        // Root keeps `setgroups` allowed so the sandbox can clear the
        // supplementary groups it inherited (root's own, e.g. gid 0).
        deny_setgroups: !root,
    }
}

/// One top-level entry of the image's root directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: OsString,
    pub kind: EntryKind,
}

/// What an image entry is, and where to bind it from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Dir { source: PathBuf },
    File { source: PathBuf },
    Symlink { target: PathBuf },
}

/// Everything the new root is built from, resolved before any mount is made.
#[derive(Debug, Clone)]
pub struct Plan {
    /// An existing directory the new root's tmpfs is mounted on. It is hidden
    /// only inside the sandbox's own mount namespace.
    pub staging: PathBuf,
    /// The whole image root, for the overlay; `entries` are bound instead
    /// when there is none or the kernel refuses it.
    pub rootfs: Option<PathBuf>,
    pub entries: Vec<Entry>,
    /// Host device nodes to bind, by name under `/dev`.
    pub devices: Vec<(String, PathBuf)>,
    /// The host emulator binary to bind at `EMULATOR_PATH`.
    pub emulator: Option<PathBuf>,
    pub hostname: String,
    pub tmp_bytes: u64,
    pub tmp_inodes: u64,
    /// The host's network namespace is shared: no loopback of its own.
    pub host_network: bool,
    /// Directories of the image that get an empty writable tmpfs each.
    pub volumes: Vec<PathBuf>,
}

/// Names the image may contain at its top level that the sandbox provides
/// itself; the image's own versions are not shown.
pub fn is_reserved(name: &std::ffi::OsStr) -> bool {
    name == "proc" || name == "dev" || name == "tmp"
}

/// Builds the new root and enters it: private mounts, a read-only overlay of
/// the image root (whose mount options name only `/proc/self/fd` paths, so
/// `/proc/self/mountinfo` inside shows nothing of the host), or where the
/// kernel refuses an overlay, a tmpfs holding read-only binds of the image's
/// entries; then `/proc`, a minimal `/dev`, a writable `/tmp`; `pivot_root`,
/// a read-only `/`, a writable tmpfs on each volume (mounted once the new
/// root is `/`, so no path of the image can lead out of it), host name and
/// loopback. Runs in the sandbox's first process, after the id maps exist.
pub fn build_root(sys: &dyn Syscalls, plan: &Plan) -> Result<(), StepError> {
    // Refused before anything is mounted.
    let volumes = volume_targets(&plan.volumes)?;
    let staging = &plan.staging;
    sys.mount(&MountOp::MakePrivate)
        .step(|| "making mounts private".into())?;
    sys.mount(&MountOp::Tmpfs {
        target: staging.clone(),
        options: "mode=0755,size=1m".into(),
        noexec: false,
    })
    .step(|| "mounting the staging tmpfs".into())?;
    let root = staging.join("root");
    sys.create(&root, &Node::Dir)
        .step(|| "creating the new root".into())?;
    let overlaid = match &plan.rootfs {
        Some(rootfs) => {
            // The upper of the two read-only layers holds the mount points the
            // sandbox provides, over whatever the image has at those names.
            let skel = staging.join("skel");
            for dir in [
                skel.clone(),
                skel.join("proc"),
                skel.join("dev"),
                skel.join("tmp"),
            ] {
                sys.create(&dir, &Node::Dir)
                    .step(|| format!("creating {}", dir.display()))?;
            }
            sys.mount(&MountOp::Overlay {
                lower: vec![skel, rootfs.clone()],
                target: root.clone(),
            })
            .is_ok()
        }
        None => false,
    };
    if !overlaid {
        bind_entries(sys, plan, &root)?;
    }
    let proc = root.join("proc");
    if !overlaid {
        sys.create(&proc, &Node::Dir)
            .step(|| "creating /proc".into())?;
    }
    sys.mount(&MountOp::Proc {
        target: proc.clone(),
    })
    .step(|| "mounting /proc".into())?;

    let dev = root.join("dev");
    if !overlaid {
        sys.create(&dev, &Node::Dir)
            .step(|| "creating /dev".into())?;
    }
    sys.mount(&MountOp::Tmpfs {
        target: dev.clone(),
        options: "mode=0755,size=64k".into(),
        noexec: true,
    })
    .step(|| "mounting /dev".into())?;
    for (name, source) in &plan.devices {
        let target = dev.join(name);
        sys.create(&target, &Node::File)
            .step(|| format!("creating /dev/{name}"))?;
        sys.mount(&MountOp::Bind {
            source: source.clone(),
            target,
            recursive: false,
        })
        .step(|| format!("binding /dev/{name}"))?;
    }
    for (name, link) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        sys.create(&dev.join(name), &Node::Symlink(link.into()))
            .step(|| format!("creating /dev/{name}"))?;
    }
    if let Some(emulator) = &plan.emulator {
        let target = root.join(EMULATOR_PATH.trim_start_matches('/'));
        sys.create(&target, &Node::File)
            .step(|| "creating the emulator mount point".into())?;
        sys.mount(&MountOp::Bind {
            source: emulator.clone(),
            target: target.clone(),
            recursive: false,
        })
        .step(|| "binding the emulator".into())?;
        sys.mount(&MountOp::ReadOnly {
            target,
            recursive: false,
        })
        .step(|| "making the emulator read-only".into())?;
    }
    sys.mount(&MountOp::ReadOnly {
        target: dev,
        recursive: false,
    })
    .step(|| "making /dev read-only".into())?;

    let tmp = root.join("tmp");
    if !overlaid {
        sys.create(&tmp, &Node::Dir)
            .step(|| "creating /tmp".into())?;
    }
    sys.mount(&MountOp::Tmpfs {
        target: tmp,
        options: tmp_options(plan),
        noexec: false,
    })
    .step(|| "mounting /tmp".into())?;

    sys.pivot_root(&root)
        .step(|| "pivoting into the new root".into())?;
    sys.mount(&MountOp::ReadOnly {
        target: "/".into(),
        recursive: false,
    })
    .step(|| "making / read-only".into())?;
    for target in volumes {
        sys.mount(&MountOp::Tmpfs {
            options: tmp_options(plan),
            noexec: false,
            target: target.to_owned(),
        })
        .step(|| format!("mounting the volume {}", target.display()))?;
    }
    sys.sethostname(&plan.hostname)
        .step(|| format!("setting the host name to {}", plan.hostname))?;
    if !plan.host_network {
        sys.loopback_up()
            .step(|| "bringing the loopback interface up".into())?;
    }
    Ok(())
}

/// The most volumes one sandbox mounts: each is a tmpfs of its own, and an
/// image's config (one from a registry cache too) names them.
pub const MAX_VOLUMES: usize = 64;

/// The options of `/tmp`'s tmpfs, which each volume's shares.
fn tmp_options(plan: &Plan) -> String {
    format!(
        "mode=1777,size={},nr_inodes={}",
        plan.tmp_bytes.max(4096),
        plan.tmp_inodes.clamp(16, u64::from(u32::MAX))
    )
}

/// The volumes to mount a tmpfs on: at most [`MAX_VOLUMES`], each one
/// [`volume_target`] accepts.
fn volume_targets(volumes: &[PathBuf]) -> Result<Vec<&Path>, StepError> {
    if volumes.len() > MAX_VOLUMES {
        return Err(StepError {
            what: "mounting the volumes".into(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} volumes, more than {MAX_VOLUMES}", volumes.len()),
            ),
        });
    }
    let mut targets = Vec::new();
    for volume in volumes {
        if volume_target(volume)? {
            targets.push(volume.as_path());
        }
    }
    Ok(targets)
}

/// Where a volume is mounted: an absolute, normal path of the image that is
/// neither `/` nor at or under `/proc` or `/dev`; `false` for `/tmp`, which
/// is a tmpfs already. Under `/tmp` the image's directories are hidden by
/// it, so there is nothing to mount on.
fn volume_target(volume: &Path) -> Result<bool, StepError> {
    use std::path::Component;
    let refuse = |why: &str| StepError {
        what: format!("mounting the volume {}", volume.display()),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, why.to_owned()),
    };
    let mut names = Vec::new();
    for (i, component) in volume.components().enumerate() {
        match component {
            Component::RootDir if i == 0 => {}
            Component::Normal(name) if i > 0 => names.push(name),
            _ => return Err(refuse("not an absolute path of plain names")),
        }
    }
    match names.first().and_then(|n| n.to_str()) {
        None => Err(refuse("the root cannot be a volume")),
        Some("proc" | "dev") => Err(refuse("the sandbox provides /proc and /dev")),
        Some("tmp") if names.len() == 1 => Ok(false),
        Some("tmp") => Err(refuse("under /tmp, which is writable already")),
        Some(_) => Ok(true),
    }
}

/// The root without an overlay: a tmpfs at `root` with each of the image's
/// top-level entries bound read-only (symlinks recreated).
fn bind_entries(sys: &dyn Syscalls, plan: &Plan, root: &Path) -> Result<(), StepError> {
    sys.mount(&MountOp::Tmpfs {
        target: root.to_owned(),
        options: "mode=0755,size=1m".into(),
        noexec: false,
    })
    .step(|| "mounting the new root tmpfs".into())?;
    for entry in &plan.entries {
        let target = root.join(&entry.name);
        let show = || target.display().to_string();
        match &entry.kind {
            EntryKind::Symlink { target: link } => {
                sys.create(&target, &Node::Symlink(link.clone()))
                    .step(|| format!("creating symlink {}", show()))?;
            }
            EntryKind::Dir { source } | EntryKind::File { source } => {
                let (node, recursive) = match entry.kind {
                    EntryKind::Dir { .. } => (Node::Dir, true),
                    _ => (Node::File, false),
                };
                sys.create(&target, &node)
                    .step(|| format!("creating mount point {}", show()))?;
                sys.mount(&MountOp::Bind {
                    source: source.clone(),
                    target: target.clone(),
                    recursive,
                })
                .step(|| format!("binding image entry {}", entry.name.to_string_lossy()))?;
                sys.mount(&MountOp::ReadOnly {
                    target: target.clone(),
                    recursive,
                })
                .step(|| format!("making {} read-only", show()))?;
            }
        }
    }
    Ok(())
}

/// The resource limits the sandboxed program runs under.
pub fn rlimits(limits: &Limits) -> Vec<Rlimit> {
    vec![
        Rlimit {
            resource: Resource::AddressSpace,
            value: limits.memory_bytes,
        },
        Rlimit {
            resource: Resource::Processes,
            value: limits.max_processes,
        },
        Rlimit {
            resource: Resource::OpenFiles,
            value: limits.max_open_files,
        },
        Rlimit {
            resource: Resource::FileSize,
            value: limits.max_file_bytes,
        },
        // No core dumps: they would be written into the sandbox's cwd, and are
        // of no use to a test report.
        Rlimit {
            resource: Resource::Core,
            value: 0,
        },
    ]
}

/// The program and arguments to execute: the entrypoint itself, or the
/// emulator with the entrypoint as its first argument.
pub fn exec_argv(argv: &[OsString], program: &Path, emulated: bool) -> Vec<OsString> {
    if !emulated {
        let mut out = vec![argv[0].clone()];
        out.extend(argv[1..].iter().cloned());
        return out;
    }
    // `-0` keeps the program's own argv[0], as a native exec would.
    let mut out = vec![
        OsString::from(EMULATOR_PATH),
        OsString::from("-0"),
        argv[0].clone(),
        program.as_os_str().to_owned(),
    ];
    out.extend(argv[1..].iter().cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::Recorder;

    fn plan() -> Plan {
        Plan {
            staging: "/tmp".into(),
            rootfs: None,
            entries: vec![
                Entry {
                    name: "hello".into(),
                    kind: EntryKind::File {
                        source: "/proc/self/fd/5".into(),
                    },
                },
                Entry {
                    name: "etc".into(),
                    kind: EntryKind::Dir {
                        source: "/proc/self/fd/6".into(),
                    },
                },
                Entry {
                    name: "lib".into(),
                    kind: EntryKind::Symlink {
                        target: "usr/lib".into(),
                    },
                },
            ],
            devices: vec![("null".into(), "/dev/null".into())],
            emulator: None,
            hostname: "sandbox".into(),
            tmp_bytes: 1 << 20,
            tmp_inodes: 100,
            host_network: false,
            volumes: Vec::new(),
        }
    }

    /// The calls from /proc on, for a root built under `root`.
    fn after_root(root: &str, with_dirs: bool) -> Vec<String> {
        let mut calls = Vec::new();
        let dir = |calls: &mut Vec<String>, name: &str| {
            if with_dirs {
                calls.push(format!("create {root}/{name} dir"));
            }
        };
        dir(&mut calls, "proc");
        calls.push(format!("mount proc {root}/proc"));
        dir(&mut calls, "dev");
        calls.extend([
            format!("mount tmpfs {root}/dev mode=0755,size=64k noexec=true"),
            format!("create {root}/dev/null file"),
            format!("mount bind /dev/null {root}/dev/null recursive=false"),
            format!("create {root}/dev/fd symlink -> /proc/self/fd"),
            format!("create {root}/dev/stdin symlink -> /proc/self/fd/0"),
            format!("create {root}/dev/stdout symlink -> /proc/self/fd/1"),
            format!("create {root}/dev/stderr symlink -> /proc/self/fd/2"),
            format!("mount readonly {root}/dev recursive=false"),
        ]);
        dir(&mut calls, "tmp");
        calls.extend([
            format!("mount tmpfs {root}/tmp mode=1777,size=1048576,nr_inodes=100 noexec=false"),
            format!("pivot_root {root}"),
            "mount readonly / recursive=false".to_owned(),
            "sethostname sandbox".to_owned(),
            "loopback_up".to_owned(),
        ]);
        calls
    }

    #[test]
    fn builds_the_root_from_binds_without_an_overlay() {
        let sys = Recorder::default();
        build_root(&sys, &plan()).unwrap();
        let mut expected: Vec<String> = [
            "mount private /",
            "mount tmpfs /tmp mode=0755,size=1m noexec=false",
            "create /tmp/root dir",
            "mount tmpfs /tmp/root mode=0755,size=1m noexec=false",
            "create /tmp/root/hello file",
            "mount bind /proc/self/fd/5 /tmp/root/hello recursive=false",
            "mount readonly /tmp/root/hello recursive=false",
            "create /tmp/root/etc dir",
            "mount bind /proc/self/fd/6 /tmp/root/etc recursive=true",
            "mount readonly /tmp/root/etc recursive=true",
            "create /tmp/root/lib symlink -> usr/lib",
        ]
        .map(String::from)
        .to_vec();
        expected.extend(after_root("/tmp/root", true));
        assert_eq!(sys.calls(), expected);
    }

    #[test]
    fn builds_the_root_as_an_overlay_naming_no_host_path() {
        let sys = Recorder::default();
        let plan = Plan {
            rootfs: Some("/proc/self/fd/4".into()),
            ..plan()
        };
        build_root(&sys, &plan).unwrap();
        let mut expected: Vec<String> = [
            "mount private /",
            "mount tmpfs /tmp mode=0755,size=1m noexec=false",
            "create /tmp/root dir",
            "create /tmp/skel dir",
            "create /tmp/skel/proc dir",
            "create /tmp/skel/dev dir",
            "create /tmp/skel/tmp dir",
            "mount overlay /tmp/skel:/proc/self/fd/4 /tmp/root",
        ]
        .map(String::from)
        .to_vec();
        expected.extend(after_root("/tmp/root", false));
        assert_eq!(sys.calls(), expected);
    }

    #[test]
    fn a_refused_overlay_falls_back_to_binds() {
        let sys = Recorder {
            fail_on: Some("mount overlay".into()),
            ..Recorder::default()
        };
        let plan = Plan {
            rootfs: Some("/proc/self/fd/4".into()),
            ..plan()
        };
        build_root(&sys, &plan).unwrap();
        let calls = sys.calls();
        let overlay = calls
            .iter()
            .position(|c| c.starts_with("mount overlay"))
            .unwrap();
        assert_eq!(
            calls[overlay + 1],
            "mount tmpfs /tmp/root mode=0755,size=1m noexec=false"
        );
        assert!(
            calls
                .contains(&"mount bind /proc/self/fd/5 /tmp/root/hello recursive=false".to_owned())
        );
        assert_eq!(
            calls
                .iter()
                .filter(|c| *c == "pivot_root /tmp/root")
                .count(),
            1
        );
    }

    #[test]
    fn the_root_is_read_only_before_the_program_can_run() {
        let sys = Recorder::default();
        build_root(&sys, &plan()).unwrap();
        let calls = sys.calls();
        let pivot = calls
            .iter()
            .position(|c| c.starts_with("pivot_root"))
            .unwrap();
        let ro = calls
            .iter()
            .position(|c| c == "mount readonly / recursive=false")
            .unwrap();
        assert!(pivot < ro);
        // Every bound image entry is made read-only right after its bind.
        for (i, call) in calls.iter().enumerate() {
            if call.starts_with("mount bind /proc/self/fd/") {
                assert!(calls[i + 1].starts_with("mount readonly"), "after {call}");
            }
        }
    }

    #[test]
    fn binds_the_emulator_read_only() {
        let sys = Recorder::default();
        let plan = Plan {
            emulator: Some("/proc/self/fd/9".into()),
            ..plan()
        };
        build_root(&sys, &plan).unwrap();
        let calls = sys.calls();
        let bind = calls
            .iter()
            .position(|c| {
                c == "mount bind /proc/self/fd/9 /tmp/root/dev/.scratchpack-emulator recursive=false"
            })
            .unwrap();
        assert_eq!(
            calls[bind + 1],
            "mount readonly /tmp/root/dev/.scratchpack-emulator recursive=false"
        );
    }

    #[test]
    fn stops_at_the_first_failure_and_says_what_it_was_doing() {
        let sys = Recorder {
            fail_on: Some("mount proc".into()),
            ..Recorder::default()
        };
        let err = build_root(&sys, &plan()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "mounting /proc: Operation not permitted (os error 1)"
        );
        assert_eq!(sys.calls().last().unwrap(), "mount proc /tmp/root/proc");
        assert!(!sys.calls().iter().any(|c| c.starts_with("pivot_root")));
    }

    #[test]
    fn unprivileged_callers_map_themselves_and_deny_setgroups() {
        let maps = id_maps(1000, 1001, 65532, 65533);
        assert_eq!(
            maps.uid,
            IdMap {
                inside: 65532,
                outside: 1000
            }
        );
        assert_eq!(
            maps.gid,
            IdMap {
                inside: 65533,
                outside: 1001
            }
        );
        assert!(maps.deny_setgroups);
    }

    #[test]
    fn root_is_never_root_inside() {
        let maps = id_maps(0, 0, 0, 0);
        assert_eq!(
            maps.uid,
            IdMap {
                inside: 0,
                outside: ROOT_CALLER_OUTSIDE_ID
            }
        );
        assert_eq!(
            maps.gid,
            IdMap {
                inside: 0,
                outside: ROOT_CALLER_OUTSIDE_ID
            }
        );
        assert!(!maps.deny_setgroups);
    }

    #[test]
    fn limits_become_rlimits_with_no_core_dumps() {
        let limits = Limits {
            memory_bytes: 1 << 28,
            max_processes: 16,
            ..Limits::default()
        };
        let sys = Recorder::default();
        sys.drop_privileges(&rlimits(&limits), &[]).unwrap();
        let call = sys.calls().pop().unwrap();
        assert!(
            call.starts_with("drop_privileges AddressSpace=268435456,Processes=16,"),
            "{call}"
        );
        assert!(call.ends_with("Core=0 filter=0"), "{call}");
    }

    #[test]
    fn emulated_programs_run_under_the_emulator() {
        let argv: Vec<OsString> = vec!["/probe".into(), "report".into()];
        assert_eq!(exec_argv(&argv, Path::new("/probe"), false), argv);
        let emulated = exec_argv(&argv, Path::new("/probe"), true);
        assert_eq!(
            emulated,
            [
                "/dev/.scratchpack-emulator",
                "-0",
                "/probe",
                "/probe",
                "report"
            ]
            .map(OsString::from)
        );
    }

    #[test]
    fn volumes_are_writable_tmpfs_mounted_inside_the_read_only_root() {
        let sys = Recorder::default();
        let plan = Plan {
            rootfs: Some("/proc/self/fd/4".into()),
            volumes: vec!["/data".into(), "/tmp".into(), "/var/cache/app".into()],
            ..plan()
        };
        build_root(&sys, &plan).unwrap();
        let calls = sys.calls();
        let read_only = calls
            .iter()
            .position(|c| c == "mount readonly / recursive=false")
            .unwrap();
        // After `/` is read-only and the new root is `/`; `/tmp` is a tmpfs
        // already and gets no second one.
        assert_eq!(
            calls[read_only + 1..read_only + 3],
            [
                "mount tmpfs /data mode=1777,size=1048576,nr_inodes=100 noexec=false",
                "mount tmpfs /var/cache/app mode=1777,size=1048576,nr_inodes=100 noexec=false",
            ]
        );
        assert_eq!(calls[read_only + 3], "sethostname sandbox");
    }

    #[test]
    fn a_volume_that_is_not_a_plain_directory_of_the_image_is_refused_before_any_mount() {
        for (volume, why) in [
            ("data", "not an absolute path"),
            ("/data/../etc", "not an absolute path"),
            ("/", "the root cannot be a volume"),
            ("/proc/sys", "the sandbox provides /proc and /dev"),
            ("/dev", "the sandbox provides /proc and /dev"),
            ("/tmp/cache", "under /tmp"),
        ] {
            let sys = Recorder::default();
            let plan = Plan {
                volumes: vec![volume.into()],
                ..plan()
            };
            let err = build_root(&sys, &plan).unwrap_err();
            assert_eq!(err.what, format!("mounting the volume {volume}"));
            assert!(err.source.to_string().contains(why), "{volume}: {err:?}");
            assert!(sys.calls().is_empty(), "{volume}: something was mounted");
        }
    }

    #[test]
    fn more_volumes_than_the_bound_are_refused_before_any_is_mounted() {
        let sys = Recorder::default();
        let plan = Plan {
            volumes: (0..=MAX_VOLUMES).map(|i| format!("/v{i}").into()).collect(),
            ..plan()
        };
        let err = build_root(&sys, &plan).unwrap_err();
        assert_eq!(err.what, "mounting the volumes");
        assert!(
            err.source.to_string().contains("65 volumes, more than 64"),
            "{err:?}"
        );
        assert!(sys.calls().is_empty(), "something was mounted");
    }
}

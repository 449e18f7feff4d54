//! The C and C++ compilers of image builds: zig, as the compiler only, for
//! every musl target (its own musl 1.2.5 headers, the release Rust's musl
//! targets link). The linker stays rustc's (rust-lld for foreign targets),
//! so linking, the crate list and the static proof are what they are for
//! pure-Rust crates.
//!
//! cc-rs, the cmake crate and bindgen are pointed at zig per target through
//! the variables [`Wrappers::variables`] names: small generated scripts under
//! the target directory run this program again ([`wrapper`]), which drops or
//! translates the arguments zig rejects ([`args`]), pins the target's CPU,
//! maps host paths out of the objects and runs zig. [`zig`] finds zig, or
//! installs a pinned release into the user's cache, as [`cmake`] does for
//! cmake and ninja when a crate runs cmake; [`runtime`] builds the C++
//! runtime a target links when a crate compiles C++.

pub mod args;
pub mod cmake;
mod files;
pub mod libclang;
mod pypi;
pub mod runtime;
pub mod wrapper;
pub mod zig;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use cmake::{Cmake, CmakeError};
pub use files::Wrappers;
pub use libclang::{Libclang, LibclangError};
pub use zig::{Zig, ZigError};

/// Bumped whenever what the wrappers hand zig changes. It names the
/// wrappers' directory, and so the `CC_<triple>` cargo sees: cargo re-runs
/// the build scripts that compiled C under other rules, which it would not
/// for a change of the scripts' contents alone.
pub const WRAPPER_VERSION: u32 = 1;

/// The first argument that makes this program a compiler wrapper
/// ([`wrapper::run_if_requested`]), which the generated scripts pass.
pub const MARKER: &str = "--scratchpack-zig-wrapper";

/// The `SOURCE_DATE_EPOCH` C is compiled with, whatever the image's epoch:
/// clang reads it for `__DATE__` and `__TIME__`, and the image's epoch
/// changes only the image's timestamps, never a compiled byte.
pub const C_SOURCE_DATE_EPOCH: &str = "0";

/// The architectures zig compiles C for, as the argument rules tell them
/// apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
    Arm,
    X86,
    Riscv64,
    Powerpc64le,
}

/// A musl target zig compiles C for: the names and CPU zig is given, and
/// what the toolchain files for cmake and bindgen say of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZigTarget {
    pub arch: Arch,
    /// zig's `-target`.
    pub zig: &'static str,
    /// zig's `-mcpu`, pinned to rustc's baseline where zig's default
    /// differs: zig's arm has NEON and 32 double registers, rustc's armv7
    /// neither; zig's x86 default is the same pentium4, pinned anyway.
    pub cpu: Option<&'static str>,
    /// zig's musl header directories under `lib/libc/include`, the
    /// architecture's own and the one shared across its family, as `zig cc
    /// -v` lists them.
    pub include: [&'static str; 2],
    /// `CMAKE_SYSTEM_PROCESSOR`.
    pub processor: &'static str,
}

const TARGETS: [(&str, &str, ZigTarget); 6] = [
    (
        "x86_64-",
        "-linux-musl",
        ZigTarget {
            arch: Arch::X86_64,
            zig: "x86_64-linux-musl",
            cpu: None,
            include: ["x86_64-linux-musl", "x86-linux-any"],
            processor: "x86_64",
        },
    ),
    (
        "aarch64-",
        "-linux-musl",
        ZigTarget {
            arch: Arch::Aarch64,
            zig: "aarch64-linux-musl",
            cpu: None,
            include: ["aarch64-linux-musl", "aarch64-linux-any"],
            processor: "aarch64",
        },
    ),
    (
        "armv7-",
        "-linux-musleabihf",
        ZigTarget {
            arch: Arch::Arm,
            zig: "arm-linux-musleabihf",
            cpu: Some("generic+v7a+vfp3-d32+thumb2-neon"),
            include: ["arm-linux-musl", "arm-linux-any"],
            processor: "armv7",
        },
    ),
    (
        "i686-",
        "-linux-musl",
        ZigTarget {
            arch: Arch::X86,
            zig: "x86-linux-musl",
            cpu: Some("pentium4"),
            include: ["x86-linux-musl", "x86-linux-any"],
            processor: "i686",
        },
    ),
    (
        "riscv64gc-",
        "-linux-musl",
        ZigTarget {
            arch: Arch::Riscv64,
            zig: "riscv64-linux-musl",
            cpu: Some("generic_rv64+m+a+f+d+c"),
            include: ["riscv64-linux-musl", "riscv-linux-any"],
            processor: "riscv64",
        },
    ),
    (
        "powerpc64le-",
        "-linux-musl",
        ZigTarget {
            arch: Arch::Powerpc64le,
            zig: "powerpc64le-linux-musl",
            cpu: None,
            include: ["powerpc64-linux-musl", "powerpc-linux-any"],
            processor: "ppc64le",
        },
    ),
];

/// The zig target of a Rust triple, when it is one of the musl targets
/// zig compiles C for here (whatever its vendor).
pub fn zig_target(triple: &str) -> Option<&'static ZigTarget> {
    TARGETS
        .iter()
        .find(|(arch, suffix, _)| triple.starts_with(arch) && triple.ends_with(suffix))
        .map(|(_, _, t)| t)
}

/// A triple as cc-rs spells it in variable names: `-` and `.` as `_`.
pub fn underscored(triple: &str) -> String {
    triple.replace(['-', '.'], "_")
}

/// What a compiler wrapper needs to run zig, written beside the wrappers as
/// JSON and read by each wrapper process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub zig: PathBuf,
    /// Where zig's own headers and sources are (`zig env`'s `lib_dir`).
    pub zig_lib: PathBuf,
    /// Host paths and what they are written as in objects, in the order
    /// given to the compiler: of two that match, the last given wins, as
    /// for rustc's `--remap-path-prefix`.
    pub maps: Vec<(PathBuf, String)>,
    /// zig's cache of its own builds (libc++ for each target), shared by
    /// every workspace of the user.
    pub global_cache: PathBuf,
    /// zig's cache of the objects a build compiles, in the target
    /// directory, so `cargo clean` clears it.
    pub local_cache: PathBuf,
    /// The directory rustc searches for the C++ runtime and `libatomic.a`.
    pub lib_dir: PathBuf,
}

impl Settings {
    /// The variables a zig process runs with: its caches, and the fixed
    /// `SOURCE_DATE_EPOCH` of C.
    pub fn zig_environment(&self) -> [(&'static str, OsString); 3] {
        [
            ("ZIG_GLOBAL_CACHE_DIR", self.global_cache.clone().into()),
            ("ZIG_LOCAL_CACHE_DIR", self.local_cache.clone().into()),
            ("SOURCE_DATE_EPOCH", C_SOURCE_DATE_EPOCH.into()),
        ]
    }
}

/// Where the generated wrappers of a zig version live in a target
/// directory: the path names zig's version and the wrappers' rules, so
/// either changing changes `CC_<triple>` (and cargo re-runs the build
/// scripts that compiled C), while a rebuild of this program does not.
pub fn wrappers_dir(target_dir: &Path, zig_version: &str) -> PathBuf {
    target_dir
        .join("scratchpack")
        .join("cc")
        .join(format!("zig-{zig_version}-w{WRAPPER_VERSION}"))
}

/// What `program arg` prints when it succeeds; else what it said on stderr,
/// or why it could not be run: how zig and cmake are asked what they are.
fn answer(program: &Path, arg: &str) -> Result<String, String> {
    let out = std::process::Command::new(program)
        .arg(arg)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The build tools `packages` reach in Cargo.lock: whether any of them
/// (workspace members, by name) depends, directly or not and in any kind or
/// for any platform, on `cc`, on `cmake`, or on `bindgen` (or `clang-sys`,
/// which loads libclang).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LockTools {
    pub cc: bool,
    pub cmake: bool,
    pub bindgen: bool,
}

impl LockTools {
    /// Whether zig is needed: a crate runs a C compiler, itself or
    /// through cmake, or parses C headers with bindgen (zig's musl headers
    /// are the ones for the target).
    pub fn compiles_c(self) -> bool {
        self.cc || self.cmake || self.bindgen
    }
}

/// What Cargo.lock says `packages` reach ([`LockTools`]), read once. The
/// lock is resolved with every feature of the workspace's members (and
/// the features of dependencies those turn on), so a tool counts whenever
/// some member's feature could run it; a dependency's optional dependency
/// that nothing turns on is not in it (aws-lc-sys's `bindgen`). `None`
/// when the lock cannot tell: there is none,
/// it does not parse, or it does not list a package (it is older than the
/// workspace).
pub fn lock_tools(lock: Option<&str>, packages: &[&str]) -> Option<LockTools> {
    #[derive(Deserialize)]
    struct Lock {
        #[serde(default)]
        package: Vec<LockPackage>,
    }
    #[derive(Deserialize)]
    struct LockPackage {
        name: String,
        #[serde(default)]
        dependencies: Vec<String>,
    }
    let lock = toml::from_str::<Lock>(lock?).ok()?;
    // A dependency is written `name`, or `name version [(source)]` when
    // several versions are locked: its name is the first word either way.
    // Versions are not told apart, which can only say yes more often.
    let deps: std::collections::BTreeMap<&str, Vec<&str>> = lock
        .package
        .iter()
        .map(|p| {
            let names = p
                .dependencies
                .iter()
                .filter_map(|d| d.split_whitespace().next())
                .collect();
            (p.name.as_str(), names)
        })
        .collect();
    if packages.iter().any(|p| !deps.contains_key(p)) {
        return None;
    }
    let mut tools = LockTools::default();
    let mut seen = std::collections::BTreeSet::new();
    let mut todo: Vec<&str> = packages.to_vec();
    while let Some(name) = todo.pop() {
        match name {
            "cc" => tools.cc = true,
            "cmake" => tools.cmake = true,
            "bindgen" | "clang-sys" => tools.bindgen = true,
            _ => {}
        }
        if seen.insert(name) {
            todo.extend(deps.get(name).into_iter().flatten());
        }
    }
    Some(tools)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_six_musl_targets_have_a_zig_target_and_others_none() {
        let zig = |t| zig_target(t).map(|z| z.zig);
        assert_eq!(zig("x86_64-unknown-linux-musl"), Some("x86_64-linux-musl"));
        assert_eq!(
            zig("aarch64-unknown-linux-musl"),
            Some("aarch64-linux-musl")
        );
        assert_eq!(
            zig("armv7-unknown-linux-musleabihf"),
            Some("arm-linux-musleabihf")
        );
        assert_eq!(zig("i686-unknown-linux-musl"), Some("x86-linux-musl"));
        assert_eq!(
            zig("riscv64gc-unknown-linux-musl"),
            Some("riscv64-linux-musl")
        );
        assert_eq!(
            zig("powerpc64le-unknown-linux-musl"),
            Some("powerpc64le-linux-musl")
        );
        assert_eq!(zig("aarch64-alpine-linux-musl"), Some("aarch64-linux-musl"));
        for other in [
            "x86_64-unknown-linux-gnu",
            "armv7-unknown-linux-gnueabihf",
            "arm-unknown-linux-musleabi",
            "s390x-unknown-linux-musl",
        ] {
            assert_eq!(zig(other), None, "{other}");
        }
        assert_eq!(
            underscored("armv7-unknown-linux-musleabihf"),
            "armv7_unknown_linux_musleabihf"
        );
    }

    #[test]
    fn the_wrappers_directory_names_the_zig_version_and_the_rules() {
        let dir = wrappers_dir(Path::new("/t"), "0.15.2");
        assert_eq!(
            dir,
            PathBuf::from(format!("/t/scratchpack/cc/zig-0.15.2-w{WRAPPER_VERSION}"))
        );
        assert_ne!(dir, wrappers_dir(Path::new("/t"), "0.16.0"));
    }

    const LOCK: &str = r#"
version = 4

[[package]]
name = "app"
version = "0.1.0"
dependencies = ["ring", "serde"]

[[package]]
name = "pure"
version = "0.1.0"
dependencies = ["serde", "itoa 1.0.0"]

[[package]]
name = "ring"
version = "0.17.14"
dependencies = ["cc 1.2.0 (registry+https://github.com/rust-lang/crates.io-index)", "untrusted"]

[[package]]
name = "serde"
version = "1.0.0"

[[package]]
name = "itoa"
version = "1.0.0"

[[package]]
name = "cc"
version = "1.2.0"
"#;

    #[test]
    fn c_is_compiled_when_a_package_reaches_cc_cmake_or_bindgen_in_the_lock() {
        let tools = |lock: &str, packages: &[&str]| lock_tools(Some(lock), packages);
        let cc = LockTools {
            cc: true,
            ..LockTools::default()
        };
        assert_eq!(tools(LOCK, &["app"]), Some(cc));
        assert_eq!(tools(LOCK, &["pure"]), Some(LockTools::default()));
        assert!(!LockTools::default().compiles_c());
        assert_eq!(tools(LOCK, &["pure", "app"]), Some(cc));
        // cmake itself is provided only where a package reaches the crate.
        let cmake = LOCK.replace("cc 1.2.0", "cmake 0.1.0");
        let reached = tools(&cmake, &["app"]).unwrap();
        assert!(reached.cmake && reached.compiles_c() && !reached.cc);
        // bindgen, or clang-sys alone, needs zig's headers and libclang.
        for crate_name in ["bindgen 0.72.1", "clang-sys 1.8.1"] {
            let bindgen = LOCK.replace("cc 1.2.0", crate_name);
            let reached = tools(&bindgen, &["app"]).unwrap();
            assert!(
                reached.bindgen && reached.compiles_c() && !reached.cc,
                "{crate_name}"
            );
        }
        // No lock, one that does not parse or one older than the package.
        assert_eq!(lock_tools(None, &["pure"]), None);
        assert_eq!(tools("[[package]", &["pure"]), None);
        assert_eq!(tools(LOCK, &["pure", "new"]), None);
    }
}

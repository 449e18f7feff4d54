//! Every program the engine runs (cargo, rustc, rustup, git, and the
//! container runtimes images are loaded into) and the environment they and
//! the engine read. The environment is read once, at
//! the command line's edge ([`Env::from_process`]), into a value that is
//! passed down: nothing below the command line asks the process for a
//! variable, so what a run depends on is what it was handed, and a test
//! hands it what it wants ([`Env::from_vars`]). Also what those programs
//! say: the workspace (`cargo metadata`), the crates a binary links (`cargo
//! tree`, Cargo.lock) and the answers kept between runs.

pub mod answers;
pub mod cargo;
pub mod cargo_config;
pub mod cc;
pub mod crates;
pub mod git;
pub mod metadata;
pub mod runtime;
pub mod rust_std;
pub mod rustc;
pub mod rustup;
pub mod versions;
pub mod workspace;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

/// The variables read by name. Families of variables (cargo's build
/// variables, the C compilers of [`shapes_build`], git's `GIT_*`) are held
/// as well.
const NAMED: &[&str] = &[
    // The programs to run, and the caller's own rustc wrapper (sccache,
    // say), which image builds run in turn.
    "CARGO",
    "RUSTC",
    "RUSTC_WRAPPER",
    // The caller's flags, which image builds start from.
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    // Where cargo's and the user's homes are: remapped out of binaries, and
    // where cargo's and git's configuration is read.
    "CARGO_HOME",
    "HOME",
    "XDG_CONFIG_HOME",
    // rustup's toolchain, found without starting rustc.
    "RUSTUP_HOME",
    "RUSTUP_TOOLCHAIN",
    // Where the target directory is, for the workspace record.
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    // The time images record, and where the emulators of foreign
    // platforms are.
    "SOURCE_DATE_EPOCH",
    "SCRATCHPACK_EMULATOR_DIR",
    // Where zig is found ([`cc::zig`]): the one the caller names, else one
    // on the search path, else the one installed into the user's cache.
    "SCRATCHPACK_ZIG",
    "PATH",
    "XDG_CACHE_HOME",
    // The cmake the caller names, and its generator ([`cc::cmake`]): left
    // as they are, and without them scratchpack's cmake runs ninja.
    "CMAKE",
    "CMAKE_GENERATOR",
    // The libclang the caller names for bindgen ([`cc::libclang`]): left
    // as it is, and without it scratchpack's is used.
    "LIBCLANG_PATH",
];

/// Whether an environment variable changes what cargo and rustc build.
/// `RUSTC_WRAPPER` (sccache) is left out: a wrapper caches, it does not
/// change the output; `RUSTC` is a host path, and `rustc -vV` names the
/// compiler it runs.
pub fn shapes_build(name: &str) -> bool {
    matches!(
        name,
        "RUSTFLAGS" | "CARGO_ENCODED_RUSTFLAGS" | "RUSTDOCFLAGS" | "CARGO_ENCODED_RUSTDOCFLAGS"
    ) || name.starts_with("CARGO_TARGET_")
        || name.starts_with("CARGO_PROFILE_")
        || (name.starts_with("CARGO_BUILD_") && name != "CARGO_BUILD_TARGET_DIR")
        || C_TOOLCHAIN_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The variables by which a caller names its own C toolchain for a target
/// (`CC_<triple>` and the like, as cc-rs, the cmake crate and bindgen read
/// them), and its flags. Each one the caller sets for a triple is left as
/// it is ([`Env::sets_for_triple`]) and changes what is built.
const C_TOOLCHAIN_PREFIXES: &[&str] = &[
    "CC_",
    "CFLAGS",
    "CXX_",
    "CXXFLAGS",
    "AR_",
    "RANLIB_",
    "CXXSTDLIB_",
    "CMAKE_TOOLCHAIN_FILE_",
    "BINDGEN_EXTRA_CLANG_ARGS",
];

/// The variable that names the linker cargo uses for `triple`.
pub fn linker_var(triple: &str) -> String {
    format!(
        "CARGO_TARGET_{}_LINKER",
        triple.to_uppercase().replace(['-', '.'], "_")
    )
}

/// Opens (creating it) and locks `path` for this process alone, waiting
/// for any other holder: what is installed once for a toolchain or a user
/// (zig, a C++ runtime, a standard library) is made under such a lock, so
/// that two builds at once make it once. The lock goes with the file.
pub(crate) fn lock_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)?;
    Ok(file)
}

/// Flags written in one string, as cargo splits them: on whitespace.
fn split_flags(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

/// Whether [`Env`] holds a variable of this name.
fn holds(name: &str) -> bool {
    NAMED.contains(&name) || shapes_build(name) || name.starts_with("GIT_")
}

/// The environment variables the engine reads, and only those; read once
/// and passed down.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    vars: BTreeMap<String, OsString>,
}

impl Env {
    /// This process's environment. Called once, by the command line.
    pub fn from_process() -> Env {
        Env::from_vars(std::env::vars_os())
    }

    /// An environment of the given variables (those it holds; a name that
    /// is not Unicode is none of them).
    pub fn from_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Env
    where
        K: Into<OsString>,
        V: Into<OsString>,
    {
        let vars = vars
            .into_iter()
            .filter_map(|(name, value)| {
                let name = name.into().into_string().ok()?;
                holds(&name).then(|| (name, value.into()))
            })
            .collect();
        Env { vars }
    }

    /// A variable's value, when it is set.
    fn var_os(&self, name: &str) -> Option<&OsStr> {
        debug_assert!(holds(name), "`{name}` is not a variable Env holds");
        self.vars.get(name).map(OsString::as_os_str)
    }

    /// A variable's value, when it is set and Unicode (as `std::env::var`
    /// gives it).
    fn var(&self, name: &str) -> Option<&str> {
        self.var_os(name)?.to_str()
    }

    /// Every variable whose name starts with `prefix`, in name order.
    fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a OsStr)> {
        self.vars
            .iter()
            .filter(move |(name, _)| name.starts_with(prefix))
            .map(|(name, value)| (name.as_str(), value.as_os_str()))
    }

    /// The `RUSTC_WRAPPER` the caller set, if any.
    pub fn rustc_wrapper(&self) -> Option<&OsStr> {
        self.var_os("RUSTC_WRAPPER")
    }

    /// The caller's rustflags, read as cargo reads them: the encoded form
    /// (separated by 0x1f) when it is set and not empty, else `RUSTFLAGS`
    /// split on whitespace.
    pub fn rustflags(&self) -> Vec<String> {
        self.env_rustflags().unwrap_or_default()
    }

    /// The rustflags the environment sets, if it sets any: then cargo
    /// takes none from its configuration files.
    pub fn env_rustflags(&self) -> Option<Vec<String>> {
        match self.var("CARGO_ENCODED_RUSTFLAGS") {
            Some(s) if !s.is_empty() => Some(s.split('\x1f').map(str::to_owned).collect()),
            _ => self.var("RUSTFLAGS").map(split_flags),
        }
    }

    /// `CARGO_TARGET_<TRIPLE>_RUSTFLAGS`, cargo's variable for its
    /// `target.<triple>.rustflags`.
    pub fn target_rustflags(&self, triple: &str) -> Vec<String> {
        let name = format!(
            "CARGO_TARGET_{}_RUSTFLAGS",
            triple.to_uppercase().replace(['-', '.'], "_")
        );
        self.var(&name).map(split_flags).unwrap_or_default()
    }

    /// `CARGO_BUILD_RUSTFLAGS`, cargo's variable for `build.rustflags`.
    pub fn build_rustflags(&self) -> Option<Vec<String>> {
        self.var("CARGO_BUILD_RUSTFLAGS").map(split_flags)
    }

    /// Cargo's home: `CARGO_HOME`, else `.cargo` in the user's home.
    pub fn cargo_home(&self) -> Option<PathBuf> {
        self.var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| self.home().map(|h| h.join(".cargo")))
    }

    /// The user's home directory, `HOME`.
    fn home(&self) -> Option<PathBuf> {
        self.var_os("HOME").map(PathBuf::from)
    }

    /// The linker the caller set for `triple` ([`linker_var`]), if any.
    pub fn linker(&self, triple: &str) -> Option<&OsStr> {
        self.var_os(&linker_var(triple))
    }

    /// `SOURCE_DATE_EPOCH` as it was set (reproducible-builds.org), unparsed.
    pub fn source_date_epoch(&self) -> Option<&str> {
        self.var("SOURCE_DATE_EPOCH")
    }

    /// Where to look for `qemu-<arch>-static`: `SCRATCHPACK_EMULATOR_DIR`,
    /// else `/usr/bin`, where Debian's qemu-user-static installs them.
    pub fn emulator_dir(&self) -> PathBuf {
        self.var_os("SCRATCHPACK_EMULATOR_DIR")
            .filter(|d| !d.is_empty())
            .map_or_else(|| PathBuf::from("/usr/bin"), PathBuf::from)
    }

    /// The directory of scratchpack's own cache for the user, shared by
    /// every workspace: `$XDG_CACHE_HOME/scratchpack`, else
    /// `~/.cache/scratchpack` (the XDG base directory rules: a relative
    /// `XDG_CACHE_HOME` is ignored).
    pub fn user_cache_dir(&self) -> Option<PathBuf> {
        self.var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|d| d.is_absolute())
            .or_else(|| self.home().map(|h| h.join(".cache")))
            .map(|d| d.join("scratchpack"))
    }

    /// The first executable file named `name` in a directory of `PATH`.
    pub fn on_path(&self, name: &str) -> Option<PathBuf> {
        use std::os::unix::fs::PermissionsExt as _;
        let paths = self.var_os("PATH")?;
        std::env::split_paths(paths)
            .filter(|dir| dir.is_absolute())
            .map(|dir| dir.join(name))
            .find(|p| {
                std::fs::metadata(p)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
    }

    /// Whether the caller set `<prefix>_<triple>` in either spelling cc-rs
    /// reads (the triple as written, or with `-` and `.` as `_`).
    pub fn sets_for_triple(&self, prefix: &str, triple: &str) -> bool {
        debug_assert!(holds(&format!("{prefix}_")), "`{prefix}_` is not held");
        let underscored = triple.replace(['-', '.'], "_");
        self.vars.contains_key(&format!("{prefix}_{triple}"))
            || self.vars.contains_key(&format!("{prefix}_{underscored}"))
    }

    /// The variables that change what cargo and rustc build
    /// ([`shapes_build`]), with their values.
    pub fn build_variables(&self) -> BTreeMap<String, String> {
        self.vars
            .iter()
            .filter(|(name, _)| shapes_build(name))
            .map(|(name, value)| (name.clone(), value.to_string_lossy().into_owned()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_variables_read_are_held() {
        let env = Env::from_vars([
            ("RUSTFLAGS", "-Copt-level=s"),
            ("CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER", "cc"),
            ("GIT_DIR", "/elsewhere"),
            ("LANG", "C.UTF-8"),
            ("TERM", "dumb"),
        ]);
        let names: Vec<&str> = env.vars.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER",
                "GIT_DIR",
                "RUSTFLAGS"
            ]
        );
        assert_eq!(
            env.linker("x86_64-unknown-linux-musl"),
            Some(OsStr::new("cc"))
        );
        assert_eq!(
            linker_var("armv7-unknown-linux-musleabihf"),
            "CARGO_TARGET_ARMV7_UNKNOWN_LINUX_MUSLEABIHF_LINKER"
        );
        let git: Vec<_> = env.with_prefix("GIT_").collect();
        assert_eq!(git, [("GIT_DIR", OsStr::new("/elsewhere"))]);
    }

    #[test]
    fn a_wrapper_and_the_target_directory_do_not_shape_the_build() {
        let env = Env::from_vars([
            ("RUSTC_WRAPPER", "sccache"),
            ("CARGO_BUILD_TARGET_DIR", "/t"),
            ("CARGO_PROFILE_RELEASE_LTO", "true"),
            ("CC_aarch64_unknown_linux_musl", "clang"),
        ]);
        assert_eq!(
            env.build_variables().into_keys().collect::<Vec<_>>(),
            ["CARGO_PROFILE_RELEASE_LTO", "CC_aarch64_unknown_linux_musl"]
        );
        assert_eq!(env.rustc_wrapper(), Some(OsStr::new("sccache")));
    }

    #[test]
    fn rustflags_are_read_as_cargo_reads_them() {
        let env = |vars: &[(&str, &str)]| Env::from_vars(vars.iter().copied());
        assert_eq!(
            env(&[("RUSTFLAGS", " -Ca  -Cb ")]).rustflags(),
            ["-Ca", "-Cb"]
        );
        let both = env(&[
            ("RUSTFLAGS", "-Ca"),
            ("CARGO_ENCODED_RUSTFLAGS", "-Cx y\x1f-Cz"),
        ]);
        assert_eq!(both.rustflags(), ["-Cx y", "-Cz"]);
        let empty = env(&[("RUSTFLAGS", "-Ca"), ("CARGO_ENCODED_RUSTFLAGS", "")]);
        assert_eq!(empty.rustflags(), ["-Ca"]);
        assert!(env(&[]).rustflags().is_empty());
    }

    #[test]
    fn the_users_cache_and_programs_on_the_path() {
        let env = |vars: &[(&str, &str)]| Env::from_vars(vars.iter().copied());
        assert_eq!(
            env(&[("HOME", "/home/u")]).user_cache_dir(),
            Some(PathBuf::from("/home/u/.cache/scratchpack"))
        );
        let xdg = env(&[("HOME", "/home/u"), ("XDG_CACHE_HOME", "/c")]);
        assert_eq!(xdg.user_cache_dir(), Some(PathBuf::from("/c/scratchpack")));
        // A relative XDG_CACHE_HOME is not one (the XDG rules).
        let relative = env(&[("HOME", "/home/u"), ("XDG_CACHE_HOME", "c")]);
        assert_eq!(
            relative.user_cache_dir(),
            Some(PathBuf::from("/home/u/.cache/scratchpack"))
        );
        assert_eq!(Env::default().user_cache_dir(), None);

        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        for d in [&a, &b] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(a.join("tool"), "").unwrap();
        std::fs::write(b.join("tool"), "").unwrap();
        std::fs::set_permissions(b.join("tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::join_paths([&a, &b]).unwrap();
        let found = Env::from_vars([("PATH", path)]).on_path("tool");
        assert_eq!(found, Some(b.join("tool")), "the first executable one");
        let sets = Env::from_vars([("CC_aarch64-unknown-linux-musl", "clang")]);
        assert!(sets.sets_for_triple("CC", "aarch64-unknown-linux-musl"));
        assert!(!sets.sets_for_triple("CXX", "aarch64-unknown-linux-musl"));
        assert!(!sets.sets_for_triple("CC", "x86_64-unknown-linux-musl"));
    }

    #[test]
    fn cargo_home_falls_back_to_the_users_home() {
        let home = Env::from_vars([("HOME", "/home/u")]);
        assert_eq!(home.cargo_home(), Some(PathBuf::from("/home/u/.cargo")));
        let set = Env::from_vars([("HOME", "/home/u"), ("CARGO_HOME", "/c")]);
        assert_eq!(set.cargo_home(), Some(PathBuf::from("/c")));
        assert_eq!(Env::default().cargo_home(), None);
        assert_eq!(Env::default().emulator_dir(), PathBuf::from("/usr/bin"));
        let empty = Env::from_vars([("SCRATCHPACK_EMULATOR_DIR", "")]);
        assert_eq!(empty.emulator_dir(), PathBuf::from("/usr/bin"));
    }
}

//! Who compiles the C and C++ of image builds, decided once per run from
//! images.toml's `c-compiler`, Cargo.lock and where zig is, before anything
//! compiles (action keys record it); and what a build that found no C
//! compiler is told to do.

use std::path::{Path, PathBuf};

use super::{CompileError, is_foreign};
use crate::manifest::{CCompiler, Plan};
use crate::shell::Shell;
use crate::toolchain::cc::{self, Cmake, Libclang, Settings, Wrappers, Zig, ZigError};
use crate::toolchain::{Env, answers, crates};

/// The C and C++ compilers of a run's image builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CCompilers {
    /// zig, for every musl target built: no crate falls back to the host's
    /// compiler, whose glibc headers and fortified calls do not fit musl.
    /// With it, cmake when a package of an image depends on the `cmake`
    /// crate, and libclang when one depends on `bindgen`.
    Zig(Box<Zig>, Option<Cmake>, Option<Libclang>),
    /// No crate of the images compiles C, as Cargo.lock tells: nothing is
    /// provided, and zig is never fetched.
    NotNeeded,
    /// `c-compiler = "none"`: only what the caller's variables name.
    Declined,
}

impl CCompilers {
    /// Decides for every image of `plan` (not only those a run selects,
    /// so that building some images and then all gives every crate the
    /// same flags): zig when images.toml asks for it, or leaves the key out
    /// and a package of an image depends on `cc` or `cmake` in Cargo.lock.
    pub fn decide(env: &Env, plan: &Plan) -> Result<CCompilers, CompileError> {
        if plan.c_compiler == CCompiler::None {
            return Ok(CCompilers::Declined);
        }
        let packages: Vec<&str> = plan.images.iter().map(|i| i.package.as_str()).collect();
        let read = || {
            let lock = std::fs::read_to_string(plan.workspace_root.join("Cargo.lock"));
            cc::lock_tools(lock.ok().as_deref(), &packages)
        };
        // A workspace without a lock, or with one older than its packages,
        // has cargo resolve it (writing the lock) first: the build would,
        // moments later, and the answer must not change between the first
        // run and the next. A lock that still cannot tell means yes to
        // both: a build that compiles C must never fall back to the host's
        // compiler, nor one that runs cmake find none.
        let tools = read()
            .or_else(|| {
                let _ = crates::inputs(env, &plan.workspace_root, &plan.target_dir);
                read()
            })
            .unwrap_or(cc::LockTools {
                cc: true,
                cmake: true,
                bindgen: true,
            });
        if plan.c_compiler != CCompiler::Zig && !tools.compiles_c() {
            return Ok(CCompilers::NotNeeded);
        }
        let memo = answers::dir(&plan.target_dir);
        let zig = Zig::find(env, &memo).map_err(CompileError::Zig)?;
        let cmake = if tools.cmake {
            Some(Cmake::find(env, &memo).map_err(CompileError::Cmake)?)
        } else {
            None
        };
        let libclang = if tools.bindgen {
            Some(Libclang::find(env).map_err(CompileError::Libclang)?)
        } else {
            None
        };
        Ok(CCompilers::Zig(Box::new(zig), cmake, libclang))
    }

    /// What action keys record: the zig in use, if any, cmake and libclang.
    pub fn key(&self) -> Option<String> {
        match self {
            CCompilers::Zig(zig, cmake, libclang) => {
                let tools = [
                    Some(zig.key()),
                    cmake.as_ref().map(Cmake::key),
                    libclang.as_ref().map(Libclang::key),
                ];
                Some(tools.into_iter().flatten().collect::<Vec<_>>().join(", "))
            }
            CCompilers::NotNeeded | CCompilers::Declined => None,
        }
    }
}

/// Host paths and what objects name them instead: the same list, in the
/// same order, for rustc's `--remap-path-prefix` and zig's
/// `-ffile-prefix-map` (of two that match, the one given last wins).
pub(super) fn path_maps(
    env: &Env,
    workspace_root: &Path,
    build_dir: &Path,
) -> Vec<(PathBuf, String)> {
    let mut maps = vec![
        (workspace_root.to_owned(), "/workspace".to_owned()),
        (build_dir.to_owned(), "/target".to_owned()),
    ];
    if let Some(home) = env.cargo_home() {
        maps.push((home, "/cargo".to_owned()));
    }
    maps
}

/// Installs zig if it must be, and writes the wrappers for `triples` into
/// the target directory, with the script that installs scratchpack's cmake
/// on first use when that is the cmake; installs libclang when bindgen
/// needs it and it must be.
pub(super) fn prepare(
    (zig, cmake, libclang): (&Zig, Option<&Cmake>, Option<&Libclang>),
    env: &Env,
    target_dir: &Path,
    mut maps: Vec<(PathBuf, String)>,
    triples: &[&str],
    shell: Shell,
) -> Result<Wrappers, CompileError> {
    zig.install(env, shell).map_err(CompileError::Zig)?;
    if let Some(libclang) = libclang {
        libclang
            .install(env, shell)
            .map_err(CompileError::Libclang)?;
    }
    let failed = |source: std::io::Error| CompileError::Spawn {
        command: "writing the C compiler wrappers".to_owned(),
        source,
    };
    let global_cache = zig
        .global_cache(env)
        .ok_or(CompileError::Zig(ZigError::NoCache))?;
    let program = std::env::current_exe().map_err(failed)?;
    let dir = cc::wrappers_dir(target_dir, &zig.version);
    // zig's own sources are named after every host path, so they win even
    // when zig lives inside the workspace or cargo's home.
    maps.push((zig.lib_dir.clone(), "/zig/lib".to_owned()));
    let settings = Settings {
        zig: zig.program.clone(),
        zig_lib: zig.lib_dir.clone(),
        maps,
        global_cache,
        local_cache: dir.join("cache"),
        lib_dir: dir.join("lib"),
    };
    let wrappers = Wrappers::write(&dir, settings, &program, triples).map_err(failed)?;
    if let Some(dirs) = cmake.and_then(Cmake::pinned_dirs) {
        wrappers.write_cmake_shim(&program, dirs).map_err(failed)?;
    }
    Ok(wrappers)
}

/// The triple a hint names: a foreign one, which is where a build that
/// worked for the host fails, else the first.
fn shown_triple<'t>(triples: &[&'t str]) -> Option<&'t str> {
    triples
        .iter()
        .copied()
        .find(|t| is_foreign(t))
        .or_else(|| triples.first().copied())
}

/// What to do when a build script found no C compiler `tool` for one of
/// `triples`, for the compilers this run provided.
pub(super) fn hint(tool: &str, triples: &[&str], compilers: &CCompilers) -> String {
    let Some(triple) = shown_triple(triples) else {
        return format!("\nhelp: a build script needs `{tool}`, which is not installed");
    };
    let var = format!("CC_{}", cc::underscored(triple));
    let own = format!(
        "set {var} (and CXX_{}) to a C compiler for {triple} (a musl cross compiler, never \
         the host's own gcc, whose glibc headers do not fit musl)",
        cc::underscored(triple)
    );
    match compilers {
        CCompilers::Declined => format!(
            "\nhelp: a build script needs the C compiler `{tool}` for {triple}, and images.toml \
             says `c-compiler = \"none\"`: {own}, or remove the key to have scratchpack compile \
             C with zig"
        ),
        CCompilers::NotNeeded => format!(
            "\nhelp: a build script needs the C compiler `{tool}` for {triple}; scratchpack \
             provides zig when a crate depends on cc or cmake, and Cargo.lock shows none: set \
             `c-compiler = \"zig\"` in [defaults] of images.toml to have it always, or {own}"
        ),
        CCompilers::Zig(..) if cc::zig_target(triple).is_none() => format!(
            "\nhelp: a build script needs the C compiler `{tool}` for {triple}, a target \
             scratchpack's zig does not compile for (only the six musl targets): {own}"
        ),
        CCompilers::Zig(..) => format!(
            "\nhelp: a build script needs `{tool}` for {triple}, which is not installed; \
             scratchpack compiles C with zig unless {var} or CXX_{} names a compiler of your \
             own, as it does here",
            cc::underscored(triple)
        ),
    }
}

/// What to say when a build script named libstdc++ as its C++ library
/// (`cc::Build::cpp_link_stdlib("stdc++")`), over `CXXSTDLIB_<triple>`.
pub(super) const GNU_CXX_HINT: &str = "\nhelp: a build script links the GNU C++ library \
     (libstdc++) by name (librocksdb-sys does on Linux): no musl target has it, and the host's \
     is built for glibc. scratchpack's C++ runtime is zig's libc++, which cc-rs links as \
     `zigcxx_<triple>` unless a build script names its own, as this one does: such crates are \
     not supported yet";

/// `-sys` crates with a feature that builds their C library from source
/// (statically, with the C compiler scratchpack provides): the crate, the
/// libraries it links (`-l` names), and the crate and feature usually
/// added, which reaches the `-sys` crate wherever it sits in the graph.
const FROM_SOURCE: &[(&str, &[&str], &str, &str)] = &[
    ("openssl-sys", &["ssl", "crypto"], "openssl", "vendored"),
    ("libsqlite3-sys", &["sqlite3"], "libsqlite3-sys", "bundled"),
    ("libgit2-sys", &["git2"], "git2", "vendored-libgit2"),
    ("curl-sys", &["curl"], "curl", "static-curl"),
    ("pq-sys", &["pq"], "pq-sys", "bundled"),
    (
        "mysqlclient-sys",
        &["mysqlclient"],
        "mysqlclient-sys",
        "bundled",
    ),
];

/// The `-sys` crate known to link the C library `lib`, named as a link
/// failure names it (`-lsqlite3`: `sqlite3`).
pub(super) fn crate_linking(lib: &str) -> Option<&'static str> {
    FROM_SOURCE
        .iter()
        .find(|(_, libs, ..)| libs.contains(&lib))
        .map(|(krate, ..)| *krate)
}

/// What to do when the build script of `krate` found no C library for one
/// of `triples` in a build of `packages`: its own message asks for the
/// host's development package, which is built for the host's libc, to be
/// linked dynamically, so it cannot serve a static musl binary.
pub(super) fn system_library_hint(krate: &str, triples: &[&str], packages: &[&str]) -> String {
    let package = match packages {
        [one] => *one,
        _ => "<package>",
    };
    let triple = shown_triple(triples).unwrap_or("<triple>");
    let build = match FROM_SOURCE.iter().find(|(sys, ..)| *sys == krate) {
        Some((_, _, add, feature)) => format!(
            "`cargo add --package {package} {add} --features {feature}` (the feature \
             reaches {krate} wherever it sits in the dependency graph)"
        ),
        None => format!(
            "turn on the feature of {krate} (or of the crate that brings it) that builds \
             the library from source, often named `vendored`, `bundled` or `static`"
        ),
    };
    let own = if krate == "openssl-sys" {
        format!(
            "; OpenSSL's build runs the machine's perl and make. Or use rustls where the \
             crates offer it (reqwest's `rustls-tls`, say), or name a static musl OpenSSL \
             of your own with {}_OPENSSL_DIR",
            cc::underscored(triple).to_uppercase()
        )
    } else {
        String::new()
    };
    format!(
        "\nhelp: {krate} found no C library built for {triple}, and a system's (its \
         development package) cannot serve: it is built for the host's libc, to be linked \
         dynamically. Have it built from source for each platform, statically, with the C \
         compiler scratchpack provides: {build}{own}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every host path an object could name is mapped: the workspace, the
    /// build directory, cargo's home (the registry's sources) and zig's own
    /// sources, the last after all others so it wins where zig lives inside
    /// one of them.
    #[test]
    fn zig_is_keyed_by_version_and_maps_every_host_path_with_its_own_last() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path().join("ws");
        let target = ws.join("target");
        let build = target.join("scratchpack/cargo");
        let env = Env::from_vars([
            ("CARGO_HOME", ws.join(".cargo").as_os_str()),
            ("XDG_CACHE_HOME", tmp.path().join("cache").as_os_str()),
        ]);
        let zig = Zig {
            program: ws.join(".cargo/zig/zig"),
            version: "0.15.2".into(),
            lib_dir: ws.join(".cargo/zig/lib"),
            origin: cc::zig::Origin::Path,
        };
        // Action keys record zig's version; no zig, no entry.
        let key = CCompilers::Zig(Box::new(zig.clone()), None, None)
            .key()
            .unwrap();
        assert!(key.starts_with("zig 0.15.2 "), "{key}");
        assert_eq!(CCompilers::NotNeeded.key(), None);
        let maps = path_maps(&env, &ws, &build);
        let triples = ["aarch64-unknown-linux-musl"];
        let wrappers = prepare(
            (&zig, None, None),
            &env,
            &target,
            maps,
            &triples,
            Shell::new(true),
        )
        .unwrap();
        let settings: Settings =
            serde_json::from_slice(&std::fs::read(wrappers.settings_path()).unwrap()).unwrap();
        assert_eq!(
            settings.maps,
            [
                (ws.clone(), "/workspace".to_owned()),
                (build, "/target".to_owned()),
                (ws.join(".cargo"), "/cargo".to_owned()),
                (ws.join(".cargo/zig/lib"), "/zig/lib".to_owned()),
            ]
        );
    }

    #[test]
    fn the_hint_says_what_to_do_for_each_choice() {
        let arm64 = ["aarch64-unknown-linux-musl"];
        let declined = hint("aarch64-linux-musl-gcc", &arm64, &CCompilers::Declined);
        assert!(declined.contains("`c-compiler = \"none\"`"), "{declined}");
        assert!(
            declined.contains("set CC_aarch64_unknown_linux_musl"),
            "{declined}"
        );
        let not_needed = hint("aarch64-linux-musl-gcc", &arm64, &CCompilers::NotNeeded);
        assert!(
            not_needed.contains("`c-compiler = \"zig\"`"),
            "{not_needed}"
        );
        let zig = Zig {
            program: "/z/zig".into(),
            version: "0.15.2".into(),
            lib_dir: "/z/lib".into(),
            origin: cc::zig::Origin::Path,
        };
        let gnu = hint(
            "cc",
            &["x86_64-unknown-linux-gnu"],
            &CCompilers::Zig(Box::new(zig.clone()), None, None),
        );
        assert!(gnu.contains("does not compile for"), "{gnu}");
        let own = hint("my-cc", &arm64, &CCompilers::Zig(Box::new(zig), None, None));
        assert!(own.contains("names a compiler of your own"), "{own}");
        assert_eq!(
            hint("cmake", &[], &CCompilers::NotNeeded),
            "\nhelp: a build script needs `cmake`, which is not installed"
        );
    }
}

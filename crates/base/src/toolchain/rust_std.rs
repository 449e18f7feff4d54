//! A musl target's standard library where `rustup target add` cannot
//! download it (a mirror without the component, as for armv7, riscv64 and
//! ppc64le on some): std built from the toolchain's own `rust-src`, and
//! musl's C library, crt objects and LLVM's libunwind taken from Debian's
//! packages for the architecture, laid out as rustup's `rust-std` component
//! is (`lib/rustlib/<triple>/lib` with `self-contained/`), so rustc, cargo
//! and scratchpack use it as if rustup had installed it.
//!
//! It is built once per toolchain (by the commit of its rustc) into the
//! user's cache, under a lock, and copied into the toolchain's sysroot,
//! each step into place with one rename. Host paths are remapped in std as
//! in rustup's own: its sources to `/rustc/<commit>`, cargo's home to
//! `/cargo`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Env, cargo, rustc};
use crate::shell::Shell;

/// Where Debian keeps what a target needs: its architecture, the multiarch
/// directory of its musl-dev, and that of its gcc (for crtbegin and
/// crtend, which musl does not ship).
struct Recipe {
    deb_arch: &'static str,
    musl_dir: &'static str,
    gcc_dir: &'static str,
}

/// Debian 13 ships musl 1.2.5, the release Rust's own musl targets carry,
/// and is the first release with riscv64.
const SUITE: &str = "trixie";
const GCC_VERSION: &str = "14";
const LLVM_VERSION: &str = "19";

/// Part of the cache's key with the toolchain's commit: raised whenever what
/// is built changes (the suite, the files taken, the flags), so a std built
/// by an older recipe is not taken for the current one.
const RECIPE_VERSION: u32 = 1;

/// The key apt checks Debian's archive with; Debian has it installed, Ubuntu
/// has it as a package.
const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Debian's own archive, for a host whose apt names none (Ubuntu).
const DEBIAN_ARCHIVE: &str = "http://deb.debian.org/debian";

fn recipe(triple: &str) -> Option<Recipe> {
    let (deb_arch, musl_dir, gcc_dir) = match triple {
        "armv7-unknown-linux-musleabihf" => {
            ("armhf", "arm-linux-musleabihf", "arm-linux-gnueabihf")
        }
        "riscv64gc-unknown-linux-musl" => ("riscv64", "riscv64-linux-musl", "riscv64-linux-gnu"),
        "powerpc64le-unknown-linux-musl" => {
            ("ppc64el", "powerpc64le-linux-musl", "powerpc64le-linux-gnu")
        }
        _ => return None,
    };
    Some(Recipe {
        deb_arch,
        musl_dir,
        gcc_dir,
    })
}

/// Whether a target's standard library can be built here.
pub fn can_build(triple: &str) -> bool {
    recipe(triple).is_some()
}

/// Debian builds libunwind with `_FORTIFY_SOURCE`, so it calls glibc's
/// checked printf entry points, which musl lacks; these forward them to
/// musl's own (the `va_list` is one pointer-sized value on every
/// architecture built here). `-lunwind` then finds a linker script naming
/// both files.
const FORTIFY_SHIM: &str = r#"#![no_std]
use core::ffi::{c_char, c_int, c_void};
unsafe extern "C" {
    fn vfprintf(fp: *mut c_void, fmt: *const c_char, ap: *mut c_void) -> c_int;
    fn vsnprintf(s: *mut c_char, n: usize, fmt: *const c_char, ap: *mut c_void) -> c_int;
}
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __vfprintf_chk(fp: *mut c_void, _flag: c_int, fmt: *const c_char, ap: *mut c_void) -> c_int {
    unsafe { vfprintf(fp, fmt, ap) }
}
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __vsnprintf_chk(s: *mut c_char, n: usize, _flag: c_int, _len: usize, fmt: *const c_char, ap: *mut c_void) -> c_int {
    unsafe { vsnprintf(s, n, fmt, ap) }
}
"#;

#[derive(Debug, thiserror::Error)]
#[error("building the Rust standard library for {triple} from source: {message}")]
pub struct StdError {
    pub triple: String,
    pub message: String,
}

/// Installs `triple`'s standard library into `sysroot`, the toolchain
/// that runs in `workspace_root`, built from source (or taken from the
/// user's cache, where a build for this toolchain is kept), unless it is
/// there.
pub fn install(
    env: &Env,
    workspace_root: &Path,
    sysroot: &Path,
    triple: &str,
    shell: Shell,
) -> Result<(), StdError> {
    let failed = |message: String| StdError {
        triple: triple.to_owned(),
        message,
    };
    let recipe = recipe(triple).ok_or_else(|| failed("no recipe for this target".to_owned()))?;
    let rustlib = sysroot.join("lib/rustlib");
    let dest = rustlib.join(triple);
    if dest.join("lib").is_dir() {
        return Ok(());
    }
    let version = rustc::verbose_version(env, workspace_root)
        .map_err(|e| failed(format!("running rustc -vV: {e}")))?;
    let commit = version
        .lines()
        .find_map(|l| l.strip_prefix("commit-hash: "))
        .map(str::trim)
        .filter(|c| !c.is_empty() && *c != "unknown")
        .ok_or_else(|| failed("rustc -vV names no commit".to_owned()))?
        .to_owned();
    let cache = env
        .user_cache_dir()
        .ok_or_else(|| failed("neither XDG_CACHE_HOME nor HOME is set".to_owned()))?
        .join("rust-std")
        .join(format!("{commit}-r{RECIPE_VERSION}"));
    let built = cache.join(triple);
    if !built.join("lib").is_dir() {
        std::fs::create_dir_all(&cache).map_err(|e| failed(format!("{}: {e}", cache.display())))?;
        let _lock = super::lock_file(&cache.join(format!(".{triple}.lock")))
            .map_err(|e| failed(format!("locking {}: {e}", cache.display())))?;
        if !built.join("lib").is_dir() {
            shell.status(
                "Building",
                format!(
                    "the Rust standard library for {triple} from rust-src, with musl from \
                     Debian {SUITE} (rustup cannot download it; once per toolchain)"
                ),
            );
            build(
                env,
                workspace_root,
                sysroot,
                &commit,
                triple,
                &recipe,
                &cache,
            )
            .map_err(failed)?;
        }
    }
    let _lock = super::lock_file(&rustlib.join(format!(".{triple}.lock")))
        .map_err(|e| failed(format!("locking {}: {e}", rustlib.display())))?;
    if dest.join("lib").is_dir() {
        return Ok(());
    }
    shell.status(
        "Installing",
        format!(
            "the Rust standard library for {triple} into {}",
            dest.display()
        ),
    );
    // Copied beside its place, then renamed: rustc finds the target only
    // once it is whole.
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{triple}-"))
        .tempdir_in(&rustlib)
        .map_err(|e| failed(format!("{}: {e}", rustlib.display())))?;
    let copy = staging.path().join(triple);
    copy_tree(&built, &copy).map_err(|e| failed(format!("copying {}: {e}", built.display())))?;
    std::fs::rename(&copy, &dest).map_err(|e| failed(format!("{}: {e}", dest.display())))
}

/// Builds the target into `cache/<triple>`: Debian's files fetched, std
/// compiled, the shim and linker script written, then renamed into place.
fn build(
    env: &Env,
    workspace_root: &Path,
    sysroot: &Path,
    commit: &str,
    triple: &str,
    recipe: &Recipe,
    cache: &Path,
) -> Result<(), String> {
    let src = sysroot.join("lib/rustlib/src/rust/library");
    if !src.is_dir() {
        add_rust_src(workspace_root)?;
    }
    let work = tempfile::tempdir().map_err(|e| format!("a work directory: {e}"))?;
    let root = fetch_debian(recipe, work.path())?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{triple}-"))
        .tempdir_in(cache)
        .map_err(|e| format!("{}: {e}", cache.display()))?;
    let stage = staging.path().join(triple);
    let contained = stage.join("lib/self-contained");
    std::fs::create_dir_all(&contained).map_err(|e| format!("{}: {e}", contained.display()))?;
    let musl = root.join("usr/lib").join(recipe.musl_dir);
    let gcc = root
        .join("usr/lib/gcc")
        .join(recipe.gcc_dir)
        .join(GCC_VERSION);
    // libdl.a and libpthread.a are empty in musl (libc.a has it all);
    // Debian's libunwind names them as dependent libraries, so the link
    // looks for them.
    let files = [
        (&musl, "crt1.o"),
        (&musl, "crti.o"),
        (&musl, "crtn.o"),
        (&musl, "rcrt1.o"),
        (&musl, "Scrt1.o"),
        (&musl, "libc.a"),
        (&musl, "libdl.a"),
        (&musl, "libpthread.a"),
        (&gcc, "crtbegin.o"),
        (&gcc, "crtbeginS.o"),
        (&gcc, "crtend.o"),
        (&gcc, "crtendS.o"),
    ];
    for (dir, name) in files {
        copy(&dir.join(name), &contained.join(name))?;
    }
    let unwind = root.join(format!("usr/lib/llvm-{LLVM_VERSION}/lib/libunwind.a"));
    copy(&unwind, &contained.join("libunwind-llvm.a"))?;
    build_std(env, commit, triple, &src, work.path(), &stage.join("lib"))?;
    build_shim(env, triple, work.path(), &stage)?;
    std::fs::write(
        contained.join("libunwind.a"),
        "INPUT(libunwind-llvm.a unwind-fortify-shim.o)\n",
    )
    .map_err(|e| format!("writing the libunwind linker script: {e}"))?;
    let built = cache.join(triple);
    std::fs::rename(&stage, &built).map_err(|e| format!("{}: {e}", built.display()))
}

/// `rustup component add rust-src` for the toolchain that runs in `dir`.
fn add_rust_src(dir: &Path) -> Result<(), String> {
    checked(
        Command::new("rustup")
            .args(["component", "add", "rust-src"])
            .current_dir(dir),
        "rustup component add rust-src",
    )
}

/// Fetches musl-dev, libgcc-dev and libunwind-dev for the target's Debian
/// architecture with a private apt state (the host's sources, architectures
/// and package lists are left as they are), and unpacks them; returns the
/// directory they were unpacked into.
fn fetch_debian(recipe: &Recipe, work: &Path) -> Result<PathBuf, String> {
    let apt = work.join("apt");
    for dir in ["lists/partial", "cache/archives/partial"] {
        std::fs::create_dir_all(apt.join(dir)).map_err(|e| format!("{}: {e}", apt.display()))?;
    }
    if !Path::new(DEBIAN_KEYRING).is_file() {
        return Err(format!(
            "{DEBIAN_KEYRING} is missing: install it with `apt-get install debian-archive-keyring`"
        ));
    }
    let mirror = debian_mirror()?;
    let sources = apt.join("sources.list");
    std::fs::write(
        &sources,
        format!("deb [signed-by={DEBIAN_KEYRING}] {mirror} {SUITE} main\n"),
    )
    .map_err(|e| format!("{}: {e}", sources.display()))?;
    std::fs::write(apt.join("status"), "").map_err(|e| format!("{}: {e}", apt.display()))?;
    let options = [
        format!("Dir::Etc::SourceList={}", sources.display()),
        "Dir::Etc::SourceParts=/nonexistent".to_owned(),
        format!("Dir::State::Lists={}", apt.join("lists").display()),
        format!("Dir::Cache={}", apt.join("cache").display()),
        format!("Dir::State::status={}", apt.join("status").display()),
        format!("APT::Architectures::={}", recipe.deb_arch),
        "APT::Sandbox::User=root".to_owned(),
        "Debug::NoLocking=1".to_owned(),
    ];
    let apt_get = |args: &[String], dir: &Path| {
        let mut cmd = Command::new("apt-get");
        cmd.arg("-qq");
        for o in &options {
            cmd.args(["-o", o]);
        }
        checked(cmd.args(args).current_dir(dir), "apt-get")
    };
    apt_get(&["update".to_owned()], work)?;
    let debs = work.join("debs");
    std::fs::create_dir_all(&debs).map_err(|e| format!("{}: {e}", debs.display()))?;
    let arch = recipe.deb_arch;
    apt_get(
        &[
            "download".to_owned(),
            format!("musl-dev:{arch}"),
            format!("libgcc-{GCC_VERSION}-dev:{arch}"),
            format!("libunwind-{LLVM_VERSION}-dev:{arch}"),
        ],
        &debs,
    )?;
    let root = work.join("root");
    for deb in std::fs::read_dir(&debs).map_err(|e| format!("{}: {e}", debs.display()))? {
        let deb = deb.map_err(|e| e.to_string())?.path();
        checked(
            Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root),
            "dpkg-deb",
        )?;
    }
    Ok(root)
}

/// The Debian archive this machine's apt already uses (its main suite's,
/// not the security, updates or backports one), asked for the newer suite;
/// Debian's own where apt names none (an Ubuntu host).
fn debian_mirror() -> Result<String, String> {
    let out = Command::new("apt-get")
        .args([
            "indextargets",
            "--format",
            "$(REPO_URI) $(RELEASE) $(ORIGIN)",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running apt-get (a Debian or Ubuntu host is needed): {e}"))?;
    if !out.status.success() {
        return Err(format!("apt-get indextargets failed ({})", out.status));
    }
    Ok(mirror_of(&String::from_utf8_lossy(&out.stdout)))
}

/// The first Debian archive of `apt-get indextargets` lines (URI, release,
/// origin) that serves a main suite, else Debian's own.
fn mirror_of(targets: &str) -> String {
    targets
        .lines()
        .filter_map(|l| {
            let mut words = l.split(' ');
            Some((words.next()?, words.next()?, words.next()?))
        })
        .find(|(_, release, origin)| {
            *origin == "Debian"
                && !["-security", "-updates", "-backports"]
                    .iter()
                    .any(|s| release.ends_with(s))
        })
        .map_or_else(|| DEBIAN_ARCHIVE.to_owned(), |(uri, _, _)| uri.to_owned())
}

/// std for `triple` from `src`, for exactly this compiler, into `lib`: an
/// empty library crate (which needs no link) built with `-Zbuild-std`,
/// bitcode embedded so LTO builds can use it.
fn build_std(
    env: &Env,
    commit: &str,
    triple: &str,
    src: &Path,
    work: &Path,
    lib: &Path,
) -> Result<(), String> {
    let krate = work.join("std");
    std::fs::create_dir_all(krate.join("src")).map_err(|e| format!("{}: {e}", krate.display()))?;
    std::fs::write(
        krate.join("Cargo.toml"),
        "[package]\nname = \"sysroot-std\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\
         [lib]\npath = \"src/lib.rs\"\n[workspace]\n",
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(krate.join("src/lib.rs"), "").map_err(|e| e.to_string())?;
    let mut remaps = vec![
        format!(
            "--remap-path-prefix={}=/rustc/{commit}/library",
            src.display()
        ),
        format!("--remap-path-prefix={}=/build", work.display()),
    ];
    if let Some(home) = env.cargo_home() {
        remaps.insert(1, format!("--remap-path-prefix={}=/cargo", home.display()));
    }
    let target_dir = krate.join("target");
    checked(
        cargo::command(env)
            .args([
                "build",
                "--quiet",
                "--release",
                "-Zbuild-std=std,panic_abort",
            ])
            .args(["--target", triple])
            .current_dir(&krate)
            .env("RUSTC_BOOTSTRAP", "1")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env(
                "RUSTFLAGS",
                format!("-Cembed-bitcode=yes {}", remaps.join(" ")),
            )
            .env("CARGO_TARGET_DIR", &target_dir),
        "cargo build -Zbuild-std",
    )?;
    let deps = target_dir.join(triple).join("release/deps");
    for entry in std::fs::read_dir(&deps).map_err(|e| format!("{}: {e}", deps.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.ends_with(".rlib") && !name.starts_with("libsysroot_std-") {
            copy(&path, &lib.join(&*name))?;
        }
    }
    Ok(())
}

/// The fortify shim, compiled against the std just built in a sysroot of
/// its own (a target already installed would be a second candidate for
/// core).
fn build_shim(env: &Env, triple: &str, work: &Path, stage: &Path) -> Result<(), String> {
    let sysroot = work.join("sysroot");
    let rustlib = sysroot.join("lib/rustlib");
    std::fs::create_dir_all(&rustlib).map_err(|e| format!("{}: {e}", rustlib.display()))?;
    std::os::unix::fs::symlink(stage, rustlib.join(triple)).map_err(|e| e.to_string())?;
    let shim = work.join("shim.rs");
    std::fs::write(&shim, FORTIFY_SHIM).map_err(|e| e.to_string())?;
    checked(
        Command::new(rustc::program(env))
            .args(["--edition", "2024", "--crate-type=lib", "--emit=obj"])
            .args([
                "-C",
                "panic=abort",
                "-C",
                "opt-level=2",
                "-C",
                "codegen-units=1",
            ])
            .args(["--target", triple])
            .arg("--sysroot")
            .arg(&sysroot)
            .arg("-o")
            .arg(stage.join("lib/self-contained/unwind-fortify-shim.o"))
            .arg(&shim),
        "rustc (the fortify shim)",
    )
}

/// Runs `cmd`, its output kept for the error.
fn checked(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {what}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    let said: Vec<&str> = said.lines().filter(|l| !l.trim().is_empty()).collect();
    Err(format!(
        "{what} failed ({}):\n  {}",
        out.status,
        said[said.len().saturating_sub(8)..].join("\n  ")
    ))
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::copy(from, to)
        .map(drop)
        .map_err(|e| format!("copying {}: {e}", from.display()))
}

/// Copies a directory of regular files and directories (what a build
/// writes) to `to`.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), dest)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_targets_rustup_may_lack_have_a_recipe() {
        for t in [
            "armv7-unknown-linux-musleabihf",
            "riscv64gc-unknown-linux-musl",
            "powerpc64le-unknown-linux-musl",
        ] {
            assert!(can_build(t), "{t}");
        }
        assert!(!can_build("x86_64-unknown-linux-musl"));
        assert!(!can_build("s390x-unknown-linux-musl"));
    }

    #[test]
    fn the_hosts_debian_archive_is_asked_else_debians_own() {
        let debian = "http://deb.debian.org/debian-security/ bookworm-security Debian\n\
                      http://mirror.example/debian/ bookworm Debian\n";
        assert_eq!(mirror_of(debian), "http://mirror.example/debian/");
        let ubuntu = "http://archive.ubuntu.com/ubuntu/ noble Ubuntu\n";
        assert_eq!(mirror_of(ubuntu), DEBIAN_ARCHIVE);
        assert_eq!(mirror_of(""), DEBIAN_ARCHIVE);
    }

    #[test]
    fn a_copied_tree_is_whole() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from");
        std::fs::create_dir_all(from.join("lib/self-contained")).unwrap();
        std::fs::write(from.join("lib/a.rlib"), "a").unwrap();
        std::fs::write(from.join("lib/self-contained/libc.a"), "c").unwrap();
        copy_tree(&from, &dir.path().join("to")).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("to/lib/a.rlib")).unwrap(),
            b"a"
        );
        assert_eq!(
            std::fs::read(dir.path().join("to/lib/self-contained/libc.a")).unwrap(),
            b"c"
        );
    }
}

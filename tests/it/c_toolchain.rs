//! Crates that compile C and C++, with nothing installed but what
//! scratchpack provides (zig, found or installed into the user's cache on
//! first need): every platform builds and runs with no object of the
//! host's gcc, each of zig's traps is shown failing without the wrapper and
//! passing through it, two checkouts give the same objects and binaries,
//! C++ links its runtime, a `CC_<triple>` the caller sets is used for
//! that triple alone, a crate whose build script runs cmake builds on a
//! machine without cmake or make, one whose build script runs bindgen
//! builds on a machine without libclang, and openssl-sys without its
//! vendored OpenSSL fails with the way out.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Fixture, require_tool, run};

/// The C the fixture compiles: its source name, and code UBSan would
/// instrument.
const ADD_C: &str = "const char *add_file(void) { return __FILE__; }\n\
                     int add(int a, int b) { return a + b; }\n";
const UB_C: &str = "int shifted(const int *a, int i, int s) { return a[i] << s; }\n";

/// Each trap of zig as a C compiler, met as real crates meet it: cc-rs's
/// `--target=`, a feature probe with `-march=armv8.4-a+sha3` (aws-lc's),
/// `-Wl,-melf_i386` (cc-rs's GNU branch), a library compiled at `-O0`
/// (aws-lc's jitterentropy), and `-latomic` on arm (libmimalloc-sys).
const BUILD_RS: &str = r#"fn main() {
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap();
    let mut add = cc::Build::new();
    add.file("add.c");
    if arch == "aarch64" {
        let probe = add.is_flag_supported("-march=armv8.4-a+sha3").unwrap();
        println!("cargo:rustc-env=SHA3_PROBE={probe}");
    } else {
        println!("cargo:rustc-env=SHA3_PROBE=n/a");
    }
    if arch == "x86" {
        add.flag("-Wl,-melf_i386");
    }
    if arch == "arm" {
        println!("cargo:rustc-link-lib=atomic");
    }
    add.compile("add");
    cc::Build::new().file("ub.c").opt_level(0).compile("ub");
    println!("cargo:rerun-if-changed=add.c");
    println!("cargo:rerun-if-changed=ub.c");
}
"#;

const MAIN_RS: &str = r#"use std::ffi::{CStr, c_char, c_int};

unsafe extern "C" {
    fn add(a: c_int, b: c_int) -> c_int;
    fn add_file() -> *const c_char;
    fn shifted(a: *const c_int, i: c_int, s: c_int) -> c_int;
}

fn main() {
    let file = unsafe { CStr::from_ptr(add_file()) }.to_string_lossy();
    let v = [1, 2, 3];
    let (sum, shift) = unsafe { (add(2, 3), shifted(v.as_ptr(), 2, 4)) };
    println!("{} {sum} {shift} {file} sha3={}", std::env::consts::ARCH, env!("SHA3_PROBE"));
}
"#;

/// platform, triple, the qemu that runs it (none on the host), and what
/// the binary prints.
const PLATFORMS: [(&str, &str, Option<&str>, &str); 4] = [
    (
        "linux/amd64",
        "x86_64-unknown-linux-musl",
        None,
        "x86_64 5 48 add.c sha3=n/a\n",
    ),
    (
        "linux/arm64",
        "aarch64-unknown-linux-musl",
        Some("qemu-aarch64-static"),
        "aarch64 5 48 add.c sha3=true\n",
    ),
    (
        "linux/arm/v7",
        "armv7-unknown-linux-musleabihf",
        Some("qemu-arm-static"),
        "arm 5 48 add.c sha3=n/a\n",
    ),
    (
        "linux/386",
        "i686-unknown-linux-musl",
        Some("qemu-i386-static"),
        "x86 5 48 add.c sha3=n/a\n",
    ),
];

/// Whether zig can be had: one named or on PATH, or python3 to install
/// it with (a missing python3 fails under `CI=true`).
fn zig_can_be_had() -> bool {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("zig").is_file()));
    std::env::var_os("SCRATCHPACK_ZIG").is_some()
        || on_path
        || require_tool("python3", "python3-pip").is_some()
}

fn qemus() -> bool {
    PLATFORMS
        .iter()
        .filter_map(|p| p.2)
        .all(|q| require_tool(q, "qemu-user-static").is_some())
}

/// The fixture workspace, unstripped so that the C objects' debug
/// information reaches the binaries.
fn native(platforms: &[&str]) -> Fixture {
    let quoted: Vec<String> = platforms.iter().map(|p| format!("\"{p}\"")).collect();
    let fx = Fixture::new(
        &[("native", MAIN_RS)],
        &format!(
            "[images.native]\npackage = \"native\"\nplatforms = [{}]\n",
            quoted.join(", ")
        ),
    );
    let krate = fx.path().join("crates/native");
    std::fs::write(
        krate.join("Cargo.toml"),
        "[package]\nname = \"native\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
         [build-dependencies]\ncc = \"=1.11.1\"\n",
    )
    .unwrap();
    std::fs::write(krate.join("build.rs"), BUILD_RS).unwrap();
    std::fs::write(krate.join("add.c"), ADD_C).unwrap();
    std::fs::write(krate.join("ub.c"), UB_C).unwrap();
    let cargo_toml = fx.path().join("Cargo.toml");
    let text = std::fs::read_to_string(&cargo_toml).unwrap();
    std::fs::write(cargo_toml, text.replace("strip = true", "strip = false")).unwrap();
    fx
}

fn binary(root: &Path, triple: &str) -> PathBuf {
    scratchpack::compile::build_dir(&root.join("target"))
        .join(triple)
        .join("release/native")
}

#[test]
fn c_compiles_for_every_platform_with_nothing_installed() {
    if !zig_can_be_had() || !qemus() {
        return;
    }
    let fx = native(&PLATFORMS.map(|p| p.0));
    let out = fx.cli(&["images"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Every binary passed the static proof to be packed; each runs and
    // says what the C compiled for it did.
    for (platform, triple, qemu, want) in PLATFORMS {
        let bin = binary(fx.path(), triple);
        let out = match qemu {
            Some(q) => run(Command::new(q).arg(&bin)),
            None => run(&mut Command::new(&bin)),
        };
        assert!(out.status.success(), "{platform}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), want, "{platform}");
    }
    // zig compiled every object, the host's own target (x86_64, where
    // cc-rs would take the host's gcc) included: gcc's objects say so in
    // their `.comment` section.
    for (name, bytes) in outputs(fx.path(), &PLATFORMS.map(|p| p.1)) {
        if name.ends_with(".o") || name.ends_with(".a") {
            assert!(!gcc_made(&bytes), "{name} was compiled by gcc");
        }
    }
}

/// Whether `bytes` hold gcc's mark (the `.comment` of what it compiles).
fn gcc_made(bytes: &[u8]) -> bool {
    let gcc = b"GCC: (";
    bytes.windows(gcc.len()).any(|w| w == gcc)
}

#[test]
fn the_callers_own_compiler_wins_for_its_triple() {
    if !zig_can_be_had() || require_tool("gcc", "gcc").is_none() {
        return;
    }
    let fx = native(&["linux/amd64", "linux/arm64"]);
    // The caller's compiler for amd64: the host's gcc, logging its calls.
    let log = fx.path().join("cc.log");
    let cc = fx.path().join("my-cc");
    std::fs::write(
        &cc,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec gcc \"$@\"\n",
            log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&cc, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = fx.cli_env(
        &["images"],
        &[("CC_x86_64_unknown_linux_musl", cc.to_str().unwrap())],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(calls.contains("add.c") && calls.contains("ub.c"), "{calls}");
    let triples = ["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"];
    let objects: Vec<(String, Vec<u8>)> = outputs(fx.path(), &triples)
        .into_iter()
        .filter(|(n, _)| n.ends_with(".o") || n.ends_with(".a"))
        .collect();
    for triple in triples {
        let mine: Vec<_> = objects
            .iter()
            .filter(|(n, _)| n.starts_with(triple))
            .collect();
        assert!(!mine.is_empty(), "{triple}: no objects");
        for (name, bytes) in mine {
            // amd64's are gcc's; arm64 is still zig's.
            assert_eq!(gcc_made(bytes), triple.starts_with("x86_64"), "{name}");
        }
    }
}

/// Every `.o` and `.a` the build scripts wrote, by crate and name (cargo's
/// hash of the build directory left out), and each binary, as bytes, for
/// `triples`.
fn outputs(root: &Path, triples: &[&str]) -> Vec<(String, Vec<u8>)> {
    let mut all = Vec::new();
    for &triple in triples {
        let build = binary(root, triple).parent().unwrap().join("build");
        for run_dir in std::fs::read_dir(&build)
            .unwrap()
            .map(|e| e.unwrap().path())
        {
            let out = run_dir.join("out");
            let Ok(files) = std::fs::read_dir(&out) else {
                continue;
            };
            let krate = run_dir.file_name().unwrap().to_string_lossy();
            let krate = krate.rsplit_once('-').unwrap().0.to_owned();
            for f in files.map(|e| e.unwrap().path()) {
                let name = f.file_name().unwrap().to_string_lossy().into_owned();
                if name.ends_with(".o") || name.ends_with(".a") {
                    all.push((
                        format!("{triple}/{krate}/{name}"),
                        std::fs::read(&f).unwrap(),
                    ));
                }
            }
        }
        all.push((
            format!("{triple}/native"),
            std::fs::read(binary(root, triple)).unwrap(),
        ));
    }
    all.sort();
    all
}

#[test]
fn two_checkouts_at_different_paths_give_the_same_objects_and_binaries() {
    if !zig_can_be_had() {
        return;
    }
    let platforms = PLATFORMS.map(|p| p.0);
    let a = native(&platforms);
    let b = native(&platforms);
    let deeper = b.path().join("a/much/deeper/checkout");
    std::fs::create_dir_all(&deeper).unwrap();
    for entry in ["Cargo.toml", "images.toml", "crates"] {
        std::fs::rename(b.path().join(entry), deeper.join(entry)).unwrap();
    }
    for dir in [a.path(), deeper.as_path()] {
        let out = run(crate::support::cli()
            .current_dir(dir)
            .env_remove("CARGO_TARGET_DIR")
            .arg("images"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let triples = PLATFORMS.map(|p| p.1);
    let (ours, theirs) = (outputs(a.path(), &triples), outputs(&deeper, &triples));
    let names: Vec<&String> = ours.iter().map(|(n, _)| n).collect();
    assert_eq!(names, theirs.iter().map(|(n, _)| n).collect::<Vec<_>>());
    assert!(
        names.iter().filter(|n| n.ends_with(".o")).count() >= 8,
        "{names:?}"
    );
    for ((name, x), (_, y)) in ours.iter().zip(&theirs) {
        assert!(x == y, "{name} differs between the checkouts");
    }
    // Nor does any host path remain: the checkout, cargo's home, zig's.
    let zig_lib = settings(a.path())["zig_lib"].as_str().unwrap().to_owned();
    let cargo_home = std::env::var("CARGO_HOME")
        .unwrap_or_else(|_| format!("{}/.cargo", std::env::var("HOME").unwrap()));
    for (name, bytes) in &ours {
        for host in [
            a.path().to_str().unwrap(),
            cargo_home.as_str(),
            zig_lib.as_str(),
        ] {
            assert!(
                !bytes.windows(host.len()).any(|w| w == host.as_bytes()),
                "{name} holds the host path {host}"
            );
        }
    }
}

/// The wrappers' settings the build wrote.
fn settings(root: &Path) -> serde_json::Value {
    let cc = root.join("target/scratchpack/cc");
    let dir = std::fs::read_dir(&cc)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("settings.json").is_file())
        .expect("a wrappers directory");
    serde_json::from_slice(&std::fs::read(dir.join("settings.json")).unwrap()).unwrap()
}

/// Runs zig (`wrapped` false) or the generated wrapper for `triple` on
/// `args` in `dir`.
fn compile(
    root: &Path,
    dir: &Path,
    wrapped: bool,
    triple: &str,
    zig_target: &str,
    args: &[&str],
) -> std::process::Output {
    let s = settings(root);
    let mut cmd = if wrapped {
        let cc = PathBuf::from(s["lib_dir"].as_str().unwrap())
            .parent()
            .unwrap()
            .join(format!("zigcc-{triple}"));
        Command::new(cc)
    } else {
        let mut cmd = Command::new(s["zig"].as_str().unwrap());
        cmd.args(["cc", "-target", zig_target]);
        cmd
    };
    cmd.args(args)
        .current_dir(dir)
        .env("ZIG_GLOBAL_CACHE_DIR", s["global_cache"].as_str().unwrap())
        .env("ZIG_LOCAL_CACHE_DIR", s["local_cache"].as_str().unwrap());
    cmd.output().unwrap()
}

#[test]
fn each_trap_fails_with_zig_alone_and_passes_through_the_wrapper() {
    if !zig_can_be_had() {
        return;
    }
    let fx = native(&["linux/amd64", "linux/arm64", "linux/386"]);
    let out = fx.cli(&["images"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = fx.path();
    // In the workspace, whose path the wrapper maps.
    let src = root.join("trap");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("ub.c"), UB_C).unwrap();
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    // Rejected flags: zig says why, the wrapper compiles.
    for (triple, zig_target, flag, error) in [
        (
            "aarch64-unknown-linux-musl",
            "aarch64-linux-musl",
            "--target=aarch64-unknown-linux-musl",
            "unable to parse target query",
        ),
        (
            "aarch64-unknown-linux-musl",
            "aarch64-linux-musl",
            "-march=armv8.4-a+sha3",
            "unknown CPU: 'armv8.4'",
        ),
        (
            "x86_64-unknown-linux-musl",
            "x86_64-linux-musl",
            "-march=x86-64",
            "unknown CPU: 'x86'",
        ),
        (
            "i686-unknown-linux-musl",
            "x86-linux-musl",
            "-Wl,-melf_i386",
            "unsupported linker arg: -melf_i386",
        ),
    ] {
        let args = [flag, "-c", "ub.c", "-o", "ub.o"];
        let alone = compile(root, &src, false, triple, zig_target, &args);
        assert!(!alone.status.success(), "zig took {flag}");
        assert!(stderr(&alone).contains(error), "{flag}: {}", stderr(&alone));
        let wrapped = compile(root, &src, true, triple, zig_target, &args);
        assert!(wrapped.status.success(), "{flag}: {}", stderr(&wrapped));
    }
    // -O0: zig alone instruments the code with UBSan, whose handlers no
    // Rust binary links; through the wrapper nothing refers to them. And
    // zig alone writes the directory it compiled in into the object.
    let symbols_and_strings = |wrapped: bool| {
        let o = compile(
            root,
            &src,
            wrapped,
            "x86_64-unknown-linux-musl",
            "x86_64-linux-musl",
            &["-O0", "-c", "ub.c", "-o", "ub0.o"],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::read(src.join("ub0.o")).unwrap()
    };
    let holds = |bytes: &[u8], text: &str| bytes.windows(text.len()).any(|w| w == text.as_bytes());
    let here = src.to_str().unwrap();
    let alone = symbols_and_strings(false);
    assert!(
        holds(&alone, "__ubsan_handle_"),
        "zig alone: no UBSan at -O0"
    );
    assert!(holds(&alone, here), "zig alone: no host path in the object");
    let wrapped = symbols_and_strings(true);
    assert!(
        !holds(&wrapped, "__ubsan_handle_"),
        "through the wrapper: UBSan"
    );
    assert!(
        !holds(&wrapped, here),
        "through the wrapper: {here} in the object"
    );
}

/// Exceptions, strings and streams: what needs libc++ and libc++abi.
const DEMO_CPP: &str = r#"#include <sstream>
#include <stdexcept>
#include <string>
#include <cstring>
extern "C" int cxx_demo(char *out, unsigned long cap) {
    std::ostringstream os;
    try { throw std::runtime_error("caught"); } catch (const std::exception &e) { os << "c++ " << e.what(); }
    std::string s = os.str();
    if (s.size() + 1 > cap) return -1;
    std::memcpy(out, s.c_str(), s.size() + 1);
    return (int)s.size();
}
"#;

/// A fixture workspace of one package `name` with `main`, images for amd64
/// and arm64, the build dependency `dependency` (a Cargo.toml line) and
/// `build_rs` as its build script.
fn build_script_crate((name, main): (&str, &str), dependency: &str, build_rs: &str) -> Fixture {
    let fx = Fixture::new(
        &[(name, main)],
        &format!(
            "[images.{name}]\npackage = \"{name}\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n"
        ),
    );
    let krate = fx.path().join("crates").join(name);
    std::fs::write(
        krate.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
             [build-dependencies]\n{dependency}\n"
        ),
    )
    .unwrap();
    std::fs::write(krate.join("build.rs"), build_rs).unwrap();
    fx
}

/// What the binary of package `name` built for `triple` prints, run under
/// `qemu` when it is foreign.
fn run_built(fx: &Fixture, name: &str, triple: &str, qemu: Option<&str>) -> String {
    let bin = scratchpack::compile::build_dir(&fx.path().join("target"))
        .join(triple)
        .join("release")
        .join(name);
    let out = match qemu {
        Some(q) => run(Command::new(q).arg(&bin)),
        None => run(&mut Command::new(&bin)),
    };
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn cpp_links_the_runtime_built_for_its_target() {
    if !zig_can_be_had() || require_tool("qemu-aarch64-static", "qemu-user-static").is_none() {
        return;
    }
    let main = "unsafe extern \"C\" { fn cxx_demo(out: *mut u8, cap: u64) -> i32; }\n\
                fn main() {\n    let mut buf = [0u8; 64];\n    \
                let n = unsafe { cxx_demo(buf.as_mut_ptr(), 64) };\n    \
                println!(\"{}\", String::from_utf8_lossy(&buf[..n as usize]));\n}\n";
    let fx = build_script_crate(
        ("cxx", main),
        "cc = \"=1.11.1\"",
        "fn main() { cc::Build::new().cpp(true).file(\"demo.cpp\").compile(\"demo\"); }\n",
    );
    std::fs::write(fx.path().join("crates/cxx/demo.cpp"), DEMO_CPP).unwrap();
    let out = fx.cli(&["images"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (triple, qemu) in [
        ("x86_64-unknown-linux-musl", None),
        ("aarch64-unknown-linux-musl", Some("qemu-aarch64-static")),
    ] {
        assert_eq!(
            run_built(&fx, "cxx", triple, qemu),
            "c++ caught\n",
            "{triple}"
        );
    }
}

/// A C library built by cmake, declaring the old minimum many vendored
/// libraries still do, and saying which generator built it.
const CMAKE_LISTS: &str = "cmake_minimum_required(VERSION 3.1)\n\
                           project(mul C)\n\
                           add_library(mul STATIC mul.c)\n\
                           target_compile_definitions(mul PRIVATE \"GENERATOR=\\\"${CMAKE_GENERATOR}\\\"\")\n\
                           install(TARGETS mul ARCHIVE DESTINATION lib)\n";
const MUL_C: &str = "const char *generator(void) { return GENERATOR; }\n\
                     int mul(int a, int b) { return a * b; }\n";

#[test]
fn a_crate_that_runs_cmake_builds_on_a_machine_without_cmake() {
    let host_cmake = std::env::var_os("CMAKE").is_some()
        || std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("cmake").is_file()));
    // Without a cmake of the machine's, scratchpack installs one with pip.
    if !zig_can_be_had()
        || require_tool("qemu-aarch64-static", "qemu-user-static").is_none()
        || (!host_cmake && require_tool("python3", "python3-pip").is_none())
    {
        return;
    }
    let main = "use std::ffi::{CStr, c_char, c_int};\n\
                unsafe extern \"C\" { fn mul(a: c_int, b: c_int) -> c_int; fn generator() -> *const c_char; }\n\
                fn main() {\n    let g = unsafe { CStr::from_ptr(generator()) };\n    \
                println!(\"{} {}\", unsafe { mul(6, 7) }, g.to_string_lossy());\n}\n";
    let fx = build_script_crate(
        ("cm", main),
        "cmake = \"=0.1.58\"",
        "fn main() {\n    let dst = cmake::build(\"lib\");\n    \
         println!(\"cargo:rustc-link-search=native={}/lib\", dst.display());\n    \
         println!(\"cargo:rustc-link-lib=static=mul\");\n    \
         println!(\"cargo:rerun-if-changed=lib\");\n}\n",
    );
    let krate = fx.path().join("crates/cm");
    std::fs::create_dir_all(krate.join("lib")).unwrap();
    std::fs::write(krate.join("lib/CMakeLists.txt"), CMAKE_LISTS).unwrap();
    std::fs::write(krate.join("lib/mul.c"), MUL_C).unwrap();
    let out = fx.cli(&["images"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for (triple, qemu) in [
        ("x86_64-unknown-linux-musl", None),
        ("aarch64-unknown-linux-musl", Some("qemu-aarch64-static")),
    ] {
        let said = run_built(&fx, "cm", triple, qemu);
        assert!(said.starts_with("42 "), "{triple}: {said}");
        // Without a cmake of the machine's, scratchpack's ran, with ninja
        // as its build tool: no `make` was needed either.
        if !host_cmake {
            assert_eq!(said, "42 Ninja\n", "{triple}");
        }
    }
    if !host_cmake {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
        let cmake = cache.join("scratchpack/cmake/3.31.10/cmake/data/bin/cmake");
        let version = run(Command::new(&cmake).arg("--version"));
        assert!(
            String::from_utf8_lossy(&version.stdout).starts_with("cmake version 3.31.10"),
            "{}",
            cmake.display()
        );
    }
}

/// openssl-sys without its `vendored` feature finds no OpenSSL for a musl
/// target, and its own message asks for the host's libssl-dev, which
/// cannot serve; the build's error says what can (the `vendored` feature,
/// with the package named, rustls, or an OpenSSL of the caller's own).
#[test]
fn openssl_without_vendored_fails_with_the_way_out() {
    if !zig_can_be_had() {
        return;
    }
    let fx = Fixture::new(
        &[("tls", "fn main() { openssl_sys::init(); }\n")],
        "[images.tls]\npackage = \"tls\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n",
    );
    std::fs::write(
        fx.path().join("crates/tls/Cargo.toml"),
        "[package]\nname = \"tls\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
         [dependencies]\nopenssl-sys = \"=0.9.118\"\n",
    )
    .unwrap();
    let out = fx.cli(&["images"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("Could not find directory of OpenSSL installation"),
        "{stderr}"
    );
    for wanted in [
        "help: openssl-sys found no C library built for aarch64-unknown-linux-musl",
        "`cargo add --package tls openssl --features vendored`",
        "rustls",
        "AARCH64_UNKNOWN_LINUX_MUSL_OPENSSL_DIR",
    ] {
        assert!(stderr.contains(wanted), "no {wanted:?} in:\n{stderr}");
    }
}

/// The header the bindgen fixture binds: musl's types, whose sizes differ
/// by target, and a constant.
const POINT_H: &str = "#include <stdint.h>\n#include <stddef.h>\n\
                       struct point { int32_t x; int64_t y; size_t n; };\n\
                       #define POINT_MAGIC 42\n";

/// A crate whose build script runs bindgen builds for amd64 and arm64 with
/// nothing installed: bindgen parses zig's musl headers for each target
/// with the libclang scratchpack installed from PyPI (or the caller's,
/// when LIBCLANG_PATH names one).
#[test]
fn a_crate_that_runs_bindgen_builds_on_a_machine_without_libclang() {
    if !zig_can_be_had()
        || require_tool("qemu-aarch64-static", "qemu-user-static").is_none()
        || require_tool("python3", "python3-pip").is_none()
    {
        return;
    }
    let main = "#![allow(non_camel_case_types, dead_code)]\n\
                include!(concat!(env!(\"OUT_DIR\"), \"/point.rs\"));\n\
                fn main() {\n    println!(\"{} {} {}\", std::mem::size_of::<point>(), POINT_MAGIC, \
                env!(\"CLANG_VERSION\"));\n}\n";
    let fx = build_script_crate(
        ("bg", main),
        "bindgen = { version = \"=0.72.1\", default-features = false, features = [\"runtime\"] }",
        // max_align_t is left out, as crates do: bindgen cannot lay out
        // i386's (its long double) as clang does.
        "fn main() {\n    let b = bindgen::Builder::default().header(\"point.h\")\n        \
         .blocklist_type(\"max_align_t\").generate().unwrap();\n    \
         let out = std::path::PathBuf::from(std::env::var(\"OUT_DIR\").unwrap());\n    \
         b.write_to_file(out.join(\"point.rs\")).unwrap();\n    \
         println!(\"cargo:rustc-env=CLANG_VERSION={}\", bindgen::clang_version().full);\n}\n",
    );
    std::fs::write(fx.path().join("crates/bg/point.h"), POINT_H).unwrap();
    // i686 too: its layout differs, so the bindings were made for each
    // target, not once for the host.
    std::fs::write(
        fx.path().join("images.toml"),
        "[images.bg]\npackage = \"bg\"\nplatforms = [\"linux/amd64\", \"linux/arm64\", \"linux/386\"]\n",
    )
    .unwrap();
    let callers = std::env::var_os("LIBCLANG_PATH").is_some();
    let out = fx.cli(&["images"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for (triple, qemu, size) in [
        ("x86_64-unknown-linux-musl", None, 24),
        (
            "aarch64-unknown-linux-musl",
            Some("qemu-aarch64-static"),
            24,
        ),
        // i386 aligns int64_t to 4 in a struct, and size_t is 4 bytes.
        ("i686-unknown-linux-musl", None, 16),
    ] {
        let said = run_built(&fx, "bg", triple, qemu);
        assert!(said.starts_with(&format!("{size} 42 ")), "{triple}: {said}");
        if !callers {
            assert!(said.contains("clang version 18.1.1"), "{triple}: {said}");
        }
    }
}

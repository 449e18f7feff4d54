//! Cross-compiling for a foreign platform: pure-Rust crates link with
//! rust-lld alone, for every platform, and run in the sandbox under
//! qemu-user-static; a binary that asks for a loader is refused on
//! each; a crate that compiles C code with no C compiler to be had (images.toml
//! declines zig) gets a clear error saying what to do.

use std::path::Path;
use std::process::Command;

use crate::support::{Fixture, HELLO_MAIN, repo_root, require_tool, run};
use crate::validate;

/// The platforms beyond amd64 and arm64: name, default triple, the qemu
/// that runs them in the sandbox on an amd64 host, the loader musl would
/// name, and what `std::env::consts::ARCH` says there.
const NEW_PLATFORMS: [(&str, &str, &str, &str, &str); 4] = [
    (
        "linux/arm/v7",
        "armv7-unknown-linux-musleabihf",
        "qemu-arm-static",
        "/lib/ld-musl-armhf.so.1",
        "arm",
    ),
    (
        "linux/386",
        "i686-unknown-linux-musl",
        "qemu-i386-static",
        "/lib/ld-musl-i386.so.1",
        "x86",
    ),
    (
        "linux/riscv64",
        "riscv64gc-unknown-linux-musl",
        "qemu-riscv64-static",
        "/lib/ld-musl-riscv64.so.1",
        "riscv64",
    ),
    (
        "linux/ppc64le",
        "powerpc64le-unknown-linux-musl",
        "qemu-ppc64le-static",
        "/lib/ld-musl-powerpc64le.so.1",
        "powerpc64",
    ),
];

fn qemus_present() -> bool {
    NEW_PLATFORMS
        .iter()
        .all(|p| require_tool(p.2, "qemu-user-static").is_some())
}

/// The new platforms as a TOML array.
fn platforms_toml() -> String {
    let quoted: Vec<String> = NEW_PLATFORMS
        .iter()
        .map(|p| format!("\"{}\"", p.0))
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// Runs a binary under `qemu`, outside the sandbox.
fn run_foreign(qemu: &str, bin: &Path) -> String {
    let out = run(Command::new(qemu).arg(bin));
    assert!(out.status.success(), "{}", bin.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Prints its architecture, then unwinds through a caught panic: the
/// unwinder of every target is linked in and works.
const ARCH_MAIN: &str = "fn main() {\n    \
println!(\"arch: {}\", std::env::consts::ARCH);\n    \
std::panic::set_hook(Box::new(|_| {}));\n    \
let caught = std::panic::catch_unwind(|| panic!(\"boom\")).unwrap_err();\n    \
println!(\"caught: {}\", caught.downcast_ref::<&str>().unwrap());\n}\n";

#[test]
fn a_binary_for_every_new_platform_links_statically_and_runs_in_the_sandbox() {
    if !qemus_present() {
        return;
    }
    let fx = Fixture::new(
        &[("arch", ARCH_MAIN)],
        &format!(
            "[images.arch]\npackage = \"arch\"\nplatforms = {}\n\n\
             [images.arch.tests.runs]\n\
             stdout = {{ regex = \"^arch: (arm|x86|riscv64|powerpc64)\\ncaught: boom\\n$\" }}\n",
            platforms_toml()
        ),
    );
    let out = fx.cli(&["test-images", "--require-all-platforms", "arch"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let v = validate::layout(&fx.path().join("target/images/arch"));
    let built: Vec<&str> = v.images.iter().map(|i| i.platform.as_str()).collect();
    let wanted: Vec<&str> = NEW_PLATFORMS.iter().map(|p| p.0).collect();
    assert_eq!(built, wanted);
    for (platform, triple, qemu, _, arch) in NEW_PLATFORMS {
        let line = format!("test arch/runs [{platform}] ... ok");
        assert!(
            stdout.lines().any(|l| l == line),
            "no `{line}` in:\n{stdout}"
        );
        // The binary itself names its own architecture: each platform got
        // its own triple (the sandboxed test's pattern admits them all).
        let bin = scratchpack::compile::build_dir(&fx.path().join("target"))
            .join(triple)
            .join("release/arch");
        assert_eq!(
            run_foreign(qemu, &bin),
            format!("arch: {arch}\ncaught: boom\n"),
            "{platform}"
        );
    }
}

#[test]
fn a_binary_asking_for_a_loader_is_refused_on_every_new_platform() {
    // rust-lld links a static binary that still names a dynamic loader when
    // told to: the kernel would look for that loader, which a scratch image
    // does not have. (A binary with DT_NEEDED entries would need a shared
    // C library for the target, which a machine without a cross toolchain
    // does not have; the unit tests build those byte by byte.)
    let mut toml = String::new();
    for (i, (platform, _, _, loader, _)) in NEW_PLATFORMS.iter().enumerate() {
        toml.push_str(&format!(
            "[images.dyn{i}]\npackage = \"app\"\nplatforms = [\"{platform}\"]\n\
             rustflags = [\"-Clink-arg=--dynamic-linker={loader}\"]\n\n"
        ));
    }
    let fx = Fixture::new(&[("app", HELLO_MAIN)], &toml);
    for (i, (platform, _, _, loader, _)) in NEW_PLATFORMS.iter().enumerate() {
        let name = format!("dyn{i}");
        let out = fx.cli(&["images", &name]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{platform}: {stderr}");
        assert!(
            stderr.contains(&format!("refusing image `{name}` for {platform}")),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("it asks for the dynamic loader {loader}")),
            "{stderr}"
        );
        assert!(!fx.path().join("target/images").join(&name).exists());
    }
}

#[test]
fn a_crate_with_c_code_and_no_c_compiler_is_told_what_to_do() {
    // zig compiles C unless images.toml says otherwise (tests/it/c_toolchain.rs).
    let fx = Fixture::new(
        &[("native", HELLO_MAIN)],
        "[defaults]\nc-compiler = \"none\"\n\n\
         [images.native]\npackage = \"native\"\nplatforms = [\"linux/arm64\"]\n",
    );
    let krate = fx.path().join("crates/native");
    // cc pinned to the version this workspace locks, whose message about a
    // missing compiler the assertion below reads.
    std::fs::write(
        krate.join("Cargo.toml"),
        "[package]\nname = \"native\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
         [build-dependencies]\ncc = \"=1.11.1\"\n",
    )
    .unwrap();
    std::fs::write(
        krate.join("build.rs"),
        "fn main() { cc::Build::new().file(\"add.c\").compile(\"add\"); }\n",
    )
    .unwrap();
    std::fs::write(
        krate.join("add.c"),
        "int add(int a, int b) { return a + b; }\n",
    )
    .unwrap();

    let out = crate::support::run(
        crate::support::cli()
            .current_dir(fx.path())
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CC_aarch64_unknown_linux_musl")
            .env_remove("CC")
            .args(["images"]),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "needs the C compiler `aarch64-linux-musl-gcc` for aarch64-unknown-linux-musl, \
             and images.toml says `c-compiler = \"none\"`"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("set CC_aarch64_unknown_linux_musl"),
        "{stderr}"
    );
    assert!(!fx.path().join("target/images/native").exists());
}

#[test]
fn the_probe_finds_itself_isolated_on_every_new_platform() {
    if !qemus_present() {
        return;
    }
    // The probe uses the libc crate's bindings, whose layouts differ per
    // architecture (32-bit 386, big structs on ppc64le): it builds for
    // every new platform and sees itself isolated on each as on amd64.
    let probe = std::fs::read_to_string(repo_root().join("crates/probe/src/main.rs")).unwrap();
    let fx = Fixture::new(
        &[("isoprobe", &probe)],
        &format!(
            "[images.iso]\npackage = \"isoprobe\"\nuser = \"4242:4243\"\nplatforms = {}\n\n\
             [images.iso.tests.isolated]\nargs = [\"report\"]\n\
             stdout = {{ contains = ['\"uid\":4242,', '\"gid\":4243,', '\"interfaces\":[\"lo\"]', \
             '\"visible_host_paths\":[]', '\"no_new_privs\":\"1\"'], \
             regex = '\"root_write_error\":\"[^\"]+\"' }}\n",
            platforms_toml()
        ),
    );
    let manifest = fx.path().join("crates/isoprobe/Cargo.toml");
    let mut toml = std::fs::read_to_string(&manifest).unwrap();
    toml.push_str("\n[dependencies]\nlibc = \"0.2\"\n");
    std::fs::write(&manifest, toml).unwrap();
    std::fs::copy(repo_root().join("Cargo.lock"), fx.path().join("Cargo.lock")).unwrap();

    let out = fx.cli(&["test-images", "--require-all-platforms", "iso"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for (platform, ..) in NEW_PLATFORMS {
        let line = format!("test iso/isolated [{}] ... ok", platform);
        assert!(
            stdout.lines().any(|l| l == line),
            "no `{line}` in:\n{stdout}"
        );
    }
}

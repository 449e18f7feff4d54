//! Cross-compiling for a foreign platform: pure-Rust crates link with
//! rust-lld alone, for every platform, and run under qemu-user-static (or
//! natively, for 386 on amd64); a binary that asks for a loader is refused on
//! each; a crate that compiles C code gets a clear error naming the C cross
//! compiler it needs.

use std::path::Path;
use std::process::Command;

use crate::support::{Fixture, HELLO_MAIN, cli, nested_target_dir, repo_root, require_tool, run};
use crate::validate;

/// The platforms beyond amd64 and arm64: name, default triple, the qemu
/// that runs them on an amd64 host (none: the kernel runs 386 itself), the
/// loader musl would name, and what `std::env::consts::ARCH` says there.
const NEW_PLATFORMS: [(&str, &str, Option<&str>, &str, &str); 4] = [
    (
        "linux/arm/v7",
        "armv7-unknown-linux-musleabihf",
        Some("qemu-arm-static"),
        "/lib/ld-musl-armhf.so.1",
        "arm",
    ),
    (
        "linux/386",
        "i686-unknown-linux-musl",
        None,
        "/lib/ld-musl-i386.so.1",
        "x86",
    ),
    (
        "linux/riscv64",
        "riscv64gc-unknown-linux-musl",
        Some("qemu-riscv64-static"),
        "/lib/ld-musl-riscv64.so.1",
        "riscv64",
    ),
    (
        "linux/ppc64le",
        "powerpc64le-unknown-linux-musl",
        Some("qemu-ppc64le-static"),
        "/lib/ld-musl-powerpc64le.so.1",
        "powerpc64",
    ),
];

/// Whether `test-images` can run a platform's binaries in the sandbox.
/// qemu-arm reserves the whole 4 GiB guest address space up front, which
/// the sandbox's address-space limit (256 MiB by default) refuses, so
/// arm/v7 binaries are run under qemu outside the sandbox here.
fn sandboxed(platform: &str) -> bool {
    platform != "linux/arm/v7"
}

fn qemus_present() -> bool {
    NEW_PLATFORMS
        .iter()
        .filter_map(|p| p.2)
        .all(|q| require_tool(q, "qemu-user-static").is_some())
}

/// The new platforms as a TOML array (only those the sandbox runs, when
/// `sandboxed_only`).
fn platforms_toml(sandboxed_only: bool) -> String {
    let quoted: Vec<String> = NEW_PLATFORMS
        .iter()
        .filter(|p| !sandboxed_only || sandboxed(p.0))
        .map(|p| format!("\"{}\"", p.0))
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// Runs a binary for `qemu`'s architecture (or natively) with `args`.
fn run_foreign(qemu: Option<&str>, bin: &Path, args: &[&str]) -> String {
    let mut cmd = match qemu {
        Some(q) => {
            let mut c = Command::new(q);
            c.arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let out = run(cmd.args(args));
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
fn a_binary_for_every_new_platform_links_statically_and_runs() {
    if !qemus_present() {
        return;
    }
    let fx = Fixture::new(
        &[("arch", ARCH_MAIN)],
        &format!(
            "[images.arch]\npackage = \"arch\"\nplatforms = {}\n\n\
             [images.sandboxed]\npackage = \"arch\"\nplatforms = {}\n\n\
             [images.sandboxed.tests.runs]\n\
             stdout = {{ regex = \"^arch: (x86|riscv64|powerpc64)\\ncaught: boom\\n$\" }}\n",
            platforms_toml(false),
            platforms_toml(true)
        ),
    );
    let out = fx.cli(&["images", "arch"]);
    assert!(out.status.success());
    let v = validate::layout(&fx.path().join("target/images/arch"));
    let built: Vec<&str> = v.images.iter().map(|i| i.platform.as_str()).collect();
    let wanted: Vec<&str> = NEW_PLATFORMS.iter().map(|p| p.0).collect();
    assert_eq!(built, wanted);

    let out = fx.cli(&["test-images", "sandboxed"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for (platform, triple, qemu, _, arch) in NEW_PLATFORMS {
        if sandboxed(platform) {
            let line = format!("test sandboxed/runs [{}] ... ok", platform);
            assert!(
                stdout.lines().any(|l| l == line),
                "no `{line}` in:\n{stdout}"
            );
        }
        // The binary itself, run outside the sandbox, names its own
        // architecture: each platform got its own triple.
        let bin = fx.path().join("target").join(triple).join("release/arch");
        assert_eq!(
            run_foreign(qemu, &bin, &[]),
            format!("arch: {arch}\ncaught: boom\n"),
            "{platform}"
        );
    }
}

/// The repository's images.toml with every image on the new platforms
/// (only those the sandbox runs, when `sandboxed_only`).
fn examples_on_new_platforms(dir: &Path, sandboxed_only: bool) -> std::path::PathBuf {
    let toml = std::fs::read_to_string(repo_root().join("images.toml")).unwrap();
    let line = format!("platforms = {}", platforms_toml(sandboxed_only));
    let mut replaced = 0;
    let toml: Vec<String> = toml
        .lines()
        .map(|l| {
            if l.starts_with("platforms = ") {
                replaced += 1;
                line.clone()
            } else {
                l.to_owned()
            }
        })
        .collect();
    assert_eq!(
        replaced, 1,
        "images.toml sets platforms once, in [defaults]"
    );
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("images.toml");
    std::fs::write(&path, toml.join("\n")).unwrap();
    path
}

fn cli_in_repo(command: &str, manifest: &Path, out_dir: &Path) -> std::process::Output {
    run(cli()
        .current_dir(repo_root())
        .env("CARGO_TARGET_DIR", nested_target_dir())
        .arg(command)
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--out")
        .arg(out_dir))
}

#[test]
fn the_examples_build_for_every_new_platform_and_pass_their_tests() {
    if !qemus_present() {
        return;
    }
    std::fs::create_dir_all(nested_target_dir()).unwrap();
    let tmp = tempfile::tempdir_in(nested_target_dir()).unwrap();

    // Every new platform builds and passes the static proof.
    let all = tmp.path().join("all");
    let out_dir = all.join("images");
    let out = cli_in_repo("images", &examples_on_new_platforms(&all, false), &out_dir);
    assert!(out.status.success());
    let wanted: Vec<&str> = NEW_PLATFORMS.iter().map(|p| p.0).collect();
    for image in ["hello", "greeter"] {
        let v = validate::layout(&out_dir.join(image));
        let built: Vec<&str> = v.images.iter().map(|i| i.platform.as_str()).collect();
        assert_eq!(built, wanted, "{image}");
    }
    // Every hello runs, arm/v7's under qemu-arm outside the sandbox.
    for (platform, triple, qemu, ..) in NEW_PLATFORMS {
        let hello = nested_target_dir().join(triple).join("release/hello");
        let text = run_foreign(qemu, &hello, &["world"]);
        assert!(
            text.contains("Hello from a scratch image!") && text.contains("args: world"),
            "{platform}: {text}"
        );
    }

    // The examples' own tests pass on every platform the sandbox runs.
    let some = tmp.path().join("sandboxed");
    let out = cli_in_repo(
        "test-images",
        &examples_on_new_platforms(&some, true),
        &some.join("images"),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for (platform, ..) in NEW_PLATFORMS.iter().filter(|p| sandboxed(p.0)) {
        for image in ["hello", "greeter"] {
            let ok = stdout
                .lines()
                .filter(|l| l.starts_with(&format!("test {image}/")))
                .filter(|l| l.ends_with(&format!(" [{}] ... ok", platform)))
                .count();
            assert!(ok >= 3, "{image} on {platform}:\n{stdout}");
        }
    }
    assert!(!stdout.contains("FAILED"), "{stdout}");
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
fn a_crate_with_c_code_names_the_cross_compiler_it_needs() {
    let fx = Fixture::new(
        &[("native", HELLO_MAIN)],
        "[images.native]\npackage = \"native\"\nplatforms = [\"linux/arm64\"]\n",
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
        stderr.contains("needs the C cross compiler `aarch64-linux-musl-gcc`"),
        "{stderr}"
    );
    assert!(stderr.contains("CC_aarch64_unknown_linux_musl"), "{stderr}");
    assert!(!fx.path().join("target/images/native").exists());
}

#[test]
fn the_probe_finds_itself_isolated_on_every_sandboxed_new_platform() {
    if !qemus_present() {
        return;
    }
    // The probe uses the libc crate's bindings, whose layouts differ per
    // architecture (32-bit 386, big structs on ppc64le): it builds for
    // every new platform and, where the sandbox runs it, sees itself
    // isolated there as on amd64.
    let probe = std::fs::read_to_string(repo_root().join("crates/probe/src/main.rs")).unwrap();
    let fx = Fixture::new(
        &[("isoprobe", &probe)],
        &format!(
            "[images.built]\npackage = \"isoprobe\"\nplatforms = {}\n\n\
             [images.iso]\npackage = \"isoprobe\"\nuser = \"4242:4243\"\nplatforms = {}\n\n\
             [images.iso.tests.isolated]\nargs = [\"report\"]\n\
             stdout = {{ contains = ['\"uid\":4242,', '\"gid\":4243,', '\"interfaces\":[\"lo\"]', \
             '\"visible_host_paths\":[]', '\"no_new_privs\":\"1\"'], \
             regex = '\"root_write_error\":\"[^\"]+\"' }}\n",
            platforms_toml(false),
            platforms_toml(true)
        ),
    );
    let manifest = fx.path().join("crates/isoprobe/Cargo.toml");
    let mut toml = std::fs::read_to_string(&manifest).unwrap();
    toml.push_str("\n[dependencies]\nlibc = \"0.2\"\n");
    std::fs::write(&manifest, toml).unwrap();
    std::fs::copy(repo_root().join("Cargo.lock"), fx.path().join("Cargo.lock")).unwrap();

    let out = fx.cli(&["images", "built"]);
    assert!(out.status.success());
    let out = fx.cli(&["test-images", "iso"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for (platform, ..) in NEW_PLATFORMS.iter().filter(|p| sandboxed(p.0)) {
        let line = format!("test iso/isolated [{}] ... ok", platform);
        assert!(
            stdout.lines().any(|l| l == line),
            "no `{line}` in:\n{stdout}"
        );
    }
}

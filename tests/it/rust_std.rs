//! A fresh machine's first command: where `rustup target add` cannot
//! download a target's standard library, `images` builds it from the
//! toolchain's sources (once per toolchain, kept in the user's cache) and
//! installs it where rustup would, and the image builds. The first run on a
//! machine builds the three standard libraries (minutes); later runs take
//! them from the cache and install them into a sysroot of their own.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Fixture, HELLO_MAIN, require_tool, run};

/// The targets with a recipe: each platform, its triple and the emulator
/// that runs its binaries.
const MISSING: [(&str, &str, &str); 3] = [
    (
        "linux/arm/v7",
        "armv7-unknown-linux-musleabihf",
        "qemu-arm-static",
    ),
    (
        "linux/riscv64",
        "riscv64gc-unknown-linux-musl",
        "qemu-riscv64-static",
    ),
    (
        "linux/ppc64le",
        "powerpc64le-unknown-linux-musl",
        "qemu-ppc64le-static",
    ),
];

fn script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A toolchain that lacks the standard library of the targets with a
/// recipe: a sysroot of links to the real one's parts but those targets, and a `rustc` that runs the real
/// compiler with it; and a `rustup` whose `target add` fails as it does on
/// a mirror without the component. Returns the sysroot and the directory
/// of the two programs.
fn toolchain_without_them(dir: &Path) -> (PathBuf, PathBuf) {
    let out = run(Command::new("rustc").args(["--print", "sysroot"]));
    let real = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let sysroot = dir.join("sysroot");
    let rustlib = sysroot.join("lib/rustlib");
    std::fs::create_dir_all(&rustlib).unwrap();
    for entry in std::fs::read_dir(real.join("lib/rustlib")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        if !MISSING.iter().any(|(_, t, _)| *t == name_str) && !name_str.starts_with('.') {
            std::os::unix::fs::symlink(entry.path(), rustlib.join(&name)).unwrap();
        }
    }
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    // A compile that names its own sysroot (the shim built against the new
    // std) keeps it.
    script(
        &bin.join("rustc"),
        &format!(
            "#!/bin/sh\nfor a; do case $a in --sysroot|--sysroot=*) exec '{rustc}' \"$@\";; esac; done\n\
             exec '{rustc}' --sysroot '{sysroot}' \"$@\"\n",
            rustc = real.join("bin/rustc").display(),
            sysroot = sysroot.display()
        ),
    );
    let rustup = require_tool("rustup", "rustup").unwrap();
    script(
        &bin.join("rustup"),
        &format!(
            "#!/bin/sh\nif [ \"$1 $2\" = \"target add\" ]; then\n  \
             echo \"error: component 'rust-std' for target '$3' is unavailable for download\" >&2\n  \
             exit 1\nfi\nexec '{}' \"$@\"\n",
            rustup.display()
        ),
    );
    (sysroot, bin)
}

#[test]
fn a_target_rustup_cannot_download_is_built_from_source() {
    for tool in ["apt-get", "dpkg-deb"] {
        if require_tool(tool, "apt").is_none() {
            return;
        }
    }
    for (_, _, qemu) in MISSING {
        if require_tool(qemu, "qemu-user-static").is_none() {
            return;
        }
    }
    let tools = tempfile::tempdir().unwrap();
    let (sysroot, bin) = toolchain_without_them(tools.path());
    let platforms: Vec<String> = MISSING.iter().map(|(p, _, _)| format!("{p:?}")).collect();
    let fx = Fixture::new(
        &[("hello", HELLO_MAIN)],
        &format!(
            "[images.hello]\npackage = \"hello\"\nplatforms = [{}]\n",
            platforms.join(", ")
        ),
    );
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let rustc = bin.join("rustc");
    let vars = [("PATH", path.as_str()), ("RUSTC", rustc.to_str().unwrap())];
    let out = fx.cli_env(&["images"], &vars);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for (_, triple, qemu) in MISSING {
        assert!(
            stderr.contains(&format!(
                "`rustup target add {triple}` failed (exit status: 1); building it from source \
                 instead"
            )),
            "{stderr}"
        );
        let installed = sysroot.join("lib/rustlib").join(triple);
        assert!(
            stderr.contains(&format!(
                "Installing the Rust standard library for {triple} into {}",
                installed.display()
            )),
            "{stderr}"
        );
        // Copied, not linked, and the build's own: rustup's std has no
        // fortify shim.
        let contained = installed.join("lib/self-contained");
        for file in ["libc.a", "unwind-fortify-shim.o", "libunwind.a"] {
            let meta = std::fs::symlink_metadata(contained.join(file)).unwrap();
            assert!(meta.is_file(), "{triple}: {file}");
        }
        let binary = scratchpack::compile::build_dir(&fx.path().join("target"))
            .join(triple)
            .join("release/hello");
        let ran = run(Command::new(qemu).arg(binary));
        assert_eq!(
            String::from_utf8_lossy(&ran.stdout),
            "hello from a fixture\n",
            "{triple}"
        );
    }
    // Installed, it is the toolchain's: a second build asks rustup nothing.
    let again = fx.cli_env(&["images"], &vars);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(!stderr.contains("rustup"), "{stderr}");
}

//! What every end-to-end test needs: the command line under test, the oracle
//! tools, fixture workspaces, and the repository's own examples built once.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The repository root (this crate lives in `tests/`).
pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The scratchpack command line, as `cargo xtask` runs it.
pub(crate) fn cli() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_scratchpack"));
    cmd.env_remove("SOURCE_DATE_EPOCH").env("NO_COLOR", "1");
    cmd
}

/// A target directory for builds the tests start. `cargo test` holds the lock
/// on the workspace's own target directory while tests run, so nested builds
/// use one of their own; it is shared between tests so each crate compiles
/// once (cargo serialises builds on its lock).
pub(crate) fn nested_target_dir() -> PathBuf {
    repo_root().join("target").join("it")
}

/// Runs a command and returns its output, printing it when it fails so a
/// failing test shows why.
pub(crate) fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    if !out.status.success() {
        eprintln!(
            "{cmd:?} exited with {}\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// The path of an oracle tool. A missing tool fails the test under
/// `CI=true`; elsewhere the test is skipped with a message naming the
/// Debian package to install.
pub(crate) fn require_tool(tool: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(tool))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{tool} is not installed (Debian package {package}); CI must have it");
        }
        eprintln!("skipping: {tool} is not installed (apt-get install {package})");
    }
    found
}

/// A `RUSTC_WRAPPER` that logs every rustc invocation to `log`, then runs it.
pub(crate) fn logging_wrapper(dir: &Path, log: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("log-rustc.sh");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec \"$@\"\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The crates rustc compiled, from the wrapper's log.
pub(crate) fn compiled(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut crates: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let rest = &l[l.find("--crate-name ")? + "--crate-name ".len()..];
            Some(rest.split(' ').next()?.to_owned())
        })
        // Cargo's probe of what rustc prints, not a crate.
        .filter(|c| c != "___")
        .collect();
    crates.sort();
    crates.dedup();
    crates
}

/// The JSON objects `images --message-format json` printed, one per image.
pub(crate) fn built_images(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The repository's example images, built once per test run into a private
/// output directory, with their JSON results.
pub(crate) struct Examples {
    pub out_dir: PathBuf,
    pub images: Vec<serde_json::Value>,
}

impl Examples {
    pub(crate) fn image(&self, name: &str) -> &serde_json::Value {
        self.images
            .iter()
            .find(|i| i["name"] == name)
            .unwrap_or_else(|| panic!("no example image {name}"))
    }
}

/// The platforms images.toml puts every example on, in its order.
pub(crate) const EXAMPLE_PLATFORMS: [&str; 6] = [
    "linux/amd64",
    "linux/arm64",
    "linux/arm/v7",
    "linux/386",
    "linux/riscv64",
    "linux/ppc64le",
];

pub(crate) fn examples() -> &'static Examples {
    static EXAMPLES: OnceLock<Examples> = OnceLock::new();
    EXAMPLES.get_or_init(|| {
        let out_dir = nested_target_dir().join("examples-images");
        let _ = std::fs::remove_dir_all(&out_dir);
        let out = run(cli()
            .current_dir(repo_root())
            .env("CARGO_TARGET_DIR", nested_target_dir())
            .args(["images", "--message-format", "json", "--out"])
            .arg(&out_dir));
        assert!(out.status.success(), "building the examples failed");
        Examples {
            images: built_images(&out),
            out_dir,
        }
    })
}

/// A throwaway workspace: a root `Cargo.toml` listing `members`, each a
/// binary crate `crates/<name>` with the given `main.rs`, plus `images.toml`.
pub(crate) struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub(crate) fn new(crates: &[(&str, &str)], images_toml: &str) -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("scratchpack-fixture-")
            .tempdir()
            .unwrap();
        let members: Vec<String> = crates
            .iter()
            .map(|(name, _)| format!("\"crates/{name}\""))
            .collect();
        std::fs::write(
            dir.path().join("Cargo.toml"),
            format!(
                "[workspace]\nresolver = \"3\"\nmembers = [{}]\n\n[profile.release]\nstrip = true\n",
                members.join(", ")
            ),
        )
        .unwrap();
        for (name, main) in crates {
            let src = dir.path().join("crates").join(name).join("src");
            std::fs::create_dir_all(&src).unwrap();
            std::fs::write(
                src.parent().unwrap().join("Cargo.toml"),
                format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n"),
            )
            .unwrap();
            std::fs::write(src.join("main.rs"), main).unwrap();
        }
        std::fs::write(dir.path().join("images.toml"), images_toml).unwrap();
        Fixture { dir }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs the CLI in the fixture with `args`.
    pub(crate) fn cli(&self, args: &[&str]) -> Output {
        self.cli_env(args, &[])
    }

    /// Runs the CLI in the fixture with `args` and the variables `env` added.
    pub(crate) fn cli_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        run(cli()
            .current_dir(self.path())
            .env_remove("CARGO_TARGET_DIR")
            .envs(env.iter().copied())
            .args(args))
    }
}

/// A hello-world `main.rs`.
pub(crate) const HELLO_MAIN: &str = "fn main() { println!(\"hello from a fixture\"); }\n";

/// A private podman store under a temporary directory.
pub(crate) struct Podman {
    bin: std::path::PathBuf,
    store: tempfile::TempDir,
}

impl Podman {
    pub(crate) fn new() -> Option<Podman> {
        let bin = require_tool("podman", "podman")?;
        Some(Podman {
            bin,
            store: tempfile::tempdir().unwrap(),
        })
    }

    pub(crate) fn cmd(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--root")
            .arg(self.store.path().join("root"))
            .arg("--runroot")
            .arg(self.store.path().join("run"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ]);
        cmd
    }

    pub(crate) fn load(&self, archive: &str) {
        let out = run(self.cmd().args(["load", "-i", archive]));
        assert!(out.status.success(), "podman load -i {archive}");
    }

    /// `os/architecture` and image ID of what `name` names in the store.
    pub(crate) fn inspect(&self, name: &str) -> (String, String) {
        let out = run(self.cmd().args([
            "image",
            "inspect",
            "--format",
            "{{.Os}}/{{.Architecture}} {{.Id}}",
            name,
        ]));
        assert!(out.status.success(), "podman has no image `{name}`");
        let text = String::from_utf8(out.stdout).unwrap();
        let (platform, id) = text.trim().split_once(' ').unwrap();
        (platform.to_owned(), id.to_owned())
    }
}

//! The release tests' oracles, installed once per test run: a Python virtual
//! environment with `tests/oracles/requirements.txt` and an npm tree with
//! `tests/oracles/package.json`, both under `target/oracles/`, reused while
//! their requirement files are unchanged.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::support::{repo_root, require_tool, run};

pub(crate) struct Oracles {
    python: PathBuf,
    node_modules: PathBuf,
}

/// The oracles, or `None` (outside CI) when python3 or npm is missing.
pub(crate) fn oracles() -> Option<&'static Oracles> {
    static ORACLES: OnceLock<Option<Oracles>> = OnceLock::new();
    ORACLES.get_or_init(install).as_ref()
}

fn install() -> Option<Oracles> {
    let python3 = require_tool("python3", "python3-venv")?;
    require_tool("npm", "npm")?;
    require_tool("node", "nodejs")?;
    let sources = repo_root().join("tests/oracles");
    let dir = repo_root().join("target/oracles");
    std::fs::create_dir_all(&dir).unwrap();

    let venv = dir.join("venv");
    let requirements = std::fs::read(sources.join("requirements.txt")).unwrap();
    if !stamped(&venv, &requirements) {
        let _ = std::fs::remove_dir_all(&venv);
        let out = run(Command::new(&python3).arg("-m").arg("venv").arg(&venv));
        assert!(
            out.status.success(),
            "creating the oracles' Python venv failed (python3-venv)"
        );
        let out = run(Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(sources.join("requirements.txt")));
        assert!(out.status.success(), "installing the Python oracles failed");
        stamp(&venv, &requirements);
    }

    let node = dir.join("node");
    let package = std::fs::read(sources.join("package.json")).unwrap();
    if !stamped(&node, &package) {
        let _ = std::fs::remove_dir_all(&node);
        std::fs::create_dir_all(&node).unwrap();
        std::fs::write(node.join("package.json"), &package).unwrap();
        let out = run(Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund"])
            .current_dir(&node));
        assert!(out.status.success(), "installing the npm oracles failed");
        stamp(&node, &package);
    }
    Some(Oracles {
        python: venv.join("bin/python"),
        node_modules: node.join("node_modules"),
    })
}

fn stamped(dir: &Path, contents: &[u8]) -> bool {
    std::fs::read(dir.join(".installed-from")).is_ok_and(|s| s == contents)
}

fn stamp(dir: &Path, contents: &[u8]) {
    std::fs::write(dir.join(".installed-from"), contents).unwrap();
}

impl Oracles {
    /// `tests/oracles/check.py` with `args`.
    pub(crate) fn check(&self, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
        let mut cmd = Command::new(&self.python);
        cmd.arg(repo_root().join("tests/oracles/check.py"));
        for a in args {
            cmd.arg(a);
        }
        cmd.output().unwrap()
    }

    /// `tests/oracles/verify-bundle.js BUNDLE PUBLIC SHA256_HEX`.
    pub(crate) fn verify_bundle(&self, bundle: &Path, public: &Path, hex: &str) -> Output {
        Command::new("node")
            .arg(repo_root().join("tests/oracles/verify-bundle.js"))
            .arg(bundle)
            .arg(public)
            .arg(hex)
            .env("NODE_PATH", &self.node_modules)
            .output()
            .unwrap()
    }

    /// A command from the venv (`pyspdxtools`, ...).
    pub(crate) fn venv_tool(&self, name: &str) -> Command {
        Command::new(self.python.parent().unwrap().join(name))
    }
}

/// Asserts an oracle accepted, showing what it said otherwise.
pub(crate) fn assert_accepted(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} was rejected:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts an oracle rejected, and that its reason mentions `reason`.
pub(crate) fn assert_rejected(out: &Output, what: &str, reason: &str) {
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{what} was accepted: {said}");
    assert!(
        said.contains(reason),
        "{what} was rejected for another reason: {said}"
    );
}

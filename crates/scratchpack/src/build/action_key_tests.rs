//! One test per input of an action key: changing it changes the key, and
//! changing what is not an input (an untracked file, another package's
//! file, where the checkout is) does not.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use super::*;
use crate::manifest::parse;

const IMAGES: &str = "[images.app]\npackage = \"app\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n\
                      files = [{ src = \"crates/app/assets/a.txt\", dst = \"/etc/a.txt\" }]\n";

/// A workspace with `app` (depending on `lib` by path) and `other`.
fn fixture(dir: &Path) {
    let write = |rel: &str, text: &str| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write(
        "Cargo.toml",
        "[workspace]\nmembers = [\"crates/*\"]\nresolver = \"3\"\n",
    );
    write("Cargo.lock", "version = 4\n");
    write("crates/app/Cargo.toml", "[package]\nname = \"app\"\n");
    write("crates/app/src/main.rs", "fn main() {}\n");
    write("crates/app/assets/a.txt", "a\n");
    write("crates/lib/Cargo.toml", "[package]\nname = \"lib\"\n");
    write("crates/lib/src/lib.rs", "pub fn f() {}\n");
    write("crates/other/Cargo.toml", "[package]\nname = \"other\"\n");
    write("crates/other/src/main.rs", "fn main() {}\n");
    write("images.toml", IMAGES);
}

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
        .status
        .success();
    assert!(ok, "git {args:?}");
}

fn workspace(dir: &Path) -> Workspace {
    let mut packages = BTreeMap::new();
    let mut manifests = BTreeMap::new();
    for p in ["app", "lib", "other"] {
        packages.insert(p.to_owned(), vec![p.to_owned()]);
        manifests.insert(p.to_owned(), dir.join(format!("crates/{p}/Cargo.toml")));
    }
    let mut dependencies = BTreeMap::new();
    dependencies.insert(
        "app".to_owned(),
        BTreeSet::from(["lib".to_owned(), "serde".to_owned()]),
    );
    let mut features = BTreeMap::new();
    features.insert("app".to_owned(), BTreeSet::from(["x".to_owned()]));
    let mut ws = Workspace {
        features,
        root: dir.to_owned(),
        target_dir: dir.join("target"),
        packages,
        manifests,
        dependencies,
        ..Workspace::default()
    };
    ws.profiles.insert("release".to_owned(), false);
    ws.profiles.insert("dist".to_owned(), true);
    ws.target_list
        .set(Some(
            [
                "x86_64-unknown-linux-musl",
                "aarch64-unknown-linux-musl",
                "x86_64-unknown-linux-gnu",
            ]
            .into_iter()
            .map(str::to_owned)
            .collect(),
        ))
        .unwrap();
    ws
}

/// What may vary in one computation of the keys.
struct Setup {
    rustc: String,
    env: BTreeMap<String, String>,
    epoch: u64,
    images: String,
    c_compiler: Option<String>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            rustc: "rustc 1.90.0 (1159e78c4 2025-09-14)\nhost: x86_64-unknown-linux-gnu\n".into(),
            env: BTreeMap::new(),
            epoch: 0,
            images: IMAGES.to_owned(),
            c_compiler: None,
        }
    }
}

fn key(dir: &Path, setup: &Setup) -> ImageKey {
    let ws = workspace(dir);
    let plan = parse(&dir.join("images.toml"), &setup.images, &ws)
        .unwrap_or_else(|e| panic!("{}", e.render(false)));
    let env = Env::from_vars(setup.env.clone());
    let ctx = KeyContext::with(&ws, setup.rustc.clone(), &env, setup.epoch)
        .unwrap()
        .compiling_c_with(setup.c_compiler.clone());
    ctx.image_key(&plan.images[0]).unwrap()
}

/// A git checkout of the fixture, and its keys.
fn checkout() -> (tempfile::TempDir, ImageKey) {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    git(dir.path(), &["init", "-q"]);
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-q", "-m", "x"]);
    let k = key(dir.path(), &Setup::default());
    (dir, k)
}

fn changes(edit: impl FnOnce(&Path, &mut Setup)) -> bool {
    let (dir, before) = checkout();
    let mut setup = Setup::default();
    edit(dir.path(), &mut setup);
    let after = key(dir.path(), &setup);
    before != after
}

fn append(path: &Path, text: &str) {
    let mut old = std::fs::read_to_string(path).unwrap_or_default();
    old.push_str(text);
    std::fs::write(path, old).unwrap();
}

#[test]
fn keys_are_stable_and_per_platform() {
    let (dir, k) = checkout();
    assert_eq!(k, key(dir.path(), &Setup::default()));
    assert_eq!(k.platforms.len(), 2);
    assert_ne!(k.platforms[0], k.platforms[1]);
    assert_eq!(k.tag().len(), 3 + 64);
}

#[test]
fn the_packages_own_sources_are_an_input() {
    assert!(changes(|d, _| append(
        &d.join("crates/app/src/main.rs"),
        "//\n"
    )));
    // A new file counts once git tracks it.
    assert!(changes(|d, _| {
        std::fs::write(d.join("crates/app/src/extra.rs"), "").unwrap();
        git(d, &["add", "crates/app/src/extra.rs"]);
    }));
}

#[test]
fn a_path_dependencys_sources_are_an_input() {
    assert!(changes(|d, _| append(
        &d.join("crates/lib/src/lib.rs"),
        "//\n"
    )));
}

#[test]
fn the_lock_file_and_workspace_manifest_are_inputs() {
    assert!(changes(|d, _| append(&d.join("Cargo.lock"), "#\n")));
    assert!(changes(|d, _| append(&d.join("Cargo.toml"), "#\n")));
    assert!(changes(|d, _| {
        std::fs::create_dir_all(d.join(".cargo")).unwrap();
        std::fs::write(d.join(".cargo/config.toml"), "[build]\n").unwrap();
    }));
}

#[test]
fn build_settings_are_inputs() {
    fn with(extra: &'static str) -> impl FnOnce(&Path, &mut Setup) {
        move |_, s| s.images = format!("{IMAGES}{extra}")
    }
    assert!(changes(with("profile = \"dist\"\n")));
    assert!(changes(with("features = [\"x\"]\n")));
    assert!(changes(with("default-features = false\n")));
    assert!(changes(with("rustflags = [\"-Copt-level=s\"]\n")));
    assert!(changes(|_, s| {
        s.env
            .insert("RUSTFLAGS".into(), "-Ctarget-cpu=native".into());
    }));
    assert!(changes(|_, s| {
        s.env.insert(
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER".into(),
            "cc".into(),
        );
    }));
}

#[test]
fn the_target_is_an_input() {
    let (dir, before) = checkout();
    let setup = Setup {
        images: format!("{IMAGES}targets = {{ \"linux/amd64\" = \"x86_64-unknown-linux-gnu\" }}\n"),
        ..Setup::default()
    };
    let after = key(dir.path(), &setup);
    assert_ne!(before.platforms[0], after.platforms[0]);
    // The other platform's key is its own.
    assert_eq!(before.platforms[1], after.platforms[1]);
}

#[test]
fn the_toolchain_is_an_input() {
    assert!(changes(|_, s| s.rustc = s.rustc.replace("1.90.0", "1.91.0")));
}

#[test]
fn the_image_plan_and_its_files_are_inputs() {
    assert!(changes(|_, s| s.images.push_str("user = \"0:0\"\n")));
    assert!(changes(|_, s| s.images.push_str("entrypoint = [\"/x\"]\n")));
    assert!(changes(|d, _| append(
        &d.join("crates/app/assets/a.txt"),
        "b\n"
    )));
}

#[test]
fn the_c_compiler_is_an_input() {
    assert!(changes(
        |_, s| s.c_compiler = Some("zig 0.15.2 (wrappers 1)".into())
    ));
    let zig = |version: &str| {
        let (dir, _) = checkout();
        let c_compiler = Some(format!("zig {version} (wrappers 1)"));
        key(
            dir.path(),
            &Setup {
                c_compiler,
                ..Setup::default()
            },
        )
    };
    assert_ne!(zig("0.15.2"), zig("0.16.0"));
}

#[test]
fn rustflags_from_cargo_configuration_are_an_input() {
    // Above the workspace as well as in it: cargo reads both.
    assert!(changes(|d, _| {
        std::fs::create_dir_all(d.join(".cargo")).unwrap();
        std::fs::write(
            d.join(".cargo/config.toml"),
            "[target.x86_64-unknown-linux-musl]\nrustflags = [\"--cfg\", \"x\"]\n",
        )
        .unwrap();
    }));
    let (dir, before) = checkout();
    let ws = workspace(dir.path());
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("config.toml"),
        "[build]\nrustflags = [\"-Ctarget-cpu=native\"]\n",
    )
    .unwrap();
    let env = Env::from_vars([("CARGO_HOME", home.path())]);
    let s = Setup::default();
    let ctx = KeyContext::with(&ws, s.rustc, &env, s.epoch).unwrap();
    let plan = parse(&dir.path().join("images.toml"), IMAGES, &ws).unwrap();
    assert_ne!(ctx.image_key(&plan.images[0]).unwrap(), before);
}

#[test]
fn the_epoch_is_an_input() {
    assert!(changes(|_, s| s.epoch = 1));
}

#[test]
fn the_format_version_is_an_input() {
    let (dir, before) = checkout();
    let ws = workspace(dir.path());
    let plan = parse(&dir.path().join("images.toml"), IMAGES, &ws).unwrap();
    let s = Setup::default();
    let mut ctx = KeyContext::with(&ws, s.rustc, &Env::from_vars(s.env), s.epoch).unwrap();
    ctx.version.push_str("+next");
    assert_ne!(ctx.image_key(&plan.images[0]).unwrap(), before);
}

#[test]
fn what_is_not_an_input_leaves_the_key() {
    // An untracked file, in the package or anywhere else.
    assert!(!changes(|d, _| {
        std::fs::write(d.join("crates/app/src/scratch.rs"), "x").unwrap();
        std::fs::write(d.join("notes.txt"), "x").unwrap();
    }));
    // A file of a package the image does not depend on.
    assert!(!changes(|d, _| append(
        &d.join("crates/other/src/main.rs"),
        "//\n"
    )));
    // A variable that changes no output, such as a compiler cache.
    assert!(!changes(|_, s| {
        s.env.insert("RUSTC_WRAPPER".into(), "sccache".into());
    }));
    // The build's own outputs.
    assert!(!changes(|d, _| {
        std::fs::create_dir_all(d.join("target/release")).unwrap();
        std::fs::write(d.join("target/release/app"), "x").unwrap();
    }));
}

#[test]
fn the_checkout_path_is_not_an_input() {
    let (a, ka) = checkout();
    let b = tempfile::tempdir().unwrap();
    let clone = b.path().join("elsewhere/deeper");
    std::fs::create_dir_all(clone.parent().unwrap()).unwrap();
    git(
        b.path(),
        &[
            "clone",
            "-q",
            a.path().to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    assert_eq!(key(&clone, &Setup::default()), ka);
}

#[test]
fn outside_git_every_file_but_target_counts() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let before = key(dir.path(), &Setup::default());
    std::fs::create_dir_all(dir.path().join("target/x")).unwrap();
    std::fs::write(dir.path().join("target/x/out"), "x").unwrap();
    std::fs::create_dir_all(dir.path().join("crates/app/target")).unwrap();
    std::fs::write(dir.path().join("crates/app/target/out"), "x").unwrap();
    assert_eq!(key(dir.path(), &Setup::default()), before);
    std::fs::write(dir.path().join("crates/app/src/new.rs"), "x").unwrap();
    assert_ne!(key(dir.path(), &Setup::default()), before);
}

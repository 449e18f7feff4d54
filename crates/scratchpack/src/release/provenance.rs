//! SLSA v1 provenance (slsa.dev `provenance/v1`) for an image, as the
//! predicate of an in-toto Statement v1: what was built (external
//! parameters: manifest, image, platform), from what (the workspace's git
//! commit, Cargo.lock's digest, the rustc and cargo that built it, the target
//! triple) and by whom (a builder id the CI system names). Nothing in it
//! depends on the time or the machine, so two builds give the same bytes.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use super::statement::{Statement, Subject};
use crate::oci::Digest;

pub const PREDICATE_SLSA: &str = "https://slsa.dev/provenance/v1";
/// What the external parameters mean: an image of images.toml built for one
/// platform by scratchpack.
pub const BUILD_TYPE: &str = "urn:scratchpack:build-type:image:v1";
/// The builder id when the CI system names none.
pub const DEFAULT_BUILDER_ID: &str = "urn:scratchpack:builder:local";

/// Everything the provenance records about one platform's build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    /// images.toml's path relative to the workspace root.
    pub manifest_path: String,
    pub image: String,
    /// `os/architecture`.
    pub platform: String,
    pub package: String,
    pub target: String,
    pub profile: String,
    pub features: Vec<String>,
    pub default_features: bool,
    pub source: Option<GitSource>,
    pub cargo_lock: Digest,
    pub toolchain: Toolchain,
    pub builder_id: String,
}

/// The commit the workspace was checked out at.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GitSource {
    /// The `origin` remote, when there is one.
    pub uri: Option<String>,
    pub commit: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Toolchain {
    /// `rustc -V` output, e.g. `rustc 1.85.0 (4d91de4e4 2025-02-17)`.
    pub rustc: String,
    /// `cargo -V` output.
    pub cargo: String,
}

/// The statement about `subjects` (the image's manifest and index digests).
pub fn statement(subjects: Vec<Subject>, build: &Build) -> Statement {
    Statement::new(subjects, PREDICATE_SLSA, predicate(build))
}

fn predicate(build: &Build) -> Value {
    let version = |full: &str| {
        full.split_whitespace()
            .nth(1)
            .unwrap_or("unknown")
            .to_owned()
    };
    let mut dependencies = Vec::new();
    if let Some(source) = &build.source {
        let mut dep = json!({"digest": {"gitCommit": source.commit}});
        if let Some(uri) = &source.uri {
            dep["uri"] = format!("git+{uri}@{}", source.commit).into();
        }
        dependencies.push(dep);
    }
    dependencies.push(json!({"name": "Cargo.lock", "digest": {"sha256": build.cargo_lock.hex()}}));
    dependencies.push(json!({
        "name": "rustc",
        "uri": format!("pkg:generic/rustc@{}?target={}", version(&build.toolchain.rustc), build.target),
        "annotations": {"version": build.toolchain.rustc},
    }));
    dependencies.push(json!({
        "name": "cargo",
        "uri": format!("pkg:generic/cargo@{}", version(&build.toolchain.cargo)),
        "annotations": {"version": build.toolchain.cargo},
    }));
    json!({
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "manifest": build.manifest_path,
                "image": build.image,
                "platform": build.platform,
            },
            "internalParameters": {
                "package": build.package,
                "target": build.target,
                "profile": build.profile,
                "features": build.features,
                "defaultFeatures": build.default_features,
            },
            "resolvedDependencies": dependencies,
        },
        "runDetails": {
            "builder": {"id": build.builder_id},
        },
    })
}

/// The workspace's git commit and origin, when it is a git checkout with a
/// commit; `None` otherwise (a source tarball has no commit to record).
/// git's answer is kept in `memo_dir` under a stamp of the files it reads
/// (HEAD, the branch's ref, packed refs, the repository's and the user's
/// config), so it is asked again only after a commit, a checkout or a change
/// of remote.
pub fn git_source(workspace_root: &Path, memo_dir: &Path) -> Option<GitSource> {
    let stamp = match git_stamp(workspace_root) {
        GitStamp::NoRepository => return None,
        GitStamp::Unknown => None,
        GitStamp::Files(stamp) => Some(stamp),
    };
    crate::memo::remembered(&memo_dir.join("git-source"), stamp.as_deref(), || {
        ask_git(workspace_root).ok_or(())
    })
    .ok()
}

fn ask_git(workspace_root: &Path) -> Option<GitSource> {
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(workspace_root)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let commit = git(&["rev-parse", "--verify", "HEAD"])?;
    Some(GitSource {
        uri: git(&["remote", "get-url", "origin"]),
        commit,
    })
}

enum GitStamp {
    /// No `.git` above the workspace, and nothing in the environment points
    /// git elsewhere: there is no commit to find.
    NoRepository,
    /// git's answer may depend on more than the files read here.
    Unknown,
    Files(String),
}

/// The files `git rev-parse HEAD` and `git remote get-url origin` read, for
/// the repository around `dir`.
fn git_stamp(dir: &Path) -> GitStamp {
    // Variables that point git at another repository or other config make
    // the files below the wrong ones; the others (`GIT_SSL_CAINFO`, ...) go
    // into the stamp.
    let mut vars: Vec<(String, String)> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .filter(|(k, _)| k.starts_with("GIT_"))
        .collect();
    vars.sort();
    const ELSEWHERE: &[&str] = &[
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_COMMON_DIR",
        "GIT_CONFIG",
        "GIT_CEILING_DIRECTORIES",
        "GIT_DISCOVERY_ACROSS_FILESYSTEM",
        "GIT_NAMESPACE",
        "GIT_REF",
    ];
    if vars
        .iter()
        .any(|(k, _)| ELSEWHERE.iter().any(|e| k.starts_with(e)))
    {
        return GitStamp::Unknown;
    }
    let Some(dot_git) = dir.ancestors().map(|d| d.join(".git")).find(|g| g.exists()) else {
        return GitStamp::NoRepository;
    };
    // A linked worktree or submodule has a `.git` file naming its git dir.
    let git_dir = if dot_git.is_dir() {
        dot_git.clone()
    } else {
        let Some(target) = std::fs::read_to_string(&dot_git)
            .ok()
            .and_then(|t| t.strip_prefix("gitdir:").map(|p| p.trim().to_owned()))
        else {
            return GitStamp::Unknown;
        };
        dot_git.parent().unwrap_or(dir).join(target)
    };
    let common = match std::fs::read_to_string(git_dir.join("commondir")) {
        Ok(c) => git_dir.join(c.trim()),
        Err(_) => git_dir.clone(),
    };
    // Refs kept in a reftable are not files of their own to stamp.
    if common.join("reftable").exists() || git_dir.join("reftable").exists() {
        return GitStamp::Unknown;
    }
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".config")));
    let mut files = vec![
        common.join("packed-refs"),
        common.join("config"),
        git_dir.join("config.worktree"),
        std::path::PathBuf::from("/etc/gitconfig"),
    ];
    files.extend(home.map(|h| h.join(".gitconfig")));
    files.extend(xdg.map(|x| x.join("git/config")));
    let head = std::fs::read_to_string(git_dir.join("HEAD")).unwrap_or_default();
    if let Some(branch) = head.strip_prefix("ref:") {
        let branch = branch.trim();
        if branch.split('/').any(|c| c.is_empty() || c == "..") {
            return GitStamp::Unknown;
        }
        files.push(git_dir.join(branch));
        files.push(common.join(branch));
    }
    // Without a linked worktree, the git dir is the common one.
    files.sort();
    files.dedup();
    let mut stamp = format!("{}\n{vars:?}\n{head}\n", dot_git.display());
    for f in &files {
        let digest = match std::fs::read(f) {
            Ok(text) => {
                // A config that pulls in other files says more than these bytes.
                let config = f.file_name().is_some_and(|n| n != "packed-refs")
                    && f.to_string_lossy().contains("config");
                if config
                    && String::from_utf8_lossy(&text)
                        .to_ascii_lowercase()
                        .contains("[include")
                {
                    return GitStamp::Unknown;
                }
                crate::oci::Digest::of(&text).to_string()
            }
            Err(_) => "missing".to_owned(),
        };
        stamp.push_str(&format!("{} {digest}\n", f.display()));
    }
    GitStamp::Files(stamp)
}

/// `rustc -V` and `cargo -V` as run in the workspace (so a
/// `rust-toolchain.toml` there is honoured). Under rustup, the answers are
/// kept in `memo_dir` under a stamp of the toolchain's two programs.
pub fn toolchain(workspace_root: &Path, memo_dir: &Path) -> std::io::Result<Toolchain> {
    let stamp = crate::memo::rustup_toolchain().and_then(|dir| {
        let rustc = crate::memo::file_stamp(&dir.join("bin/rustc"))?;
        let cargo = crate::memo::file_stamp(&dir.join("bin/cargo"))?;
        Some(format!("{rustc}\n{cargo}"))
    });
    crate::memo::remembered(&memo_dir.join("toolchain"), stamp.as_deref(), || {
        ask_toolchain(workspace_root)
    })
}

fn ask_toolchain(workspace_root: &Path) -> std::io::Result<Toolchain> {
    let version = |tool: &str| -> std::io::Result<String> {
        let out = Command::new(tool)
            .arg("-V")
            .current_dir(workspace_root)
            .output()?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!(
                "`{tool} -V` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    Ok(Toolchain {
        rustc: version("rustc")?,
        cargo: version("cargo")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Build {
        Build {
            manifest_path: "images.toml".into(),
            image: "hello".into(),
            platform: "linux/amd64".into(),
            package: "hello".into(),
            target: "x86_64-unknown-linux-musl".into(),
            profile: "release".into(),
            features: vec![],
            default_features: true,
            source: Some(GitSource {
                uri: Some("https://example.invalid/ws.git".into()),
                commit: "0123456789abcdef0123456789abcdef01234567".into(),
            }),
            cargo_lock: Digest::of(b"lock"),
            toolchain: Toolchain {
                rustc: "rustc 1.85.0 (4d91de4e4 2025-02-17)".into(),
                cargo: "cargo 1.85.0 (d73d2caf9 2024-12-31)".into(),
            },
            builder_id: DEFAULT_BUILDER_ID.into(),
        }
    }

    #[test]
    fn records_commit_lock_toolchain_and_builder() {
        let s = statement(vec![Subject::new("hello", &Digest::of(b"m"))], &sample());
        let v: Value = serde_json::from_slice(&s.to_json()).unwrap();
        let p = &v["predicate"];
        assert_eq!(v["predicateType"], PREDICATE_SLSA);
        assert_eq!(
            p["buildDefinition"]["externalParameters"]["platform"],
            "linux/amd64"
        );
        let deps = p["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .unwrap();
        assert_eq!(
            deps[0]["uri"],
            "git+https://example.invalid/ws.git@0123456789abcdef0123456789abcdef01234567"
        );
        assert_eq!(deps[1]["digest"]["sha256"], Digest::of(b"lock").hex());
        assert_eq!(
            deps[2]["uri"],
            "pkg:generic/rustc@1.85.0?target=x86_64-unknown-linux-musl"
        );
        assert_eq!(p["runDetails"]["builder"]["id"], DEFAULT_BUILDER_ID);
        // The same build, the same bytes.
        assert_eq!(
            s.to_json(),
            statement(vec![Subject::new("hello", &Digest::of(b"m"))], &sample()).to_json()
        );
    }

    #[test]
    fn the_workspace_s_own_commit_is_found() {
        let memo = tempfile::tempdir().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        if let Some(source) = git_source(&root, memo.path()) {
            assert_eq!(source.commit.len(), 40);
        }
        let none = tempfile::tempdir().unwrap();
        assert!(git_source(none.path(), memo.path()).is_none());
    }

    /// Where the files read do not say everything git reads, nothing is
    /// kept: refs in a reftable, a `.git` file that names no git dir.
    #[test]
    fn refs_that_are_not_files_are_not_stamped() {
        let repo = tempfile::tempdir().unwrap();
        let git = repo.path().join(".git");
        std::fs::create_dir_all(git.join("reftable")).unwrap();
        std::fs::write(git.join("HEAD"), "ref: refs/heads/.invalid\n").unwrap();
        assert!(matches!(git_stamp(repo.path()), GitStamp::Unknown));
        std::fs::remove_dir_all(git.join("reftable")).unwrap();
        assert!(matches!(git_stamp(repo.path()), GitStamp::Files(_)));

        let linked = tempfile::tempdir().unwrap();
        std::fs::write(linked.path().join(".git"), "not a gitdir line\n").unwrap();
        assert!(matches!(git_stamp(linked.path()), GitStamp::Unknown));
        let none = tempfile::tempdir().unwrap();
        if !std::env::temp_dir()
            .ancestors()
            .any(|d| d.join(".git").exists())
        {
            assert!(matches!(git_stamp(none.path()), GitStamp::NoRepository));
        }
    }

    /// git's answer is kept until a commit, a checkout or the remote changes.
    #[test]
    fn git_is_asked_again_after_a_commit_or_a_new_remote() {
        let repo = tempfile::tempdir().unwrap();
        let memo = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let out = Command::new("git")
                .args([
                    "-c",
                    "user.name=t",
                    "-c",
                    "user.email=t@t",
                    "-c",
                    "commit.gpgsign=false",
                ])
                .args(args)
                .current_dir(repo.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "git {args:?}: {out:?}");
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        git(&["init", "-q", "-b", "main"]);
        assert!(
            git_source(repo.path(), memo.path()).is_none(),
            "no commit yet"
        );
        git(&["commit", "-q", "--allow-empty", "-m", "one"]);
        let first = git_source(repo.path(), memo.path()).unwrap();
        assert_eq!(first.commit, git(&["rev-parse", "HEAD"]));
        assert_eq!(first.uri, None);
        git(&["commit", "-q", "--allow-empty", "-m", "two"]);
        let second = git_source(repo.path(), memo.path()).unwrap();
        assert_eq!(second.commit, git(&["rev-parse", "HEAD"]));
        assert_ne!(second.commit, first.commit);
        git(&["remote", "add", "origin", "https://example.invalid/r.git"]);
        let third = git_source(repo.path(), memo.path()).unwrap();
        assert_eq!(third.uri.as_deref(), Some("https://example.invalid/r.git"));
        git(&["pack-refs", "--all"]);
        git(&["checkout", "-q", "--detach", &first.commit]);
        assert_eq!(
            git_source(repo.path(), memo.path()).unwrap().commit,
            first.commit
        );
        git(&["checkout", "-q", "main"]);
        assert_eq!(
            git_source(repo.path(), memo.path()).unwrap().commit,
            second.commit
        );
        // With nothing changed the record answers, not git: a record edited
        // under its own stamp is what comes back.
        let record = memo.path().join("git-source");
        let text = std::fs::read_to_string(&record).unwrap();
        let mut edited: serde_json::Value = serde_json::from_str(&text).unwrap();
        edited["value"]["commit"] = "feed".into();
        std::fs::write(&record, edited.to_string()).unwrap();
        assert_eq!(git_source(repo.path(), memo.path()).unwrap().commit, "feed");
    }
}

//! What git says about the workspace's checkout: the files it tracks (for
//! action keys), the last commit's time (for `source-date-epoch = "git"`),
//! HEAD's commit, branch and tags and the origin (for provenance, tag
//! templates and the images' source annotations), and whether tracked files
//! have changes not committed. Every answer but the first two is kept
//! between runs under a stamp of the files git reads for it, so a run where
//! none of them changed starts no git.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::{Env, answers};

/// The files git tracks under `root`, relative to it; `None` when `root`
/// is not in a git work tree (or git is not installed).
pub fn ls_files(root: &Path) -> Option<Vec<String>> {
    let out = Command::new("git")
        .args(["ls-files", "-z", "--cached", "--", "."])
        .current_dir(root)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut files: Vec<String> = out
        .stdout
        .split(|b| *b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    files.sort();
    files.dedup();
    Some(files)
}

#[derive(Debug, thiserror::Error)]
pub enum CommitTimeError {
    /// The message says what went wrong, so it is not also a source.
    #[error("running `git log` in {}: {error}", root.display())]
    Spawn {
        root: PathBuf,
        error: std::io::Error,
    },
    #[error("`git log -1 --format=%ct` in {} found no commit: {stderr}", root.display())]
    NoCommit { root: PathBuf, stderr: String },
    #[error("`git log` printed `{0}`, not a time")]
    NotATime(String),
}

/// The committer time of the last commit of the checkout `root` is in.
pub fn last_commit_time(root: &Path) -> Result<u64, CommitTimeError> {
    let out = Command::new("git")
        .args(["log", "-1", "--format=%ct"])
        .current_dir(root)
        .output()
        .map_err(|error| CommitTimeError::Spawn {
            root: root.to_owned(),
            error,
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.trim().is_empty() {
        return Err(CommitTimeError::NoCommit {
            root: root.to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    text.trim()
        .parse::<u64>()
        .map_err(|_| CommitTimeError::NotATime(text.trim().to_owned()))
}

/// The commit the workspace was checked out at, as provenance records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GitSource {
    /// The `origin` remote, when there is one.
    pub uri: Option<String>,
    pub commit: String,
}

/// HEAD: its commit, the branch it is on, and the `origin` remote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Head {
    pub commit: String,
    /// `None` when HEAD is detached.
    pub branch: Option<String>,
    /// The `origin` remote as git has it, credentials and all.
    pub origin: Option<String>,
}

impl From<&Head> for GitSource {
    fn from(head: &Head) -> GitSource {
        GitSource {
            uri: head.origin.clone(),
            commit: head.commit.clone(),
        }
    }
}

/// The checkout a run builds from. Each fact is asked on first use (of
/// git, or of the record an earlier run kept) and then kept for the run, so
/// provenance, tag templates and annotations share one answer, and a run
/// that needs none asks nothing.
pub struct Checkout {
    env: Env,
    root: PathBuf,
    answers: PathBuf,
    head: OnceLock<Option<Head>>,
    tags: OnceLock<Vec<String>>,
    dirty: OnceLock<Option<bool>>,
}

impl Checkout {
    /// The checkout `root` is in; answers are kept in `answers_dir`.
    pub fn new(env: &Env, root: &Path, answers_dir: &Path) -> Checkout {
        Checkout {
            env: env.clone(),
            root: root.to_owned(),
            answers: answers_dir.to_owned(),
            head: OnceLock::new(),
            tags: OnceLock::new(),
            dirty: OnceLock::new(),
        }
    }

    /// HEAD, when the workspace is a git checkout with a commit (a source
    /// tarball has none).
    pub fn head(&self) -> Option<&Head> {
        self.head
            .get_or_init(|| head(&self.env, &self.root, &self.answers))
            .as_ref()
    }

    /// The tags that point at HEAD, the highest version first.
    pub fn tags_at_head(&self) -> &[String] {
        self.tags
            .get_or_init(|| tags_at_head(&self.env, &self.root, &self.answers))
    }

    /// Whether files git tracks in the workspace differ from HEAD (untracked
    /// files, which no build key covers either, do not count); `None`
    /// outside a git checkout.
    pub fn dirty(&self) -> Option<bool> {
        *self
            .dirty
            .get_or_init(|| dirty(&self.env, &self.root, &self.answers))
    }
}

/// HEAD of the checkout `workspace_root` is in. git's answer is kept in
/// `answers_dir` under a stamp of the files it reads (HEAD, the branch's
/// ref, packed refs, the repository's and the user's config), so it is asked
/// again only after a commit, a checkout or a change of remote.
fn head(env: &Env, workspace_root: &Path, answers_dir: &Path) -> Option<Head> {
    let stamp = match stamp(env, workspace_root) {
        Stamp::NoRepository => return None,
        Stamp::Unknown => None,
        Stamp::Files { text, .. } => Some(text),
    };
    answers::remembered(&answers_dir.join("git-head"), stamp.as_deref(), || {
        ask_head(workspace_root).ok_or(())
    })
    .ok()
}

/// Runs `git -C root ARGS` and gives its trimmed output when it succeeded
/// and printed something.
fn git_output(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn ask_head(workspace_root: &Path) -> Option<Head> {
    let commit = git_output(workspace_root, &["rev-parse", "--verify", "HEAD"])?;
    Some(Head {
        branch: git_output(
            workspace_root,
            &["symbolic-ref", "--quiet", "--short", "HEAD"],
        ),
        origin: git_output(workspace_root, &["remote", "get-url", "origin"]),
        commit,
    })
}

/// The tags pointing at HEAD, kept under the stamp of [`head`] and every
/// loose tag ref (a new tag writes one; packed ones are in the stamp).
fn tags_at_head(env: &Env, root: &Path, answers_dir: &Path) -> Vec<String> {
    let stamp = match stamp(env, root) {
        Stamp::NoRepository => return Vec::new(),
        Stamp::Unknown => None,
        Stamp::Files {
            mut text, common, ..
        } => {
            let mut refs = Vec::new();
            list_files(&common.join("refs/tags"), &mut refs);
            refs.sort();
            for r in refs {
                let digest = std::fs::read(&r)
                    .map(|b| crate::digest::Digest::of(&b).to_string())
                    .unwrap_or_default();
                text.push_str(&format!("{} {digest}\n", r.display()));
            }
            Some(text)
        }
    };
    answers::remembered(&answers_dir.join("git-tags"), stamp.as_deref(), || {
        let listed = git_output(
            root,
            &["tag", "--points-at", "HEAD", "--sort=-version:refname"],
        )
        .unwrap_or_default();
        Ok::<_, ()>(listed.lines().map(str::to_owned).collect::<Vec<_>>())
    })
    .unwrap_or_default()
}

/// Every file under `dir`, recursively.
fn list_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => list_files(&path, out),
            Ok(_) => out.push(path),
            Err(_) => {}
        }
    }
}

/// Whether tracked files under `root` differ from HEAD. The answer is kept
/// under the stamp of [`head`], the index's bytes and the stamp (inode,
/// size, times) of every tracked file, which git itself compares before it
/// reads a file; so a run that changed nothing starts no git. git is asked
/// without optional locks, so asking does not rewrite the index and spoil
/// the stamp just taken.
fn dirty(env: &Env, root: &Path, answers_dir: &Path) -> Option<bool> {
    let (text, git_dir) = match stamp(env, root) {
        Stamp::NoRepository => return None,
        Stamp::Unknown => return ask_dirty(root),
        Stamp::Files { text, git_dir, .. } => (text, git_dir),
    };
    let index = std::fs::read(git_dir.join("index"))
        .map(|b| crate::digest::Digest::of(&b).to_string())
        .unwrap_or_default();
    let listed = format!("{text}index {index}\n");
    let tracked: Vec<String> =
        answers::remembered(&answers_dir.join("git-tracked"), Some(&listed), || {
            ls_files(root).ok_or(())
        })
        .ok()?;
    let mut files = listed;
    for f in &tracked {
        let path = root.join(f);
        files.push_str(&answers::file_stamp(&path).unwrap_or_else(|| format!("{f} missing")));
        files.push('\n');
    }
    answers::remembered(&answers_dir.join("git-dirty"), Some(&files), || {
        ask_dirty(root).ok_or(())
    })
    .ok()
}

fn ask_dirty(root: &Path) -> Option<bool> {
    let out = Command::new("git")
        .args([
            "--no-optional-locks",
            "status",
            "--porcelain",
            "-z",
            "--untracked-files=no",
            "--",
            ".",
        ])
        .current_dir(root)
        .output()
        .ok()?;
    out.status.success().then_some(!out.stdout.is_empty())
}

enum Stamp {
    /// No `.git` above the workspace, and nothing in the environment points
    /// git elsewhere: there is no commit to find.
    NoRepository,
    /// git's answer may depend on more than the files read here.
    Unknown,
    Files {
        text: String,
        /// The repository's git directory (a linked worktree's own).
        git_dir: PathBuf,
        /// The directory refs are shared in.
        common: PathBuf,
    },
}

/// The files `git rev-parse HEAD` and `git remote get-url origin` read, for
/// the repository around `dir`.
fn stamp(env: &Env, dir: &Path) -> Stamp {
    // Variables that point git at another repository or other config make
    // the files below the wrong ones; the others (`GIT_SSL_CAINFO`, ...) go
    // into the stamp.
    let vars: Vec<(String, String)> = env
        .with_prefix("GIT_")
        .map(|(k, v)| (k.to_owned(), v.to_string_lossy().into_owned()))
        .collect();
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
        return Stamp::Unknown;
    }
    let Some(dot_git) = dir.ancestors().map(|d| d.join(".git")).find(|g| g.exists()) else {
        return Stamp::NoRepository;
    };
    // A linked worktree or submodule has a `.git` file naming its git dir.
    let git_dir = if dot_git.is_dir() {
        dot_git.clone()
    } else {
        let Some(target) = std::fs::read_to_string(&dot_git)
            .ok()
            .and_then(|t| t.strip_prefix("gitdir:").map(|p| p.trim().to_owned()))
        else {
            return Stamp::Unknown;
        };
        dot_git.parent().unwrap_or(dir).join(target)
    };
    let common = match std::fs::read_to_string(git_dir.join("commondir")) {
        Ok(c) => git_dir.join(c.trim()),
        Err(_) => git_dir.clone(),
    };
    // Refs kept in a reftable are not files of their own to stamp.
    if common.join("reftable").exists() || git_dir.join("reftable").exists() {
        return Stamp::Unknown;
    }
    let home = env.home();
    let xdg = env
        .var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".config")));
    let mut files = vec![
        common.join("packed-refs"),
        common.join("config"),
        git_dir.join("config.worktree"),
        PathBuf::from("/etc/gitconfig"),
    ];
    files.extend(home.map(|h| h.join(".gitconfig")));
    files.extend(xdg.map(|x| x.join("git/config")));
    let head = std::fs::read_to_string(git_dir.join("HEAD")).unwrap_or_default();
    if let Some(branch) = head.strip_prefix("ref:") {
        let branch = branch.trim();
        if branch.split('/').any(|c| c.is_empty() || c == "..") {
            return Stamp::Unknown;
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
                    return Stamp::Unknown;
                }
                crate::digest::Digest::of(&text).to_string()
            }
            Err(_) => "missing".to_owned(),
        };
        stamp.push_str(&format!("{} {digest}\n", f.display()));
    }
    Stamp::Files {
        text: stamp,
        git_dir,
        common,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env::from_process()
    }

    #[test]
    fn the_workspace_s_own_commit_is_found() {
        let answers = tempfile::tempdir().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        if let Some(head) = head(&env(), &root, answers.path()) {
            assert_eq!(head.commit.len(), 40);
        }
        let none = tempfile::tempdir().unwrap();
        assert!(head(&env(), none.path(), answers.path()).is_none());
    }

    /// Where the files read do not say everything git reads, nothing is
    /// kept: refs in a reftable, a `.git` file that names no git dir, a
    /// variable that points git elsewhere.
    #[test]
    fn refs_that_are_not_files_are_not_stamped() {
        let repo = tempfile::tempdir().unwrap();
        let git = repo.path().join(".git");
        std::fs::create_dir_all(git.join("reftable")).unwrap();
        std::fs::write(git.join("HEAD"), "ref: refs/heads/.invalid\n").unwrap();
        assert!(matches!(stamp(&env(), repo.path()), Stamp::Unknown));
        std::fs::remove_dir_all(git.join("reftable")).unwrap();
        assert!(matches!(stamp(&env(), repo.path()), Stamp::Files { .. }));
        let elsewhere = Env::from_vars([("GIT_DIR", "/elsewhere")]);
        assert!(matches!(stamp(&elsewhere, repo.path()), Stamp::Unknown));

        let linked = tempfile::tempdir().unwrap();
        std::fs::write(linked.path().join(".git"), "not a gitdir line\n").unwrap();
        assert!(matches!(stamp(&env(), linked.path()), Stamp::Unknown));
        let none = tempfile::tempdir().unwrap();
        if !std::env::temp_dir()
            .ancestors()
            .any(|d| d.join(".git").exists())
        {
            assert!(matches!(
                stamp(&Env::default(), none.path()),
                Stamp::NoRepository
            ));
        }
    }

    /// git's answer is kept until a commit, a checkout or the remote changes.
    #[test]
    fn git_is_asked_again_after_a_commit_or_a_new_remote() {
        let repo = tempfile::tempdir().unwrap();
        let answers = tempfile::tempdir().unwrap();
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
        let asked = |root: &Path| head(&env(), root, answers.path());
        git(&["init", "-q", "-b", "main"]);
        assert!(asked(repo.path()).is_none(), "no commit yet");
        git(&["commit", "-q", "--allow-empty", "-m", "one"]);
        let first = asked(repo.path()).unwrap();
        assert_eq!(first.commit, git(&["rev-parse", "HEAD"]));
        assert_eq!(first.origin, None);
        assert_eq!(first.branch.as_deref(), Some("main"));
        git(&["commit", "-q", "--allow-empty", "-m", "two"]);
        let second = asked(repo.path()).unwrap();
        assert_eq!(second.commit, git(&["rev-parse", "HEAD"]));
        assert_ne!(second.commit, first.commit);
        git(&["remote", "add", "origin", "https://example.invalid/r.git"]);
        let third = asked(repo.path()).unwrap();
        assert_eq!(
            third.origin.as_deref(),
            Some("https://example.invalid/r.git")
        );
        git(&["pack-refs", "--all"]);
        git(&["checkout", "-q", "--detach", &first.commit]);
        let detached = asked(repo.path()).unwrap();
        assert_eq!(detached.commit, first.commit);
        assert_eq!(detached.branch, None);
        git(&["checkout", "-q", "main"]);
        assert_eq!(asked(repo.path()).unwrap().commit, second.commit);
        // With nothing changed the record answers, not git: a record edited
        // under its own stamp is what comes back.
        let record = answers.path().join("git-head");
        let text = std::fs::read_to_string(&record).unwrap();
        let mut edited: serde_json::Value = serde_json::from_str(&text).unwrap();
        edited["value"]["commit"] = "feed".into();
        std::fs::write(&record, edited.to_string()).unwrap();
        assert_eq!(asked(repo.path()).unwrap().commit, "feed");
    }

    /// Tags on HEAD and uncommitted changes are seen as soon as they are
    /// made, and kept while nothing changes.
    #[test]
    fn tags_and_changes_are_seen_and_kept() {
        let repo = tempfile::tempdir().unwrap();
        let answers = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let out = Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@t"])
                .args(args)
                .current_dir(repo.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "git {args:?}: {out:?}");
        };
        git(&["init", "-q", "-b", "main"]);
        std::fs::write(repo.path().join("a.txt"), "one\n").unwrap();
        std::fs::write(repo.path().join("untracked.txt"), "x\n").unwrap();
        git(&["add", "a.txt"]);
        git(&["commit", "-q", "-m", "one"]);
        let check = || {
            let c = Checkout::new(&env(), repo.path(), answers.path());
            (c.tags_at_head().to_vec(), c.dirty())
        };
        assert_eq!(
            check(),
            (vec![], Some(false)),
            "untracked files do not count"
        );
        git(&["tag", "v1.0.0"]);
        git(&["tag", "-a", "-m", "r", "v1.10.0"]);
        assert_eq!(
            check(),
            (vec!["v1.10.0".to_owned(), "v1.0.0".to_owned()], Some(false))
        );
        std::fs::write(repo.path().join("a.txt"), "two\n").unwrap();
        assert_eq!(check().1, Some(true));
        assert_eq!(check().1, Some(true));
        std::fs::write(repo.path().join("a.txt"), "one\n").unwrap();
        assert_eq!(check().1, Some(false));
        git(&["rm", "-q", "--cached", "a.txt"]);
        assert_eq!(check().1, Some(true), "a staged removal is a change");
        let none = tempfile::tempdir().unwrap();
        if !std::env::temp_dir()
            .ancestors()
            .any(|d| d.join(".git").exists())
        {
            let c = Checkout::new(&Env::default(), none.path(), answers.path());
            assert_eq!(c.dirty(), None);
            assert!(c.head().is_none());
        }
    }
}

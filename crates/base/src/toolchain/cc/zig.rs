//! Where zig comes from, in order: `SCRATCHPACK_ZIG` (a path the caller
//! chose), a `zig` on `PATH` of 0.15 or later (the first release whose
//! musl, 1.2.5, is the one Rust's musl targets link), else the pinned
//! release of PyPI's `ziglang` package, installed into the user's cache
//! the first time a build compiles C, through `python3 -m pip` with the
//! wheels' hashes pinned.

use std::path::{Path, PathBuf};

use super::pypi::{self, Wheel};
use crate::shell::Shell;
use crate::toolchain::{Env, answers};

/// The release installed when no zig is found.
pub const PINNED: &str = "0.15.2";

/// The oldest zig taken from `PATH`: older ones carry an older musl.
const MINIMUM: (u64, u64) = (0, 15);

/// PyPI's `ziglang` release, with the sha256 of its wheels for Linux x86_64
/// and aarch64 (manylinux and musllinux alike), macOS arm64 and x86_64.
const WHEEL: Wheel = Wheel {
    package: "ziglang",
    version: PINNED,
    sha256: &[
        "806316453d1ede7174ed3fefb8e5348154629089c3bb5fe812dfd0e172fac130",
        "edc0aa60ec964a4cf462d40f68d7de242ddf37fd9a80f2afaee6397059463230",
        "acae2a9ce67ed249ad68d42c21bc73b5f9d51a33ba5ea42f609f78683e8d9bb7",
        "47af4f85e3e59bd672126cc026d3a01b516cad24b9a9ea075abfe8532f4c6bc1",
    ],
};

/// What to do when no zig can be had, said after every error below.
const HELP: &str = "help: crates of these images compile C, which scratchpack compiles with zig: \
     put zig 0.15 or later on PATH, or install python3 with pip (Debian: apt-get install \
     python3-pip) so scratchpack can install zig itself, or set SCRATCHPACK_ZIG to a zig; \
     to use a C compiler of your own, set CC_<triple> and CXX_<triple> for each target, or \
     `c-compiler = \"none\"` in [defaults] of images.toml";

#[derive(Debug, thiserror::Error)]
pub enum ZigError {
    #[error("SCRATCHPACK_ZIG names {path}, which does not answer `zig env`: {message}\n{HELP}")]
    Named { path: PathBuf, message: String },
    #[error(
        "no zig was found, and there is no cache directory to install one into (neither XDG_CACHE_HOME nor HOME is set)\n{HELP}"
    )]
    NoCache,
    #[error(
        "installing zig {PINNED} from PyPI's ziglang package into {dir} failed: {message}\n{HELP}"
    )]
    Install { dir: PathBuf, message: String },
}

/// Where the zig in use came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `SCRATCHPACK_ZIG`.
    Named,
    /// A `zig` on `PATH`.
    Path,
    /// The pinned release in the user's cache, installed or not yet.
    Pinned {
        /// `<cache>/zig/<version>`, which holds `ziglang/zig`.
        dir: PathBuf,
        /// Why a zig on `PATH` was passed over, for the notice.
        passed_over: Option<String>,
    },
}

/// A zig: its program, version and library directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zig {
    pub program: PathBuf,
    pub version: String,
    /// `lib/` beside the program: headers, libc and libc++ sources.
    pub lib_dir: PathBuf,
    pub origin: Origin,
}

impl Zig {
    /// The zig image builds use, found without installing anything (the
    /// pinned release's paths and version are known before it is). What a
    /// zig of `SCRATCHPACK_ZIG` or `PATH` says of itself is kept in
    /// `memo_dir` under a stamp of its program, so a run asks it once.
    pub fn find(env: &Env, memo_dir: &Path) -> Result<Zig, ZigError> {
        if let Some(named) = env.var_os("SCRATCHPACK_ZIG").filter(|p| !p.is_empty()) {
            // The wrappers run it from wherever a build script runs.
            let path = std::fs::canonicalize(named).unwrap_or_else(|_| PathBuf::from(named));
            let (version, lib_dir) =
                describe(&path, memo_dir).map_err(|message| ZigError::Named {
                    path: path.clone(),
                    message,
                })?;
            return Ok(Zig {
                program: path,
                version,
                lib_dir,
                origin: Origin::Named,
            });
        }
        let mut passed_over = None;
        if let Some(path) = env.on_path("zig") {
            match describe(&path, memo_dir) {
                Ok((version, lib_dir)) if at_least(&version, MINIMUM) => {
                    return Ok(Zig {
                        program: path,
                        version,
                        lib_dir,
                        origin: Origin::Path,
                    });
                }
                Ok((version, _)) => {
                    passed_over = Some(format!(
                        "{} is zig {version}, older than {}.{}",
                        path.display(),
                        MINIMUM.0,
                        MINIMUM.1
                    ));
                }
                Err(e) => passed_over = Some(format!("{}: {e}", path.display())),
            }
        }
        let dir = env
            .user_cache_dir()
            .ok_or(ZigError::NoCache)?
            .join("zig")
            .join(PINNED);
        let package = dir.join("ziglang");
        Ok(Zig {
            program: package.join("zig"),
            version: PINNED.to_owned(),
            lib_dir: package.join("lib"),
            origin: Origin::Pinned { dir, passed_over },
        })
    }

    /// What action keys record of it: the version, which changes the bytes
    /// C compiles to, and the rules of the wrappers that run it.
    pub fn key(&self) -> String {
        format!("zig {} (wrappers {})", self.version, super::WRAPPER_VERSION)
    }

    /// Where zig keeps its own builds (libc++ for each target) for every
    /// workspace of the user, per zig version.
    pub fn global_cache(&self, env: &Env) -> Option<PathBuf> {
        Some(
            env.user_cache_dir()?
                .join("zig")
                .join(format!("{}-cache", self.version)),
        )
    }

    /// Makes sure the program is there: installs the pinned release into
    /// the user's cache when that is the one and it is not yet installed.
    pub fn install(&self, env: &Env, shell: Shell) -> Result<(), ZigError> {
        let Origin::Pinned { dir, passed_over } = &self.origin else {
            return Ok(());
        };
        let why = passed_over
            .as_ref()
            .map(|p| format!(" ({p})"))
            .unwrap_or_default();
        let announce = || {
            shell.status(
                "Installing",
                format!(
                    "zig {PINNED}, the C compiler of crates that compile C, from PyPI \
                     (python3 -m pip install ziglang=={PINNED}) into {}{why}",
                    dir.display()
                ),
            )
        };
        let check = |program: &Path| match describe_now(program) {
            Ok((version, _)) if version == PINNED => Ok(()),
            Ok((version, _)) => Err(format!("pip installed zig {version}, not {PINNED}")),
            Err(e) => Err(format!("the installed zig does not run: {e}")),
        };
        let program = Path::new("ziglang").join("zig");
        pypi::install(&WHEEL, env, dir, &program, announce, check).map_err(|message| {
            ZigError::Install {
                dir: dir.clone(),
                message,
            }
        })
    }
}

/// The version and library directory `zig env` gives for `program`, kept
/// in `memo_dir` under a stamp of the program.
fn describe(program: &Path, memo_dir: &Path) -> Result<(String, PathBuf), String> {
    let resolved =
        std::fs::canonicalize(program).map_err(|e| format!("{}: {e}", program.display()))?;
    let stamp = answers::file_stamp(&resolved);
    answers::remembered(&memo_dir.join("zig-env"), stamp.as_deref(), || {
        describe_now(program)
    })
}

fn describe_now(program: &Path) -> Result<(String, PathBuf), String> {
    parse_env(&super::answer(program, "env")?)
        .ok_or_else(|| "its answer names no version and library directory".to_owned())
}

/// `version` and `lib_dir` of `zig env`: ZON (`.version = "…"`) from 0.15,
/// JSON (`"version": "…"`) before.
fn parse_env(text: &str) -> Option<(String, PathBuf)> {
    let field = |name: &str| {
        let pattern = format!(r#"["\.]{name}"?\s*[=:]\s*"((?:[^"\\]|\\.)*)""#);
        let re = regex_lite::Regex::new(&pattern).expect("a valid pattern");
        let raw = re.captures(text)?.get(1)?.as_str();
        Some(
            raw.replace("\\\\", "\u{0}")
                .replace("\\\"", "\"")
                .replace('\u{0}', "\\"),
        )
    };
    Some((field("version")?, PathBuf::from(field("lib_dir")?)))
}

/// Whether a version (`0.15.2`, `0.16.0-dev.1+abc`) is `minimum` or later.
fn at_least(version: &str, minimum: (u64, u64)) -> bool {
    let mut parts = version
        .split(['.', '-', '+'])
        .map(|p| p.parse::<u64>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= minimum,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zig_env_is_read_in_both_formats() {
        let zon = r#".{
    .zig_exe = "/opt/zig/zig",
    .lib_dir = "/opt/my \"zig\"/lib",
    .version = "0.15.2",
}"#;
        assert_eq!(
            parse_env(zon),
            Some(("0.15.2".into(), PathBuf::from("/opt/my \"zig\"/lib")))
        );
        let json =
            r#"{"zig_exe":"/z/zig","lib_dir":"/z/lib","std_dir":"/z/lib/std","version":"0.13.0"}"#;
        assert_eq!(parse_env(json), Some(("0.13.0".into(), "/z/lib".into())));
        assert_eq!(parse_env("nothing here"), None);
    }

    use std::os::unix::fs::PermissionsExt as _;

    /// An executable script at `path`.
    fn script(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// A stand-in for zig that answers `zig env` as zig `version` would.
    fn fake_zig(path: &Path, version: &str) {
        script(
            path,
            &format!(
                "#!/bin/sh\n[ \"$1\" = env ] || exit 1\n\
                 printf '.{{\\n    .lib_dir = \"%s/lib\",\\n    .version = \"{version}\",\\n}}\\n' \"$(dirname \"$0\")\"\n"
            ),
        );
    }

    fn env(vars: &[(&str, &Path)]) -> Env {
        Env::from_vars(vars.iter().map(|(k, v)| (*k, v.as_os_str())))
    }

    #[test]
    fn the_named_zig_then_one_on_path_of_0_15_or_later_then_the_pinned_one() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let memo = d.join("memo");
        fake_zig(&d.join("old/zig"), "0.13.0");
        fake_zig(&d.join("new/zig"), "0.16.0-dev.7+abc");
        let cache = d.join("cache");
        // An old zig on PATH is passed over for the pinned release, and the
        // notice says why.
        let found = Zig::find(
            &env(&[("PATH", &d.join("old")), ("XDG_CACHE_HOME", &cache)]),
            &memo,
        )
        .unwrap();
        assert_eq!(found.version, PINNED);
        assert_eq!(
            found.program,
            cache.join("scratchpack/zig/0.15.2/ziglang/zig")
        );
        let Origin::Pinned { passed_over, .. } = &found.origin else {
            panic!("{found:?}");
        };
        assert!(
            passed_over
                .as_deref()
                .unwrap()
                .contains("is zig 0.13.0, older than 0.15"),
            "{passed_over:?}"
        );
        // A new enough one is used.
        let found = Zig::find(
            &env(&[("PATH", &d.join("new")), ("XDG_CACHE_HOME", &cache)]),
            &memo,
        )
        .unwrap();
        assert_eq!(
            (found.origin, found.version.as_str()),
            (Origin::Path, "0.16.0-dev.7+abc")
        );
        assert_eq!(found.lib_dir, d.join("new/lib"));
        // The named one wins over both, whatever its version.
        let named = env(&[
            ("SCRATCHPACK_ZIG", &d.join("old/zig")),
            ("PATH", &d.join("new")),
        ]);
        let found = Zig::find(&named, &memo).unwrap();
        assert_eq!(
            (found.origin, found.version.as_str()),
            (Origin::Named, "0.13.0")
        );
        let broken = env(&[("SCRATCHPACK_ZIG", &d.join("none/zig"))]);
        let e = Zig::find(&broken, &memo).unwrap_err().to_string();
        assert!(
            e.contains("SCRATCHPACK_ZIG names") && e.contains("help:"),
            "{e}"
        );
        // No zig and no home: nowhere to install one.
        assert!(matches!(
            Zig::find(&Env::default(), &memo),
            Err(ZigError::NoCache)
        ));
    }

    #[test]
    fn the_pinned_release_is_installed_once_through_pip_with_its_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A stand-in for python3 -m pip: it logs its arguments and the
        // requirements, and installs a zig into --target, slowly, so that
        // two installs at once overlap.
        script(
            &d.join("bin/python3"),
            &format!(
                "#!/bin/sh\nlog='{log}'\necho \"$*\" >> \"$log/args\"\n\
                 while [ $# -gt 0 ]; do case $1 in --target) t=$2; shift;; -r) cp \"$2\" \"$log/req\"; shift;; esac; shift; done\n\
                 sleep 0.3\nmkdir -p \"$t/ziglang\"\ncp '{zig}' \"$t/ziglang/zig\"\n",
                log = d.display(),
                zig = d.join("template/zig").display(),
            ),
        );
        fake_zig(&d.join("template/zig"), PINNED);
        let vars = env(&[
            ("PATH", &d.join("bin")),
            ("XDG_CACHE_HOME", &d.join("cache")),
        ]);
        let zig = Zig::find(&vars, &d.join("memo")).unwrap();
        assert!(!zig.program.exists());
        // What an install stopped midway left is cleared by the next one.
        std::fs::create_dir_all(d.join("cache/scratchpack/zig/.0.15.2-stopped/package")).unwrap();
        std::thread::scope(|s| {
            let a = s.spawn(|| zig.install(&vars, Shell::new(true)));
            let b = s.spawn(|| zig.install(&vars, Shell::new(true)));
            a.join().unwrap().unwrap();
            b.join().unwrap().unwrap();
        });
        assert!(zig.program.is_file());
        let args = std::fs::read_to_string(d.join("args")).unwrap();
        assert_eq!(args.lines().count(), 1, "pip ran once: {args}");
        for a in [
            "-m pip install",
            "--require-hashes",
            "--no-deps",
            "--only-binary=:all:",
        ] {
            assert!(args.contains(a), "{a}: {args}");
        }
        let req = std::fs::read_to_string(d.join("req")).unwrap();
        assert!(req.starts_with("ziglang==0.15.2 "), "{req}");
        for h in WHEEL.sha256 {
            assert!(req.contains(&format!("--hash=sha256:{h}")), "{req}");
        }
        // Installed, it is found and used as it is.
        zig.install(&vars, Shell::new(true)).unwrap();
        assert_eq!(std::fs::read_to_string(d.join("args")).unwrap(), args);
        // Nothing but the installation is left in the cache.
        let mut left: Vec<String> = std::fs::read_dir(d.join("cache/scratchpack/zig"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [".0.15.2.lock", "0.15.2"]);
    }

    #[test]
    fn without_python3_the_error_says_what_to_install() {
        let dir = tempfile::tempdir().unwrap();
        let vars = env(&[("PATH", dir.path()), ("HOME", dir.path())]);
        let zig = Zig::find(&vars, &dir.path().join("memo")).unwrap();
        let e = zig
            .install(&vars, Shell::new(true))
            .unwrap_err()
            .to_string();
        for words in [
            "installing zig 0.15.2 from PyPI's ziglang package",
            "python3 was not found on PATH",
            "apt-get install python3-pip",
            "SCRATCHPACK_ZIG",
            "CC_<triple>",
        ] {
            assert!(e.contains(words), "{words}: {e}");
        }
    }

    #[test]
    fn only_zig_0_15_or_later_is_taken_from_path() {
        assert!(at_least("0.15.2", MINIMUM));
        assert!(at_least("0.16.0-dev.1234+abcdef", MINIMUM));
        assert!(at_least("1.0.0", MINIMUM));
        assert!(!at_least("0.14.1", MINIMUM));
        assert!(!at_least("0.9.0", MINIMUM));
        assert!(!at_least("garbage", MINIMUM));
    }
}

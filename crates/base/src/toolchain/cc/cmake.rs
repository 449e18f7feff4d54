//! cmake, for crates whose build scripts run it through the `cmake` crate
//! (zlib-ng, BoringSSL, gRPC, snmalloc…). The caller's is used when there
//! is one (`CMAKE` names it, or `cmake` is on `PATH`); else a pinned
//! release of PyPI's `cmake` package, with `ninja` from PyPI as its build
//! tool so no `make` is needed either. That one is installed into the
//! user's cache the first time a build script runs it, through a script
//! `CMAKE` names ([`run_if_requested`]): a crate that only lists the
//! `cmake` crate (aws-lc-sys builds with cc unless asked) installs nothing.
//! cmake 3.31 is the last release that still configures projects declaring
//! a `cmake_minimum_required` below 3.5, which many vendored C libraries do.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::pypi::{self, Wheel};
use crate::shell::Shell;
use crate::toolchain::{Env, answers};

/// The first argument of this program when a build script runs it as
/// scratchpack's cmake.
pub const SHIM_MARKER: &str = "--scratchpack-cmake";

/// The cmake release installed when the machine has none.
pub const PINNED: &str = "3.31.10";
/// The ninja release installed beside it.
pub const NINJA: &str = "1.13.0";

/// PyPI's `cmake` release, with the sha256 of its wheels: Linux x86_64 and
/// aarch64 (manylinux and musllinux), macOS (universal2).
const CMAKE_WHEEL: Wheel = Wheel {
    package: "cmake",
    version: PINNED,
    sha256: &[
        "2f766bb46367e5e0559fa33184653754bce044583a06014dcaebf8e6dff8a1f1",
        "a4a5615f31f692c9b9aa8b365704e4b76172348af6fa40e16fea3f118bb01194",
        "678fc23db37cc69f01e18eb28790450ecc9401fd2fcd43364cc18f92330c12c2",
        "c2e5361dea9754ed3b06cf834894fb47dcbe7036d5e5d87acaeb10ff3dd5fd10",
        "ad697643a00d9ba85179590a383c4f7401169b55ebf4b8b2938daf28c6bdeb6d",
    ],
};

/// PyPI's `ninja` release, with the sha256 of its wheels for the same hosts.
const NINJA_WHEEL: Wheel = Wheel {
    package: "ninja",
    version: NINJA,
    sha256: &[
        "fb46acf6b93b8dd0322adc3a4945452a4e774b75b91293bafcc7b7f8e6517dfa",
        "3d00c692fb717fd511abeb44b8c5d00340c36938c12d6538ba989fe764e79630",
        "b4f2a072db3c0f944c32793e91532d8948d20d9ab83da9c0c7c15b5768072200",
        "11be2d22027bde06f14c343f01d31446747dbb51e72d00decca2eb99be911e2f",
        "fa2a8bfc62e31b08f83127d1613d10821775a0eb334197154c4d6067b7068ff1",
    ],
};

/// What to do when no cmake can be had, said after every error below.
const HELP: &str = "help: a crate of these images runs cmake in its build script: put cmake \
     on PATH, or install python3 with pip (Debian: apt-get install python3-pip) so scratchpack \
     can install cmake itself, or set CMAKE to a cmake";

#[derive(Debug, thiserror::Error)]
pub enum CmakeError {
    #[error("CMAKE names {path}, which does not answer `cmake --version`: {message}\n{HELP}")]
    Named { path: PathBuf, message: String },
    #[error(
        "no cmake was found, and there is no cache directory to install one into (neither XDG_CACHE_HOME nor HOME is set)\n{HELP}"
    )]
    NoCache,
    #[error("installing {what} from PyPI's {package} package into {dir} failed: {message}\n{HELP}")]
    Install {
        what: String,
        package: &'static str,
        dir: PathBuf,
        message: String,
    },
}

/// The cmake image builds run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmake {
    /// The caller's: `CMAKE`, or the first `cmake` on `PATH`, with the
    /// version it reports (action keys record it).
    Own { program: PathBuf, version: String },
    /// The pinned releases in the user's cache, installed or not yet: each
    /// directory holds what pip's `--target` made of the wheel.
    Pinned {
        cmake_dir: PathBuf,
        ninja_dir: PathBuf,
    },
}

impl Cmake {
    /// The cmake image builds use, found without installing anything. What
    /// the caller's says of itself is kept in `memo_dir` under a stamp of
    /// its program, so a run asks it once.
    pub fn find(env: &Env, memo_dir: &Path) -> Result<Cmake, CmakeError> {
        // A bare name is looked up on PATH, as the cmake crate runs it.
        let named = env.var_os("CMAKE").filter(|p| !p.is_empty()).map(|p| {
            let p = PathBuf::from(p);
            match p.components().count() {
                1 => env.on_path(&p.to_string_lossy()).unwrap_or(p),
                _ => p,
            }
        });
        let own = named
            .map(|p| (p, true))
            .or_else(|| env.on_path("cmake").map(|p| (p, false)));
        if let Some((program, named)) = own {
            return match version(&program, memo_dir) {
                Ok(version) => Ok(Cmake::Own { program, version }),
                Err(message) if named => Err(CmakeError::Named {
                    path: program,
                    message,
                }),
                // A `cmake` on PATH that does not run is passed over.
                Err(_) => Cmake::pinned(env),
            };
        }
        Cmake::pinned(env)
    }

    fn pinned(env: &Env) -> Result<Cmake, CmakeError> {
        let cache = env.user_cache_dir().ok_or(CmakeError::NoCache)?;
        Ok(Cmake::Pinned {
            cmake_dir: cache.join("cmake").join(PINNED),
            ninja_dir: cache.join("ninja").join(NINJA),
        })
    }

    /// What action keys record of it: its version, whoever's it is.
    pub fn key(&self) -> String {
        match self {
            Cmake::Own { version, .. } => format!("cmake {version}"),
            Cmake::Pinned { .. } => format!("cmake {PINNED}"),
        }
    }

    /// The programs' directories when they are scratchpack's: what the
    /// script `CMAKE` names is given, to install them on first use.
    pub fn pinned_dirs(&self) -> Option<(&Path, &Path)> {
        match self {
            Cmake::Own { .. } => None,
            Cmake::Pinned {
                cmake_dir,
                ninja_dir,
            } => Some((cmake_dir, ninja_dir)),
        }
    }

    /// The variables that point the `cmake` crate at scratchpack's cmake:
    /// `CMAKE` naming `shim`, the script that installs it on first use, and
    /// `CMAKE_GENERATOR=Ninja` unless the caller chose a generator. None
    /// for the caller's cmake, which the crate finds as it always does.
    pub fn variables(&self, env: &Env, shim: &Path) -> Vec<(&'static str, OsString)> {
        let mut vars = Vec::new();
        if matches!(self, Cmake::Pinned { .. }) {
            vars.push(("CMAKE", shim.as_os_str().to_owned()));
            if env.var_os("CMAKE_GENERATOR").is_none() {
                vars.push(("CMAKE_GENERATOR", "Ninja".into()));
            }
        }
        vars
    }

    /// Makes sure the programs are there: installs the pinned releases into
    /// the user's cache when they are the ones and not yet installed.
    pub fn install(&self, env: &Env, shell: Shell) -> Result<(), CmakeError> {
        let Cmake::Pinned {
            cmake_dir,
            ninja_dir,
        } = self
        else {
            return Ok(());
        };
        for (wheel, dir, program, what) in [
            (
                &CMAKE_WHEEL,
                cmake_dir,
                CMAKE_PROGRAM,
                "which a crate's build script runs",
            ),
            (
                &NINJA_WHEEL,
                ninja_dir,
                NINJA_PROGRAM,
                "the build tool scratchpack's cmake runs",
            ),
        ] {
            let announce = || {
                let (package, version) = (wheel.package, wheel.version);
                shell.status(
                    "Installing",
                    format!(
                        "{package} {version}, {what}, from PyPI (python3 -m pip install \
                         {package}=={version}) into {}",
                        dir.display()
                    ),
                )
            };
            let check = |program: &Path| {
                let said = run_version(program)?;
                if said.contains(wheel.version) {
                    Ok(())
                } else {
                    Err(format!("the installed {} says {said:?}", wheel.package))
                }
            };
            pypi::install(wheel, env, dir, Path::new(program), announce, check).map_err(
                |message| CmakeError::Install {
                    what: format!("{} {}", wheel.package, wheel.version),
                    package: wheel.package,
                    dir: dir.clone(),
                    message,
                },
            )?;
        }
        Ok(())
    }
}

/// Becomes scratchpack's cmake when this program was started by the script
/// `CMAKE` names (`<program> SHIM_MARKER <cmake dir> <ninja dir> <args…>`):
/// installs cmake and ninja if they are not yet, and runs cmake with
/// ninja's directory first on its search path; never returns then.
/// Returns otherwise.
pub fn run_if_requested() {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(OsStr::new(SHIM_MARKER)) {
        return;
    }
    let (Some(cmake_dir), Some(ninja_dir)) = (args.next(), args.next()) else {
        eprintln!("error: scratchpack's cmake: expected the cmake and ninja directories");
        std::process::exit(1);
    };
    let (cmake_dir, ninja_dir) = (PathBuf::from(cmake_dir), PathBuf::from(ninja_dir));
    let program = cmake_dir.join(CMAKE_PROGRAM);
    // ninja's directory, first on cmake's search path.
    let ninja = ninja_dir.join(NINJA_PROGRAM);
    let ninja_bin = ninja.parent().expect("ninja is in a directory").to_owned();
    let cmake = Cmake::Pinned {
        cmake_dir,
        ninja_dir,
    };
    if let Err(e) = cmake.install(&Env::from_process(), Shell::new(false)) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    let inherited = std::env::var_os("PATH").unwrap_or_default();
    let path = std::iter::once(ninja_bin).chain(std::env::split_paths(&inherited));
    let error = Command::new(&program)
        .args(args)
        .env("PATH", std::env::join_paths(path).unwrap_or_default())
        .exec();
    eprintln!(
        "error: scratchpack's cmake: running {}: {error}",
        program.display()
    );
    std::process::exit(1);
}

/// Where pip's `--target` puts each program: cmake's own binary (the
/// wheel's `bin/cmake` is a Python launcher), and ninja's.
const CMAKE_PROGRAM: &str = "cmake/data/bin/cmake";
const NINJA_PROGRAM: &str = "bin/ninja";

/// The version a cmake reports (`3.31.10` of `cmake version 3.31.10`),
/// kept in `memo_dir` under a stamp of the program.
fn version(program: &Path, memo_dir: &Path) -> Result<String, String> {
    let resolved =
        std::fs::canonicalize(program).map_err(|e| format!("{}: {e}", program.display()))?;
    let stamp = answers::file_stamp(&resolved);
    answers::remembered(&memo_dir.join("cmake-version"), stamp.as_deref(), || {
        // `cmake version 3.31.10`, or `cmake3 version …` of a renamed one.
        let said = run_version(program)?;
        said.split_once(" version ")
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("it answered {said:?}"))
    })
}

/// The first line `PROGRAM --version` prints.
fn run_version(program: &Path) -> Result<String, String> {
    let said = super::answer(program, "--version")?;
    Ok(said.lines().next().unwrap_or_default().trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    /// A cmake that answers `--version` as `version`, under its own name
    /// (`cmake3 version …` for a `cmake3`).
    fn fake_cmake(path: &Path, version: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            path,
            format!(
                "#!/bin/sh\necho '{} version {version}'\necho\n",
                path.file_name().unwrap().to_string_lossy()
            ),
        )
        .unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn the_callers_cmake_is_used_as_it_is_and_else_the_pinned_one_with_ninja() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let memo = d.join("memo");
        fake_cmake(&d.join("bin/cmake"), "3.28.3");
        fake_cmake(&d.join("bin/cmake3"), "3.31.10");
        fake_cmake(&d.join("named/cmake"), "4.1.0");
        let shim = d.join("shim/cmake");

        // On PATH: its version keys the build, and nothing is set.
        let on_path = Env::from_vars([("PATH", d.join("bin")), ("HOME", d.to_owned())]);
        let found = Cmake::find(&on_path, &memo).unwrap();
        assert_eq!(found.key(), "cmake 3.28.3");
        assert_eq!(found.pinned_dirs(), None);
        assert!(found.variables(&on_path, &shim).is_empty());
        // Named by CMAKE, by path or by a name on PATH.
        for (named, version) in [
            (d.join("named/cmake"), "4.1.0"),
            ("cmake3".into(), "3.31.10"),
        ] {
            let vars = Env::from_vars([
                ("PATH", d.join("bin").into_os_string()),
                ("CMAKE", named.into_os_string()),
            ]);
            let found = Cmake::find(&vars, &memo).unwrap();
            assert_eq!(found.key(), format!("cmake {version}"));
            assert!(found.variables(&vars, &shim).is_empty());
        }
        let broken = Env::from_vars([("CMAKE", d.join("none/cmake"))]);
        let e = Cmake::find(&broken, &memo).unwrap_err().to_string();
        assert!(e.contains("CMAKE names") && e.contains("help:"), "{e}");

        // None: the pinned release and ninja, from the user's cache, run
        // through the script that installs them on first use.
        let none = Env::from_vars([("PATH", d.join("empty")), ("XDG_CACHE_HOME", d.join("c"))]);
        let found = Cmake::find(&none, &memo).unwrap();
        assert_eq!(found.key(), format!("cmake {PINNED}"));
        let cache = d.join("c/scratchpack");
        let (cmake_dir, ninja_dir) = (
            cache.join("cmake").join(PINNED),
            cache.join("ninja").join(NINJA),
        );
        assert_eq!(
            found.pinned_dirs(),
            Some((cmake_dir.as_path(), ninja_dir.as_path()))
        );
        assert_eq!(
            found.variables(&none, &shim),
            [
                ("CMAKE", shim.clone().into_os_string()),
                ("CMAKE_GENERATOR", "Ninja".into())
            ]
        );
        // A generator the caller chose stays.
        let own_generator = Env::from_vars([
            ("XDG_CACHE_HOME", d.join("c").into_os_string()),
            ("CMAKE_GENERATOR", "Unix Makefiles".into()),
        ]);
        assert_eq!(
            found.variables(&own_generator, &shim),
            [("CMAKE", shim.into_os_string())]
        );
        // No cache directory: nowhere to install one.
        assert!(matches!(
            Cmake::find(&Env::default(), &memo),
            Err(CmakeError::NoCache)
        ));
    }
}

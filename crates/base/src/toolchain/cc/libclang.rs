//! libclang, for crates whose build scripts run bindgen (librocksdb-sys,
//! zstd-sys or aws-lc-sys with their `bindgen` feature…): bindgen loads it
//! while the build script runs, and few machines have it (Debian's
//! libclang-dev). The caller's is used when `LIBCLANG_PATH` names it; else
//! a pinned release of PyPI's `libclang` package (one self-contained
//! shared library) is installed into the user's cache before the build,
//! when a package of the images reaches `bindgen` or `clang-sys` in
//! Cargo.lock. bindgen parses against zig's musl headers for the target
//! (`BINDGEN_EXTRA_CLANG_ARGS_<triple>`, see [`super::Wrappers`]), so with
//! the pinned libclang the bindings are the same on every machine.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::pypi::{self, Wheel};
use crate::shell::Shell;
use crate::toolchain::Env;

/// The libclang release installed when the caller names none.
pub const PINNED: &str = "18.1.1";

/// PyPI's `libclang` release, with the sha256 of its wheels: Linux x86_64
/// (manylinux and musllinux) and aarch64, macOS x86_64 and arm64.
const WHEEL: Wheel = Wheel {
    package: "libclang",
    version: PINNED,
    sha256: &[
        "c533091d8a3bbf7460a00cb6c1a71da93bffe148f172c7d03b1c31fbf8aa2a0b",
        "69f8eb8f65c279e765ffd28aaa7e9e364c776c17618af8bff22a8df58677ff4f",
        "54dda940a4a0491a9d1532bf071ea3ef26e6dbaf03b5000ed94dd7174e8f9592",
        "6f14c3f194704e5d09769108f03185fce7acaf1d1ae4bbb2f30a72c2400cb7c5",
        "0b2e143f0fac830156feb56f9231ff8338c20aecfe72b4ffe96f19e5a1dbb69a",
    ],
};

/// Where the library is in what pip installs, and its name there.
const NATIVE_DIR: &str = "clang/native";
#[cfg(target_os = "macos")]
const LIBRARY: &str = "libclang.dylib";
#[cfg(not(target_os = "macos"))]
const LIBRARY: &str = "libclang.so";

/// What to do when no libclang can be had, said after every error below.
const HELP: &str = "help: a crate of these images runs bindgen in its build script, which \
     needs libclang: set LIBCLANG_PATH to the directory of a libclang, or install python3 with \
     pip (Debian: apt-get install python3-pip) so scratchpack can install libclang itself";

#[derive(Debug, thiserror::Error)]
pub enum LibclangError {
    #[error(
        "no LIBCLANG_PATH was set, and there is no cache directory to install libclang into (neither XDG_CACHE_HOME nor HOME is set)\n{HELP}"
    )]
    NoCache,
    #[error(
        "installing libclang {PINNED} from PyPI's libclang package into {dir} failed: {message}\n{HELP}"
    )]
    Install { dir: PathBuf, message: String },
}

/// The libclang bindgen loads in image builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Libclang {
    /// The directory the caller's `LIBCLANG_PATH` names: left as it is.
    Callers(OsString),
    /// The pinned release in `dir` (`<cache>/libclang/<version>`),
    /// installed or not yet.
    Pinned { dir: PathBuf },
}

impl Libclang {
    /// The caller's when `LIBCLANG_PATH` is set, else the pinned release.
    pub fn find(env: &Env) -> Result<Libclang, LibclangError> {
        if let Some(path) = env.var_os("LIBCLANG_PATH") {
            return Ok(Libclang::Callers(path.to_owned()));
        }
        let dir = env
            .user_cache_dir()
            .ok_or(LibclangError::NoCache)?
            .join("libclang")
            .join(PINNED);
        Ok(Libclang::Pinned { dir })
    }

    /// What action keys record of it: the pinned release's version, or the
    /// directory the caller named (its version cannot be asked without
    /// loading it), as the caller's `CC_<triple>` is recorded.
    pub fn key(&self) -> String {
        match self {
            Libclang::Callers(path) => {
                format!("libclang of LIBCLANG_PATH={}", path.to_string_lossy())
            }
            Libclang::Pinned { .. } => format!("libclang {PINNED}"),
        }
    }

    /// Installs the pinned release into the user's cache when it is the
    /// one and is not there yet.
    pub fn install(&self, env: &Env, shell: Shell) -> Result<(), LibclangError> {
        let Libclang::Pinned { dir } = self else {
            return Ok(());
        };
        let announce = || {
            shell.status(
                "Installing",
                format!(
                    "libclang {PINNED}, which bindgen loads, from PyPI (python3 -m pip install \
                     libclang=={PINNED}) into {}",
                    dir.display()
                ),
            )
        };
        let check = |library: &Path| {
            if library.is_file() {
                Ok(())
            } else {
                Err(format!("pip installed no {}", library.display()))
            }
        };
        let library = Path::new(NATIVE_DIR).join(LIBRARY);
        pypi::install(&WHEEL, env, dir, &library, announce, check).map_err(|message| {
            LibclangError::Install {
                dir: dir.clone(),
                message,
            }
        })
    }

    /// The variables of a build that runs bindgen: `LIBCLANG_PATH` for the
    /// pinned release, nothing for the caller's.
    pub fn variables(&self) -> Vec<(&'static str, OsString)> {
        match self {
            Libclang::Callers(_) => Vec::new(),
            Libclang::Pinned { dir } => {
                vec![("LIBCLANG_PATH", dir.join(NATIVE_DIR).into_os_string())]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The caller's LIBCLANG_PATH wins and is left to the build; without
    /// it the pinned release lives in the user's cache, and the build is
    /// pointed at its library's directory.
    #[test]
    fn the_callers_libclang_wins_else_the_pinned_one_in_the_cache() {
        let callers = Env::from_vars([("LIBCLANG_PATH", "/opt/llvm/lib"), ("HOME", "/home/u")]);
        let found = Libclang::find(&callers).unwrap();
        assert_eq!(found, Libclang::Callers("/opt/llvm/lib".into()));
        assert!(found.variables().is_empty());
        assert_eq!(found.key(), "libclang of LIBCLANG_PATH=/opt/llvm/lib");

        let pinned = Libclang::find(&Env::from_vars([("HOME", "/home/u")])).unwrap();
        assert_eq!(
            pinned,
            Libclang::Pinned {
                dir: PathBuf::from("/home/u/.cache/scratchpack/libclang/18.1.1")
            }
        );
        assert_eq!(
            pinned.variables(),
            vec![(
                "LIBCLANG_PATH",
                OsString::from("/home/u/.cache/scratchpack/libclang/18.1.1/clang/native")
            )]
        );
        assert_eq!(pinned.key(), "libclang 18.1.1");
        assert!(matches!(
            Libclang::find(&Env::from_vars(Vec::<(&str, &str)>::new())),
            Err(LibclangError::NoCache)
        ));
    }
}

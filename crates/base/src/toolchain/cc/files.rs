//! The files generated for a build's C toolchain, in a directory of the
//! target directory named for the zig version ([`super::wrappers_dir`]):
//! the compiler wrappers cargo's variables name, `zig ar` and `zig ranlib`,
//! a cmake toolchain file per target, the wrappers' settings, and the
//! directory rustc searches for the C++ runtime and `libatomic.a`.

use std::ffi::{OsStr, OsString};
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use super::{MARKER, Settings, ZigTarget, underscored, zig_target};
use crate::toolchain::Env;

/// The generated toolchain of one zig version in one target directory.
#[derive(Debug, Clone)]
pub struct Wrappers {
    dir: PathBuf,
    settings: Settings,
}

/// An archive with no members. libmimalloc-sys links `-latomic` on every
/// 32-bit arm Linux, where atomics are instructions and nothing needs the
/// library; musl has none, so an empty one answers the link.
const EMPTY_ARCHIVE: &[u8] = b"!<arch>\n";

impl Wrappers {
    /// Writes the toolchain for `triples` (those zig has a target for)
    /// into `dir`, with `settings`; `program` is this program, which the
    /// compiler wrappers run. A file already as it should be is left
    /// alone, so a run that changes nothing writes nothing.
    pub fn write(
        dir: &Path,
        settings: Settings,
        program: &Path,
        triples: &[&str],
    ) -> std::io::Result<Wrappers> {
        std::fs::create_dir_all(&settings.lib_dir)?;
        let json = serde_json::to_vec_pretty(&settings).map_err(std::io::Error::other)?;
        let wrappers = Wrappers {
            dir: dir.to_owned(),
            settings,
        };
        write_if_changed(&wrappers.settings_path(), &json, false)?;
        write_if_changed(
            &wrappers.settings.lib_dir.join("libatomic.a"),
            EMPTY_ARCHIVE,
            false,
        )?;
        for (name, command) in [("zigar", "ar"), ("zigranlib", "ranlib")] {
            let script = tool_script(&wrappers.settings.zig, command);
            write_if_changed(&dir.join(name), &script, true)?;
        }
        for triple in triples {
            let Some(target) = zig_target(triple) else {
                continue;
            };
            for lang in ["cc", "c++"] {
                let script = compiler_script(program, &wrappers.settings_path(), lang, triple);
                write_if_changed(&wrappers.compiler(lang, triple), &script, true)?;
            }
            let cmake = wrappers.cmake_toolchain(target, triple);
            write_if_changed(&dir.join(format!("{triple}.cmake")), &cmake, false)?;
        }
        Ok(wrappers)
    }

    /// Writes the script the `cmake` crate runs as cmake when cmake is
    /// scratchpack's (`CMAKE` names it): it runs this program, which
    /// installs cmake and ninja on first use and becomes cmake with ninja
    /// on its search path. Returns its path.
    pub fn write_cmake_shim(
        &self,
        program: &Path,
        dirs: (&Path, &Path),
    ) -> std::io::Result<PathBuf> {
        let path = self.cmake_shim();
        let mut script = b"#!/bin/sh\n# cmake, installed on first use. Generated; rewritten on every build.\nexec "
            .to_vec();
        for word in [
            program.as_os_str(),
            OsStr::new(super::cmake::SHIM_MARKER),
            dirs.0.as_os_str(),
            dirs.1.as_os_str(),
        ] {
            script.extend(sh_quoted(word));
            script.push(b' ');
        }
        script.extend_from_slice(b"\"$@\"\n");
        write_if_changed(&path, &script, true)?;
        Ok(path)
    }

    /// Where the script that runs scratchpack's cmake is.
    pub fn cmake_shim(&self) -> PathBuf {
        self.dir.join("cmake")
    }

    /// Where the wrappers' settings are.
    pub fn settings_path(&self) -> PathBuf {
        self.dir.join("settings.json")
    }

    /// The directory rustc must search (`-Lnative`) for the C++ runtime
    /// and `libatomic.a`.
    pub fn lib_dir(&self) -> &Path {
        &self.settings.lib_dir
    }

    /// The wrapper for `lang` (`cc` or `c++`) and `triple`. cc-rs knows zig
    /// by a program name containing `zig`, and then passes it no GNU-only
    /// flags.
    fn compiler(&self, lang: &str, triple: &str) -> PathBuf {
        let name = if lang == "cc" { "zigcc" } else { "zigcxx" };
        self.dir.join(format!("{name}-{triple}"))
    }

    /// The variables that point cc-rs, the cmake crate and bindgen at zig
    /// for `triple`. A triple whose C or C++ compiler the caller names
    /// (`CC_<triple>`, `CXX_<triple>`) is the caller's: nothing is set for
    /// it. Of the others, a variable the caller set is left as it is.
    pub fn variables(&self, env: &Env, triple: &str) -> Vec<(String, OsString)> {
        let Some(target) = zig_target(triple) else {
            return Vec::new();
        };
        if env.sets_for_triple("CC", triple) || env.sets_for_triple("CXX", triple) {
            return Vec::new();
        }
        let u = underscored(triple);
        let path = |p: PathBuf| p.into_os_string();
        let all = [
            ("CC", path(self.compiler("cc", triple))),
            ("CXX", path(self.compiler("c++", triple))),
            ("AR", path(self.dir.join("zigar"))),
            ("RANLIB", path(self.dir.join("zigranlib"))),
            // cc-rs links this instead of `c++`: the runtime is built for
            // the target when a crate first compiles C++ for it.
            ("CXXSTDLIB", format!("zigcxx_{u}").into()),
            (
                "CMAKE_TOOLCHAIN_FILE",
                path(self.dir.join(format!("{triple}.cmake"))),
            ),
            (
                "BINDGEN_EXTRA_CLANG_ARGS",
                bindgen_args(&self.settings.zig_lib, target),
            ),
        ];
        all.into_iter()
            .filter(|(prefix, _)| !env.sets_for_triple(prefix, triple))
            .map(|(prefix, value)| (format!("{prefix}_{u}"), value))
            .collect()
    }

    /// A cmake toolchain file for `triple`: Linux on the target's
    /// processor, compiled by the wrappers, and nothing of the host's
    /// libraries or headers found (cargo-zigbuild's recipe).
    fn cmake_toolchain(&self, target: &ZigTarget, triple: &str) -> Vec<u8> {
        let mut out = format!(
            "# cmake toolchain for {triple}: C and C++ compiled by zig through scratchpack's\n\
             # wrappers. Generated; rewritten on every build.\n\
             set(CMAKE_SYSTEM_NAME Linux)\n\
             set(CMAKE_SYSTEM_PROCESSOR {})\n",
            target.processor
        )
        .into_bytes();
        for (name, path) in [
            ("CMAKE_C_COMPILER", self.compiler("cc", triple)),
            ("CMAKE_CXX_COMPILER", self.compiler("c++", triple)),
            ("CMAKE_AR", self.dir.join("zigar")),
            ("CMAKE_RANLIB", self.dir.join("zigranlib")),
        ] {
            out.extend_from_slice(format!("set({name} ").as_bytes());
            out.extend(cmake_quoted(path.as_os_str()));
            out.extend_from_slice(b")\n");
        }
        out.extend_from_slice(
            b"set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)\n\
              set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)\n\
              set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)\n\
              set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)\n\
              set(CMAKE_C_LINKER_DEPFILE_SUPPORTED FALSE)\n\
              set(CMAKE_CXX_LINKER_DEPFILE_SUPPORTED FALSE)\n",
        );
        out
    }
}

/// bindgen's clang flags for `target`: zig's musl headers in the order zig
/// searches them, and none of the host's. bindgen splits the value as a
/// shell would, so each path is quoted.
fn bindgen_args(zig_lib: &Path, target: &ZigTarget) -> OsString {
    let include = zig_lib.join("libc").join("include");
    let dirs = [
        zig_lib.join("include"),
        include.join(target.include[0]),
        include.join("generic-musl"),
        include.join(target.include[1]),
        include.join("any-linux-any"),
    ];
    let mut out = OsString::from("-nostdinc");
    for dir in dirs {
        out.push(" -isystem ");
        out.push(OsStr::from_bytes(&sh_quoted(dir.as_os_str())));
    }
    out
}

/// A compiler wrapper: runs this program as the wrapper of `lang` for
/// `triple`, with every argument passed on.
fn compiler_script(program: &Path, settings: &Path, lang: &str, triple: &str) -> Vec<u8> {
    let mut out = format!(
        "#!/bin/sh\n\
         # zig's {lang} for {triple}, run by scratchpack, which translates what zig\n\
         # rejects and maps host paths out of the objects. Generated; rewritten on\n\
         # every build.\n\
         exec "
    )
    .into_bytes();
    for word in [
        program.as_os_str(),
        OsStr::new(MARKER),
        settings.as_os_str(),
        OsStr::new(lang),
        OsStr::new(triple),
    ] {
        out.extend(sh_quoted(word));
        out.push(b' ');
    }
    out.extend_from_slice(b"\"$@\"\n");
    out
}

/// `zig ar` or `zig ranlib` (llvm's, which write no timestamps, owners or
/// modes: archives are the same bytes wherever they are made).
fn tool_script(zig: &Path, command: &str) -> Vec<u8> {
    let mut out = b"#!/bin/sh\n# zig's llvm-".to_vec();
    out.extend_from_slice(command.as_bytes());
    out.extend_from_slice(b". Generated; rewritten on every build.\nexec ");
    out.extend(sh_quoted(zig.as_os_str()));
    out.extend_from_slice(format!(" {command} \"$@\"\n").as_bytes());
    out
}

/// A word for `sh`, single-quoted: inside single quotes nothing is special
/// but the quote itself, written `'\''`.
pub(crate) fn sh_quoted(word: &OsStr) -> Vec<u8> {
    let mut out = vec![b'\''];
    for &b in word.as_bytes() {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    out
}

/// A quoted argument for cmake: `\`, `"` and `$` escaped.
fn cmake_quoted(word: &OsStr) -> Vec<u8> {
    let mut out = vec![b'"'];
    for &b in word.as_bytes() {
        if matches!(b, b'\\' | b'"' | b'$') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
    out
}

/// Writes `bytes` to `path` unless it already holds them: through a
/// temporary file renamed into place, executable if asked, so that a build
/// script running a wrapper while another run rewrites it sees one whole
/// file or the other.
fn write_if_changed(path: &Path, bytes: &[u8], executable: bool) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = if executable { 0o755 } else { 0o644 };
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o777 == mode
        && std::fs::read(path).is_ok_and(|old| old == bytes)
    {
        return Ok(());
    }
    let dir = path.parent().expect("a generated file has a directory");
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path) -> Settings {
        Settings {
            zig: dir.join("zig dir/it's zig"),
            zig_lib: dir.join("zig dir/lib"),
            maps: Vec::new(),
            global_cache: dir.join("global"),
            local_cache: dir.join("local"),
            lib_dir: dir.join("lib"),
        }
    }

    #[test]
    fn a_path_with_a_space_and_a_quote_reaches_the_program_whole() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a dir with 'quotes' and $HOME");
        std::fs::create_dir_all(&dir).unwrap();
        // A stand-in for this program that prints its arguments one a line.
        let program = dir.join("it's the program");
        std::fs::write(&program, "#!/bin/sh\nprintf '%s\\n' \"$@\"\n").unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let triple = "aarch64-unknown-linux-musl";
        let wrappers = Wrappers::write(&dir, settings(&dir), &program, &[triple]).unwrap();
        let out = std::process::Command::new(wrappers.compiler("cc", triple))
            .args(["-c", "a 'b'.c", "-DX=\"$Y\""])
            .output()
            .unwrap();
        assert!(out.status.success());
        let settings_path = wrappers.settings_path();
        let want = [
            MARKER,
            settings_path.to_str().unwrap(),
            "cc",
            triple,
            "-c",
            "a 'b'.c",
            "-DX=\"$Y\"",
        ];
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            want.map(|w| format!("{w}\n")).concat()
        );
        // The settings read back as written; zig's tools are quoted too.
        let read: Settings =
            serde_json::from_slice(&std::fs::read(&settings_path).unwrap()).unwrap();
        assert_eq!(read, settings(&dir));
        let ar = std::fs::read_to_string(dir.join("zigar")).unwrap();
        assert!(
            ar.contains("exec '") && ar.contains("it'\\''s zig' ar \"$@\""),
            "{ar}"
        );
        assert_eq!(
            std::fs::read(dir.join("lib/libatomic.a")).unwrap(),
            EMPTY_ARCHIVE
        );
        let cmake = std::fs::read_to_string(dir.join(format!("{triple}.cmake"))).unwrap();
        assert!(
            cmake.contains("set(CMAKE_SYSTEM_PROCESSOR aarch64)"),
            "{cmake}"
        );
        assert!(
            cmake.contains("and \\$HOME/zigcc-aarch64-unknown-linux-musl\")"),
            "{cmake}"
        );
    }

    #[test]
    fn a_second_write_of_the_same_toolchain_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let triples = ["x86_64-unknown-linux-musl", "riscv64gc-unknown-linux-musl"];
        Wrappers::write(dir, settings(dir), Path::new("/p"), &triples).unwrap();
        let stamps = |d: &Path| {
            let mut all: Vec<(PathBuf, std::time::SystemTime)> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.is_file())
                .map(|p| {
                    (
                        p.clone(),
                        std::fs::metadata(&p).unwrap().modified().unwrap(),
                    )
                })
                .collect();
            all.sort();
            all
        };
        let before = stamps(dir);
        assert_eq!(before.len(), 2 * 3 + 3, "{before:?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
        Wrappers::write(dir, settings(dir), Path::new("/p"), &triples).unwrap();
        assert_eq!(stamps(dir), before);
    }

    #[test]
    fn the_callers_own_compiler_wins_for_its_triple() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (arm64, amd64) = ("aarch64-unknown-linux-musl", "x86_64-unknown-linux-musl");
        let wrappers =
            Wrappers::write(dir, settings(dir), Path::new("/p"), &[arm64, amd64]).unwrap();
        let names = |env: &Env, triple| -> Vec<String> {
            wrappers
                .variables(env, triple)
                .into_iter()
                .map(|(n, _)| n)
                .collect()
        };
        let none = Env::default();
        assert_eq!(
            names(&none, arm64),
            [
                "CC_aarch64_unknown_linux_musl",
                "CXX_aarch64_unknown_linux_musl",
                "AR_aarch64_unknown_linux_musl",
                "RANLIB_aarch64_unknown_linux_musl",
                "CXXSTDLIB_aarch64_unknown_linux_musl",
                "CMAKE_TOOLCHAIN_FILE_aarch64_unknown_linux_musl",
                "BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_musl",
            ]
        );
        // Either spelling of the caller's compiler takes the whole triple.
        for var in [
            "CC_aarch64-unknown-linux-musl",
            "CXX_aarch64_unknown_linux_musl",
        ] {
            let env = Env::from_vars([(var, "clang")]);
            assert!(names(&env, arm64).is_empty(), "{var}");
            assert_eq!(names(&env, amd64).len(), 7, "{var}");
        }
        let env = Env::from_vars([(
            "BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_musl",
            "-I/x",
        )]);
        assert_eq!(names(&env, arm64).len(), 6);
        assert!(names(&none, "x86_64-unknown-linux-gnu").is_empty());
        let bindgen = wrappers.variables(&none, arm64).pop().unwrap().1;
        assert_eq!(
            bindgen.to_str().unwrap(),
            format!(
                "-nostdinc -isystem '{lib}/include' -isystem '{lib}/libc/include/aarch64-linux-musl' \
                 -isystem '{lib}/libc/include/generic-musl' -isystem '{lib}/libc/include/aarch64-linux-any' \
                 -isystem '{lib}/libc/include/any-linux-any'",
                lib = dir.join("zig dir/lib").display()
            )
        );
    }
}

//! The command line zig is run with for one compile: what cc-rs, build
//! scripts and the caller's `CFLAGS` pass, with what zig rejects dropped or
//! translated, and the target, CPU, path maps and sanitizers pinned.
//!
//! Each rule answers a way a build fails or silently changes with zig:
//! cc-rs passes `--target=<rust triple>`, which zig cannot parse (`unable
//! to parse target query`); a compiler taken for GNU's gets
//! `-Wl,-melf_i386` (`unsupported linker arg`); zig reads `-march=X` as a
//! CPU name, so `armv7-a`, `rv64gc`, `x86-64` or `armv8.4-a+sha3` are
//! unknown CPUs, and a build script's feature probe with one of them fails
//! and silently leaves the feature out. zig turns UBSan on at `-O0` (a
//! crate compiled so links against `__ubsan_handle_*`, which nothing
//! provides), and writes DWARF with absolute paths even without `-g`.

use std::ffi::OsString;

use super::{Arch, C_SOURCE_DATE_EPOCH, Settings, ZigTarget};

/// The language a wrapper compiles, and zig's command for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    C,
    Cxx,
}

impl Lang {
    pub fn command(self) -> &'static str {
        match self {
            Lang::C => "cc",
            Lang::Cxx => "c++",
        }
    }
}

/// What becomes of one argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Translated {
    Keep,
    Drop,
    Replace(String),
}

/// The rule for one argument on `arch`.
pub fn translate(arch: Arch, arg: &str) -> Translated {
    // The wrapper's own `-target` comes first and says it.
    if arg.starts_with("--target=") || arg == "-Wl,-melf_i386" {
        return Translated::Drop;
    }
    let Some(value) = arg
        .strip_prefix("-march=")
        .or_else(|| arg.strip_prefix("-mcpu="))
    else {
        return Translated::Keep;
    };
    match cpu(arch, value) {
        Some(cpu) => Translated::Replace(format!("-mcpu={cpu}")),
        None => Translated::Drop,
    }
}

/// zig's CPU for a GCC or Clang `-march`/`-mcpu` value; `None` for rustc's
/// baseline, which the wrapper's pinned CPU already is. A later `-mcpu`
/// overrides an earlier one, so a translated value takes effect.
fn cpu(arch: Arch, value: &str) -> Option<String> {
    match (arch, value) {
        (Arch::X86_64, "x86-64")
        | (Arch::X86, "i686" | "pentium4")
        | (Arch::Arm, "armv7-a" | "armv7a")
        | (Arch::Riscv64, "rv64gc" | "rv64imafdc")
        | (Arch::Aarch64, "armv8-a" | "armv8a") => None,
        (Arch::Riscv64, v) if v.starts_with("rv64gc") => Some(riscv(&v["rv64gc".len()..])),
        (Arch::Aarch64, v) if is_arm_architecture(v) => Some(aarch64(v)),
        (Arch::Powerpc64le, v)
            if v.strip_prefix("power")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) =>
        {
            Some(format!("pwr{}", &v["power".len()..]))
        }
        // A CPU name: zig spells with `_` what GCC spells with `-` (in zig,
        // `-` removes a feature): `x86-64-v3`, `cortex-a72`.
        (_, v) => Some(v.replace('-', "_")),
    }
}

/// `armv8-a`, `armv8.4-a+sha3`, `armv9-a+…`: an architecture, not a CPU.
fn is_arm_architecture(v: &str) -> bool {
    let base = v.split('+').next().unwrap_or_default();
    (base.starts_with("armv8") || base.starts_with("armv9")) && base.ends_with("-a")
}

/// `armv8.4-a+sha3+nofp16` → `generic+v8_4a+sha3-fp16`.
fn aarch64(v: &str) -> String {
    let (base, features) = v.split_at(v.find('+').unwrap_or(v.len()));
    let base = base
        .trim_start_matches("arm")
        .trim_end_matches("-a")
        .replace('.', "_");
    let features = features.replace('-', "_").replace("+no", "-");
    format!("generic+{base}a{features}")
}

/// The extensions after `rv64gc` (single letters, then `_z…` ones) on top
/// of the pinned `rv64gc` CPU: `v_zba` → `generic_rv64+m+a+f+d+c+v+zba`.
fn riscv(mut rest: &str) -> String {
    let mut cpu = String::from("generic_rv64+m+a+f+d+c");
    while let Some(c) = rest.chars().next() {
        if c == '_' {
            let ext = rest[1..].split('_').next().unwrap_or_default();
            cpu.push('+');
            cpu.push_str(ext);
            rest = &rest[1 + ext.len()..];
        } else {
            cpu.push('+');
            cpu.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    cpu
}

/// zig's whole command line (after the program) for one compile of `lang`
/// for `target` with the caller's `args`.
pub fn command_line(
    target: &ZigTarget,
    lang: Lang,
    args: impl IntoIterator<Item = OsString>,
    settings: &Settings,
) -> Vec<OsString> {
    let mut out: Vec<OsString> = vec![lang.command().into(), "-target".into(), target.zig.into()];
    out.extend(target.cpu.map(|c| format!("-mcpu={c}").into()));
    for arg in args {
        // An argument that is not Unicode is no flag zig rejects.
        match arg.to_str().map(|a| translate(target.arch, a)) {
            None | Some(Translated::Keep) => out.push(arg),
            Some(Translated::Drop) => {}
            Some(Translated::Replace(new)) => out.push(new.into()),
        }
    }
    // After the caller's flags, so that nothing given before undoes them.
    for (from, to) in &settings.maps {
        let mut map = OsString::from("-ffile-prefix-map=");
        map.push(from);
        map.push("=");
        map.push(to);
        out.push(map);
    }
    out.push("-fno-sanitize=all".into());
    // zig's cache keys an object by its command line, not by the
    // environment: the epoch C sees is written here too, so a change of it
    // is never answered with an object compiled under another.
    out.push(format!("-DSCRATCHPACK_C_SOURCE_DATE_EPOCH={C_SOURCE_DATE_EPOCH}").into());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toolchain::cc::zig_target;

    #[test]
    fn every_rule_of_the_table() {
        use Arch::*;
        use Translated::*;
        let r = |s: &str| Replace(s.to_owned());
        let table: &[(Arch, &str, Translated)] = &[
            // cc-rs's target, and GNU ld's emulation flag.
            (Aarch64, "--target=aarch64-unknown-linux-musl", Drop),
            (X86, "--target=i686-unknown-linux-musl", Drop),
            (X86, "-Wl,-melf_i386", Drop),
            // rustc's baselines, which the pinned CPU already says.
            (X86_64, "-march=x86-64", Drop),
            (X86, "-march=i686", Drop),
            (X86, "-march=pentium4", Drop),
            (Arm, "-march=armv7-a", Drop),
            (Arm, "-march=armv7a", Drop),
            (Riscv64, "-march=rv64gc", Drop),
            (Riscv64, "-march=rv64imafdc", Drop),
            (Aarch64, "-march=armv8-a", Drop),
            (Aarch64, "-march=armv8a", Drop),
            // aws-lc's SHA3 probe, and other architecture levels.
            (
                Aarch64,
                "-march=armv8.4-a+sha3",
                r("-mcpu=generic+v8_4a+sha3"),
            ),
            (
                Aarch64,
                "-march=armv8.2-a+crypto+nosve",
                r("-mcpu=generic+v8_2a+crypto-sve"),
            ),
            (
                Aarch64,
                "-march=armv8-a+crypto",
                r("-mcpu=generic+v8a+crypto"),
            ),
            (Aarch64, "-march=armv9-a", r("-mcpu=generic+v9a")),
            // zstd-sys with the vector extension, and `_z` extensions.
            (
                Riscv64,
                "-march=rv64gcv",
                r("-mcpu=generic_rv64+m+a+f+d+c+v"),
            ),
            (
                Riscv64,
                "-march=rv64gcv_zba_zbb",
                r("-mcpu=generic_rv64+m+a+f+d+c+v+zba+zbb"),
            ),
            // zig's names for POWER CPUs.
            (Powerpc64le, "-mcpu=power8", r("-mcpu=pwr8")),
            (Powerpc64le, "-mcpu=power10", r("-mcpu=pwr10")),
            // Any other CPU name, spelt zig's way.
            (X86_64, "-march=x86-64-v3", r("-mcpu=x86_64_v3")),
            (Aarch64, "-mcpu=cortex-a72", r("-mcpu=cortex_a72")),
            (X86_64, "-march=haswell", r("-mcpu=haswell")),
            // A baseline of another architecture is a CPU name here.
            (Aarch64, "-march=x86-64", r("-mcpu=x86_64")),
            // Everything else is kept as it is.
            (X86_64, "-O3", Keep),
            (X86_64, "-ffunction-sections", Keep),
            (X86_64, "-Wl,--gc-sections", Keep),
            (X86_64, "-target", Keep),
            (X86_64, "-marm", Keep),
            (X86_64, "-I/src/include", Keep),
        ];
        for (arch, arg, want) in table {
            assert_eq!(&translate(*arch, arg), want, "{arch:?} {arg}");
        }
    }

    fn settings() -> Settings {
        Settings {
            zig: "/zig/zig".into(),
            zig_lib: "/zig/lib".into(),
            maps: vec![
                ("/src/ws".into(), "/workspace".into()),
                ("/src/ws/target/scratchpack/cargo".into(), "/target".into()),
                ("/home/u/.cargo".into(), "/cargo".into()),
                ("/zig/lib".into(), "/zig/lib".into()),
            ],
            global_cache: "/home/u/.cache/scratchpack/zig/cache".into(),
            local_cache: "/src/ws/target/scratchpack/cc/cache".into(),
            lib_dir: "/src/ws/target/scratchpack/cc/lib".into(),
        }
    }

    #[test]
    fn the_target_comes_first_and_maps_and_no_sanitizers_last() {
        let target = zig_target("armv7-unknown-linux-musleabihf").unwrap();
        let args = [
            "--target=armv7-unknown-linux-musleabihf",
            "-O0",
            "-march=armv7-a",
            "-fsanitize=undefined",
            "-c",
            "a b.c",
        ]
        .map(OsString::from);
        let line = command_line(target, Lang::C, args, &settings());
        let line: Vec<&str> = line.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            line,
            [
                "cc",
                "-target",
                "arm-linux-musleabihf",
                "-mcpu=generic+v7a+vfp3-d32+thumb2-neon",
                "-O0",
                "-fsanitize=undefined",
                "-c",
                "a b.c",
                "-ffile-prefix-map=/src/ws=/workspace",
                "-ffile-prefix-map=/src/ws/target/scratchpack/cargo=/target",
                "-ffile-prefix-map=/home/u/.cargo=/cargo",
                "-ffile-prefix-map=/zig/lib=/zig/lib",
                "-fno-sanitize=all",
                "-DSCRATCHPACK_C_SOURCE_DATE_EPOCH=0",
            ]
        );
        let cxx = command_line(
            zig_target("x86_64-unknown-linux-musl").unwrap(),
            Lang::Cxx,
            [],
            &settings(),
        );
        assert_eq!(
            &cxx[..3],
            ["c++", "-target", "x86_64-linux-musl"].map(OsString::from)
        );
        assert!(!cxx.iter().any(|a| a.to_string_lossy().starts_with("-mcpu")));
    }

    #[test]
    fn an_argument_that_is_not_unicode_is_kept() {
        use std::os::unix::ffi::OsStringExt as _;
        let odd = OsString::from_vec(b"-I/src/\xff".to_vec());
        let line = command_line(
            zig_target("aarch64-unknown-linux-musl").unwrap(),
            Lang::C,
            [odd.clone()],
            &settings(),
        );
        assert_eq!(line[3], odd);
    }
}

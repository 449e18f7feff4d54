//! The C++ runtime a target's C++ objects link: zig's libc++ and libc++abi,
//! merged into one archive, `libzigcxx_<triple>.a`, which cc-rs links when
//! `CXXSTDLIB_<triple>` names it (it would otherwise ask for `-lc++`, which
//! no musl target has). libunwind is not in it: Rust's musl standard
//! library links LLVM's own.
//!
//! It is built the first time a crate compiles C++ for a target, by the
//! wrapper of that compile, under a lock: zig builds libc++ for the target
//! in its global cache (minutes, once per zig version, target and user),
//! and the merge takes a moment. zig builds it stripped (`-s`), so no host
//! path of zig's cache or sources is in it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Settings, ZigTarget, underscored};

/// The runtime's archive for `triple` in `lib_dir`.
pub fn archive(lib_dir: &Path, triple: &str) -> PathBuf {
    lib_dir.join(format!("libzigcxx_{}.a", underscored(triple)))
}

/// Builds the runtime of `target` unless it is there.
pub fn ensure(settings: &Settings, target: &ZigTarget, triple: &str) -> Result<(), String> {
    let archive = archive(&settings.lib_dir, triple);
    if archive.is_file() {
        return Ok(());
    }
    let lock_path = settings.lib_dir.join(format!(".zigcxx-{triple}.lock"));
    let _lock = crate::toolchain::lock_file(&lock_path)
        .map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
    if archive.is_file() {
        return Ok(());
    }
    let work = tempfile::Builder::new()
        .prefix(".zigcxx-")
        .tempdir_in(&settings.lib_dir)
        .map_err(|e| format!("making a directory in {}: {e}", settings.lib_dir.display()))?;
    let (libcxx, libcxxabi) = zig_libcxx(settings, target, work.path())?;
    let merged = work.path().join("merged.a");
    let zig = |args: &[&std::ffi::OsStr]| -> Result<(), String> {
        let out = Command::new(&settings.zig)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running {}: {e}", settings.zig.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "zig {} failed: {}",
                args[0].to_string_lossy(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    zig(&[
        "ar".as_ref(),
        "qcL".as_ref(),
        merged.as_os_str(),
        libcxx.as_os_str(),
        libcxxabi.as_os_str(),
    ])?;
    zig(&["ranlib".as_ref(), merged.as_os_str()])?;
    std::fs::rename(&merged, &archive)
        .map_err(|e| format!("moving the C++ runtime to {}: {e}", archive.display()))
}

/// Has zig link an empty C++ program for `target` and returns the libc++
/// and libc++abi archives its link line names (zig builds them into its
/// global cache on first use).
fn zig_libcxx(
    settings: &Settings,
    target: &ZigTarget,
    work: &Path,
) -> Result<(PathBuf, PathBuf), String> {
    let source = work.join("empty.cpp");
    std::fs::write(&source, "int main() { return 0; }\n")
        .map_err(|e| format!("writing {}: {e}", source.display()))?;
    let mut cmd = Command::new(&settings.zig);
    cmd.args(["c++", "-v", "-target", target.zig]);
    if let Some(cpu) = target.cpu {
        cmd.arg(format!("-mcpu={cpu}"));
    }
    let out = cmd
        .args(["-O2", "-s", "-fno-sanitize=all", "-static"])
        .arg(&source)
        .arg("-o")
        .arg(work.join("empty"))
        .envs(settings.zig_environment())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {}: {e}", settings.zig.display()))?;
    let said = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "zig could not build the C++ runtime for {}: {}",
            target.zig,
            said.trim()
        ));
    }
    let find = |name: &str| {
        link_line_archive(&said, &settings.global_cache, name)
            .ok_or_else(|| format!("zig's link line for {} names no {name}", target.zig))
    };
    Ok((find("libc++.a")?, find("libc++abi.a")?))
}

/// The archive `name` that `zig c++ -v`'s link line names: zig writes it
/// as `<global cache>/o/<hash>/<name>`, unquoted, so the hash is read and
/// the path made from the cache directory, which may hold a space.
fn link_line_archive(said: &str, global_cache: &Path, name: &str) -> Option<PathBuf> {
    let end = format!("/{name}");
    said.match_indices(&end).find_map(|(at, _)| {
        let before = &said[..at];
        let hash_start = before.rfind('/')? + 1;
        let hash = &before[hash_start..];
        let dir_is_o = before[..hash_start].ends_with("/o/");
        let followed = said[at + end.len()..]
            .chars()
            .next()
            .is_none_or(|c| c.is_whitespace() || c == '"');
        (dir_is_o && followed && !hash.is_empty() && hash.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| global_cache.join("o").join(hash).join(name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archives_are_read_from_the_link_line() {
        let cache = Path::new("/home/a user/.cache/zig");
        let said = "ld.lld --gc-sections /home/a user/.cache/zig/o/0f12/libc++abi.a \
                    /home/a user/.cache/zig/o/9a/libc++.a /home/a user/.cache/zig/o/77/libunwind.a";
        assert_eq!(
            link_line_archive(said, cache, "libc++.a"),
            Some(cache.join("o/9a/libc++.a"))
        );
        assert_eq!(
            link_line_archive(said, cache, "libc++abi.a"),
            Some(cache.join("o/0f12/libc++abi.a"))
        );
        assert_eq!(link_line_archive(said, cache, "libfoo.a"), None);
        assert_eq!(
            archive(Path::new("/l"), "armv7-unknown-linux-musleabihf"),
            PathBuf::from("/l/libzigcxx_armv7_unknown_linux_musleabihf.a")
        );
    }
}

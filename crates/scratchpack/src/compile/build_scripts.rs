//! Build scripts that watch what they write. A build script may generate
//! code into its own `OUT_DIR` and tell cargo to run it again when that
//! file changes (`rerun-if-changed=$OUT_DIR/…`, as shadow-rs does in
//! release builds). Cargo dates the script's run from before it started,
//! so anything the script writes is newer than its run, and cargo runs it
//! again on every build, then recompiles and relinks every crate depending
//! on it: a no-op build of an LTO binary takes minutes, with plain cargo as
//! with scratchpack.
//!
//! After each build, a file the script watches in its own `OUT_DIR`, last
//! written while the script ran (after cargo's start date for the run and
//! no later than cargo's record of its end), is dated back to the run's
//! start: what the script wrote itself does not count as a change. A file
//! changed afterwards, by anything else, is left as it is and still runs
//! the script again, as do the script's other watched files and variables.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Dates back the watched files each build script of the build (its
/// `OUT_DIR`, as cargo's messages report it) wrote into its own `OUT_DIR`
/// while it ran. Best effort: a build script's record that cannot be read
/// is passed over, and the next build runs that script again, as cargo
/// alone would.
pub(super) fn settle(out_dirs: &[PathBuf]) {
    for out_dir in out_dirs {
        let Some(run_dir) = out_dir.parent() else {
            continue;
        };
        let (Ok(output), Ok(finished)) = (
            std::fs::metadata(run_dir.join("output")),
            std::fs::metadata(run_dir.join("root-output")),
        ) else {
            continue;
        };
        let (Ok(started), Ok(finished)) = (output.modified(), finished.modified()) else {
            continue;
        };
        // Cargo's record of the script's output is small; a bound keeps a
        // damaged one from being read whole.
        let Ok(text) = read_bounded(&run_dir.join("output"), 64 << 20) else {
            continue;
        };
        for path in watched(&text).filter(|p| p.starts_with(out_dir)) {
            date_back(&path, started, finished, 0);
        }
    }
}

/// The paths of `rerun-if-changed` lines in a build script's output.
fn watched(output: &str) -> impl Iterator<Item = PathBuf> + '_ {
    output.lines().filter_map(|line| {
        let value = line
            .strip_prefix("cargo::rerun-if-changed=")
            .or_else(|| line.strip_prefix("cargo:rerun-if-changed="))?;
        let path = Path::new(value);
        path.is_absolute().then(|| path.to_owned())
    })
}

/// Sets the modification time of `path` (or of each file under it, as
/// cargo checks a directory's files) to `started` when it was last written
/// after `started` and no later than `finished`.
fn date_back(path: &Path, started: SystemTime, finished: SystemTime, depth: usize) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_dir() && depth < 16 {
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            date_back(&entry.path(), started, finished, depth + 1);
        }
        return;
    }
    let Ok(modified) = meta.modified() else {
        return;
    };
    if meta.is_file()
        && modified > started
        && modified <= finished
        && let Ok(file) = std::fs::File::open(path)
    {
        let _ = file.set_modified(started);
    }
}

fn read_bounded(path: &Path, limit: u64) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(limit)
        .read_to_string(&mut text)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn set(path: &Path, time: SystemTime) {
        std::fs::File::open(path)
            .unwrap()
            .set_modified(time)
            .unwrap();
    }

    fn modified(path: &Path) -> SystemTime {
        std::fs::metadata(path).unwrap().modified().unwrap()
    }

    /// A build script's run directory as cargo leaves it: `output` dated
    /// from the start, `root-output` written at the end, and what the
    /// script wrote in between.
    #[test]
    fn only_what_the_script_wrote_while_it_ran_is_dated_back() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("build/app-0123");
        let out = run.join("out");
        std::fs::create_dir_all(out.join("gen")).unwrap();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let at = |s: u64| t0 + Duration::from_secs(s);
        let own = out.join("shadow.rs");
        let later = out.join("edited-later.rs");
        let in_dir = out.join("gen/a.rs");
        let unwatched = out.join("unwatched.rs");
        let elsewhere = dir.path().join("src.rs");
        std::fs::write(
            run.join("output"),
            format!(
                "cargo:rerun-if-changed={}\ncargo::rerun-if-changed={}\n\
                 cargo:rerun-if-changed={}\ncargo:rerun-if-changed={}\n\
                 cargo:rerun-if-changed=build.rs\ncargo:rustc-cfg=x\n",
                own.display(),
                later.display(),
                out.join("gen").display(),
                elsewhere.display()
            ),
        )
        .unwrap();
        for f in [&own, &later, &in_dir, &unwatched, &elsewhere] {
            std::fs::write(f, "x").unwrap();
        }
        std::fs::write(run.join("root-output"), out.to_str().unwrap()).unwrap();
        set(&run.join("output"), at(0));
        set(&run.join("root-output"), at(10));
        for f in [&own, &in_dir, &unwatched, &elsewhere] {
            set(f, at(5));
        }
        set(&later, at(20));
        settle(std::slice::from_ref(&out));
        assert_eq!(modified(&own), at(0));
        assert_eq!(modified(&in_dir), at(0));
        assert_eq!(modified(&later), at(20), "changed after the run");
        assert_eq!(modified(&unwatched), at(5), "not watched");
        assert_eq!(modified(&elsewhere), at(5), "not the script's own");
        // A second pass changes nothing.
        settle(std::slice::from_ref(&out));
        assert_eq!(modified(&own), at(0));
        // A run directory without cargo's records is passed over.
        settle(&[dir.path().join("nowhere/out")]);
    }
}

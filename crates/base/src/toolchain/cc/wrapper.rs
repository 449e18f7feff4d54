//! The compiler wrapper: this program, run by a generated script (see
//! [`super::Wrappers`]) in place of a C or C++ compiler. It reads the
//! wrappers' settings, makes sure the target's C++ runtime exists before a
//! C++ compile, and becomes zig with the arguments [`super::args`] makes.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Command;

use super::args::{self, Lang};
use super::{MARKER, Settings, runtime, zig_target};

/// Becomes the compiler when this program was started as a wrapper
/// (`<program> MARKER <settings> <cc|c++> <triple> <args…>`), and never
/// returns then; returns otherwise. Checked before anything else: a build
/// script runs the wrapper with every variable of cargo's environment,
/// those that make this program rustc's wrapper included.
pub fn run_if_requested() {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(OsStr::new(MARKER)) {
        return;
    }
    let error = run(args.collect());
    eprintln!("error: scratchpack's zig wrapper: {error}");
    std::process::exit(1);
}

/// Runs zig in place of this process; returns only why it could not.
fn run(args: Vec<OsString>) -> String {
    let [settings, lang, triple, rest @ ..] = args.as_slice() else {
        return "expected the settings, the language and the triple".to_owned();
    };
    let lang = match lang.to_str() {
        Some("cc") => Lang::C,
        Some("c++") => Lang::Cxx,
        _ => return format!("unknown language {}", lang.to_string_lossy()),
    };
    let Some(target) = triple.to_str().and_then(zig_target) else {
        return format!("no zig target for {}", triple.to_string_lossy());
    };
    let settings = match read_settings(Path::new(settings)) {
        Ok(s) => s,
        Err(e) => return e,
    };
    if lang == Lang::Cxx
        && let Err(e) = runtime::ensure(&settings, target, &triple.to_string_lossy())
    {
        return e;
    }
    let line = args::command_line(target, lang, rest.iter().cloned(), &settings);
    let error = Command::new(&settings.zig)
        .args(line)
        .envs(settings.zig_environment())
        .exec();
    format!("running {}: {error}", settings.zig.display())
}

fn read_settings(path: &Path) -> Result<Settings, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("reading {}: {e}", path.display()))
}

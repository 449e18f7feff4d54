//! Linking each image binary's own crate list into it (cargo-auditable's
//! `.dep-v0` section, see [`super::crate_list`]) while cargo builds
//! many binaries and triples in one call. Cargo runs this program as its
//! `RUSTC_WRAPPER`; for the final crate of a binary whose list was prepared,
//! the wrapper adds the link arguments of that binary's object file, then
//! runs rustc (through the caller's own wrapper, if any). Cargo does not see
//! those arguments, so the wrapper also records, in the dep-info rustc
//! writes, an environment variable whose value is the digest of the object:
//! cargo relinks the binary whenever that value changes, appears or goes.

use std::ffi::{OsStr, OsString};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest as _, Sha256};

/// Set to `1` in cargo's environment: this program, run with it, is rustc's
/// wrapper.
pub const ACTIVE_VAR: &str = "SCRATCHPACK_RUSTC_WRAPPER_ACTIVE";
/// The directory holding the prepared objects and their arguments.
pub const DIR_VAR: &str = "SCRATCHPACK_DEP_V0_DIR";
/// The `RUSTC_WRAPPER` the caller had (sccache, say), run in turn.
pub const INNER_VAR: &str = "SCRATCHPACK_INNER_RUSTC_WRAPPER";

/// The variable that carries the digest of one binary's object: one per
/// (triple, package, crate name), so a change relinks only that binary.
pub fn digest_var(triple: &str, package: &str, crate_name: &str) -> String {
    let hash = Sha256::digest(format!("{triple}\0{package}\0{crate_name}"));
    let hex: String = hash[..10].iter().map(|b| format!("{b:02x}")).collect();
    format!("SCRATCHPACK_DEP_V0_{}", hex.to_uppercase())
}

/// Where the arguments for one binary are kept: `<dir>/<triple>/<package>/<crate>.args`.
pub fn args_path(dir: &Path, triple: &str, package: &str, crate_name: &str) -> PathBuf {
    dir.join(triple)
        .join(package)
        .join(format!("{crate_name}.args"))
}

/// The crate name rustc is given for a binary target.
pub fn crate_name(bin: &str) -> String {
    bin.replace('-', "_")
}

/// Becomes rustc's wrapper when cargo started this program as one, and
/// exits with rustc's status; returns otherwise.
pub fn run_if_requested() {
    // This runs in a process of its own, started by cargo with the
    // variables the image build set for it: they are read here, where the
    // wrapper runs, not passed down from the command line.
    if std::env::var_os(ACTIVE_VAR).as_deref() != Some(OsStr::new("1")) {
        return;
    }
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.is_empty() {
        return;
    }
    std::process::exit(match wrap(&args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            1
        }
    });
}

/// The value following `flag` in rustc's arguments.
fn value<'a>(args: &'a [OsString], flag: &str) -> Option<&'a str> {
    args.windows(2)
        .find(|w| w[0] == flag)
        .and_then(|w| w[1].to_str())
}

/// The compilation a rustc command line describes, when it links a binary
/// for a target.
struct BinCrate<'a> {
    name: &'a str,
    triple: &'a str,
    package: String,
}

fn bin_crate(rustc_args: &[OsString]) -> Option<BinCrate<'_>> {
    if value(rustc_args, "--crate-type") != Some("bin") {
        return None;
    }
    Some(BinCrate {
        name: value(rustc_args, "--crate-name")?,
        triple: value(rustc_args, "--target")?,
        package: std::env::var("CARGO_PKG_NAME").ok()?,
    })
}

/// The dep-info file rustc writes for this command line, if it writes one.
fn dep_info_path(rustc_args: &[OsString], name: &str) -> Option<PathBuf> {
    let emit = rustc_args
        .iter()
        .filter_map(|a| a.to_str()?.strip_prefix("--emit=").map(str::to_owned))
        .chain(value(rustc_args, "--emit").map(str::to_owned))
        .collect::<Vec<_>>()
        .join(",");
    let mut kinds = emit.split(',');
    if let Some(path) = kinds.clone().find_map(|k| k.strip_prefix("dep-info=")) {
        return Some(PathBuf::from(path));
    }
    if !kinds.any(|k| k == "dep-info") {
        return None;
    }
    let out_dir = value(rustc_args, "--out-dir")?;
    let extra = rustc_args
        .windows(2)
        .find_map(|w| {
            (w[0] == "-C")
                .then(|| w[1].to_str()?.strip_prefix("extra-filename="))
                .flatten()
        })
        .unwrap_or_default();
    Some(Path::new(out_dir).join(format!("{name}{extra}.d")))
}

fn wrap(args: &[OsString]) -> Result<i32, String> {
    let (program, rustc_args) = args.split_first().expect("checked non-empty");
    let target = bin_crate(rustc_args);
    let mut extra = Vec::new();
    let mut recorded = None;
    if let Some(bin) = &target {
        let var = digest_var(bin.triple, &bin.package, bin.name);
        let digest = std::env::var(&var).ok();
        if digest.is_some() {
            let dir = std::env::var_os(DIR_VAR).unwrap_or_default();
            let path = args_path(Path::new(&dir), bin.triple, &bin.package, bin.name);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                format!(
                    "linking the crate list into `{}`: reading {}: {e}",
                    bin.name,
                    path.display()
                )
            })?;
            extra.extend(text.lines().map(str::to_owned));
        }
        recorded = Some(match digest {
            Some(d) => format!("# env-dep:{var}={d}\n"),
            None => format!("# env-dep:{var}\n"),
        });
    }
    let mut cmd = match std::env::var_os(INNER_VAR).filter(|w| !w.is_empty()) {
        Some(inner) => {
            let mut cmd = Command::new(inner);
            cmd.arg(program);
            cmd
        }
        None => Command::new(program),
    };
    cmd.args(rustc_args).args(&extra).env_remove(ACTIVE_VAR);
    let status = cmd
        .status()
        .map_err(|e| format!("running {}: {e}", Path::new(program).display()))?;
    if status.success()
        && let (Some(bin), Some(line)) = (&target, recorded)
        && let Some(dep_info) = dep_info_path(rustc_args, bin.name)
        && dep_info.is_file()
    {
        let mut text =
            std::fs::read(&dep_info).map_err(|e| format!("reading {}: {e}", dep_info.display()))?;
        if !text.is_empty() && !text.ends_with(b"\n") {
            text.push(b'\n');
        }
        text.extend_from_slice(line.as_bytes());
        std::fs::File::create(&dep_info)
            .and_then(|mut f| f.write_all(&text))
            .map_err(|e| format!("recording the crate list in {}: {e}", dep_info.display()))?;
    }
    Ok(status.code().unwrap_or(101))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_dep_info_of_a_binary_is_found_where_rustc_writes_it() {
        let a = args(&[
            "--crate-name",
            "hello_world",
            "--edition=2024",
            "src/main.rs",
            "--crate-type",
            "bin",
            "--emit=dep-info,link",
            "-C",
            "extra-filename=-0123abcd",
            "--out-dir",
            "/t/x86_64-unknown-linux-musl/release/deps",
            "--target",
            "x86_64-unknown-linux-musl",
        ]);
        assert_eq!(
            dep_info_path(&a, "hello_world").unwrap(),
            Path::new("/t/x86_64-unknown-linux-musl/release/deps/hello_world-0123abcd.d")
        );
        let explicit = args(&["--emit=link,dep-info=/o/x.d"]);
        assert_eq!(dep_info_path(&explicit, "x").unwrap(), Path::new("/o/x.d"));
        assert_eq!(dep_info_path(&args(&["--emit=link"]), "x"), None);
    }

    #[test]
    fn each_binary_has_its_own_variable() {
        let a = digest_var("x86_64-unknown-linux-musl", "hello", "hello");
        assert!(a.starts_with("SCRATCHPACK_DEP_V0_"), "{a}");
        assert_eq!(a, digest_var("x86_64-unknown-linux-musl", "hello", "hello"));
        assert_ne!(
            a,
            digest_var("aarch64-unknown-linux-musl", "hello", "hello")
        );
        assert_ne!(a, digest_var("x86_64-unknown-linux-musl", "hello", "other"));
        assert_eq!(crate_name("my-tool"), "my_tool");
    }
}

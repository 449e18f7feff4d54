//! Running cargo, and what scratchpack reads of the `compiler-artifact`
//! and `build-script-executed` messages of `cargo build
//! --message-format=json`. Only the fields used are
//! declared; cargo's documented format adds fields freely, and unknown ones
//! are ignored.

use std::ffi::OsString;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::Command;

use serde::Deserialize;

use super::Env;

/// The cargo that runs this program (`CARGO`, which cargo sets), else the
/// one on `PATH`.
pub fn program(env: &Env) -> OsString {
    env.var_os("CARGO")
        .map_or_else(|| "cargo".into(), ToOwned::to_owned)
}

/// A command that runs [`program`].
pub fn command(env: &Env) -> Command {
    Command::new(program(env))
}

/// A target of a package (a binary, a library, a test...), as cargo's JSON
/// names it in `cargo metadata` and in build messages alike.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CargoTarget {
    pub name: String,
    #[serde(default)]
    pub kind: Vec<String>,
}

impl CargoTarget {
    pub fn is_bin(&self) -> bool {
        self.kind.iter().any(|k| k == "bin")
    }
}

/// A binary `cargo build --message-format=json` reports having built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltBinary {
    pub manifest_path: PathBuf,
    pub name: String,
    pub executable: PathBuf,
}

/// What a build reported: the binaries it built, and the `OUT_DIR` of
/// each build script it ran or found fresh.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Messages {
    pub binaries: Vec<BuiltBinary>,
    pub out_dirs: Vec<PathBuf>,
}

/// Reads the messages of a `cargo build --message-format=json` on
/// `stdout`; lines that are not JSON messages, and messages of other
/// kinds, are passed over.
pub fn read_messages(stdout: impl BufRead) -> Messages {
    #[derive(Deserialize)]
    struct Message {
        reason: String,
        #[serde(default)]
        manifest_path: Option<PathBuf>,
        #[serde(default)]
        target: Option<CargoTarget>,
        #[serde(default)]
        executable: Option<PathBuf>,
        #[serde(default)]
        out_dir: Option<PathBuf>,
    }
    let mut messages = Messages::default();
    for m in stdout
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| serde_json::from_str::<Message>(&line).ok())
    {
        match m.reason.as_str() {
            "compiler-artifact" => {
                let (Some(target), Some(manifest_path), Some(executable)) = (
                    m.target.filter(CargoTarget::is_bin),
                    m.manifest_path,
                    m.executable,
                ) else {
                    continue;
                };
                messages.binaries.push(BuiltBinary {
                    manifest_path,
                    name: target.name,
                    executable,
                });
            }
            "build-script-executed" => messages.out_dirs.extend(m.out_dir),
            _ => {}
        }
    }
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_binary_artifacts_with_an_executable_are_taken() {
        let stdout = concat!(
            r#"{"reason":"compiler-artifact","manifest_path":"/w/a/Cargo.toml","target":{"name":"a","kind":["lib"]},"executable":null,"fresh":true}"#,
            "\n",
            "not json at all\n",
            r#"{"reason":"compiler-message","message":{}}"#,
            "\n",
            r#"{"reason":"compiler-artifact","manifest_path":"/w/a/Cargo.toml","target":{"name":"tool","kind":["bin"],"src_path":"/w/a/src/main.rs"},"executable":"/t/release/tool","fresh":false}"#,
            "\n",
            r#"{"reason":"build-script-executed","package_id":"p","linked_libs":[],"linked_paths":[],"cfgs":[],"env":[],"out_dir":"/t/release/build/a-1/out"}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
            "\n",
        );
        let messages = read_messages(stdout.as_bytes());
        assert_eq!(
            messages.binaries,
            [BuiltBinary {
                manifest_path: "/w/a/Cargo.toml".into(),
                name: "tool".into(),
                executable: "/t/release/tool".into(),
            }]
        );
        assert_eq!(
            messages.out_dirs,
            [PathBuf::from("/t/release/build/a-1/out")]
        );
    }

    #[test]
    fn the_program_is_the_one_cargo_names() {
        assert_eq!(program(&Env::default()), "cargo");
        let env = Env::from_vars([("CARGO", "/toolchain/bin/cargo")]);
        assert_eq!(program(&env), "/toolchain/bin/cargo");
    }
}

//! Compiling the binaries: one `cargo build` for every image and target
//! triple that share build settings (cargo builds several `--target`s in one
//! invocation), with rustflags that keep the host's paths out of the binary. Behind the [`Compiler`] trait so image assembly can be
//! tested without running cargo.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cargo_metadata::Message;

use crate::manifest::BuildSettings;
use crate::shell::Shell;

/// One binary to compile.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Request {
    pub package: String,
    pub bin: String,
    pub triple: String,
    pub settings: BuildSettings,
}

/// Produces the executables for a list of requests.
pub trait Compiler {
    /// Returns one executable path per request, in the same order.
    fn compile(&self, requests: &[Request]) -> Result<Vec<PathBuf>, CompileError>;
}

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("running `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}); cargo's messages are above{hint}")]
    Failed {
        command: String,
        status: String,
        /// What to do about a failure scratchpack recognised, or empty.
        hint: String,
    },
    #[error("cargo built no binary `{bin}` of package `{package}` for {triple}")]
    Missing {
        package: String,
        bin: String,
        triple: String,
    },
    #[error(
        "the Rust target {triple} is not installed and `rustup target add {triple}` failed{hint}"
    )]
    TargetMissing { triple: String, hint: String },
}

/// The real compiler: cargo, run in the workspace.
pub struct Cargo<'a> {
    pub workspace_root: &'a Path,
    pub target_dir: &'a Path,
    /// Package name -> its `Cargo.toml`, to tell artifacts apart.
    pub manifests: &'a BTreeMap<String, PathBuf>,
    pub shell: Shell,
}

impl Compiler for Cargo<'_> {
    fn compile(&self, requests: &[Request]) -> Result<Vec<PathBuf>, CompileError> {
        // Group requests that can share one invocation: same build settings.
        let mut groups: BTreeMap<&BuildSettings, Vec<&Request>> = BTreeMap::new();
        for r in requests {
            groups.entry(&r.settings).or_default().push(r);
        }
        let mut built: BTreeMap<(&str, &BuildSettings, &str, &str), PathBuf> = BTreeMap::new();
        for (settings, group) in &groups {
            let mut triples: Vec<&str> = group.iter().map(|r| r.triple.as_str()).collect();
            triples.sort();
            triples.dedup();
            self.ensure_targets(&triples)?;
            for artifact in self.build(&triples, settings, group)? {
                let Some(r) = group.iter().find(|r| {
                    self.manifests.get(&r.package) == Some(&artifact.manifest)
                        && r.bin == artifact.bin
                        && artifact.exe.starts_with(self.target_dir.join(&r.triple))
                }) else {
                    continue;
                };
                built.insert((&r.triple, settings, &r.package, &r.bin), artifact.exe);
            }
        }
        requests
            .iter()
            .map(|r| {
                built
                    .get(&(
                        r.triple.as_str(),
                        &r.settings,
                        r.package.as_str(),
                        r.bin.as_str(),
                    ))
                    .cloned()
                    .ok_or_else(|| CompileError::Missing {
                        package: r.package.clone(),
                        bin: r.bin.clone(),
                        triple: r.triple.clone(),
                    })
            })
            .collect()
    }
}

/// A binary cargo reported building.
struct Artifact {
    manifest: PathBuf,
    bin: String,
    exe: PathBuf,
}

impl Cargo<'_> {
    fn cargo() -> PathBuf {
        std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from)
    }

    /// Installs the standard library of each target with rustup when it is
    /// missing.
    fn ensure_targets(&self, triples: &[&str]) -> Result<(), CompileError> {
        // Under rustup, which names the toolchain it runs in the environment,
        // the toolchain's own directory answers without starting rustc, which
        // would cost a no-op run as much as cargo's freshness check.
        let rustup_sysroot = match (
            std::env::var_os("RUSTC"),
            std::env::var_os("RUSTUP_HOME"),
            std::env::var_os("RUSTUP_TOOLCHAIN"),
        ) {
            (None, Some(home), Some(toolchain)) => {
                Some(Path::new(&home).join("toolchains").join(toolchain))
            }
            _ => None,
        };
        if rustup_sysroot.is_some_and(|s| {
            triples
                .iter()
                .all(|t| s.join("lib/rustlib").join(t).is_dir())
        }) {
            return Ok(());
        }
        let sysroot = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
            .args(["--print", "sysroot"])
            .current_dir(self.workspace_root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
        for triple in triples {
            let installed = sysroot
                .as_ref()
                .is_some_and(|s| s.join("lib/rustlib").join(triple).is_dir());
            if !installed {
                self.install_target(triple)?;
            }
        }
        Ok(())
    }

    fn install_target(&self, triple: &str) -> Result<(), CompileError> {
        self.shell.status(
            "Installing",
            format!("Rust target {triple} (rustup target add {triple})"),
        );
        let status = Command::new("rustup")
            .args(["target", "add", triple])
            .current_dir(self.workspace_root)
            .stdout(Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(CompileError::TargetMissing {
                triple: triple.to_owned(),
                hint: format!(" ({s})"),
            }),
            Err(e) => Err(CompileError::TargetMissing {
                triple: triple.to_owned(),
                hint: format!(
                    ": {e}; install rustup, or add the target's standard library by hand"
                ),
            }),
        }
    }

    /// Runs one cargo build for every triple of a group.
    fn build(
        &self,
        triples: &[&str],
        settings: &BuildSettings,
        group: &[&Request],
    ) -> Result<Vec<Artifact>, CompileError> {
        let mut cmd = Command::new(Self::cargo());
        cmd.current_dir(self.workspace_root)
            .args(["build", "--message-format=json-render-diagnostics"])
            .args(["--profile", &settings.profile]);
        for triple in triples {
            cmd.args(["--target", triple]);
        }
        let mut packages: Vec<&str> = group.iter().map(|r| r.package.as_str()).collect();
        packages.sort();
        packages.dedup();
        for p in &packages {
            cmd.args(["--package", p]);
        }
        let mut bins: Vec<&str> = group.iter().map(|r| r.bin.as_str()).collect();
        bins.sort();
        bins.dedup();
        for bin in bins {
            cmd.args(["--bin", bin]);
        }
        if self.shell.is_quiet() {
            cmd.arg("--quiet");
        }
        if !settings.default_features {
            cmd.arg("--no-default-features");
        }
        for f in &settings.features {
            // A bare feature name belongs to every package built here.
            if f.contains('/') {
                cmd.args(["--features", f]);
            } else {
                for p in &packages {
                    cmd.args(["--features", &format!("{p}/{f}")]);
                }
            }
        }
        cmd.env(
            "CARGO_ENCODED_RUSTFLAGS",
            self.rustflags(settings).join("\x1f"),
        );
        for triple in triples.iter().filter(|t| is_foreign(t)) {
            // rust-lld ships with rustc and links musl's self-contained objects,
            // so no C cross toolchain is needed for pure-Rust crates.
            let var = format!(
                "CARGO_TARGET_{}_LINKER",
                triple.to_uppercase().replace(['-', '.'], "_")
            );
            if std::env::var_os(&var).is_none() {
                cmd.env(var, "rust-lld");
            }
        }
        // cargo's messages are passed through line by line, and watched for
        // a C compiler that a build script could not find.
        if self.shell.color() {
            cmd.arg("--color=always");
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let command = format!(
            "cargo build --target {} (for {})",
            triples.join(" --target "),
            packages.join(", ")
        );
        self.shell.status(
            "Building",
            format!(
                "{} for {} ({} profile)",
                packages.join(", "),
                triples.join(", "),
                settings.profile
            ),
        );
        let mut child = cmd.spawn().map_err(|source| CompileError::Spawn {
            command: command.clone(),
            source,
        })?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let watcher = std::thread::spawn(move || relay_stderr(BufReader::new(stderr)));
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut artifacts = Vec::new();
        for message in Message::parse_stream(BufReader::new(stdout)) {
            let Ok(message) = message else { continue };
            if let Message::CompilerArtifact(a) = message
                && a.target.is_bin()
                && let Some(exe) = a.executable
            {
                artifacts.push(Artifact {
                    manifest: a.manifest_path.into_std_path_buf(),
                    bin: a.target.name,
                    exe: exe.into_std_path_buf(),
                });
            }
        }
        let status = child.wait().map_err(|source| CompileError::Spawn {
            command: command.clone(),
            source,
        })?;
        let missing_tool = watcher.join().unwrap_or(None);
        if !status.success() {
            return Err(CompileError::Failed {
                command,
                status: status.to_string(),
                hint: missing_tool
                    .map(|tool| c_compiler_hint(&tool, triples))
                    .unwrap_or_default(),
            });
        }
        Ok(artifacts)
    }

    /// The flags every image build gets: the caller's own `RUSTFLAGS` (cargo
    /// ignores them once the encoded form is set), the host paths remapped,
    /// and the image's extra flags last so they win.
    fn rustflags(&self, settings: &BuildSettings) -> Vec<String> {
        let mut flags: Vec<String> = match std::env::var("CARGO_ENCODED_RUSTFLAGS") {
            Ok(s) if !s.is_empty() => s.split('\x1f').map(str::to_owned).collect(),
            _ => std::env::var("RUSTFLAGS")
                .map(|s| s.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
        };
        // Where the checkout, the target directory and cargo's registry live
        // must not show in the binary: panic locations and debug info would
        // otherwise make two checkouts give different bytes.
        let mut remaps = vec![(self.workspace_root.to_owned(), "/workspace")];
        if !self.target_dir.starts_with(self.workspace_root) {
            remaps.push((self.target_dir.to_owned(), "/target"));
        }
        if let Some(home) = cargo_home() {
            remaps.push((home, "/cargo"));
        }
        for (from, to) in remaps {
            flags.push(format!("--remap-path-prefix={}={to}", from.display()));
        }
        flags.extend(settings.rustflags.iter().cloned());
        flags
    }
}

/// Copies cargo's stderr to ours, returning the first C compiler or linker a
/// build reported missing (cc-rs says `failed to find tool "<name>"`, rustc
/// says ``linker `<name>` not found``).
fn relay_stderr(reader: impl BufRead) -> Option<String> {
    let mut missing = None;
    let mut out = std::io::stderr();
    for line in reader.split(b'\n') {
        let Ok(mut line) = line else { break };
        if missing.is_none() {
            missing = missing_tool(&String::from_utf8_lossy(&line));
        }
        line.push(b'\n');
        let _ = out.write_all(&line);
    }
    missing
}

fn missing_tool(line: &str) -> Option<String> {
    let between = |start: &str, end: char| {
        let rest = &line[line.find(start)? + start.len()..];
        Some(rest[..rest.find(end)?].to_owned())
    };
    between("failed to find tool \"", '"').or_else(|| {
        line.contains("` not found")
            .then(|| between("linker `", '`'))
            .flatten()
    })
}

fn c_compiler_hint(tool: &str, triples: &[&str]) -> String {
    let foreign: Vec<&str> = triples.iter().copied().filter(|t| is_foreign(t)).collect();
    let Some(triple) = foreign.first() else {
        return format!("\nhelp: a build script needs `{tool}`, which is not installed");
    };
    let var = format!("CC_{}", triple.replace(['-', '.'], "_"));
    format!(
        "\nhelp: a crate compiles C code for {triple}, which needs the C cross compiler \
         `{tool}`: install one (a musl cross toolchain that provides `{tool}`), or point \
         {var} at a C compiler for that target (for example `clang --target={}`); \
         pure-Rust crates need none, rust-lld links them",
        triple.replace("-unknown-", "-")
    )
}

fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
}

/// Whether a triple's architecture differs from the host's.
fn is_foreign(triple: &str) -> bool {
    let arch = triple.split('-').next().unwrap_or_default();
    arch != std::env::consts::ARCH
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_missing_c_tools() {
        assert_eq!(
            missing_tool(
                "  error occurred in cc-rs: failed to find tool \"aarch64-linux-musl-gcc\": No such file or directory (os error 2)"
            )
            .as_deref(),
            Some("aarch64-linux-musl-gcc")
        );
        assert_eq!(
            missing_tool("error: linker `aarch64-linux-musl-gcc` not found").as_deref(),
            Some("aarch64-linux-musl-gcc")
        );
        assert_eq!(missing_tool("error[E0425]: cannot find value `x`"), None);
        let hint = c_compiler_hint("aarch64-linux-musl-gcc", &["aarch64-unknown-linux-musl"]);
        assert!(hint.contains("CC_aarch64_unknown_linux_musl"), "{hint}");
        assert!(hint.contains("clang --target=aarch64-linux-musl"), "{hint}");
    }

    #[test]
    fn foreign_triples_are_told_apart() {
        let host = std::env::consts::ARCH;
        assert!(!is_foreign(&format!("{host}-unknown-linux-musl")));
        assert!(is_foreign("riscv64gc-unknown-linux-musl"));
    }
}

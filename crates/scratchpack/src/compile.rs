//! Compiling the binaries: one `cargo build` for the binaries that share build
//! settings and want the same target triples (cargo builds several
//! `--target`s in one invocation, each for every selected package), with
//! rustflags that keep the host's paths out of the binary and rust-lld as the
//! linker for foreign triples. Behind the [`Compiler`] trait so image assembly
//! can be tested without running cargo.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::manifest::BuildSettings;
use crate::shell::Shell;
use crate::toolchain::rustup::TargetError;
use crate::toolchain::{self, Env, answers, crates};

mod build_scripts;
pub mod c_compilers;
pub mod crate_list;
pub mod dep_v0;
pub mod interrupt;

use crate::toolchain::cargo_config::CargoConfig;
use crate::toolchain::cc::{C_SOURCE_DATE_EPOCH, CmakeError, LibclangError, Wrappers, ZigError};
pub use c_compilers::CCompilers;
use crate_list::Linker;

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
    #[error("embedding the crate list of `{package}` for {triple}: {message}")]
    CrateList {
        package: String,
        triple: String,
        message: String,
    },
    #[error(transparent)]
    TargetMissing(#[from] TargetError),
    #[error(transparent)]
    Zig(ZigError),
    #[error(transparent)]
    Cmake(CmakeError),
    #[error(transparent)]
    Libclang(LibclangError),
    #[error("the build was interrupted")]
    Interrupted,
    #[error("keeping {} apart from the same binary built under other settings", path.display())]
    Keep {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The real compiler: cargo, run in the workspace.
pub struct Cargo<'a> {
    pub env: &'a Env,
    pub workspace_root: &'a Path,
    pub target_dir: &'a Path,
    /// Package name -> its `Cargo.toml`, to tell artifacts apart.
    pub manifests: &'a BTreeMap<String, PathBuf>,
    /// Who compiles C, decided for the whole run.
    pub c_compilers: &'a CCompilers,
    pub shell: Shell,
}

/// One cargo invocation: every binary in it is built for every triple in
/// it, so a binary shares an invocation only with binaries that want exactly
/// the same triples and build settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation<'r> {
    pub settings: &'r BuildSettings,
    /// The rustflags cargo's configuration or the caller's environment
    /// give these triples (see [`CargoConfig`]): the same for each.
    pub user_flags: Vec<String>,
    /// Flags every triple of the call needs (see [`triple_rustflags`]);
    /// cargo takes one set of rustflags per call, so triples that need
    /// different ones go to different calls.
    pub triple_flags: &'static [&'static str],
    /// Sorted and without duplicates.
    pub triples: Vec<&'r str>,
    /// `(package, bin)`, sorted and without duplicates.
    pub binaries: Vec<(&'r str, &'r str)>,
}

impl Invocation<'_> {
    pub fn packages(&self) -> Vec<&str> {
        let mut packages: Vec<&str> = self.binaries.iter().map(|(p, _)| *p).collect();
        packages.dedup();
        packages
    }

    pub fn bins(&self) -> Vec<&str> {
        let mut bins: Vec<&str> = self.binaries.iter().map(|(_, b)| *b).collect();
        bins.sort();
        bins.dedup();
        bins
    }
}

/// Groups requests into as few cargo invocations as can build them without
/// building any binary for a triple none of its images asked for: cargo
/// builds every selected package for every `--target` of one call, so an
/// amd64-only image sharing a call with an arm64 one would be compiled (and
/// could fail to link) for arm64. `user_flags` are each triple's rustflags
/// from cargo's configuration or the environment (none when absent):
/// triples whose flags differ go to calls of their own.
pub fn invocations<'r>(
    requests: &'r [Request],
    user_flags: &BTreeMap<String, Vec<String>>,
) -> Vec<Invocation<'r>> {
    // Each binary (under given settings) and the triples it is wanted for.
    let mut wanted: BTreeMap<(&BuildSettings, &str, &str), Vec<&str>> = BTreeMap::new();
    for r in requests {
        wanted
            .entry((&r.settings, &r.package, &r.bin))
            .or_default()
            .push(&r.triple);
    }
    let mut calls: BTreeMap<(&BuildSettings, TripleFlags<'_>, Vec<&str>), Binaries<'_>> =
        BTreeMap::new();
    let none = Vec::new();
    for ((settings, package, bin), mut triples) in wanted {
        triples.sort_unstable();
        triples.dedup();
        let mut by_flags: BTreeMap<TripleFlags<'_>, Vec<&str>> = BTreeMap::new();
        for triple in triples {
            let user = user_flags.get(triple).unwrap_or(&none);
            by_flags
                .entry((user, triple_rustflags(triple)))
                .or_default()
                .push(triple);
        }
        for (flags, triples) in by_flags {
            calls
                .entry((settings, flags, triples))
                .or_default()
                .push((package, bin));
        }
    }
    calls
        .into_iter()
        .map(
            |((settings, (user_flags, triple_flags), triples), binaries)| Invocation {
                settings,
                user_flags: user_flags.clone(),
                triple_flags,
                triples,
                binaries,
            },
        )
        .collect()
}

/// The binaries (triple, package, bin) that requests want under more than
/// one set of build settings: cargo writes each of their builds to one path.
fn built_twice(requests: &[Request]) -> BTreeSet<(&str, &str, &str)> {
    let mut settings: BTreeMap<(&str, &str, &str), BTreeSet<&BuildSettings>> = BTreeMap::new();
    for r in requests {
        settings
            .entry((&r.triple, &r.package, &r.bin))
            .or_default()
            .insert(&r.settings);
    }
    settings
        .into_iter()
        .filter(|(_, s)| s.len() > 1)
        .map(|(binary, _)| binary)
        .collect()
}

/// A triple's flags from cargo's configuration, and those it needs to
/// link statically.
type TripleFlags<'f> = (&'f Vec<String>, &'static [&'static str]);
type Binaries<'r> = Vec<(&'r str, &'r str)>;

/// Flags a triple needs for a static executable beyond its defaults. Every
/// musl triple is told to link statically, the ones that already do by
/// default (most) and the newer ones that follow the host convention and
/// would link dynamically (riscv64): the flag is then the same for all of
/// them and one cargo call builds them all. Other triples (a glibc one an
/// image names itself) are left as they are. An image's own rustflags come
/// after these, so they can still say otherwise.
pub fn triple_rustflags(triple: &str) -> &'static [&'static str] {
    if triple.contains("-musl") {
        &["-Ctarget-feature=+crt-static"]
    } else {
        &[]
    }
}

impl Compiler for Cargo<'_> {
    fn compile(&self, requests: &[Request]) -> Result<Vec<PathBuf>, CompileError> {
        let mut built: BTreeMap<(&str, &BuildSettings, &str, &str), PathBuf> = BTreeMap::new();
        let mut triples: Vec<&str> = requests.iter().map(|r| r.triple.as_str()).collect();
        triples.sort_unstable();
        triples.dedup();
        let calls = invocations(requests, &self.user_flags(&triples));
        let sysroot =
            toolchain::rustup::ensure_targets(self.env, self.workspace_root, &triples, self.shell)?;
        let toolchain_remap = sysroot.as_deref().and_then(|s| {
            rust_src_remap(
                self.env,
                s,
                &answers::dir(self.target_dir).join("rustc-commit"),
            )
        });
        let wrappers = match self.c_compilers {
            CCompilers::Zig(zig, cmake, libclang) => Some(c_compilers::prepare(
                (zig, cmake.as_ref(), libclang.as_ref()),
                self.env,
                self.target_dir,
                self.path_maps(),
                &triples,
                self.shell,
            )?),
            CCompilers::NotNeeded | CCompilers::Declined => None,
        };
        let shared = built_twice(requests);
        for call in &calls {
            for artifact in self.build(call, toolchain_remap.as_deref(), wrappers.as_ref())? {
                let Some(&(package, bin)) = call.binaries.iter().find(|(package, bin)| {
                    self.manifests.get(*package) == Some(&artifact.manifest) && *bin == artifact.bin
                }) else {
                    continue;
                };
                let Some(triple) = call
                    .triples
                    .iter()
                    .find(|t| artifact.exe.starts_with(self.build_dir().join(t)))
                else {
                    continue;
                };
                let exe = if shared.contains(&(*triple, package, bin)) {
                    self.keep_apart(call.settings, triple, &artifact.exe)?
                } else {
                    artifact.exe
                };
                built.insert((triple, call.settings, package, bin), exe);
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

/// The flag that maps the toolchain's `rust-src` copy of the standard
/// library to `/rustc/<commit>`, the path the prebuilt standard library
/// already records. With the `rust-src` component installed, rustc points
/// the panic locations of generic standard-library code it instantiates at
/// that local copy, which would put the toolchain's host path (and whether
/// `rust-src` happens to be installed) into the binary. The commit comes from
/// `rustc -vV`, asked once per toolchain binary and kept at `record`, so a
/// no-op run starts no rustc.
fn rust_src_remap(env: &Env, sysroot: &Path, record: &Path) -> Option<String> {
    let src = sysroot.join("lib/rustlib/src/rust");
    if !src.is_dir() {
        return None;
    }
    let commit = toolchain::rustc::commit(env, sysroot, record)?;
    Some(format!(
        "--remap-path-prefix={}=/rustc/{commit}",
        src.display()
    ))
}

/// What preparing one package's crate lists for one triple gives: the
/// variables naming each object's digest, and the files it wrote.
type Prepared = (Vec<(String, String)>, Vec<PathBuf>);

/// The crate-list variables of one call, with what they were made from.
#[derive(serde::Serialize, serde::Deserialize)]
struct ListsRecord {
    /// A digest of the call's triples, binaries and features.
    question: String,
    /// Cargo.lock's digest and each manifest on disk's, as
    /// [`crates::inputs`] read them.
    lock: String,
    on_disk: BTreeMap<PathBuf, String>,
    /// Each object and argument file written, with its stamp.
    files: BTreeMap<PathBuf, String>,
    vars: Vec<(String, String)>,
}

impl ListsRecord {
    /// The recorded variables, if the record answers `question` and nothing
    /// it was made from, nor any file it wrote, has changed.
    fn current(
        path: &Path,
        question: &str,
        workspace_root: &Path,
    ) -> Option<Vec<(String, String)>> {
        let bytes = crate::record::read_record(path, 16 << 20)?;
        let record: ListsRecord = serde_json::from_slice(&bytes).ok()?;
        let current = record.question == question
            && record
                .files
                .iter()
                .all(|(f, stamp)| answers::file_stamp(f).as_deref() == Some(stamp.as_str()))
            && crates::inputs_unchanged(workspace_root, &record.lock, &record.on_disk);
        current.then_some(record.vars)
    }
}

/// Where image binaries are built: a target directory of their own, inside
/// the workspace's. The builds go through this program as rustc's wrapper,
/// and cargo keeps what it learnt from rustc (`rustc -vV`, each target's
/// file names) in one cache per target directory, valid for one wrapper:
/// sharing the workspace's would have `cargo xtask` itself and the image
/// builds discard each other's answers and ask rustc again on every run.
/// The image builds share no artifacts with the workspace's own builds
/// anyway: their rustflags differ.
pub fn build_dir(target_dir: &Path) -> PathBuf {
    target_dir.join("scratchpack").join("cargo")
}

/// A binary cargo reported building.
struct Artifact {
    manifest: PathBuf,
    bin: String,
    exe: PathBuf,
}

impl Cargo<'_> {
    /// Runs one cargo build: every binary of `call` for every triple of it.
    fn build(
        &self,
        call: &Invocation<'_>,
        toolchain_remap: Option<&str>,
        wrappers: Option<&Wrappers>,
    ) -> Result<Vec<Artifact>, CompileError> {
        let mut cmd = self.command(call);
        self.set_environment(&mut cmd, call, toolchain_remap, wrappers)?;
        self.run(cmd, call)
    }

    /// `cargo build` with the arguments of `call`: its profile, triples,
    /// packages, binaries and features, in the image builds' own target
    /// directory, printing JSON messages.
    fn command(&self, call: &Invocation<'_>) -> Command {
        let settings = call.settings;
        let mut cmd = toolchain::cargo::command(self.env);
        cmd.current_dir(self.workspace_root)
            .args(["build", "--message-format=json-render-diagnostics"])
            .args(["--profile", &settings.profile])
            .arg("--target-dir")
            .arg(self.build_dir());
        for triple in &call.triples {
            cmd.args(["--target", triple]);
        }
        let packages = call.packages();
        for p in &packages {
            cmd.args(["--package", p]);
        }
        for bin in call.bins() {
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
        // cargo's messages are passed through line by line, and watched for
        // a C compiler that a build script could not find.
        if self.shell.color() {
            cmd.arg("--color=always");
        }
        cmd
    }

    /// The variables of `call`'s build: this program as rustc's wrapper
    /// (with the crate lists it links in), the rustflags, rust-lld as the
    /// linker of foreign triples, and the C compilers.
    fn set_environment(
        &self,
        cmd: &mut Command,
        call: &Invocation<'_>,
        toolchain_remap: Option<&str>,
        wrappers: Option<&Wrappers>,
    ) -> Result<(), CompileError> {
        // Every build goes through the wrapper, auditable or not: the
        // variable it records for each binary is then set or unset, and
        // cargo relinks when that changes.
        let exe = std::env::current_exe().map_err(|source| CompileError::Spawn {
            command: "locating this program to wrap rustc".to_owned(),
            source,
        })?;
        cmd.env(
            dep_v0::INNER_VAR,
            self.env.rustc_wrapper().unwrap_or_default(),
        )
        .env("RUSTC_WRAPPER", exe)
        .env(dep_v0::ACTIVE_VAR, "1")
        .env(dep_v0::DIR_VAR, self.dep_v0_dir());
        if call.settings.auditable {
            for (var, digest) in self.prepare_crate_lists(call)? {
                cmd.env(var, digest);
            }
        }
        let mut flags = self.rustflags(call, toolchain_remap);
        if let Some(w) = wrappers {
            // Where the C++ runtime and the empty libatomic.a are.
            flags.push(format!("-Lnative={}", w.lib_dir().display()));
            for triple in &call.triples {
                cmd.envs(w.variables(self.env, triple));
            }
        }
        if let (CCompilers::Zig(_, cmake, libclang), Some(w)) = (self.c_compilers, wrappers) {
            if let Some(cmake) = cmake {
                cmd.envs(cmake.variables(self.env, &w.cmake_shim()));
            }
            if let Some(libclang) = libclang {
                cmd.envs(libclang.variables());
            }
        }
        cmd.env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"));
        // Build scripts see this epoch, never the image's: clang writes it
        // into `__DATE__`, and cc-rs (like shadow-rs) reruns its build
        // script when it changes, so the image's epoch changes the image's
        // timestamps and nothing that is compiled.
        cmd.env("SOURCE_DATE_EPOCH", C_SOURCE_DATE_EPOCH);
        for triple in call.triples.iter().filter(|t| is_foreign(t)) {
            // rust-lld ships with rustc and links musl's self-contained objects,
            // so no C cross toolchain is needed for pure-Rust crates.
            if self.env.linker(triple).is_none() {
                cmd.env(toolchain::linker_var(triple), "rust-lld");
            }
        }
        Ok(())
    }

    /// Runs `cmd`, the build of `call`, passing cargo's messages on and
    /// reading the binaries it reports.
    fn run(&self, mut cmd: Command, call: &Invocation<'_>) -> Result<Vec<Artifact>, CompileError> {
        let (triples, packages) = (&call.triples, call.packages());
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
                call.settings.profile
            ),
        );
        let mut build = interrupt::spawn(&mut cmd).map_err(|source| match source.kind() {
            std::io::ErrorKind::Interrupted => CompileError::Interrupted,
            _ => CompileError::Spawn {
                command: command.clone(),
                source,
            },
        })?;
        let child = &mut build.child;
        let stderr = child.stderr.take().expect("stderr is piped");
        let watcher = std::thread::spawn(move || relay_stderr(BufReader::new(stderr)));
        let stdout = child.stdout.take().expect("stdout is piped");
        let messages = toolchain::cargo::read_messages(BufReader::new(stdout));
        let artifacts: Vec<Artifact> = messages
            .binaries
            .into_iter()
            .map(|b| Artifact {
                manifest: b.manifest_path,
                bin: b.name,
                exe: b.executable,
            })
            .collect();
        let status = child.wait().map_err(|source| CompileError::Spawn {
            command: command.clone(),
            source,
        })?;
        let recognised = watcher.join().unwrap_or(None);
        drop(build);
        if interrupt::interrupted() {
            return Err(CompileError::Interrupted);
        }
        if !status.success() {
            let written = [Some(self.target_dir.to_owned()), self.env.user_cache_dir()];
            let cause = recognised.map(|cause| match cause {
                Recognised::MissingTool(tool) => {
                    c_compilers::hint(&tool, triples, self.c_compilers)
                }
                Recognised::NoSystemLibrary { krate } => {
                    c_compilers::system_library_hint(&krate, triples, &packages)
                }
                Recognised::GnuCxxLibrary => c_compilers::GNU_CXX_HINT.to_owned(),
            });
            let space = low_space_hint(written.iter().flatten());
            return Err(CompileError::Failed {
                command,
                status: status.to_string(),
                hint: cause.into_iter().chain(space).collect(),
            });
        }
        build_scripts::settle(&messages.out_dirs);
        Ok(artifacts)
    }

    fn build_dir(&self) -> PathBuf {
        build_dir(self.target_dir)
    }

    /// A second name for `exe`, the binary cargo just built under
    /// `settings`, that the next call cannot replace: cargo writes a binary
    /// built under other features or flags to the same path. A hard link
    /// (cargo replaces its file rather than writing into it), else a copy,
    /// made under a name of this process and renamed into place, so that a
    /// run reading the kept binary never sees it half written.
    fn keep_apart(
        &self,
        settings: &BuildSettings,
        triple: &str,
        exe: &Path,
    ) -> Result<PathBuf, CompileError> {
        let key = crate::digest::Digest::of(format!("{settings:?}").as_bytes());
        let dir = self
            .target_dir
            .join("scratchpack")
            .join("binaries")
            .join(&key.hex()[..16])
            .join(triple);
        let name = exe.file_name().unwrap_or_default();
        let kept = dir.join(name);
        let mut staged = std::ffi::OsString::from(format!(".{}.", std::process::id()));
        staged.push(name);
        let staged = dir.join(staged);
        let keep = || -> std::io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            match std::fs::remove_file(&staged) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            std::fs::hard_link(exe, &staged).or_else(|_| std::fs::copy(exe, &staged).map(drop))?;
            std::fs::rename(&staged, &kept)?;
            // rename(2) leaves both names when they are one file already
            // (a run where cargo rebuilt nothing).
            match std::fs::remove_file(&staged) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        };
        keep().map_err(|source| CompileError::Keep {
            path: kept.clone(),
            source,
        })?;
        Ok(kept)
    }

    /// The host paths rustc and the C compiler map out of what they write.
    fn path_maps(&self) -> Vec<(PathBuf, String)> {
        c_compilers::path_maps(self.env, self.workspace_root, &self.build_dir())
    }

    fn dep_v0_dir(&self) -> PathBuf {
        self.target_dir.join("scratchpack-dep-v0")
    }

    /// Writes, for every binary and triple of `call`, the object holding its
    /// crate list and the arguments that link it in; returns the variable
    /// that tells the wrapper about each, valued with the digest of what it
    /// links.
    ///
    /// What a call's lists depend on (Cargo.lock, the manifests on disk, the
    /// question) is recorded with the variables; a run where none of it
    /// changed and every object and argument file is as it was written
    /// reuses them, reading no crate tree and writing no object.
    fn prepare_crate_lists(
        &self,
        call: &Invocation<'_>,
    ) -> Result<Vec<(String, String)>, CompileError> {
        let digest = |text: &str| crate::digest::sha256_hex(text.as_bytes());
        let call_text = format!(
            "{}\n{:?}\n{:?}\n{:?}\n{}",
            self.workspace_root.display(),
            call.triples,
            call.binaries,
            call.settings.features,
            call.settings.default_features
        );
        // A call's record is replaced, not added to, when this program is
        // rebuilt; a rebuilt program does not trust it.
        let record_path = self
            .dep_v0_dir()
            .join(format!("lists-{}.json", &digest(&call_text)[..32]));
        let question = digest(&format!(
            "{}\n{}\n{call_text}",
            env!("CARGO_PKG_VERSION"),
            answers::program_stamp()
        ));
        if let Some(vars) = ListsRecord::current(&record_path, &question, self.workspace_root) {
            return Ok(vars);
        }
        // Asked once, before the lists are prepared side by side: each of
        // them needs what `cargo metadata` says, and would otherwise ask it
        // at the same time as the others.
        let inputs = crates::inputs(self.env, self.workspace_root, self.target_dir);
        let mut vars = Vec::new();
        let mut files = BTreeMap::new();
        for (v, written) in self.prepare_crate_lists_anew(call)? {
            vars.extend(v);
            files.extend(
                written
                    .into_iter()
                    .filter_map(|f| answers::file_stamp(&f).map(|s| (f, s))),
            );
        }
        if let Ok((lock, on_disk)) = inputs {
            let record = ListsRecord {
                question,
                lock,
                on_disk,
                files,
                vars: vars.clone(),
            };
            if let Ok(bytes) = serde_json::to_vec(&record) {
                // Only a cache: a failed write prepares the lists again next time.
                let _ = crate::output::write_atomic(&record_path, &bytes);
            }
        }
        Ok(vars)
    }

    /// Every package and triple of `call`, prepared side by side (each runs
    /// its own `cargo tree` on a first run), as many at once as there are
    /// cores.
    fn prepare_crate_lists_anew(
        &self,
        call: &Invocation<'_>,
    ) -> Result<Vec<Prepared>, CompileError> {
        let jobs: Vec<(&str, &str)> = call
            .triples
            .iter()
            .flat_map(|t| call.packages().into_iter().map(move |p| (*t, p)))
            .collect();
        let at_once = std::thread::available_parallelism().map_or(1, usize::from);
        let mut prepared = Vec::new();
        for batch in jobs.chunks(at_once) {
            let results: Vec<Result<Prepared, CompileError>> = std::thread::scope(|s| {
                let handles: Vec<_> = batch
                    .iter()
                    .map(|(triple, package)| {
                        s.spawn(move || self.prepare_crate_list(call, triple, package))
                    })
                    .collect();
                handles
                    .into_iter()
                    .zip(batch)
                    .map(|(h, (triple, package))| {
                        h.join().unwrap_or_else(|_| {
                            Err(CompileError::CrateList {
                                package: (*package).to_owned(),
                                triple: (*triple).to_owned(),
                                message: "preparing it panicked".to_owned(),
                            })
                        })
                    })
                    .collect()
            });
            for r in results {
                prepared.push(r?);
            }
        }
        Ok(prepared)
    }

    /// The crate-list objects of one package's binaries of `call` for one
    /// triple: the variable naming each one's digest, and the files written.
    fn prepare_crate_list(
        &self,
        call: &Invocation<'_>,
        triple: &str,
        package: &str,
    ) -> Result<Prepared, CompileError> {
        let settings = call.settings;
        let dir = self.dep_v0_dir();
        let linker = linker_kind(self.env, triple);
        let failed = |message: String| CompileError::CrateList {
            package: package.to_owned(),
            triple: triple.to_owned(),
            message,
        };
        let crates = crates::load(
            self.env,
            self.workspace_root,
            self.target_dir,
            package,
            triple,
            &settings.features,
            settings.default_features,
        )
        .map_err(|e| failed(e.to_string()))?;
        let (mut vars, mut written) = (Vec::new(), Vec::new());
        for (_, bin) in call.binaries.iter().filter(|(p, _)| *p == package) {
            let name = dep_v0::crate_name(bin);
            let args_path = dep_v0::args_path(&dir, triple, package, &name);
            let object = args_path.with_extension("o");
            let args = crate_list::prepare(&crates, triple, &object, linker)
                .map_err(|e| failed(e.to_string()))?;
            let text: String = args.iter().map(|a| format!("{a}\n")).collect();
            if std::fs::read_to_string(&args_path).ok().as_deref() != Some(text.as_str()) {
                crate::output::write_atomic(&args_path, text.as_bytes())
                    .map_err(|e| failed(format!("writing {}: {e}", args_path.display())))?;
            }
            let mut bytes = std::fs::read(&object)
                .map_err(|e| failed(format!("reading {}: {e}", object.display())))?;
            bytes.extend_from_slice(text.as_bytes());
            let digest = crate::digest::sha256_hex(&bytes);
            vars.push((dep_v0::digest_var(triple, package, &name), digest));
            written.extend([object, args_path]);
        }
        Ok((vars, written))
    }

    /// The flags every image build gets: those the caller's environment or
    /// cargo's configuration give the call's triples (cargo ignores both
    /// once the encoded form is set, so they are worked out here), the host
    /// paths remapped, what the triples need to link statically, and the
    /// image's extra flags last so they win.
    fn rustflags(&self, call: &Invocation<'_>, toolchain_remap: Option<&str>) -> Vec<String> {
        let mut flags = call.user_flags.clone();
        // Where the checkout, the target directory and cargo's registry live
        // must not show in the binary: panic locations and debug info would
        // otherwise make two checkouts give different bytes.
        for (from, to) in self.path_maps() {
            flags.push(format!("--remap-path-prefix={}={to}", from.display()));
        }
        flags.extend(toolchain_remap.map(str::to_owned));
        flags.extend(call.triple_flags.iter().map(|f| (*f).to_owned()));
        flags.extend(call.settings.rustflags.iter().cloned());
        flags
    }

    /// Each triple's rustflags from the caller's environment or cargo's
    /// configuration, as cargo run in the workspace would give them.
    fn user_flags(&self, triples: &[&str]) -> BTreeMap<String, Vec<String>> {
        let config = CargoConfig::read(self.env, self.workspace_root);
        triples
            .iter()
            .map(|triple| {
                let flags = config.rustflags(self.env, triple, |flags| {
                    toolchain::rustc::cfg(self.env, self.workspace_root, triple, flags)
                });
                ((*triple).to_owned(), flags)
            })
            .collect()
    }
}

/// A cause of a failed build that scratchpack recognises in cargo's
/// messages, and has a word on.
#[derive(Debug, PartialEq, Eq)]
enum Recognised {
    /// A C compiler or linker that is not installed: cc-rs says `failed to
    /// find tool "<name>"`, rustc says ``linker `<name>` not found``.
    MissingTool(String),
    /// The `-sys` crate `krate` looked for its C library on the machine
    /// (its build script, with pkg-config or a search of its own) or had
    /// the linker look for it, and none was there for the target; what it
    /// advises (a host's development package) cannot serve a static musl
    /// binary.
    NoSystemLibrary { krate: String },
    /// A build script named the GNU C++ library (`stdc++`) as the one to
    /// link, over the runtime scratchpack gives cc-rs: no musl target has
    /// it, and the host's is for glibc.
    GnuCxxLibrary,
}

/// Reads cargo's stderr line by line for the first cause it recognises.
#[derive(Default)]
struct Recogniser {
    /// The crate of the last build script cargo reported failing.
    failing: Option<String>,
    found: Option<Recognised>,
}

impl Recogniser {
    fn line(&mut self, line: &[u8]) {
        if self.found.is_some() {
            return;
        }
        let line = &String::from_utf8_lossy(line);
        if let Some(rest) = line
            .split("failed to run custom build command for `")
            .nth(1)
        {
            self.failing = rest.split([' ', '`']).next().map(str::to_owned);
        }
        let no_library = line.contains("pkg-config has not been configured to support cross")
            || line.contains("Could not find directory of OpenSSL installation");
        let gnu_cxx = ["library -lstdc++", "cannot find -lstdc++", "/libstdc++.a("]
            .iter()
            .any(|said| line.contains(said));
        self.found = gnu_cxx
            .then_some(Recognised::GnuCxxLibrary)
            .or_else(|| missing_tool(line).map(Recognised::MissingTool))
            .or_else(|| {
                no_library.then(|| Recognised::NoSystemLibrary {
                    krate: self
                        .failing
                        .clone()
                        .unwrap_or_else(|| "openssl-sys".to_owned()),
                })
            })
            .or_else(|| {
                let lib = unlinked_library(line)?;
                let krate = c_compilers::crate_linking(lib).map_or_else(
                    || format!("the `-sys` crate that links `{lib}`"),
                    str::to_owned,
                );
                Some(Recognised::NoSystemLibrary { krate })
            });
    }
}

/// The C library a link did not find: rust-lld and ld.lld say `unable to
/// find library -l<name>`, GNU ld `cannot find -l<name>`. The C and C++
/// runtimes are the toolchain's, not a `-sys` crate's, and are left out.
fn unlinked_library(line: &str) -> Option<&str> {
    const RUNTIMES: &[&str] = &[
        "c", "m", "gcc", "gcc_s", "gcc_eh", "unwind", "atomic", "c++", "stdc++",
    ];
    let rest = ["unable to find library -l", "cannot find -l"]
        .iter()
        .find_map(|start| line.split(start).nth(1))?;
    let lib = rest.split([':', ' ', '\'', '"']).next()?;
    (!lib.is_empty() && !RUNTIMES.contains(&lib)).then_some(lib)
}

/// Copies cargo's stderr to ours, returning the first cause recognised.
fn relay_stderr(reader: impl BufRead) -> Option<Recognised> {
    let mut recogniser = Recogniser::default();
    let mut out = std::io::stderr();
    for line in reader.split(b'\n') {
        let Ok(mut line) = line else { break };
        recogniser.line(&line);
        line.push(b'\n');
        let _ = out.write_all(&line);
    }
    recogniser.found
}

/// Below this much free space, a failed build is said to have likely run
/// out of it.
const LOW_SPACE: u64 = 256 << 20;

/// Why a build may have failed when its own messages may not say: the
/// filesystem of a directory it writes to (the target directory; the
/// user's cache, where zig and cmake keep their builds) is nearly full.
/// Compilers that cannot write do not all say so: zig aborts on a full
/// disk, and cargo then reports only the signal.
fn low_space_hint<'p>(dirs: impl IntoIterator<Item = &'p PathBuf>) -> Option<String> {
    dirs.into_iter().find_map(|dir| {
        let existing = dir.ancestors().find(|d| d.exists())?;
        let fs = rustix::fs::statvfs(existing).ok()?;
        let free = fs.f_bavail.saturating_mul(fs.f_frsize);
        (free < LOW_SPACE).then(|| {
            format!(
                "\nhelp: the filesystem of {} has {} free; a compiler that cannot write \
                 its output fails, and may not say why: free some space and run again",
                dir.display(),
                crate::shell::table::human_size(free)
            )
        })
    })
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

/// How the link of `triple` is driven: the linker set for it in the
/// environment, else rust-lld (called directly) for a foreign triple and the
/// C compiler driver for the host's.
fn linker_kind(env: &Env, triple: &str) -> Linker {
    match env.linker(triple) {
        Some(linker) => {
            let name = Path::new(linker)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.contains("lld") || name == "ld" || name.ends_with("-ld") {
                Linker::LdDirect
            } else {
                Linker::CcDriver
            }
        }
        None if is_foreign(triple) => Linker::LdDirect,
        None => Linker::CcDriver,
    }
}

/// Whether a triple's architecture differs from the host's.
pub(crate) fn is_foreign(triple: &str) -> bool {
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
    }

    fn recognised(lines: &str) -> Option<Recognised> {
        let mut recogniser = Recogniser::default();
        lines.lines().for_each(|l| recogniser.line(l.as_bytes()));
        recogniser.found
    }

    /// A -sys crate that found no C library for the target is named as
    /// cargo named it; openssl-sys says so after pkg-config did.
    #[test]
    fn recognises_a_missing_system_library_and_names_its_crate() {
        assert_eq!(recognised("error[E0425]: cannot find value `x`"), None);
        let sqlite = "error: failed to run custom build command for `libsqlite3-sys v0.30.1`\n\
                      \n  --- stderr\n  \
                      pkg-config has not been configured to support cross-compilation.\n";
        assert_eq!(
            recognised(sqlite),
            Some(Recognised::NoSystemLibrary {
                krate: "libsqlite3-sys".into()
            })
        );
        let openssl = "error: failed to run custom build command for `openssl-sys v0.9.118`\n  \
                       Could not find openssl via pkg-config:\n  \
                       pkg-config has not been configured to support cross-compilation.\n  \
                       Could not find directory of OpenSSL installation, and this `-sys` crate\n";
        assert_eq!(
            recognised(openssl),
            Some(Recognised::NoSystemLibrary {
                krate: "openssl-sys".into()
            })
        );
        // A link that found no library: the crate known to link it, or a
        // description of it.
        assert_eq!(
            recognised("          rust-lld: error: unable to find library -lsqlite3"),
            Some(Recognised::NoSystemLibrary {
                krate: "libsqlite3-sys".into()
            })
        );
        assert_eq!(
            recognised("/usr/bin/ld: cannot find -lfoo: No such file or directory"),
            Some(Recognised::NoSystemLibrary {
                krate: "the `-sys` crate that links `foo`".into()
            })
        );
        assert_eq!(
            recognised("rust-lld: error: unable to find library -lgcc_s"),
            None
        );
        // libstdc++ named by a build script: missing for a foreign target,
        // the host's glibc one taken for the host's.
        for said in [
            "rust-lld: error: unable to find library -lstdc++",
            "/usr/bin/ld: /usr/lib/gcc/x86_64-linux-gnu/12/libstdc++.a(eh_catch.o): in function",
        ] {
            assert_eq!(recognised(said), Some(Recognised::GnuCxxLibrary), "{said}");
        }
        // The first cause wins: a later failing crate does not rename it.
        let two = format!("{sqlite}error: failed to run custom build command for `x v1`\n");
        assert_eq!(
            recognised(&two),
            Some(Recognised::NoSystemLibrary {
                krate: "libsqlite3-sys".into()
            })
        );
    }

    fn settings(profile: &str) -> BuildSettings {
        BuildSettings {
            profile: profile.to_owned(),
            rustflags: Vec::new(),
            features: Vec::new(),
            default_features: true,
            auditable: true,
        }
    }

    fn request(package: &str, bin: &str, triple: &str, settings: &BuildSettings) -> Request {
        Request {
            package: package.to_owned(),
            bin: bin.to_owned(),
            triple: triple.to_owned(),
            settings: settings.clone(),
        }
    }

    const AMD64: &str = "x86_64-unknown-linux-musl";
    const ARM64: &str = "aarch64-unknown-linux-musl";
    const ARMV7: &str = "armv7-unknown-linux-musleabihf";

    /// Every (package, bin, triple) that a list of invocations would make
    /// cargo build.
    fn built(calls: &[Invocation<'_>]) -> Vec<(String, String, String)> {
        let mut all: Vec<_> = calls
            .iter()
            .flat_map(|c| {
                // cargo builds each selected bin of each selected package
                // for each target: the cross product is what it compiles.
                c.binaries.iter().flat_map(|(p, b)| {
                    c.triples
                        .iter()
                        .map(|t| (p.to_string(), b.to_string(), t.to_string()))
                })
            })
            .collect();
        all.sort();
        all
    }

    #[test]
    fn a_package_is_built_only_for_the_triples_its_images_ask_for() {
        let release = settings("release");
        let requests = vec![
            request("hello", "hello", AMD64, &release),
            request("hello", "hello", ARM64, &release),
            request("native", "native", AMD64, &release),
        ];
        let calls = invocations(&requests, &BTreeMap::new());
        assert_eq!(
            built(&calls),
            vec![
                ("hello".into(), "hello".into(), ARM64.into()),
                ("hello".into(), "hello".into(), AMD64.into()),
                ("native".into(), "native".into(), AMD64.into()),
            ],
            "no aarch64 build of the amd64-only package: {calls:?}"
        );
        assert_eq!(calls.len(), 2);
    }

    #[test]
    fn binaries_wanting_the_same_triples_share_one_invocation() {
        let release = settings("release");
        let requests = vec![
            request("greeter", "greeter", AMD64, &release),
            request("hello", "hello", ARM64, &release),
            request("greeter", "greeter", ARM64, &release),
            request("hello", "hello", AMD64, &release),
            // Two images of one binary: asked twice, built once.
            request("hello", "hello", AMD64, &release),
        ];
        let calls = invocations(&requests, &BTreeMap::new());
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(calls[0].triples, vec![ARM64, AMD64]);
        assert_eq!(calls[0].packages(), vec!["greeter", "hello"]);
        assert_eq!(calls[0].bins(), vec!["greeter", "hello"]);
    }

    #[test]
    fn settings_and_triple_sets_both_split_invocations() {
        let release = settings("release");
        let dev = settings("dev");
        let requests = vec![
            request("a", "a", AMD64, &release),
            request("a", "a", ARMV7, &release),
            request("b", "b", ARMV7, &release),
            request("c", "c", AMD64, &dev),
            request("c", "c", ARMV7, &dev),
        ];
        let calls = invocations(&requests, &BTreeMap::new());
        assert_eq!(calls.len(), 3, "{calls:?}");
        for call in &calls {
            for (package, bin) in &call.binaries {
                for triple in &call.triples {
                    assert!(
                        requests.iter().any(|r| r.package == *package
                            && r.bin == *bin
                            && r.triple == *triple
                            && r.settings == *call.settings),
                        "{package}/{bin} built for {triple} with no request for it"
                    );
                }
            }
        }
        // And every request is built somewhere.
        for r in &requests {
            assert!(calls.iter().any(|c| c.settings == &r.settings
                && c.triples.contains(&r.triple.as_str())
                && c.binaries.contains(&(r.package.as_str(), r.bin.as_str()))));
        }
    }

    #[test]
    fn every_musl_triple_shares_one_static_call() {
        const RISCV64: &str = "riscv64gc-unknown-linux-musl";
        const GNU: &str = "x86_64-unknown-linux-gnu";
        let release = settings("release");
        let requests = vec![
            request("hello", "hello", AMD64, &release),
            request("hello", "hello", RISCV64, &release),
            request("hello", "hello", GNU, &release),
        ];
        let calls = invocations(&requests, &BTreeMap::new());
        assert_eq!(calls.len(), 2, "{calls:?}");
        let musl = calls.iter().find(|c| c.triples.contains(&RISCV64)).unwrap();
        assert!(musl.triples.contains(&AMD64), "{calls:?}");
        assert_eq!(musl.triple_flags, ["-Ctarget-feature=+crt-static"]);
        let gnu = calls.iter().find(|c| c.triples == [GNU]).unwrap();
        assert!(gnu.triple_flags.is_empty());
    }

    #[test]
    fn triples_whose_configured_flags_differ_go_to_calls_of_their_own() {
        let release = settings("release");
        let requests = vec![
            request("hello", "hello", AMD64, &release),
            request("hello", "hello", ARM64, &release),
            request("hello", "hello", ARMV7, &release),
        ];
        let cfg = vec!["--cfg".to_owned(), "x".to_owned()];
        let same: BTreeMap<String, Vec<String>> = [AMD64, ARM64, ARMV7]
            .iter()
            .map(|t| ((*t).to_owned(), cfg.clone()))
            .collect();
        let calls = invocations(&requests, &same);
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(calls[0].user_flags, cfg);
        let mut one_differs = same.clone();
        one_differs.insert(
            ARM64.to_owned(),
            vec!["-Ctarget-cpu=neoverse-n1".to_owned()],
        );
        let calls = invocations(&requests, &one_differs);
        assert_eq!(calls.len(), 2, "{calls:?}");
        let arm = calls.iter().find(|c| c.triples == [ARM64]).unwrap();
        assert_eq!(arm.user_flags, ["-Ctarget-cpu=neoverse-n1"]);
    }

    #[test]
    fn foreign_triples_are_told_apart() {
        let host = std::env::consts::ARCH;
        assert!(!is_foreign(&format!("{host}-unknown-linux-musl")));
        assert!(is_foreign("riscv64gc-unknown-linux-musl"));
    }
}

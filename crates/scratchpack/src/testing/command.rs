//! Command tests: the image's entrypoint run in the namespace sandbox with
//! the image config's user, environment and working directory (image-spec
//! `config.md`), overridden by the test, and its exit code and output
//! checked against the test's expectations from images.toml.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use sandbox::{Limits, Outcome, Sandbox, Status, StopReason};

use super::diff;
use crate::manifest::{CommandTest, OutputExpect, User};
use crate::oci::spec::Config as ImageConfig;

/// Limits every command test runs under besides its own timeout: generous
/// for a small server or CLI, tight enough that a runaway test cannot take
/// the machine down with it.
pub const LIMITS: Limits = Limits {
    wall_time: Duration::from_secs(10),
    kill_grace: Duration::from_millis(200),
    memory_bytes: 512 << 20,
    max_processes: 64,
    max_open_files: 256,
    max_output_bytes: 1 << 20,
    max_file_bytes: 64 << 20,
    tmp_bytes: 64 << 20,
    tmp_inodes: 16 << 10,
    cpu_millis: 1000,
};

/// qemu-user maps the guest's address space and its own translation cache
/// into the process, so an emulated program limited by address space (when
/// no cgroup limits the sandbox) needs room beyond what it uses: for a
/// 32-bit guest (arm/v7), qemu reserves the whole 4 GiB guest space up
/// front, on top of its own mappings.
const EMULATED_MEMORY_BYTES: u64 = 8 << 30;

/// Why a command test could not be started.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(
        "the image's user `{0}` is not numeric `uid[:gid]`; scratch images have no user database to look names up in"
    )]
    User(String),
    #[error("the image has neither an entrypoint nor a cmd to run")]
    NothingToRun,
    #[error(transparent)]
    Sandbox(#[from] sandbox::Error),
}

/// Exactly what a command test runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub user: User,
    pub workdir: String,
    pub stdin: Option<String>,
    pub limits: Limits,
    /// Whether the sandbox's seccomp filter is installed.
    pub seccomp: bool,
    /// The config's `Volumes`: each gets an empty writable tmpfs.
    pub volumes: Vec<String>,
}

impl std::fmt::Display for Invocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (as {} in {})",
            self.argv.join(" "),
            self.user,
            self.workdir
        )
    }
}

/// Parses an image config's `User`: `uid` or `uid:gid`, numeric. An empty
/// user is root, as runtimes read it.
pub fn parse_user(user: &str) -> Result<User, CommandError> {
    // An empty `User` means root (image-spec `config.User`).
    if user.is_empty() {
        return Ok(User { uid: 0, gid: 0 });
    }
    crate::manifest::parse_user(user).map_err(|_| CommandError::User(user.to_owned()))
}

/// The config's `Env` (`KEY=VALUE` strings) as a map.
pub fn config_env(config: &ImageConfig) -> BTreeMap<String, String> {
    config
        .config
        .env
        .iter()
        .flatten()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (kv.clone(), String::new()),
        })
        .collect()
}

/// The config's `Volumes`, the directories the program may write to.
pub fn config_volumes(config: &ImageConfig) -> Vec<String> {
    config
        .config
        .volumes
        .iter()
        .flatten()
        .map(|(v, _)| v.clone())
        .collect()
}

/// What `test` runs in an image with `config`: the entrypoint followed by
/// the test's `args` (which replace the image's `cmd`) or else the `cmd`.
pub fn invocation(config: &ImageConfig, test: &CommandTest) -> Result<Invocation, CommandError> {
    let exec = &config.config;
    let mut argv: Vec<String> = exec.entrypoint.clone().unwrap_or_default();
    match &test.args {
        Some(args) => argv.extend(args.iter().cloned()),
        None => argv.extend(exec.cmd.iter().flatten().cloned()),
    }
    if argv.is_empty() {
        return Err(CommandError::NothingToRun);
    }
    let mut env = config_env(config);
    env.extend(test.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let user = match test.user {
        Some(u) => u,
        None => parse_user(exec.user.as_deref().unwrap_or(""))?,
    };
    let workdir = match &test.workdir {
        Some(w) => w.as_str().to_owned(),
        None => exec
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".to_owned()),
    };
    Ok(Invocation {
        argv,
        env,
        user,
        workdir,
        stdin: test.stdin.clone(),
        limits: Limits {
            wall_time: Duration::from_millis(test.timeout_ms),
            ..LIMITS
        },
        seccomp: test.seccomp,
        volumes: config_volumes(config),
    })
}

/// Runs `inv` in the unpacked image at `root`, under `emulator` (qemu-user,
/// see `sandbox::emulator_in_dir`) when the image's architecture is not the
/// host's. `helper` overrides the sandbox helper executable (by default this
/// program re-executes itself).
pub fn run(
    root: &Path,
    emulator: Option<std::path::PathBuf>,
    inv: &Invocation,
    helper: Option<&Path>,
) -> Result<Outcome, CommandError> {
    Ok(sandbox(root, emulator, inv, helper).run()?)
}

/// The sandbox that runs `inv`, as [`run`] runs it; a service test starts
/// it and leaves it running.
pub fn sandbox(
    root: &Path,
    emulator: Option<std::path::PathBuf>,
    inv: &Invocation,
    helper: Option<&Path>,
) -> Sandbox {
    let mut limits = inv.limits;
    // Only an address-space rlimit needs the room: a cgroup counts what
    // qemu actually uses.
    if emulator.is_some() && sandbox::cgroup::parent().is_none() {
        limits.memory_bytes = limits.memory_bytes.max(EMULATED_MEMORY_BYTES);
    }
    let mut sb = Sandbox::new(root)
        .args(&inv.argv)
        .env(&inv.env)
        .user(inv.user.uid, inv.user.gid)
        .workdir(&inv.workdir)
        .limits(limits)
        .emulator(emulator)
        .seccomp(inv.seccomp)
        .volumes(&inv.volumes);
    if let Some(stdin) = &inv.stdin {
        sb = sb.stdin(stdin.as_bytes());
    }
    if let Some(helper) = helper {
        sb = sb.helper(helper);
    }
    sb
}

/// Every way `out` falls short of `test`, as readable paragraphs; empty
/// when the test passes.
pub fn check(test: &CommandTest, inv: &Invocation, out: &Outcome) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(stop) = out.stopped {
        problems.push(stopped(stop, inv));
    }
    match out.status {
        Status::Exit(code) if code == test.exit_code => {}
        Status::Exit(code) => problems.push(format!(
            "exit code: expected {}, got {code}",
            test.exit_code
        )),
        Status::Signal(sig) => problems.push(format!(
            "exit code: expected {}, but it was killed by signal {sig}",
            test.exit_code
        )),
    }
    check_output("stdout", &test.stdout, &out.stdout, &mut problems);
    check_output("stderr", &test.stderr, &out.stderr, &mut problems);
    problems
}

/// Why the sandbox stopped the program, said as a problem of the test.
pub(super) fn stopped(stop: StopReason, inv: &Invocation) -> String {
    match stop {
        StopReason::Timeout => format!(
            "stopped: still running after the timeout of {:.1}s",
            inv.limits.wall_time.as_secs_f64()
        ),
        StopReason::Memory => format!(
            "stopped: went over the memory limit of {} MiB",
            inv.limits.memory_bytes >> 20
        ),
        StopReason::Cancelled => "stopped: the run was interrupted".to_owned(),
        StopReason::OutputLimit => format!(
            "stopped: wrote more than the output limit of {} KiB",
            inv.limits.max_output_bytes >> 10
        ),
    }
}

/// Texts larger than this are compared by size and first difference rather
/// than shown as a diff.
const MAX_DIFF_BYTES: usize = 16 << 10;

pub(super) fn check_output(
    stream: &str,
    expect: &OutputExpect,
    bytes: &[u8],
    problems: &mut Vec<String>,
) {
    for needle in &expect.contains_bytes {
        if !holds(bytes, needle) {
            problems.push(format!(
                "{stream} does not contain the bytes {}",
                hex(needle)
            ));
        }
    }
    let actual = String::from_utf8_lossy(bytes);
    if let Some(equals) = &expect.equals
        && *equals != actual
    {
        if equals.len().max(actual.len()) > MAX_DIFF_BYTES {
            let at = equals
                .bytes()
                .zip(actual.bytes())
                .take_while(|(a, b)| a == b)
                .count();
            problems.push(format!(
                "{stream} differs: expected {} bytes, got {}, first difference at byte {at}",
                equals.len(),
                actual.len()
            ));
        } else {
            problems.push(format!(
                "{stream} differs (- expected, + actual):\n{}",
                indent(&diff::lines(equals, &actual))
            ));
        }
    }
    for needle in &expect.contains {
        // On the bytes: output that is not UTF-8 can still hold the text.
        if !holds(bytes, needle.as_bytes()) {
            problems.push(format!("{stream} does not contain {needle:?}"));
        }
    }
    if let Some(pattern) = &expect.regex {
        // The manifest has already compiled every pattern once.
        match regex_lite::Regex::new(pattern) {
            Ok(re) if re.is_match(&actual) => {}
            Ok(_) => problems.push(format!("{stream} does not match the regex /{pattern}/")),
            Err(e) => problems.push(format!("{stream} regex /{pattern}/ is invalid: {e}")),
        }
    }
}

/// Whether `needle` occurs in `haystack` (an empty needle always does).
pub(super) fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Bytes as lowercase hex pairs separated by spaces, as `contains-hex` and
/// `send-hex` take them.
pub(super) fn hex(bytes: &[u8]) -> String {
    let pairs: Vec<String> = bytes.chunks(1).map(crate::digest::hex).collect();
    pairs.join(" ")
}

pub(super) fn indent(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let _ = writeln!(out, "    {line}");
    }
    out.trim_end_matches('\n').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::DEFAULT_TEST_TIMEOUT_MS;
    use crate::oci::spec::ExecConfig;

    #[test]
    fn images_toml_allows_no_more_volumes_than_the_sandbox_mounts() {
        assert_eq!(crate::manifest::MAX_VOLUMES, sandbox::setup::MAX_VOLUMES);
    }

    fn config() -> ImageConfig {
        ImageConfig {
            architecture: "amd64".into(),
            os: "linux".into(),
            config: ExecConfig {
                user: Some("65532:65533".into()),
                env: Some(vec!["A=1".into(), "B=x=y".into()]),
                entrypoint: Some(vec!["/hello".into()]),
                cmd: Some(vec!["world".into()]),
                working_dir: Some("/srv".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn test() -> CommandTest {
        CommandTest {
            args: None,
            env: BTreeMap::new(),
            stdin: None,
            timeout_ms: DEFAULT_TEST_TIMEOUT_MS,
            user: None,
            workdir: None,
            exit_code: 0,
            stdout: OutputExpect::default(),
            stderr: OutputExpect::default(),
            seccomp: true,
        }
    }

    fn outcome(code: i32, stdout: &str) -> Outcome {
        Outcome {
            status: Status::Exit(code),
            stdout: stdout.as_bytes().to_vec(),
            stderr: Vec::new(),
            duration: Duration::from_millis(5),
            stopped: None,
            peak_memory_bytes: 0,
        }
    }

    #[test]
    fn the_image_config_shapes_the_invocation() {
        let inv = invocation(&config(), &test()).unwrap();
        assert_eq!(inv.argv, ["/hello", "world"]);
        assert_eq!(
            inv.user,
            User {
                uid: 65532,
                gid: 65533
            }
        );
        assert_eq!(inv.workdir, "/srv");
        assert_eq!(inv.env["B"], "x=y");
        assert_eq!(inv.limits.wall_time, Duration::from_secs(10));
    }

    #[test]
    fn the_test_overrides_args_env_user_and_workdir() {
        let t = CommandTest {
            args: Some(vec!["one".into()]),
            env: [("A".to_owned(), "2".to_owned())].into(),
            user: Some(User { uid: 7, gid: 8 }),
            workdir: Some(crate::manifest::ImagePath::parse("/tmp").unwrap()),
            timeout_ms: 1500,
            ..test()
        };
        let inv = invocation(&config(), &t).unwrap();
        assert_eq!(inv.argv, ["/hello", "one"]);
        assert_eq!(inv.env["A"], "2");
        assert_eq!(inv.env["B"], "x=y");
        assert_eq!(inv.user, User { uid: 7, gid: 8 });
        assert_eq!(inv.workdir, "/tmp");
        assert_eq!(inv.limits.wall_time, Duration::from_millis(1500));
    }

    #[test]
    fn users_are_numeric() {
        assert_eq!(parse_user("").unwrap(), User { uid: 0, gid: 0 });
        assert_eq!(parse_user("42").unwrap(), User { uid: 42, gid: 42 });
        assert!(matches!(parse_user("nobody"), Err(CommandError::User(_))));
    }

    #[test]
    fn mismatches_are_each_reported() {
        let t = CommandTest {
            exit_code: 3,
            stdout: OutputExpect {
                equals: Some("hello\nworld\n".into()),
                contains: vec!["planet".into()],
                contains_bytes: vec![vec![0xff, 0x00], b"hello".to_vec()],
                regex: Some("^h".into()),
            },
            ..test()
        };
        let inv = invocation(&config(), &t).unwrap();
        let problems = check(&t, &inv, &outcome(0, "hello\nthere\n"));
        let text = problems.join("\n");
        assert!(text.contains("exit code: expected 3, got 0"), "{text}");
        assert!(text.contains("-world") && text.contains("+there"), "{text}");
        assert!(text.contains("does not contain \"planet\""), "{text}");
        assert!(
            text.contains("stdout does not contain the bytes ff 00"),
            "{text}"
        );
        assert!(!text.contains("68 65 6c 6c 6f"), "{text}");
        assert!(!text.contains("regex"), "{text}");
        assert!(check(&test(), &inv, &outcome(0, "anything")).is_empty());
    }

    #[test]
    fn large_outputs_are_compared_without_a_diff() {
        let big = "x".repeat(MAX_DIFF_BYTES * 2);
        let t = CommandTest {
            stdout: OutputExpect {
                equals: Some(format!("{big}y")),
                ..OutputExpect::default()
            },
            ..test()
        };
        let inv = invocation(&config(), &t).unwrap();
        let text = check(&t, &inv, &outcome(0, &format!("{big}z"))).join("\n");
        assert!(
            text.contains(&format!("first difference at byte {}", big.len())),
            "{}",
            &text[..200.min(text.len())]
        );
        assert!(text.len() < 1000);
    }

    #[test]
    fn a_stop_reason_is_reported() {
        let inv = invocation(&config(), &test()).unwrap();
        let mut out = outcome(0, "");
        out.status = Status::Signal(9);
        out.stopped = Some(StopReason::Timeout);
        let text = check(&test(), &inv, &out).join("\n");
        assert!(text.contains("timeout of 10.0s"), "{text}");
        assert!(text.contains("signal 9"), "{text}");
    }
}

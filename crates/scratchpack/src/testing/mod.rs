//! Image tests, as images.toml declares them under
//! `[images.<name>.tests.<test>]`: each image's layers are unpacked into a
//! private root, command tests run in the namespace sandbox (the `sandbox`
//! crate), service tests start their program there, ask it and stop it, and
//! structure tests read the layers and config; results are cached
//! per test like Bazel's test cache and reported per test and as JUnit XML.

pub mod command;
pub mod diff;
pub mod http;
pub mod junit;
pub mod service;
pub mod structure;

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::manifest::TestPlan;
use crate::record;
use crate::unpack::{self, PlatformImage, Unpacked};

/// Names one test on one platform: `hello/greets [linux/arm64]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TestId {
    pub image: String,
    pub test: String,
    pub platform: String,
}

impl std::fmt::Display for TestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} [{}]", self.image, self.test, self.platform)
    }
}

/// How a test ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    Failed,
    /// Passed before, with the same image and the same test definition.
    Cached,
    /// Could not run on this host: no emulator for the image's platform.
    /// `failure` says why and what to install.
    Skipped,
}

/// The result of one test.
#[derive(Debug, Clone)]
pub struct TestReport {
    pub id: TestId,
    pub verdict: Verdict,
    pub duration: Duration,
    /// What went wrong, for a failure: one paragraph per problem.
    pub failure: Option<String>,
    /// The program's stdout and stderr, for a failed command test and for
    /// every service test.
    pub output: String,
}

/// One platform image of a built image, and the tests to run on it.
pub struct Subject {
    pub name: String,
    /// The image's OCI layout directory.
    pub layout: PathBuf,
    pub image: PlatformImage,
    pub tests: Vec<TestPlan>,
    /// What unpacking this image may cost.
    pub unpack_limits: unpack::UnpackLimits,
}

/// How [`run`] runs tests.
#[derive(Debug, Clone)]
pub struct TestOptions {
    /// The output directory whose `.scratchpack/tests/` holds cached passes.
    pub out_dir: PathBuf,
    /// Whether to skip tests that passed before.
    pub use_cache: bool,
    /// How many tests run at once.
    pub jobs: usize,
    /// The sandbox helper executable; `None` re-executes this program, which
    /// must then call `sandbox::helper::run_if_requested` first in `main`.
    pub helper: Option<PathBuf>,
    /// Where qemu-user-static's `qemu-<arch>-static` binaries are.
    pub emulator_dir: PathBuf,
    /// Set to stop the run: no further test starts, and [`run`] returns
    /// once the running ones end (`sandbox::signals::stop_all` ends them).
    pub cancelled: Arc<AtomicBool>,
}

/// The cache key inputs of one test: the image as it ships (its platform
/// manifest digest covers config and layers) and everything the test says.
#[derive(Serialize)]
struct KeyInputs<'a> {
    manifest: &'a str,
    test: &'a TestPlan,
    /// A pass under other limits says nothing about these.
    unpack_limits: &'a unpack::UnpackLimits,
}

/// What a cached pass records.
#[derive(Serialize, Deserialize)]
struct CachedPass {
    duration_ms: u64,
}

struct Job<'a> {
    subject: usize,
    test: &'a TestPlan,
    id: TestId,
    key: String,
    record: PathBuf,
}

/// Runs every test of every subject, `opts.jobs` at a time, calling
/// `on_report` for each result as it comes in (cached ones first), and
/// returns all results in the order they came.
pub fn run(
    subjects: &[Subject],
    opts: &TestOptions,
    mut on_report: impl FnMut(&TestReport),
) -> Vec<TestReport> {
    let mut reports = Vec::new();
    let mut queue = VecDeque::new();
    for (s, subject) in subjects.iter().enumerate() {
        for test in &subject.tests {
            let id = TestId {
                image: subject.name.clone(),
                test: test.name.clone(),
                platform: subject.image.platform.to_string(),
            };
            let key = record::key(&KeyInputs {
                manifest: subject.image.manifest.as_str(),
                test,
                unpack_limits: &subject.unpack_limits,
            });
            let record = record::record_path(&opts.out_dir, "tests", &record_name(&id));
            if opts.use_cache
                && let Some(pass) = record::lookup::<CachedPass>(&record, &key)
            {
                let report = TestReport {
                    id,
                    verdict: Verdict::Cached,
                    duration: Duration::from_millis(pass.duration_ms),
                    failure: None,
                    output: String::new(),
                };
                on_report(&report);
                reports.push(report);
                continue;
            }
            queue.push_back(Job {
                subject: s,
                test,
                id,
                key,
                record,
            });
        }
    }

    let unpacked: Vec<OnceLock<Result<Unpacked, String>>> =
        subjects.iter().map(|_| OnceLock::new()).collect();
    let workers = opts.jobs.max(1).min(queue.len());
    let queue = Mutex::new(queue);
    let (tx, rx) = mpsc::channel::<(TestReport, String, PathBuf)>();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (queue, unpacked) = (&queue, &unpacked);
            scope.spawn(move || {
                loop {
                    if opts.cancelled.load(Ordering::SeqCst) {
                        break;
                    }
                    let job = queue.lock().expect("no worker panics").pop_front();
                    let Some(job) = job else { break };
                    let subject = &subjects[job.subject];
                    // The first test of an image unpacks it; the others wait
                    // for that and share it.
                    let root = unpacked[job.subject].get_or_init(|| {
                        unpack::unpack(&subject.layout, &subject.image, &subject.unpack_limits)
                            .map_err(|e| chain(&e))
                    });
                    let report = run_one(subject, root.as_ref(), job.test, job.id, opts);
                    if tx.send((report, job.key, job.record)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for (report, key, record) in rx {
            if report.verdict == Verdict::Passed {
                let pass = CachedPass {
                    duration_ms: u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
                };
                // A record that cannot be written only costs a re-run.
                let _ = write_atomic(&record, &record::encode(&key, &pass));
            }
            on_report(&report);
            reports.push(report);
        }
    });
    reports
}

/// The file name of a test's cache record: test and image names are
/// restricted to `[a-z0-9._-]` by the manifest, the platform has a `/`.
fn record_name(id: &TestId) -> String {
    format!("{}.{}.{}", id.image, id.test, id.platform.replace('/', "-"))
}

fn run_one(
    subject: &Subject,
    root: Result<&Unpacked, &String>,
    test: &TestPlan,
    id: TestId,
    opts: &TestOptions,
) -> TestReport {
    let started = Instant::now();
    let mut problems = Vec::new();
    let mut output = String::new();
    let mut skipped = None;
    match root {
        Err(e) => problems.push(format!("unpacking the image: {e}")),
        Ok(root) => {
            let config = &subject.image.config;
            if let Some(s) = &test.structure {
                problems.extend(structure::check(&root.tree, config, s));
            }
            if let Some(c) = &test.command {
                let arch = architecture(&subject.image);
                match (
                    command::invocation(config, c),
                    sandbox::emulator_in_dir(arch, &opts.emulator_dir),
                ) {
                    (Err(e), _) => problems.push(chain(&e)),
                    (Ok(_), Err(e @ sandbox::Error::EmulatorMissing { .. })) => {
                        skipped = Some(chain(&e));
                    }
                    (Ok(_), Err(e)) => problems.push(chain(&e)),
                    (Ok(inv), Ok(emulator)) => {
                        let run = Run {
                            root: root.root(),
                            emulator,
                            inv: &inv,
                            helper: opts.helper.as_deref(),
                        };
                        let (p, out) = match &test.service {
                            None => run.command(c),
                            Some(service) => run.service(c, service, config),
                        };
                        if !p.is_empty() {
                            let kind = if test.service.is_some() {
                                "service"
                            } else {
                                "command"
                            };
                            problems.push(format!("{kind}: {inv}"));
                            problems.extend(p);
                        }
                        output = out;
                    }
                }
            }
        }
    }
    // A test that could not run its command is skipped unless the part that
    // could run (its structure checks) already failed.
    let (verdict, failure) = match (problems.is_empty(), skipped) {
        (true, Some(reason)) => (Verdict::Skipped, Some(reason)),
        (true, None) => (Verdict::Passed, None),
        (false, _) => (Verdict::Failed, Some(problems.join("\n"))),
    };
    TestReport {
        id,
        verdict,
        duration: started.elapsed(),
        failure,
        output,
    }
}

/// One test's program, ready to run in its unpacked image.
struct Run<'a> {
    root: &'a std::path::Path,
    emulator: Option<PathBuf>,
    inv: &'a command::Invocation,
    helper: Option<&'a std::path::Path>,
}

impl Run<'_> {
    /// Runs a command test: its problems, and its output when it failed.
    fn command(self, c: &crate::manifest::CommandTest) -> (Vec<String>, String) {
        let inv = self.inv;
        match command::run(self.root, self.emulator, inv, self.helper) {
            Err(e) => (vec![format!("running {inv}: {}", chain(&e))], String::new()),
            Ok(out) => {
                let problems = command::check(c, inv, &out);
                let output = if problems.is_empty() {
                    String::new()
                } else {
                    captured(&out)
                };
                (problems, output)
            }
        }
    }

    /// Runs a service test: its problems, and the service's output, which
    /// the report keeps whether it passed or not.
    fn service(
        self,
        c: &crate::manifest::CommandTest,
        s: &crate::manifest::ServiceTest,
        config: &crate::oci::spec::Config,
    ) -> (Vec<String>, String) {
        let stop = match service::stop_signal(config) {
            Ok(stop) => stop,
            Err(e) => return (vec![e], String::new()),
        };
        let inv = self.inv;
        match service::run(self.root, self.emulator, inv, (c, s), stop, self.helper) {
            Err(e) => (vec![format!("running {inv}: {}", chain(&e))], String::new()),
            Ok(result) => (result.problems, captured(&result.outcome)),
        }
    }
}

/// The image's architecture, from its config or else its platform.
fn architecture(image: &PlatformImage) -> &str {
    if image.config.architecture.is_empty() {
        &image.platform.architecture
    } else {
        &image.config.architecture
    }
}

/// How much of each stream a failure report shows: enough to see what went
/// wrong, not a megabyte of a program that flooded its output.
const SHOWN_OUTPUT_BYTES: usize = 8 << 10;

fn captured(out: &sandbox::Outcome) -> String {
    let mut s = String::new();
    for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let shown = &bytes[..bytes.len().min(SHOWN_OUTPUT_BYTES)];
        let text = String::from_utf8_lossy(shown);
        let _ = writeln!(s, "--- {name}");
        s.push_str(&text);
        if !text.is_empty() && !text.ends_with('\n') {
            s.push('\n');
        }
        if bytes.len() > shown.len() {
            let _ = writeln!(s, "[{} more bytes not shown]", bytes.len() - shown.len());
        }
    }
    s
}

/// `text` made safe to print on a terminal: control characters other than
/// newline and tab (carriage return, escape, backspace, bell, the C1 range)
/// and the Unicode controls that reorder text are shown as escapes, so what a
/// program prints can never move the cursor, erase a line or recolour one.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let reorders = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        match c {
            '\n' | '\t' => out.push(c),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || reorders => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// An error and its causes on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let _ = write!(s, ": {c}");
        cause = c.source();
    }
    s
}

pub use crate::output::write_atomic;

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            printable("a\tb\n\r\u{1b}[2K ok\u{7}\u{8}\u{9b}\u{202e}x"),
            "a\tb\n\\r\\u{1b}[2K ok\\u{7}\\u{8}\\u{9b}\\u{202e}x"
        );
        assert_eq!(printable("plain ünïcode"), "plain ünïcode");
    }
}

//! Service tests: the image's program started in the sandbox and left
//! running, reached on its port inside the sandbox's own network namespace
//! (`sandbox::Running::connect`, so no host port is used and tests run side
//! by side), asked its requests in order, then sent the image's
//! `StopSignal` (image-spec `config.md`; SIGTERM when it names none) and
//! given its time to end, as `docker stop` does.

use std::fmt::Write as _;
use std::io::{self, Read};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::process::Signal;
use sandbox::{Outcome, Running, Status, StopReason};

use super::command::{self, CommandError, Invocation, check_output, holds, indent};
use super::diff;
use super::http::{self, HttpError, MAX_BODY_BYTES, Response, Timed};
use crate::manifest::{
    CommandTest, HttpRequest, OutputExpect, REQUEST_TIMEOUT_MS, ServiceRequest, ServiceTest,
    TcpExchange,
};
use crate::oci::spec::Config as ImageConfig;

/// How often readiness is asked while the program is not listening yet.
const POLL: Duration = Duration::from_millis(50);
/// How often a `ready.http` path is asked again after an answer that was
/// not a success.
const HTTP_POLL: Duration = Duration::from_millis(200);
/// How long a failed request waits for the program's end to be told, in
/// case the program is gone.
const END_NOTICE: Duration = Duration::from_secs(2);
/// How much of a body a failure quotes.
const QUOTED_BODY_BYTES: usize = 512;

/// The signals a `StopSignal` may name, as the host numbers them: qemu-user
/// passes a host signal on to the program it runs under the guest's number.
const SIGNALS: &[(&str, Signal)] = &[
    ("SIGHUP", Signal::HUP),
    ("SIGINT", Signal::INT),
    ("SIGQUIT", Signal::QUIT),
    ("SIGILL", Signal::ILL),
    ("SIGTRAP", Signal::TRAP),
    ("SIGABRT", Signal::ABORT),
    ("SIGBUS", Signal::BUS),
    ("SIGFPE", Signal::FPE),
    ("SIGKILL", Signal::KILL),
    ("SIGUSR1", Signal::USR1),
    ("SIGSEGV", Signal::SEGV),
    ("SIGUSR2", Signal::USR2),
    ("SIGPIPE", Signal::PIPE),
    ("SIGALRM", Signal::ALARM),
    ("SIGTERM", Signal::TERM),
    ("SIGCHLD", Signal::CHILD),
    ("SIGCONT", Signal::CONT),
    ("SIGSTOP", Signal::STOP),
    ("SIGTSTP", Signal::TSTP),
    ("SIGXCPU", Signal::XCPU),
    ("SIGXFSZ", Signal::XFSZ),
    ("SIGWINCH", Signal::WINCH),
    ("SIGPWR", Signal::POWER),
    ("SIGSYS", Signal::SYS),
];

/// The signal that stops a program, and its name for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopSignal {
    pub number: i32,
    pub name: &'static str,
}

/// The name of signal `number`, as `signal(7)` writes it.
pub fn signal_name(number: i32) -> Option<&'static str> {
    SIGNALS
        .iter()
        .find(|(_, s)| s.as_raw() == number)
        .map(|(name, _)| *name)
}

/// The image config's `StopSignal` (`SIGTERM`, `TERM` or `15`); SIGTERM
/// when it names none, as runtimes read it.
pub fn stop_signal(config: &ImageConfig) -> Result<StopSignal, String> {
    let written = config.config.stop_signal.as_deref().unwrap_or("").trim();
    if written.is_empty() {
        return Ok(StopSignal {
            number: Signal::TERM.as_raw(),
            name: "SIGTERM",
        });
    }
    let upper = written.to_ascii_uppercase();
    let found = match written.parse::<i32>() {
        Ok(n) => SIGNALS.iter().find(|(_, s)| s.as_raw() == n),
        Err(_) => SIGNALS
            .iter()
            .find(|(name, _)| *name == upper || name.strip_prefix("SIG") == Some(&upper)),
    };
    found
        .map(|(name, s)| StopSignal {
            number: s.as_raw(),
            name,
        })
        .ok_or_else(|| {
            format!("the image's StopSignal `{written}` is not a signal this runner knows")
        })
}

/// How a program ended, as a sentence's end: "exited with code 3",
/// "was killed by signal 6 (SIGABRT)".
pub fn ended(status: Status) -> String {
    match status {
        Status::Exit(code) => format!("exited with code {code}"),
        Status::Signal(n) => match signal_name(n) {
            Some(name) => format!("was killed by signal {n} ({name})"),
            None => format!("was killed by signal {n}"),
        },
    }
}

/// What a service test found, and the program's outcome (its output
/// among it) for the report.
pub struct ServiceResult {
    pub problems: Vec<String>,
    pub outcome: Outcome,
}

/// Runs the service test: `inv` started in the unpacked image at `root`,
/// made ready, asked, stopped with `stop`, and checked against `test`
/// (exit code and output) and `service`.
pub fn run(
    root: &Path,
    emulator: Option<std::path::PathBuf>,
    inv: &Invocation,
    (test, service): (&CommandTest, &ServiceTest),
    stop: StopSignal,
    helper: Option<&Path>,
) -> Result<ServiceResult, CommandError> {
    let running = command::sandbox(root, emulator, inv, helper).spawn()?;
    let mut problems = Vec::new();
    // Whether this test ended the program itself, so that its outcome's
    // `Cancelled` is no problem of its own.
    let mut killed = false;
    match ready(&running, service)? {
        Err(why) => {
            problems.push(why);
            running.kill();
            killed = true;
        }
        Ok(()) => {
            let gone = ask(&running, service, &mut problems)?;
            if !gone {
                killed = stop_it(&running, service, stop, test.exit_code, &mut problems)?;
            }
        }
    }
    let outcome = running.wait()?;
    if let Some(reason) = outcome.stopped
        && !(killed && reason == StopReason::Cancelled)
    {
        problems.insert(0, command::stopped(reason, inv));
    }
    check_output("stdout", &test.stdout, &outcome.stdout, &mut problems);
    check_output("stderr", &test.stderr, &outcome.stderr, &mut problems);
    Ok(ServiceResult { problems, outcome })
}

/// The outcome if the program has ended, without waiting.
fn has_ended(running: &Running) -> Result<Option<Outcome>, sandbox::Error> {
    running.wait_timeout(Duration::ZERO)
}

/// Waits for the program to be ready: to accept a connection on its port,
/// and to answer `ready.http` with a success when the test names a path.
/// The outer error is the sandbox's own; the inner one says why the
/// program was not ready.
fn ready(running: &Running, service: &ServiceTest) -> Result<Result<(), String>, sandbox::Error> {
    let limit = Duration::from_millis(service.ready_timeout_ms);
    let deadline = Instant::now() + limit;
    let mut last = format!("nothing accepted a connection on port {}", service.port);
    loop {
        if let Some(outcome) = has_ended(running)? {
            return Ok(Err(format!(
                "not ready: the program {} before it accepted a connection on port {}",
                ended(outcome.status),
                service.port
            )));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Err(format!(
                "not ready: {last} within the ready timeout of {:.1}s",
                limit.as_secs_f64()
            )));
        }
        let mut pause = POLL;
        match running.connect(service.port) {
            Ok(stream) => {
                let Some(path) = &service.ready_http else {
                    return Ok(Ok(()));
                };
                let request = http::request_bytes("GET", path, &host(service.port), &[], None);
                let limit = left.min(Duration::from_millis(REQUEST_TIMEOUT_MS));
                match http::exchange(stream, &request, false, limit) {
                    Ok(r) if (200..300).contains(&r.status) => return Ok(Ok(())),
                    Ok(r) => last = format!("GET {path} answered {}", status_text(&r)),
                    Err(e) => last = format!("GET {path}: {e}"),
                }
                pause = HTTP_POLL;
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(e) => last = format!("connecting to port {}: {e}", service.port),
        }
        std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
    }
}

/// The `Host` a request names: the address it is sent to.
fn host(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

fn status_text(r: &Response) -> String {
    format!("{} {}", r.status, r.reason).trim_end().to_owned()
}

/// Sends every request in order, each on a connection of its own, adding
/// what went wrong to `problems`; true when the program ended on the way,
/// which ends the test's requests.
fn ask(
    running: &Running,
    service: &ServiceTest,
    problems: &mut Vec<String>,
) -> Result<bool, sandbox::Error> {
    for (i, request) in service.requests.iter().enumerate() {
        let what = match request {
            ServiceRequest::Http(r) => format!("request {} ({} {})", i + 1, r.method, r.path),
            ServiceRequest::Tcp(_) => format!("request {} (tcp)", i + 1),
        };
        let found = match request {
            ServiceRequest::Http(r) => http_request(running, service.port, r),
            ServiceRequest::Tcp(t) => tcp_exchange(running, service.port, t),
        };
        // A request that failed may have found the program gone, before the
        // sandbox has told its end: that is given a moment to arrive.
        let settle = if found.is_empty() {
            Duration::ZERO
        } else {
            END_NOTICE
        };
        if !found.is_empty() {
            problems.push(format!("{what}:\n{}", indent(&found.join("\n"))));
        }
        if let Some(outcome) = running.wait_timeout(settle)? {
            problems.push(format!(
                "the program {} before it was stopped (noticed at {what})",
                ended(outcome.status)
            ));
            return Ok(true);
        }
    }
    Ok(false)
}

/// One HTTP request and the checks of its answer.
fn http_request(running: &Running, port: u16, r: &HttpRequest) -> Vec<String> {
    let stream = match running.connect(port) {
        Ok(stream) => stream,
        Err(e) => return vec![format!("connecting to port {port}: {e}")],
    };
    let bytes = http::request_bytes(
        &r.method,
        &r.path,
        &host(port),
        &r.headers,
        r.body.as_deref().map(str::as_bytes),
    );
    let limit = Duration::from_millis(REQUEST_TIMEOUT_MS);
    match http::exchange(stream, &bytes, r.method == "HEAD", limit) {
        Ok(response) => check_http(r, &response),
        Err(e) => vec![format!("no answer: {e}")],
    }
}

/// Every way `response` falls short of `r`: the status and the headers as
/// one diff of expected against actual lines, then the body.
pub fn check_http(r: &HttpRequest, response: &Response) -> Vec<String> {
    let mut problems = Vec::new();
    let actual_status = format!("status: {}", status_text(response));
    let status_ok = match r.status {
        Some(status) => response.status == status,
        None => (200..300).contains(&response.status),
    };
    let mut expected = match (status_ok, r.status) {
        (true, _) => actual_status.clone(),
        (false, Some(status)) => format!("status: {status}"),
        (false, None) => "status: 2xx".to_owned(),
    };
    let mut actual = actual_status;
    for (name, want) in &r.response_headers {
        let values: Vec<&str> = response.header(name).collect();
        let _ = write!(expected, "\n{name}: {want}");
        if values.contains(&want.as_str()) {
            let _ = write!(actual, "\n{name}: {want}");
        } else if values.is_empty() {
            let _ = write!(actual, "\n{name}: (none)");
        }
        for value in values.iter().filter(|v| **v != want) {
            let _ = write!(actual, "\n{name}: {value}");
        }
    }
    if expected != actual {
        problems.push(format!(
            "status and headers differ (- expected, + actual):\n{}",
            indent(&diff::lines(&expected, &actual))
        ));
    }
    check_output("body", &r.body_expect, &response.body, &mut problems);
    if !problems.is_empty() && r.body_expect.equals.is_none() {
        problems.push(format!("body: {}", quoted(&response.body)));
    }
    problems
}

/// The start of `bytes` as a quoted string, for a failure's message; bytes
/// that are not UTF-8 are shown exactly, as a byte string (`b"\x81\x80"`),
/// and in hex, the way `contains-hex` takes them.
fn quoted(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(QUOTED_BODY_BYTES)];
    // Cut through the middle of a character, it is still text.
    let is_text = std::str::from_utf8(shown).map_or_else(|e| e.error_len().is_none(), |_| true);
    let mut text = if is_text {
        format!("{:?}", String::from_utf8_lossy(shown))
    } else {
        format!(
            "b\"{}\" (hex: {})",
            shown.escape_ascii(),
            command::hex(shown)
        )
    };
    if bytes.len() > shown.len() {
        let _ = write!(text, " and {} more bytes", bytes.len() - shown.len());
    }
    text
}

/// Whether `got` already holds what `expect` asks for, so that reading can
/// stop before the program closes the connection.
fn satisfied(expect: &OutputExpect, got: &[u8]) -> bool {
    let equals = expect.equals.as_ref().is_none_or(|e| got.len() >= e.len());
    let contains = expect.contains.iter().all(|c| holds(got, c.as_bytes()))
        && expect.contains_bytes.iter().all(|c| holds(got, c));
    // The manifest has already compiled every pattern once; the answer is
    // made text only for one.
    equals
        && contains
        && expect.regex.as_ref().is_none_or(|p| {
            regex_lite::Regex::new(p).is_ok_and(|re| re.is_match(&String::from_utf8_lossy(got)))
        })
}

/// One TCP exchange: `send` written, then bytes read until what `expect`
/// asks for has come, the program closes the connection, or time is up.
fn tcp_exchange(running: &Running, port: u16, t: &TcpExchange) -> Vec<String> {
    let stream = match running.connect(port) {
        Ok(stream) => stream,
        Err(e) => return vec![format!("connecting to port {port}: {e}")],
    };
    let mut timed = Timed::new(stream, Duration::from_millis(REQUEST_TIMEOUT_MS));
    if let Err(e) = timed.send(&t.send) {
        return vec![format!("sending: {e}")];
    }
    let expects = t.expect != OutputExpect::default();
    let mut got = Vec::new();
    let mut chunk = [0u8; 16 << 10];
    let mut problems = Vec::new();
    while expects && !satisfied(&t.expect, &got) {
        match timed.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) if got.len() + n > MAX_BODY_BYTES => {
                problems.push(HttpError::BodyTooLarge.to_string());
                break;
            }
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                problems.push(format!("{}, so far {}", timed.timed_out(), quoted(&got)));
                break;
            }
            Err(e) => {
                problems.push(format!("reading: {e}"));
                break;
            }
        }
    }
    let before = problems.len();
    check_output("answer", &t.expect, &got, &mut problems);
    if problems.len() > before && t.expect.equals.is_none() {
        problems.push(format!("answer: {}", quoted(&got)));
    }
    problems
}

/// Sends the stop signal and waits for the program to end, adding what
/// went wrong to `problems`; true when it had to be killed.
fn stop_it(
    running: &Running,
    service: &ServiceTest,
    stop: StopSignal,
    exit_code: i32,
    problems: &mut Vec<String>,
) -> Result<bool, sandbox::Error> {
    // A program that ended in the meantime is waited for as usual.
    let _ = running.signal(stop.number);
    let limit = Duration::from_millis(service.stop_timeout_ms);
    let Some(outcome) = running.wait_timeout(limit)? else {
        problems.push(format!(
            "stop: still running {:.1}s after {}; killed",
            limit.as_secs_f64(),
            stop.name
        ));
        running.kill();
        return Ok(true);
    };
    let expected = match outcome.status {
        Status::Exit(code) => code == exit_code,
        // As a shell and `docker` report it, 128 + N for signal N.
        Status::Signal(n) => 128 + n == exit_code,
    };
    if !expected && outcome.stopped.is_none() {
        problems.push(format!(
            "stop: expected exit code {exit_code} after {}, but the program {}",
            stop.name,
            ended(outcome.status)
        ));
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::spec::ExecConfig;

    fn config(stop: Option<&str>) -> ImageConfig {
        ImageConfig {
            config: ExecConfig {
                stop_signal: stop.map(str::to_owned),
                ..ExecConfig::default()
            },
            ..ImageConfig::default()
        }
    }

    #[test]
    fn the_stop_signal_is_the_images_else_sigterm() {
        assert_eq!(stop_signal(&config(None)).unwrap().name, "SIGTERM");
        assert_eq!(stop_signal(&config(Some(""))).unwrap().number, 15);
        for written in ["SIGINT", "INT", "sigint", "2"] {
            let s = stop_signal(&config(Some(written))).unwrap();
            assert_eq!((s.number, s.name), (2, "SIGINT"), "{written}");
        }
        let e = stop_signal(&config(Some("SIGNOPE"))).unwrap_err();
        assert!(e.contains("`SIGNOPE`"), "{e}");
        assert_eq!(ended(Status::Signal(6)), "was killed by signal 6 (SIGABRT)");
        assert_eq!(ended(Status::Exit(3)), "exited with code 3");
    }

    fn request() -> HttpRequest {
        HttpRequest {
            method: "POST".into(),
            path: "/api".into(),
            headers: Vec::new(),
            body: Some("{}".into()),
            status: Some(201),
            response_headers: [("content-type".to_owned(), "application/json".to_owned())].into(),
            body_expect: OutputExpect {
                contains: vec!["\"ok\"".into()],
                ..OutputExpect::default()
            },
        }
    }

    fn response(status: u16, kind: &str, body: &str) -> Response {
        Response {
            status,
            reason: if status == 201 { "Created" } else { "OK" }.into(),
            headers: vec![("Content-Type".into(), kind.into())],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_right_answer_passes_and_header_names_ignore_case() {
        let ok = response(201, "application/json", "{\"ok\":true}");
        assert_eq!(check_http(&request(), &ok), Vec::<String>::new());
        let any_success = HttpRequest {
            status: None,
            response_headers: Default::default(),
            body_expect: OutputExpect::default(),
            ..request()
        };
        assert!(check_http(&any_success, &response(200, "text/plain", "")).is_empty());
        assert!(!check_http(&any_success, &response(404, "text/plain", "")).is_empty());
    }

    #[test]
    fn a_wrong_answer_is_a_readable_diff() {
        let wrong = response(200, "text/plain", "nope");
        let text = check_http(&request(), &wrong).join("\n");
        assert!(
            text.contains(
                "status and headers differ (- expected, + actual):\n    -status: 201\n    \
                 -content-type: application/json\n    +status: 200 OK\n    \
                 +content-type: text/plain"
            ),
            "{text}"
        );
        assert!(
            text.contains("body does not contain \"\\\"ok\\\"\""),
            "{text}"
        );
        assert!(text.contains("body: \"nope\""), "{text}");
        let missing = Response {
            headers: Vec::new(),
            ..response(201, "", "{\"ok\":1}")
        };
        let text = check_http(&request(), &missing).join("\n");
        assert!(text.contains("+content-type: (none)"), "{text}");
        assert!(text.contains(" status: 201 Created"), "{text}");
    }

    #[test]
    fn an_exchange_is_done_once_its_expectation_is_met() {
        let expect = |equals: Option<&str>, contains: &[&str], regex: Option<&str>| OutputExpect {
            equals: equals.map(str::to_owned),
            contains: contains.iter().map(|s| (*s).to_owned()).collect(),
            regex: regex.map(str::to_owned),
            ..OutputExpect::default()
        };
        assert!(satisfied(
            &expect(Some("+PONG\r\n"), &[], None),
            b"+PONG\r\n"
        ));
        assert!(!satisfied(&expect(Some("+PONG\r\n"), &[], None), b"+PO"));
        assert!(satisfied(&expect(None, &["PONG"], Some("^\\+")), b"+PONG"));
        assert!(!satisfied(&expect(None, &["PONG", "x"], None), b"+PONG"));
        // Binary answers: bytes that are not UTF-8 are matched as they are.
        let bytes = |b: &[&[u8]]| OutputExpect {
            contains_bytes: b.iter().map(|b| b.to_vec()).collect(),
            ..OutputExpect::default()
        };
        assert!(satisfied(
            &bytes(&[b"\x81\x80", b"\x7f\0\0\x01"]),
            b"\x12\x34\x81\x80\x7f\0\0\x01"
        ));
        assert!(!satisfied(&bytes(&[b"\x81\x80"]), b"\x12\x34\x81"));
        assert!(satisfied(&expect(None, &["www"], None), b"\x81\x80\x03www"));
    }

    #[test]
    fn answers_that_are_not_text_are_shown_exactly() {
        assert_eq!(quoted(b"+PONG\r\n"), "\"+PONG\\r\\n\"");
        assert_eq!(
            quoted(b"\x12\x34\x81\x80\x03www"),
            "b\"\\x124\\x81\\x80\\x03www\" (hex: 12 34 81 80 03 77 77 77)"
        );
        // Text cut in the middle of a character is still text.
        let cut = "caf\u{e9}".as_bytes();
        assert_eq!(quoted(&cut[..cut.len() - 1]), "\"caf\u{fffd}\"");
    }
}

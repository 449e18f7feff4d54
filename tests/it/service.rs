//! Service tests and `run -p` end to end: the probe's `serve` mode as a
//! server that answers, answers wrongly, never listens, ignores its stop
//! signal, crashes, or signals everything it can see, on amd64 and on
//! arm64 under qemu; two services on one port at once; the `web` example
//! published on a host port and stopped with Ctrl-C; and a build
//! interrupted by SIGINT or SIGTERM, which starts nothing.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Fixture, cli, examples, nested_target_dir, repo_root, require_tool};
use crate::test_images::fixture_with;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn test_images(fx: &Fixture, extra: &[&str]) -> Output {
    cli()
        .current_dir(fx.path())
        .env("CARGO_TARGET_DIR", nested_target_dir())
        .args(["test-images", "--no-cache", "--out"])
        .arg(fx.path().join("out"))
        .args(extra)
        .output()
        .unwrap()
}

/// The failure report of one test, from its `---- NAME ----` header to the
/// next one.
fn details<'a>(text: &'a str, test: &str) -> &'a str {
    let header = format!("---- {test} ----");
    let start = text
        .find(&header)
        .unwrap_or_else(|| panic!("no {header} in:\n{text}"));
    let rest = &text[start + header.len()..];
    let end = rest
        .find("\n---- ")
        .or_else(|| rest.find("\nfailures:"))
        .unwrap_or(rest.len());
    &rest[..end]
}

const SERVICES: &str = r#"
[defaults]
platforms = ["linux/amd64", "linux/arm64"]

[images.svc]
package = "isoprobe"
cmd = ["serve", "8080", "--term-exit", "0"]

[images.svc.tests.answers]
service = { port = 8080, ready-timeout = 20, ready = { http = "/status/204" } }
requests = [
  { path = "/", status = 200, response-headers = { "Content-Type" = "text/plain; charset=utf-8" }, body = { regex = '^hello from probe \(' } },
  { path = "/status/404", status = 404, body = { equals = "status 404\n" } },
  { method = "POST", path = "/echo", headers = { "content-type" = "application/json" }, body-text = '{"a":1}', response-headers = { "content-type" = "application/json" }, body = { equals = '{"a":1}' } },
  { tcp = { send = "GET / HTTP/1.0\r\n\r\n", expect = { contains = ["HTTP/1.1 200 OK", "hello from probe"] } } },
  # POST /echo HTTP/1.0 with a body of four bytes that are not UTF-8, echoed back
  { tcp = { send-hex = """
      50 4f 53 54 20 2f 65 63 68 6f 20 48 54 54 50 2f 31 2e 30 0d 0a 63 6f 6e 74 65 6e 74 2d 6c 65 6e 67 74 68 3a 20 34 0d 0a 0d 0a
      81 80 ff 00""", expect = { contains = ["HTTP/1.1 200 OK"], contains-hex = ["81 80 ff 00"] } } },
]
stop = { exit-code = 0, timeout = 10 }
stdout = { contains = ["probe: listening on port 8080", "probe: stopping on SIGTERM"] }

[images.svc.tests.killed-by-its-stop-signal]
args = ["serve", "8080"]
service = { port = 8080, ready-timeout = 20 }
stop = { exit-code = 143 }

[images.svc.tests.wrong-status]
service = { port = 8080, ready-timeout = 20 }
requests = [
  { path = "/status/503", status = 200 },
  { tcp = { send-hex = "50 4f 53 54 20 2f 65 63 68 6f 20 48 54 54 50 2f 31 2e 30 0d 0a 63 6f 6e 74 65 6e 74 2d 6c 65 6e 67 74 68 3a 20 34 0d 0a 0d 0a 81 80 ff 00", expect = { contains-hex = ["81 80 fe"] } } },
]

[images.svc.tests.never-listens]
args = ["serve", "8080", "--never-listen"]
service = { port = 8080, ready-timeout = 1.5 }

[images.svc.tests.ignores-its-stop-signal]
args = ["serve", "8080", "--ignore-term"]
service = { port = 8080, ready-timeout = 20 }
requests = [{ path = "/" }]
stop = { timeout = 1 }

[images.svc.tests.crashes]
args = ["serve", "8080", "--crash-after", "1"]
service = { port = 8080, ready-timeout = 20 }
requests = [{ path = "/" }, { path = "/" }, { path = "/" }]

[images.svc.tests.signals-everyone]
args = ["serve", "8080", "--signal-all", "--term-exit", "0"]
user = "0:0"
service = { port = 8080, ready-timeout = 20 }
requests = [{ path = "/" }]
stdout = { contains = ['"kill-all":', "probe: stopping on SIGTERM"] }

[images.svc.tests.signals-everyone-and-exits]
args = ["signal-all", "exit", "3"]
user = "0:0"
service = { port = 8080, ready-timeout = 20 }
"#;

#[test]
fn services_answer_fail_readably_and_report_what_the_program_did() {
    if require_tool("qemu-aarch64-static", "qemu-user-static").is_none() {
        return;
    }
    let fx = fixture_with(SERVICES);
    let junit = fx.path().join("junit.xml");
    let out = test_images(&fx, &["--junit", junit.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for platform in ["linux/amd64", "linux/arm64"] {
        for (test, verdict) in [
            ("answers", "ok"),
            ("killed-by-its-stop-signal", "ok"),
            ("signals-everyone", "ok"),
            ("wrong-status", "FAILED"),
            ("never-listens", "FAILED"),
            ("ignores-its-stop-signal", "FAILED"),
            ("crashes", "FAILED"),
            ("signals-everyone-and-exits", "FAILED"),
        ] {
            let line = format!("test svc/{test} [{platform}] ... {verdict}");
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
        let at = |test: &str| details(&text, &format!("svc/{test} [{platform}]")).to_owned();

        // A wrong status is a diff of expected against actual, with the body.
        let wrong = at("wrong-status");
        assert!(
            wrong.contains("service: /isoprobe serve 8080 --term-exit 0"),
            "{wrong}"
        );
        assert!(
            wrong.contains(
                "request 1 (GET /status/503):\n    status and headers differ (- expected, + actual):\n        \
                 -status: 200\n        +status: 503 Service Unavailable"
            ),
            "{wrong}"
        );
        assert!(wrong.contains("body: \"status 503\\n\""), "{wrong}");
        // An answer that is not text is shown exactly, and in hex.
        assert!(
            wrong.contains("request 2 (tcp):\n    answer does not contain the bytes 81 80 fe\n"),
            "{wrong}"
        );
        assert!(
            wrong
                .contains("\\r\\n\\x81\\x80\\xff\\x00\" (hex: 48 54 54 50 2f 31 2e 31 20 32 30 30"),
            "{wrong}"
        );

        // Never ready: the ready timeout, and what the program printed.
        let never = at("never-listens");
        assert!(
            never.contains(
                "not ready: nothing accepted a connection on port 8080 within the ready timeout of 1.5s"
            ),
            "{never}"
        );
        assert!(
            never.contains("--- stdout\nprobe: not listening"),
            "{never}"
        );

        // Deaf to its stop signal: killed, and the stop check fails.
        let deaf = at("ignores-its-stop-signal");
        assert!(
            deaf.contains("stop: still running 1.0s after SIGTERM; killed"),
            "{deaf}"
        );

        // A crash mid-way names how the program ended.
        let crash = at("crashes");
        assert!(
            crash.contains("the program was killed by signal 6 (SIGABRT) before it was stopped"),
            "{platform}: {crash}"
        );
        assert!(!crash.contains("stop:"), "{crash}");
        assert!(
            crash.contains("probe: crashing after 1 requests"),
            "{platform}: {crash}"
        );

        // A program that signals everything it sees still gets a result.
        let hostile = at("signals-everyone-and-exits");
        assert!(
            hostile.contains(
                "not ready: the program exited with code 3 before it accepted a connection on port 8080"
            ),
            "{hostile}"
        );
        assert!(!text.contains("without a result"), "{text}");
    }
    assert!(text.contains("6 passed, 10 failed"), "{text}");

    // The services' output is in the JUnit report, passed or failed.
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}:\n{xml}"));
    let answers = doc
        .descendants()
        .find(|n| n.attribute("name") == Some("answers"))
        .unwrap();
    let out = answers
        .children()
        .find(|n| n.has_tag_name("system-out"))
        .and_then(|n| n.text())
        .unwrap_or_default();
    assert!(out.contains("probe: stopping on SIGTERM"), "{xml}");
}

/// Host processes whose command line contains `needle`, but this one.
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) || name == std::process::id().to_string() {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline"))
            && String::from_utf8_lossy(&cmdline).contains(needle)
        {
            found.push(format!(
                "{name}: {}",
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            ));
        }
    }
    found
}

#[test]
fn two_services_on_one_port_run_at_once() {
    let tag = format!("--tag=same-port-{}", std::process::id());
    let images = format!(
        r#"
[defaults]
platforms = ["linux/amd64"]

[images.one]
package = "isoprobe"
cmd = ["serve", "8080", "--name", "one", "--listen-after", "3000", "--term-exit", "0", "{tag}-one"]

[images.two]
package = "isoprobe"
cmd = ["serve", "8080", "--name", "two", "--listen-after", "3000", "--term-exit", "0", "{tag}-two"]

[images.one.tests.serves]
service = {{ port = 8080, ready-timeout = 60 }}
requests = [{{ path = "/", body = {{ contains = ["hello from one"] }} }}]

[images.two.tests.serves]
service = {{ port = 8080, ready-timeout = 60 }}
requests = [{{ path = "/", body = {{ contains = ["hello from two"] }} }}]
"#
    );
    let fx = fixture_with(&images);
    let mut child = cli()
        .current_dir(fx.path())
        .env("CARGO_TARGET_DIR", nested_target_dir())
        .args(["test-images", "--no-cache", "-j", "2", "--out"])
        .arg(fx.path().join("out"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Each listens only after three seconds: long enough to see both alive.
    let started = Instant::now();
    let mut together = false;
    while child.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "test-images never ended"
        );
        let one = !processes_with(&format!("{tag}-one")).is_empty();
        let two = !processes_with(&format!("{tag}-two")).is_empty();
        together |= one && two;
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "test one/serves [linux/amd64] ... ok",
        "test two/serves [linux/amd64] ... ok",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
    assert!(together, "the two services never ran at the same time");
}

/// A port on the host's loopback that nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name}");
}

/// Waits for `child` to end within `limit`, and returns its output.
fn wait_within(mut child: Child, limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit + Duration::from_secs(30) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = started.elapsed();
    (child.wait_with_output().unwrap(), took)
}

#[test]
fn run_publishes_a_port_and_stops_on_ctrl_c() {
    let Some(curl) = require_tool("curl", "curl") else {
        return;
    };
    let ex = examples();
    let port = free_port();
    let child = cli()
        .current_dir(repo_root())
        .env("CARGO_TARGET_DIR", nested_target_dir())
        .args(["run", "web", "--out"])
        .arg(&ex.out_dir)
        .args(["-p", &format!("127.0.0.1:{port}:8080")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/");
    let started = Instant::now();
    let page = loop {
        let out = Command::new(&curl)
            .args([
                "--silent",
                "--show-error",
                "--max-time",
                "5",
                "--include",
                &url,
            ])
            .output()
            .unwrap();
        if out.status.success() {
            break stdout(&out);
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the page never came"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.contains("<title>scratchpack web</title>"), "{page}");
    // A POST through the forwarded port too.
    let out = Command::new(&curl)
        .args(["--silent", "--max-time", "5", "--data", "[1,2]"])
        .arg(format!("{url}api"))
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "{\"received\":[1,2]}\n");

    signal(&child, "INT");
    let (out, _) = wait_within(child, Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{}{stderr}", stdout(&out));
    assert!(
        stdout(&out).contains("web: stopping on signal 15"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr.contains(&format!("Publishing 127.0.0.1:{port} -> 8080/tcp")),
        "{stderr}"
    );
    // The port is closed once the program has ended.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn run_refuses_to_publish_on_the_host_network() {
    let out = cli()
        .current_dir(repo_root())
        .args(["run", "web", "--network", "host", "-p", "8080:8080"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--network host"), "{stderr}");
    let out = cli()
        .current_dir(repo_root())
        .args(["run", "web", "-p", "53:53/udp"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// A program whose build script sleeps: its build is under way for as long
/// as a test needs.
const SLOW_BUILD: &str = "fn main() {\n    println!(\"cargo:rerun-if-changed=build.rs\");\n    \
                          std::thread::sleep(std::time::Duration::from_secs(600));\n}\n";

const SLOW_MAIN: &str = "fn main() { println!(\"the slow image started\"); }\n";

const SLOW_IMAGES: &str = r#"
[images.slow]
package = "slow"

[images.slow.tests.greets]
stdout = { contains = ["the slow image started"] }
"#;

/// Starts `args` in `fx`, with a target directory inside it, once its
/// build script runs sends `signal` to the command alone, as `timeout -s`
/// or `kill` would, and checks that it ends within 2 s with 130, leaving
/// no cargo, rustc or build script behind and starting nothing.
fn interrupt_during_build(fx: &Fixture, args: &[&str], signal_name: &str) {
    let root = fx.path().to_str().unwrap().to_owned();
    let child = cli()
        .current_dir(fx.path())
        .env_remove("CARGO_TARGET_DIR")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !processes_with(&root)
        .iter()
        .any(|p| p.contains("build-script-build"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the build script never ran"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(&child, signal_name);
    let (out, took) = wait_within(child, Duration::from_secs(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        took <= Duration::from_secs(2),
        "{args:?}: took {took:?}: {stderr}"
    );
    assert_eq!(out.status.code(), Some(130), "{args:?}: {stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(
        !stdout(&out).contains("the slow image started"),
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains("image test"), "{}", stdout(&out));
    let left = processes_with(&root);
    assert!(left.is_empty(), "{args:?} left {left:#?}");
}

#[test]
fn an_interrupted_build_stops_at_once_and_starts_nothing() {
    let fx = Fixture::new(&[("slow", SLOW_MAIN)], SLOW_IMAGES);
    std::fs::write(fx.path().join("crates/slow/build.rs"), SLOW_BUILD).unwrap();
    interrupt_during_build(&fx, &["run", "slow"], "INT");
    interrupt_during_build(&fx, &["test-images"], "INT");
    interrupt_during_build(&fx, &["test-images"], "TERM");
    assert!(!fx.path().join("target/images/slow").exists());
}

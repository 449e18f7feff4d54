//! `run` end to end, Docker's hello-world the way `docker run --rm` runs it:
//! an image of one static binary (`FROM scratch`, `ADD hello /`,
//! `CMD ["/hello"]`), built when needed and run in the sandbox with stdin,
//! stdout and stderr attached and its exit code passed on.

use std::io::Write;
use std::process::{Output, Stdio};

use crate::support::{Fixture, cli, nested_target_dir};

/// The hello-world program: greets, or echoes stdin, or names its network
/// interfaces, or never ends; exits with `exit=N`'s code.
const HELLO_WORLD: &str = r#"
use std::io::Read;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("cat") => {
            let mut input = String::new();
            std::io::stdin().read_to_string(&mut input).unwrap();
            print!("{input}");
            return;
        }
        Some("interfaces") => {
            let dev = std::fs::read_to_string("/proc/net/dev").unwrap();
            let names: Vec<&str> = dev.lines().skip(2).filter_map(|l| l.split(':').next()).map(str::trim).collect();
            println!("interfaces: {}", names.join(" "));
            return;
        }
        Some("sleep") => loop {
            std::thread::sleep(std::time::Duration::from_secs(60));
        },
        _ => {}
    }
    println!("Hello from scratch!");
    println!("args: {}", args.join(" "));
    println!("GREETING={}", std::env::var("GREETING").unwrap_or_default());
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    println!("uid: {}", uid.split_whitespace().nth(1).unwrap());
    eprintln!("this went to stderr");
    if let Some(code) = args.iter().find_map(|a| a.strip_prefix("exit=")) {
        std::process::exit(code.parse().unwrap());
    }
}
"#;

const IMAGES: &str = r#"
[defaults]
platforms = ["linux/amd64"]

[images.hello-world]
package = "hello"
cmd = ["from", "cmd"]
user = "65532:65532"
env = { GREETING = "from the image" }
"#;

fn run_image(fx: &Fixture, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = cli()
        .current_dir(fx.path())
        .env("CARGO_TARGET_DIR", nested_target_dir())
        .args(["run", "--out"])
        .arg(fx.path().join("out"))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn hello_world_runs_like_docker_run_rm() {
    let fx = Fixture::new(&[("hello", HELLO_WORLD)], IMAGES);

    // Built when needed, run with the image's cmd, env and user.
    let out = run_image(&fx, &["hello-world"], None);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.starts_with("Hello from scratch!\n"), "{stdout}");
    assert!(stdout.contains("args: from cmd\n"), "{stdout}");
    assert!(stdout.contains("GREETING=from the image\n"), "{stdout}");
    assert!(stdout.contains("uid: 65532\n"), "{stdout}");
    assert!(text(&out.stderr).contains("this went to stderr"));
    assert!(!stdout.contains("this went to stderr"));

    // ARGS replace the cmd; the program's exit code is the command's.
    let out = run_image(
        &fx,
        &[
            "hello-world",
            "--env",
            "GREETING=hi",
            "--user",
            "1234:5678",
            "--",
            "exit=7",
            "x",
        ],
        None,
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(7), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("args: exit=7 x\n"), "{stdout}");
    assert!(stdout.contains("GREETING=hi\n"), "{stdout}");
    assert!(stdout.contains("uid: 1234\n"), "{stdout}");

    // stdin is attached.
    let out = run_image(
        &fx,
        &["hello-world", "--", "cat"],
        Some("piped in\nand more\n"),
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "piped in\nand more\n");

    // No network but loopback unless asked for the host's.
    let out = run_image(&fx, &["hello-world", "--", "interfaces"], None);
    assert_eq!(text(&out.stdout), "interfaces: lo\n");
    let out = run_image(
        &fx,
        &["hello-world", "--network", "host", "--", "interfaces"],
        None,
    );
    let host_dev = std::fs::read_to_string("/proc/net/dev").unwrap();
    let host_count = host_dev.lines().skip(2).count();
    let seen = text(&out.stdout);
    assert_eq!(
        seen.trim_end().split(' ').count() - 1,
        host_count,
        "{seen} vs {host_dev}"
    );

    // A timeout stops it; the code says by which signal.
    let out = run_image(
        &fx,
        &["hello-world", "--timeout", "0.5", "--", "sleep"],
        None,
    );
    assert_eq!(out.status.code(), Some(128 + 15), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("timeout"),
        "{}",
        text(&out.stderr)
    );

    // Bad usage and missing programs, with docker's codes.
    let out = run_image(&fx, &["hello-world", "--platform", "linux/s390x"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no platform linux/s390x"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn run_refuses_an_image_over_its_unpack_limits() {
    let images = format!(
        r#"{IMAGES}
[images.few-bytes]
package = "hello"
unpack-limits = {{ max-bytes = 4096 }}

[images.few-entries]
package = "hello"
dirs = [{{ path = "/tmp", mode = "1777" }}]
unpack-limits = {{ max-entries = 1 }}
"#
    );
    let fx = Fixture::new(&[("hello", HELLO_WORLD)], &images);
    for (image, limit) in [("few-bytes", "max-bytes"), ("few-entries", "max-entries")] {
        let out = run_image(&fx, &[image], None);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{image}: {stderr}");
        assert!(
            stderr.contains(&format!("the unpack limit `{limit}`")),
            "{image}: {stderr}"
        );
        assert!(!text(&out.stdout).contains("Hello"), "{image} ran");
    }
}

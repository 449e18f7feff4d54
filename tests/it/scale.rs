//! Scaling out, end to end against a real registry as the cache: a second
//! clone at another path, with its own target directory, compiles nothing
//! and writes the same bytes; a corrupted entry is found, reported and
//! rebuilt; partitioned runs build and test every image exactly once and a
//! last run assembles everything from the cache; sccache with a redis
//! backend serves a fresh checkout's crates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::registry::server::{Registry, free_port, have_tool};
use crate::support::{self, Fixture, built_images, compiled, logging_wrapper, require_tool, run};
use crate::validate;

const MAIN_A: &str = "fn main() { println!(\"hello from a\"); }\n";
const MAIN_B: &str = "fn main() { println!(\"hello from b\"); }\n";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub(crate) fn git(dir: &Path, args: &[&str]) {
    let out = run(Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .current_dir(dir));
    assert!(out.status.success(), "git {args:?}");
}

/// A git repository holding the fixture workspace.
pub(crate) fn repository(images_toml: &str) -> Fixture {
    let fx = Fixture::new(&[("a", MAIN_A), ("b", MAIN_B)], images_toml);
    // The lock file is committed, as in any workspace that ships binaries:
    // it is an input of every key.
    let lock = run(Command::new(env!("CARGO"))
        .args(["generate-lockfile", "--offline"])
        .current_dir(fx.path()));
    assert!(lock.status.success());
    git(fx.path(), &["init", "-q"]);
    git(fx.path(), &["add", "-A"]);
    git(fx.path(), &["commit", "-q", "-m", "fixture"]);
    fx
}

/// A clone of `from` at a fresh path of its own (one level deeper each
/// time, so no two clones share a path length either).
pub(crate) fn clone(from: &Path, depth: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("scratchpack-clone-")
        .tempdir()
        .unwrap();
    let mut path = dir.path().to_owned();
    for i in 0..depth {
        path.push(format!("d{i}"));
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let out = run(Command::new("git")
        .args(["clone", "-q"])
        .arg(from)
        .arg(&path));
    assert!(out.status.success());
    (dir, path)
}

/// Runs the CLI in `dir` (its own `target/`), rustc wrapped to log to `log`.
pub(crate) fn xtask(dir: &Path, wrapper: &Path, args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let out = run(support::cli()
        .current_dir(dir)
        .env_remove("CARGO_TARGET_DIR")
        .env("RUSTC_WRAPPER", wrapper)
        .args(args));
    (out, started.elapsed())
}

/// name -> (digest, archive bytes' sha256), checking each layout.
fn outputs(out: &Output) -> BTreeMap<String, (String, String)> {
    built_images(out)
        .into_iter()
        .map(|i| {
            let layout = PathBuf::from(i["layout"].as_str().unwrap());
            validate::layout(&layout);
            let archive = std::fs::read(i["archive"].as_str().unwrap()).unwrap();
            let name = i["name"].as_str().unwrap().to_owned();
            let digest = i["digest"].as_str().unwrap().to_owned();
            (name, (digest, crate::registry::image::sha256(&archive)))
        })
        .collect()
}

const TWO_IMAGES: &str = r#"
[defaults]
platforms = ["linux/amd64"]
cache = "CACHE"

[images.a]
package = "a"

[images.b]
package = "b"
platforms = ["linux/amd64", "linux/arm64"]
"#;

#[test]
fn a_second_clone_compiles_nothing_and_writes_the_same_bytes() {
    if !have_tool("docker-registry", "docker-registry") {
        return;
    }
    let registry = Registry::start();
    let cache = format!("{}/build-cache", registry.host());
    let origin = repository(&TWO_IMAGES.replace("CACHE", &cache));
    let logs = tempfile::tempdir().unwrap();
    let (_a, first) = clone(origin.path(), 1);
    let (_b, second) = clone(origin.path(), 3);

    let log_a = logs.path().join("a.log");
    let wrapper = logging_wrapper(logs.path(), &log_a);
    let (out_a, took_a) = xtask(&first, &wrapper, &["images", "--message-format", "json"]);
    assert!(out_a.status.success());
    let compiled_a = compiled(&log_a);
    assert!(
        compiled_a.contains(&"a".to_owned()) && compiled_a.contains(&"b".to_owned()),
        "the first clone compiles both: {compiled_a:?}"
    );
    let err_a = stderr(&out_a);
    assert_eq!(err_a.matches("Missed").count(), 2, "{err_a}");
    assert_eq!(err_a.matches("Cached").count(), 2, "{err_a}");
    assert!(
        scratchpack::compile::build_dir(&first.join("target"))
            .join("x86_64-unknown-linux-musl")
            .is_dir(),
        "the image builds' target directory moved"
    );
    let tags = registry.tags("build-cache", None);
    assert_eq!(tags.len(), 2, "one entry per image: {tags:?}");
    assert!(
        tags.iter().all(|t| t.starts_with("ak-") && t.len() == 67),
        "{tags:?}"
    );

    let log_b = logs.path().join("b.log");
    let wrapper = logging_wrapper(logs.path(), &log_b);
    let (out_b, took_b) = xtask(&second, &wrapper, &["images", "--message-format", "json"]);
    assert!(out_b.status.success());
    assert_eq!(
        compiled(&log_b),
        Vec::<String>::new(),
        "rustc ran in the second clone"
    );
    assert!(
        !scratchpack::compile::build_dir(&second.join("target"))
            .join("x86_64-unknown-linux-musl")
            .exists(),
        "cargo built nothing in the second clone"
    );
    let err_b = stderr(&out_b);
    assert_eq!(err_b.matches("Pulled").count(), 2, "{err_b}");
    assert!(!err_b.contains("Compiling"), "{err_b}");
    assert_eq!(
        outputs(&out_a),
        outputs(&out_b),
        "the same digests and archives"
    );
    eprintln!(
        "first clone (compiles, fills the cache): {:.2}s; second clone (from the cache): {:.2}s",
        took_a.as_secs_f64(),
        took_b.as_secs_f64()
    );

    // The flags override the file: --no-cache builds (nothing is fresh in
    // a new output directory), and builds the same bytes.
    let log_c = logs.path().join("c.log");
    let wrapper = logging_wrapper(logs.path(), &log_c);
    let (out_c, _) = xtask(
        &second,
        &wrapper,
        &[
            "images",
            "--no-cache",
            "--message-format",
            "json",
            "--out",
            "target/other",
        ],
    );
    assert!(out_c.status.success());
    assert!(!stderr(&out_c).contains("Pulled"), "{}", stderr(&out_c));
    assert!(!compiled(&log_c).is_empty(), "--no-cache compiles");
    assert_eq!(outputs(&out_c), outputs(&out_a));
}

/// zstd layers come from the cache as gzip ones do: an entry is read back
/// with the decompressor its media type names.
#[test]
fn zstd_images_come_from_the_cache_too() {
    if !have_tool("docker-registry", "docker-registry") {
        return;
    }
    let registry = Registry::start();
    let cache = format!("{}/build-cache", registry.host());
    let toml = TWO_IMAGES
        .replace("CACHE", &cache)
        .replace("[defaults]\n", "[defaults]\ncompression = \"zstd\"\n");
    let origin = repository(&toml);
    let logs = tempfile::tempdir().unwrap();
    let (_a, first) = clone(origin.path(), 1);
    let (_b, second) = clone(origin.path(), 2);
    let log_a = logs.path().join("a.log");
    let wrapper = logging_wrapper(logs.path(), &log_a);
    let (out_a, _) = xtask(&first, &wrapper, &["images", "--message-format", "json"]);
    assert!(out_a.status.success(), "{}", stderr(&out_a));
    let log_b = logs.path().join("b.log");
    let wrapper = logging_wrapper(logs.path(), &log_b);
    let (out_b, _) = xtask(&second, &wrapper, &["images", "--message-format", "json"]);
    assert!(out_b.status.success(), "{}", stderr(&out_b));
    let err_b = stderr(&out_b);
    assert_eq!(err_b.matches("Pulled").count(), 2, "{err_b}");
    assert_eq!(compiled(&log_b), Vec::<String>::new(), "{err_b}");
    assert!(
        !scratchpack::compile::build_dir(&second.join("target"))
            .join("x86_64-unknown-linux-musl")
            .exists(),
        "cargo built nothing in the second clone"
    );
    assert_eq!(outputs(&out_a), outputs(&out_b));
}

#[test]
fn a_corrupt_entry_is_reported_and_rebuilt() {
    if !have_tool("docker-registry", "docker-registry") {
        return;
    }
    let registry = Registry::start();
    let cache = format!("{}/build-cache", registry.host());
    let origin = repository(&TWO_IMAGES.replace("CACHE", &cache));
    let logs = tempfile::tempdir().unwrap();
    let (_a, first) = clone(origin.path(), 1);
    let (_b, second) = clone(origin.path(), 2);

    let wrapper = logging_wrapper(logs.path(), &logs.path().join("a.log"));
    let (out_a, _) = xtask(&first, &wrapper, &["images", "--message-format", "json"]);
    assert!(out_a.status.success());
    let built_a = built_images(&out_a);
    let a = built_a.iter().find(|i| i["name"] == "a").unwrap();
    let layer = a["platforms"][0]["layer"].as_str().unwrap();
    let hex = layer.strip_prefix("sha256:").unwrap();
    // The registry keeps blobs by digest; one byte changed in its storage.
    let data = registry
        .storage()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();

    let log_b = logs.path().join("b.log");
    let wrapper = logging_wrapper(logs.path(), &log_b);
    let (out_b, _) = xtask(&second, &wrapper, &["images", "--message-format", "json"]);
    assert!(
        out_b.status.success(),
        "a corrupt entry never fails the build"
    );
    let err = stderr(&out_b);
    let line = err
        .lines()
        .find(|l| l.contains("for image `a` is unusable"))
        .unwrap_or_else(|| panic!("the corrupt entry is not reported:\n{err}"));
    assert!(line.contains(hex) && line.contains("building it"), "{line}");
    assert_eq!(
        compiled(&log_b),
        vec!["a".to_owned()],
        "only `a` is rebuilt"
    );
    assert_eq!(
        err.matches("Pulled").count(),
        1,
        "`b` still comes from the cache: {err}"
    );
    assert_eq!(outputs(&out_a), outputs(&out_b));
}

#[test]
fn an_unreachable_cache_is_one_line_and_a_local_build() {
    let fx = Fixture::new(
        &[("a", MAIN_A)],
        "[defaults]\nplatforms = [\"linux/amd64\"]\n\n[images.a]\npackage = \"a\"\n",
    );
    let port = free_port();
    let cache = format!("127.0.0.1:{port}/nobody-listens");
    let out = fx.cli(&[
        "images",
        "--message-format",
        "json",
        "--cache-from",
        &cache,
        "--cache-to",
        &cache,
    ]);
    assert!(
        out.status.success(),
        "an unreachable cache never fails the build"
    );
    let err = stderr(&out);
    assert_eq!(
        err.lines()
            .filter(|l| l.contains("does not answer"))
            .count(),
        1,
        "{err}"
    );
    assert_eq!(built_images(&out).len(), 1);
    // A flag that names no repository is a usage error.
    let bad = fx.cli(&["images", "--cache-from", "UPPER CASE/x"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("--cache-from"), "{}", stderr(&bad));
}

const FIVE_IMAGES: &str = r#"
[defaults]
platforms = ["linux/amd64"]

[images.one]
package = "a"
[images.one.tests.says]
stdout = { contains = ["hello from a"] }

[images.two]
package = "b"
[images.two.tests.says]
stdout = { contains = ["hello from b"] }

[images.three]
package = "a"
env = { WHICH = "three" }
[images.three.tests.says]
stdout = { contains = ["hello from a"] }

[images.four]
package = "b"
env = { WHICH = "four" }
[images.four.tests.says]
stdout = { contains = ["hello from b"] }

[images.five]
package = "a"
env = { WHICH = "five" }
[images.five.tests.says]
stdout = { contains = ["hello from a"] }
"#;

const ALL: [&str; 5] = ["five", "four", "one", "three", "two"];

#[test]
fn partitions_build_and_test_every_image_once_and_a_last_run_assembles_from_the_cache() {
    if !have_tool("docker-registry", "docker-registry") {
        return;
    }
    let registry = Registry::start();
    let cache = format!("{}/build-cache", registry.host());
    let origin = repository(FIVE_IMAGES);
    let logs = tempfile::tempdir().unwrap();
    let (_a, runner) = clone(origin.path(), 1);
    let wrapper = logging_wrapper(logs.path(), &logs.path().join("runners.log"));

    // Three runners (one after the other here) test their shares.
    let mut tested = Vec::new();
    for i in 1..=3 {
        let partition = format!("hash:{i}/3");
        let (out, _) = xtask(
            &runner,
            &wrapper,
            &[
                "test-images",
                "--partition",
                &partition,
                "--cache-to",
                &cache,
            ],
        );
        assert!(out.status.success(), "{partition}");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mine: Vec<String> = text
            .lines()
            .filter_map(|l| {
                l.strip_prefix("test ")?
                    .strip_suffix(" [linux/amd64] ... ok")
            })
            .map(|t| t.split('/').next().unwrap().to_owned())
            .collect();
        // What a runner builds is what it tests.
        let mut packed_sorted: Vec<String> = stderr(&out)
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("Packed "))
            .map(|l| l.split(' ').next().unwrap().to_owned())
            .collect();
        packed_sorted.sort();
        let mut sorted = mine.clone();
        sorted.sort();
        assert_eq!(sorted, packed_sorted, "{partition}: {}", stderr(&out));
        tested.extend(mine);
    }
    tested.sort();
    assert_eq!(tested, ALL, "every image tested exactly once");

    // `count` shares the same way, by sorted order.
    let mut built = Vec::new();
    for i in 1..=3 {
        let partition = format!("count:{i}/3");
        let out_dir = format!("target/count-{i}");
        let (out, _) = xtask(
            &runner,
            &wrapper,
            &[
                "images",
                "--partition",
                &partition,
                "--message-format",
                "json",
                "--out",
                &out_dir,
            ],
        );
        assert!(out.status.success(), "{partition}");
        let names: Vec<String> = built_images(&out)
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_owned())
            .collect();
        assert!(
            (1..=2).contains(&names.len()),
            "count shares are even: {partition} built {names:?}"
        );
        built.extend(names);
    }
    built.sort();
    assert_eq!(built, ALL, "every image built exactly once");

    // The last runner, on a fresh clone, assembles everything from the cache.
    let (_c, last) = clone(origin.path(), 2);
    let log = logs.path().join("last.log");
    let wrapper = logging_wrapper(logs.path(), &log);
    let (out, _) = xtask(
        &last,
        &wrapper,
        &["images", "--message-format", "json", "--cache-from", &cache],
    );
    assert!(out.status.success());
    assert_eq!(
        compiled(&log),
        Vec::<String>::new(),
        "the last runner compiled"
    );
    assert_eq!(
        stderr(&out).matches("Pulled").count(),
        5,
        "{}",
        stderr(&out)
    );
    let wrapper = logging_wrapper(logs.path(), &logs.path().join("runner.log"));
    let (again, _) = xtask(&runner, &wrapper, &["images", "--message-format", "json"]);
    assert_eq!(
        outputs(&out),
        outputs(&again),
        "the same bytes as the runners'"
    );

    // A bad partition is a usage error naming the syntax.
    let (bad, _) = xtask(&runner, &wrapper, &["images", "--partition", "hash:4/3"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("hash:I/N"), "{}", stderr(&bad));
    let (bad, _) = xtask(
        &runner,
        &wrapper,
        &["images", "--push", "--partition", "hash:1/3"],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("--partition does not apply with --push"),
        "{}",
        stderr(&bad)
    );
}

/// redis-server on a free loopback port, stopped when dropped.
struct Redis(Child, u16);

impl Redis {
    fn start() -> Redis {
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting redis-server");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Redis(child, port);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not start on 127.0.0.1");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An sccache server of this test's own (its own port, the redis backend),
/// stopped when dropped.
struct Sccache {
    bin: PathBuf,
    env: Vec<(String, String)>,
}

impl Sccache {
    /// `None` (failing under `CI=true`) when this sccache has no redis backend.
    fn start(bin: &Path, redis: &Redis, dir: &Path) -> Option<Sccache> {
        let env = vec![
            (
                "SCCACHE_REDIS".to_owned(),
                format!("redis://127.0.0.1:{}", redis.1),
            ),
            ("SCCACHE_SERVER_PORT".to_owned(), free_port().to_string()),
            (
                "SCCACHE_DIR".to_owned(),
                dir.join("local").display().to_string(),
            ),
            ("SCCACHE_IDLE_TIMEOUT".to_owned(), "0".to_owned()),
        ];
        let s = Sccache {
            bin: bin.to_owned(),
            env,
        };
        let out = s.run(&["--start-server"]);
        if !out.status.success() && stderr(&out).contains("cache type is not enabled") {
            let msg = format!(
                "{} was built without the redis backend; scripts/test.sh builds one \
                 (cargo install sccache --no-default-features --features redis)",
                bin.display()
            );
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{msg}");
            }
            eprintln!("skipping: {msg}");
            return None;
        }
        assert!(out.status.success(), "{}", stderr(&out));
        Some(s)
    }

    fn run(&self, args: &[&str]) -> Output {
        run(Command::new(&self.bin).args(args).envs(self.env.clone()))
    }

    /// (compile requests that hit, that missed) from `--show-stats`.
    fn stats(&self) -> (u64, u64) {
        let out = self.run(&["--show-stats"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let count = |label: &str| {
            text.lines()
                .find(|l| l.starts_with(label))
                .and_then(|l| l.split_whitespace().last()?.parse().ok())
                .unwrap_or_else(|| panic!("no `{label}` in:\n{text}"))
        };
        (count("Cache hits  "), count("Cache misses  "))
    }
}

impl Drop for Sccache {
    fn drop(&mut self) {
        let _ = self.run(&["--stop-server"]);
    }
}

/// The sccache to test: one built with the redis backend by
/// scripts/test.sh into `$SCRATCHPACK_TOOLS_DIR` (default
/// `~/.cache/scratchpack-tools`), else the one on `PATH`.
fn sccache_binary() -> Option<PathBuf> {
    let dir = std::env::var_os("SCRATCHPACK_TOOLS_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/scratchpack-tools"))
        });
    if let Some(built) = dir.map(|d| d.join("bin/sccache"))
        && built.is_file()
    {
        return Some(built);
    }
    require_tool("sccache", "sccache")
}

#[test]
fn sccache_with_redis_serves_a_fresh_checkouts_crates() {
    let Some(sccache_bin) = sccache_binary() else {
        return;
    };
    if require_tool("redis-server", "redis-server").is_none() {
        return;
    }
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let Some(sccache) = Sccache::start(&sccache_bin, &redis, dir.path()) else {
        return;
    };
    // A crate from crates.io, which sccache caches (it never caches the
    // final link of a binary: that is the registry cache's part).
    let fx = Fixture::new(
        &[(
            "a",
            "fn main() { println!(\"{}\", itoa::Buffer::new().format(7)); }\n",
        )],
        "[defaults]\nplatforms = [\"linux/amd64\"]\n\n[images.a]\npackage = \"a\"\n",
    );
    let manifest = fx.path().join("crates/a/Cargo.toml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str("\n[dependencies]\nitoa = \"1\"\n");
    std::fs::write(&manifest, text).unwrap();
    let lock = run(Command::new(env!("CARGO"))
        .args(["generate-lockfile", "--offline"])
        .current_dir(fx.path()));
    assert!(lock.status.success());
    git(fx.path(), &["init", "-q"]);
    git(fx.path(), &["add", "-A"]);
    git(fx.path(), &["commit", "-q", "-m", "fixture"]);

    // Two runners, one after the other, each checking out afresh at the
    // runner's one checkout path, with an empty target directory.
    let checkout = dir.path().join("runner/checkout");
    let build = || {
        let _ = std::fs::remove_dir_all(&checkout);
        std::fs::create_dir_all(checkout.parent().unwrap()).unwrap();
        let out = run(Command::new("git")
            .args(["clone", "-q"])
            .arg(fx.path())
            .arg(&checkout));
        assert!(out.status.success());
        run(support::cli()
            .current_dir(&checkout)
            .env_remove("CARGO_TARGET_DIR")
            .env("RUSTC_WRAPPER", &sccache_bin)
            .envs(sccache.env.clone())
            .args(["images", "--no-cache", "--message-format", "json"]))
    };
    let first = build();
    assert!(first.status.success());
    let (hits, misses) = sccache.stats();
    assert!(
        misses > 0,
        "the first runner fills the cache ({hits} hits, {misses} misses)"
    );
    assert!(sccache.run(&["--zero-stats"]).status.success());
    let second = build();
    assert!(second.status.success());
    let (hits, misses) = sccache.stats();
    eprintln!("second runner: {hits} sccache hits, {misses} misses");
    assert!(hits > 0, "no sccache hits for the second runner");
    assert_eq!(
        misses, 0,
        "every cacheable crate of the second runner is a hit"
    );
    assert_eq!(outputs(&first), outputs(&second));
}

/// Like [`xtask`], with variables added.
fn xtask_env(dir: &Path, wrapper: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    run(support::cli()
        .current_dir(dir)
        .env_remove("CARGO_TARGET_DIR")
        .env("RUSTC_WRAPPER", wrapper)
        .envs(env.iter().copied())
        .args(args))
}

/// Deterministic bytes that do not compress.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A git repository whose one binary carries 12 MiB that do not compress:
/// its cache layer is larger than the 10 MB an HTTP client reads into
/// memory by default.
fn big_binary_repository(cache: &str) -> Fixture {
    let main = "static DATA: &[u8] = include_bytes!(\"data.bin\");\n\
                fn main() { println!(\"{}\", std::hint::black_box(DATA).len()); }\n";
    let fx = Fixture::new(
        &[("a", main)],
        &format!(
            "[defaults]\nplatforms = [\"linux/amd64\"]\ncache = \"{cache}\"\n\n[images.a]\npackage = \"a\"\n"
        ),
    );
    std::fs::write(fx.path().join("crates/a/src/data.bin"), noise(12 << 20)).unwrap();
    let lock = run(Command::new(env!("CARGO"))
        .args(["generate-lockfile", "--offline"])
        .current_dir(fx.path()));
    assert!(lock.status.success());
    git(fx.path(), &["init", "-q"]);
    git(fx.path(), &["add", "-A"]);
    git(fx.path(), &["commit", "-q", "-m", "fixture"]);
    fx
}

#[test]
fn a_cache_layer_over_ten_megabytes_is_pulled() {
    if !have_tool("docker-registry", "docker-registry") {
        return;
    }
    let registry = Registry::start();
    let cache = format!("{}/build-cache", registry.host());
    let origin = big_binary_repository(&cache);
    let logs = tempfile::tempdir().unwrap();
    let (_a, first) = clone(origin.path(), 1);
    let (_b, second) = clone(origin.path(), 2);
    let wrapper = logging_wrapper(logs.path(), &logs.path().join("a.log"));
    let (out_a, _) = xtask(&first, &wrapper, &["images", "--message-format", "json"]);
    assert!(out_a.status.success(), "{}", stderr(&out_a));
    assert!(stderr(&out_a).contains("Cached"), "{}", stderr(&out_a));
    let log_b = logs.path().join("b.log");
    let wrapper = logging_wrapper(logs.path(), &log_b);
    let (out_b, _) = xtask(&second, &wrapper, &["images", "--message-format", "json"]);
    let err_b = stderr(&out_b);
    assert!(out_b.status.success(), "{err_b}");
    assert!(!err_b.contains("unusable"), "{err_b}");
    assert_eq!(err_b.matches("Pulled").count(), 1, "{err_b}");
    assert_eq!(compiled(&log_b), Vec::<String>::new(), "{err_b}");
    assert_eq!(outputs(&out_a), outputs(&out_b));
}

const SIGNED_CACHE: &str = r#"
[defaults]
platforms = ["linux/amd64"]
cache = "CACHE"
cache-verify-key = "keys/cache.pub"

[images.a]
package = "a"

[images.b]
package = "b"
"#;

/// The cache's signing key (cosign's own test key) and its password.
fn cache_signing_key() -> (PathBuf, &'static str) {
    (
        support::repo_root().join("crates/scratchpack/src/release/testdata/sigstore-label.key"),
        "hello",
    )
}

/// The `REPO:ak-…` tag a run cached `image` under, from its status line.
fn cached_tag(out: &Output, image: &str) -> String {
    let err = stderr(out);
    let line = err
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("Cached {image} as ")))
        .unwrap_or_else(|| panic!("`{image}` was not cached:\n{err}"));
    line.rsplit(':').next().unwrap().to_owned()
}

#[test]
fn a_signed_cache_is_used_only_with_its_key() {
    use scratchpack::action_cache::EntryKeys as _;
    use scratchpack::action_cache::keys::CacheKeys;
    use scratchpack::oci::Digest;
    use scratchpack::registry::{Anonymous, PushOptions, Repository, Session, push_layout};
    use scratchpack::release::PrivateKey;

    if !have_tool("docker-registry", "docker-registry") {
        return;
    }
    let registry = Registry::start();
    let cache = format!("{}/build-cache", registry.host());
    let origin = Fixture::new(
        &[("a", MAIN_A), ("b", MAIN_B)],
        &SIGNED_CACHE.replace("CACHE", &cache),
    );
    std::fs::create_dir_all(origin.path().join("keys")).unwrap();
    std::fs::copy(
        support::repo_root().join("crates/scratchpack/src/release/testdata/sigstore-label.pub"),
        origin.path().join("keys/cache.pub"),
    )
    .unwrap();
    let lock = run(Command::new(env!("CARGO"))
        .args(["generate-lockfile", "--offline"])
        .current_dir(origin.path()));
    assert!(lock.status.success());
    git(origin.path(), &["init", "-q"]);
    git(origin.path(), &["add", "-A"]);
    git(origin.path(), &["commit", "-q", "-m", "fixture"]);
    let logs = tempfile::tempdir().unwrap();
    let json = ["images", "--message-format", "json"];

    // The builder holds the signing key: what it pushes is signed.
    let (_a, builder) = clone(origin.path(), 1);
    let (key, password) = cache_signing_key();
    let wrapper = logging_wrapper(logs.path(), &logs.path().join("builder.log"));
    let signing = [&json[..], &["--cache-sign-key", key.to_str().unwrap()]].concat();
    let built = xtask_env(
        &builder,
        &wrapper,
        &signing,
        &[("COSIGN_PASSWORD", password)],
    );
    assert!(built.status.success(), "{}", stderr(&built));
    let signatures = registry
        .tags("build-cache", None)
        .into_iter()
        .filter(|t| t.ends_with(".sig"))
        .count();
    assert_eq!(signatures, 2, "one signature per entry");

    // A second clone that only verifies uses every entry.
    let (_b, second) = clone(origin.path(), 2);
    let log = logs.path().join("second.log");
    let wrapper = logging_wrapper(logs.path(), &log);
    let pulled = xtask_env(&second, &wrapper, &json, &[]);
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    assert_eq!(
        stderr(&pulled).matches("Pulled").count(),
        2,
        "{}",
        stderr(&pulled)
    );
    assert_eq!(compiled(&log), Vec::<String>::new());
    assert_eq!(outputs(&built), outputs(&pulled));

    // Someone without the key builds `a` from other source and puts it
    // under `a`'s action key, signed with a key of their own: an entry
    // every other check finds consistent.
    let tag_a = cached_tag(&built, "a");
    let (_c, attacker) = clone(origin.path(), 3);
    std::fs::write(
        attacker.join("crates/a/src/main.rs"),
        "fn main() { println!(\"not what was reviewed\"); }\n",
    )
    .unwrap();
    let wrapper = logging_wrapper(logs.path(), &logs.path().join("attacker.log"));
    let forged = xtask_env(
        &attacker,
        &wrapper,
        &[&json[..], &["--no-cache"]].concat(),
        &[],
    );
    assert!(forged.status.success(), "{}", stderr(&forged));
    let forged_a = built_images(&forged)
        .into_iter()
        .find(|i| i["name"] == "a")
        .unwrap();
    let repo = Repository::parse(&cache).unwrap();
    let opts = PushOptions {
        insecure: true,
        ..PushOptions::default()
    };
    let layout = PathBuf::from(forged_a["layout"].as_str().unwrap());
    let report = push_layout(
        &layout,
        None,
        &repo,
        std::slice::from_ref(&tag_a),
        &Anonymous,
        &opts,
    )
    .unwrap();
    let mut session = Session::open(&repo, &Anonymous, &opts).unwrap();
    let theirs = CacheKeys::new(Some(PrivateKey::generate()), None);
    theirs
        .sign(
            &mut session,
            &Digest::parse(&report.digest).unwrap(),
            &tag_a,
        )
        .unwrap();

    // Without a verifying key the forged entry passes every check and is
    // used: the cache trusts whoever can write to it.
    let (_d, trusting) = clone(origin.path(), 4);
    let toml = trusting.join("images.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        text.replace("cache-verify-key = \"keys/cache.pub\"\n", ""),
    )
    .unwrap();
    let wrapper = logging_wrapper(logs.path(), &logs.path().join("trusting.log"));
    let fooled = xtask_env(&trusting, &wrapper, &json, &[]);
    assert!(fooled.status.success(), "{}", stderr(&fooled));
    assert_eq!(
        stderr(&fooled).matches("Pulled").count(),
        2,
        "{}",
        stderr(&fooled)
    );
    assert_eq!(
        outputs(&fooled)["a"].0,
        report.digest,
        "the forged entry was not used"
    );

    // With the verifying key it is a miss, said in one line, and `a` is
    // built here from the reviewed source.
    let (_e, verifying) = clone(origin.path(), 5);
    let log = logs.path().join("verifying.log");
    let wrapper = logging_wrapper(logs.path(), &log);
    let out = xtask_env(&verifying, &wrapper, &json, &[]);
    let err = stderr(&out);
    assert!(
        out.status.success(),
        "an unsigned entry never fails the build: {err}"
    );
    let notices: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("is not signed by the cache's key"))
        .collect();
    assert_eq!(notices.len(), 1, "{err}");
    assert!(
        notices[0].contains("for image `a`") && notices[0].contains("no signature in sha256-"),
        "{}",
        notices[0]
    );
    assert_eq!(compiled(&log), vec!["a".to_owned()], "{err}");
    assert_eq!(
        err.matches("Pulled").count(),
        1,
        "`b` still comes from the cache: {err}"
    );
    assert_eq!(
        outputs(&out),
        outputs(&built),
        "the reviewed bytes, not the forged ones"
    );
}

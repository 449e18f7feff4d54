//! Registries as adversaries: a registry, an upload host and token services
//! played by small fronts that log every request, so each test can say which
//! origin saw which credentials; registries that never answer, answer a byte
//! a second or redirect blob checks elsewhere; and hostile registries of
//! their own (a cache, a signed image's store) whose documents are sized and
//! nested to cost memory and time. Memory is the peak resident set of the
//! command under test, as `/usr/bin/time -v` reports it; time is a wall
//! clock with generous margins, not a benchmark.

use std::io::Write as _;
use std::net::{IpAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use scratchpack::registry::{
    Credential, PushOptions, RegistryLimits, Repository, StaticCredential, push_layout,
};

use crate::registry::image::{self, OCI_INDEX, OCI_MANIFEST, sha256};
use crate::registry::proxy::{Action, Documents, Front, Req, error_answer};
use crate::registry::server::{Registry, have_tool};
use crate::support::{self, Fixture, HELLO_MAIN, require_tool};

const USER: &str = "ci";
const PASSWORD: &str = "s3cret-pw";

fn basic() -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    )
}

fn options() -> PushOptions<'static> {
    PushOptions {
        insecure: true,
        retries: 1,
        backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(10),
        limits: RegistryLimits {
            idle_timeout: Duration::from_secs(10),
            ..RegistryLimits::default()
        },
        ..PushOptions::default()
    }
}

fn challenge(value: String) -> Action {
    Action::Respond {
        status: 401,
        headers: vec![("WWW-Authenticate".into(), value)],
        body: r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#.into(),
    }
}

fn ok(body: &str) -> Action {
    Action::Respond {
        status: 200,
        headers: vec![],
        body: body.into(),
    }
}

/// A registry that wants `auth` (a challenge) on `/v2/`, lets everything with
/// `accepted` as its `Authorization` through, has no blobs, and hands every
/// upload to `upload_host`.
fn registry(challenge_value: String, accepted: String, upload_host: String) -> Front {
    Front::start(None, move |req| {
        if req.header("authorization") != Some(accepted.as_str()) {
            return challenge(challenge_value.clone());
        }
        match req.method.as_str() {
            "GET" if req.target == "/v2/" => ok("{}"),
            "HEAD" => error_answer(404, "BLOB_UNKNOWN", "no such blob"),
            "POST" if req.target.contains("/blobs/uploads/") => Action::Respond {
                status: 202,
                headers: vec![(
                    "Location".into(),
                    format!("http://{upload_host}/upload/session-1"),
                )],
                body: Vec::new(),
            },
            _ => error_answer(404, "NOT_FOUND", "not here"),
        }
    })
}

/// A host that answers everything with a challenge naming `realm`.
fn challenging_host(realm: String) -> Front {
    Front::start(None, move |_| {
        challenge(format!(r#"Bearer realm="{realm}",service="elsewhere""#))
    })
}

/// A token service that hands anyone a token, logging who asked.
fn token_service_on(ip: IpAddr) -> Front {
    Front::start_on(ip, None, |_| ok(r#"{"token":"t"}"#))
}

fn push_to(front: &Front) -> String {
    let layout = image::single(11, 1024);
    let target = Repository::parse(&format!("{}/team/app", front.host())).unwrap();
    let creds = StaticCredential(Credential::new(USER, PASSWORD));
    push_layout(
        &layout.path,
        Some("hello"),
        &target,
        &["t".to_owned()],
        &creds,
        &options(),
    )
    .expect_err("nothing can be stored in these registries")
    .to_string()
}

#[test]
fn an_upload_host_cannot_choose_where_basic_credentials_go() {
    let thief = token_service_on([127, 0, 0, 1].into());
    let storage = challenging_host(format!("http://{}/token", thief.host()));
    let registry = registry(r#"Basic realm="r""#.into(), basic(), storage.host());
    let err = push_to(&registry);
    assert_eq!(
        thief.header_values("authorization"),
        Vec::<String>::new(),
        "the realm another host named was sent the credentials"
    );
    assert_eq!(
        thief.requests(),
        vec![],
        "the realm another host named was asked"
    );
    assert_eq!(storage.header_values("authorization"), Vec::<String>::new());
    assert!(
        registry.header_values("authorization").contains(&basic()),
        "the registry itself was sent the credentials"
    );
    assert!(
        err.contains(&format!("http://{} asked for credentials", storage.host())),
        "{err}"
    );
}

#[test]
fn an_upload_host_cannot_choose_where_bearer_credentials_go() {
    let own_tokens = Front::start(None, |req| {
        if req.header("authorization") == Some(basic().as_str()) {
            ok(r#"{"token":"good"}"#)
        } else {
            error_answer(401, "UNAUTHORIZED", "who are you")
        }
    });
    let thief = token_service_on([127, 0, 0, 1].into());
    let storage = challenging_host(format!("http://{}/token", thief.host()));
    let registry = registry(
        format!(
            r#"Bearer realm="http://{}/token",service="reg""#,
            own_tokens.host()
        ),
        "Bearer good".into(),
        storage.host(),
    );
    let err = push_to(&registry);
    assert_eq!(thief.header_values("authorization"), Vec::<String>::new());
    assert_eq!(thief.requests(), vec![]);
    assert_eq!(storage.header_values("authorization"), Vec::<String>::new());
    assert_eq!(
        own_tokens.header_values("authorization"),
        vec![basic()],
        "the registry's own token service is asked once, with the credentials"
    );
    assert!(err.contains("asked for credentials"), "{err}");
}

/// An address of this machine that is not loopback: a client sees it as
/// another host.
fn other_host_ip() -> IpAddr {
    // Connecting a UDP socket sends nothing; it only picks the route.
    let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
    socket
        .connect("192.0.2.1:9")
        .expect("this test needs an address that is not loopback (a default route)");
    let ip = socket.local_addr().unwrap().ip();
    assert!(!ip.is_loopback(), "no address but loopback: {ip}");
    ip
}

#[test]
fn credentials_never_travel_in_clear_to_another_host() {
    let ip = other_host_ip();
    let off_host = token_service_on(ip);
    let registry = registry(
        format!(
            r#"Bearer realm="http://{}/token",service="reg""#,
            off_host.host()
        ),
        "Bearer t".into(),
        "127.0.0.1:9".into(),
    );
    let err = push_to(&registry);
    assert_eq!(
        off_host.header_values("authorization"),
        Vec::<String>::new(),
        "credentials went over plain HTTP to {ip}"
    );
    assert!(
        err.contains(&format!("http://{}/token", off_host.host()))
            && err.contains("plain HTTP on another host"),
        "{err}"
    );
}

#[test]
fn environment_credentials_reach_only_the_registry_they_are_for() {
    if require_tool("git", "git").is_none() {
        return;
    }
    let cache = Front::start(None, |req| {
        if req.header("authorization").is_some() {
            error_answer(403, "DENIED", "logged and refused")
        } else {
            challenge(r#"Basic realm="cache""#.into())
        }
    });
    let fixture = || {
        Fixture::new(
            &[("a", "fn main() {}\n")],
            "[defaults]\nplatforms = [\"linux/amd64\"]\n\n[images.a]\npackage = \"a\"\n",
        )
    };
    let repo = format!("{}/cache", cache.host());
    let args = ["images", "--cache-from", &repo, "--cache-to", &repo];
    let secrets = [
        ("SCRATCHPACK_REGISTRY_USERNAME", USER),
        ("SCRATCHPACK_REGISTRY_PASSWORD", PASSWORD),
    ];
    // The images push nowhere, so the credentials are for no registry.
    let out = fixture().cli_env(&args, &secrets);
    assert!(
        out.status.success(),
        "a refused cache never fails the build"
    );
    assert!(!cache.requests().is_empty(), "the cache was never asked");
    assert_eq!(cache.header_values("authorization"), Vec::<String>::new());
    // Named as theirs, the cache is sent them: the check above can fail.
    let host = cache.host();
    let named = [
        secrets[0],
        secrets[1],
        ("SCRATCHPACK_REGISTRY", host.as_str()),
    ];
    let out = fixture().cli_env(&args, &named);
    assert!(out.status.success());
    assert!(
        cache.header_values("authorization").contains(&basic()),
        "{:?}",
        cache.requests()
    );
}

// ---------------------------------------------------------------------------
// Time: a registry that never answers, or answers a byte a second.

fn push_layout_to(front: &Front, limits: RegistryLimits) -> (String, Duration) {
    let layout = image::single(12, 1024);
    let target = Repository::parse(&format!("{}/team/app", front.host())).unwrap();
    let opts = PushOptions {
        limits,
        retries: 10,
        ..options()
    };
    let started = Instant::now();
    let err = push_layout(
        &layout.path,
        Some("hello"),
        &target,
        &["t".to_owned()],
        &scratchpack::registry::Anonymous,
        &opts,
    )
    .expect_err("nothing answers")
    .to_string();
    (err, started.elapsed())
}

#[test]
fn a_registry_that_accepts_and_never_answers_is_given_up_on_within_the_budget() {
    let silent = Front::start(None, |_| Action::Stall);
    let limits = RegistryLimits {
        idle_timeout: Duration::from_secs(1),
        timeout: Duration::from_secs(4),
        ..RegistryLimits::default()
    };
    let (err, took) = push_layout_to(&silent, limits);
    // Each try waits out the idle timeout; the tries stop at the budget,
    // well before the ten retries allowed.
    assert!(
        took < Duration::from_secs(20),
        "a silent registry held the push for {took:?}"
    );
    assert!(err.contains("the idle timeout (1 s)"), "{err}");
    assert!(
        err.contains("the operation's time budget being 4 s"),
        "{err}"
    );
    assert!(silent.count() <= 6, "{} tries", silent.count());
}

#[test]
fn headers_sent_a_byte_a_second_do_not_hold_a_request() {
    let trickle = Front::start(None, |_| Action::Trickle {
        status: 200,
        body: b"{}".to_vec(),
        pause: Duration::from_secs(1),
    });
    let limits = RegistryLimits {
        idle_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(5),
        ..RegistryLimits::default()
    };
    let (err, took) = push_layout_to(&trickle, limits);
    // A byte a second never trips the idle timeout itself; the headers
    // must all be there within it.
    assert!(
        took < Duration::from_secs(20),
        "a trickling registry held the push for {took:?}"
    );
    assert!(
        err.contains("the answer's headers did not arrive within the idle timeout (2 s)"),
        "{err}"
    );
}

/// Runs `args` in `fixture` with the CLI, killed at `deadline`: the output,
/// how long it took, and whether it finished by itself.
fn run_within(
    fixture: &Fixture,
    args: &[&str],
    env: &[(&str, &str)],
    deadline: Duration,
) -> (Output, Duration, bool) {
    let mut cmd = support::cli();
    cmd.current_dir(fixture.path())
        .env_remove("CARGO_TARGET_DIR")
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let finished = loop {
        if child.try_wait().unwrap().is_some() {
            break true;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    (out, started.elapsed(), finished)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_time_bounds_are_flags_and_images_toml_keys() {
    let silent = Front::start(None, |_| Action::Stall);
    let toml = format!(
        "[defaults]\nplatforms = [\"linux/amd64\"]\nregistry = \"{}\"\ninsecure = true\n\n\
         [images.a]\npackage = \"a\"\n",
        silent.host()
    );
    let fixture = Fixture::new(&[("a", HELLO_MAIN)], &toml);
    let built = fixture.cli(&["images", "-q"]);
    assert!(built.status.success());
    let flags = [
        "push",
        "--registry-idle-timeout",
        "1",
        "--registry-timeout",
        "3",
    ];
    let (out, took, finished) = run_within(&fixture, &flags, &[], Duration::from_secs(120));
    let err = text(&out.stderr);
    assert!(finished, "push was still waiting after {took:?}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(took < Duration::from_secs(60), "{took:?}");
    assert!(
        err.contains("idle timeout (1 s)") && err.contains("being 3 s"),
        "{err}"
    );
    // The same from images.toml.
    std::fs::write(
        fixture.path().join("images.toml"),
        toml.replace(
            "insecure = true\n",
            "insecure = true\nregistry-limits = { idle-timeout = 1, timeout = 2 }\n",
        ),
    )
    .unwrap();
    let (out, took, finished) = run_within(&fixture, &["push"], &[], Duration::from_secs(120));
    let err = text(&out.stderr);
    assert!(finished, "push was still waiting after {took:?}");
    assert!(
        err.contains("idle timeout (1 s)") && err.contains("being 2 s"),
        "{err}"
    );
    // A limit of nothing is refused where it is written.
    std::fs::write(
        fixture.path().join("images.toml"),
        toml.replace(
            "insecure = true\n",
            "insecure = true\nregistry-limits = { timeout = 0 }\n",
        ),
    )
    .unwrap();
    let out = fixture.cli(&["push"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("invalid registry limit"),
        "{}",
        text(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// A blob HEAD the registry redirects.

#[test]
fn a_redirected_blob_head_is_followed_not_believed() {
    if !have_tool("docker-registry", "docker-registry") {
        return;
    }
    let registry = Registry::start_with_auth(Some((USER, PASSWORD)));
    // "Storage" has nothing: it answers every check with 404, and logs who asked.
    let storage = Front::start(None, |_| error_answer(404, "BLOB_UNKNOWN", "not here"));
    let storage_host = storage.host();
    let front = Front::start(Some(registry.port), move |req| {
        if req.method == "HEAD" && req.target.contains("/blobs/sha256:") {
            return Action::Respond {
                status: 307,
                headers: vec![(
                    "Location".into(),
                    format!("http://{storage_host}/storage{}", req.target),
                )],
                body: Vec::new(),
            };
        }
        Action::Forward
    });
    let layout = image::single(13, 64 * 1024);
    let target = Repository::parse(&format!("{}/team/app", front.host())).unwrap();
    let creds = StaticCredential(Credential::new(USER, PASSWORD));
    let report = push_layout(
        &layout.path,
        Some("hello"),
        &target,
        &["t".to_owned()],
        &creds,
        &options(),
    )
    .expect("a redirect to a host that has nothing means the blobs are uploaded");
    assert_eq!(report.blobs_uploaded, layout.blobs.len());
    assert_eq!(report.blobs_skipped, 0);
    assert!(
        !storage.requests().is_empty(),
        "the redirect was not followed"
    );
    assert_eq!(
        storage.header_values("authorization"),
        Vec::<String>::new(),
        "the storage host was sent credentials"
    );
    assert_eq!(
        crate::registry::server::inspect_raw(
            &format!("{}/team/app:t", registry.host()),
            Some(&format!("{USER}:{PASSWORD}"))
        ),
        layout.blob(&layout.top)
    );
}

/// A registry that claims every blob: nothing is uploaded, and the failure
/// names that claim rather than only the manifest the registry refuses.
#[test]
fn a_registry_that_claims_blobs_it_lacks_is_named_as_the_cause() {
    if !have_tool("docker-registry", "docker-registry") {
        return;
    }
    let registry = Registry::start();
    let front = Front::start(Some(registry.port), |req| {
        if req.method == "HEAD" && req.target.contains("/blobs/sha256:") {
            return ok("");
        }
        Action::Forward
    });
    let layout = image::single(14, 1024);
    let target = Repository::parse(&format!("{}/team/app", front.host())).unwrap();
    let err = push_layout(
        &layout.path,
        Some("hello"),
        &target,
        &["t".to_owned()],
        &scratchpack::registry::Anonymous,
        &options(),
    )
    .expect_err("the registry holds none of the blobs it claims")
    .to_string();
    assert!(err.contains("MANIFEST_BLOB_UNKNOWN"), "{err}");
    assert!(
        err.contains("the registry had answered that it held")
            && layout.blobs.iter().all(|b| err.contains(b.as_str())),
        "{err}"
    );
}

// ---------------------------------------------------------------------------
// Hostile caches: memory and time, measured on the command under test.

/// A hostile registry of its own: `/v2/` answers, every `ak-…` tag is
/// `top`, and `documents` answers digests.
fn hostile_cache(documents: Documents, top: String) -> Front {
    Front::start(None, move |req| {
        if req.target == "/v2/" {
            return ok("{}");
        }
        let tag = |t: &str| t.starts_with("ak-").then(|| top.clone());
        documents
            .answer(req, &tag)
            .unwrap_or_else(|| error_answer(404, "MANIFEST_UNKNOWN", "no such thing"))
    })
}

/// One workspace built once for every hostile cache case; the cases take
/// turns, since each removes the notes of what the last one used.
fn cache_fixture() -> &'static Mutex<Fixture> {
    static FIXTURE: OnceLock<Mutex<Fixture>> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let fixture = Fixture::new(
            &[("a", HELLO_MAIN)],
            "[defaults]\nplatforms = [\"linux/amd64\"]\n\n[images.a]\npackage = \"a\"\n",
        );
        let built = fixture.cli(&["images", "-q"]);
        assert!(built.status.success(), "building the cache fixture");
        Mutex::new(fixture)
    })
}

/// What a run of the CLI under `/usr/bin/time -v` did.
struct Measured {
    out: Output,
    /// Peak resident set of the command and the programs it waited for, KiB.
    peak_kib: u64,
    took: Duration,
}

impl Measured {
    fn stderr(&self) -> String {
        text(&self.out.stderr)
    }

    fn peak_mib(&self) -> u64 {
        self.peak_kib / 1024
    }
}

/// Runs the CLI with `args` in `dir` under GNU time, killed after
/// `deadline`; `None` when GNU time is missing (failing under `CI=true`).
fn measured(dir: &Path, args: &[&str], deadline: Duration) -> Option<Measured> {
    let time = require_tool("time", "time")?;
    let mut cmd = Command::new(time);
    cmd.arg("-v")
        .arg(env!("CARGO_BIN_EXE_scratchpack"))
        .args(args)
        .current_dir(dir)
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("CARGO_TARGET_DIR")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > deadline {
            // The command is GNU time's child: killing it lets GNU time
            // report what it used, then end.
            let children = format!("/proc/{0}/task/{0}/children", child.id());
            for pid in std::fs::read_to_string(children)
                .unwrap_or_default()
                .split_whitespace()
            {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let took = started.elapsed();
    let report = text(&out.stderr);
    let peak_kib = report
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(u64::MAX);
    Some(Measured {
        out,
        peak_kib,
        took,
    })
}

/// Runs `images --cache-from` the hostile cache in the shared fixture.
fn pull_from(cache: &Front, deadline: Duration) -> Option<Measured> {
    let fixture = cache_fixture().lock().unwrap_or_else(|e| e.into_inner());
    // What a last run pulled or built is noted, and would be used instead.
    let _ = std::fs::remove_dir_all(fixture.path().join("target/scratchpack/pulled"));
    let repo = format!("{}/cache", cache.host());
    measured(fixture.path(), &["images", "--cache-from", &repo], deadline)
}

/// The most a run may hold, whatever a registry sends it.
const PEAK_MIB: u64 = 256;

fn config_for(diff_id: &str) -> serde_json::Value {
    serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    })
}

fn manifest_of(config: serde_json::Value, layers: &[serde_json::Value]) -> serde_json::Value {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": layers,
    })
}

fn index_of(manifests: &[serde_json::Value], pad: &str) -> serde_json::Value {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
        "annotations": {"pad": pad},
    })
}

/// A gzip layer of 2 MB or so that inflates to a GiB: a tar whose one file
/// is a GiB of zeros, as gzip members (which a layer may have any number
/// of) each inflating to a MiB. Its diff_id is the true one.
fn gzip_bomb() -> (Vec<u8>, String) {
    use flate2::write::GzEncoder;
    use sha2::Digest as _;
    let gzip = |bytes: &[u8]| {
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    };
    let mut header = tar::Header::new_ustar();
    header.set_path("zeros").unwrap();
    header.set_size(1 << 30);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    let mib = vec![0u8; 1 << 20];
    let zeros = gzip(&mib);
    let mut layer = gzip(header.as_bytes());
    let mut diff_id = sha2::Sha256::new();
    diff_id.update(header.as_bytes());
    for _ in 0..1024 {
        layer.extend_from_slice(&zeros);
        diff_id.update(&mib);
    }
    // The end-of-archive blocks.
    layer.extend_from_slice(&gzip(&[0u8; 1024]));
    diff_id.update([0u8; 1024]);
    let hex: String = diff_id
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (layer, format!("sha256:{hex}"))
}

#[test]
fn a_gzip_bomb_in_a_cache_entry_costs_neither_memory_nor_the_build() {
    let (bomb, diff_id) = gzip_bomb();
    let bomb_size = bomb.len();
    assert!(bomb_size < 4 << 20, "the bomb is {bomb_size} bytes");
    let mut docs = Documents::default();
    let layer = docs.put("application/vnd.oci.image.layer.v1.tar+gzip", bomb);
    let config = docs.put_json(
        "application/vnd.oci.image.config.v1+json",
        &config_for(&diff_id),
    );
    let top = docs.put_json(OCI_MANIFEST, &manifest_of(config, &[layer]));
    let cache = hostile_cache(docs, top["digest"].as_str().unwrap().to_owned());
    let Some(run) = pull_from(&cache, Duration::from_secs(300)) else {
        return;
    };
    let err = run.stderr();
    assert!(run.out.status.success(), "{err}");
    assert!(
        run.peak_mib() < PEAK_MIB,
        "peak memory {} MiB on a {bomb_size} byte gzip bomb",
        run.peak_mib()
    );
    assert!(
        err.contains("is unusable") && err.contains("its layer has no /a"),
        "{err}"
    );
    eprintln!(
        "gzip bomb: peak {} MiB, {:.1} s",
        run.peak_mib(),
        run.took.as_secs_f64()
    );
}

#[test]
fn an_index_listing_one_large_index_many_times_reads_it_once() {
    let mut docs = Documents::default();
    // Just under the 4 MiB a document may be.
    let large = docs.put_json(OCI_INDEX, &index_of(&[], &"x".repeat(4_000_000)));
    let listed = vec![large.clone(); 250];
    let top = docs.put_json(OCI_INDEX, &index_of(&listed, ""));
    let cache = hostile_cache(docs, top["digest"].as_str().unwrap().to_owned());
    let Some(run) = pull_from(&cache, Duration::from_secs(300)) else {
        return;
    };
    let err = run.stderr();
    assert!(run.out.status.success(), "{err}");
    let large_digest = large["digest"].as_str().unwrap();
    let reads = cache
        .requests()
        .iter()
        .filter(|(m, path, _)| m == "GET" && path.ends_with(large_digest))
        .count();
    assert!(
        run.peak_mib() < PEAK_MIB,
        "peak memory {} MiB, {reads} reads of the large index",
        run.peak_mib()
    );
    assert_eq!(reads, 1, "the large index was read {reads} times");
    assert!(
        err.contains("is unusable") && err.contains("it has 0 platforms"),
        "{err}"
    );
    eprintln!(
        "250 x 4 MiB index: peak {} MiB, {} requests, {:.1} s",
        run.peak_mib(),
        cache.count(),
        run.took.as_secs_f64()
    );
}

#[test]
fn a_1500_by_1500_nested_index_is_refused_in_bounded_time() {
    const WIDE: usize = 1500;
    let mut docs = Documents::default();
    let config = docs.put_json(
        "application/vnd.oci.image.config.v1+json",
        &config_for(&sha256(b"")),
    );
    let leaves: Vec<serde_json::Value> = (0..WIDE)
        .map(|n| {
            let mut m = manifest_of(config.clone(), &[]);
            m["annotations"] = serde_json::json!({"n": n.to_string()});
            docs.put_json(OCI_MANIFEST, &m)
        })
        .collect();
    // 1500 indexes of 1500 leaves each, made when asked for: only their
    // digests are kept.
    let leaves_json = serde_json::to_string(&leaves).unwrap();
    let mid = move |n: usize| -> Vec<u8> {
        format!(
            r#"{{"annotations":{{"n":"{n}"}},"manifests":{leaves_json},"mediaType":"{OCI_INDEX}","schemaVersion":2}}"#
        )
        .into_bytes()
    };
    let mut mids = std::collections::HashMap::new();
    let mut listed = Vec::new();
    for n in 0..WIDE {
        let bytes = mid(n);
        let digest = sha256(&bytes);
        listed.push(
            serde_json::json!({"mediaType": OCI_INDEX, "digest": digest, "size": bytes.len()}),
        );
        mids.insert(digest, n);
    }
    let top = docs.put_json(OCI_INDEX, &index_of(&listed, ""));
    let top_digest = top["digest"].as_str().unwrap().to_owned();
    let docs = Arc::new(docs);
    let cache = Front::start(None, move |req: &Req| {
        if req.target == "/v2/" {
            return ok("{}");
        }
        let asked = req.target.rsplit('/').next().unwrap_or_default();
        if let Some(n) = mids.get(asked) {
            return Action::Respond {
                status: 200,
                headers: vec![("Content-Type".into(), OCI_INDEX.into())],
                body: mid(*n),
            };
        }
        let tag = |t: &str| t.starts_with("ak-").then(|| top_digest.clone());
        docs.answer(req, &tag)
            .unwrap_or_else(|| error_answer(404, "MANIFEST_UNKNOWN", "no such thing"))
    });
    let Some(run) = pull_from(&cache, Duration::from_secs(120)) else {
        return;
    };
    let err = run.stderr();
    assert!(
        run.took < Duration::from_secs(60),
        "{} requests in {:?} and still walking",
        cache.count(),
        run.took
    );
    assert!(run.out.status.success(), "{err}");
    assert!(cache.count() < 100, "{} requests", cache.count());
    assert!(err.contains("more than 1000 documents"), "{err}");
    eprintln!(
        "1500 x 1500 nested index: {} requests, {:.1} s, peak {} MiB",
        cache.count(),
        run.took.as_secs_f64(),
        run.peak_mib()
    );
}

// ---------------------------------------------------------------------------
// Hostile stores of signatures: `verify` against documents sized and listed
// to cost memory and requests.

/// The public key `verify` is given: cosign's own test key's.
fn test_public_key() -> std::path::PathBuf {
    support::repo_root().join("crates/scratchpack/src/release/testdata/sigstore-label.pub")
}

/// A hostile registry holding one image `a:latest` (a manifest whose config
/// says linux/amd64), whatever else `extra` answers, and `documents`.
fn hostile_store(
    mut documents: Documents,
    extra: impl Fn(&Req, &str) -> Option<Action> + Send + Sync + 'static,
) -> (Front, String) {
    let config = documents.put_json(
        "application/vnd.oci.image.config.v1+json",
        &config_for(&sha256(b"")),
    );
    let top = documents.put_json(OCI_MANIFEST, &manifest_of(config, &[]));
    let top_digest = top["digest"].as_str().unwrap().to_owned();
    let subject = top_digest.clone();
    let front = Front::start(None, move |req| {
        if req.target == "/v2/" {
            return ok("{}");
        }
        if let Some(action) = extra(req, &subject) {
            return action;
        }
        let tag = |t: &str| (t == "latest").then(|| subject.clone());
        documents
            .answer(req, &tag)
            .unwrap_or_else(|| error_answer(404, "MANIFEST_UNKNOWN", "no such thing"))
    });
    (front, top_digest)
}

/// A workspace whose image `a` is in `registry`, signed in `format`; it
/// is only verified, never built.
fn verify_fixture(registry: &str, format: &str) -> Fixture {
    Fixture::new(
        &[("a", HELLO_MAIN)],
        &format!(
            "[defaults]\nplatforms = [\"linux/amd64\"]\nregistry = \"{registry}\"\n\
             insecure = true\nsignature-format = \"{format}\"\n\n[images.a]\npackage = \"a\"\n"
        ),
    )
}

#[test]
fn a_signature_listing_one_large_blob_many_times_reads_it_once() {
    let mut docs = Documents::default();
    let blob = docs.put(
        "application/vnd.dev.cosign.simplesigning.v1+json",
        vec![b'x'; 10_000_000],
    );
    let mut layer = blob.clone();
    layer["annotations"] =
        serde_json::json!({"dev.cosignproject.cosign/signature": "c2lnbmF0dXJl"});
    let sig_config = docs.put_json(
        "application/vnd.oci.image.config.v1+json",
        &config_for(&sha256(b"")),
    );
    let sig = manifest_of(sig_config, &vec![layer; 100]);
    let sig_bytes = serde_json::to_vec(&sig).unwrap();
    let (store, _) = hostile_store(docs, move |req, subject| {
        let tag = format!("/manifests/sha256-{}.sig", &subject["sha256:".len()..]);
        (req.method == "GET" && req.target.ends_with(&tag)).then(|| Action::Respond {
            status: 200,
            headers: vec![("Content-Type".into(), OCI_MANIFEST.into())],
            body: sig_bytes.clone(),
        })
    });
    let fixture = verify_fixture(&store.host(), "sig");
    let key = test_public_key();
    let Some(run) = measured(
        fixture.path(),
        &["verify", "--key", key.to_str().unwrap()],
        Duration::from_secs(300),
    ) else {
        return;
    };
    let stdout = text(&run.out.stdout);
    let blob_digest = blob["digest"].as_str().unwrap();
    let reads = store
        .requests()
        .iter()
        .filter(|(m, path, _)| m == "GET" && path.ends_with(blob_digest))
        .count();
    assert!(
        run.peak_mib() < PEAK_MIB,
        "peak memory {} MiB, {reads} reads of the 10 MB blob",
        run.peak_mib()
    );
    assert_eq!(
        reads,
        1,
        "the blob was read {reads} times: {}",
        run.stderr()
    );
    assert_eq!(run.out.status.code(), Some(1), "{stdout}{}", run.stderr());
    assert!(
        stdout.contains("FAILED") && stdout.contains(".sig"),
        "{stdout}{}",
        run.stderr()
    );
    eprintln!(
        ".sig listing a 10 MB blob 100 times: peak {} MiB, {:.1} s",
        run.peak_mib(),
        run.took.as_secs_f64()
    );
}

#[test]
fn referrers_by_the_thousand_are_refused_in_bounded_time() {
    const LISTED: usize = 12_000;
    let descriptors: Vec<serde_json::Value> = (0..LISTED)
        .map(|n| {
            serde_json::json!({
                "mediaType": OCI_MANIFEST,
                "digest": format!("sha256:{n:064x}"),
                "size": 600,
                "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            })
        })
        .collect();
    let referrers = serde_json::to_vec(&index_of(&descriptors, "")).unwrap();
    let (store, _) = hostile_store(Documents::default(), move |req, subject| {
        req.target
            .ends_with(&format!("/referrers/{subject}"))
            .then(|| Action::Respond {
                status: 200,
                headers: vec![("Content-Type".into(), OCI_INDEX.into())],
                body: referrers.clone(),
            })
    });
    let fixture = verify_fixture(&store.host(), "bundle");
    let key = test_public_key();
    let (out, took, finished) = run_within(
        &fixture,
        &["verify", "--key", key.to_str().unwrap()],
        &[],
        Duration::from_secs(120),
    );
    let stdout = text(&out.stdout);
    assert!(
        finished && took < Duration::from_secs(60),
        "{} requests in {took:?}",
        store.count()
    );
    assert!(store.count() < 50, "{} requests", store.count());
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("lists 12000 referrers") && stdout.contains("max-documents"),
        "{stdout}{}",
        text(&out.stderr)
    );
    eprintln!(
        "{LISTED} referrers: {} requests, {:.1} s",
        store.count(),
        took.as_secs_f64()
    );
}

//! Registry push against a real CNCF distribution registry, checked with skopeo:
//! single-manifest and multi-platform pushes, HEAD skips, chunked uploads, Basic and
//! Bearer auth, credentials from a Docker config, mounts, and a fault-injecting front.

pub(crate) mod image;
pub(crate) mod proxy;
pub(crate) mod server;

use std::cell::RefCell;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use scratchpack::registry::{
    Anonymous, Credential, CredentialSource, DockerConfig, ProgressEvent, PushOptions, PushReport,
    RegistryError, RegistryLimits, Repository, StaticCredential, push_layout,
};

use image::{TestLayout, sha256};
use proxy::{Action, Front, error_answer};
use server::{Registry, copy_to_layout, have_tools, inspect_raw};

/// Small chunks so the big test layers go up in several PATCHes.
const CHUNK: usize = 64 * 1024;
const BIG: usize = 200 * 1024;

fn options() -> PushOptions<'static> {
    PushOptions {
        insecure: true,
        chunk_size: CHUNK,
        retries: 4,
        backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
        limits: RegistryLimits {
            idle_timeout: Duration::from_secs(20),
            ..RegistryLimits::default()
        },
        ..PushOptions::default()
    }
}

fn push(
    layout: &TestLayout,
    host: &str,
    repo: &str,
    tags: &[&str],
    creds: &dyn CredentialSource,
    opts: &PushOptions<'_>,
) -> Result<PushReport, RegistryError> {
    let target = Repository::parse(&format!("{host}/{repo}")).unwrap();
    let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    push_layout(&layout.path, Some("hello"), &target, &tags, creds, opts)
}

/// The registry serves exactly the local manifest bytes under `reference`, and a
/// full copy of it holds every local blob and child manifest, byte for byte.
fn assert_served(layout: &TestLayout, reference: &str, creds: Option<&str>) {
    let raw = inspect_raw(reference, creds);
    assert_eq!(sha256(&raw), layout.top, "manifest served for {reference}");
    let (_keep, copy) = copy_to_layout(reference, creds);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(copy.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], layout.top.as_str());
    for digest in layout.blobs.iter().chain(&layout.children) {
        let copied = std::fs::read(image::blob_path(&copy, digest)).unwrap_or_default();
        assert!(
            copied == layout.blob(digest),
            "blob {digest} differs after skopeo copy of {reference}"
        );
    }
}

/// Every tag the registry has for `repo` leads to a complete image.
fn assert_tags_complete(registry: &Registry, repo: &str) {
    for tag in registry.tags(repo, None) {
        let (_keep, copy) = copy_to_layout(&format!("{}/{repo}:{tag}", registry.host()), None);
        assert!(
            copy.join("index.json").is_file(),
            "tag {tag} could not be copied"
        );
    }
}

#[test]
fn pushes_single_manifest_chunked_and_skips_on_second_push() {
    if !have_tools() {
        return;
    }
    let registry = Registry::start();
    let layout = image::single(1, BIG);
    assert!(
        layout.largest_blob > CHUNK as u64,
        "the big layer must need chunks"
    );

    let events: RefCell<Vec<(String, u64, u64)>> = RefCell::new(Vec::new());
    let on_progress = |e: &ProgressEvent<'_>| {
        if let ProgressEvent::BlobProgress { digest, sent, size } = e {
            events.borrow_mut().push((digest.to_string(), *sent, *size));
        }
    };
    let opts = PushOptions {
        progress: Some(&on_progress),
        ..options()
    };
    let first = push(
        &layout,
        &registry.host(),
        "team/hello",
        &["1.0", "latest"],
        &Anonymous,
        &opts,
    )
    .unwrap();
    eprintln!(
        "first push: {} blobs, {} bytes, {} requests in {:?}",
        first.blobs_uploaded, first.bytes_uploaded, first.requests, first.elapsed
    );
    assert_eq!(first.digest, layout.top);
    assert_eq!(first.blobs_uploaded, layout.blobs.len());
    assert_eq!(first.blobs_skipped, 0);
    assert_eq!(first.bytes_uploaded, layout.blob_bytes_total());
    assert_eq!(first.manifests_pushed, 2, "one manifest PUT per tag");
    assert_eq!(
        registry.stored_blobs(),
        layout.blobs.len() + 1,
        "blobs plus the manifest"
    );

    // The big blob reported growing progress, chunk by chunk, up to its size.
    let events = events.into_inner();
    let big: Vec<&(String, u64, u64)> = events
        .iter()
        .filter(|(_, _, size)| *size == layout.largest_blob)
        .collect();
    assert!(
        big.len() as u64 > layout.largest_blob / CHUNK as u64,
        "{big:?}"
    );
    assert!(big.windows(2).all(|w| w[0].1 <= w[1].1), "{big:?}");
    assert_eq!(big.last().unwrap().1, layout.largest_blob);

    for tag in ["1.0", "latest"] {
        assert_served(
            &layout,
            &format!("{}/team/hello:{tag}", registry.host()),
            None,
        );
    }

    let second = push(
        &layout,
        &registry.host(),
        "team/hello",
        &["1.0"],
        &Anonymous,
        &options(),
    )
    .unwrap();
    eprintln!(
        "second push: {} requests in {:?}",
        second.requests, second.elapsed
    );
    assert_eq!(second.digest, layout.top);
    assert_eq!(
        (second.blobs_uploaded, second.blobs_skipped),
        (0, layout.blobs.len())
    );
    assert_eq!(second.bytes_uploaded, 0);
}

#[test]
fn pushes_multi_platform_index() {
    if !have_tools() {
        return;
    }
    let registry = Registry::start();
    let layout = image::multi(2, BIG);
    // Via a logging front, to check the order of the requests.
    let front = Front::start(Some(registry.port), |_| Action::Forward);
    let report = push(
        &layout,
        &front.host(),
        "multi",
        &["v1"],
        &Anonymous,
        &options(),
    )
    .unwrap();
    assert_eq!(report.digest, layout.top);
    assert_eq!(report.media_type, image::OCI_INDEX);
    assert_eq!(report.blobs_uploaded, layout.blobs.len());
    assert_eq!(
        report.manifests_pushed, 3,
        "two platform manifests and the index"
    );

    // Blobs first, then the children by digest, and the tag last.
    let puts: Vec<String> = front
        .requests()
        .into_iter()
        .filter(|(m, p, _)| m == "PUT" && p.contains("/manifests/"))
        .map(|(_, p, _)| p.rsplit('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        puts,
        [
            layout.children[0].clone(),
            layout.children[1].clone(),
            "v1".to_owned()
        ]
    );
    let log = front.requests();
    let last_blob = log
        .iter()
        .rposition(|(m, p, _)| m != "HEAD" && p.contains("/blobs/"))
        .unwrap();
    let first_manifest = log
        .iter()
        .position(|(m, p, _)| m == "PUT" && p.contains("/manifests/"))
        .unwrap();
    assert!(last_blob < first_manifest, "{log:?}");

    assert_served(&layout, &format!("{}/multi:v1", registry.host()), None);
    for child in &layout.children {
        let raw = inspect_raw(&format!("{}/multi@{child}", registry.host()), None);
        assert_eq!(&sha256(&raw), child);
    }

    let again = push(
        &layout,
        &registry.host(),
        "multi",
        &["v1"],
        &Anonymous,
        &options(),
    )
    .unwrap();
    assert_eq!(
        (again.blobs_uploaded, again.blobs_skipped),
        (0, layout.blobs.len())
    );
    assert_eq!(
        again.manifests_pushed, 1,
        "children already there, only the tag is put"
    );
}

#[test]
fn basic_auth_refuses_wrong_password_and_reads_docker_config() {
    if !have_tools() {
        return;
    }
    let registry = Registry::start_with_auth(Some(("ci", "right-pw")));
    let layout = image::single(3, 0);

    let wrong = StaticCredential(Credential::new("ci", "wrong-pw"));
    let err = push(
        &layout,
        &registry.host(),
        "secure",
        &["1"],
        &wrong,
        &options(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with(&format!(
            "connecting to {}: registry answered 401 Unauthorized",
            registry.host()
        )),
        "{err}"
    );
    assert!(
        err.contains("credentials of \"ci\" for") && err.contains("were refused"),
        "{err}"
    );
    let err = push(
        &layout,
        &registry.host(),
        "secure",
        &["1"],
        &Anonymous,
        &options(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("no credentials found for"), "{err}");
    assert_eq!(registry.stored_blobs(), 0, "a refused push uploads nothing");

    // The right password, read from a Docker config.json as `docker login` writes it.
    let docker = tempfile::tempdir().unwrap();
    let config = docker.path().join("config.json");
    let auth = base64_encode(b"ci:right-pw");
    std::fs::write(
        &config,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#,
            registry.host()
        ),
    )
    .unwrap();
    let report = push(
        &layout,
        &registry.host(),
        "secure",
        &["1"],
        &DockerConfig::new(&config),
        &options(),
    )
    .unwrap();
    assert_eq!(report.blobs_uploaded, layout.blobs.len());
    assert_served(
        &layout,
        &format!("{}/secure:1", registry.host()),
        Some("ci:right-pw"),
    );
}

/// Standard base64, so the test does not share the encoder it checks.
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A token service and a gate in front of the registry that lets through only
/// requests bearing a token it issued, answering others with a Bearer challenge.
struct BearerSetup {
    token_server: Front,
    gate: Front,
}

/// Each token is good for `max_uses` requests, then the gate refuses it as expired.
fn bearer_setup(registry: &Registry, repo: &'static str, max_uses: usize) -> BearerSetup {
    let issued: Arc<Mutex<Vec<(String, usize)>>> = Arc::default();
    let token_server = {
        let issued = issued.clone();
        let expected = format!("Basic {}", base64_encode(b"robot:t0ken-pw"));
        Front::start(None, move |req| {
            if req.header("authorization") != Some(expected.as_str()) {
                return error_answer(401, "UNAUTHORIZED", "bad credentials");
            }
            let wanted = format!(
                "scope={}",
                "repository%3A".to_owned() + &repo.replace('/', "%2F") + "%3Apull%2Cpush"
            );
            if !req.target.contains("service=test-registry") || !req.target.contains(&wanted) {
                return error_answer(400, "DENIED", "unexpected token request");
            }
            let mut issued = issued.lock().unwrap();
            let token = format!("token-{}", issued.len());
            issued.push((token.clone(), 0));
            // Alternate the two field names registries' token services use.
            let field = if issued.len() % 2 == 1 {
                "token"
            } else {
                "access_token"
            };
            Action::Respond {
                status: 200,
                headers: vec![],
                body: format!(r#"{{"{field}":"{token}","expires_in":300}}"#).into(),
            }
        })
    };
    let realm = format!("http://{}/token", token_server.host());
    let gate = Front::start(Some(registry.port), move |req| {
        let ok = req
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
            .is_some_and(|t| {
                let mut issued = issued.lock().unwrap();
                let found = issued.iter_mut().find(|(i, _)| i == t);
                found.is_some_and(|(_, uses)| {
                    *uses += 1;
                    *uses <= max_uses
                })
            });
        if ok {
            return Action::Forward;
        }
        Action::Respond {
            status: 401,
            headers: vec![(
                "WWW-Authenticate".into(),
                format!(
                    r#"Bearer realm="{realm}",service="test-registry",scope="repository:{repo}:pull,push""#
                ),
            )],
            body: r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#
                .into(),
        }
    });
    BearerSetup { token_server, gate }
}

#[test]
fn bearer_tokens_are_fetched_once_and_reused() {
    if !have_tools() {
        return;
    }
    let registry = Registry::start();
    let layout = image::multi(4, BIG);
    let setup = bearer_setup(&registry, "bear/hello", usize::MAX);
    let creds = StaticCredential(Credential::new("robot", "t0ken-pw"));
    let report = push(
        &layout,
        &setup.gate.host(),
        "bear/hello",
        &["t"],
        &creds,
        &options(),
    )
    .unwrap();
    assert_eq!(report.digest, layout.top);
    assert_eq!(
        setup.token_server.requests().len(),
        1,
        "one token for the push scope, then cached"
    );
    let refused: Vec<_> = setup
        .gate
        .requests()
        .into_iter()
        .filter(|(_, _, s)| *s == 401)
        .collect();
    assert_eq!(
        refused.len(),
        1,
        "only the first request is challenged: {refused:?}"
    );
    assert_served(&layout, &format!("{}/bear/hello:t", registry.host()), None);

    let bad = StaticCredential(Credential::new("robot", "nope"));
    let err = push(
        &layout,
        &setup.gate.host(),
        "bear/hello",
        &["t"],
        &bad,
        &options(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("connecting to") && err.contains("401"),
        "{err}"
    );
    assert!(
        err.contains("refused the credentials of \"robot\""),
        "{err}"
    );
}

#[test]
fn transient_faults_are_retried_to_a_complete_push() {
    if !have_tools() {
        return;
    }
    let registry = Registry::start();
    let layout = image::multi(5, BIG);
    let seen_patch = Mutex::new(0usize);
    let seen_put = Mutex::new(0usize);
    let front = Front::start(Some(registry.port), move |req| {
        if req.method == "PATCH" {
            let mut n = seen_patch.lock().unwrap();
            *n += 1;
            // The first PATCH is refused, the second cut off mid-body.
            return match *n {
                1 => error_answer(500, "UNKNOWN", "disk hiccup"),
                2 => Action::Drop,
                _ => Action::Forward,
            };
        }
        if req.method == "PUT" && req.target.contains("/manifests/") {
            let mut n = seen_put.lock().unwrap();
            *n += 1;
            if *n == 1 {
                return Action::Respond {
                    status: 429,
                    headers: vec![("Retry-After".into(), "0".into())],
                    body: Vec::new(),
                };
            }
        }
        if req.index == 2 {
            return Action::Drop;
        }
        Action::Forward
    });
    let retried = RefCell::new(Vec::new());
    let on_progress = |e: &ProgressEvent<'_>| {
        if let ProgressEvent::Retrying { action, reason, .. } = e {
            retried.borrow_mut().push(format!("{action}: {reason}"));
        }
    };
    let opts = PushOptions {
        progress: Some(&on_progress),
        ..options()
    };
    let report = push(&layout, &front.host(), "flaky", &["v1"], &Anonymous, &opts).unwrap();
    assert_eq!(report.digest, layout.top);
    assert!(report.retries >= 4, "{report:?}");
    let retried = retried.into_inner();
    assert!(
        retried
            .iter()
            .any(|r| r.contains("500 Internal Server Error")),
        "{retried:?}"
    );
    assert!(
        retried.iter().any(|r| r.contains("429 Too Many Requests")),
        "{retried:?}"
    );
    assert!(
        retried.iter().any(|r| r.contains("connection failed")),
        "{retried:?}"
    );
    assert_served(&layout, &format!("{}/flaky:v1", registry.host()), None);
}

#[test]
fn interrupted_push_leaves_no_tag_and_a_rerun_finishes() {
    if !have_tools() {
        return;
    }
    let registry = Registry::start();
    let layout = image::multi(6, BIG);
    // Every chunk upload is cut off: the big blob can never go up through this front.
    let front = Front::start(Some(registry.port), |req| {
        if req.method == "PATCH" {
            Action::Drop
        } else {
            Action::Forward
        }
    });
    let opts = PushOptions {
        retries: 2,
        ..options()
    };
    let err = push(&layout, &front.host(), "cut", &["v1"], &Anonymous, &opts).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("uploading blob sha256:")
            && msg.contains(&format!("to {}/cut", front.host())),
        "{msg}"
    );
    assert!(
        msg.contains("connection failed") && msg.ends_with("(after 3 tries)"),
        "{msg}"
    );
    assert!(err.failure().unwrap().is_transient());
    assert!(
        registry.tags("cut", None).is_empty(),
        "no tag after a failed push"
    );
    assert_tags_complete(&registry, "cut");
    let before = registry.stored_blobs();

    let report = push(
        &layout,
        &registry.host(),
        "cut",
        &["v1"],
        &Anonymous,
        &options(),
    )
    .unwrap();
    assert_eq!(
        report.blobs_skipped, before,
        "blobs that made it are not sent again"
    );
    assert_eq!(
        report.blobs_skipped + report.blobs_uploaded,
        layout.blobs.len()
    );
    assert!(report.blobs_uploaded >= 1);
    assert_eq!(registry.tags("cut", None), ["v1"]);
    assert_tags_complete(&registry, "cut");
    assert_served(&layout, &format!("{}/cut:v1", registry.host()), None);
}

#[test]
fn permanent_errors_stop_at_once_with_the_registry_words() {
    if !have_tools() {
        return;
    }
    let registry = Registry::start();
    let layout = image::single(7, 0);
    let front = Front::start(Some(registry.port), |req| {
        if req.method == "PUT" && req.target.contains("/manifests/") {
            return error_answer(400, "MANIFEST_INVALID", "manifest invalid");
        }
        Action::Forward
    });
    let err = push(
        &layout,
        &front.host(),
        "strict",
        &["v1"],
        &Anonymous,
        &options(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "tagging {} as {}/strict:v1: registry answered 400 Bad Request: manifest invalid (MANIFEST_INVALID)",
            layout.top,
            front.host()
        )
    );
    assert_eq!(err.failure().unwrap().codes(), ["MANIFEST_INVALID"]);
    let puts = front
        .requests()
        .into_iter()
        .filter(|(m, p, _)| m == "PUT" && p.contains("/manifests/"))
        .count();
    assert_eq!(puts, 1, "a 400 is not retried");
    assert!(registry.tags("strict", None).is_empty());
}

#[test]
fn mounts_blobs_from_another_repository() {
    if !have_tools() {
        return;
    }
    let registry = Registry::start();
    let layout = image::single(8, BIG);
    push(
        &layout,
        &registry.host(),
        "base/app",
        &["1"],
        &Anonymous,
        &options(),
    )
    .unwrap();
    let opts = PushOptions {
        mount_from: Some("base/app".into()),
        ..options()
    };
    let report = push(
        &layout,
        &registry.host(),
        "other/app",
        &["1"],
        &Anonymous,
        &opts,
    )
    .unwrap();
    assert_eq!(report.blobs_mounted, layout.blobs.len());
    assert_eq!(report.bytes_uploaded, 0);
    assert_served(&layout, &format!("{}/other/app:1", registry.host()), None);
}

#[test]
fn refuses_plain_http_unless_asked_and_bad_layouts_before_any_request() {
    let layout = image::single(9, 0);
    // Nothing listens here; neither push gets as far as connecting.
    let host = format!("127.0.0.1:{}", server::free_port());
    let err = push(&layout, &host, "x", &["bad tag"], &Anonymous, &options())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("invalid image reference") && err.contains("\"bad tag\""),
        "{err}"
    );
    std::fs::remove_file(Path::new(&layout.path).join("index.json")).unwrap();
    let err = push(&layout, &host, "x", &["1"], &Anonymous, &options())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("reading image layout") && err.contains("index.json"),
        "{err}"
    );

    // A plain-HTTP endpoint that would accept anything: without `insecure` the
    // client speaks TLS to it, so no HTTP request ever arrives.
    let layout = image::single(9, 0);
    let plain = Front::start(None, |_| Action::Respond {
        status: 200,
        headers: vec![],
        body: Vec::new(),
    });
    let secure = PushOptions {
        insecure: false,
        retries: 0,
        ..options()
    };
    let err = push(&layout, &plain.host(), "x", &["1"], &Anonymous, &secure)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "connecting to {}: connection failed",
            plain.host()
        )),
        "{err}"
    );
    let http_requests = plain
        .requests()
        .into_iter()
        .filter(|(m, _, _)| ["GET", "HEAD", "POST", "PUT", "PATCH"].contains(&m.as_str()))
        .count();
    assert_eq!(http_requests, 0, "nothing was sent in the clear");
}

#[test]
fn lost_answer_to_a_finished_upload_is_not_uploaded_again() {
    if !have_tools() {
        return;
    }
    let registry = Registry::start();
    let layout = image::single(10, 0);
    // The first blob upload's closing PUT reaches the registry, but its answer is lost.
    let cut = Mutex::new(false);
    let front = Front::start(Some(registry.port), move |req| {
        let mut cut = cut.lock().unwrap();
        if req.method == "PUT" && req.target.contains("/blobs/uploads/") && !*cut {
            *cut = true;
            return Action::ForwardThenDrop;
        }
        Action::Forward
    });
    let report = push(
        &layout,
        &front.host(),
        "lost",
        &["1"],
        &Anonymous,
        &options(),
    )
    .unwrap();
    assert_eq!(report.retries, 1);
    assert_eq!(report.blobs_skipped, 1, "{report:?}");
    assert_eq!(report.blobs_uploaded, layout.blobs.len() - 1);
    let blob_puts = front
        .requests()
        .into_iter()
        .filter(|(m, p, _)| m == "PUT" && p.contains("/blobs/uploads/"))
        .count();
    assert_eq!(
        blob_puts,
        layout.blobs.len(),
        "one PUT per blob, none repeated"
    );
    assert_served(&layout, &format!("{}/lost:1", registry.host()), None);
}

#[test]
fn expired_bearer_tokens_are_renewed_mid_push() {
    if !have_tools() {
        return;
    }
    let registry = Registry::start();
    let layout = image::multi(11, BIG);
    let setup = bearer_setup(&registry, "renew/app", 5);
    let creds = StaticCredential(Credential::new("robot", "t0ken-pw"));
    let report = push(
        &layout,
        &setup.gate.host(),
        "renew/app",
        &["t"],
        &creds,
        &options(),
    )
    .unwrap();
    assert_eq!(report.retries, 0, "a renewed token is not a retry");
    // Every 401 after the first came from an expired token and led to exactly
    // one new token.
    let challenged = setup
        .gate
        .requests()
        .into_iter()
        .filter(|(_, _, s)| *s == 401)
        .count();
    let tokens = setup.token_server.requests().len();
    assert!(tokens > 2, "the push outlived several tokens: {tokens}");
    assert_eq!(challenged, tokens);
    assert_served(&layout, &format!("{}/renew/app:t", registry.host()), None);
}

#[test]
fn credential_helper_named_in_docker_config_supplies_the_login() {
    if !have_tools() {
        return;
    }
    let registry = Registry::start_with_auth(Some(("helped", "from-helper")));
    let layout = image::single(12, 0);
    let docker = tempfile::tempdir().unwrap();
    // A helper that knows only this registry, as `docker-credential-<name> get` would.
    let helper = docker.path().join("docker-credential-testvault");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread -r server\n\
             [ \"$server\" = \"{}\" ] || {{ echo 'credentials not found in native keychain'; exit 1; }}\n\
             echo '{{\"ServerURL\":\"'$server'\",\"Username\":\"helped\",\"Secret\":\"from-helper\"}}'\n",
            registry.host()
        ),
    )
    .unwrap();
    let mut perms = std::fs::metadata(&helper).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&helper, perms).unwrap();
    let config = docker.path().join("config.json");
    std::fs::write(
        &config,
        format!(r#"{{"credHelpers":{{"{}":"testvault"}}}}"#, registry.host()),
    )
    .unwrap();
    let creds = DockerConfig::new(&config).with_helper_dir(docker.path());
    let report = push(
        &layout,
        &registry.host(),
        "helped",
        &["1"],
        &creds,
        &options(),
    )
    .unwrap();
    assert_eq!(report.blobs_uploaded, layout.blobs.len());
    assert_served(
        &layout,
        &format!("{}/helped:1", registry.host()),
        Some("helped:from-helper"),
    );
}

/// The byte ranges of every PATCH the front saw, with the status it passed on
/// (0 when it cut the request off or dropped the answer).
fn patch_ranges(front: &Front) -> Vec<(u64, u64, u16)> {
    front
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|(r, _)| r.method == "PATCH")
        .map(|(r, status)| {
            let range = r.header("content-range").expect("a PATCH names its range");
            let (a, b) = range.split_once('-').unwrap();
            (a.parse().unwrap(), b.parse().unwrap(), *status)
        })
        .collect()
}

#[test]
fn an_interrupted_chunked_upload_resumes_from_the_offset_the_registry_reports() {
    if !have_tools() {
        return;
    }
    let registry = Registry::start();
    let layout = image::single(12, 6 * CHUNK);
    // The third PATCH is cut off before the registry reads its body; the
    // fifth is refused with a server error. Neither reaches the upload.
    // (A PATCH whose answer is lost after the registry took it is another
    // matter: distribution then holds more than the session's `_state`
    // says, refuses to resume it, and the blob starts over, as
    // `lost_answer_to_a_finished_upload_is_not_uploaded_again` covers for
    // the closing PUT.)
    let patches = Mutex::new(0usize);
    let front = Front::start(Some(registry.port), move |req| {
        if req.method != "PATCH" {
            return Action::Forward;
        }
        let mut n = patches.lock().unwrap();
        *n += 1;
        match *n {
            3 => Action::Drop,
            5 => error_answer(500, "UNKNOWN", "disk hiccup"),
            _ => Action::Forward,
        }
    });
    let report = push(
        &layout,
        &front.host(),
        "resume",
        &["v1"],
        &Anonymous,
        &options(),
    )
    .unwrap();
    assert_eq!(report.blobs_uploaded, layout.blobs.len());
    assert_eq!(report.retries, 2, "{report:?}");

    // One upload session per blob: the big one was resumed, not started over.
    let requests = front.requests();
    let posts = requests
        .iter()
        .filter(|(m, p, _)| m == "POST" && p.ends_with("/blobs/uploads/"))
        .count();
    assert_eq!(posts, layout.blobs.len(), "{requests:?}");
    let status_reads: Vec<u16> = requests
        .iter()
        .filter(|(m, p, _)| m == "GET" && p.contains("/blobs/uploads/"))
        .map(|(_, _, s)| *s)
        .collect();
    assert_eq!(
        status_reads,
        [204, 204],
        "each retry asked where the upload stood"
    );

    // Every byte of the big blob went up once, but for the one chunk each
    // interruption cost.
    let ranges = patch_ranges(&front);
    let size = layout.largest_blob;
    let sent: u64 = ranges.iter().map(|(a, b, _)| b - a + 1).sum();
    assert_eq!(sent, size + 2 * CHUNK as u64, "{ranges:?}");
    let mut accepted: Vec<(u64, u64)> = ranges
        .iter()
        .filter(|(_, _, s)| *s == 202)
        .map(|(a, b, _)| (*a, *b))
        .collect();
    assert_eq!(accepted.len() + 2, ranges.len(), "{ranges:?}");
    accepted.sort();
    assert_eq!(accepted.first().map(|r| r.0), Some(0));
    assert!(
        accepted.windows(2).all(|w| w[1].0 == w[0].1 + 1),
        "the ranges the registry took follow each other: {accepted:?}"
    );
    assert_eq!(accepted.last().map(|r| r.1), Some(size - 1));
    assert_eq!(
        report.bytes_uploaded,
        layout.blob_bytes_total() + 2 * CHUNK as u64
    );
    assert_served(&layout, &format!("{}/resume:v1", registry.host()), None);
}

#[test]
fn blobs_go_up_several_at_once() {
    if !have_tools() {
        return;
    }
    let registry = Registry::start();
    // A front that counts the blob uploads (a PATCH or a PUT to an upload
    // session) under way at once. With `gate`, each waits until another is
    // under way too (or a few seconds pass), so uploads that run side by side
    // are seen side by side however the threads are scheduled.
    let front = |gate: bool| {
        let held = Arc::new((Mutex::new((0usize, 0usize)), std::sync::Condvar::new()));
        let seen = held.clone();
        let front = Front::start(Some(registry.port), move |req| {
            let upload = req.target.contains("/blobs/uploads/")
                && (req.method == "PATCH" || req.method == "PUT");
            if upload {
                let (lock, cv) = &*held;
                let mut h = lock.lock().unwrap();
                h.0 += 1;
                h.1 = h.1.max(h.0);
                cv.notify_all();
                if gate {
                    h = cv
                        .wait_timeout_while(h, Duration::from_secs(5), |h| h.1 < 2)
                        .unwrap()
                        .0;
                }
                h.0 -= 1;
            }
            Action::Forward
        });
        (front, seen)
    };

    let layout = image::multi(13, BIG);
    let (wide, seen) = front(true);
    let report = push(
        &layout,
        &wide.host(),
        "wide",
        &["v1"],
        &Anonymous,
        &options(),
    )
    .unwrap();
    assert_eq!(report.blobs_uploaded, layout.blobs.len());
    let most = seen.0.lock().unwrap().1;
    assert!(most >= 2, "at most {most} upload under way at once");
    assert!(most <= PushOptions::default().uploads, "{most} at once");
    assert_served(&layout, &format!("{}/wide:v1", registry.host()), None);

    // One at a time when asked.
    let layout = image::multi(14, BIG);
    let (narrow, seen) = front(false);
    let opts = PushOptions {
        uploads: 1,
        ..options()
    };
    push(
        &layout,
        &narrow.host(),
        "narrow",
        &["v1"],
        &Anonymous,
        &opts,
    )
    .unwrap();
    assert_eq!(seen.0.lock().unwrap().1, 1);
    assert_served(&layout, &format!("{}/narrow:v1", registry.host()), None);
}

//! Registries as adversaries: a registry, an upload host and token services
//! played by small fronts that log every request, so each test can say which
//! origin saw which credentials.

use std::net::{IpAddr, UdpSocket};
use std::time::Duration;

use scratchpack::registry::{
    Credential, PushOptions, RegistryLimits, Repository, StaticCredential, push_layout,
};

use crate::registry::image;
use crate::registry::proxy::{Action, Front, error_answer};
use crate::support::{Fixture, require_tool};

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
                body: String::new(),
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

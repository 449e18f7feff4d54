use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::*;
use crate::platform::Platform;
use crate::toolchain::workspace::Workspace;

pub(super) fn workspace(root: &Path) -> Workspace {
    let mut packages = BTreeMap::new();
    packages.insert("hello".to_owned(), vec!["hello".to_owned()]);
    packages.insert(
        "tools".to_owned(),
        vec!["migrate".to_owned(), "serve".to_owned()],
    );
    packages.insert("lib-only".to_owned(), vec![]);
    let mut features = BTreeMap::new();
    features.insert("hello".to_owned(), BTreeSet::from(["loud".to_owned()]));
    features.insert(
        "tools".to_owned(),
        BTreeSet::from(["tls".to_owned(), "serde".to_owned()]),
    );
    let mut dependencies = BTreeMap::new();
    dependencies.insert("tools".to_owned(), BTreeSet::from(["serde".to_owned()]));
    let ws = Workspace {
        root: root.to_owned(),
        target_dir: root.join("target"),
        packages,
        features,
        dependencies,
        profiles: BTreeMap::from([
            ("dist".to_owned(), true),
            ("half".to_owned(), false),
            // Built-in profiles need no `inherits`.
            ("release".to_owned(), false),
        ]),
        ..Workspace::default()
    };
    // The targets rustc knows, as far as these tests need them.
    ws.target_list
        .set(Some(
            [
                "x86_64-unknown-linux-musl",
                "x86_64-unknown-linux-gnu",
                "aarch64-unknown-linux-musl",
                "aarch64-unknown-linux-gnu",
            ]
            .map(str::to_owned)
            .into(),
        ))
        .unwrap();
    ws
}

pub(super) fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("assets")).unwrap();
    std::fs::write(dir.path().join("assets/app.toml"), "x = 1\n").unwrap();
    dir
}

fn plan(text: &str) -> Plan {
    let dir = fixture();
    parse(
        &dir.path().join("images.toml"),
        text,
        &workspace(dir.path()),
    )
    .unwrap_or_else(|e| panic!("{}", e.render(false)))
}

/// The errors as `line:column: message` lines, checked against the source.
fn errors(text: &str) -> Vec<String> {
    let dir = fixture();
    let e = parse(Path::new("images.toml"), text, &workspace(dir.path()))
        .expect_err("the manifest should be refused");
    e.diagnostics
        .iter()
        .map(|d| {
            let (line, col) = e.line_column(d.span.start);
            format!("{line}:{col}: {}", d.message)
        })
        .collect()
}

#[test]
fn minimal_image_gets_every_default() {
    let p = plan("[images.hello]\npackage = \"hello\"\n");
    let img = &p.images[0];
    assert_eq!(img.name, "hello");
    assert_eq!(img.bin, "hello");
    assert_eq!(img.targets.len(), 1);
    assert_eq!(img.targets[0].platform, Platform::LinuxAmd64);
    assert_eq!(img.targets[0].triple, "x86_64-unknown-linux-musl");
    assert_eq!(img.binary_path.as_str(), "/hello");
    assert_eq!(img.config.entrypoint, vec!["/hello"]);
    assert_eq!(img.config.user, DEFAULT_USER);
    assert_eq!(img.config.workdir.as_str(), "/");
    assert_eq!(img.build.profile, "release");
    assert!(img.build.default_features);
    assert_eq!(img.tags, vec!["latest"]);
}

#[test]
fn every_key_resolves() {
    let p = plan(
        r#"
[defaults]
platforms = ["linux/arm64", "linux/amd64"]
labels = { team = "core", tier = "1" }
env = { RUST_LOG = "info" }
tags = ["1.0", "latest"]

[images.api]
package = "tools"
bin = "serve"
targets = { "linux/arm64" = "aarch64-unknown-linux-musl" }
rustflags = ["-C", "opt-level=s"]
profile = "dist"
features = ["tls"]
default-features = false
binary-path = "/usr/bin/serve"
entrypoint = ["/usr/bin/serve", "--config", "/etc/app.toml"]
cmd = ["--port", "8080"]
env = { PORT = "8080" }
user = "1000:2000"
workdir = "/srv/./data/"
labels = { tier = "2" }
annotations = { "org.opencontainers.image.version" = "1.0" }
ports = ["8080", "53/udp"]
stop-signal = "SIGINT"
files = [{ src = "assets/app.toml", dst = "/etc/app.toml", mode = 0o600 }]
dirs = [{ path = "/tmp", mode = "1777" }]
"#,
    );
    let img = &p.images[0];
    assert_eq!(img.bin, "serve");
    let platforms: Vec<_> = img.targets.iter().map(|t| t.platform).collect();
    assert_eq!(platforms, vec![Platform::LinuxArm64, Platform::LinuxAmd64]);
    assert_eq!(img.build.rustflags, vec!["-C", "opt-level=s"]);
    assert_eq!(img.build.profile, "dist");
    assert_eq!(img.build.features, vec!["tls"]);
    assert!(!img.build.default_features);
    assert_eq!(img.binary_path.as_str(), "/usr/bin/serve");
    assert_eq!(img.config.cmd, vec!["--port", "8080"]);
    assert_eq!(img.config.env.get("RUST_LOG").unwrap(), "info");
    assert_eq!(img.config.env.get("PORT").unwrap(), "8080");
    assert_eq!(
        img.config.user,
        User {
            uid: 1000,
            gid: 2000
        }
    );
    assert_eq!(img.config.workdir.as_str(), "/srv/data");
    assert_eq!(img.config.labels.get("team").unwrap(), "core");
    assert_eq!(img.config.labels.get("tier").unwrap(), "2");
    assert_eq!(
        img.config.exposed_ports.iter().collect::<Vec<_>>(),
        vec!["53/udp", "8080/tcp"]
    );
    assert_eq!(img.config.stop_signal.as_deref(), Some("SIGINT"));
    assert_eq!(img.files[0].mode, 0o600);
    assert_eq!(img.files[0].dst.as_str(), "/etc/app.toml");
    assert_eq!(img.dirs[0].mode, 0o1777);
    assert_eq!(img.tags, vec!["1.0", "latest"]);
}

#[test]
fn unknown_keys_are_errors_with_position() {
    let e = errors("[images.hello]\npackage = \"hello\"\nentry-point = [\"/x\"]\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("3:1: "), "{e:?}");
    assert!(e[0].contains("entry-point"), "{e:?}");
}

#[test]
fn duplicate_image_names_are_errors() {
    let e = errors("[images.hello]\npackage = \"hello\"\n[images.hello]\npackage = \"hello\"\n");
    assert!(e[0].starts_with("3:"), "{e:?}");
    assert!(e[0].contains("duplicate"), "{e:?}");
}

#[test]
fn unknown_package_lists_the_real_ones() {
    let dir = fixture();
    let err = parse(
        Path::new("images.toml"),
        "[images.x]\npackage = \"helo\"\n",
        &workspace(dir.path()),
    )
    .unwrap_err();
    let d = &err.diagnostics[0];
    assert!(d.message.contains("`helo`"));
    assert_eq!(err.line_column(d.span.start), (2, 11));
    let help = d.help.as_deref().unwrap();
    assert!(
        help.contains("`hello`") && help.contains("`tools`"),
        "{help}"
    );
    assert!(!help.contains("lib-only"), "{help}");
    let rendered = err.render(false);
    assert!(rendered.contains("images.toml:2:11"), "{rendered}");
    assert!(rendered.contains("^^^^^^"), "{rendered}");
}

#[test]
fn binary_choice_is_checked() {
    let e = errors("[images.x]\npackage = \"tools\"\n");
    assert!(e[0].contains("several binaries"), "{e:?}");
    let e = errors("[images.x]\npackage = \"tools\"\nbin = \"srv\"\n");
    assert!(
        e[0].starts_with("3:7:") && e[0].contains("no binary `srv`"),
        "{e:?}"
    );
    let e = errors("[images.x]\npackage = \"lib-only\"\n");
    assert!(e[0].contains("no binary target"), "{e:?}");
    let e = errors("[images.x]\nbin = \"hello\"\n");
    assert!(e[0].contains("names no `package`"), "{e:?}");
}

#[test]
fn unsupported_platform_names_the_supported() {
    let dir = fixture();
    let err = parse(
        Path::new("images.toml"),
        "[images.x]\npackage = \"hello\"\nplatforms = [\"linux/amd64\", \"linux/s390x\"]\n",
        &workspace(dir.path()),
    )
    .unwrap_err();
    let d = &err.diagnostics[0];
    assert_eq!(err.line_column(d.span.start), (3, 29));
    assert!(d.help.as_deref().unwrap().contains("`linux/arm64`"));
}

#[test]
fn bad_destinations_are_errors() {
    let base = "[images.x]\npackage = \"hello\"\n";
    let e = errors(&format!(
        "{base}files = [{{ src = \"assets/app.toml\", dst = \"etc/app.toml\" }}]\n"
    ));
    assert!(e[0].starts_with("3:") && e[0].contains("relative"), "{e:?}");
    let e = errors(&format!(
        "{base}files = [{{ src = \"assets/app.toml\", dst = \"/etc/../../app\" }}]\n"
    ));
    assert!(e[0].contains("`..`"), "{e:?}");
    let e = errors(&format!(
        "{base}files = [{{ src = \"assets/app.toml\", dst = \"/hello\" }}]\n"
    ));
    assert!(e[0].contains("collides with the binary"), "{e:?}");
    let e = errors(&format!(
        "{base}files = [{{ src = \"assets/app.toml\", dst = \"/hello/app.toml\" }}]\n"
    ));
    assert!(e[0].contains("which is a file"), "{e:?}");
    let e = errors(&format!(
        "{base}files = [{{ src = \"assets/missing.toml\", dst = \"/app.toml\" }}]\n"
    ));
    assert!(
        e[0].starts_with("3:18:") && e[0].contains("cannot be read"),
        "{e:?}"
    );
    let e = errors(&format!(
        "{base}files = [{{ src = \"../outside\", dst = \"/app.toml\" }}]\n"
    ));
    assert!(e[0].contains("not inside the workspace"), "{e:?}");
    let e = errors(&format!(
        "{base}files = [{{ src = \"assets\", dst = \"/app\" }}]\n"
    ));
    assert!(e[0].contains("not a regular file"), "{e:?}");
}

#[test]
fn malformed_values_are_errors() {
    let base = "[images.x]\npackage = \"hello\"\n";
    for (line, needle) in [
        ("user = \"nobody\"", "invalid user"),
        ("user = \"1000:\"", "invalid user"),
        ("user = \"99999999999:1\"", "out of range"),
        ("ports = [\"http\"]", "invalid port"),
        ("ports = [\"70000\"]", "invalid port"),
        ("ports = [\"80/icmp\"]", "invalid port"),
        (
            "dirs = [{ path = \"/tmp\", mode = \"9777\" }]",
            "invalid mode",
        ),
        (
            "dirs = [{ path = \"/tmp\", mode = 0o17777 }]",
            "invalid mode",
        ),
        ("stop-signal = \"SIGFOO\"", "unknown signal"),
        ("tags = [\"-bad\"]", "invalid tag"),
        ("profile = \"re lease\"", "invalid profile"),
        ("entrypoint = []", "`entrypoint` is empty"),
        ("workdir = \"srv\"", "relative"),
        ("platforms = []", "`platforms` is empty"),
        (
            "targets = { \"linux/amd64\" = \"musl\" }",
            "not a target triple",
        ),
    ] {
        let e = errors(&format!("{base}{line}\n"));
        assert!(
            e[0].starts_with("3:") && e[0].contains(needle),
            "{line}: {e:?}"
        );
    }
}

#[test]
fn defaults_cannot_name_a_package() {
    let e = errors("[defaults]\npackage = \"hello\"\n[images.x]\npackage = \"hello\"\n");
    assert!(
        e[0].starts_with("2:1:") && e[0].contains("[defaults]"),
        "{e:?}"
    );
}

#[test]
fn all_problems_are_reported_at_once() {
    let e =
        errors("[images.a]\npackage = \"nope\"\n[images.b]\npackage = \"hello\"\nuser = \"x\"\n");
    assert_eq!(e.len(), 2, "{e:?}");
}

#[test]
fn invalid_image_names_are_errors() {
    let e = errors("[images.Hello]\npackage = \"hello\"\n");
    assert!(
        e[0].starts_with("1:9:") && e[0].contains("invalid image name"),
        "{e:?}"
    );
}

#[test]
fn image_paths_normalise() {
    assert_eq!(ImagePath::parse("//a/./b/").unwrap().as_str(), "/a/b");
    assert_eq!(ImagePath::parse("/").unwrap().relative(), "");
    let p = ImagePath::parse("/a/b/c").unwrap();
    assert_eq!(p.ancestors().collect::<Vec<_>>(), vec!["a", "a/b"]);
    assert!(ImagePath::parse("a").is_err());
    assert!(ImagePath::parse("/a/../b").is_err());
}

#[test]
fn values_a_process_cannot_receive_are_errors() {
    let base = "[images.x]\npackage = \"hello\"\n";
    for (line, needle) in [
        ("entrypoint = [\"/hello\\u0000x\"]", "NUL"),
        ("cmd = [\"a\\u0000\"]", "NUL"),
        ("env = { A = \"b\\u0000\" }", "invalid environment variable"),
        ("labels = { a = \"\\u0000\" }", "NUL"),
        ("dirs = [{ path = \"/\" }]", "cannot be `/`"),
    ] {
        let e = errors(&format!("{base}{line}\n"));
        assert!(e[0].contains(needle), "{line}: {e:?}");
    }
    let e = errors(&format!("{base}[images.x.tests.t]\nexit-code = 256\n"));
    assert!(
        e[0].starts_with("4:13:") && e[0].contains("can never happen"),
        "{e:?}"
    );
    let e = errors(&format!("{base}[images.x.tests.t]\nargs = [\"\\u0000\"]\n"));
    assert!(e[0].contains("NUL"), "{e:?}");
    let e = errors("[images.\"x.tar\"]\npackage = \"hello\"\n");
    assert!(e[0].contains("`.tar`"), "{e:?}");
}

#[test]
fn a_near_miss_key_gets_a_suggestion() {
    let dir = fixture();
    let err = parse(
        Path::new("images.toml"),
        "[images.x]\npackage = \"hello\"\nstop_signal = \"SIGINT\"\n",
        &workspace(dir.path()),
    )
    .unwrap_err();
    assert_eq!(err.diagnostics.len(), 1);
    assert_eq!(
        err.diagnostics[0].help.as_deref(),
        Some("did you mean `stop-signal`?")
    );
}

#[test]
fn opted_in_files_and_their_label_are_in_the_plan() {
    let p = plan(
        "[defaults]\nca-certificates = true\n[images.x]\npackage = \"hello\"\nuser = \"10:20\"\npasswd = true\n",
    );
    let img = &p.images[0];
    let dsts: Vec<&str> = img.files.iter().map(|f| f.dst.as_str()).collect();
    assert_eq!(
        dsts,
        [
            "/etc/ssl/certs/ca-certificates.crt",
            "/etc/passwd",
            "/etc/group"
        ]
    );
    let FileSource::Generated(passwd) = &img.files[1].src else {
        panic!("passwd is generated");
    };
    assert!(String::from_utf8_lossy(passwd).contains("nonroot:x:10:20:"));
    assert_eq!(
        img.config.labels["dev.scratchpack.ca-certificates.version"],
        "webpki-root-certs 1.0.11"
    );
    let none = plan("[images.x]\npackage = \"hello\"\npasswd = false\n");
    assert!(none.images[0].files.is_empty());
    assert!(none.images[0].config.labels.is_empty());
}

#[test]
fn a_symlink_inside_the_workspace_is_followed_to_its_file() {
    let dir = fixture();
    std::os::unix::fs::symlink("assets/app.toml", dir.path().join("link.toml")).unwrap();
    let p = parse(
        &dir.path().join("images.toml"),
        "[images.x]\npackage = \"hello\"\nfiles = [{ src = \"link.toml\", dst = \"/app.toml\" }]\n",
        &workspace(dir.path()),
    )
    .unwrap();
    let FileSource::Host(src) = &p.images[0].files[0].src else {
        panic!("a host file");
    };
    assert!(src.ends_with("assets/app.toml"), "{}", src.display());
}

#[test]
fn profiles_are_listed_once_and_built_ins_need_no_inherits() {
    let p = plan("[images.x]\npackage = \"hello\"\nprofile = \"release\"\n");
    assert_eq!(p.images[0].build.profile, "release");
    let dir = fixture();
    let err = parse(
        Path::new("images.toml"),
        "[images.x]\npackage = \"hello\"\nprofile = \"fast\"\n",
        &workspace(dir.path()),
    )
    .unwrap_err();
    let help = err.diagnostics[0].help.as_deref().unwrap();
    assert!(
        help.starts_with("profiles: `dev`, `release`, `test`, `bench`, `dist`, `half`;"),
        "{help}"
    );
}

#[test]
fn release_keys_resolve_with_defaults_into_the_plan() {
    use crate::manifest::{ReleaseSettings, SbomFormat, SignatureFormat};
    let p = plan(
        "[defaults]\nsbom = [\"cyclonedx\", \"spdx\"]\nsignature-format = \"bundle\"\n\
         builder-id = \"https://ci.example/builders/7\"\n\
         [images.a]\npackage = \"hello\"\n\
         [images.b]\npackage = \"hello\"\nsbom = []\nprovenance = false\nsignature-format = \"sig\"\n\
         [images.c]\npackage = \"hello\"\nbuilder-id = \"urn:example:c\"\n",
    );
    let [a, b, c] = &p.images[..] else {
        panic!("three images")
    };
    // Written in either order, the formats come out in one order.
    assert_eq!(
        a.release.sbom,
        vec![SbomFormat::Spdx, SbomFormat::CycloneDx]
    );
    assert_eq!(a.release.signature_format, SignatureFormat::Bundle);
    assert!(a.release.provenance);
    assert_eq!(a.release.builder_id, "https://ci.example/builders/7");
    assert!(b.release.sbom.is_empty());
    assert!(!b.release.provenance);
    assert!(b.release.signature_format.tags() && !b.release.signature_format.bundles());
    assert_eq!(c.release.builder_id, "urn:example:c");
    assert_eq!(c.release.sbom, a.release.sbom);

    let none = plan("[images.a]\npackage = \"hello\"\n");
    assert_eq!(none.images[0].release, ReleaseSettings::default());
    assert_eq!(none.images[0].release.sbom, vec![SbomFormat::Spdx]);
}

#[test]
fn bad_release_values_are_named_where_they_are_written() {
    let e = errors("[images.a]\npackage = \"hello\"\nsbom = [\"swid\"]\n");
    assert_eq!(e, vec!["3:9: unknown SBOM format `swid`"]);
    let e =
        errors("[defaults]\nsignature-format = \"both-ways\"\n[images.a]\npackage = \"hello\"\n");
    assert_eq!(e, vec!["2:20: unknown signature format `both-ways`"]);
    let e = errors("[images.a]\npackage = \"hello\"\nprovenance = \"yes\"\nbuilder-id = \"\"\n");
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].starts_with("3:14: `provenance` in image `a`"), "{e:?}");
    assert_eq!(e[1], "4:14: `builder-id` is empty");
}

#[test]
fn test_settings_merge_defaults_per_key_and_seccomp_opts_out_per_test() {
    let p = plan(
        r#"
[defaults]
unpack-limits = { max-bytes = 1000, max-depth = 8 }
require-all-platforms = true

[images.hello]
package = "hello"
unpack-limits = { max-depth = 4, max-entries = 10 }

[images.hello.tests.raw]
args = ["x"]
seccomp = false

[images.hello.tests.filtered]
args = ["y"]

[images.other]
package = "hello"
require-all-platforms = false
"#,
    );
    let hello = &p.images.iter().find(|i| i.name == "hello").unwrap();
    assert_eq!(
        hello.test_settings.unpack_limits,
        UnpackLimitKeys {
            max_bytes: Some(1000),
            max_entries: Some(10),
            max_depth: Some(4),
            max_name_bytes: None,
        }
    );
    assert!(hello.test_settings.require_all_platforms);
    let other = &p.images.iter().find(|i| i.name == "other").unwrap();
    assert!(!other.test_settings.require_all_platforms);
    let seccomp = |name: &str| {
        hello
            .tests
            .iter()
            .find(|t| t.name == name)
            .and_then(|t| t.command.as_ref())
            .unwrap()
            .seccomp
    };
    assert!(!seccomp("raw"));
    assert!(seccomp("filtered"));
}

#[test]
fn bad_test_settings_are_errors_in_place() {
    let e = errors("[images.hello]\npackage = \"hello\"\nunpack-limits = { max-files = 1 }\n");
    assert!(
        e.iter()
            .any(|m| m.contains("unknown key `max-files`") && m.contains("3:19")),
        "{e:?}"
    );
    let e = errors("[images.hello]\npackage = \"hello\"\nunpack-limits = { max-depth = 0 }\n");
    assert!(
        e.iter()
            .any(|m| m.contains("invalid unpack limit") && m.contains("3:31")),
        "{e:?}"
    );
    let e = errors("[images.hello]\npackage = \"hello\"\nunpack-limits = { max-bytes = \"1G\" }\n");
    assert!(
        e.iter()
            .any(|m| m.contains("expected a positive integer, found a string")),
        "{e:?}"
    );
    let e = errors(
        "[images.hello]\npackage = \"hello\"\n[images.hello.tests.t]\nargs = []\nseccomp = \"off\"\n",
    );
    assert!(
        e.iter()
            .any(|m| m.contains("`seccomp`") && m.contains("found a string")),
        "{e:?}"
    );
}

/// zstd layers need the `zstd` feature, off by default: without it a
/// manifest asking for them is refused at the key, saying how to turn it on.
#[cfg(not(feature = "zstd"))]
#[test]
fn without_zstd_a_zstd_layer_is_refused_naming_the_feature() {
    let text = "[images.hello]\npackage = \"hello\"\ncompression = \"zstd\"\n";
    assert_eq!(
        errors(text),
        ["3:15: zstd layers are not built into this xtask"]
    );
    let dir = fixture();
    let e = parse(Path::new("images.toml"), text, &workspace(dir.path())).unwrap_err();
    assert!(
        e.render(false).contains(r#"features = ["zstd"]"#),
        "{}",
        e.render(false)
    );
}

#[test]
fn registry_limits_and_cache_keys_come_from_defaults() {
    use std::time::Duration;
    let p = plan(
        r#"
[defaults]
cache = "registry.example/cache"
cache-sign-key = "ci/cache.key"
cache-verify-key = "keys/cache.pub"
registry-limits = { idle-timeout = 5, max-documents = 50 }

[images.hello]
package = "hello"
"#,
    );
    let limits = crate::registry::RegistryLimits::default();
    assert_eq!(p.registry_limits.idle_timeout, Duration::from_secs(5));
    assert_eq!(p.registry_limits.walk.documents, 50);
    // What the file leaves out keeps its default.
    assert_eq!(p.registry_limits.timeout, limits.timeout);
    assert_eq!(p.registry_limits.walk.bytes, limits.walk.bytes);
    assert_eq!(
        p.cache_keys.sign,
        Some(p.workspace_root.join("ci/cache.key"))
    );
    assert_eq!(
        p.cache_keys.verify,
        Some(p.workspace_root.join("keys/cache.pub"))
    );
    let p = plan("[images.hello]\npackage = \"hello\"\n");
    assert_eq!(p.registry_limits, limits);
    assert_eq!(p.cache_keys, CacheKeyFiles::default());
}

#[test]
fn a_service_test_resolves_with_its_defaults() {
    let p = plan(
        r#"
[images.hello]
package = "hello"

[images.hello.tests.serves]
service = { port = 8080, ready-timeout = 2.5, ready = { http = "/healthz" } }
args = ["serve"]
requests = [
  { path = "/", body = { contains = ["<title>"] } },
  { method = "POST", path = "/api", headers = { "Content-Type" = "application/json" },
    body-text = "{}", status = 201, response-headers = { "Content-Type" = "application/json" } },
  { tcp = { send = "PING\r\n", expect = { equals = "+PONG\r\n" } } },
  { tcp = { send-hex = "00 1d 12 34\n81 80", expect = { contains-hex = ["7f000001", "C0 a8"], contains = ["ok"] } } },
]
stop = { exit-code = 143, timeout = 3 }
stderr = { contains = ["stopping"] }

[images.hello.tests.plain]
service = { port = 9000 }
"#,
    );
    let tests = &p.images[0].tests;
    let serves = tests.iter().find(|t| t.name == "serves").unwrap();
    let service = serves.service.as_ref().unwrap();
    assert_eq!(service.port, 8080);
    assert_eq!(service.ready_timeout_ms, 2500);
    assert_eq!(service.ready_http.as_deref(), Some("/healthz"));
    assert_eq!(service.stop_timeout_ms, 3000);
    let ServiceRequest::Http(get) = &service.requests[0] else {
        panic!("{:?}", service.requests[0])
    };
    assert_eq!((get.method.as_str(), get.status), ("GET", None));
    assert_eq!(get.body_expect.contains, ["<title>"]);
    let ServiceRequest::Http(post) = &service.requests[1] else {
        panic!("{:?}", service.requests[1])
    };
    assert_eq!(post.status, Some(201));
    assert_eq!(post.body.as_deref(), Some("{}"));
    assert_eq!(
        post.headers,
        [("Content-Type".to_owned(), "application/json".to_owned())]
    );
    // Response header names are compared without regard to case.
    assert_eq!(
        post.response_headers["content-type"],
        "application/json".to_owned()
    );
    let ServiceRequest::Tcp(tcp) = &service.requests[2] else {
        panic!("{:?}", service.requests[2])
    };
    assert_eq!(tcp.send, b"PING\r\n");
    assert_eq!(tcp.expect.equals.as_deref(), Some("+PONG\r\n"));
    assert!(tcp.expect.contains_bytes.is_empty());
    let ServiceRequest::Tcp(binary) = &service.requests[3] else {
        panic!("{:?}", service.requests[3])
    };
    assert_eq!(binary.send, [0x00, 0x1d, 0x12, 0x34, 0x81, 0x80]);
    assert_eq!(
        binary.expect.contains_bytes,
        [vec![0x7f, 0, 0, 1], vec![0xc0, 0xa8]]
    );
    assert_eq!(binary.expect.contains, ["ok"]);
    // The command says how it runs; its exit code is the stop's, and its
    // timeout covers readiness, every request and the stop.
    let command = serves.command.as_ref().unwrap();
    assert_eq!(command.args.as_deref(), Some(&["serve".to_owned()][..]));
    assert_eq!(command.exit_code, 143);
    assert_eq!(command.stderr.contains, ["stopping"]);
    assert_eq!(command.timeout_ms, 2500 + 3000 + 5 * REQUEST_TIMEOUT_MS);

    let plain = tests.iter().find(|t| t.name == "plain").unwrap();
    let service = plain.service.as_ref().unwrap();
    assert_eq!(service.ready_timeout_ms, DEFAULT_SERVICE_TIMEOUT_MS);
    assert_eq!(service.stop_timeout_ms, DEFAULT_SERVICE_TIMEOUT_MS);
    assert!(service.requests.is_empty() && service.ready_http.is_none());
    assert_eq!(plain.command.as_ref().unwrap().exit_code, 0);
}

/// A checkout with a commit and a branch, and no tag on HEAD.
struct Untagged;

impl GitValues for Untagged {
    fn value(&self, field: GitField) -> Result<String, String> {
        match field {
            GitField::Commit => Ok("0123456789abcdef0123456789abcdef01234567".into()),
            GitField::Short => Ok("0123456".into()),
            GitField::Tag => Err("HEAD has no tag".into()),
            GitField::Branch => Ok("feature/x".into()),
        }
    }
}

fn tagged(text: &str, replace: Option<&[Tag]>) -> Result<Plan, Vec<String>> {
    let dir = fixture();
    let mut ws = workspace(dir.path());
    ws.versions.insert("hello".into(), "0.3.1".into());
    let inputs = TagInputs {
        git: &Untagged,
        replace,
    };
    parse_with(Path::new("images.toml"), text, &ws, inputs).map_err(|e| {
        e.diagnostics
            .iter()
            .map(|d| {
                let (line, col) = e.line_column(d.span.start);
                format!("{line}:{col}: {}", d.message)
            })
            .collect()
    })
}

#[test]
fn tag_templates_are_filled_in_and_skipped_with_a_notice() {
    let text = "[images.hello]\npackage = \"hello\"\n\
                tags = [\"latest\", \"{version}\", \"sha-{git.short}\", \"{git.tag}\", \"{git.branch}\"]\n";
    let p = tagged(text, None).unwrap();
    let img = &p.images[0];
    assert_eq!(img.version, "0.3.1");
    assert_eq!(
        img.tags,
        vec!["latest", "0.3.1", "sha-0123456", "feature-x"]
    );
    assert_eq!(p.notices, ["tag `{git.tag}` of `hello` (HEAD has no tag)"]);
    // `--tag` replaces them all, and nothing is filled in.
    let given = [Tag::parse("dev").unwrap()];
    let p = tagged(text, Some(&given)).unwrap();
    assert_eq!(p.images[0].tags, vec!["dev"]);
    assert!(p.notices.is_empty());
    // An image none of whose tags this checkout can fill in is refused.
    let none = "[images.hello]\npackage = \"hello\"\ntags = [\"{git.tag}\"]\n";
    assert_eq!(
        tagged(none, None).unwrap_err(),
        ["3:8: image `hello` has no tag in this checkout"]
    );
    // A value that makes no tag is an error where the template is written.
    let bad = "[images.hello]\npackage = \"hello\"\ntags = [\"{version}+x\"]\n";
    let e = tagged(bad, None).unwrap_err();
    assert!(e[0].starts_with("3:9: invalid tag `{version}+x`"), "{e:?}");
}

#[test]
fn source_annotations_are_on_unless_switched_off() {
    let on = plan("[images.hello]\npackage = \"hello\"\n");
    assert!(on.images[0].source_annotations);
    let off = plan("[defaults]\nsource-annotations = false\n[images.hello]\npackage = \"hello\"\n");
    assert!(!off.images[0].source_annotations);
}

#[test]
fn extra_binaries_resolve_with_their_packages_settings() {
    let p = plan(
        "[images.hello]\npackage = \"hello\"\nfeatures = [\"loud\"]\n\
         binaries = [{ package = \"tools\", bin = \"migrate\" }, \
         { package = \"tools\", bin = \"serve\", path = \"/usr/bin/serve\" }]\n",
    );
    let b = &p.images[0].binaries;
    assert_eq!(b.len(), 2);
    assert_eq!(b[0].path.as_str(), "/migrate");
    assert_eq!(b[1].path.as_str(), "/usr/bin/serve");
    assert!(
        b[0].build.features.is_empty(),
        "the image's features are its own package's"
    );
    assert_eq!(p.images[0].build.features, ["loud"]);
}

/// images.toml is read only as a regular file of bounded size: a link to a
/// device that never ends, a FIFO nobody writes and a file past the bound are
/// refused at once, naming the file and why; a link to a regular file reads.
#[test]
fn an_images_toml_that_is_not_a_bounded_file_is_refused_at_once() {
    let dir = fixture();
    let ws = workspace(dir.path());
    let reason = |path: &Path| match load(path, &ws) {
        Err(LoadError::Read {
            path: named,
            source,
        }) => {
            assert_eq!(named, path);
            source.to_string()
        }
        other => panic!("{path:?}: {other:?}"),
    };
    let zero = dir.path().join("zero.toml");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    assert_eq!(reason(&zero), "not a regular file");
    let fifo = dir.path().join("fifo.toml");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    assert_eq!(reason(&fifo), "not a regular file");
    let big = dir.path().join("big.toml");
    let file = std::fs::File::create(&big).unwrap();
    file.set_len(MAX_MANIFEST_BYTES + 1).unwrap();
    assert_eq!(reason(&big), "more than 16 MiB");
    let real = dir.path().join("real.toml");
    std::fs::write(&real, "[images.hello]\npackage = \"hello\"\n").unwrap();
    let link = dir.path().join("link.toml");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    assert_eq!(load(&link, &ws).unwrap().images[0].name, "hello");
}

//! `cargo xtask push` and `cargo xtask images --push` end to end: fixture
//! workspaces built and pushed by the real command line to a real CNCF
//! distribution registry, then read back with skopeo.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Mutex;

use crate::registry::image::sha256;
use crate::registry::proxy::{Action, Front, error_answer};
use crate::registry::server::{Registry, copy_to_layout, have_tools, inspect_raw};
use crate::support::{self, Fixture, HELLO_MAIN};

const TAGS: [&str; 2] = ["latest", "1.0"];

/// A one-image workspace (`hello`) whose images.toml pushes to `registry` in
/// plain HTTP, with both tags, for `platforms`.
fn fixture(registry: &str, platforms: &[&str]) -> Fixture {
    let platforms: Vec<String> = platforms.iter().map(|p| format!("\"{p}\"")).collect();
    Fixture::new(
        &[("hello", HELLO_MAIN)],
        &format!(
            "[defaults]\n\
             registry = \"{registry}\"\n\
             insecure = true\n\
             platforms = [{}]\n\
             tags = [\"latest\", \"1.0\"]\n\n\
             [images.hello]\n\
             package = \"hello\"\n",
            platforms.join(", ")
        ),
    )
}

/// Where the commands below write images: inside the fixture, named explicitly
/// so the tests read exactly what was pushed.
fn out_dir(fixture: &Fixture) -> PathBuf {
    fixture.path().join("images")
}

/// Runs the CLI in `fixture` with `args` and `--out`, with no credentials from
/// the environment or the user's Docker config unless `env` supplies them.
fn cli(fixture: &Fixture, args: &[&str], env: &[(&str, &str)]) -> Output {
    let no_docker_config = tempfile::tempdir().unwrap();
    let mut cmd = support::cli();
    cmd.current_dir(fixture.path())
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("SCRATCHPACK_REGISTRY_USERNAME")
        .env_remove("SCRATCHPACK_REGISTRY_PASSWORD")
        .env("DOCKER_CONFIG", no_docker_config.path())
        .args(args)
        .arg("--out")
        .arg(out_dir(fixture));
    for (k, v) in env {
        cmd.env(k, v);
    }
    support::run(&mut cmd)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The one JSON object `--message-format json` printed for an image.
fn pushed(out: &Output) -> serde_json::Value {
    let objects = support::built_images(out);
    assert_eq!(objects.len(), 1, "one image, one JSON object: {objects:?}");
    objects.into_iter().next().unwrap()
}

/// The digest the local layout's `index.json` names, after checking that it
/// has one entry per tag (the first named by the first tag), all the same
/// image.
fn local_digest(layout: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entries = index["manifests"].as_array().unwrap();
    assert!(
        !entries.is_empty() && entries.len() <= TAGS.len(),
        "{index}"
    );
    for (entry, tag) in entries.iter().zip(TAGS) {
        assert_eq!(
            entry["annotations"]["org.opencontainers.image.ref.name"],
            tag
        );
        assert_eq!(entry["digest"], entries[0]["digest"]);
    }
    entries[0]["digest"].as_str().unwrap().to_owned()
}

/// Every blob of an OCI layout, by digest.
fn blobs(layout: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (format!("sha256:{name}"), std::fs::read(&path).unwrap())
        })
        .collect()
}

fn is_manifest(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(bytes).is_ok_and(|v| {
        v["mediaType"]
            .as_str()
            .is_some_and(|m| m.ends_with("manifest.v1+json") || m.ends_with("index.v1+json"))
    })
}

/// The registry serves the local digest under every tag, and a full skopeo copy
/// of it holds exactly the local layout's blobs, byte for byte.
fn assert_registry_has(repo_ref: &str, layout: &Path, creds: Option<&str>) {
    let digest = local_digest(layout);
    for tag in TAGS {
        let raw = inspect_raw(&format!("{repo_ref}:{tag}"), creds);
        assert_eq!(sha256(&raw), digest, "manifest served for {repo_ref}:{tag}");
    }
    let (_keep, copy) = copy_to_layout(&format!("{repo_ref}:{}", TAGS[0]), creds);
    let (local, copied) = (blobs(layout), blobs(&copy));
    assert_eq!(
        local.keys().collect::<Vec<_>>(),
        copied.keys().collect::<Vec<_>>(),
        "blobs after skopeo copy of {repo_ref}"
    );
    assert!(local == copied, "blob bytes differ after skopeo copy");
}

/// Every tag the registry has for `repo` leads to the complete local image.
fn assert_tags_complete(registry: &Registry, repo: &str, layout: &Path) {
    for tag in registry.tags(repo, None) {
        let reference = format!("{}/{repo}:{tag}", registry.host());
        assert_eq!(sha256(&inspect_raw(&reference, None)), local_digest(layout));
        let (_keep, copy) = copy_to_layout(&reference, None);
        assert!(
            blobs(&copy) == blobs(layout),
            "tag {tag} leads to an incomplete image"
        );
    }
}

#[test]
fn push_sends_both_platforms_under_every_tag_and_a_second_push_uploads_nothing() {
    if !have_tools() {
        return;
    }
    let registry = Registry::start();
    let host = registry.host();
    let fx = fixture(&format!("{host}/team"), &["linux/amd64", "linux/arm64"]);
    let layout = out_dir(&fx).join("hello");

    let out = cli(&fx, &["push", "--message-format", "json"], &[]);
    assert!(out.status.success(), "push failed");
    let first = pushed(&out);
    let digest = local_digest(&layout);
    assert_eq!(first["name"], "hello");
    assert_eq!(first["digest"], digest.as_str());
    assert_eq!(first["repository"], format!("{host}/team/hello"));
    assert_eq!(first["reference"], format!("{host}/team/hello@{digest}"));
    assert_eq!(first["tags"], serde_json::json!(TAGS));
    // Per platform a config and a layer, none there before.
    assert_eq!(first["blobs_uploaded"], 4);
    assert_eq!(first["blobs_skipped"], 0);
    // Configs and layers are the blobs; manifests and the index go up as manifests.
    let blob_bytes: u64 = blobs(&layout)
        .values()
        .filter(|b| !is_manifest(b))
        .map(|b| b.len() as u64)
        .sum();
    assert_eq!(first["bytes_uploaded"], blob_bytes);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "Pushing hello to {host}/team/hello:{{latest,1.0}}"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("Pushed hello {digest} (4 blobs, ")),
        "{err}"
    );
    assert_registry_has(&format!("{host}/team/hello"), &layout, None);

    // Nothing changed: nothing is rebuilt or uploaded, and the tags are put again.
    let out = cli(&fx, &["push", "--message-format", "json"], &[]);
    assert!(out.status.success(), "second push failed");
    let second = pushed(&out);
    assert_eq!(second["digest"], digest.as_str());
    assert_eq!(second["blobs_uploaded"], 0);
    assert_eq!(second["bytes_uploaded"], 0);
    assert_eq!(second["blobs_skipped"], 4);
    let err = stderr(&out);
    assert!(err.contains("Fresh hello"), "{err}");
    assert!(err.contains("Skipped 4 blobs already in"), "{err}");
    let mut tags = registry.tags("team/hello", None);
    tags.sort();
    assert_eq!(tags, ["1.0", "latest"]);
}

#[test]
fn registry_flag_overrides_images_toml_and_images_push_pushes_after_building() {
    if !have_tools() {
        return;
    }
    let registry = Registry::start();
    let host = registry.host();
    // Nothing listens on the discard port: a push there would fail.
    let fx = fixture("127.0.0.1:9/nowhere", &["linux/amd64"]);
    let layout = out_dir(&fx).join("hello");

    let other = format!("{host}/other");
    let out = cli(
        &fx,
        &[
            "push",
            "--registry",
            &other,
            "--insecure",
            "--message-format",
            "json",
        ],
        &[],
    );
    assert!(out.status.success(), "push with --registry failed");
    assert_eq!(pushed(&out)["repository"], format!("{other}/hello"));
    assert_registry_has(&format!("{other}/hello"), &layout, None);

    // The same through `images --push`, with the closing table on stdout.
    let third = format!("{host}/third");
    let out = cli(
        &fx,
        &["images", "--push", "--registry", &third, "--insecure"],
        &[],
    );
    assert!(out.status.success(), "images --push failed");
    let table = String::from_utf8_lossy(&out.stdout);
    let digest = local_digest(&layout);
    assert!(table.starts_with("IMAGE"), "{table}");
    assert!(table.contains("PUSHED TO"), "{table}");
    assert!(
        table.contains(&format!("{third}/hello:latest,1.0")),
        "{table}"
    );
    assert!(table.contains(&digest[..19]), "{table}");
    assert_registry_has(&format!("{third}/hello"), &layout, None);

    // `--registry` without `--push` is a usage error, before anything is built.
    let out = cli(&fx, &["images", "--registry", &third], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("only apply with --push"));
}

#[test]
fn a_registry_from_the_command_line_gets_plain_http_only_with_insecure() {
    if !have_tools() {
        return;
    }
    let registry = Registry::start();
    let fx = fixture("127.0.0.1:9/nowhere", &["linux/amd64"]);
    let target = format!("{}/plain", registry.host());
    // images.toml's `insecure = true` is for its own registry, not this one.
    let out = cli(&fx, &["push", "--registry", &target], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "error: pushing image `hello` to {target}/hello over HTTPS (if it speaks plain HTTP, \
             pass `--insecure`"
        )),
        "{err}"
    );
    assert_eq!(registry.stored_blobs(), 0);
}

#[test]
fn basic_auth_wrong_password_is_refused_and_right_password_pushes() {
    if !have_tools() {
        return;
    }
    let registry = Registry::start_with_auth(Some(("ci", "s3cret-pw")));
    let host = registry.host();
    let fx = fixture(&format!("{host}/team"), &["linux/amd64"]);
    let layout = out_dir(&fx).join("hello");

    let out = cli(
        &fx,
        &["push"],
        &[
            ("SCRATCHPACK_REGISTRY_USERNAME", "ci"),
            ("SCRATCHPACK_REGISTRY_PASSWORD", "wrong"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "error: pushing image `hello` to {host}/team/hello"
        )),
        "{err}"
    );
    assert!(
        err.contains("401") && err.to_lowercase().contains("unauthorized"),
        "{err}"
    );
    assert_eq!(registry.stored_blobs(), 0, "a refused push stored blobs");

    // The right password, from a Docker config this time.
    let docker_config = tempfile::tempdir().unwrap();
    std::fs::write(
        docker_config.path().join("config.json"),
        format!(r#"{{"auths":{{"{host}":{{"username":"ci","password":"s3cret-pw"}}}}}}"#),
    )
    .unwrap();
    let config_dir = docker_config.path().to_str().unwrap();
    let out = cli(
        &fx,
        &["push", "--message-format", "json"],
        &[("DOCKER_CONFIG", config_dir)],
    );
    assert!(out.status.success(), "push with the right password failed");
    assert_eq!(pushed(&out)["digest"], local_digest(&layout).as_str());
    assert_registry_has(&format!("{host}/team/hello"), &layout, Some("ci:s3cret-pw"));
}

#[test]
fn without_a_registry_push_is_a_usage_error() {
    let fx = Fixture::new(
        &[("hello", HELLO_MAIN)],
        "[images.hello]\npackage = \"hello\"\nplatforms = [\"linux/amd64\"]\n",
    );
    for args in [&["push"][..], &["push", "hello"], &["images", "--push"]] {
        let out = cli(&fx, args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.contains("set `registry` in images.toml `[defaults]`")
                && err.contains("--registry"),
            "{args:?}: {err}"
        );
        // Refused before any build.
        assert!(!out_dir(&fx).exists(), "{args:?} built images");
    }
}

#[test]
fn images_without_a_registry_are_skipped_unless_named() {
    if !have_tools() {
        return;
    }
    let registry = Registry::start();
    let host = registry.host();
    let fx = Fixture::new(
        &[("hello", HELLO_MAIN), ("local", HELLO_MAIN)],
        &format!(
            "[defaults]\nplatforms = [\"linux/amd64\"]\n\n\
             [images.hello]\npackage = \"hello\"\nregistry = \"{host}\"\ninsecure = true\n\n\
             [images.local]\npackage = \"local\"\n"
        ),
    );
    let out = cli(&fx, &["push", "local"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("image `local` has no registry to push to"),
        "{err}"
    );

    let out = cli(&fx, &["push", "--message-format", "json"], &[]);
    assert!(out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("warning: skipping image `local`: images.toml names no registry for it"),
        "{err}"
    );
    assert_eq!(pushed(&out)["name"], "hello");
    assert_eq!(registry.tags("hello", None), ["latest"]);
    // The skipped image was not built either.
    assert!(!out_dir(&fx).join("local").exists());
}

#[test]
fn transient_faults_are_retried_and_the_pushed_digests_match() {
    if !have_tools() {
        return;
    }
    let registry = Registry::start();
    let seen = Mutex::new(BTreeMap::<&'static str, usize>::new());
    let front = Front::start(Some(registry.port), move |req| {
        let kind = match (req.method.as_str(), req.target.as_str()) {
            ("POST", t) if t.contains("/blobs/uploads/") => "post",
            ("PUT", t) if t.contains("/blobs/uploads/") => "put-blob",
            ("PUT", t) if t.contains("/manifests/") => "put-manifest",
            ("HEAD", _) => "head",
            _ => "other",
        };
        let mut seen = seen.lock().unwrap();
        let n = seen.entry(kind).or_default();
        *n += 1;
        match (kind, *n) {
            // A connection cut before the first blob check is answered.
            ("head", 1) => Action::Drop,
            // The registry keeps the first blob, but the answer is lost.
            ("put-blob", 1) => Action::ForwardThenDrop,
            // An upload session refused once.
            ("post", 2) => error_answer(500, "UNKNOWN", "storage hiccup"),
            // The first tag is refused for a moment.
            ("put-manifest", 1) => error_answer(503, "UNAVAILABLE", "try later"),
            _ => Action::Forward,
        }
    });
    let fx = fixture(&format!("{}/team", front.host()), &["linux/amd64"]);
    let layout = out_dir(&fx).join("hello");

    let out = cli(&fx, &["push", "--message-format", "json"], &[]);
    assert!(out.status.success(), "push through the faults failed");
    let report = pushed(&out);
    assert_eq!(report["digest"], local_digest(&layout).as_str());
    assert!(report["retries"].as_u64().unwrap() >= 4, "{report}");
    let err = stderr(&out);
    assert!(err.contains("trying again in"), "{err}");
    // Read back from the registry itself, not through the front.
    assert_registry_has(&format!("{}/team/hello", registry.host()), &layout, None);

    let clean = format!("{}/team", registry.host());
    let out = cli(
        &fx,
        &[
            "push",
            "--registry",
            &clean,
            "--insecure",
            "--message-format",
            "json",
        ],
        &[],
    );
    assert!(out.status.success(), "clean push failed");
    assert_eq!(pushed(&out)["blobs_uploaded"], 0);
    assert_tags_complete(&registry, "team/hello", &layout);
}

#[test]
fn a_refused_tag_fails_clearly_leaves_no_tag_and_a_clean_push_completes() {
    if !have_tools() {
        return;
    }
    let registry = Registry::start();
    let front = Front::start(Some(registry.port), |req| {
        if req.method == "PUT" && req.target.contains("/manifests/") {
            error_answer(403, "DENIED", "tags are frozen")
        } else {
            Action::Forward
        }
    });
    let fx = fixture(&format!("{}/team", front.host()), &["linux/amd64"]);
    let layout = out_dir(&fx).join("hello");

    let out = cli(&fx, &["push"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "error: pushing image `hello` to {}/team/hello",
            front.host()
        )),
        "{err}"
    );
    assert!(
        err.contains("registry answered 403 Forbidden: tags are frozen (DENIED)"),
        "{err}"
    );
    assert!(
        registry.tags("team/hello", None).is_empty(),
        "a failed push left a tag"
    );
    assert!(registry.stored_blobs() > 0, "blobs go up before the tags");

    let clean = format!("{}/team", registry.host());
    let out = cli(&fx, &["push", "--registry", &clean, "--insecure"], &[]);
    assert!(out.status.success(), "clean push failed");
    assert_eq!(registry.tags("team/hello", None).len(), 2);
    assert_tags_complete(&registry, "team/hello", &layout);
    assert_registry_has(&format!("{clean}/hello"), &layout, None);
}

#[test]
fn a_large_layer_reports_its_upload_at_start_and_end_without_a_terminal() {
    if !have_tools() {
        return;
    }
    let registry = Registry::start();
    let fx = Fixture::new(
        &[("hello", HELLO_MAIN)],
        &format!(
            "[images.hello]\npackage = \"hello\"\nplatforms = [\"linux/amd64\"]\n\
             registry = \"{}\"\ninsecure = true\n\
             files = [{{ src = \"noise.bin\", dst = \"/noise.bin\" }}]\n",
            registry.host()
        ),
    );
    // Bytes that do not compress, so the layer stays above the 1 MiB at which
    // uploads get a progress display.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let noise: Vec<u8> = (0..3 * 1024 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(fx.path().join("noise.bin"), noise).unwrap();

    let out = cli(&fx, &["push", "--message-format", "json"], &[]);
    assert!(out.status.success(), "push failed");
    let report = pushed(&out);
    let err = stderr(&out);
    let layout = out_dir(&fx).join("hello");
    let layer = blobs(&layout)
        .into_iter()
        .max_by_key(|(_, b)| b.len())
        .unwrap();
    let short = &layer.0[..19];
    let size = format!("{:.1} MiB", layer.1.len() as f64 / (1024.0 * 1024.0));
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains(short) && l.contains("Upload"))
        .collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0]
            .trim_start()
            .starts_with(&format!("Uploading {short} ({size})")),
        "{err}"
    );
    assert!(
        lines[1]
            .trim_start()
            .starts_with(&format!("Uploaded {short} ({size} in ")),
        "{err}"
    );
    assert!(!err.contains('\r'), "redrawn in place without a terminal");
    assert_eq!(report["digest"], local_digest(&layout).as_str());
}

#[test]
fn images_sharing_a_binary_mount_it_instead_of_uploading_it_again() {
    if !have_tools() {
        return;
    }
    let registry = Registry::start();
    let host = registry.host();
    // Two images of one binary: the same layer, different configs.
    let fx = Fixture::new(
        &[("hello", HELLO_MAIN)],
        &format!(
            "[defaults]\nregistry = \"{host}/team\"\ninsecure = true\ntags = [\"latest\", \"1.0\"]\n\n\
             [images.api]\npackage = \"hello\"\n\n\
             [images.api-debug]\npackage = \"hello\"\nenv = {{ RUST_LOG = \"debug\" }}\n"
        ),
    );
    let out = cli(&fx, &["push", "--message-format", "json"], &[]);
    assert!(out.status.success(), "push failed");
    let reports = support::built_images(&out);
    assert_eq!(reports.len(), 2);
    let (api, debug) = (&reports[0], &reports[1]);
    assert_eq!(api["name"], "api");
    assert_eq!(
        (&api["blobs_uploaded"], &api["blobs_mounted"]),
        (&2.into(), &0.into())
    );
    // The layer comes from team/api; only the config is uploaded.
    assert_eq!(debug["name"], "api-debug");
    assert_eq!(debug["blobs_mounted"], 1, "{debug}");
    assert_eq!(debug["blobs_uploaded"], 1, "{debug}");
    for name in ["api", "api-debug"] {
        let layout = out_dir(&fx).join(name);
        assert_registry_has(&format!("{host}/team/{name}"), &layout, None);
    }
}

//! `push --sign`, `sign` and `verify` end to end against a real CNCF
//! distribution registry (2.8, no referrers API: the referrers tag schema is
//! used): a signed push verifies, also after `skopeo copy` to another
//! registry, and each forgery fails verification naming what is wrong.

use std::path::PathBuf;
use std::process::Output;

use base64::Engine as _;
use scratchpack::oci::{Digest, MEDIA_TYPE_MANIFEST};
use scratchpack::registry::{Anonymous, PushOptions, Repository, Session};
use scratchpack::release::bundle::{ANNOTATION_BUNDLE_PREDICATE, PREDICATE_COSIGN_SIGN};
use scratchpack::release::dsse::Envelope;
use scratchpack::release::publish::{ANNOTATION_PREDICATE_TYPE, read_layers};
use scratchpack::release::sign::{
    ANNOTATION_SIGNATURE, SignatureImage, attestation_tag, signature_tag,
};

use crate::registry::server::{Registry, have_tools, skopeo};
use crate::release_oracles::{assert_accepted, oracles};
use crate::support::{self, Fixture, HELLO_MAIN};

const PASSWORD: &str = "release-test";

fn fixture(registry: &str, extra: &str) -> Fixture {
    Fixture::new(
        &[("hello", HELLO_MAIN)],
        &format!(
            "[defaults]\n\
             registry = \"{registry}\"\n\
             insecure = true\n\
             platforms = [\"linux/amd64\", \"linux/arm64\"]\n\
             tags = [\"latest\", \"1.0\"]\n\
             {extra}\n\
             [images.hello]\n\
             package = \"hello\"\n"
        ),
    )
}

/// Runs the CLI in `fixture` with `args`, the test password, and no
/// credentials from the user's Docker config.
fn cli(fixture: &Fixture, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let no_docker_config = tempfile::tempdir().unwrap();
    let mut cmd = support::cli();
    cmd.current_dir(fixture.path())
        .env_remove("CARGO_TARGET_DIR")
        .env("DOCKER_CONFIG", no_docker_config.path())
        .env("COSIGN_PASSWORD", PASSWORD);
    for a in args {
        cmd.arg(a);
    }
    // `keygen` has an `--out` of its own, for the keys.
    if args.first().is_some_and(|a| a.as_ref() != "keygen") {
        cmd.arg("--out").arg(fixture.path().join("images"));
    }
    support::run(&mut cmd)
}

fn keygen(fixture: &Fixture, dir: &str) -> (PathBuf, PathBuf) {
    let dir = fixture.path().join(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = cli(fixture, &[&"keygen", &"--out", &dir]);
    assert!(out.status.success());
    (dir.join("cosign.key"), dir.join("cosign.pub"))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts `verify` failed with exit code 1 and names `what` with `reason`.
fn assert_fails(out: &Output, what: &str, reason: &str) {
    let text = stdout(out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("FAILED") && l.contains(what) && l.contains(reason)),
        "expected a failure of {what:?} saying {reason:?}:\n{text}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("verification failed"), "{stderr}");
}

fn session<'o>(registry: &str, opts: &'o PushOptions<'o>) -> Session<'o, 'o> {
    let repo = Repository::parse(&format!("{registry}/hello")).unwrap();
    Session::open(&repo, &Anonymous, opts).unwrap()
}

fn insecure() -> PushOptions<'static> {
    PushOptions {
        insecure: true,
        ..PushOptions::default()
    }
}

/// The index the `latest` tag points at, and its platform manifests.
fn pushed_digests(registry: &str) -> (Digest, Vec<Digest>) {
    let opts = insecure();
    let mut s = session(registry, &opts);
    let index = s.get_manifest("latest").unwrap().unwrap();
    let children = index.json().unwrap()["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| Digest::parse(m["digest"].as_str().unwrap()).unwrap())
        .collect();
    (index.digest, children)
}

/// Copies the image and everything `sign` attached from `from` to `to` with
/// skopeo. `skopeo copy --all` copies the tag's index and platform
/// manifests only: cosign's tags are tags of their own, and skopeo 1.9
/// knows nothing of referrers, so the `.sig`/`.att` tags, each referrer
/// manifest (by digest) and the referrers tag indexes are copied one by one.
fn copy_everything(src: &Registry, dst: &Registry) {
    let tls = ["--src-tls-verify=false", "--dest-tls-verify=false"];
    let copy = |extra: &[&str], from: String, to: String| {
        let mut args = vec!["copy", "--insecure-policy", "--quiet"];
        args.extend(tls);
        args.extend(extra);
        args.push(&from);
        args.push(&to);
        skopeo(&args);
    };
    for tag in ["latest", "1.0"] {
        copy(
            &["--all", "--preserve-digests"],
            format!("docker://{}/hello:{tag}", src.host()),
            format!("docker://{}/hello:{tag}", dst.host()),
        );
    }
    let copied = dst.tags("hello", None);
    assert!(
        !copied.iter().any(|t| t.ends_with(".sig")),
        "skopeo copied a signature tag on its own: {copied:?}"
    );
    let opts = insecure();
    let mut s = session(&src.host(), &opts);
    for tag in src.tags("hello", None) {
        if tag.ends_with(".sig") || tag.ends_with(".att") {
            copy(
                &["--preserve-digests"],
                format!("docker://{}/hello:{tag}", src.host()),
                format!("docker://{}/hello:{tag}", dst.host()),
            );
        } else if tag.starts_with("sha256-") {
            let index = s.get_manifest(&tag).unwrap().unwrap();
            for m in index.json().unwrap()["manifests"].as_array().unwrap() {
                let d = m["digest"].as_str().unwrap();
                copy(
                    &["--preserve-digests"],
                    format!("docker://{}/hello@{d}", src.host()),
                    format!("docker://{}/hello@{d}", dst.host()),
                );
            }
            copy(
                &["--multi-arch", "index-only"],
                format!("docker://{}/hello:{tag}", src.host()),
                format!("docker://{}/hello:{tag}", dst.host()),
            );
        }
    }
}

/// Rewrites the SPDX attestation of `platform` in the registry: the same
/// signature over a statement that now claims another crate.
fn tamper_with_sbom(registry: &str, platform: &Digest) {
    let opts = insecure();
    let mut s = session(registry, &opts);
    let tag = attestation_tag(platform);
    let mut layers = read_layers(&mut s, &tag).unwrap().unwrap();
    let layer = layers
        .iter_mut()
        .find(|l| l.annotations[ANNOTATION_PREDICATE_TYPE] == "https://spdx.dev/Document")
        .expect("an SPDX attestation");
    let mut envelope: Envelope = serde_json::from_slice(&layer.payload.bytes).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let statement = String::from_utf8(b64.decode(&envelope.payload).unwrap()).unwrap();
    assert!(statement.contains("\"hello\""), "{statement}");
    envelope.payload = b64.encode(statement.replace("\"hello\"", "\"innocent\""));
    layer.payload = scratchpack::oci::Blob::new(
        scratchpack::release::dsse::MEDIA_TYPE_DSSE,
        envelope.to_json(),
    );
    let image = SignatureImage::new(&layers);
    s.put_blob(&image.config.bytes).unwrap();
    for l in &image.layers {
        s.put_blob(&l.bytes).unwrap();
    }
    s.put_manifest(&tag, MEDIA_TYPE_MANIFEST, &image.manifest.bytes)
        .unwrap();
}

/// What `sign` stored, read back from the registry and checked by
/// implementations nobody here wrote: the `.sig` payload with Python
/// `cryptography`, the bundle referrer with `@sigstore/verify`, the `.att`
/// envelope with `securesystemslib` and its statement with
/// `in-toto-attestation`.
fn check_with_oracles(registry: &str, public: &std::path::Path, index: &Digest, platform: &Digest) {
    let Some(oracles) = oracles() else { return };
    let work = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = work.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let opts = insecure();
    let mut s = session(registry, &opts);

    let layers = read_layers(&mut s, &signature_tag(index)).unwrap().unwrap();
    let payload = write("payload.json", &layers[0].payload.bytes);
    let sig = &layers[0].annotations[ANNOTATION_SIGNATURE];
    assert_accepted(
        &oracles.check(&[&"sig", &public, &payload, sig, &index.as_str()]),
        "the .sig signature in the registry",
    );

    let referrers = s.referrers(index).unwrap();
    let descriptor = referrers
        .descriptors
        .iter()
        .find(|d| d["annotations"][ANNOTATION_BUNDLE_PREDICATE] == PREDICATE_COSIGN_SIGN)
        .expect("a signature bundle referrer");
    let manifest = s
        .get_manifest(descriptor["digest"].as_str().unwrap())
        .unwrap()
        .unwrap();
    let layer = manifest.json().unwrap()["layers"][0]["digest"]
        .as_str()
        .and_then(Digest::parse)
        .unwrap();
    let bundle = write("bundle.json", &s.get_blob(&layer, 1 << 20).unwrap());
    assert_accepted(
        &oracles.verify_bundle(&bundle, public, index.hex()),
        "the bundle referrer in the registry",
    );

    let layers = read_layers(&mut s, &attestation_tag(platform))
        .unwrap()
        .unwrap();
    for (i, layer) in layers.iter().enumerate() {
        let envelope_path = write(&format!("envelope-{i}.json"), &layer.payload.bytes);
        assert_accepted(
            &oracles.check(&[&"dsse", &public, &envelope_path]),
            "an .att envelope in the registry",
        );
        let envelope: Envelope = serde_json::from_slice(&layer.payload.bytes).unwrap();
        let statement = base64::engine::general_purpose::STANDARD
            .decode(&envelope.payload)
            .unwrap();
        let statement_path = write(&format!("statement-{i}.json"), &statement);
        assert_accepted(
            &oracles.check(&[&"statement", &statement_path]),
            "an attested statement",
        );
    }
}

#[test]
fn a_signed_push_verifies_and_every_forgery_is_named() {
    if !have_tools() {
        return;
    }
    let registry = Registry::start();
    let fx = fixture(&registry.host(), "");
    let (key, public) = keygen(&fx, "keys");
    let (_, other_public) = keygen(&fx, "other-keys");

    let out = cli(&fx, &[&"push", &"--sign", &"--key", &key]);
    assert!(out.status.success(), "push --sign failed");
    let (index, platforms) = pushed_digests(&registry.host());
    assert_eq!(platforms.len(), 2);

    // Both formats: cosign's tags and the referrers tag schema's indexes.
    let tags = registry.tags("hello", None);
    for d in std::iter::once(&index).chain(&platforms) {
        assert!(tags.contains(&signature_tag(d)), "{tags:?}");
        assert!(tags.contains(&format!("sha256-{}", d.hex())), "{tags:?}");
    }
    for d in &platforms {
        assert!(tags.contains(&attestation_tag(d)), "{tags:?}");
    }

    let out = cli(&fx, &[&"verify", &"--key", &public]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("16 verified, 0 failed"), "{text}");
    for what in [
        format!("signature {} of {index}", signature_tag(&index)),
        format!("signature bundle referrer of {index}"),
        format!(
            "SPDX SBOM attestation (.att) of linux/arm64 {}",
            platforms[1]
        ),
        format!(
            "SLSA provenance attestation bundle referrer of linux/amd64 {}",
            platforms[0]
        ),
    ] {
        assert!(
            text.contains(&format!("verified hello: {what}")),
            "{what}\n{text}"
        );
    }

    check_with_oracles(&registry.host(), &public, &index, &platforms[0]);

    // Signing again adds nothing.
    let before = registry.stored_blobs();
    let out = cli(&fx, &[&"sign", &"--key", &key]);
    assert!(out.status.success());
    assert_eq!(registry.stored_blobs(), before);

    let out = cli(&fx, &[&"verify", &"--key", &other_public]);
    assert_fails(
        &out,
        &format!("signature {}", signature_tag(&index)),
        "no signature in it verifies with the key",
    );
    assert_fails(
        &out,
        "SPDX SBOM attestation (.att)",
        "does not verify with the key",
    );

    // The lot copied to another registry with skopeo still verifies there.
    let copy = Registry::start();
    copy_everything(&registry, &copy);
    let out = cli(
        &fx,
        &[
            &"verify",
            &"--key",
            &public,
            &"--registry",
            &copy.host(),
            &"--insecure",
        ],
    );
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("16 verified, 0 failed"));

    tamper_with_sbom(&registry.host(), &platforms[0]);
    let out = cli(&fx, &[&"verify", &"--key", &public]);
    assert_fails(
        &out,
        &format!(
            "SPDX SBOM attestation (.att) of linux/amd64 {}",
            platforms[0]
        ),
        "its DSSE signature does not verify with the key",
    );
    assert!(
        stdout(&out).contains("15 verified, 1 failed"),
        "{}",
        stdout(&out)
    );

    // Another image pushed under the same tags, unsigned.
    std::fs::write(
        fx.path().join("crates/hello/src/main.rs"),
        "fn main() { println!(\"not what was signed\"); }\n",
    )
    .unwrap();
    let out = cli(&fx, &[&"push"]);
    assert!(out.status.success());
    let (new_index, _) = pushed_digests(&registry.host());
    assert_ne!(new_index, index);
    let out = cli(&fx, &[&"verify", &"--key", &public]);
    assert_fails(
        &out,
        &format!("signature {}", signature_tag(&new_index)),
        "the image is not signed",
    );
    assert_fails(&out, "signature bundle referrer", "lists no bundle");

    // The old image's signature put where the new one's would be.
    let opts = insecure();
    let mut s = session(&registry.host(), &opts);
    let old = s.get_manifest(&signature_tag(&index)).unwrap().unwrap();
    s.put_manifest(&signature_tag(&new_index), &old.media_type, &old.bytes)
        .unwrap();
    let out = cli(&fx, &[&"verify", &"--key", &public]);
    assert_fails(
        &out,
        &format!("signature {} of {new_index}", signature_tag(&new_index)),
        &format!("the signature is for {index}, not for {new_index}"),
    );
}

#[test]
fn settings_choose_formats_and_sign_needs_a_recorded_push_or_a_digest() {
    if !have_tools() {
        return;
    }
    let registry = Registry::start();
    let fx = fixture(
        &registry.host(),
        "signature-format = \"sig\"\nsbom = [\"spdx\", \"cyclonedx\"]\nprovenance = false\n",
    );
    let (key, public) = keygen(&fx, "keys");

    let out = cli(&fx, &[&"sign", &"hello", &"--key", &key]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no push of image `hello` is recorded") && stderr.contains("--digest"),
        "{stderr}"
    );

    let out = cli(&fx, &[&"push"]);
    assert!(out.status.success());
    let (index, platforms) = pushed_digests(&registry.host());
    // The record gone, the digest is named instead.
    std::fs::remove_dir_all(fx.path().join("images/.scratchpack/pushed")).unwrap();
    let out = cli(
        &fx,
        &[
            &"sign",
            &"hello",
            &"--key",
            &key,
            &"--digest",
            &index.as_str(),
        ],
    );
    assert!(out.status.success());

    let tags = registry.tags("hello", None);
    assert!(tags.contains(&signature_tag(&index)), "{tags:?}");
    assert!(
        !tags
            .iter()
            .any(|t| t.starts_with("sha256-") && !t.contains('.')),
        "signature-format = \"sig\" attaches no referrers: {tags:?}"
    );
    let out = cli(&fx, &[&"verify", &"--key", &public]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "CycloneDX SBOM attestation (.att) of linux/amd64 {}",
            platforms[0]
        )),
        "{text}"
    );
    assert!(!text.contains("SLSA") && !text.contains("bundle"), "{text}");
    // 2 tags + 3 signatures + 2 platforms × 2 SBOMs.
    assert!(text.contains("9 verified, 0 failed"), "{text}");
}

/// Pushes a small artifact manifest (empty config, no layers) and returns
/// its descriptor, as a referrers index lists it.
/// A descriptor written as JSON, as the referrers code takes it.
fn typed(v: &serde_json::Value) -> scratchpack::oci::Descriptor {
    serde_json::from_value(v.clone()).unwrap()
}

fn artifact(s: &mut Session<'_, '_>, kind: &str) -> serde_json::Value {
    let config = s.put_blob(b"{}").unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "artifactType": kind,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2},
        "layers": [],
    }))
    .unwrap();
    let stored = s
        .put_manifest(
            Digest::of(&manifest).as_str(),
            MEDIA_TYPE_MANIFEST,
            &manifest,
        )
        .unwrap();
    serde_json::json!({
        "mediaType": MEDIA_TYPE_MANIFEST,
        "digest": stored.digest,
        "size": manifest.len(),
        "artifactType": kind,
    })
}

#[test]
fn the_referrers_tag_index_is_read_modified_and_written_keeping_other_entries() {
    if !have_tools() {
        return;
    }
    let registry = Registry::start();
    let opts = insecure();
    let mut s = session(&registry.host(), &opts);
    let subject = Digest::of(b"any subject: the tag schema does not need it to exist");

    // The CNCF registry 2.8 has no referrers API: the list comes from the tag.
    let listed = s.referrers(&subject).unwrap();
    assert!(!listed.from_api && listed.descriptors.is_empty());

    // Someone else's referrer already in the tag's index.
    let foreign = artifact(&mut s, "application/example");
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": scratchpack::oci::MEDIA_TYPE_INDEX,
        "manifests": [foreign],
    }))
    .unwrap();
    let tag = scratchpack::registry::remote::fallback_tag(&subject);
    s.put_manifest(&tag, scratchpack::oci::MEDIA_TYPE_INDEX, &index)
        .unwrap();

    let ours = artifact(&mut s, "application/ours");
    let stored = scratchpack::registry::Stored {
        digest: Digest::parse(ours["digest"].as_str().unwrap()).unwrap(),
        subject_indexed: false,
    };
    s.add_referrer(&subject, &typed(&ours), &stored).unwrap();
    // Adding it twice lists it once.
    s.add_referrer(&subject, &typed(&ours), &stored).unwrap();
    let listed = s.referrers(&subject).unwrap();
    assert_eq!(listed.descriptors, vec![foreign, ours]);

    // A registry that indexed the subject on PUT is left alone.
    let other = artifact(&mut s, "application/other");
    let indexed = scratchpack::registry::Stored {
        digest: Digest::parse(other["digest"].as_str().unwrap()).unwrap(),
        subject_indexed: true,
    };
    s.add_referrer(&subject, &typed(&other), &indexed).unwrap();
    assert_eq!(s.referrers(&subject).unwrap().descriptors.len(), 2);
}

//! Release artefacts checked by implementations nobody here wrote: keys with
//! PyNaCl and Python `cryptography`, `.sig` signatures with `cryptography`,
//! Sigstore bundles with npm `@sigstore/verify`, DSSE envelopes with
//! `securesystemslib`, statements with `in-toto-attestation`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use scratchpack::oci::{Blob, MEDIA_TYPE_INDEX};
use scratchpack::release::bundle::Bundle;
use scratchpack::release::keys::{self, PrivateKey};
use scratchpack::release::sign::{ANNOTATION_SIGNATURE, KeySigner, SignedLayer};
use scratchpack::release::statement::{Statement, Subject};

use crate::release_oracles::{assert_accepted, assert_rejected, oracles};
use crate::support::{cli, repo_root, run};

const COSIGN_KEY: &str = "crates/scratchpack/src/release/testdata/sigstore-label.key";
const COSIGN_PUB: &str = "crates/scratchpack/src/release/testdata/sigstore-label.pub";

/// A key pair written by `keygen` with password `pw`, in a fresh directory.
fn keygen() -> (tempfile::TempDir, PrivateKey) {
    let dir = tempfile::tempdir().unwrap();
    let out = run(cli()
        .env("COSIGN_PASSWORD", "pw")
        .arg("keygen")
        .arg("--out")
        .arg(dir.path()));
    assert!(out.status.success());
    let key = keys::read_private_key(&dir.path().join("cosign.key"), b"pw").unwrap();
    (dir, key)
}

/// The keys the signature tests use: cosign's own test key, and keygen's.
fn signing_keys() -> Vec<(PrivateKey, PathBuf, Option<tempfile::TempDir>)> {
    let cosign = keys::read_private_key(&repo_root().join(COSIGN_KEY), b"hello").unwrap();
    let (dir, ours) = keygen();
    let public = dir.path().join("cosign.pub");
    vec![
        (cosign, repo_root().join(COSIGN_PUB), None),
        (ours, public, Some(dir)),
    ]
}

fn image_digest(seed: &str) -> Blob {
    Blob::new(
        MEDIA_TYPE_INDEX,
        format!("{{\"seed\":\"{seed}\"}}").into_bytes(),
    )
}

#[test]
fn keygen_writes_a_key_other_tools_decrypt_and_never_overwrites() {
    let Some(oracles) = oracles() else { return };
    let (dir, _) = keygen();
    let key = dir.path().join("cosign.key");
    let public = dir.path().join("cosign.pub");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_accepted(
        &oracles.check(&[&"key", &key, &"pw", &public]),
        "keygen's key",
    );
    assert_rejected(
        &oracles.check(&[&"key", &key, &"pW", &public]),
        "a wrong password",
        "wrong password",
    );

    let before = std::fs::read(&key).unwrap();
    let out = run(cli()
        .env("COSIGN_PASSWORD", "")
        .arg("keygen")
        .arg("--out")
        .arg(dir.path()));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cosign.key already exists"), "{stderr}");
    assert_eq!(std::fs::read(&key).unwrap(), before);
}

#[test]
fn keygen_needs_the_password_variable_and_accepts_an_empty_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(cli()
        .env_remove("COSIGN_PASSWORD")
        .arg("keygen")
        .arg("--out")
        .arg(dir.path()));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("COSIGN_PASSWORD is not set"));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    let out = run(cli()
        .env("COSIGN_PASSWORD", "")
        .arg("keygen")
        .arg("--out")
        .arg(dir.path()));
    assert!(out.status.success());
    let key = keys::read_private_key(&dir.path().join("cosign.key"), b"").unwrap();
    let public = keys::read_public_key(&dir.path().join("cosign.pub")).unwrap();
    assert_eq!(key.public_key(), public);
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn sig_signatures_verify_with_python_cryptography() {
    let Some(oracles) = oracles() else { return };
    let work = tempfile::tempdir().unwrap();
    let keys = signing_keys();
    let image = image_digest("sig");
    let other = image_digest("other");
    for (i, (key, public, _)) in keys.iter().enumerate() {
        let layer = SignedLayer::simple_signing(
            &KeySigner::new(key),
            "registry.example/hello",
            &image.digest,
            &BTreeMap::new(),
        );
        let payload = write(work.path(), &format!("payload-{i}"), &layer.payload.bytes);
        let sig = &layer.annotations[ANNOTATION_SIGNATURE];
        let digest = image.digest.as_str();
        assert_accepted(
            &oracles.check(&[&"sig", public, &payload, sig, &digest]),
            ".sig signature",
        );
        // The same signature, checked against another image's digest.
        let another = other.digest.as_str();
        assert_rejected(
            &oracles.check(&[&"sig", public, &payload, sig, &another]),
            "a signature for another digest",
            "is not",
        );
        // The other key of the two.
        let wrong = &keys[1 - i].1;
        assert_rejected(
            &oracles.check(&[&"sig", wrong, &payload, sig, &digest]),
            "a signature checked with a wrong key",
            "does not verify",
        );
    }
}

#[test]
fn bundles_verify_with_sigstore_verify() {
    let Some(oracles) = oracles() else { return };
    let work = tempfile::tempdir().unwrap();
    let keys = signing_keys();
    let image = image_digest("bundle");
    for (i, (key, public, _)) in keys.iter().enumerate() {
        let bundle = Bundle::sign_image(
            &KeySigner::new(key),
            "registry.example/hello",
            &image.digest,
        );
        let path = write(work.path(), &format!("bundle-{i}.json"), &bundle.to_json());
        assert_accepted(
            &oracles.verify_bundle(&path, public, image.digest.hex()),
            "the bundle",
        );
        assert_rejected(
            &oracles.verify_bundle(&path, &keys[1 - i].1, image.digest.hex()),
            "a bundle checked with a wrong key",
            "signature verification failed",
        );
        assert_rejected(
            &oracles.verify_bundle(&path, public, image_digest("other").digest.hex()),
            "a bundle for another digest",
            "do not include",
        );
        // This bundle's signature over another statement (of another digest).
        let other = Bundle::sign_image(
            &KeySigner::new(key),
            "registry.example/hello",
            &image_digest("other").digest,
        );
        let mut tampered = bundle.clone();
        tampered.dsse_envelope.payload = other.dsse_envelope.payload;
        let path = write(
            work.path(),
            &format!("tampered-{i}.json"),
            &tampered.to_json(),
        );
        assert_rejected(
            &oracles.verify_bundle(&path, public, image.digest.hex()),
            "a tampered bundle",
            "does not verify",
        );
    }
}

#[test]
fn dsse_envelopes_verify_with_securesystemslib_and_statements_validate() {
    let Some(oracles) = oracles() else { return };
    let work = tempfile::tempdir().unwrap();
    let keys = signing_keys();
    let image = image_digest("dsse");
    let statement = Statement::new(
        vec![Subject::new("registry.example/hello", &image.digest)],
        "https://example.com/predicate/v1",
        serde_json::json!({"built": true}),
    );
    let statement_path = write(work.path(), "statement.json", &statement.to_json());
    assert_accepted(
        &oracles.check(&[&"statement", &statement_path]),
        "the statement",
    );
    for (i, (key, public, _)) in keys.iter().enumerate() {
        let envelope = statement.sign(&KeySigner::new(key));
        let path = write(
            work.path(),
            &format!("envelope-{i}.json"),
            &envelope.to_json(),
        );
        assert_accepted(
            &oracles.check(&[&"dsse", public, &path]),
            "the DSSE envelope",
        );
        assert_rejected(
            &oracles.check(&[&"dsse", &keys[1 - i].1, &path]),
            "an envelope checked with a wrong key",
            "does not verify",
        );
    }
    // A statement without subjects is no statement.
    let empty = Statement::new(vec![], "https://example.com/p", serde_json::json!({"a": 1}));
    let path = write(work.path(), "empty.json", &empty.to_json());
    assert_rejected(
        &oracles.check(&[&"statement", &path]),
        "a statement without subjects",
        "subject",
    );
}

#[test]
fn slsa_provenance_validates_and_its_envelope_verifies() {
    use scratchpack::manifest::DEFAULT_BUILDER_ID;
    use scratchpack::release::provenance::{self, Build};
    use scratchpack::toolchain::{Env, git, versions};
    let Some(oracles) = oracles() else { return };
    let work = tempfile::tempdir().unwrap();
    let root = repo_root();
    let env = Env::from_process();
    let build = Build {
        manifest_path: "images.toml".into(),
        image: "hello".into(),
        platform: "linux/amd64".into(),
        package: "hello".into(),
        target: "x86_64-unknown-linux-musl".into(),
        profile: "release".into(),
        features: vec![],
        default_features: true,
        source: git::Checkout::new(&env, &root, work.path())
            .head()
            .map(git::GitSource::from),
        cargo_lock: scratchpack::oci::Digest::of(&std::fs::read(root.join("Cargo.lock")).unwrap()),
        toolchain: versions::toolchain(&env, &root, work.path()).unwrap(),
        builder_id: DEFAULT_BUILDER_ID.into(),
    };
    let image = image_digest("provenance");
    let statement = provenance::statement(vec![Subject::new("hello", &image.digest)], &build);
    let path = write(work.path(), "provenance.json", &statement.to_json());
    assert_accepted(
        &oracles.check(&[&"provenance", &path]),
        "the SLSA provenance",
    );
    // The same inputs again: the same bytes.
    let again = provenance::statement(vec![Subject::new("hello", &image.digest)], &build);
    assert_eq!(again.to_json(), statement.to_json());

    let (key, public, _dir) = signing_keys().remove(0);
    let envelope = statement.sign(&KeySigner::new(&key));
    let env_path = write(work.path(), "provenance.dsse.json", &envelope.to_json());
    assert_accepted(
        &oracles.check(&[&"dsse", &public, &env_path]),
        "the provenance envelope",
    );

    // A field SLSA v1 does not define is caught, so the check above checks.
    let mut bad: serde_json::Value = serde_json::from_slice(&statement.to_json()).unwrap();
    bad["predicate"]["buildDefinition"]["buildTypo"] = "x".into();
    let path = write(work.path(), "bad.json", bad.to_string().as_bytes());
    assert_rejected(
        &oracles.check(&[&"provenance", &path]),
        "provenance with an unknown field",
        "buildTypo",
    );
}

#[test]
fn images_sign_writes_verifiable_bundles_and_documents_beside_the_layout() {
    let Some(oracles) = oracles() else { return };
    let out_dir = tempfile::tempdir().unwrap();
    let out = run(cli()
        .current_dir(repo_root())
        .env("CARGO_TARGET_DIR", crate::support::nested_target_dir())
        .env("COSIGN_PASSWORD", "hello")
        .args(["images", "hello", "--message-format", "json", "--sign"])
        .arg("--key")
        .arg(repo_root().join(COSIGN_KEY))
        .arg("--out")
        .arg(out_dir.path()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let built = crate::support::built_images(&out);
    let hello = &built[0];
    let dir = out_dir.path().join("hello.release");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut want = vec!["index.sigstore.json".to_owned()];
    // One set of files per platform, named `os-arch[-variant]`.
    let platforms: Vec<String> = hello["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["platform"].as_str().unwrap().replace('/', "-"))
        .collect();
    assert!(platforms.len() >= 2, "{platforms:?}");
    for p in &platforms {
        for kind in [
            "manifest.sigstore",
            "provenance",
            "provenance.sigstore",
            "spdx",
            "spdx.sigstore",
        ] {
            want.push(format!("{p}.{kind}.json"));
        }
    }
    want.sort();
    assert_eq!(names, want);

    let public = repo_root().join(COSIGN_PUB);
    let top = hello["digest"]
        .as_str()
        .unwrap()
        .strip_prefix("sha256:")
        .unwrap();
    assert_accepted(
        &oracles.verify_bundle(&dir.join("index.sigstore.json"), &public, top),
        "the index signature in the output directory",
    );
    for p in hello["platforms"].as_array().unwrap() {
        let stem = p["platform"].as_str().unwrap().replace('/', "-");
        let hex = p["manifest"]
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap();
        for kind in ["manifest", "spdx", "provenance"] {
            let bundle = dir.join(format!("{stem}.{kind}.sigstore.json"));
            assert_accepted(
                &oracles.verify_bundle(&bundle, &public, hex),
                &format!("{stem}'s {kind} bundle"),
            );
        }
        // The signed statement holds exactly the document written beside it.
        for kind in ["spdx", "provenance"] {
            let bundle: Bundle = serde_json::from_slice(
                &std::fs::read(dir.join(format!("{stem}.{kind}.sigstore.json"))).unwrap(),
            )
            .unwrap();
            let key = keys::read_public_key(&public).unwrap();
            let statement: Statement =
                serde_json::from_slice(&bundle.dsse_envelope.verify(&key).unwrap()).unwrap();
            let document: serde_json::Value = serde_json::from_slice(
                &std::fs::read(dir.join(format!("{stem}.{kind}.json"))).unwrap(),
            )
            .unwrap();
            if kind == "provenance" {
                assert_eq!(serde_json::to_value(&statement).unwrap(), document);
            } else {
                assert_eq!(statement.predicate, document);
            }
        }
    }
    // A wrong key is refused for the files as for the registry.
    let (other_dir, _) = keygen();
    let other = other_dir.path().join("cosign.pub");
    assert_rejected(
        &oracles.verify_bundle(&dir.join("index.sigstore.json"), &other, top),
        "the index signature checked with another key",
        "signature verification failed",
    );

    // `verify --layout` checks the same offline, and names what fails.
    let verify = |key: &Path| {
        run(cli()
            .current_dir(repo_root())
            .args(["verify", "hello", "--layout", "--key"])
            .arg(key)
            .arg("--out")
            .arg(out_dir.path()))
    };
    // The index, then each platform's manifest, SBOM and provenance.
    let checks = 1 + 3 * platforms.len();
    let ok = verify(&public);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        stdout.contains(&format!("{checks} verified, 0 failed")),
        "{stdout}"
    );
    let wrong = verify(&other);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&wrong.stdout).contains(&format!("0 verified, {checks} failed"))
    );
    // An SBOM changed after signing.
    let spdx = dir.join("linux-arm64.spdx.json");
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&spdx).unwrap()).unwrap();
    doc["name"] = "tampered".into();
    std::fs::write(&spdx, serde_json::to_vec(&doc).unwrap()).unwrap();
    let tampered = verify(&public);
    let stdout = String::from_utf8_lossy(&tampered.stdout);
    assert_eq!(tampered.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAILED   hello: SPDX SBOM of linux/arm64")
            && stdout.contains(
                "linux-arm64.spdx.json differs from what linux-arm64.spdx.sigstore.json signs"
            )
            && stdout.contains(&format!("{} verified, 1 failed", checks - 1)),
        "{stdout}"
    );

    // Building again with nothing changed leaves the files alone; a changed
    // file is noticed and written anew, and verifies again.
    let again = |what: &str| {
        let out = run(cli()
            .current_dir(repo_root())
            .env("CARGO_TARGET_DIR", crate::support::nested_target_dir())
            .env("COSIGN_PASSWORD", "hello")
            .args(["images", "hello", "--sign", "--key"])
            .arg(repo_root().join(COSIGN_KEY))
            .arg("--out")
            .arg(out_dir.path()));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{what}: {stderr}");
        stderr.contains("hello.release")
    };
    assert!(
        again("the run after tampering"),
        "a changed file is rewritten"
    );
    assert!(verify(&public).status.success());
    assert!(
        !again("a run with nothing changed"),
        "nothing changed, nothing written"
    );
    assert!(verify(&public).status.success());
}

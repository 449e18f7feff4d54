use super::*;

const COSIGN_KEY: &str = include_str!("testdata/sigstore-label.key");
const COSIGN_PUB: &str = include_str!("testdata/sigstore-label.pub");
const COSIGN_SEC1_KEY: &str = include_str!("testdata/cosign-label-ec-sec1.key");

#[test]
fn reads_the_key_cosign_generated() {
    let key = PrivateKey::from_encrypted_pem(COSIGN_KEY, b"hello").unwrap();
    // The public half agrees with the one an independent implementation
    // extracted from the same file.
    assert_eq!(key.public_key(), PublicKey::from_pem(COSIGN_PUB).unwrap());
    assert_eq!(key.public_key().to_pem(), COSIGN_PUB);
}

#[test]
fn a_wrong_password_is_named() {
    let err = PrivateKey::from_encrypted_pem(COSIGN_KEY, b"hellO").unwrap_err();
    assert!(matches!(err, KeyError::WrongPassword), "{err}");
}

#[test]
fn a_sec1_key_inside_is_refused_as_cosign_refuses_it() {
    let err = PrivateKey::from_encrypted_pem(COSIGN_SEC1_KEY, b"hello").unwrap_err();
    assert!(err.to_string().contains("not a PKCS#8"), "{err}");
}

#[test]
fn round_trips_with_an_empty_password() {
    let key = PrivateKey::generate();
    let pem = key.to_encrypted_pem(b"").unwrap();
    assert!(pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
    let back = PrivateKey::from_encrypted_pem(&pem, b"").unwrap();
    assert_eq!(back.public_key(), key.public_key());
    assert!(matches!(
        PrivateKey::from_encrypted_pem(&pem, b"x"),
        Err(KeyError::WrongPassword)
    ));
}

#[test]
fn the_file_says_what_cosign_writes() {
    let pem = PrivateKey::generate().to_encrypted_pem(b"pw").unwrap();
    let (label, json) = pem_decode(&pem).unwrap();
    assert_eq!(label, PRIVATE_KEY_LABEL);
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v["kdf"]["name"], "scrypt");
    assert_eq!(v["kdf"]["params"]["N"], 32768);
    assert_eq!(v["kdf"]["params"]["r"], 8);
    assert_eq!(v["kdf"]["params"]["p"], 1);
    assert_eq!(
        STANDARD
            .decode(v["kdf"]["salt"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
    assert_eq!(v["cipher"]["name"], "nacl/secretbox");
    assert_eq!(
        STANDARD
            .decode(v["cipher"]["nonce"].as_str().unwrap())
            .unwrap()
            .len(),
        24
    );
    // Every PEM line is at most 64 columns.
    assert!(pem.lines().all(|l| l.len() <= 64 || l.starts_with("-----")));
}

#[test]
fn a_hostile_scrypt_cost_is_refused_before_any_work() {
    let json = br#"{"kdf":{"name":"scrypt","params":{"N":1073741824,"r":8,"p":1},"salt":"AAAA"},"cipher":{"name":"nacl/secretbox","nonce":"AAAA"},"ciphertext":"AAAA"}"#;
    let pem = pem_encode(PRIVATE_KEY_LABEL, json);
    let err = PrivateKey::from_encrypted_pem(&pem, b"").unwrap_err();
    assert!(err.to_string().contains("scrypt N is 1073741824"), "{err}");
}

#[test]
fn a_public_key_is_not_a_private_key() {
    let err = PrivateKey::from_encrypted_pem(COSIGN_PUB, b"hello").unwrap_err();
    assert!(err.to_string().contains("`PUBLIC KEY`"), "{err}");
    let err = PublicKey::from_pem(COSIGN_KEY).unwrap_err();
    assert!(err.to_string().contains("not a `PUBLIC KEY`"), "{err}");
    let err = PublicKey::from_pem("garbage").unwrap_err();
    assert!(err.to_string().contains("no PEM block"), "{err}");
}

#[test]
fn writes_a_pair_once_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let key = PrivateKey::generate();
    let written = write_key_pair(dir.path(), &key, b"pw").unwrap();
    let mode = std::fs::metadata(&written.private_key)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let private = std::fs::read_to_string(&written.private_key).unwrap();
    let public = read_public_key(&written.public_key).unwrap();
    assert_eq!(public, key.public_key());
    assert_eq!(
        read_private_key(&written.private_key, b"pw")
            .unwrap()
            .public_key(),
        public
    );

    let err = write_key_pair(dir.path(), &PrivateKey::generate(), b"pw")
        .err()
        .unwrap();
    assert!(
        matches!(err, KeyError::Exists(ref p) if p == &written.private_key),
        "{err}"
    );
    // Nothing was replaced, and no temporary file was left behind.
    assert_eq!(
        std::fs::read_to_string(&written.private_key).unwrap(),
        private
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[test]
fn an_existing_public_key_alone_also_stops_keygen() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cosign.pub"), "mine").unwrap();
    let err = write_key_pair(dir.path(), &PrivateKey::generate(), b"")
        .err()
        .unwrap();
    assert!(matches!(err, KeyError::Exists(_)), "{err}");
    assert!(!dir.path().join("cosign.key").exists());
}

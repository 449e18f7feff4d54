//! Signing keys in cosign's file formats: the private key encrypted as cosign
//! writes it (PEM `ENCRYPTED SIGSTORE PRIVATE KEY` around JSON naming an
//! scrypt key derivation and a NaCl secretbox over the PKCS#8 DER key), and the
//! public key as PEM PKIX (RFC 5280 SubjectPublicKeyInfo, RFC 7468 armour).
//! Only ECDSA P-256 keys, cosign's default, are read and written.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Key, Nonce, XSalsa20Poly1305};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The PEM label cosign writes since v2; the older label is still read.
pub const PRIVATE_KEY_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
const LEGACY_PRIVATE_KEY_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";
const PUBLIC_KEY_LABEL: &str = "PUBLIC KEY";
/// The environment variable cosign reads the key's password from.
pub const PASSWORD_ENV: &str = "COSIGN_PASSWORD";

/// scrypt cost cosign uses for new keys: N = 2^15, r = 8, p = 1.
const SCRYPT_LOG_N: u8 = 15;
const SCRYPT_R: u32 = 8;
const SCRYPT_P: u32 = 1;
/// The costliest key this reads: 2^18 with r = 8 needs 256 MiB, enough for
/// every key cosign has written, and a bound on what a hostile file can demand.
const MAX_SCRYPT_LOG_N: u8 = 18;

/// Why a key could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Malformed(String),
    #[error("decrypting the private key failed: wrong password, or the key file is damaged")]
    WrongPassword,
    #[error("{PASSWORD_ENV} is not set; set it to the key's password (an empty value means none)")]
    NoPassword,
    #[error("{} already exists; move it away or choose another --out", .0.display())]
    Exists(PathBuf),
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn malformed(what: impl Into<String>) -> KeyError {
    KeyError::Malformed(what.into())
}

/// An ECDSA P-256 private key.
#[derive(Clone)]
pub struct PrivateKey(p256::SecretKey);

/// An ECDSA P-256 public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey(p256::PublicKey);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret scalar, not even in a panic message.
        write!(f, "PrivateKey({})", self.public_key().hint())
    }
}

impl PrivateKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> PrivateKey {
        PrivateKey(p256::SecretKey::random(&mut OsRng))
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.public_key())
    }

    pub(crate) fn ecdsa(&self) -> p256::ecdsa::SigningKey {
        p256::ecdsa::SigningKey::from(&self.0)
    }

    /// Reads cosign's encrypted key file contents with `password`.
    pub fn from_encrypted_pem(pem: &str, password: &[u8]) -> Result<PrivateKey, KeyError> {
        let (label, der) = pem_decode(pem)?;
        if label != PRIVATE_KEY_LABEL && label != LEGACY_PRIVATE_KEY_LABEL {
            return Err(malformed(format!(
                "the file holds a PEM `{label}` block, not a cosign private key (`{PRIVATE_KEY_LABEL}`)"
            )));
        }
        let file: EncryptedKey = serde_json::from_slice(&der)
            .map_err(|e| malformed(format!("the encrypted key's JSON is invalid: {e}")))?;
        if file.kdf.name != "scrypt" {
            return Err(malformed(format!(
                "the key uses key derivation `{}`; only scrypt is supported",
                file.kdf.name
            )));
        }
        if file.cipher.name != "nacl/secretbox" {
            return Err(malformed(format!(
                "the key uses cipher `{}`; only nacl/secretbox is supported",
                file.cipher.name
            )));
        }
        let n = file.kdf.params.n;
        if !n.is_power_of_two() || n < 2 || n.trailing_zeros() > u32::from(MAX_SCRYPT_LOG_N) {
            return Err(malformed(format!(
                "the key's scrypt N is {n}; a power of two up to 2^{MAX_SCRYPT_LOG_N} is required"
            )));
        }
        if file.kdf.params.r == 0 || file.kdf.params.r > 32 || file.kdf.params.p != 1 {
            return Err(malformed(format!(
                "the key's scrypt parameters r = {}, p = {} are outside what cosign writes",
                file.kdf.params.r, file.kdf.params.p
            )));
        }
        let salt = decode_b64(&file.kdf.salt, "scrypt salt")?;
        let nonce = decode_b64(&file.cipher.nonce, "secretbox nonce")?;
        if nonce.len() != 24 {
            return Err(malformed(format!(
                "the secretbox nonce is {} bytes, not 24",
                nonce.len()
            )));
        }
        let ciphertext = decode_b64(&file.ciphertext, "ciphertext")?;
        let key = derive(
            password,
            &salt,
            n.trailing_zeros() as u8,
            file.kdf.params.r,
            file.kdf.params.p,
        )?;
        let plain = XSalsa20Poly1305::new(&key)
            .decrypt(Nonce::from_slice(&nonce), ciphertext.as_slice())
            .map_err(|_| KeyError::WrongPassword)?;
        let secret = p256::SecretKey::from_pkcs8_der(&plain).map_err(|e| {
            malformed(format!(
                "the decrypted key is not a PKCS#8 ECDSA P-256 key ({e}); only P-256 keys are supported"
            ))
        })?;
        Ok(PrivateKey(secret))
    }

    /// cosign's encrypted key file: fresh salt and nonce from the operating
    /// system, so two calls give different bytes for the same key.
    pub fn to_encrypted_pem(&self, password: &[u8]) -> Result<String, KeyError> {
        let mut salt = [0u8; 32];
        let mut nonce = [0u8; 24];
        OsRng.fill_bytes(&mut salt);
        OsRng.fill_bytes(&mut nonce);
        let der = self
            .0
            .to_pkcs8_der()
            .map_err(|e| malformed(format!("encoding the private key as PKCS#8: {e}")))?;
        let key = derive(password, &salt, SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P)?;
        let ciphertext = XSalsa20Poly1305::new(&key)
            .encrypt(Nonce::from_slice(&nonce), der.as_bytes())
            .map_err(|_| malformed("encrypting the private key failed"))?;
        let file = EncryptedKey {
            kdf: Kdf {
                name: "scrypt".into(),
                params: ScryptParams {
                    n: 1 << SCRYPT_LOG_N,
                    r: SCRYPT_R,
                    p: SCRYPT_P,
                },
                salt: STANDARD.encode(salt),
            },
            cipher: Cipher {
                name: "nacl/secretbox".into(),
                nonce: STANDARD.encode(nonce),
            },
            ciphertext: STANDARD.encode(ciphertext),
        };
        // Field order as cosign writes it (kdf, cipher, ciphertext): struct
        // order, not sorted keys, so the file looks like cosign's own.
        let json = serde_json::to_vec(&file).expect("the key file always serializes");
        Ok(pem_encode(PRIVATE_KEY_LABEL, &json))
    }
}

impl PublicKey {
    pub fn from_pem(pem: &str) -> Result<PublicKey, KeyError> {
        let (label, der) = pem_decode(pem)?;
        if label != PUBLIC_KEY_LABEL {
            return Err(malformed(format!(
                "the file holds a PEM `{label}` block, not a `{PUBLIC_KEY_LABEL}`"
            )));
        }
        PublicKey::from_der(&der)
    }

    pub fn from_der(der: &[u8]) -> Result<PublicKey, KeyError> {
        p256::PublicKey::from_public_key_der(der)
            .map(PublicKey)
            .map_err(|e| {
                malformed(format!(
                    "the public key is not an ECDSA P-256 SubjectPublicKeyInfo ({e})"
                ))
            })
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn to_der(&self) -> Vec<u8> {
        self.0
            .to_public_key_der()
            .expect("a P-256 public key always encodes")
            .into_vec()
    }

    pub fn to_pem(&self) -> String {
        pem_encode(PUBLIC_KEY_LABEL, &self.to_der())
    }

    /// What a Sigstore bundle names the key by: standard base64 of the SHA-256
    /// of the DER SubjectPublicKeyInfo, as sigstore's own key-based signers do.
    pub fn hint(&self) -> String {
        STANDARD.encode(Sha256::digest(self.to_der()))
    }

    pub(crate) fn ecdsa(&self) -> p256::ecdsa::VerifyingKey {
        p256::ecdsa::VerifyingKey::from(&self.0)
    }
}

/// The password for a key file, from `COSIGN_PASSWORD`.
pub fn password_from_env() -> Result<Vec<u8>, KeyError> {
    // Read only when a key is loaded, and kept out of `toolchain::Env`,
    // which is passed to every module that runs a program: a secret goes
    // no further than the key it opens.
    std::env::var_os(PASSWORD_ENV)
        .map(|p| p.into_encoded_bytes())
        .ok_or(KeyError::NoPassword)
}

/// Reads a cosign private key file.
pub fn read_private_key(path: &Path, password: &[u8]) -> Result<PrivateKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        action: "reading private key",
        path: path.to_owned(),
        source,
    })?;
    PrivateKey::from_encrypted_pem(&text, password)
        .map_err(|e| in_file(e, path, "reading private key"))
}

/// Reads a PEM public key file.
pub fn read_public_key(path: &Path) -> Result<PublicKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        action: "reading public key",
        path: path.to_owned(),
        source,
    })?;
    PublicKey::from_pem(&text).map_err(|e| in_file(e, path, "reading public key"))
}

fn in_file(e: KeyError, path: &Path, action: &str) -> KeyError {
    match e {
        KeyError::Malformed(m) => malformed(format!("{action} {}: {m}", path.display())),
        KeyError::WrongPassword => malformed(format!(
            "{action} {}: wrong password ({PASSWORD_ENV}), or the key file is damaged",
            path.display()
        )),
        other => other,
    }
}

/// The two files `keygen` writes.
pub struct WrittenKeys {
    pub private_key: PathBuf,
    pub public_key: PathBuf,
}

/// Writes `cosign.key` (mode 0600) and `cosign.pub` into `dir`, refusing to
/// replace either. Each file is written under a temporary name and linked
/// into place, so a reader never sees half a key and an existing file is
/// never overwritten, even by a run racing this one.
pub fn write_key_pair(
    dir: &Path,
    key: &PrivateKey,
    password: &[u8],
) -> Result<WrittenKeys, KeyError> {
    let private_key = dir.join("cosign.key");
    let public_key = dir.join("cosign.pub");
    for path in [&private_key, &public_key] {
        if path.symlink_metadata().is_ok() {
            return Err(KeyError::Exists(path.clone()));
        }
    }
    let encrypted = key.to_encrypted_pem(password)?;
    publish(dir, &private_key, encrypted.as_bytes(), 0o600)?;
    if let Err(e) = publish(
        dir,
        &public_key,
        key.public_key().to_pem().as_bytes(),
        0o644,
    ) {
        // A private key without its public half is of no use to anyone;
        // take it away again so a re-run starts clean.
        let _ = std::fs::remove_file(&private_key);
        return Err(e);
    }
    Ok(WrittenKeys {
        private_key,
        public_key,
    })
}

fn publish(dir: &Path, path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt as _;
    let io = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| KeyError::Io {
            action,
            path,
            source,
        }
    };
    let mut temp = tempfile::Builder::new()
        .prefix(".cosign-")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(io("creating a temporary file in", dir))?;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(io("writing", temp.path()))?;
    // `persist_noclobber` links the file in place and fails if the name
    // exists: the check above is a courtesy, this is the guarantee.
    temp.persist_noclobber(path).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            KeyError::Exists(path.to_owned())
        } else {
            KeyError::Io {
                action: "writing",
                path: path.to_owned(),
                source: e.error,
            }
        }
    })?;
    Ok(())
}

fn derive(password: &[u8], salt: &[u8], log_n: u8, r: u32, p: u32) -> Result<Key, KeyError> {
    let params = scrypt::Params::new(log_n, r, p, 32)
        .map_err(|e| malformed(format!("invalid scrypt parameters: {e}")))?;
    let mut key = Key::default();
    scrypt::scrypt(password, salt, &params, &mut key)
        .map_err(|e| malformed(format!("deriving the key's encryption key: {e}")))?;
    Ok(key)
}

fn decode_b64(s: &str, what: &str) -> Result<Vec<u8>, KeyError> {
    STANDARD
        .decode(s)
        .map_err(|e| malformed(format!("the key's {what} is not base64: {e}")))
}

/// The JSON inside cosign's encrypted key PEM.
#[derive(Serialize, Deserialize)]
struct EncryptedKey {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    salt: String,
}

#[derive(Serialize, Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

/// RFC 7468 armour with 64-column lines.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The first PEM block in `text`: its label and decoded contents. Lenient
/// about line lengths, CRLF and surrounding text, as Go's `pem.Decode` is.
pub(crate) fn pem_decode(text: &str) -> Result<(String, Vec<u8>), KeyError> {
    let mut lines = text.lines().map(str::trim);
    let label = lines
        .by_ref()
        .find_map(|l| l.strip_prefix("-----BEGIN ")?.strip_suffix("-----"))
        .ok_or_else(|| malformed("no PEM block (`-----BEGIN ...-----`) found"))?
        .to_owned();
    let end = format!("-----END {label}-----");
    let mut b64 = String::new();
    let mut closed = false;
    for line in lines {
        if line == end {
            closed = true;
            break;
        }
        if line.contains(':') {
            return Err(malformed(format!(
                "the PEM `{label}` block has headers, which cosign never writes"
            )));
        }
        b64.push_str(line);
    }
    if !closed {
        return Err(malformed(format!(
            "the PEM `{label}` block has no `{end}` line"
        )));
    }
    let der = STANDARD
        .decode(b64.as_bytes())
        .map_err(|e| malformed(format!("the PEM `{label}` block is not base64: {e}")))?;
    Ok((label, der))
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;

//! The few files a scratch binary may need from an operating system, written
//! by scratchpack when an image opts in: Mozilla's root certificates as a PEM
//! bundle (RFC 7468 textual encoding) and `/etc/passwd` + `/etc/group`
//! (passwd(5), group(5)) naming the image's user.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::plan::User;

/// Where `ca-certificates = true` puts the bundle: the path Debian, Alpine and
/// Go's crypto/x509 look at first, so most TLS stacks find it unconfigured.
pub(super) const CA_BUNDLE_PATH: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The label recording which release of the roots an image carries.
pub(super) const CA_VERSION_LABEL: &str = "dev.scratchpack.ca-certificates.version";

/// The release of `webpki-root-certs` this crate pins with `=` in Cargo.toml.
pub(super) const CA_VERSION: &str = "webpki-root-certs 1.0.11";

pub(super) const PASSWD_PATH: &str = "/etc/passwd";
pub(super) const GROUP_PATH: &str = "/etc/group";

/// The name given to the image's user when it is not root, as distroless does.
const USER_NAME: &str = "nonroot";

/// Every root certificate in the order the crate lists them, each as a PEM
/// block with 64-column base64 lines: the same bytes on every machine.
pub(super) fn ca_bundle() -> Vec<u8> {
    let mut out = String::new();
    for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = STANDARD.encode(cert.as_ref());
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out.into_bytes()
}

/// `/etc/passwd` and `/etc/group`: root, and the image's user and group as
/// `nonroot` when they are not root. No shell and no home exist in a scratch
/// image, so the entries say so.
pub(super) fn passwd(user: User) -> (Vec<u8>, Vec<u8>) {
    let mut passwd = String::from("root:x:0:0:root:/:/sbin/nologin\n");
    if user.uid != 0 {
        passwd.push_str(&format!(
            "{USER_NAME}:x:{}:{}:{USER_NAME}:/:/sbin/nologin\n",
            user.uid, user.gid
        ));
    }
    let mut group = String::from("root:x:0:\n");
    if user.gid != 0 {
        group.push_str(&format!("{USER_NAME}:x:{}:\n", user.gid));
    }
    (passwd.into_bytes(), group.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorded_version_is_the_pinned_one() {
        let cargo_toml = include_str!("../../Cargo.toml");
        let version = CA_VERSION.strip_prefix("webpki-root-certs ").unwrap();
        assert!(
            cargo_toml.contains(&format!("webpki-root-certs = \"={version}\"")),
            "Cargo.toml pins webpki-root-certs to {version} with `=`"
        );
    }

    #[test]
    fn the_bundle_is_every_root_as_pem() {
        let bundle = String::from_utf8(ca_bundle()).unwrap();
        let count = bundle.matches("-----BEGIN CERTIFICATE-----").count();
        assert_eq!(count, webpki_root_certs::TLS_SERVER_ROOT_CERTS.len());
        assert!(count > 100, "Mozilla ships well over 100 roots");
        assert!(bundle.lines().all(|l| l.len() <= 64));
        let first: String = bundle
            .lines()
            .skip(1)
            .take_while(|l| !l.starts_with("-----"))
            .collect();
        assert_eq!(
            STANDARD.decode(first).unwrap(),
            webpki_root_certs::TLS_SERVER_ROOT_CERTS[0].as_ref()
        );
        assert_eq!(ca_bundle(), ca_bundle());
    }

    #[test]
    fn passwd_names_the_image_user() {
        let (p, g) = passwd(User {
            uid: 65532,
            gid: 1000,
        });
        assert_eq!(
            String::from_utf8(p).unwrap(),
            "root:x:0:0:root:/:/sbin/nologin\nnonroot:x:65532:1000:nonroot:/:/sbin/nologin\n"
        );
        assert_eq!(
            String::from_utf8(g).unwrap(),
            "root:x:0:\nnonroot:x:1000:\n"
        );
        let (p, g) = passwd(User { uid: 0, gid: 0 });
        assert_eq!(p.iter().filter(|b| **b == b'\n').count(), 1);
        assert_eq!(g, b"root:x:0:\n");
    }
}

//! A TLS 1.3 handshake in process: a rustls client and server, both on
//! rustls's default provider (aws-lc-rs: aws-lc's C and assembly), talk
//! through memory. The server's certificate (`tls/server.pem`, signed by
//! `tls/ca.pem`, whose key was thrown away) is checked against that CA, so
//! key exchange, signatures, certificate parsing and the record cipher all
//! run aws-lc's code on whatever platform the image runs.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::time_provider::TimeProvider;
use rustls::{ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig};

const CA: &[u8] = include_bytes!("../tls/ca.pem");
const CERT: &[u8] = include_bytes!("../tls/server.pem");
const KEY: &[u8] = include_bytes!("../tls/server.key");
const NAME: &str = "notes.test";

/// The provider's name, as the answer reports it.
pub(crate) const PROVIDER: &str = "aws-lc-rs";

/// What one handshake and one message through it gave.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) version: String,
    pub(crate) suite: String,
    pub(crate) group: String,
    /// The message, as the server read it and the client read it back.
    pub(crate) echo: String,
}

/// Certificates are checked at this time, not the clock's: the answer is
/// the same whenever it runs, and the certificates (valid 2026 to 2126)
/// never expire under a test.
#[derive(Debug)]
struct Pinned;

impl TimeProvider for Pinned {
    fn current_time(&self) -> Option<UnixTime> {
        // 2030-01-01T00:00:00Z.
        Some(UnixTime::since_unix_epoch(Duration::from_secs(
            1_893_456_000,
        )))
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Runs a handshake, sends `message` from client to server and back.
pub(crate) fn handshake(message: &str) -> Result<Report, String> {
    let e = |what: &str| {
        let what = what.to_owned();
        move |e: rustls::Error| format!("{what}: {e}")
    };
    let ca = CertificateDer::from_pem_slice(CA).map_err(|e| format!("reading the CA: {e}"))?;
    let cert = CertificateDer::from_pem_slice(CERT)
        .map_err(|e| format!("reading the certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(KEY).map_err(|e| format!("reading the key: {e}"))?;
    let mut roots = RootCertStore::empty();
    roots.add(ca).map_err(e("adding the CA"))?;

    let client = ClientConfig::builder_with_details(provider(), Arc::new(Pinned))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(e("client versions"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(e("server versions"))?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(e("the server's certificate"))?;

    let name = ServerName::try_from(NAME).map_err(|e| format!("{NAME}: {e}"))?;
    let client_conn =
        ClientConnection::new(Arc::new(client), name).map_err(e("starting the client"))?;
    let server_conn =
        rustls::ServerConnection::new(Arc::new(server)).map_err(e("starting the server"))?;
    let mut client = Connection::from(client_conn);
    let mut server = Connection::from(server_conn);

    client
        .writer()
        .write_all(message.as_bytes())
        .map_err(|e| format!("writing the message: {e}"))?;
    let mut heard = Vec::new();
    // A handshake takes a few flights; the bound keeps a bug from spinning.
    for _ in 0..16 {
        transfer(&mut client, &mut server)?;
        read_plain(&mut server, &mut heard)?;
        if !heard.is_empty() {
            break;
        }
        transfer(&mut server, &mut client)?;
    }
    if heard.is_empty() {
        return Err("the server never read the message".into());
    }
    server
        .writer()
        .write_all(&heard)
        .map_err(|e| format!("echoing: {e}"))?;
    transfer(&mut server, &mut client)?;
    let mut echo = Vec::new();
    read_plain(&mut client, &mut echo)?;

    let Connection::Client(c) = &client else {
        unreachable!("the client is a client")
    };
    let suite = c
        .negotiated_cipher_suite()
        .ok_or("no cipher suite was negotiated")?;
    let group = c
        .negotiated_key_exchange_group()
        .ok_or("no key exchange group was negotiated")?;
    Ok(Report {
        version: format!("{:?}", c.protocol_version().ok_or("no version")?),
        suite: format!("{:?}", suite.suite()),
        group: format!("{:?}", group.name()),
        echo: String::from_utf8_lossy(&echo).into_owned(),
    })
}

/// Moves every TLS record `from` has to send into `to`.
fn transfer(from: &mut Connection, to: &mut Connection) -> Result<(), String> {
    let mut wire = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut wire)
            .map_err(|e| format!("writing records: {e}"))?;
    }
    let mut rest = &wire[..];
    while !rest.is_empty() {
        to.read_tls(&mut rest)
            .map_err(|e| format!("reading records: {e}"))?;
        to.process_new_packets()
            .map_err(|e| format!("processing records: {e}"))?;
    }
    Ok(())
}

/// Appends the plaintext `conn` has received to `out`.
fn read_plain(conn: &mut Connection, out: &mut Vec<u8>) -> Result<(), String> {
    let mut buf = [0u8; 4096];
    loop {
        match conn.reader().read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(format!("reading plaintext: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handshake_on_aws_lc_carries_a_message_both_ways() {
        let r = handshake("hello over TLS").unwrap();
        assert_eq!(r.version, "TLSv1_3");
        assert!(r.suite.starts_with("TLS13_"), "{}", r.suite);
        // rustls prefers the post-quantum hybrid with aws-lc-rs.
        assert_eq!(r.group, "X25519MLKEM768");
        assert_eq!(r.echo, "hello over TLS");
    }
}

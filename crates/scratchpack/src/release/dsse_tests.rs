use super::*;
use crate::oci::Digest;
use crate::release::keys::PrivateKey;
use crate::release::sign::KeySigner;
use crate::release::statement::{STATEMENT_TYPE, Subject};

#[test]
fn pae_is_the_spec_s_encoding() {
    // The example from the DSSE protocol document.
    assert_eq!(
        pae("http://example.com/HelloWorld", b"hello world"),
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
    );
    assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
}

#[test]
fn an_envelope_verifies_only_with_its_key_and_payload_type() {
    let key = PrivateKey::generate();
    let statement = Statement::new(
        vec![Subject::new("r/h", &Digest::of(b"x"))],
        "https://example.com/p",
        serde_json::json!({"a": 1}),
    );
    let envelope = statement.sign(&KeySigner::new(&key));
    assert_eq!(envelope.payload_type, PAYLOAD_TYPE_IN_TOTO);
    let payload = envelope.verify(&key.public_key()).unwrap();
    let back: Statement = serde_json::from_slice(&payload).unwrap();
    assert_eq!(back, statement);
    assert!(back.names(&Digest::of(b"x")));
    assert!(!back.names(&Digest::of(b"y")));
    assert!(
        envelope
            .verify(&PrivateKey::generate().public_key())
            .is_err()
    );
    // The payload type is signed too.
    let retyped = Envelope {
        payload_type: "application/json".into(),
        ..envelope.clone()
    };
    assert!(retyped.verify(&key.public_key()).is_err());
}

#[test]
fn the_statement_has_the_v1_shape() {
    let s = Statement::new(
        vec![Subject::new("n", &Digest::of(b"x"))],
        "p",
        serde_json::json!({}),
    );
    let v: serde_json::Value = serde_json::from_slice(&s.to_json()).unwrap();
    assert_eq!(v["_type"], STATEMENT_TYPE);
    assert_eq!(v["subject"][0]["digest"]["sha256"], Digest::of(b"x").hex());
    assert_eq!(v["predicateType"], "p");
}

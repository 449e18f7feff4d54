use super::*;

fn digest(byte: u8) -> Digest {
    Digest::of(&[byte])
}

#[test]
fn the_payload_is_cosigns_exact_shape() {
    let d = digest(1);
    let payload = simple_signing_payload("registry.example/hello", &d, &BTreeMap::new());
    assert_eq!(
        String::from_utf8(payload).unwrap(),
        format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"registry.example/hello"}},"image":{{"docker-manifest-digest":"{d}"}},"type":"cosign container image signature"}},"optional":null}}"#
        )
    );
    let with = simple_signing_payload(
        "r/h",
        &d,
        &BTreeMap::from([("tag".to_owned(), "v1".to_owned())]),
    );
    assert!(
        String::from_utf8(with)
            .unwrap()
            .ends_with(r#""optional":{"tag":"v1"}}"#)
    );
}

#[test]
fn signs_and_verifies_and_refuses_what_it_must() {
    let key = PrivateKey::generate();
    let signer = KeySigner::new(&key);
    let layer = SignedLayer::simple_signing(&signer, "r/h", &digest(1), &BTreeMap::new());
    let sig = &layer.annotations[ANNOTATION_SIGNATURE];
    let public = key.public_key();
    assert_eq!(
        verify_simple_signing(&public, &layer.payload.bytes, sig, &digest(1)),
        Ok(BTreeMap::new())
    );
    // What `optional` holds is signed, and handed back.
    let extra = BTreeMap::from([("k".to_owned(), "v".to_owned())]);
    let with = SignedLayer::simple_signing(&signer, "r/h", &digest(1), &extra);
    let with_sig = &with.annotations[ANNOTATION_SIGNATURE];
    assert_eq!(
        verify_simple_signing(&public, &with.payload.bytes, with_sig, &digest(1)),
        Ok(extra)
    );
    // Another digest than the one signed.
    assert!(matches!(
        verify_simple_signing(&public, &layer.payload.bytes, sig, &digest(2)),
        Err(VerifyError::OtherDigest { .. })
    ));
    // Another key.
    let other = PrivateKey::generate().public_key();
    assert_eq!(
        verify_simple_signing(&other, &layer.payload.bytes, sig, &digest(1)),
        Err(VerifyError::BadSignature)
    );
    // One changed byte of payload.
    let mut tampered = layer.payload.bytes.clone();
    tampered[5] ^= 1;
    assert_eq!(
        verify_simple_signing(&public, &tampered, sig, &digest(1)),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn an_unknown_critical_field_is_refused_even_when_signed() {
    let key = PrivateKey::generate();
    let d = digest(1);
    let payload = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"r"}},"image":{{"docker-manifest-digest":"{d}"}},"type":"cosign container image signature","extra":1}},"optional":null}}"#
    );
    let sig = STANDARD.encode(KeySigner::new(&key).sign(payload.as_bytes()));
    assert!(matches!(
        verify_simple_signing(&key.public_key(), payload.as_bytes(), &sig, &d),
        Err(VerifyError::BadPayload(_))
    ));
}

#[test]
fn signatures_are_deterministic() {
    let key = PrivateKey::generate();
    let a = SignedLayer::simple_signing(&KeySigner::new(&key), "r", &digest(1), &BTreeMap::new());
    let b = SignedLayer::simple_signing(&KeySigner::new(&key), "r", &digest(1), &BTreeMap::new());
    assert_eq!(SignatureImage::new(&[a]), SignatureImage::new(&[b]));
}

#[test]
fn the_signature_image_lists_each_payload_with_its_signature() {
    let key = PrivateKey::generate();
    let signer = KeySigner::new(&key);
    let layers = [
        SignedLayer::simple_signing(&signer, "r", &digest(1), &BTreeMap::new()),
        SignedLayer::simple_signing(&signer, "r", &digest(2), &BTreeMap::new()),
    ];
    let image = SignatureImage::new(&layers);
    let manifest: serde_json::Value = serde_json::from_slice(&image.manifest.bytes).unwrap();
    assert_eq!(manifest["mediaType"], MEDIA_TYPE_MANIFEST);
    assert_eq!(manifest["config"]["digest"], image.config.digest.as_str());
    for (i, layer) in layers.iter().enumerate() {
        let l = &manifest["layers"][i];
        assert_eq!(l["mediaType"], MEDIA_TYPE_SIMPLE_SIGNING);
        assert_eq!(l["digest"], layer.payload.digest.as_str());
        assert_eq!(l["size"], layer.payload.bytes.len());
        assert_eq!(
            l["annotations"][ANNOTATION_SIGNATURE],
            layer.annotations[ANNOTATION_SIGNATURE]
        );
    }
    let config: serde_json::Value = serde_json::from_slice(&image.config.bytes).unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"][1],
        layers[1].payload.digest.as_str()
    );
    assert_eq!(
        signature_tag(&digest(1)),
        format!("sha256-{}.sig", digest(1).hex())
    );
}

#[test]
fn the_signature_image_has_cosigns_exact_bytes() {
    let layer = SignedLayer {
        payload: Blob::new(MEDIA_TYPE_SIMPLE_SIGNING, b"payload".to_vec()),
        annotations: BTreeMap::from([(ANNOTATION_SIGNATURE.to_owned(), "c2ln".to_owned())]),
    };
    let p = &layer.payload.digest;
    let image = SignatureImage::new(std::slice::from_ref(&layer));
    let config = format!(
        r#"{{"architecture":"","config":{{}},"os":"","rootfs":{{"diff_ids":["{p}"],"type":"layers"}}}}"#
    );
    assert_eq!(
        String::from_utf8(image.config.bytes.clone()).unwrap(),
        config
    );
    let c = Digest::of(config.as_bytes());
    assert_eq!(
        String::from_utf8(image.manifest.bytes).unwrap(),
        format!(
            r#"{{"config":{{"digest":"{c}","mediaType":"{MEDIA_TYPE_CONFIG}","size":{}}},"layers":[{{"annotations":{{"{ANNOTATION_SIGNATURE}":"c2ln"}},"digest":"{p}","mediaType":"{MEDIA_TYPE_SIMPLE_SIGNING}","size":7}}],"mediaType":"{MEDIA_TYPE_MANIFEST}","schemaVersion":2}}"#,
            config.len()
        )
    );
}

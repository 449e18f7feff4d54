use super::*;
use crate::release::keys::PrivateKey;
use crate::release::sign::KeySigner;

#[test]
fn the_referrer_points_at_its_subject_with_an_empty_config() {
    let key = PrivateKey::generate();
    let image = Blob::new(crate::oci::MEDIA_TYPE_INDEX, b"{}".to_vec());
    let bundle = Bundle::sign_image(&KeySigner::new(&key), "r/h", &image.digest);
    let referrer = Referrer::new(
        &bundle,
        &image.descriptor(),
        PREDICATE_COSIGN_SIGN,
        "1970-01-01T00:00:00Z",
    );
    let m: serde_json::Value = serde_json::from_slice(&referrer.manifest.bytes).unwrap();
    assert_eq!(m["artifactType"], MEDIA_TYPE_BUNDLE);
    assert_eq!(m["config"]["mediaType"], MEDIA_TYPE_EMPTY);
    assert_eq!(
        m["config"]["digest"],
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
    assert_eq!(m["config"]["size"], 2);
    assert_eq!(m["layers"][0]["mediaType"], MEDIA_TYPE_BUNDLE);
    assert_eq!(m["layers"][0]["digest"], referrer.bundle.digest.as_str());
    assert_eq!(m["subject"]["digest"], image.digest.as_str());
    assert_eq!(m["subject"]["mediaType"], crate::oci::MEDIA_TYPE_INDEX);
    assert_eq!(
        m["annotations"][ANNOTATION_BUNDLE_PREDICATE],
        PREDICATE_COSIGN_SIGN
    );

    let b: serde_json::Value = serde_json::from_slice(&referrer.bundle.bytes).unwrap();
    assert_eq!(b["mediaType"], MEDIA_TYPE_BUNDLE);
    assert_eq!(
        b["verificationMaterial"]["publicKey"]["hint"],
        key.public_key().hint()
    );
    let payload = bundle.dsse_envelope.verify(&key.public_key()).unwrap();
    let statement: Statement = serde_json::from_slice(&payload).unwrap();
    assert_eq!(statement.predicate_type, PREDICATE_COSIGN_SIGN);
    assert!(statement.names(&image.digest));
}

#[test]
fn the_referrer_and_its_index_entry_have_exact_bytes() {
    let key = PrivateKey::generate();
    let image = Blob::new(crate::oci::MEDIA_TYPE_INDEX, b"{}".to_vec());
    let bundle = Bundle::sign_image(&KeySigner::new(&key), "r/h", &image.digest);
    let mut subject = image.descriptor();
    subject
        .annotations
        .insert("dropped".to_owned(), "from the subject".to_owned());
    let referrer = Referrer::new(&bundle, &subject, "https://p/v1", "1970-01-01T00:00:00Z");
    let (b, s) = (&referrer.bundle, &image.digest);
    assert_eq!(
        String::from_utf8(referrer.manifest.bytes.clone()).unwrap(),
        format!(
            r#"{{"annotations":{{"{ANNOTATION_BUNDLE_CONTENT}":"dsse-envelope","{ANNOTATION_BUNDLE_PREDICATE}":"https://p/v1","{ANNOTATION_CREATED}":"1970-01-01T00:00:00Z"}},"artifactType":"{MEDIA_TYPE_BUNDLE}","config":{{"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","mediaType":"{MEDIA_TYPE_EMPTY}","size":2}},"layers":[{{"digest":"{}","mediaType":"{MEDIA_TYPE_BUNDLE}","size":{}}}],"mediaType":"{MEDIA_TYPE_MANIFEST}","schemaVersion":2,"subject":{{"digest":"{s}","mediaType":"{}","size":2}}}}"#,
            b.digest,
            b.bytes.len(),
            crate::oci::MEDIA_TYPE_INDEX,
        )
    );
    assert_eq!(
        String::from_utf8(crate::oci::canonical_json(
            &referrer.index_descriptor("https://p/v1")
        ))
        .unwrap(),
        format!(
            r#"{{"annotations":{{"{ANNOTATION_BUNDLE_CONTENT}":"dsse-envelope","{ANNOTATION_BUNDLE_PREDICATE}":"https://p/v1"}},"artifactType":"{MEDIA_TYPE_BUNDLE}","digest":"{}","mediaType":"{MEDIA_TYPE_MANIFEST}","size":{}}}"#,
            referrer.manifest.digest,
            referrer.manifest.bytes.len()
        )
    );
}

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

"""Independent checks of scratchpack's release artefacts.

    check.py key PRIVATE_KEY PASSWORD PUBLIC_PEM
    check.py sig PUBLIC_PEM PAYLOAD SIGNATURE_B64 DIGEST
    check.py dsse PUBLIC_PEM ENVELOPE_JSON
    check.py statement STATEMENT_JSON
    check.py provenance STATEMENT_JSON
    check.py cyclonedx BOM_JSON
    check.py yaml FILE       (prints its documents as one JSON list, then ok)

Exit 0 when the artefact verifies or validates, 1 with the reason otherwise.
"""

import base64
import json
import sys


def fail(message):
    print(message, file=sys.stderr)
    sys.exit(1)


def key(private_key, password, public_pem):
    """Decrypts a cosign key file (scrypt, then NaCl secretbox) and checks
    that the PKCS#8 P-256 key inside belongs to the public key."""
    import hashlib

    import nacl.secret
    from cryptography.hazmat.primitives import serialization

    lines = open(private_key).read().strip().splitlines()
    if lines[0] != "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----":
        fail(f"first line is {lines[0]}")
    doc = json.loads(base64.b64decode("".join(lines[1:-1])))
    params = doc["kdf"]["params"]
    if doc["kdf"]["name"] != "scrypt" or doc["cipher"]["name"] != "nacl/secretbox":
        fail(f"kdf {doc['kdf']['name']}, cipher {doc['cipher']['name']}")
    secret = hashlib.scrypt(password.encode(), salt=base64.b64decode(doc["kdf"]["salt"]),
                            n=params["N"], r=params["r"], p=params["p"], dklen=32,
                            maxmem=1 << 28)
    try:
        der = nacl.secret.SecretBox(secret).decrypt(base64.b64decode(doc["ciphertext"]),
                                                    base64.b64decode(doc["cipher"]["nonce"]))
    except nacl.exceptions.CryptoError:
        fail("wrong password")
    if not der.startswith(b"\x30"):
        fail("the decrypted key is not DER")
    private = serialization.load_der_private_key(der, None)
    expected = open(public_pem, "rb").read()
    actual = private.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    if actual != expected:
        fail("the private key does not belong to the public key")


def sig(public_pem, payload_path, signature_b64, digest):
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = serialization.load_pem_public_key(open(public_pem, "rb").read())
    payload = open(payload_path, "rb").read()
    try:
        key.verify(base64.b64decode(signature_b64), payload, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        fail("signature does not verify")
    doc = json.loads(payload)
    critical = doc["critical"]
    if set(critical) != {"identity", "image", "type"}:
        fail(f"unexpected critical fields {sorted(critical)}")
    if critical["type"] != "cosign container image signature":
        fail(f"critical.type is {critical['type']}")
    if critical["image"]["docker-manifest-digest"] != digest:
        fail(f"signed digest {critical['image']['docker-manifest-digest']} is not {digest}")


def dsse(public_pem, envelope_path):
    from cryptography.hazmat.primitives import serialization
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey

    envelope = Envelope.from_dict(json.load(open(envelope_path)))
    public = serialization.load_pem_public_key(open(public_pem, "rb").read())
    pem_key = SSlibKey.from_crypto(public)
    # securesystemslib pairs signatures with keys by keyid; cosign's key-based
    # envelopes leave keyid empty, so the key is given that keyid.
    keys = [SSlibKey(sig.keyid, pem_key.keytype, pem_key.scheme, pem_key.keyval)
            for sig in envelope.signatures.values()]
    try:
        envelope.verify(keys, 1)
    except Exception as e:  # VerificationError and friends
        fail(f"envelope does not verify: {e}")
    if envelope.payload_type != "application/vnd.in-toto+json":
        fail(f"payload type {envelope.payload_type}")


def statement(path):
    from google.protobuf import json_format
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.statement import Statement

    pb = json_format.Parse(open(path).read(), statement_pb2.Statement())
    Statement.copy_from_pb(pb).validate()
    return json.load(open(path))


def provenance(path):
    from google.protobuf import json_format
    from in_toto_attestation.predicates.provenance.v1 import provenance_pb2

    doc = statement(path)
    if doc["predicateType"] != "https://slsa.dev/provenance/v1":
        fail(f"predicate type {doc['predicateType']}")
    # Parsing without ignore_unknown_fields rejects any field the SLSA v1
    # schema does not define, and any value of the wrong type.
    p = json_format.Parse(json.dumps(doc["predicate"]), provenance_pb2.Provenance())
    if not p.build_definition.build_type:
        fail("buildDefinition.buildType is required")
    if not p.build_definition.external_parameters:
        fail("buildDefinition.externalParameters is required")
    if not p.run_details.builder.id:
        fail("runDetails.builder.id is required")
    for dep in p.build_definition.resolved_dependencies:
        if not (dep.uri or dep.digest or dep.name):
            fail("a resolved dependency names nothing")


def cyclonedx(path):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(path).read())
    if errors:
        fail(f"invalid CycloneDX 1.6: {errors}")


def yaml_documents(path):
    """Parses every document of a YAML stream with PyYAML (libyaml's
    grammar) and prints them as JSON, for the test to compare."""
    import yaml

    try:
        docs = list(yaml.safe_load_all(open(path)))
    except yaml.YAMLError as e:
        fail(f"not YAML: {e}")
    print(json.dumps(docs))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"key": key, "sig": sig, "dsse": dsse, "statement": statement, "provenance": provenance,
     "cyclonedx": cyclonedx, "yaml": yaml_documents}[command](*args)
    print("ok")

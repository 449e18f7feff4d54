// Verifies a Sigstore bundle offline with a public key, as `@sigstore/verify`
// does for key-based signatures, then checks that the DSSE statement's
// subject is the expected digest.
//
//     node verify-bundle.js BUNDLE_JSON PUBLIC_PEM SHA256_HEX
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const { bundleFromJSON } = require('@sigstore/bundle');
const { Verifier, toSignedEntity, toTrustMaterial } = require('@sigstore/verify');

const [bundlePath, publicPem, digestHex] = process.argv.slice(2);
try {
  const bundle = bundleFromJSON(JSON.parse(fs.readFileSync(bundlePath, 'utf8')));
  const der = crypto
    .createPublicKey(fs.readFileSync(publicPem, 'utf8'))
    .export({ type: 'spki', format: 'der' });
  const hint = bundle.verificationMaterial.content.publicKey.hint;
  // No Fulcio, Rekor or timestamp authority: the only trust is the key.
  const root = {
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [],
    certificateAuthorities: [],
    ctlogs: [],
    timestampAuthorities: [],
  };
  const keys = {
    [hint]: { rawBytes: der, keyDetails: 'PKIX_ECDSA_P256_SHA_256', validFor: { start: new Date(0) } },
  };
  const verifier = new Verifier(toTrustMaterial(root, keys), {
    tlogThreshold: 0,
    ctlogThreshold: 0,
    timestampThreshold: 0,
  });
  verifier.verify(toSignedEntity(bundle));
  const statement = JSON.parse(Buffer.from(bundle.content.dsseEnvelope.payload).toString('utf8'));
  const subjects = statement.subject.map((s) => s.digest.sha256);
  if (!subjects.includes(digestHex)) {
    throw new Error(`statement subjects ${subjects} do not include ${digestHex}`);
  }
  console.log('ok');
} catch (e) {
  console.error(`bundle does not verify: ${e.message}`);
  process.exit(1);
}

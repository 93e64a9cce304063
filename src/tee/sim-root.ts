import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { AttestationError, encodeFields } from './backend.js';

/**
 * The sim backend's stand-in for the CPU vendor: an Ed25519 root key that certifies platform keys, so
 * that an attestation policy can say which simulated platforms it trusts ("platforms certified by this
 * root") instead of trusting whoever holds any key. It is only as safe as the file it lives in.
 */

export function generateEd25519Pem(): { privateKeyPem: string; publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKeyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    publicKeyPem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
  };
}

export function importEd25519PrivateKey(pem: string, what: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch {
    throw new AttestationError(`${what} is not a valid PEM private key`);
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new AttestationError(`${what} is ${key.asymmetricKeyType}, expected ed25519`);
  }
  return key;
}

/** An Ed25519 public key from base64 SPKI DER; anything else is an AttestationError naming `what`. */
export function importEd25519PublicKey(spkiBase64Text: string, what: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(spkiBase64Text, 'base64'), format: 'der', type: 'spki' });
  } catch {
    throw new AttestationError(`${what} is not a valid SPKI public key`);
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new AttestationError(`${what} is ${key.asymmetricKeyType}, expected ed25519`);
  }
  return key;
}

/** Base64 SPKI DER of the public half: the spelling evidence and policy files use. */
export function spkiBase64(key: KeyObject): string {
  return createPublicKey(key).export({ format: 'der', type: 'spki' }).toString('base64');
}

/** What a root signs to certify a platform key. */
export function platformCertPayload(platformKeySpki: string): Buffer {
  return encodeFields('constmig-sim-platform-cert-v1', [platformKeySpki]);
}

/** The root's signature over a platform's public key (base64 SPKI), base64. */
export function certifyPlatformKey(rootPrivateKeyPem: string, platformKeySpki: string): string {
  const root = importEd25519PrivateKey(rootPrivateKeyPem, 'sim root key');
  return sign(null, platformCertPayload(platformKeySpki), root).toString('base64');
}

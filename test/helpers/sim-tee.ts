import { createPrivateKey } from 'node:crypto';
import { AttestationPolicy, type PolicyDocument } from '../../src/tee/policy.js';
import { SimTee } from '../../src/tee/sim.js';
import { certifyPlatformKey, generateEd25519Pem, spkiBase64 } from '../../src/tee/sim-root.js';

/** A sim root: the stand-in for a CPU vendor, which certifies platform keys. */
export interface SimRoot {
  privateKeyPem: string;
  /** Base64 SPKI, the spelling evidence and policies use. */
  spki: string;
}

export function newSimRoot(): SimRoot {
  const { privateKeyPem } = generateEd25519Pem();
  return { privateKeyPem, spki: spkiBase64(createPrivateKey(privateKeyPem)) };
}

/** The root most tests trust. */
export const TEST_ROOT = newSimRoot();

/** A sim enclave on a fresh platform certified by `root`. */
export function newSimTee(measurement: string, root: SimRoot = TEST_ROOT): SimTee {
  const { privateKeyPem } = generateEd25519Pem();
  const platformKey = spkiBase64(createPrivateKey(privateKeyPem));
  return SimTee.create({
    platformPrivateKeyPem: privateKeyPem,
    platformCert: certifyPlatformKey(root.privateKeyPem, platformKey),
    root: root.spki,
    measurement,
  });
}

/** The default policy of a host of TEST_ROOT, or one built from `document`. */
export function testPolicy(document?: PolicyDocument): AttestationPolicy {
  return document ? AttestationPolicy.parse(document) : AttestationPolicy.sameImageOnSimRoot(TEST_ROOT.spki);
}

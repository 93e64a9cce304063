import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { AttestationError, type SimEvidence } from '../../src/tee/backend.js';
import { SimTee, verifySimEvidence } from '../../src/tee/sim.js';
import { certifyPlatformKey, generateEd25519Pem, spkiBase64 } from '../../src/tee/sim-root.js';
import { newSimRoot, newSimTee, TEST_ROOT } from '../helpers/sim-tee.js';

const MEASUREMENT = 'ab'.repeat(32);

function newTee(measurement = MEASUREMENT, root = TEST_ROOT): SimTee {
  return newSimTee(measurement, root);
}

function flipBase64Bit(text: string): string {
  const bytes = Buffer.from(text, 'base64');
  bytes[bytes.length - 1]! ^= 0x01;
  return bytes.toString('base64');
}

describe('SimTee', () => {
  test('says it is not secure', () => {
    const tee = newTee();
    assert.equal(tee.kind, 'sim');
    assert.equal(tee.secure, false);
    assert.equal(tee.describe(), 'sim (simulated enclave: NO hardware protection)');
    assert.equal(tee.measurement, MEASUREMENT);
  });

  test('evidence from one platform verifies anywhere and names its platform and root', () => {
    const reportData = randomBytes(64);
    const evidence = newTee().report(reportData);
    const verified = verifySimEvidence(evidence, reportData);
    assert.deepEqual(verified, {
      backend: 'sim',
      measurement: MEASUREMENT,
      platform: { kind: 'sim', root: TEST_ROOT.spki, platformKey: evidence.platformKey },
      secure: false,
    });
    assert.equal(evidence.reportData, reportData.toString('hex'));
  });

  test('the platform key in evidence is the public half of the host key', () => {
    const { privateKeyPem, publicKeyPem } = generateEd25519Pem();
    const platformKey = spkiBase64(createPrivateKey(privateKeyPem));
    const tee = SimTee.create({
      platformPrivateKeyPem: privateKeyPem,
      platformCert: certifyPlatformKey(TEST_ROOT.privateKeyPem, platformKey),
      root: TEST_ROOT.spki,
      measurement: MEASUREMENT,
    });
    const spki = Buffer.from(tee.report(Buffer.alloc(64)).platformKey, 'base64');
    const pem = `-----BEGIN PUBLIC KEY-----\n${spki.toString('base64')}\n-----END PUBLIC KEY-----\n`;
    assert.equal(pem, publicKeyPem);
  });

  test('create refuses a certificate for another platform key or from another root', () => {
    const { privateKeyPem } = generateEd25519Pem();
    const otherKey = spkiBase64(createPrivateKey(generateEd25519Pem().privateKeyPem));
    const own = spkiBase64(createPrivateKey(privateKeyPem));
    const base = { platformPrivateKeyPem: privateKeyPem, root: TEST_ROOT.spki, measurement: MEASUREMENT };
    assert.throws(
      () => SimTee.create({ ...base, platformCert: certifyPlatformKey(TEST_ROOT.privateKeyPem, otherKey) }),
      /platform certificate does not verify/,
    );
    assert.throws(
      () => SimTee.create({ ...base, platformCert: certifyPlatformKey(newSimRoot().privateKeyPem, own) }),
      /platform certificate does not verify/,
    );
  });

  describe('verify rejects', () => {
    const reportData = randomBytes(64);
    const tee = newTee();
    const good = tee.report(reportData);
    const other = newTee('cd'.repeat(32)).report(reportData);
    const foreignRoot = newSimRoot();
    const rogue = newTee(MEASUREMENT, foreignRoot).report(reportData);
    const cases: Array<[string, unknown, RegExp]> = [
      ['evidence bound to other report data', tee.report(randomBytes(64)), /different report data/],
      ['a flipped signature bit', { ...good, signature: flipBase64Bit(good.signature) }, /signature/],
      ['a changed measurement', { ...good, measurement: 'cd'.repeat(32) }, /signature/],
      ['changed report data', { ...good, reportData: randomBytes(64).toString('hex') }, /signature/],
      ['a substituted platform key', { ...good, platformKey: other.platformKey }, /platform certificate/],
      [
        'a substituted platform key with its own certificate',
        { ...good, platformKey: other.platformKey, platformCert: other.platformCert },
        /signature/,
      ],
      ['another evidence signature', { ...good, signature: other.signature }, /signature/],
      [
        'a flipped certificate bit',
        { ...good, platformCert: flipBase64Bit(good.platformCert) },
        /certificate/,
      ],
      ['a root that did not certify the platform', { ...good, root: foreignRoot.spki }, /certificate/],
      [
        'a self-made root claimed as the trusted one',
        { ...rogue, root: TEST_ROOT.spki },
        /platform certificate does not verify under the sim root/,
      ],
      ['a platform key that is not Ed25519', withForeignKey(good), /ed25519/],
      ['an unknown backend', { ...good, backend: 'sgx' }, /malformed evidence: backend/],
      ['an extra field', { ...good, debug: true }, /malformed evidence/],
      ['a missing field', { ...good, signature: undefined }, /malformed evidence: signature/],
      [
        'uppercase hex',
        { ...good, reportData: good.reportData.toUpperCase() },
        /malformed evidence: reportData/,
      ],
      ['non-canonical base64', { ...good, signature: nonCanonical(good.signature) }, /not canonical base64/],
      ['not an object', 'evidence', /malformed evidence/],
      ['null', null, /malformed evidence/],
    ];
    for (const [name, evidence, message] of cases) {
      test(name, () => {
        assert.throws(
          () => verifySimEvidence(evidence, reportData),
          (err: Error) => err instanceof AttestationError && message.test(err.message),
        );
      });
    }
    test('the genuine evidence (control)', () => {
      assert.equal(verifySimEvidence(good, reportData).measurement, MEASUREMENT);
      assert.equal(
        verifySimEvidence(rogue, reportData).platform.kind,
        'sim',
        'a rogue root is the policy’s call',
      );
    });
  });

  test('report data must be exactly 64 bytes', () => {
    const tee = newTee();
    assert.throws(() => tee.report(Buffer.alloc(32)), AttestationError);
    assert.throws(() => verifySimEvidence(tee.report(Buffer.alloc(64)), Buffer.alloc(63)), AttestationError);
  });

  test('create rejects a malformed measurement or a non-Ed25519 key', () => {
    const { privateKeyPem } = generateEd25519Pem();
    const base = { platformCert: 'AA==', root: TEST_ROOT.spki };
    assert.throws(
      () => SimTee.create({ ...base, platformPrivateKeyPem: privateKeyPem, measurement: 'abc' }),
      AttestationError,
    );
    const ecPem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
      format: 'pem',
      type: 'pkcs8',
    });
    assert.throws(
      () => SimTee.create({ ...base, platformPrivateKeyPem: ecPem.toString(), measurement: MEASUREMENT }),
      /expected ed25519/,
    );
    assert.throws(
      () => SimTee.create({ ...base, platformPrivateKeyPem: 'not a key', measurement: MEASUREMENT }),
      AttestationError,
    );
  });

  test('the private platform key is not reachable through the object', () => {
    const tee = newTee();
    assert.deepEqual(Object.keys(tee).sort(), ['kernelInTcb', 'kind', 'measurement', 'secure']);
    assert.ok(!JSON.stringify(tee).includes('PRIVATE'));
  });
});

/** The same bytes spelled differently: nonzero padding bits in the last character before '=='. */
function nonCanonical(base64: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  assert.ok(base64.endsWith('=='));
  const last = alphabet.indexOf(base64.at(-3)!);
  const spelled = `${base64.slice(0, -3)}${alphabet[(last & 0x30) | 0x01]}==`;
  assert.deepEqual(Buffer.from(spelled, 'base64'), Buffer.from(base64, 'base64'));
  return spelled;
}

/** A P-256 platform key that the trusted root (wrongly) certified: the key type check must still fire. */
function withForeignKey(evidence: SimEvidence): SimEvidence {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const platformKey = publicKey.export({ format: 'der', type: 'spki' }).toString('base64');
  return { ...evidence, platformKey, platformCert: certifyPlatformKey(TEST_ROOT.privateKeyPem, platformKey) };
}

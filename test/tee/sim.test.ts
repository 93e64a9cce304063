import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { AttestationError, type Evidence } from '../../src/tee/backend.js';
import { generatePlatformKey, SimTee } from '../../src/tee/sim.js';

const MEASUREMENT = 'ab'.repeat(32);

function newTee(measurement = MEASUREMENT): SimTee {
  return SimTee.create({ platformPrivateKeyPem: generatePlatformKey().privateKeyPem, measurement });
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

  test('evidence from one platform verifies on another and names its platform key', () => {
    const reportData = randomBytes(64);
    const evidence = newTee().report(reportData);
    const verified = newTee().verify(evidence, reportData);
    assert.deepEqual(verified, {
      backend: 'sim',
      measurement: MEASUREMENT,
      platformKey: evidence.platformKey,
      secure: false,
    });
    assert.equal(evidence.reportData, reportData.toString('hex'));
  });

  test('the platform key in evidence is the public half of the host key', () => {
    const { privateKeyPem, publicKeyPem } = generatePlatformKey();
    const tee = SimTee.create({ platformPrivateKeyPem: privateKeyPem, measurement: MEASUREMENT });
    const spki = Buffer.from(tee.report(Buffer.alloc(64)).platformKey, 'base64');
    const pem = `-----BEGIN PUBLIC KEY-----\n${spki.toString('base64')}\n-----END PUBLIC KEY-----\n`;
    assert.equal(pem, publicKeyPem);
  });

  describe('verify rejects', () => {
    const reportData = randomBytes(64);
    const tee = newTee();
    const good = tee.report(reportData);
    const other = newTee('cd'.repeat(32)).report(reportData);
    const cases: Array<[string, unknown, RegExp]> = [
      ['evidence bound to other report data', tee.report(randomBytes(64)), /different report data/],
      ['a flipped signature bit', { ...good, signature: flipBase64Bit(good.signature) }, /signature/],
      ['a changed measurement', { ...good, measurement: 'cd'.repeat(32) }, /signature/],
      ['changed report data', { ...good, reportData: randomBytes(64).toString('hex') }, /signature/],
      ['a substituted platform key', { ...good, platformKey: other.platformKey }, /signature/],
      ['another evidence signature', { ...good, signature: other.signature }, /signature/],
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
          () => tee.verify(evidence, reportData),
          (err: Error) => err instanceof AttestationError && message.test(err.message),
        );
      });
    }
    test('the genuine evidence (control)', () => {
      assert.equal(tee.verify(good, reportData).measurement, MEASUREMENT);
    });
  });

  test('report data must be exactly 64 bytes', () => {
    const tee = newTee();
    assert.throws(() => tee.report(Buffer.alloc(32)), AttestationError);
    assert.throws(() => tee.verify(tee.report(Buffer.alloc(64)), Buffer.alloc(63)), AttestationError);
  });

  test('create rejects a malformed measurement or a non-Ed25519 key', () => {
    const { privateKeyPem } = generatePlatformKey();
    assert.throws(
      () => SimTee.create({ platformPrivateKeyPem: privateKeyPem, measurement: 'abc' }),
      AttestationError,
    );
    const ecPem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
      format: 'pem',
      type: 'pkcs8',
    });
    assert.throws(
      () => SimTee.create({ platformPrivateKeyPem: ecPem.toString(), measurement: MEASUREMENT }),
      /expected ed25519/,
    );
    assert.throws(
      () => SimTee.create({ platformPrivateKeyPem: 'not a key', measurement: MEASUREMENT }),
      AttestationError,
    );
  });

  test('the private platform key is not reachable through the object', () => {
    const { privateKeyPem } = generatePlatformKey();
    const tee = SimTee.create({ platformPrivateKeyPem: privateKeyPem, measurement: MEASUREMENT });
    const body = privateKeyPem.split('\n')[1]!;
    assert.ok(!JSON.stringify(tee).includes(body));
    assert.deepEqual(Object.keys(tee).sort(), ['kind', 'measurement', 'secure']);
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

function withForeignKey(evidence: Evidence): Evidence {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...evidence, platformKey: publicKey.export({ format: 'der', type: 'spki' }).toString('base64') };
}

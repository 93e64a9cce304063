import assert from 'node:assert/strict';
import { createPrivateKey, sign } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import type { VerifiedEvidence } from '../../src/tee/backend.js';
import { AttestationPolicy, PolicyError, upgradePayload } from '../../src/tee/policy.js';
import { generateEd25519Pem, spkiBase64 } from '../../src/tee/sim-root.js';
import { TEST_ROOT } from '../helpers/sim-tee.js';

const OLD = '01'.repeat(32);
const NEW = '02'.repeat(32);
const signer = generateEd25519Pem().privateKeyPem;
const signerSpki = spkiBase64(createPrivateKey(signer));

const simPeer = (measurement: string, root = TEST_ROOT.spki): VerifiedEvidence => ({
  backend: 'sim',
  measurement,
  platform: { kind: 'sim', root, platformKey: 'AA==' },
  secure: false,
});

const sgxPeer = (overrides: Partial<Extract<VerifiedEvidence['platform'], { kind: 'sgx' }>> = {}) =>
  ({
    backend: 'gramine',
    measurement: OLD,
    platform: {
      kind: 'sgx',
      mrSigner: 'aa'.repeat(32),
      isvProdId: 3,
      isvSvn: 5,
      debug: false,
      verifier: 'test',
      tcbStatus: 'UpToDate',
      ...overrides,
    },
    secure: true,
  }) satisfies VerifiedEvidence;

const signedUpgrade = (from: string, to: string, key = signer) => ({
  from,
  to,
  signature: sign(null, upgradePayload(from, to), createPrivateKey(key)).toString('base64'),
});

const withUpgrade = (upgrade: ReturnType<typeof signedUpgrade>) =>
  AttestationPolicy.parse({
    version: 1,
    measurements: { imageSigners: [signerSpki], upgrades: [upgrade] },
    platforms: { sim: { roots: [TEST_ROOT.spki] } },
  });

describe('attestation policy', () => {
  test('the default allows the same measurement on a platform of the named root only', () => {
    const policy = AttestationPolicy.sameImageOnSimRoot(TEST_ROOT.spki);
    policy.checkPeer(simPeer(OLD), OLD, 'source');
    policy.checkPeer(simPeer(OLD), OLD, 'destination');
    assert.throws(() => policy.checkPeer(simPeer(NEW), OLD, 'source'), /may not receive from/);
    assert.throws(
      () => policy.checkPeer(simPeer(OLD, spkiBase64(createPrivateKey(signer))), OLD, 'source'),
      /sim root [0-9a-f]{16} is not trusted/,
    );
    assert.throws(() => policy.checkPeer(sgxPeer(), OLD, 'source'), /SGX platforms are not trusted/);
  });

  test('a signed upgrade allows old → new in that direction only', () => {
    const policy = withUpgrade(signedUpgrade(OLD, NEW));
    policy.checkPeer(simPeer(OLD), NEW, 'source'); // we are NEW, receiving from OLD
    policy.checkPeer(simPeer(NEW), OLD, 'destination'); // we are OLD, sending to NEW
    assert.throws(() => policy.checkPeer(simPeer(NEW), OLD, 'source'), /may not receive from/);
    assert.throws(() => policy.checkPeer(simPeer(OLD), NEW, 'destination'), /may not receive from/);
  });

  test('an upgrade not signed by an image signer makes the whole policy invalid', () => {
    const stranger = generateEd25519Pem().privateKeyPem;
    assert.throws(() => withUpgrade(signedUpgrade(OLD, NEW, stranger)), /upgrade #0 .* is not signed/);
    const swapped = { ...signedUpgrade(OLD, NEW), to: '03'.repeat(32) };
    assert.throws(() => withUpgrade(swapped), PolicyError);
  });

  test('allowSame: false refuses identical measurements', () => {
    const policy = AttestationPolicy.parse({
      version: 1,
      measurements: { allowSame: false },
      platforms: { sim: { roots: [TEST_ROOT.spki] } },
    });
    assert.throws(() => policy.checkPeer(simPeer(OLD), OLD, 'source'), /same measurement/);
  });

  test('SGX peers: MRSIGNER, product id, minimum SVN and debug are enforced', () => {
    const policy = AttestationPolicy.parse({
      version: 1,
      platforms: { sgx: { mrSigners: ['aa'.repeat(32)], isvProdId: 3, minIsvSvn: 5 } },
    });
    policy.checkPeer(sgxPeer(), OLD, 'source');
    assert.throws(() => policy.checkPeer(sgxPeer({ mrSigner: 'bb'.repeat(32) }), OLD, 'source'), /MRSIGNER/);
    assert.throws(() => policy.checkPeer(sgxPeer({ isvProdId: 4 }), OLD, 'source'), /product id/);
    assert.throws(() => policy.checkPeer(sgxPeer({ isvSvn: 4 }), OLD, 'source'), /below the policy minimum/);
    assert.throws(() => policy.checkPeer(sgxPeer({ debug: true }), OLD, 'source'), /debug enclaves/);
    assert.throws(() => policy.checkPeer(simPeer(OLD), OLD, 'source'), /sim\) platforms are not trusted/);
  });

  test('the quote verifier refuses unless the policy opts in to unverified quotes', () => {
    const strict = AttestationPolicy.parse({
      version: 1,
      platforms: { sgx: { mrSigners: ['aa'.repeat(32)] } },
    });
    assert.equal(strict.quoteVerifier.name, 'attestation-key-only');
    const noSgx = AttestationPolicy.parse({ version: 1, platforms: {} });
    assert.throws(
      () => noSgx.quoteVerifier.verify({} as never, Buffer.alloc(0)),
      /insecureAcceptUnverifiedQuotes/,
    );
  });

  const invalid: Array<[string, unknown, RegExp]> = [
    ['not an object', 'policy', /invalid policy: \(root\)/],
    ['another version', { version: 2, platforms: {} }, /invalid policy: version/],
    ['an unknown field', { version: 1, platforms: {}, trustEverything: true }, /invalid policy/],
    [
      'a malformed measurement',
      { version: 1, measurements: { upgrades: [{ from: 'x', to: NEW, signature: 'AA==' }] }, platforms: {} },
      /measurements.upgrades.0.from/,
    ],
    ['an empty root list', { version: 1, platforms: { sim: { roots: [] } } }, /platforms.sim.roots/],
    [
      'a root that is not base64',
      { version: 1, platforms: { sim: { roots: ['not base64!'] } } },
      /platforms.sim.roots.0/,
    ],
    [
      'an opt-in that is not literally true',
      {
        version: 1,
        platforms: { sgx: { mrSigners: ['aa'.repeat(32)], insecureAcceptUnverifiedQuotes: 'true' } },
      },
      /insecureAcceptUnverifiedQuotes/,
    ],
  ];
  for (const [name, document, message] of invalid) {
    test(`refuses a policy with ${name}`, () => {
      assert.throws(
        () => AttestationPolicy.parse(document),
        (err: Error) => err instanceof PolicyError && message.test(err.message),
      );
    });
  }

  test('load reports file problems in one line', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'constmig-policy-'));
    try {
      assert.throws(
        () => AttestationPolicy.load(path.join(dir, 'missing.json')),
        /cannot read policy file .*ENOENT/,
      );
      fs.writeFileSync(path.join(dir, 'bad.json'), '{');
      assert.throws(() => AttestationPolicy.load(path.join(dir, 'bad.json')), /is not JSON/);
      fs.writeFileSync(
        path.join(dir, 'ok.json'),
        JSON.stringify({ version: 1, platforms: { sim: { roots: [TEST_ROOT.spki] } } }),
      );
      AttestationPolicy.load(path.join(dir, 'ok.json')).checkPeer(simPeer(OLD), OLD, 'source');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

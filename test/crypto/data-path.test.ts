import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { dataPath, dataPathChoice, nativeDataPath, nodeCryptoDataPath } from '../../src/crypto/data-path.js';
import { Opener, Sealer } from '../../src/crypto/seal.js';
import { FrameReader, FrameType } from '../../src/wire/frame.js';
import { loadDataPathAddon } from '../../src/native/datapath.js';
import { dataPathCompliance } from './data-path-compliance.js';

const load = loadDataPathAddon();
if (!load.ok) console.log(`native data path tests skipped: ${load.reason}`);

describe('data path: node:crypto', () => dataPathCompliance(nodeCryptoDataPath));

describe('data path: native addon', { skip: load.ok ? false : load.reason }, () => {
  if (!load.ok) return;
  const { addon } = load;
  const native = nativeDataPath(addon);
  dataPathCompliance(native);

  test('frames sealed on one path open on the other, in both directions', () => {
    const key = randomBytes(32);
    const migrationId = randomBytes(32);
    for (const [from, to] of [
      [native, nodeCryptoDataPath],
      [nodeCryptoDataPath, native],
    ] as const) {
      const sealer = new Sealer(key, migrationId, from);
      const opener = new Opener(key, migrationId, to);
      const reader = new FrameReader();
      const pages = randomBytes(3 * 4096);
      for (let i = 0; i < 3; i++) {
        reader.push(
          Buffer.concat(
            sealer.seal(
              { type: FrameType.Pages, firstPage: i, pageCount: 1 },
              pages.subarray(i * 4096, (i + 1) * 4096),
            ),
          ),
        );
      }
      for (let i = 0; i < 3; i++) {
        const target = new Uint8Array(4096);
        opener.open(reader.next()!, target);
        assert.deepEqual(
          Buffer.from(target),
          pages.subarray(i * 4096, (i + 1) * 4096),
          `${from.name} -> ${to.name}`,
        );
      }
    }
  });

  test('refuses views of the wrong length with a clear error, not a crash', () => {
    const key = randomBytes(32);
    const iv = randomBytes(12);
    assert.throws(
      () => addon.gcmSeal(key.subarray(1), iv, [], [], Buffer.alloc(16)),
      /key must be a 32-byte view/,
    );
    assert.throws(
      () => addon.gcmSeal(key, iv.subarray(1), [], [], Buffer.alloc(16)),
      /iv must be a 12-byte view/,
    );
    assert.throws(
      () => addon.gcmSeal(key, iv, [], [Buffer.alloc(10)], Buffer.alloc(20)),
      /exactly the plaintext/,
    );
    assert.throws(
      () => addon.gcmOpen(key, iv, [], [Buffer.alloc(10)], Buffer.alloc(16), Buffer.alloc(9)),
      /exactly as long as the ciphertext/,
    );
    assert.throws(() => addon.gcmOpen(key, iv, [], [], Buffer.alloc(15), Buffer.alloc(0)), /16-byte view/);
    assert.throws(
      () => addon.sha256PageLeaves(Buffer.alloc(4095), 0, Buffer.alloc(0)),
      /whole 4096-byte pages/,
    );
    assert.throws(() => addon.sha256PageLeaves(Buffer.alloc(4096), 0, Buffer.alloc(31)), /32 bytes per page/);
    assert.throws(
      () => addon.sha256PageLeaves(Buffer.alloc(4096), -1, Buffer.alloc(32)),
      /non-negative integer/,
    );
  });
});

test('the data path in use is the addon when it loads, and says why otherwise', () => {
  const choice = dataPathChoice();
  assert.equal(choice.name, dataPath().name);
  if (process.env.CONSTMIG_DATAPATH === 'node') assert.equal(choice.why, 'CONSTMIG_DATAPATH=node');
  else if (load.ok) assert.equal(choice.name, 'native');
  else assert.equal(choice.why, load.reason);
});

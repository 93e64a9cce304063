import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, hash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import { type DataPath, LEAF_BYTES, TAG_BYTES } from '../../src/crypto/data-path.js';
import { PAGE_SIZE } from '../../src/heap/constants.js';

/**
 * What every data path must do (src/crypto/data-path.ts), checked against node:crypto's one-shot
 * AES-256-GCM and SHA-256 as the reference: the same bytes out, the same frames accepted, every
 * tampered one refused without leaving plaintext behind.
 */
export function dataPathCompliance(path: DataPath): void {
  const key = randomBytes(32);
  const aad = [randomBytes(32), randomBytes(32)];

  const reference = (iv: Buffer, plaintext: Uint8Array) => {
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    for (const a of aad) cipher.setAAD(a);
    return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
  };
  const split = (bytes: Uint8Array, cuts: number[]) => {
    const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
    const parts: Uint8Array[] = [];
    let from = 0;
    for (const cut of [...at, bytes.length]) {
      parts.push(bytes.subarray(from, cut));
      from = cut;
    }
    return parts;
  };

  test(`${path.name}: seal gives node:crypto's ciphertext and tag, whatever the split into parts`, () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 0, maxLength: 9000 }),
        fc.array(fc.nat(), { maxLength: 5 }),
        (plaintext, cuts) => {
          const iv = randomBytes(12);
          const sealed = Buffer.concat(path.aead(key).seal(iv, aad, split(plaintext, cuts)));
          assert.deepEqual(sealed, reference(iv, plaintext));
        },
      ),
      { numRuns: 60 },
    );
  });

  test(`${path.name}: seal writes into the memory alloc gives it, or returns its own buffers`, () => {
    const plaintext = randomBytes(3 * PAGE_SIZE);
    const iv = randomBytes(12);
    const given: Buffer[] = [];
    const alloc = (n: number) => {
      const b = Buffer.alloc(n);
      given.push(b);
      return b;
    };
    const sealed = path.aead(key).seal(iv, aad, [plaintext], alloc);
    assert.deepEqual(Buffer.concat(sealed), reference(iv, plaintext));
    for (const b of given) assert.ok(sealed.includes(b), 'memory from alloc is part of the output');
  });

  test(`${path.name}: open decrypts node:crypto's frames into a SharedArrayBuffer, from any slicing`, () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 9000 }),
        fc.array(fc.nat(), { maxLength: 5 }),
        (plaintext, cuts) => {
          const iv = randomBytes(12);
          const wire = reference(iv, plaintext);
          const body = wire.subarray(0, plaintext.length);
          const target = new Uint8Array(new SharedArrayBuffer(plaintext.length));
          const ok = path.aead(key).open(iv, aad, split(body, cuts), wire.subarray(plaintext.length), target);
          assert.equal(ok, true);
          assert.deepEqual(Buffer.from(target), Buffer.from(plaintext));
        },
      ),
      { numRuns: 60 },
    );
  });

  test(`${path.name}: any flipped bit of ciphertext, tag, associated data or nonce is refused, leaving no plaintext`, () => {
    const plaintext = randomBytes(2 * PAGE_SIZE).fill(0x5a, 0, 64);
    const iv = randomBytes(12);
    const wire = reference(iv, plaintext);
    const aead = path.aead(key);
    const attempts: [string, (w: Buffer, a: Buffer[], n: Buffer) => void][] = [
      ['ciphertext', (w) => (w[100]! ^= 1)],
      ['last ciphertext byte', (w) => (w[plaintext.length - 1]! ^= 0x80)],
      ['tag', (w) => (w[plaintext.length + TAG_BYTES - 1]! ^= 1)],
      ['associated data', (_w, a) => (a[1]![0]! ^= 1)],
      ['nonce', (_w, _a, n) => (n[11]! ^= 1)],
    ];
    for (const [what, tamper] of attempts) {
      const w = Buffer.from(wire);
      const a = aad.map((x) => Buffer.from(x));
      const n = Buffer.from(iv);
      tamper(w, a, n);
      const target = new Uint8Array(plaintext.length).fill(0xee);
      const ok = aead.open(n, a, [w.subarray(0, plaintext.length)], w.subarray(plaintext.length), target);
      assert.equal(ok, false, `${what} tampered, still opened`);
      assert.ok(
        !Buffer.from(target).includes(plaintext.subarray(0, 64)),
        `${what} tampered: plaintext left in the target`,
      );
    }
    // The untouched frame still opens: the refusals above are the tampering's doing.
    const target = new Uint8Array(plaintext.length);
    assert.equal(
      aead.open(iv, aad, [wire.subarray(0, plaintext.length)], wire.subarray(plaintext.length), target),
      true,
    );
  });

  test(`${path.name}: a frame sealed under another key is refused`, () => {
    const iv = randomBytes(12);
    const sealed = Buffer.concat(path.aead(randomBytes(32)).seal(iv, aad, [randomBytes(100)]));
    const target = new Uint8Array(100);
    assert.equal(
      path.aead(key).open(iv, aad, [sealed.subarray(0, 100)], sealed.subarray(100), target),
      false,
    );
  });

  test(`${path.name}: page leaves are SHA-256(u64le(page) || page)`, () => {
    const pages = new Uint8Array(new SharedArrayBuffer(5 * PAGE_SIZE));
    pages.set(randomBytes(pages.length));
    const first = 2 ** 31 + 7;
    const leaves = new Uint8Array(5 * LEAF_BYTES);
    path.pageLeaves(pages, first, leaves);
    for (let i = 0; i < 5; i++) {
      const input = Buffer.alloc(8 + PAGE_SIZE);
      input.writeBigUInt64LE(BigInt(first + i), 0);
      input.set(pages.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE), 8);
      assert.deepEqual(
        Buffer.from(leaves.subarray(i * LEAF_BYTES, (i + 1) * LEAF_BYTES)),
        hash('sha256', input, 'buffer'),
      );
    }
  });

  test(`${path.name}: a round trip through node:crypto's decipher`, () => {
    const iv = randomBytes(12);
    const plaintext = randomBytes(PAGE_SIZE + 3);
    const sealed = Buffer.concat(path.aead(key).seal(iv, aad, [plaintext]));
    const decipher = createDecipheriv('aes-256-gcm', key, iv);
    for (const a of aad) decipher.setAAD(a);
    decipher.setAuthTag(sealed.subarray(plaintext.length));
    const opened = Buffer.concat([decipher.update(sealed.subarray(0, plaintext.length)), decipher.final()]);
    assert.deepEqual(opened, plaintext);
  });
}

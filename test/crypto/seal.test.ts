import assert from 'node:assert/strict';
import { createDecipheriv, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  IntegrityError,
  KeyExhaustedError,
  Opener,
  ReplayError,
  Sealer,
  TAG_BYTES,
} from '../../src/crypto/seal.js';
import {
  decodeHeader,
  encodeHeader,
  type Frame,
  type FrameHeader,
  FrameReader,
  FrameType,
} from '../../src/wire/frame.js';

/** Runs wire bytes through the real FrameReader, as the receiver would. */
function readFrames(wire: Buffer): Frame[] {
  const reader = new FrameReader();
  reader.push(wire);
  const frames: Frame[] = [];
  for (let frame = reader.next(); frame; frame = reader.next()) frames.push(frame);
  assert.equal(reader.bufferedBytes, 0);
  return frames;
}

const readFrame = (wire: Buffer): Frame => readFrames(wire)[0]!;
const wireOf = (parts: readonly Uint8Array[]): Buffer => Buffer.concat(parts);

/** The same frame with its header re-encoded after `edit`: what an attacker on the wire can send. */
function withHeader(wire: Buffer, edit: (header: FrameHeader) => FrameHeader): Buffer {
  return Buffer.concat([encodeHeader(edit(decodeHeader(wire))), wire.subarray(32)]);
}

function flipBit(wire: Buffer, offset: number): Buffer {
  const copy = Buffer.from(wire);
  copy[offset]! ^= 0x01;
  return copy;
}

function setup() {
  const key = randomBytes(32);
  const migrationId = randomBytes(32);
  return { key, migrationId, sealer: new Sealer(key, migrationId), opener: new Opener(key, migrationId) };
}

const pagesFields = { type: FrameType.Pages, epoch: 2, firstPage: 40, pageCount: 2 };

describe('Sealer and Opener', () => {
  test('round trip from several parts, into a target and as a returned buffer', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 3000 }), { maxLength: 5 }), (parts) => {
        const { sealer, opener } = setup();
        const plaintext = Buffer.concat(parts);
        const first = sealer.seal(pagesFields, parts);
        assert.equal(wireOf(first).length, 32 + plaintext.length + TAG_BYTES, 'header, ciphertext, tag');
        const frame = readFrame(wireOf(first));
        assert.deepEqual(opener.open(frame), plaintext);

        const target = new Uint8Array(plaintext.length);
        assert.equal(opener.open(readFrame(wireOf(sealer.seal(pagesFields, parts))), target), undefined);
        assert.deepEqual(Buffer.from(target), plaintext);
      }),
      { numRuns: 50 },
    );
  });

  test('seals straight from SharedArrayBuffer views and opens a body split over many chunks', () => {
    const { sealer, opener } = setup();
    const heap = new Uint8Array(new SharedArrayBuffer(5 * 4096));
    heap.set(randomBytes(heap.length));
    const pages = heap.subarray(4096, 3 * 4096);
    const parts = sealer.seal(pagesFields, pages);
    const ciphertext = parts[1]!;
    assert.notDeepEqual(Buffer.from(ciphertext), Buffer.from(pages), 'the wire carries ciphertext');

    const reader = new FrameReader();
    const wire = wireOf(parts);
    for (let offset = 0; offset < wire.length; offset += 1000)
      reader.push(wire.subarray(offset, offset + 1000));
    const frame = reader.next()!;
    assert.ok(frame.body.length > 5);
    const target = new Uint8Array(new SharedArrayBuffer(2 * 4096));
    opener.open(frame, target);
    assert.deepEqual(Buffer.from(target), Buffer.from(pages));
  });

  test('the header carries the fields, the sealed flag and seq, and the tag covers them', () => {
    const { sealer } = setup();
    sealer.seal({ type: FrameType.Control }, Buffer.from('a'));
    const header = decodeHeader(sealer.seal(pagesFields, Buffer.alloc(8192))[0]!);
    assert.deepEqual(header, { ...pagesFields, sealed: true, seq: 1, bodyLength: 8192 + TAG_BYTES });
    assert.equal(sealer.framesSealed, 2);
  });

  describe('rejects tampering', () => {
    const cases: Array<[string, (wire: Buffer) => Buffer]> = [
      ['a flipped ciphertext bit', (wire) => flipBit(wire, 32 + 100)],
      ['a flipped tag bit', (wire) => flipBit(wire, wire.length - 1)],
      ['a changed firstPage', (wire) => withHeader(wire, (h) => ({ ...h, firstPage: h.firstPage + 1 }))],
      ['a changed pageCount', (wire) => withHeader(wire, (h) => ({ ...h, pageCount: 1 }))],
      ['a changed type', (wire) => withHeader(wire, (h) => ({ ...h, type: FrameType.Control }))],
      ['a changed epoch', (wire) => withHeader(wire, (h) => ({ ...h, epoch: h.epoch + 1 }))],
      [
        'a truncated body (length re-encoded)',
        (wire) =>
          Buffer.concat([
            encodeHeader({ ...decodeHeader(wire), bodyLength: decodeHeader(wire).bodyLength - 4096 }),
            wire.subarray(32 + 4096),
          ]),
      ],
    ];
    for (const [name, tamper] of cases) {
      test(`${name}, leaving no plaintext in the target`, () => {
        const { sealer, opener } = setup();
        const wire = wireOf(sealer.seal(pagesFields, randomBytes(2 * 4096)));
        const tampered = readFrame(tamper(wire));
        const target = new Uint8Array(tampered.bodyLength - TAG_BYTES).fill(0xaa);
        assert.throws(() => opener.open(tampered, target), IntegrityError);
        assert.ok(
          target.every((byte) => byte === 0xaa) || target.every((byte) => byte === 0),
          'the target is untouched or wiped: no unverified byte stays there',
        );
      });
    }

    test('a body shorter than its header claims', () => {
      const { sealer, opener } = setup();
      const frame = readFrame(wireOf(sealer.seal(pagesFields, randomBytes(4096))));
      const truncated: Frame = { ...frame, body: [Buffer.concat(frame.body).subarray(0, 4000)] };
      assert.throws(() => opener.open(truncated), IntegrityError);
    });

    test('header fields that differ from the authenticated header bytes', () => {
      const { sealer, opener } = setup();
      const frame = readFrame(wireOf(sealer.seal(pagesFields, randomBytes(4096))));
      const lying: Frame = { ...frame, header: { ...frame.header, firstPage: 0 } };
      assert.throws(() => opener.open(lying, new Uint8Array(4096)), IntegrityError);
    });

    test('a wrong migration id and a wrong key', () => {
      const { key, migrationId, sealer } = setup();
      const wire = wireOf(sealer.seal(pagesFields, randomBytes(100)));
      assert.throws(() => new Opener(key, randomBytes(32)).open(readFrame(wire)), IntegrityError);
      assert.throws(() => new Opener(randomBytes(32), migrationId).open(readFrame(wire)), IntegrityError);
      assert.ok(new Opener(key, migrationId).open(readFrame(wire)), 'the right pair opens it');
    });

    test('a plaintext frame slipped into the sealed stream', () => {
      const { opener } = setup();
      const body = Buffer.alloc(TAG_BYTES + 8);
      const header = encodeHeader({ ...pagesFields, bodyLength: body.length, sealed: false, seq: 0 });
      assert.throws(() => opener.open(readFrame(Buffer.concat([header, body]))), IntegrityError);
    });
  });

  describe('rejects frames out of order', () => {
    function sealedStream(count: number) {
      const { sealer, opener } = setup();
      const frames = Array.from({ length: count }, (_, i) =>
        wireOf(sealer.seal(pagesFields, Buffer.from([i]))),
      );
      return { opener, frames };
    }
    const openAll = (opener: Opener, wires: Buffer[]): number[] =>
      wires.map((wire) => opener.open(readFrame(wire))![0]!);

    test('in order they all open', () => {
      const { opener, frames } = sealedStream(4);
      assert.deepEqual(openAll(opener, frames), [0, 1, 2, 3]);
    });

    const attacks: Array<[string, (f: Buffer[]) => Buffer[], number]> = [
      ['a replayed frame', (f) => [f[0]!, f[0]!], 1],
      ['a duplicated frame', (f) => [f[0]!, f[1]!, f[1]!], 2],
      ['reordered frames', (f) => [f[0]!, f[2]!, f[1]!], 1],
      ['a dropped frame', (f) => [f[0]!, f[2]!], 1],
      ['an old frame replayed later', (f) => [f[0]!, f[1]!, f[2]!, f[0]!], 3],
    ];
    for (const [name, reorder, failsAt] of attacks) {
      test(name, () => {
        const { opener, frames } = sealedStream(3);
        const wires = reorder(frames);
        assert.deepEqual(
          openAll(opener, wires.slice(0, failsAt)),
          wires.slice(0, failsAt).map((_, i) => i),
        );
        assert.throws(() => opener.open(readFrame(wires[failsAt]!)), ReplayError);
      });
    }

    test('after a failure the opener refuses even the frame it expected', () => {
      const { opener, frames } = sealedStream(2);
      assert.throws(() => opener.open(readFrame(frames[1]!)), ReplayError);
      assert.throws(() => opener.open(readFrame(frames[0]!)), IntegrityError);
      assert.throws(() => opener.open(readFrame(frames[1]!)), IntegrityError);
    });

    test('after a forged frame the opener refuses the genuine one', () => {
      const { opener, frames } = sealedStream(2);
      assert.throws(() => opener.open(readFrame(flipBit(frames[0]!, frames[0]!.length - 1))), IntegrityError);
      assert.throws(() => opener.open(readFrame(frames[0]!)), IntegrityError);
    });
  });

  test('nonces never repeat across 10k frames, and are 0^32 || seq big-endian', () => {
    const { key, migrationId, sealer } = setup();
    const zeros = Buffer.alloc(16);
    const keystreams = new Set<string>();
    for (let seq = 0; seq < 10_000; seq++) {
      const [header, ...body] = sealer.seal({ type: FrameType.Control }, zeros);
      const sealed = Buffer.concat(body);
      const ciphertext = sealed.subarray(0, zeros.length);
      const tag = sealed.subarray(zeros.length);
      assert.equal(decodeHeader(header!).seq, seq);
      // A repeated (key, nonce) pair would give the same keystream for the same plaintext.
      keystreams.add(ciphertext.toString('hex'));
      if (seq % 997 === 0) {
        const nonce = Buffer.alloc(12);
        nonce.writeBigUInt64BE(BigInt(seq), 4);
        const decipher = createDecipheriv('aes-256-gcm', key, nonce);
        decipher.setAAD(Buffer.concat([migrationId, header!]));
        decipher.setAuthTag(tag);
        assert.deepEqual(Buffer.concat([decipher.update(ciphertext), decipher.final()]), zeros);
      }
    }
    assert.equal(keystreams.size, 10_000);
  });

  test('refuses to seal past 2^32 frames under one key', () => {
    const { sealer } = setup();
    // Counting to 2^32 takes hours; start the counter near the end instead.
    Reflect.set(sealer, 'seq', 2 ** 32 - 1);
    assert.equal(
      decodeHeader(sealer.seal({ type: FrameType.Control }, Buffer.alloc(1))[0]!).seq,
      2 ** 32 - 1,
    );
    assert.throws(() => sealer.seal({ type: FrameType.Control }, Buffer.alloc(1)), KeyExhaustedError);
  });

  test('a frame sealed under one direction key does not open under the other', () => {
    const migrationId = randomBytes(32);
    const sourceToDestination = randomBytes(32);
    const destinationToSource = randomBytes(32);
    const reflected = wireOf(
      new Sealer(sourceToDestination, migrationId).seal(pagesFields, Buffer.from('x')),
    );
    assert.throws(
      () => new Opener(destinationToSource, migrationId).open(readFrame(reflected)),
      IntegrityError,
    );
  });

  test('rejects keys and migration ids of the wrong size', () => {
    assert.throws(() => new Sealer(randomBytes(16), randomBytes(32)), RangeError);
    assert.throws(() => new Opener(randomBytes(32), randomBytes(31)), RangeError);
  });
});

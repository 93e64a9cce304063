import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  decodeHeader,
  encodeHeader,
  FrameError,
  type FrameHeader,
  FrameReader,
  FrameType,
  HEADER_BYTES,
  MAX_BODY,
} from '../../src/wire/frame.js';

const frameTypes = [
  FrameType.Hello,
  FrameType.HelloReply,
  FrameType.Confirm,
  FrameType.Control,
  FrameType.Pages,
];

const headerArb = (maxBody = MAX_BODY): fc.Arbitrary<FrameHeader> =>
  fc.record({
    bodyLength: fc.integer({ min: 0, max: maxBody }),
    type: fc.constantFrom(...frameTypes),
    sealed: fc.boolean(),
    epoch: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
    pageCount: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
    firstPage: fc.maxSafeNat(),
    seq: fc.maxSafeNat(),
  });

const baseHeader: FrameHeader = {
  bodyLength: 8,
  type: FrameType.Control,
  sealed: true,
  epoch: 3,
  pageCount: 2,
  firstPage: 1000,
  seq: 7,
};

describe('frame header', () => {
  test('encode/decode round trip for any valid header', () => {
    fc.assert(
      fc.property(headerArb(), (header) => {
        const bytes = encodeHeader(header);
        assert.equal(bytes.length, HEADER_BYTES);
        assert.deepEqual(decodeHeader(bytes), { ...header });
      }),
    );
  });

  test('the layout is the documented little-endian one', () => {
    const bytes = encodeHeader({ ...baseHeader, firstPage: 2 ** 53 - 1, seq: 0x0102030405 });
    assert.equal(bytes.readUInt32LE(0), 8);
    assert.equal(bytes[4], FrameType.Control);
    assert.equal(bytes[5], 1);
    assert.equal(bytes.readUInt16LE(6), 0);
    assert.equal(bytes.readUInt32LE(8), 3);
    assert.equal(bytes.readUInt32LE(12), 2);
    assert.equal(bytes.readBigUInt64LE(16), 2n ** 53n - 1n);
    assert.equal(bytes.readBigUInt64LE(24), 0x0102030405n);
  });

  test('decodes at an offset', () => {
    const bytes = Buffer.concat([Buffer.alloc(5, 0xee), encodeHeader(baseHeader)]);
    assert.deepEqual(decodeHeader(bytes, 5), baseHeader);
  });

  const corrupt = (edit: (bytes: Buffer) => void): Buffer => {
    const bytes = encodeHeader(baseHeader);
    edit(bytes);
    return bytes;
  };

  test('rejects a body longer than MAX_BODY', () => {
    assert.throws(() => decodeHeader(corrupt((b) => b.writeUInt32LE(MAX_BODY + 1, 0))), FrameError);
    assert.throws(() => encodeHeader({ ...baseHeader, bodyLength: MAX_BODY + 1 }), FrameError);
    assert.equal(decodeHeader(corrupt((b) => b.writeUInt32LE(MAX_BODY, 0))).bodyLength, MAX_BODY);
  });

  test('rejects unknown frame types', () => {
    for (const type of [0, 5, 15, 19, 255]) {
      assert.throws(() => decodeHeader(corrupt((b) => b.writeUInt8(type, 4))), FrameError, `type ${type}`);
    }
    assert.throws(() => encodeHeader({ ...baseHeader, type: 99 as FrameType }), FrameError);
  });

  test('rejects a nonzero reserved field and unknown flag bits', () => {
    assert.throws(() => decodeHeader(corrupt((b) => b.writeUInt16LE(1, 6))), /reserved/);
    assert.throws(() => decodeHeader(corrupt((b) => b.writeUInt16LE(0x8000, 6))), /reserved/);
    for (const flags of [0x02, 0x80, 0x03]) {
      assert.throws(() => decodeHeader(corrupt((b) => b.writeUInt8(flags, 5))), /flags/);
    }
  });

  test('rejects firstPage or seq above 2^53-1 and short input', () => {
    assert.throws(() => decodeHeader(corrupt((b) => b.writeBigUInt64LE(2n ** 53n, 16))), /firstPage/);
    assert.throws(() => decodeHeader(corrupt((b) => b.writeBigUInt64LE(2n ** 64n - 1n, 24))), /seq/);
    assert.throws(() => encodeHeader({ ...baseHeader, seq: 2 ** 53 }), FrameError);
    assert.throws(() => encodeHeader({ ...baseHeader, epoch: -1 }), FrameError);
    assert.throws(() => encodeHeader({ ...baseHeader, pageCount: 1.5 }), FrameError);
    assert.throws(() => decodeHeader(Buffer.alloc(HEADER_BYTES - 1)), FrameError);
  });
});

interface WireFrame {
  header: FrameHeader;
  body: Buffer;
}

const wireFramesArb = fc.array(
  fc.tuple(headerArb(0), fc.uint8Array({ maxLength: 300 })).map(([header, body]): WireFrame => ({
    header: { ...header, bodyLength: body.length },
    body: Buffer.from(body),
  })),
  { maxLength: 12 },
);

/** Cuts `stream` at the given fractions of its length. */
function split(stream: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((cut) => Math.floor(cut * stream.length)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let start = 0;
  for (const point of [...points, stream.length]) {
    chunks.push(stream.subarray(start, point));
    start = point;
  }
  return chunks;
}

describe('FrameReader', () => {
  test('yields the same frames whatever the chunk boundaries, with bodies as slices of the chunks', () => {
    fc.assert(
      fc.property(
        wireFramesArb,
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 40 }),
        (frames, cuts) => {
          const stream = Buffer.concat(frames.flatMap((f) => [encodeHeader(f.header), f.body]));
          // Unpooled copies: each chunk owns its memory, so a body slice sharing it proves no copy was made.
          const chunks = split(stream, cuts).map((chunk) => {
            const own = Buffer.alloc(chunk.length);
            chunk.copy(own);
            return own;
          });
          const reader = new FrameReader();
          const got = [];
          for (const chunk of chunks) {
            reader.push(chunk);
            for (let frame = reader.next(); frame; frame = reader.next()) got.push(frame);
          }
          assert.equal(reader.bufferedBytes, 0);
          assert.equal(got.length, frames.length);
          got.forEach((frame, i) => {
            const sent = frames[i]!;
            assert.deepEqual(frame.header, sent.header);
            assert.deepEqual(frame.headerBytes, encodeHeader(sent.header));
            assert.equal(frame.bodyLength, sent.body.length);
            assert.deepEqual(Buffer.concat(frame.body), sent.body);
            for (const slice of frame.body) {
              assert.ok(
                chunks.some((chunk) => chunk.buffer === slice.buffer),
                'body slice is a view of a received chunk',
              );
            }
          });
        },
      ),
    );
  });

  test('waits for the whole body and counts buffered bytes', () => {
    const reader = new FrameReader();
    const header = encodeHeader({ ...baseHeader, bodyLength: 10 });
    reader.push(header.subarray(0, 20));
    assert.equal(reader.next(), null);
    reader.push(header.subarray(20));
    reader.push(Buffer.alloc(4, 1));
    assert.equal(reader.next(), null);
    assert.equal(reader.bufferedBytes, 4);
    reader.push(Buffer.alloc(6, 2));
    const frame = reader.next();
    assert.ok(frame);
    assert.deepEqual(Buffer.concat(frame.body), Buffer.from([1, 1, 1, 1, 2, 2, 2, 2, 2, 2]));
    assert.equal(frame.body.length, 2);
    assert.equal(reader.bufferedBytes, 0);
    assert.equal(reader.next(), null);
  });

  test('rejects an oversize header before buffering its body, and stays failed', () => {
    const reader = new FrameReader();
    const header = encodeHeader(baseHeader);
    header.writeUInt32LE(MAX_BODY + 1, 0);
    reader.push(header);
    assert.throws(() => reader.next(), /bodyLength/);
    reader.push(encodeHeader({ ...baseHeader, bodyLength: 0 }));
    assert.throws(() => reader.next(), FrameError);
  });

  test('rejects malformed headers in a stream', () => {
    for (const [offset, value] of [
      [4, 9],
      [5, 4],
      [6, 1],
    ] as const) {
      const reader = new FrameReader();
      const good = encodeHeader({ ...baseHeader, bodyLength: 0 });
      const bad = Buffer.from(good);
      bad.writeUInt8(value, offset);
      reader.push(Buffer.concat([good, bad]));
      assert.ok(reader.next(), 'the well-formed first frame is delivered');
      assert.throws(() => reader.next(), FrameError);
    }
  });
});

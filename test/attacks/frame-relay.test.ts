import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { FrameType, HEADER_BYTES } from '../../src/wire/frame.js';
import { encodePreamble, PREAMBLE_BYTES } from '../../src/wire/preamble.js';
import { type Action, type Attack, FORWARD, FrameRelay } from '../helpers/frame-relay.js';
import { classify, type Direction, type FrameRole, TOKEN_FRAME_TYPE } from '../helpers/frame-roles.js';
import { FrameSplitter, rawFrame, readRawHeader } from '../helpers/frame-splitter.js';

const PREAMBLE = encodePreamble('00112233445566778899aabbccddeeff', '00'.repeat(32));
/** What a source sends after the preamble, in protocol order, with bodies of different sizes. */
const FRAMES = [
  rawFrame({ type: FrameType.HelloReply }, randomBytes(300)),
  rawFrame({ type: FrameType.Confirm }, randomBytes(60)),
  rawFrame({ type: FrameType.Control, flags: 1, seq: 0n }, randomBytes(1000)),
  rawFrame({ type: FrameType.Control, flags: 1, seq: 1n }, randomBytes(200)),
  rawFrame({ type: FrameType.Pages, flags: 1, seq: 2n, firstPage: 7n, pageCount: 2 }, randomBytes(70_000)),
];
const [F0, F1, F2, F3, F4] = FRAMES as [Buffer, Buffer, Buffer, Buffer, Buffer];

function collect(socket: net.Socket): Promise<{ bytes: Buffer; reset: boolean }> {
  const chunks: Buffer[] = [];
  let reset = false;
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', () => {
    reset = true;
  });
  return new Promise((resolve) => socket.on('close', () => resolve({ bytes: Buffer.concat(chunks), reset })));
}

/** Writes in pieces of the given sizes with a pause between, so they arrive as separate chunks. */
async function writeInPieces(socket: net.Socket, bytes: Buffer, sizes: readonly number[]): Promise<void> {
  let offset = 0;
  for (const size of [...sizes, Infinity]) {
    if (offset >= bytes.length) break;
    socket.write(bytes.subarray(offset, offset + size));
    offset += size;
    await sleep(2);
  }
}

/** A source and a destination joined through a FrameRelay running `attack`. */
async function rig(attack: Attack, options = {}) {
  const target = net.createServer({ allowHalfOpen: true });
  await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
  const accepted = new Promise<net.Socket>((resolve) => target.once('connection', resolve));
  const relay = new FrameRelay(
    { host: '127.0.0.1', port: (target.address() as net.AddressInfo).port },
    attack,
    options,
  );
  await relay.listen();
  const source = net.connect({ host: '127.0.0.1', port: relay.port, allowHalfOpen: true });
  const atSource = collect(source);
  const destination = await accepted;
  target.close();
  const atDestination = collect(destination);
  // The destination ends its side once the source has (a lingering peer, like the real one).
  destination.on('end', () => destination.end());
  source.on('end', () => source.end());
  return { relay, source, destination, atSource, atDestination };
}

/** Source sends the preamble and FRAMES (chunked unevenly), then ends; returns what each side got. */
async function runThrough(attack: Attack, options = {}) {
  const r = await rig(attack, options);
  await writeInPieces(r.source, Buffer.concat([PREAMBLE, ...FRAMES]), [5, 30, 1, 400, 700, 1200, 9000]);
  r.source.end();
  const [atDestination, atSource] = await Promise.all([r.atDestination, r.atSource]);
  r.relay.close();
  return { relay: r.relay, atDestination, atSource };
}

const toDestination =
  (index: number, action: Action): Attack =>
  (frame) =>
    frame.direction === 'to-destination' && frame.index === index ? action : FORWARD;

describe('FrameSplitter', () => {
  test('yields the same complete frames however the stream is chunked', () => {
    const stream = Buffer.concat(FRAMES);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: stream.length }), { maxLength: 12 }), (cuts) => {
        const splitter = new FrameSplitter();
        const points = [...new Set(cuts)].sort((a, b) => a - b);
        const out: Buffer[] = [];
        let start = 0;
        for (const end of [...points, stream.length]) {
          out.push(...splitter.push(stream.subarray(start, end)));
          start = end;
        }
        assert.deepEqual(out, FRAMES);
        assert.equal(splitter.bufferedBytes, 0);
      }),
      { numRuns: 200 },
    );
  });

  test('reads header fields without validating them', () => {
    const frame = rawFrame({ type: 99, flags: 0x80, bodyLength: 2 ** 32 - 1, seq: 2n ** 64n - 1n });
    assert.deepEqual(readRawHeader(frame), {
      bodyLength: 2 ** 32 - 1,
      type: 99,
      flags: 0x80,
      epoch: 0,
      pageCount: 0,
      firstPage: 0n,
      seq: 2n ** 64n - 1n,
    });
  });
});

describe('classify', () => {
  function roles(direction: Direction, types: number[]): FrameRole[] {
    const seen: { type: number; role: FrameRole }[] = [];
    for (const type of types) seen.push({ type, role: classify(direction, type, seen) });
    return seen.map((f) => f.role);
  }
  const { Hello, HelloReply, Confirm, Control, Pages } = FrameType;

  test('names the stop-and-copy frames by type and position', () => {
    assert.deepEqual(
      roles('to-destination', [HelloReply, Confirm, Control, Control, Pages, Pages, Control]),
      ['handshake', 'handshake', 'prefault', 'begin', 'pages', 'pages', 'start'],
    );
    assert.deepEqual(roles('to-source', [Hello, Confirm, Control, Control, Control]), [
      'handshake',
      'handshake',
      'prefaulted',
      'commit-or-abort',
      'unknown',
    ]);
  });

  test('knows START, COMMIT and ABORT as token frames', () => {
    assert.deepEqual(roles('to-destination', [Control, Control, Pages, TOKEN_FRAME_TYPE, Control]), [
      'prefault',
      'begin',
      'pages',
      'start',
      'unknown',
    ]);
    assert.deepEqual(roles('to-source', [Control, TOKEN_FRAME_TYPE]), ['prefaulted', 'commit-or-abort']);
    assert.deepEqual(roles('to-destination', [Control, Control, Control, 99]), [
      'prefault',
      'begin',
      'start',
      'unknown',
    ]);
  });
});

describe('FrameRelay', { timeout: 20_000 }, () => {
  test('forwards the preamble and every frame intact and records them, across chunk boundaries', async () => {
    const { relay, atDestination, atSource } = await runThrough(() => FORWARD);
    assert.deepEqual(atDestination.bytes, Buffer.concat([PREAMBLE, ...FRAMES]));
    assert.equal(atDestination.reset, false);
    assert.equal(atSource.bytes.length, 0);
    assert.deepEqual(
      relay.frames.map((f) => [f.direction, f.index, f.role, f.ordinal]),
      [
        ['to-destination', 0, 'handshake', 0],
        ['to-destination', 1, 'handshake', 1],
        ['to-destination', 2, 'prefault', 0],
        ['to-destination', 3, 'begin', 0],
        ['to-destination', 4, 'pages', 0],
      ],
    );
    assert.deepEqual(
      relay.frames.map((f) => f.bytes),
      FRAMES,
    );
    assert.deepEqual(relay.frames[4]!.header, readRawHeader(F4));
    assert.deepEqual(relay.events, []);
  });

  test('relays the destination direction and can attack it', async () => {
    const hello = rawFrame({ type: FrameType.Hello }, randomBytes(100));
    const prefaulted = rawFrame({ type: FrameType.Control, flags: 1 }, randomBytes(50));
    const r = await rig((frame) =>
      frame.direction === 'to-source' && frame.role === 'prefaulted'
        ? { do: 'flip', offset: 40, mask: 0xff }
        : FORWARD,
    );
    r.source.write(PREAMBLE);
    await writeInPieces(r.destination, Buffer.concat([hello, prefaulted]), [10, 100]);
    r.destination.end();
    const atSource = await r.atSource;
    const tampered = Buffer.from(prefaulted);
    tampered[40]! ^= 0xff;
    assert.deepEqual(atSource.bytes, Buffer.concat([hello, tampered]));
    assert.deepEqual(r.relay.performed('flip', 'prefaulted').length, 1);
    r.relay.close();
  });

  const expectations: { name: string; action: Action; index: number; delivered: Buffer[] }[] = [
    { name: 'drop', action: { do: 'drop' }, index: 2, delivered: [F0, F1, F3, F4] },
    { name: 'duplicate', action: { do: 'duplicate' }, index: 4, delivered: [F0, F1, F2, F3, F4, F4] },
    {
      name: 'replace',
      action: { do: 'replace', bytes: Buffer.from('garbage') },
      index: 1,
      delivered: [F0, Buffer.from('garbage'), F2, F3, F4],
    },
    {
      name: 'inject',
      action: { do: 'inject', before: [F0], after: [F3, F3] },
      index: 2,
      delivered: [F0, F1, F0, F2, F3, F3, F3, F4],
    },
  ];
  for (const { name, action, index, delivered } of expectations) {
    test(`${name}s a frame`, async () => {
      const { relay, atDestination } = await runThrough(toDestination(index, action));
      assert.deepEqual(atDestination.bytes, Buffer.concat([PREAMBLE, ...delivered]));
      assert.deepEqual(relay.performed(action.do).length, 1);
    });
  }

  test('holds frames and releases them later, in either order', async () => {
    const attack: Attack = (frame) =>
      frame.index === 1 || frame.index === 2
        ? { do: 'hold' }
        : frame.index === 3
          ? { do: 'release', order: 'this-first' }
          : frame.index === 4
            ? { do: 'hold' }
            : FORWARD;
    const { relay, atDestination } = await runThrough(attack);
    assert.deepEqual(atDestination.bytes, Buffer.concat([PREAMBLE, F0, F3, F1, F2]), 'F4 is still held');
    assert.equal(relay.performed('hold').length, 3);

    const heldFirst = await runThrough((frame) =>
      frame.index === 1
        ? { do: 'hold' }
        : frame.index === 3
          ? { do: 'release', order: 'held-first' }
          : FORWARD,
    );
    assert.deepEqual(heldFirst.atDestination.bytes, Buffer.concat([PREAMBLE, F0, F2, F1, F3, F4]));
  });

  test('flips one bit in a header or a body', async () => {
    const headerFlip = await runThrough(toDestination(4, { do: 'flip', offset: 16 }));
    const body = await runThrough(toDestination(4, { do: 'flip', offset: HEADER_BYTES + 5000, mask: 0x80 }));
    const expect = (offset: number, mask: number): Buffer => {
      const copy = Buffer.from(F4);
      copy[offset]! ^= mask;
      return Buffer.concat([PREAMBLE, F0, F1, F2, F3, copy]);
    };
    assert.deepEqual(headerFlip.atDestination.bytes, expect(16, 0x01));
    assert.equal(readRawHeader(headerFlip.atDestination.bytes.subarray(-F4.length)).firstPage, 6n);
    assert.deepEqual(body.atDestination.bytes, expect(HEADER_BYTES + 5000, 0x80));
  });

  test('cuts before or after a frame: the receiver gets exactly what came before, the sender a reset', async () => {
    const before = await runThrough(toDestination(2, { do: 'cut', when: 'before' }));
    assert.deepEqual(before.atDestination.bytes, Buffer.concat([PREAMBLE, F0, F1]));
    assert.equal(before.atSource.reset, true);
    const after = await runThrough(toDestination(2, { do: 'cut', when: 'after' }));
    assert.deepEqual(after.atDestination.bytes, Buffer.concat([PREAMBLE, F0, F1, F2]));
    assert.equal(after.atDestination.reset, false, 'the receiver sees an orderly end after the frame');
    assert.equal(after.atSource.reset, true);
    assert.equal(after.relay.performed('cut').length, 1);
  });

  test('truncates a frame: part of it, then the end of the stream', async () => {
    const { relay, atDestination, atSource } = await runThrough(
      toDestination(4, { do: 'truncate', keep: 1000 }),
    );
    assert.deepEqual(atDestination.bytes, Buffer.concat([PREAMBLE, F0, F1, F2, F3, F4.subarray(0, 1000)]));
    assert.equal(atSource.reset, true);
    assert.deepEqual(relay.performed('truncate')[0]?.frame, {
      direction: 'to-destination',
      index: 4,
      role: 'pages',
      ordinal: 0,
    });
  });

  test('cuts inside the preamble', async () => {
    const { relay, atDestination, atSource } = await runThrough(() => FORWARD, { cutPreambleAfter: 10 });
    assert.deepEqual(atDestination.bytes, PREAMBLE.subarray(0, 10));
    assert.equal(atSource.reset, true);
    assert.equal(relay.performed('cut-preamble').length, 1);
    assert.equal(relay.frames.length, 0);
    assert.ok(10 < PREAMBLE_BYTES);
  });

  test('an attack that throws cuts the connection and is kept for the test', async () => {
    const { relay, atDestination } = await runThrough(toDestination(1, { do: 'flip', offset: 10_000 }));
    assert.deepEqual(atDestination.bytes, Buffer.concat([PREAMBLE, F0]));
    assert.match(relay.attackErrors[0]?.message ?? '', /flip offset 10000 outside a frame of 92 B/);
  });
});

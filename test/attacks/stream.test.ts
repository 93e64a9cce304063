import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FrameType, HEADER_BYTES, MAX_BODY } from '../../src/wire/frame.js';
import { type Attack, FORWARD, type RelayedFrame } from '../helpers/frame-relay.js';
import { rawFrame } from '../helpers/frame-splitter.js';
import { useAttackBench, CONNECTION_LOST, on, STREAMING_FILL } from './harness.js';

const isPages = (frame: RelayedFrame): boolean =>
  frame.direction === 'to-destination' && frame.role === 'pages';

/** Pages frames `first` and `first + 1` change places, each keeping its own header. */
function swapBodies(first: number): Attack {
  let held: Buffer | undefined;
  return (frame) => {
    if (!isPages(frame) || frame.ordinal < first || frame.ordinal > first + 1) return FORWARD;
    if (!held) {
      held = frame.bytes;
      return { do: 'hold' };
    }
    assert.equal(frame.bytes.length, held.length, 'the swapped frames must carry as many pages');
    const [heldHeader, heldBody] = [held.subarray(0, HEADER_BYTES), held.subarray(HEADER_BYTES)];
    const [header, body] = [frame.bytes.subarray(0, HEADER_BYTES), frame.bytes.subarray(HEADER_BYTES)];
    return { do: 'replace', bytes: Buffer.concat([heldHeader, body, header, heldBody]) };
  };
}

describe('a relay that rearranges the stream', { timeout: 60_000 }, () => {
  const bench = useAttackBench();

  test('drops a Pages frame: the next one is out of sequence', async () => {
    const kv = await bench.startKv();
    const relay = await bench.relay(on('pages', 2, { do: 'drop' }));
    await bench.expectRefused(kv, relay, {
      error: /destination aborted: frame seq \d+ where \d+ was expected/,
      fired: [['drop', 'pages']],
    });
  });

  test('duplicates a Pages frame', async () => {
    const kv = await bench.startKv();
    const relay = await bench.relay(on('pages', 2, { do: 'duplicate' }));
    await bench.expectRefused(kv, relay, {
      error: /destination aborted: page \d+\+\d+ received twice/,
      fired: [['duplicate', 'pages']],
    });
  });

  test('reorders two Pages frames', async () => {
    const kv = await bench.startKv();
    const relay = await bench.relay((frame) =>
      isPages(frame) && frame.ordinal === 1
        ? { do: 'hold' }
        : isPages(frame) && frame.ordinal === 2
          ? { do: 'release', order: 'this-first' }
          : FORWARD,
    );
    await bench.expectRefused(kv, relay, {
      error: /destination aborted: frame seq \d+ where \d+ was expected/,
      fired: [
        ['hold', 'pages'],
        ['release', 'pages'],
      ],
    });
  });

  test("swaps two Pages frames' bodies under their own headers", async () => {
    const kv = await bench.startKv();
    const relay = await bench.relay(swapBodies(1));
    await bench.expectRefused(kv, relay, {
      error: /destination aborted: frame seq \d+ failed authentication/,
      fired: [['replace', 'pages']],
    });
  });

  test('replays an earlier Pages frame of the same migration later in the stream', async () => {
    const kv = await bench.startKv();
    const relay = await bench.relay((frame, r) =>
      isPages(frame) && frame.ordinal === 4
        ? { do: 'inject', after: [r.framesOf('to-destination', 'pages')[1]!.bytes] }
        : FORWARD,
    );
    await bench.expectRefused(kv, relay, {
      error: /destination aborted: page \d+\+\d+ received twice/,
      fired: [['inject', 'pages']],
    });
  });

  test('replays a Pages frame recorded from an earlier migration', async () => {
    const recorder = await bench.relay(() => FORWARD);
    await bench.expectMigrated(await bench.startKv(), recorder);
    const recorded = recorder.framesOf('to-destination', 'pages')[2]!;

    const kv = await bench.startKv();
    const relay = await bench.relay((frame) => {
      if (!isPages(frame) || frame.ordinal !== 2) return FORWARD;
      // The same place in the same kind of stream: only the keys tell the two frames apart.
      assert.deepEqual(recorded.header, frame.header, 'the replayed header is the one expected here');
      return { do: 'replace', bytes: recorded.bytes };
    });
    await bench.expectRefused(kv, relay, {
      error: /destination aborted: frame seq \d+ failed authentication/,
      fired: [['replace', 'pages']],
    });
  });

  test('truncates the stream in the middle of a Pages frame', async () => {
    const kv = await bench.startKv(STREAMING_FILL);
    const relay = await bench.relay(on('pages', 2, { do: 'truncate', keep: HEADER_BYTES + 5000 }));
    await bench.expectRefused(kv, relay, {
      error: CONNECTION_LOST,
      destinationReason: /peer closed the channel in the middle of a frame \(5000 B pending\)/,
      fired: [['truncate', 'pages']],
    });
  });

  test('drops BEGIN: the next frame is out of sequence', async () => {
    const kv = await bench.startKv();
    const relay = await bench.relay(on('begin', 0, { do: 'drop' }));
    await bench.expectRefused(kv, relay, {
      // Pages may legitimately come before BEGIN (pre-copy rounds), so the gap in the sealed
      // sequence is what gives the drop away.
      error: /destination aborted: frame seq \d+ where \d+ was expected/,
      fired: [['drop', 'begin']],
    });
  });

  test('injects a frame of an unknown type', async () => {
    const kv = await bench.startKv(STREAMING_FILL);
    const relay = await bench.relay(
      on('begin', 0, { do: 'inject', after: [rawFrame({ type: 99 }, Buffer.alloc(64))] }),
    );
    await bench.expectRefused(kv, relay, {
      error: CONNECTION_LOST,
      destinationReason: /unknown frame type 99/,
      fired: [['inject', 'begin']],
    });
  });

  test('injects a forged START in plaintext just before the real one', async () => {
    const kv = await bench.startKv();
    const relay = await bench.relay((frame) => {
      if (frame.direction !== 'to-destination' || frame.role !== 'start') return FORWARD;
      const forged = {
        t: 'start',
        snapshot: { app: 'kv', totalCommands: 0 },
        stoppedAtMs: 0,
        pagesTotal: 0,
        framesTotal: 0,
        digest: null,
      };
      const plaintext = rawFrame(
        { type: FrameType.Control, seq: frame.header.seq },
        Buffer.from(JSON.stringify(forged)),
      );
      return { do: 'inject', before: [plaintext] };
    });
    await bench.expectRefused(kv, relay, {
      error: /destination aborted: frame of type 16 is not sealed/,
      fired: [['inject', 'start']],
    });
  });

  test('announces a huge bodyLength: refused from the header, before any allocation', async () => {
    const kv = await bench.startKv(STREAMING_FILL);
    const huge = rawFrame({
      type: FrameType.Pages,
      flags: 1,
      bodyLength: 2 ** 32 - 1,
      pageCount: 64,
      seq: 2n,
    });
    const relay = await bench.relay(on('begin', 0, { do: 'inject', after: [huge] }));
    await bench.expectRefused(kv, relay, {
      error: CONNECTION_LOST,
      destinationReason: new RegExp(
        `frame bodyLength ${2 ** 32 - 1} is not an integer in 0\\.\\.${MAX_BODY}`,
      ),
      fired: [['inject', 'begin']],
    });
  });
});

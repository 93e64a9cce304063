import { describe, test } from 'node:test';
import { HEADER_BYTES } from '../../src/wire/frame.js';
import { type Attack, FORWARD } from '../helpers/frame-relay.js';
import type { Direction } from '../helpers/frame-roles.js';
import { useAttackBench, base64CharOffset, CONNECTION_LOST, on } from './harness.js';

/** Header offsets (src/wire/frame.ts). */
const PAGE_COUNT_OFFSET = 12;
const FIRST_PAGE_OFFSET = 16;
const SEQ_OFFSET = 24;

/** Flips bit 0 of a base64 character of a JSON field in the `ordinal`-th handshake frame of a direction. */
function flipHandshakeField(direction: Direction, ordinal: number, field: string): Attack {
  return (frame) =>
    frame.direction === direction && frame.role === 'handshake' && frame.ordinal === ordinal
      ? { do: 'flip', offset: base64CharOffset(frame.bytes, field, 10) }
      : FORWARD;
}

describe('a relay that flips one bit', { timeout: 60_000 }, () => {
  const bench = useAttackBench();

  test('in a page body: the page fails authentication', async () => {
    const kv = await bench.startKv();
    const relay = await bench.relay(on('pages', 1, { do: 'flip', offset: HEADER_BYTES + 1000 }));
    await bench.expectRefused(kv, relay, {
      error: /destination aborted: frame seq \d+ failed authentication/,
      fired: [['flip', 'pages']],
    });
  });

  test('in a Pages header firstPage: the header is authenticated too', async () => {
    const kv = await bench.startKv();
    const relay = await bench.relay(on('pages', 0, { do: 'flip', offset: FIRST_PAGE_OFFSET }));
    await bench.expectRefused(kv, relay, {
      error: /destination aborted: frame seq \d+ failed authentication/,
      fired: [['flip', 'pages']],
    });
  });

  test('in a Pages header pageCount: the frame no longer fits its length', async () => {
    const kv = await bench.startKv();
    const relay = await bench.relay(on('pages', 1, { do: 'flip', offset: PAGE_COUNT_OFFSET }));
    await bench.expectRefused(kv, relay, {
      error: /destination aborted: page frame length \d+ does not match \d+ pages/,
      fired: [['flip', 'pages']],
    });
  });

  test('in a Pages header seq: out of order', async () => {
    const kv = await bench.startKv();
    const relay = await bench.relay(on('pages', 1, { do: 'flip', offset: SEQ_OFFSET }));
    await bench.expectRefused(kv, relay, {
      error: /destination aborted: frame seq \d+ where \d+ was expected/,
      fired: [['flip', 'pages']],
    });
  });

  test('in the BEGIN control message', async () => {
    const kv = await bench.startKv();
    const relay = await bench.relay(on('begin', 0, { do: 'flip', offset: HEADER_BYTES + 10 }));
    await bench.expectRefused(kv, relay, {
      error: /destination aborted: frame seq 1 failed authentication/,
      fired: [['flip', 'begin']],
    });
  });

  test('in START: the destination refuses before resuming and the source serves again', async () => {
    const kv = await bench.startKv();
    const relay = await bench.relay(on('start', 0, { do: 'flip', offset: HEADER_BYTES + 10 }));
    await bench.expectRefused(kv, relay, {
      error: /destination aborted: frame seq \d+ failed authentication/,
      fired: [['flip', 'start']],
    });
  });

  test("in the source's evidence (HelloReply): the destination rejects it", async () => {
    const kv = await bench.startKv();
    const relay = await bench.relay(flipHandshakeField('to-destination', 0, 'signature'));
    await bench.expectRefused(kv, relay, {
      error: new RegExp(`handshake failed: .*(${CONNECTION_LOST.source})`),
      destinationReason: /source evidence rejected: evidence signature does not verify/,
      fired: [['flip', 'handshake']],
    });
  });

  test("in the destination's Confirm mac: the source refuses the keys", async () => {
    const kv = await bench.startKv();
    const relay = await bench.relay(flipHandshakeField('to-source', 1, 'mac'));
    await bench.expectRefused(kv, relay, {
      error: /migration failed: destination key confirmation failed/,
      fired: [['flip', 'handshake']],
    });
  });

  test("in the source's Confirm mac: the destination refuses the keys", async () => {
    const kv = await bench.startKv();
    const relay = await bench.relay(flipHandshakeField('to-destination', 1, 'mac'));
    await bench.expectRefused(kv, relay, {
      error: CONNECTION_LOST,
      destinationReason: /source key confirmation failed/,
      fired: [['flip', 'handshake']],
    });
  });
});

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { EnclaveInfo } from '../../src/host/api-schema.js';
import { PREAMBLE_BYTES } from '../../src/wire/preamble.js';
import { type Attack, FORWARD, type FrameRelayOptions } from '../helpers/frame-relay.js';
import {
  useAttackBench,
  CONNECTION_LOST,
  type Expectation,
  on,
  SMALL_FILL,
  STREAMING_FILL,
} from './harness.js';

const HANDSHAKE_LOST = new RegExp(`handshake failed: .*(${CONNECTION_LOST.source})`);

interface Cut {
  boundary: string;
  attack: Attack;
  options?: FrameRelayOptions;
  fill: number;
  error: RegExp;
  fired: Expectation['fired'];
}

/** Every phase boundary before START, in protocol order. */
const CUTS: readonly Cut[] = [
  {
    boundary: 'in the middle of the preamble',
    attack: () => FORWARD,
    options: { cutPreambleAfter: Math.floor(PREAMBLE_BYTES / 2) },
    fill: SMALL_FILL,
    error: HANDSHAKE_LOST,
    fired: [['cut-preamble']],
  },
  {
    boundary: 'after Hello',
    attack: on('handshake', 0, { do: 'cut', when: 'after' }, 'to-source'),
    fill: SMALL_FILL,
    error: HANDSHAKE_LOST,
    fired: [['cut', 'handshake']],
  },
  {
    boundary: 'after HelloReply',
    attack: on('handshake', 0, { do: 'cut', when: 'after' }),
    fill: SMALL_FILL,
    error: HANDSHAKE_LOST,
    fired: [['cut', 'handshake']],
  },
  {
    boundary: "after the destination's Confirm",
    attack: on('handshake', 1, { do: 'cut', when: 'after' }, 'to-source'),
    fill: SMALL_FILL,
    error: CONNECTION_LOST,
    fired: [['cut', 'handshake']],
  },
  {
    boundary: "after the source's Confirm",
    attack: on('handshake', 1, { do: 'cut', when: 'after' }),
    fill: SMALL_FILL,
    error: CONNECTION_LOST,
    fired: [['cut', 'handshake']],
  },
  {
    boundary: 'after PREFAULT',
    attack: on('prefault', 0, { do: 'cut', when: 'after' }),
    fill: SMALL_FILL,
    error: CONNECTION_LOST,
    fired: [['cut', 'prefault']],
  },
  {
    boundary: 'after PREFAULTED (the application is already paused)',
    attack: on('prefaulted', 0, { do: 'cut', when: 'after' }, 'to-source'),
    fill: STREAMING_FILL,
    error: CONNECTION_LOST,
    fired: [['cut', 'prefaulted']],
  },
  {
    boundary: 'after BEGIN',
    attack: on('begin', 0, { do: 'cut', when: 'after' }),
    fill: STREAMING_FILL,
    error: CONNECTION_LOST,
    fired: [['cut', 'begin']],
  },
  {
    boundary: 'in the middle of the pages',
    attack: on('pages', 3, { do: 'cut', when: 'before' }),
    fill: STREAMING_FILL,
    error: CONNECTION_LOST,
    fired: [['cut', 'pages']],
  },
];

describe('a relay that cuts the connection', { timeout: 60_000 }, () => {
  const bench = useAttackBench();

  for (const cut of CUTS) {
    test(`${cut.boundary}: the source serves again`, async () => {
      const kv = await bench.startKv(cut.fill);
      const relay = await bench.relay(cut.attack, cut.options);
      await bench.expectRefused(kv, relay, { error: cut.error, fired: cut.fired });
    });
  }

  // START has left the source when the relay sees it: the source cannot tell that it never arrived.
  test('START cut on its way: the destination never resumed, its ABORT token releases the source', async () => {
    const kv = await bench.startKv();
    const relay = await bench.relay(on('start', 0, { do: 'cut', when: 'before' }));
    await bench.expectRefused(kv, relay, {
      // The source dials again after the cut; the destination gave up, and its ABORT token reaches the
      // source through the hosts while it still waits.
      error:
        /the destination never resumed \(its ABORT token came through the hosts\).*the source serves again/,
      fired: [['cut', 'start']],
    });
  });

  test('COMMIT lost with its connection: the source dials again and gets it on the new one', async () => {
    const kv = await bench.startKv();
    // Only the first connection loses its COMMIT; the source's second connection passes untouched.
    const relay = await bench.relay((frame) =>
      frame.connection === 0 && frame.direction === 'to-source' && frame.role === 'commit-or-abort'
        ? { do: 'cut', when: 'before' }
        : FORWARD,
    );
    const report = await bench.migrate(kv, relay);
    assert.equal(report.verified, true);
    assert.ok(report.reconnects >= 1, `the source dialled again (reconnects: ${report.reconnects})`);
    assert.ok(
      relay.events.some((e) => e.action === 'cut'),
      'the relay cut the first COMMIT',
    );
    const onSource = await bench.cluster
      .client(bench.cluster.source)
      .call<EnclaveInfo[]>('GET', '/v1/enclaves');
    assert.ok(!onSource.some((e) => e.id === kv.id), 'the source destroyed itself after COMMIT');
    await bench.cluster.client(bench.cluster.destination).call('DELETE', `/v1/enclaves/${kv.id}`);
  });

  test('after COMMIT: the migration is complete; the cut changes nothing', async () => {
    const kv = await bench.startKv();
    const relay = await bench.relay(on('commit-or-abort', 0, { do: 'cut', when: 'after' }, 'to-source'));
    const report = await bench.migrate(kv, relay);
    assert.equal(report.verified, true);
    assert.ok(
      relay.events.some((e) => e.action === 'cut'),
      'the relay cut after COMMIT',
    );
    const onSource = await bench.cluster
      .client(bench.cluster.source)
      .call<EnclaveInfo[]>('GET', '/v1/enclaves');
    assert.ok(!onSource.some((e) => e.id === kv.id), 'the source destroyed itself');
    await bench.cluster.client(bench.cluster.destination).call('DELETE', `/v1/enclaves/${kv.id}`);
  });
});

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type FaultLatencyOptions, measureFaultLatency } from '../../src/bench/fault-latency.js';
import { faultTrackerSkip, uffdRegionsOpen } from '../helpers/fault-tracker.js';

/**
 * Section B of `npm run bench:tracker` (the fault latency at the application thread), run tiny through
 * its exported function for both trackers: one sample per timed read, one tracker figure per fault,
 * and every value read checked against the source (measureFaultLatency throws on a wrong one). Timing
 * is not checked. The Fault Tracker's case is skipped, with the reason printed, where userfaultfd is
 * unavailable.
 */

const READS = 50;
const WARMUP = 5;
const tiny = { heapBytes: 2 ** 20, reads: READS, warmup: WARMUP, conditions: ['idle'] } as const;

async function measureIdle(tracker: FaultLatencyOptions['tracker']) {
  const samples = await measureFaultLatency({ tracker, ...tiny });
  assert.deepEqual(
    samples.map((s) => s.condition),
    ['idle'],
  );
  const idle = samples[0]!;
  assert.equal(idle.appUs.length, READS, 'one application-thread sample per timed read');
  assert.ok(
    idle.appUs.every((us) => Number.isFinite(us) && us > 0),
    `samples: ${idle.appUs.join(', ')}`,
  );
  assert.equal(idle.ioUs.length, READS, 'one I/O-thread figure per timed fault');
  assert.equal(idle.faults, READS + WARMUP, 'every read was a miss');
  assert.equal(idle.checked, READS + WARMUP, 'every value read was checked against the source');
  assert.equal(idle.push.pages, 0, 'idle: no bulk push');
}

describe('fault latency benchmark, tiny', { timeout: 60_000 }, () => {
  test('Access Tracker, idle I/O thread', async () => {
    await measureIdle('access');
  });

  test(
    'Fault Tracker, idle I/O thread; no userfaultfd region is left open',
    { skip: faultTrackerSkip },
    async () => {
      const before = uffdRegionsOpen();
      await measureIdle('fault');
      assert.equal(uffdRegionsOpen(), before);
    },
  );

  test('the Access Tracker has no zero-page condition', async () => {
    await assert.rejects(
      measureFaultLatency({ tracker: 'access', ...tiny, conditions: ['zero'] }),
      /no zero-page path/,
    );
  });
});

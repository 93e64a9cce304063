import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  type ClientThroughput,
  clientThroughput,
  type MigrationRun,
  ratios,
  renderSummary,
  summarise,
  variantLabel,
  variants,
} from '../../src/bench/summary.js';
import type { ThroughputTimeline } from '../../src/cli/commands/demo.js';
import type { MigrationReport } from '../../src/migrate/report.js';
import type { TrackerKind } from '../../src/trackers/tracker.js';
import { latencyHistogram } from '../../src/trackers/demand-latency.js';

/**
 * A first bucket of connection warm-up, 1000 ops/s until the migration request (1000 ms) and on to
 * the blackout (1050 ms), 400 ops/s during post-copy (1130 -> 1680 ms), 900 ops/s after it until the
 * load stops (2750 ms); the buckets that straddle a mark or the stop hold figures that must not count
 * (a whole bucket at those rates would be 100, 40 and 90).
 */
const timeline = (marks: Partial<ThroughputTimeline['marks']> = {}): ThroughputTimeline => ({
  bucketMs: 100,
  durationMs: 2750,
  opsPer100ms: [
    30, // 0-100: the clients connect
    ...Array<number>(9).fill(100),
    7, // 1000-1100: blackout at 1050
    3, // 1100-1200: resumed at 1130
    ...Array<number>(4).fill(40),
    55, // 1600-1700: committed at 1680
    ...Array<number>(10).fill(90),
    1, // 2700-2800: the load stopped at 2750
  ],
  marks: { migrationRequested: 1000, blackout: 1050, resumed: 1130, committed: 1680, ...marks },
});

test('clientThroughput: ops/s before, during and after post-copy from the whole buckets in each window', () => {
  assert.deepEqual(clientThroughput(timeline(), true), {
    beforeOpsPerSec: 1000,
    duringOpsPerSec: 400,
    afterOpsPerSec: 900,
    duringVsBefore: 0.4,
    afterVsBefore: 0.9,
  });
  // Without post-copy there is no during; before and after stay.
  assert.deepEqual(clientThroughput(timeline(), false), {
    beforeOpsPerSec: 1000,
    duringOpsPerSec: null,
    afterOpsPerSec: 900,
    duringVsBefore: null,
    afterVsBefore: 0.9,
  });
  // A post-copy shorter than a bucket (hybrid) has no figure rather than a neighbour's.
  const short = clientThroughput(timeline({ resumed: 1130, committed: 1190 }), true);
  assert.equal(short.duringOpsPerSec, null);
  assert.equal(short.duringVsBefore, null);
  // Buckets missing at the end had no success: they count as 0.
  const idle = clientThroughput({ ...timeline(), durationMs: 3750 }, true);
  assert.equal(idle.afterOpsPerSec, (10 * 90 + 1) * (1000 / 2000));
  // A mark the report lacks leaves its windows without figures; the baseline ends at the request.
  const noCommit = clientThroughput(timeline({ committed: null }), true);
  assert.equal(noCommit.duringOpsPerSec, null);
  assert.equal(noCommit.afterOpsPerSec, null);
  assert.equal(noCommit.beforeOpsPerSec, 1000);
});

const baseReport: MigrationReport = {
  migrationId: 'm',
  enclaveId: 'e',
  app: 'kv',
  mode: 'stop-and-copy',
  from: 'a',
  to: 'b',
  tee: 'sim',
  teeSecure: false,
  heapBytes: 2 ** 28,
  allocatedBytes: 2 ** 27,
  pagesTransferred: 0,
  framesTransferred: 0,
  bytesOnWire: 0,
  downtimeMs: 0,
  totalMs: 0,
  clientGapMs: null,
  throughputMBps: 0,
  sourcePeakRssBytes: 0,
  destinationPeakRssBytes: 0,
  sourceCpuMs: 0,
  destinationCpuMs: 0,
  precopyRounds: 0,
  precopyStop: null,
  dirtyRateMBps: null,
  demandFaults: 0,
  faultLatencyUs: null,
  tracker: null,
  trackerReason: null,
  postcopyMs: null,
  pagesFetched: 0,
  pagesPushed: 0,
  reconnects: 0,
  verified: true,
  sourceDigest: 'd',
  destinationDigest: 'd',
  startedAt: '',
  phases: {
    prepare: 0,
    handshake: 0,
    prefaulted: 0,
    blackout: 0,
    transferDone: 0,
    startSent: 0,
    resumed: 0,
    committed: 0,
  },
};

function run(
  mode: MigrationRun['mode'],
  tracker: TrackerKind | null,
  downtimeMs: number,
  faultP50Us: number | null,
  duringOpsPerSec: number | null,
): MigrationRun {
  const client: ClientThroughput = {
    beforeOpsPerSec: 1000,
    duringOpsPerSec,
    afterOpsPerSec: 900,
    duringVsBefore: duringOpsPerSec === null ? null : duringOpsPerSec / 1000,
    afterVsBefore: 0.9,
  };
  return {
    workload: 'kv',
    heapBytes: 2 ** 28,
    mode,
    tracker,
    repeat: 1,
    index: 1,
    fromHost: 0,
    wallMs: 0,
    report: {
      ...baseReport,
      mode,
      tracker,
      downtimeMs,
      faultLatencyUs:
        faultP50Us === null
          ? null
          : { p50: faultP50Us, p99: faultP50Us, max: faultP50Us, histogram: latencyHistogram([faultP50Us]) },
    },
    load: { ops: 0, errors: 0, reconnects: 0, clientGapMs: 0, ackedKeysChecked: 0, lostWrites: 0 },
    contention: { loadAvg1: 0, cpuPressureSomePct: null },
    timeline: timeline(),
    client,
  };
}

test('cells and ratios are per mode and tracker; the post-copy table compares the trackers', () => {
  const measured = variants(['stop-and-copy', 'post-copy', 'hybrid'], ['access', 'fault']);
  assert.deepEqual(measured.map(variantLabel), [
    'stop-and-copy',
    'post-copy/access',
    'post-copy/fault',
    'hybrid/access',
    'hybrid/fault',
  ]);
  const runs = [
    run('stop-and-copy', null, 1000, null, null),
    run('post-copy', 'access', 50, 4000, 400),
    run('post-copy', 'access', 60, 4000, 300),
    run('post-copy', 'fault', 40, 1000, 800),
  ];
  const cells = summarise([2 ** 28], measured, runs, []);
  assert.deepEqual(
    cells.map((c) => [
      variantLabel(c),
      c.runs,
      c.downtimeMs,
      c.client.duringOpsPerSec,
      c.client.duringVsBefore,
    ]),
    [
      ['stop-and-copy', 1, 1000, null, null],
      ['post-copy/access', 2, 55, 350, 0.35],
      ['post-copy/fault', 1, 40, 800, 0.8],
    ],
  );
  const r = ratios(cells, [2 ** 28]);
  assert.deepEqual(
    r.vsStopAndCopy.map((x) => [variantLabel(x), Math.round(x.ratio)]),
    [
      ['post-copy/access', 18],
      ['post-copy/fault', 25],
    ],
  );
  assert.equal(r.faultVsAccess.length, 1);
  const [fva] = r.faultVsAccess;
  assert.equal(fva!.mode, 'post-copy');
  assert.ok(Math.abs(fva!.downtime! - 40 / 55) < 1e-12);
  assert.ok(Math.abs(fva!.duringOpsPerSec! - 800 / 350) < 1e-12);
  assert.equal(fva!.faultP50, 0.25);

  const text = renderSummary(cells, r, [2 ** 28]);
  assert.match(text, /post-copy\/fault 25\.0x/);
  assert.match(text, /^Post-copy by tracker/m);
  assert.match(text, /^256\.0 MiB\s+post-copy\s+fault\s+1\s+40\.0\s/m);
  assert.match(text, /256\.0 MiB\s+post-copy: downtime 0\.73, throughput during 2\.29, fault p50 0\.25/);
});

test('a cell whose migrations all failed (e.g. its fill failed) prints dashes, not NaN', () => {
  const measured = variants(['stop-and-copy'], []);
  const failure = {
    workload: 'kv',
    heapBytes: 2 ** 20,
    ...measured[0]!,
    repeat: 1,
    index: 1,
    error: 'starting and filling failed: host gone',
    logsKeptIn: '/tmp/x',
  };
  const cells = summarise(
    [2 ** 20, 2 ** 28],
    measured,
    [run('stop-and-copy', null, 1000, null, null)],
    [failure],
  );
  const text = renderSummary(cells, ratios(cells, [2 ** 20, 2 ** 28]), [2 ** 20, 2 ** 28]);
  assert.match(text, /^1\.00 MiB\s+stop-and-copy\s+0 \(\+1 FAILED\)\s+-\s+-\s+-\s/m);
  assert.doesNotMatch(text, /NaN/);
});

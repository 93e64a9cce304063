import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { PAGE_SIZE } from '../../src/heap/constants.js';
import { PageBitmap } from '../../src/heap/page-bitmap.js';
import { pattern } from '../heap/heap-fixtures.js';
import { faultTrackerSkip, uffdRegionsOpen } from '../helpers/fault-tracker.js';
import { page, TrackerBench, trackerCompliance } from './tracker-compliance.js';

/**
 * The Fault Tracker passes the same compliance suite as the Access Tracker, over userfaultfd memory
 * whose accessors test nothing. Skipped, with the reason printed, where the addon is missing or the
 * kernel refuses userfaultfd (CI runs as root, where it is allowed).
 */
// The compliance suite is registered only where it can run, so say why it is missing elsewhere.
if (faultTrackerSkip) console.log(faultTrackerSkip);

const factory = { name: 'Fault Tracker', catcher: 'userfaultfd' } as const;

if (!faultTrackerSkip) trackerCompliance(factory);

describe('Fault Tracker: what only it does', { skip: faultTrackerSkip }, () => {
  let bench: TrackerBench | undefined;
  afterEach(async () => {
    await bench?.close();
    bench = undefined;
  });

  test('the application thread tests nothing: the heap it opens has no present checks', () => {
    bench = new TrackerBench(factory, [[10, 1]]);
    assert.equal(bench.heap.presentChecks, false);
    assert.notEqual(bench.heap.userfaultfd, null);
  });

  test('fail() halts the waiting threads before it lets them go, and releases the region', async () => {
    bench = new TrackerBench(factory, [[40, 4]]);
    const b = bench;
    const regions = uffdRegionsOpen();
    const workers = await Promise.all([0, 1].map(() => b.startWorker()));
    const reads = workers.map((w, i) => w.failure({ op: 'read', kind: 'u32', addr: page(40 + i) }));
    await Promise.all([40, 41].map((p) => b.requestFor(p)));
    b.fail();
    for (const error of await Promise.all(reads)) assert.match(error.message, /exited/);
    assert.ok(workers.every((w) => w.hasExited));
    assert.equal(uffdRegionsOpen(), regions - 1);
    // Pages that never came now read as zeros to this thread: nothing of the application is left to see them.
    assert.ok(b.heap.rawPages(42, 1).every((byte) => byte === 0));
  });

  test('a fault read after the bulk channel installed its page is only woken, not fetched', async () => {
    bench = new TrackerBench(factory, [[60, 8]]);
    const b = bench;
    const worker = await b.startWorker();
    const read = worker.read('u32', page(63, 20));
    await b.requestFor(63);
    b.install(60, 8);
    assert.equal(await read, b.sourceU32(page(63, 20)));
    // The fetcher's answer arrives late: the page is present, nothing is installed twice.
    const before = Uint8Array.from(b.heap.rawPages(63, 1));
    await worker.call({ op: 'write', kind: 'u32', addr: page(63, 20), value: 5 });
    b.install(63, 1);
    assert.equal(await worker.read('u32', page(63, 20)), 5, 'a late copy overwrote a written page');
    assert.notDeepEqual(before, b.heap.rawPages(63, 1));
  });

  test('installPages over pages the kernel holds (EEXIST) writes them in place; dropPages makes them fault again', async () => {
    bench = new TrackerBench(factory, [[80, 4]]);
    const b = bench;
    const worker = await b.startWorker();
    // A pre-copy round's version, then a later round's: both installed, the later one wins.
    b.heap.installPages(80, pattern(1, 2 * PAGE_SIZE));
    b.heap.installPages(80, pattern(2, 2 * PAGE_SIZE));
    b.heap.present.publishRange(80, 2);
    assert.deepEqual(
      await worker.call({ op: 'bytes', addr: page(80), len: 2 * PAGE_SIZE }),
      pattern(2, 2 * PAGE_SIZE),
    );
    // BEGIN says page 81 went stale: the thread must not see the old version any more.
    const stale = PageBitmap.create(b.heap.pageCount);
    stale.set(81);
    b.heap.dropPages(stale);
    assert.equal(b.heap.present.get(81), false);
    b.serving = 'auto';
    assert.equal(await worker.read('u32', page(81, 4)), b.sourceU32(page(81, 4)));
    assert.ok(
      b.requests.some((r) => r.first === 81),
      'page 81 was fetched again',
    );
  });

  test('finish() releases the userfaultfd: the memory is plain memory again', async () => {
    bench = new TrackerBench(factory, [[90, 2]]);
    const b = bench;
    b.serving = 'auto';
    const regions = uffdRegionsOpen();
    const worker = await b.startWorker();
    assert.equal(await worker.read('u32', page(91)), b.sourceU32(page(91)));
    b.install(90, 2);
    assert.equal(b.finish().faults, 1);
    assert.equal(b.heap.userfaultfd, null);
    assert.equal(uffdRegionsOpen(), regions - 1);
    // No handler any more, and none needed: every page is here.
    assert.equal(await worker.read('u32', page(90, 8)), b.sourceU32(page(90, 8)));
  });
});

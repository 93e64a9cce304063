import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { PAGE_SIZE } from '../../src/heap/constants.js';
import { page, TrackerBench, trackerCompliance } from './tracker-compliance.js';

const factory = { name: 'Access Tracker', catcher: 'present-checks' } as const;

trackerCompliance(factory);

describe('Access Tracker: what only it does', () => {
  let bench: TrackerBench | undefined;
  afterEach(async () => {
    await bench?.close();
    bench = undefined;
  });

  test('fail(): the waiting access throws PageLostError naming its page; later misses fail at once', async () => {
    bench = new TrackerBench(factory, [[140, 20]]);
    const b = bench;
    const worker = await b.startWorker();
    const read = worker.failure({ op: 'read', kind: 'u32', addr: page(142, 16) });
    await b.requestFor(142);
    b.fail();
    const error = await read;
    assert.equal(error.name, 'PageLostError');
    assert.equal(error.page, 142);
    const again = await worker.failure({ op: 'bytes', addr: page(150), len: 2 * PAGE_SIZE });
    assert.equal(again.name, 'PageLostError');
    assert.equal(again.page, 150);
    assert.equal(b.requests.length, 1, 'a miss after the failure still asked for pages');
    // Present pages are still usable: the application may go on with what it has.
    assert.equal(await worker.read('u32', page(139)), b.sourceU32(page(139)));
  });

  test('a partly installed range that fails names the first lost page', async () => {
    bench = new TrackerBench(factory, [[170, 4]]);
    const b = bench;
    const worker = await b.startWorker();
    const range = worker.failure({ op: 'bytes', addr: page(170), len: 4 * PAGE_SIZE });
    await b.requestFor(170);
    b.install(170, 2);
    b.fail();
    const error = await range;
    assert.equal(error.name, 'PageLostError');
    assert.equal(error.page, 172);
  });

  test('after detach a miss fails at once with PageNotPresentError, asking nothing', async () => {
    bench = new TrackerBench(factory, [[230, 2]]);
    const b = bench;
    b.serving = 'auto';
    const worker = await b.startWorker();
    await worker.read('u32', page(230));
    await worker.call({ op: 'detach' });
    const error = await worker.failure({ op: 'read', kind: 'u32', addr: page(231) });
    assert.equal(error.name, 'PageNotPresentError');
    assert.equal(error.page, 231);
    assert.equal(b.requests.length, 1);
  });
});

import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import { PAGE_SIZE } from '../../src/heap/constants.js';
import { PageBitmap } from '../../src/heap/page-bitmap.js';
import { type MissCatcher, SecureHeap } from '../../src/heap/secure-heap.js';
import type { Tracker } from '../../src/trackers/tracker.js';
import { trackerFor } from '../../src/trackers/tracker-for.js';
import { uffdRegionsOpen } from '../helpers/fault-tracker.js';
import { pattern } from '../heap/heap-fixtures.js';
import type { Scalar, TrackerWorkerData, WorkerCommand, WorkerReply } from './fixtures/tracker-worker.js';

/**
 * The compliance suite every tracker must pass (in the style of js-libp2p's interface tests): call
 * `trackerCompliance(factory)` from a test file. A tracker has an application-thread half (present
 * checks, or the kernel) and an I/O-thread half (`Tracker`, trackers/tracker.ts) that turns waits into
 * demands. Here the application threads are real workers (fixtures/tracker-worker.ts) that attach the
 * tracker's binding and access the heap on command, and the test's main thread plays the I/O thread:
 * it sees each demand, installs page bytes as the destination does (SecureHeap.installPages, then
 * publish and `tracker.installed`), or gives up (`tracker.fail`), whenever a case wants it to.
 */
export interface TrackerFactory {
  /** Names the suite. */
  name: string;
  /** How the destination heap catches misses for this tracker (SecureHeap.createIncoming). */
  catcher: MissCatcher;
}

const HEAP_BYTES = 2 ** 20;
const HEAP_PAGES = HEAP_BYTES / PAGE_SIZE;
/** An access that takes longer than this is a hang (the cases never delay a page for more than ~1 s). */
const ACCESS_TIMEOUT_MS = 20_000;

export interface SeenRequest {
  first: number;
  count: number;
}

/** An application thread under test: a worker with the tracker's binding attached. */
export class TrackedWorker {
  private nextId = 1;
  private readonly pending = new Map<number, (reply: WorkerReply) => void>();
  private exited: Error | null = null;

  constructor(
    readonly index: number,
    private readonly worker: Worker,
  ) {
    worker.on('message', (reply: WorkerReply) => {
      const waiter = this.pending.get(reply.id);
      this.pending.delete(reply.id);
      waiter?.(reply);
    });
    worker.on('error', (err) => this.fail(err));
    worker.on('exit', (code) => this.fail(new Error(`tracker worker exited with code ${code}`)));
  }

  /** Performs one access; resolves with its value, rejects with the worker's error (name kept). */
  async call(command: WorkerCommand): Promise<unknown> {
    const reply = await this.send(command);
    if (reply.ok) return reply.value;
    throw Object.assign(new Error(reply.message), { name: reply.name, page: reply.page });
  }

  /** Performs one access that must fail; resolves with the worker's error (or its exit). */
  async failure(command: WorkerCommand): Promise<{ name: string; message: string; page: number | null }> {
    const reply = await this.send(command);
    if (reply.ok) assert.fail(`${JSON.stringify(command)} succeeded with ${String(reply.value)}`);
    return reply;
  }

  read(kind: Scalar, addr: number): Promise<number> {
    return this.call({ op: 'read', kind, addr }) as Promise<number>;
  }

  get hasExited(): boolean {
    return this.exited !== null;
  }

  terminate(): Promise<number> {
    return this.worker.terminate();
  }

  private send(command: WorkerCommand): Promise<WorkerReply> {
    if (this.exited) return Promise.reject(this.exited);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(
          new Error(`worker ${this.index} hung: ${JSON.stringify(command)} for ${ACCESS_TIMEOUT_MS} ms`),
        );
      }, ACCESS_TIMEOUT_MS);
      this.pending.set(id, (reply) => {
        clearTimeout(timer);
        resolve(reply);
      });
      this.worker.postMessage({ id, command });
    });
  }

  private fail(err: Error): void {
    this.exited ??= err;
    for (const waiter of this.pending.values()) {
      waiter({ id: 0, ok: false, name: err.name, message: err.message, page: null });
    }
    this.pending.clear();
  }
}

/**
 * A destination heap of the factory's kind, shared by the main thread (the I/O thread) and the
 * workers. `source` is what the source enclave holds: every page, with no zero byte in it, so a read
 * of a page that was never installed (zeroed) can never pass for the right value. Pages in `missing`
 * have not arrived; pages in `unallocated` hold nothing to migrate (they read as zeros).
 */
export class TrackerBench {
  readonly heap: SecureHeap;
  readonly source = new Uint8Array(HEAP_BYTES);
  readonly allocated = PageBitmap.create(HEAP_PAGES);
  readonly tracker: Tracker;
  /** Demands the tracker passed to the fetcher. */
  readonly requests: SeenRequest[] = [];
  /** 'auto': answer each demand as it arrives; 'manual': the case installs when it wants. */
  serving: 'auto' | 'manual' = 'manual';
  private readonly workers: TrackedWorker[] = [];
  private readonly requestWaiters: (() => void)[] = [];
  private ended = false;

  constructor(
    factory: TrackerFactory,
    missing: readonly (readonly [first: number, count: number])[],
    unallocated: readonly (readonly [first: number, count: number])[] = [],
  ) {
    this.heap = SecureHeap.createIncoming(HEAP_BYTES, factory.catcher);
    for (let page = 0; page < HEAP_PAGES; page++) {
      const bytes = pattern(page + 1, PAGE_SIZE).map((b) => b || 0xa5);
      this.source.set(bytes, page * PAGE_SIZE);
    }
    this.allocated.setAll();
    for (const [first, count] of unallocated) this.allocated.clearRange(first, count);
    const arrived = this.allocated.copy();
    for (const [first, count] of missing) arrived.clearRange(first, count);
    for (const { first, count } of this.heap.runs(arrived)) this.install(first, count);
    // As the destination does at START: pages that hold nothing to migrate are usable as they are.
    const nothing = this.allocated.copy();
    nothing.invert();
    for (const { first, count } of this.heap.runs(nothing)) this.heap.present.publishRange(first, count);
    this.tracker = trackerFor(this.heap, {
      allocated: this.allocated,
      demand: (first, count) => {
        this.requests.push({ first, count });
        for (const wake of this.requestWaiters.splice(0)) wake();
        if (this.serving === 'auto') setImmediate(() => this.install(first, count));
      },
      haltApplication: () => this.halt(),
    });
  }

  async startWorker(): Promise<TrackedWorker> {
    const index = this.workers.length;
    const { binding, transfer } = this.tracker.bindThread();
    const data: TrackerWorkerData = { heap: this.heap.share(), binding };
    const worker = new Worker(new URL('./fixtures/tracker-worker.js', import.meta.url), {
      workerData: data,
      transferList: transfer,
    });
    const tracked = new TrackedWorker(index, worker);
    this.workers.push(tracked);
    await new Promise<void>((resolve, reject) => {
      worker.once('message', () => resolve());
      worker.once('error', reject);
    });
    return tracked;
  }

  /** Resolves once `n` demands matching `predicate` have arrived (possibly already). */
  async awaitRequests(
    predicate: (r: SeenRequest) => boolean,
    what = 'a fetch request',
    n = 1,
  ): Promise<SeenRequest> {
    const deadline = Date.now() + ACCESS_TIMEOUT_MS;
    for (;;) {
      const found = this.requests.filter(predicate);
      if (found.length >= n) return found[0]!;
      if (Date.now() > deadline) assert.fail(`the fetcher never saw ${what} (${found.length} of ${n})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 100);
        this.requestWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** The first demand naming `page`, once `n` of them have arrived. */
  requestFor(page: number, n = 1): Promise<SeenRequest> {
    return this.awaitRequests(
      (r) => r.first <= page && page < r.first + r.count,
      `${n} request(s) for page ${page}`,
      n,
    );
  }

  /**
   * Installs the source's version of every page of the range that is not present yet, one run at a
   * time, as the destination's installer does; pages already present are never written again (the
   * application may have changed them).
   */
  install(first: number, count: number): void {
    const end = Math.min(first + count, HEAP_PAGES);
    for (let page = first; page < end;) {
      if (this.heap.present.get(page)) {
        page++;
        continue;
      }
      let runEnd = page + 1;
      while (runEnd < end && !this.heap.present.get(runEnd)) runEnd++;
      this.heap.installPages(page, this.source.subarray(page * PAGE_SIZE, runEnd * PAGE_SIZE));
      this.heap.present.publishRange(page, runEnd - page);
      this.tracker?.installed(page, runEnd - page);
      page = runEnd;
    }
  }

  /** What the tracker may call to stop the application threads at once. */
  halt(): void {
    for (const worker of this.workers) void worker.terminate();
  }

  /** Every page to migrate is here: the tracker stops. */
  finish(): ReturnType<Tracker['finish']> {
    this.ended = true;
    return this.tracker.finish();
  }

  /** The fetcher gives up: pages will never come. */
  fail(): void {
    this.ended = true;
    this.tracker.fail();
  }

  sourceU32(addr: number): number {
    return new DataView(this.source.buffer).getUint32(addr, true);
  }

  sourceBytes(addr: number, len: number): Uint8Array {
    return this.source.slice(addr, addr + len);
  }

  /** Teardown, with accesses possibly still waiting: nothing may hang. */
  async close(): Promise<void> {
    const exits = this.workers.map((w) => w.terminate());
    if (!this.ended) this.fail();
    this.heap.releaseUserfaultfd();
    await Promise.all(exits);
  }
}

export const page = (n: number, offset = 0): number => n * PAGE_SIZE + offset;

function requestedPages(requests: readonly SeenRequest[]): Set<number> {
  const pages = new Set<number>();
  for (const r of requests) for (let p = r.first; p < r.first + r.count; p++) pages.add(p);
  return pages;
}

export function trackerCompliance(factory: TrackerFactory): void {
  describe(`tracker compliance: ${factory.name}`, { timeout: 60_000 }, () => {
    let bench: TrackerBench | undefined;
    const setUp = (
      missing: readonly (readonly [number, number])[],
      unallocated: readonly (readonly [number, number])[] = [],
    ): TrackerBench => {
      bench = new TrackerBench(factory, missing, unallocated);
      return bench;
    };
    afterEach(async () => {
      await bench?.close();
      bench = undefined;
    });

    test('a read of a missing page returns the installed value, never the zeroes it held', async () => {
      const b = setUp([[10, 8]]);
      b.serving = 'auto';
      const worker = await b.startWorker();
      const view = new DataView(b.source.buffer);
      view.setUint32(page(13, 516), 0x0001_2345, true); // high word: a u64 small enough for readU64
      view.setFloat64(page(14, 64), -1234.5625, true);

      assert.equal(await worker.read('u8', page(10, 7)), b.source[page(10, 7)]);
      assert.equal(await worker.read('u32', page(11, 4092)), b.sourceU32(page(11, 4092)));
      assert.equal(await worker.read('u32', page(12)), b.sourceU32(page(12)));
      const u64 = 0x0001_2345 * 2 ** 32 + b.sourceU32(page(13, 512));
      assert.equal(await worker.read('u64', page(13, 512)), u64);
      assert.equal(await worker.read('f64', page(14, 64)), -1234.5625);
      for (const addr of [page(10, 7), page(11, 4092), page(12)]) {
        assert.notEqual(await worker.read('u8', addr), 0, 'a zeroed, never installed page was read');
      }
      const requested = requestedPages(b.requests);
      for (const p of [10, 11, 12, 13, 14]) assert.ok(requested.has(p), `page ${p} was never requested`);
      assert.ok(
        [...requested].every((p) => p >= 10 && p < 18),
        `requests for pages that were present: ${JSON.stringify(b.requests)}`,
      );
    });

    test('a write to a missing page lands on top of the installed content', async () => {
      const b = setUp([[20, 4]]);
      b.serving = 'auto';
      const worker = await b.startWorker();
      await worker.call({ op: 'write', kind: 'u32', addr: page(20, 100), value: 0xdeadbeef });
      await worker.call({ op: 'write', kind: 'u8', addr: page(21, 4095), value: 0 });
      await worker.call({ op: 'write', kind: 'u64', addr: page(22, 8), value: 2 ** 53 - 1 });
      await worker.call({ op: 'write', kind: 'f64', addr: page(23, 0), value: Math.PI });

      const expected = b.sourceBytes(page(20), 4 * PAGE_SIZE);
      const view = new DataView(expected.buffer);
      view.setUint32(100, 0xdeadbeef, true);
      view.setUint8(PAGE_SIZE + 4095, 0);
      view.setUint32(2 * PAGE_SIZE + 8, 2 ** 32 - 1, true);
      view.setUint32(2 * PAGE_SIZE + 12, 2 ** 21 - 1, true);
      view.setFloat64(3 * PAGE_SIZE, Math.PI, true);
      assert.deepEqual(
        b.heap.rawPages(20, 4),
        expected,
        'every other byte of the pages is the installed one',
      );
      assert.equal(b.heap.dirty.countRange(20, 4), 4, 'each written page is dirty');
      assert.equal(await worker.read('u32', page(20, 100)), 0xdeadbeef);
      assert.equal(await worker.read('u64', page(22, 8)), 2 ** 53 - 1);
    });

    test('a range access across several missing pages sees every installed page, in any install order', async () => {
      // Page 31 is present and was changed here: the range must show the local version, not the source's.
      const b = setUp([
        [30, 1],
        [32, 3],
      ]);
      const local = pattern(999, PAGE_SIZE);
      b.heap.rawPages(31, 1).set(local); // present, so written in place (no fault on this thread)
      const worker = await b.startWorker();
      const addr = page(30, 100);
      const len = 4 * PAGE_SIZE; // pages 30-34
      const reading = worker.call({ op: 'bytes', addr, len });
      const request = await b.requestFor(30);
      // The first page first, then back to front, one at a time: the reader sees pages arrive while it
      // still waits for others, and must not stop at the first one.
      for (const p of [30, 34, 33, 32]) {
        b.install(p, 1);
        await sleep(15);
      }
      const expected = b.sourceBytes(addr, len);
      expected.set(local, PAGE_SIZE - 100);
      assert.deepEqual(await reading, expected);
      // Pages installed before the reader reached them need not be asked for (the Fault Tracker
      // faults page by page; the Access Tracker asks for the whole range at once).
      assert.ok(requestedPages(b.requests).has(30), 'page 30 was never requested');
      assert.ok(
        b.requests.every((r) => r.first >= 30 && r.first + r.count <= 35),
        `requests outside the accessed range: ${JSON.stringify(b.requests)} (first ${request.first})`,
      );

      // And a write across missing pages (mutableBytes): the bytes around it stay the installed ones.
      b.serving = 'auto';
      const [first, count] = [40, 3];
      const gone = PageBitmap.create(HEAP_PAGES);
      gone.setRange(first, count);
      b.heap.dropPages(gone);
      const data = pattern(4242, 2 * PAGE_SIZE);
      await worker.call({ op: 'write-bytes', addr: page(first, PAGE_SIZE - 5), data });
      const written = b.sourceBytes(page(first), count * PAGE_SIZE);
      written.set(data, PAGE_SIZE - 5);
      assert.deepEqual(b.heap.rawPages(first, count), written);
      assert.equal(b.heap.dirty.countRange(first, count), 3);
    });

    test('several threads faulting on the same page at once all get its value, and nobody hangs', async () => {
      const b = setUp([[50, 1]]);
      const workers = await Promise.all([0, 1, 2, 3].map(() => b.startWorker()));
      const offsets = [0, 1024, 2048, 4092];
      const reads = workers.map((w, i) => w.read('u32', page(50, offsets[i])));
      // Every thread waits (its demand has arrived) before the one install.
      await b.requestFor(50, workers.length);
      b.install(50, 1);
      assert.deepEqual(
        await Promise.all(reads),
        offsets.map((o) => b.sourceU32(page(50, o))),
      );
      assert.ok(b.finish().faults >= workers.length, 'every waiting thread was seen');
    });

    test('faults on different pages at once, some sharing a bitmap word, each get their own page', async () => {
      // Pages 60-62 share one present-bitmap word: installing one wakes the waiters of the others.
      const pages = [60, 61, 62, 95, 130, 201];
      const b = setUp(pages.map((p) => [p, 1] as const));
      const workers = await Promise.all(pages.map(() => b.startWorker()));
      const reads = workers.map((w, i) => w.read('u32', page(pages[i]!, 4 * i)));
      await Promise.all(pages.map((p) => b.requestFor(p)));
      for (const p of [...pages].reverse()) {
        b.install(p, 1);
        await sleep(10);
      }
      assert.deepEqual(
        await Promise.all(reads),
        pages.map((p, i) => b.sourceU32(page(p, 4 * i))),
      );
    });

    test('a page installed by the bulk push while its fault is in flight: the access completes', async () => {
      const b = setUp([[64, 32]]);
      const worker = await b.startWorker();

      // The request is never answered: the bulk channel brings the page (with its neighbours).
      const read = worker.read('u32', page(70, 40));
      await b.requestFor(70);
      b.install(64, 16);
      assert.equal(await read, b.sourceU32(page(70, 40)));

      // Part of a range arrives by bulk, the rest by the answers to the requests.
      const range = worker.call({ op: 'bytes', addr: page(80, 10), len: 3 * PAGE_SIZE });
      await b.requestFor(80);
      b.install(80, 2);
      await sleep(10);
      b.serving = 'auto';
      for (const r of [...b.requests]) b.install(r.first, r.count);
      assert.deepEqual(await range, b.sourceBytes(page(80, 10), 3 * PAGE_SIZE));
      b.serving = 'manual';

      // Both at once, the answer after the bulk copy: installed once, the access sees it.
      const both = worker.read('u8', page(90, 1));
      const third = await b.requestFor(90);
      b.install(88, 8);
      b.install(third.first, third.count);
      assert.equal(await both, b.source[page(90, 1)]);
    });

    test('accesses racing a bulk push in address order always read the installed bytes', async () => {
      const [first, count] = [100, 100];
      const b = setUp([[first, count]]);
      b.serving = 'auto';
      const worker = await b.startWorker();
      let pushed = first;
      const push = (async () => {
        while (pushed < first + count) {
          b.install(pushed, 4);
          pushed += 4;
          await sleep(1);
        }
      })();
      let seed = 7;
      const random = (n: number) => {
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
        return seed % n;
      };
      for (let i = 0; i < 150; i++) {
        const addr = page(first + random(count), random(PAGE_SIZE / 4) * 4);
        assert.equal(await worker.read('u32', addr), b.sourceU32(addr), `read ${i} at ${addr}`);
      }
      await push;
      assert.equal(b.heap.present.countRange(first, count), count);
    });

    test('fail(): a waiting access never returns a value, and no thread hangs', async () => {
      const b = setUp([[140, 20]]);
      const regions = uffdRegionsOpen();
      const worker = await b.startWorker();
      const read = worker.failure({ op: 'read', kind: 'u32', addr: page(142, 16) });
      await b.requestFor(142);
      b.fail();
      const error = await read;
      // The Access Tracker fails the access; the Fault Tracker halts the thread.
      assert.ok(
        error.name === 'PageLostError' || (worker.hasExited && /exited/.test(error.message)),
        `${error.name}: ${error.message}`,
      );
      assert.equal(b.heap.userfaultfd, null, 'the userfaultfd is released');
      assert.equal(uffdRegionsOpen(), regions - (factory.catcher === 'userfaultfd' ? 1 : 0));
    });

    test('teardown while threads wait on pages that never come: nothing hangs or leaks', async () => {
      const b = setUp([[150, 10]]);
      const regions = uffdRegionsOpen();
      const workers = await Promise.all([0, 1, 2].map(() => b.startWorker()));
      const accesses = workers.map((w, i) =>
        w.call({ op: 'bytes', addr: page(150 + 3 * i), len: 2 * PAGE_SIZE }).then(
          (value) => ({ value }),
          (error: Error) => ({ error }),
        ),
      );
      await Promise.all([150, 153, 156].map((p) => b.requestFor(p)));
      await b.close();
      for (const outcome of await Promise.all(accesses)) {
        assert.ok('error' in outcome, 'an access of a page that never came returned a value');
      }
      assert.equal(uffdRegionsOpen(), regions - (factory.catcher === 'userfaultfd' ? 1 : 0));
    });

    test('a page that holds nothing to migrate reads as zeros at once: no demand reaches the fetcher', async () => {
      const b = setUp([[180, 4]], [[176, 4]]);
      const worker = await b.startWorker();
      assert.equal(await worker.read('u32', page(177, 12)), 0);
      assert.deepEqual(
        await worker.call({ op: 'bytes', addr: page(178), len: 2 * PAGE_SIZE }),
        new Uint8Array(2 * PAGE_SIZE),
      );
      await worker.call({ op: 'write', kind: 'u32', addr: page(176, 8), value: 77 });
      assert.equal(await worker.read('u32', page(176, 8)), 77);
      assert.deepEqual(b.requests, []);
    });

    test('a hit never posts a request; faults are counted with a latency each', async () => {
      const b = setUp([[220, 2]]);
      const worker = await b.startWorker();
      for (let p = 0; p < 220; p += 7) {
        await worker.read('u8', page(p, 3));
        await worker.read('u32', page(p, 8));
        await worker.call({ op: 'write', kind: 'u32', addr: page(p, 12), value: p });
        await worker.call({ op: 'bytes', addr: page(p, 4000), len: PAGE_SIZE });
        await worker.call({ op: 'write-bytes', addr: page(p, 4090), data: new Uint8Array(12) });
      }
      assert.deepEqual(b.requests, [], 'a hit asked for pages');
      const miss = worker.read('u32', page(221, 4));
      const request = await b.requestFor(221);
      assert.equal(b.requests.length, 1, `requests: ${JSON.stringify(b.requests)}`);
      assert.equal(request.first, 221);
      b.install(221, 1);
      assert.equal(await miss, b.sourceU32(page(221, 4)));
      assert.equal(await worker.read('u32', page(221, 8)), b.sourceU32(page(221, 8)), 'now a hit');
      assert.equal(b.requests.length, 1, 'the second access to page 221 was a hit');
      b.install(220, 1);
      const stats = b.finish();
      assert.equal(stats.kind, b.tracker.kind);
      assert.equal(stats.faults, 1);
      assert.equal(stats.latenciesUs.length, 1);
      assert.ok(stats.latenciesUs[0]! >= 0);
    });
  });
}

import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { PAGE_SIZE } from '../heap/constants.js';
import { PageBitmap } from '../heap/page-bitmap.js';
import { SecureHeap } from '../heap/secure-heap.js';
import { missCatcherFor } from '../trackers/choice.js';
import type { TrackerKind } from '../trackers/tracker.js';
import { trackerFor } from '../trackers/tracker-for.js';
import type { FaultLatencyReply, FaultLatencyWorkerData } from './fault-latency-worker.js';
import { xorshift } from '../util/random.js';

/**
 * Fault latency at the application thread, one tracker per call (section B of `npm run
 * bench:tracker`, tracker-overhead.ts, which runs each tracker in its own process).
 *
 * The process plays a destination enclave after START, without the network: the main thread is the
 * I/O thread, with the tracker's I/O half from trackerFor; it answers each demand on the next turn of
 * its event loop by installing the source's bytes for the demanded pages (installPages, publish,
 * tracker.installed), as the destination does when the urgent channel brings them. A worker
 * (fault-latency-worker.ts) is the application thread: it reads one u32 from each of `warmup + reads`
 * distinct missing pages, in random order, and times each read alone, so each sample is the
 * miss-to-usable latency the application sees (both hops between the threads, and the kernel's for
 * the Fault Tracker). The tracker's own figure
 * for the same faults (TrackerStats.latenciesUs: demand seen on the I/O thread to pages installed) is
 * returned next to it. Each condition runs on a fresh heap of `heapBytes`, every page allocated and
 * none present:
 *   idle  the I/O thread does nothing else;
 *   busy  the I/O thread also pushes pages in 64-page chunks, yielding to the event loop between
 *         chunks, as the post-copy push does: the upper half of the heap, which the worker never reads
 *         (it reads the lower half; the halves share no bitmap word). One push of the upper half
 *         takes far less time than the reads, so it starts over until they are done (pushUpperHalf);
 *   zero  (Fault Tracker only) no page is allocated: the tracker answers each fault with a zero page
 *         (UFFDIO_ZEROPAGE) on the spot, and no demand may reach the fetcher. The Access Tracker has no
 *         such path: a page that holds nothing to migrate is present from START, and reading it is a hit.
 * Every value read is checked against the source (zero for `zero`): a wrong one throws. Every wait is
 * bounded: a hung read fails the tracker (which ends the worker's wait) and throws.
 */

export type LatencyCondition = 'idle' | 'busy' | 'zero';

export interface FaultLatencyOptions {
  tracker: TrackerKind;
  heapBytes: number;
  /** Timed reads per condition, each of a different missing page in the lower half of the heap. */
  reads: number;
  /**
   * Reads before the timed ones (pages of their own), not counted. The JIT optimises both threads'
   * code during these: a compile inside a timed read adds milliseconds, on either thread.
   */
  warmup: number;
  conditions: readonly LatencyCondition[];
}

export interface ConditionSamples {
  condition: LatencyCondition;
  /** Application thread: microseconds of each timed read, in read order. */
  appUs: number[];
  /** I/O thread: the tracker's latency of each timed read's fault (TrackerStats.latenciesUs). */
  ioUs: number[];
  /** Faults the tracker saw, warm-up included. */
  faults: number;
  /** Reads whose value was checked against the source, warm-up included. */
  checked: number;
  /** busy: the bulk push while the worker read (all zero in the other conditions). */
  push: PushFigures;
}

export interface PushFigures {
  pages: number;
  /** Times the whole upper half was pushed. */
  covers: number;
  /** Nanoseconds the I/O thread spent installing chunks, and the push's wall time. */
  chunkNs: number;
  wallNs: number;
}

interface PushState extends PushFigures {
  /** Cleared when the reads are over. */
  on: boolean;
}

/** Pages per bulk install in the busy condition: the post-copy push's chunk. */
export const PUSH_CHUNK_PAGES = 64;
const READY_TIMEOUT_MS = 10_000;
/** Reads take tens of microseconds each; a batch that takes this much longer hung. */
const READS_TIMEOUT_MS = 30_000;
const READ_TIMEOUT_MS = 10;
const WORKER_URL = new URL('./fault-latency-worker.js', import.meta.url);

export async function measureFaultLatency(options: FaultLatencyOptions): Promise<ConditionSamples[]> {
  if (options.tracker === 'access' && options.conditions.includes('zero')) {
    throw new Error(
      'the Access Tracker has no zero-page path: pages that hold nothing to migrate are present',
    );
  }
  const samples: ConditionSamples[] = [];
  let source: Uint32Array | null = null;
  for (const [index, condition] of options.conditions.entries()) {
    const heap = SecureHeap.createIncoming(options.heapBytes, missCatcherFor(options.tracker));
    try {
      source ??= sourceWords(heap.byteLength);
      samples.push(await measureCondition(heap, source, condition, options, 0x5eed + index));
    } finally {
      heap.releaseUserfaultfd();
    }
  }
  return samples;
}

/** Reads of distinct pages (warm-up included) that a heap of `heapBytes` has room for. */
export function maxReads(heapBytes: number): number {
  return lowerHalfPages(Math.ceil(heapBytes / PAGE_SIZE));
}

/** The pages read: the lower half, rounded down to whole bitmap words so that no word holds both halves. */
function lowerHalfPages(pageCount: number): number {
  return Math.floor(pageCount / 64) * 32;
}

/** What the source enclave holds: no zero word, so a page read before it was installed never passes. */
function sourceWords(bytes: number): Uint32Array {
  const next = xorshift(0xc0ffee);
  const words = new Uint32Array(bytes / 4);
  for (let i = 0; i < words.length; i++) words[i] = next();
  return words;
}

async function measureCondition(
  heap: SecureHeap,
  source: Uint32Array,
  condition: LatencyCondition,
  options: FaultLatencyOptions,
  seed: number,
): Promise<ConditionSamples> {
  const { pageCount } = heap;
  const lowerHalf = lowerHalfPages(pageCount);
  const reads = options.warmup + options.reads;
  if (reads > lowerHalf) {
    throw new RangeError(`${reads} reads of distinct pages need a heap of at least ${2 * reads} pages`);
  }
  const sourceBytes = new Uint8Array(source.buffer);
  const allocated = PageBitmap.create(pageCount);
  if (condition !== 'zero') allocated.setAll();
  // As the destination does at START: pages that hold nothing to migrate are usable as they are.
  const nothing = allocated.copy();
  nothing.invert();
  for (const run of heap.runs(nothing)) heap.present.publishRange(run.first, run.count);

  let demandedPages = 0;
  /** The source's version of the missing pages of the range, as the destination's installer puts it in. */
  const install = (first: number, count: number): void => {
    for (let page = first; page < first + count;) {
      if (heap.present.get(page)) {
        page++;
        continue;
      }
      let end = page + 1;
      while (end < first + count && !heap.present.get(end)) end++;
      heap.installPages(page, sourceBytes.subarray(page * PAGE_SIZE, end * PAGE_SIZE));
      heap.present.publishRange(page, end - page);
      tracker.installed(page, end - page);
      page = end;
    }
  };
  const tracker = trackerFor(heap, {
    allocated,
    demand: (first, count) => {
      demandedPages += count;
      // A destination's answer comes in from the urgent channel on a later turn of the event loop,
      // after the bulk chunk that turn runs. Answered inside this callback, the Access Tracker's port
      // would hand over the next miss in the same callback, and the push would never run.
      setImmediate(() => install(first, count));
    },
    // Only called once the worker runs (tracker.fail).
    haltApplication: () => void running.terminate(),
  });
  const { binding, transfer } = tracker.bindThread();
  const workerData: FaultLatencyWorkerData = { heap: heap.share(), binding };
  const running = new Worker(WORKER_URL, { workerData, transferList: transfer });
  // nextMessage reports an error while it waits; outside a wait, the one expected is the worker's
  // access failing after tracker.fail(), and an unheard 'error' event would kill this process.
  running.on('error', () => {});

  const push: PushState = { on: condition === 'busy', pages: 0, covers: 0, chunkNs: 0, wallNs: 0 };
  let pushing: Promise<void> = Promise.resolve();
  let pushError: unknown = null;
  let reply: FaultLatencyReply;
  try {
    await nextMessage(running, READY_TIMEOUT_MS, 'ready');
    const addrs = addresses(lowerHalf, reads, seed);
    if (push.on) {
      pushing = pushUpperHalf(heap, lowerHalf, install, push).catch((err: unknown) => {
        pushError = err;
      });
    }
    running.postMessage(addrs);
    reply = await nextMessage<FaultLatencyReply>(
      running,
      READS_TIMEOUT_MS + reads * READ_TIMEOUT_MS,
      'reply',
    );
    push.on = false;
    await pushing;
    if (pushError) throw pushError;
    for (let i = 0; i < reads; i++) {
      const addr = addrs[i]!;
      const expected = condition === 'zero' ? 0 : source[addr / 4]!;
      if (reply.values[i] !== expected) {
        throw new Error(
          `${options.tracker} tracker, ${condition}: read ${i} at ${addr} (page ${Math.floor(addr / PAGE_SIZE)}) returned ${reply.values[i]}, the source holds ${expected}`,
        );
      }
    }
    if (demandedPages !== 0 && condition === 'zero') {
      throw new Error(`${demandedPages} pages that hold nothing to migrate were demanded from the fetcher`);
    }
  } catch (err) {
    push.on = false;
    // Ends any wait of the worker: the Access Tracker fails its access, the Fault Tracker halts it.
    tracker.fail();
    await running.terminate();
    await pushing;
    throw err;
  }
  // Not every page is here, but the measurement is over: this stops the tracker and returns its figures.
  const stats = tracker.finish();
  await running.terminate();
  return {
    condition,
    appUs: Array.from(reply.ns.subarray(options.warmup), (ns) => ns / 1000),
    ioUs: stats.latenciesUs.slice(options.warmup),
    faults: stats.faults,
    checked: reads,
    push: { pages: push.pages, covers: push.covers, chunkNs: push.chunkNs, wallNs: push.wallNs },
  };
}

/** One u32 in each of `count` distinct pages of [0, pages), pages in random order, offsets random. */
function addresses(pages: number, count: number, seed: number): Float64Array {
  const next = xorshift(seed);
  const order = Uint32Array.from({ length: pages }, (_, i) => i);
  const addrs = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const j = i + (next() % (pages - i));
    const page = order[j]!;
    order[j] = order[i]!;
    addrs[i] = page * PAGE_SIZE + (next() % (PAGE_SIZE / 4)) * 4;
  }
  return addrs;
}

/**
 * The bulk channel's work while `state.on`: the upper half in 64-page chunks, over and over. The first
 * cover installs missing pages (UFFDIO_COPY on userfaultfd memory, a first touch of fresh memory on
 * the Access Tracker's heap); a later one clears a chunk's present bits just before it goes in again
 * and so writes memory the kernel holds already, the same work (a copy) on either heap. Dropping the
 * pages instead would make the Fault Tracker's re-installs allocate again but not the other's.
 */
async function pushUpperHalf(
  heap: SecureHeap,
  from: number,
  install: (first: number, count: number) => void,
  state: PushState,
): Promise<void> {
  const started = process.hrtime.bigint();
  let page = from;
  while (state.on) {
    if (page === heap.pageCount) {
      page = from;
      state.covers++;
    }
    const count = Math.min(PUSH_CHUNK_PAGES, heap.segmentEndPage(page) - page);
    const chunkStart = process.hrtime.bigint();
    heap.present.clearRange(page, count);
    install(page, count);
    const now = process.hrtime.bigint();
    state.chunkNs += Number(now - chunkStart);
    state.wallNs = Number(now - started);
    state.pages += count;
    page += count;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** The worker's next message; its error, or no message within `ms`, rejects. */
async function nextMessage<T>(worker: Worker, ms: number, what: string): Promise<T> {
  try {
    const [message] = await once(worker, 'message', { signal: AbortSignal.timeout(ms) });
    return message as T;
  } catch (err) {
    if ((err as Error).name === 'AbortError') {
      throw new Error(`the application thread sent no ${what} within ${ms} ms`, { cause: err });
    }
    throw err;
  }
}

export interface LatencySummary {
  n: number;
  p50: number;
  p99: number;
  max: number;
  mean: number;
}

/** Percentiles as the migration report takes them (the sample at floor(q * n) of the sorted samples). */
export function summariseLatency(samples: readonly number[]): LatencySummary {
  const sorted = [...samples].sort((a, b) => a - b);
  const n = sorted.length;
  const at = (q: number) => (n === 0 ? Number.NaN : sorted[Math.min(n - 1, Math.floor(q * n))]!);
  return {
    n,
    p50: at(0.5),
    p99: at(0.99),
    max: n === 0 ? Number.NaN : sorted[n - 1]!,
    mean: n === 0 ? Number.NaN : sorted.reduce((sum, x) => sum + x, 0) / n,
  };
}

import type { MessagePort } from 'node:worker_threads';
import type { SecureHeap } from '../heap/secure-heap.js';
import {
  FETCH_FAILED,
  type FetchRequest,
  PageLostError,
  type Tracker,
  type TrackerStats,
} from './tracker.js';

/** Fault latencies kept per migration; beyond this the count still grows but no sample is kept. */
const MAX_SAMPLES = 1_000_000;
/** Wait slices: short enough to notice a failed fetcher, long enough to cost nothing while waiting. */
const WAIT_SLICE_MS = 200;

/**
 * The Access Tracker: every SecureHeap accessor already tests the present bitmap inline; on a miss
 * it lands here, posts the missing range to the fetcher and blocks in Atomics.wait until the fetcher
 * has installed the pages and set their bits (PageBitmap.publishRange wakes it). The hit path costs
 * one load, mask and branch per access; nothing of this class runs on a hit.
 */
export class AccessTracker implements Tracker {
  readonly kind = 'access' as const;
  private faults = 0;
  private readonly latenciesUs: number[] = [];

  constructor(
    private readonly heap: SecureHeap,
    private readonly fetcher: MessagePort,
    /** Shared with the fetcher: FETCH_FAILED becomes non-zero when pages will never arrive. */
    private readonly state: Int32Array,
  ) {}

  attach(): void {
    this.heap.onMiss = (first, count) => this.fetch(first, count);
  }

  detach(): TrackerStats {
    this.heap.onMiss = null;
    this.fetcher.close();
    return this.stats();
  }

  stats(): TrackerStats {
    return { kind: this.kind, faults: this.faults, latenciesUs: [...this.latenciesUs] };
  }

  private fetch(first: number, count: number): void {
    const started = process.hrtime.bigint();
    const { present } = this.heap;
    // Once the fetcher gave up, a miss fails at once rather than after a wait slice per access.
    if (Atomics.load(this.state, FETCH_FAILED) !== 0) {
      throw new PageLostError(this.heap.present.firstClear(first, count));
    }
    const request: FetchRequest = [first, count];
    this.fetcher.postMessage(request);
    for (let page = first; page < first + count; page++) {
      while (!present.waitUntilSet(page, WAIT_SLICE_MS)) {
        if (Atomics.load(this.state, FETCH_FAILED) !== 0) throw new PageLostError(page);
      }
    }
    this.faults++;
    if (this.latenciesUs.length < MAX_SAMPLES) {
      this.latenciesUs.push(Number(process.hrtime.bigint() - started) / 1000);
    }
  }
}

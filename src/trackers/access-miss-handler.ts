import type { MessagePort } from 'node:worker_threads';
import type { SecureHeap } from '../heap/secure-heap.js';
import { FETCH_FAILED, type FetchRequest, PageLostError } from './tracker.js';

/** Wait slices: short enough to notice a failed fetcher, long enough to cost nothing while waiting. */
const WAIT_SLICE_MS = 200;

/**
 * The Access Tracker, application-thread half: every SecureHeap accessor already tests the present
 * bitmap inline; on a miss it lands here, posts the missing range to the I/O thread (AccessTracker)
 * and blocks in Atomics.wait until the pages' bits are set (PageBitmap.publishRange wakes it). The
 * hit path costs one load, mask and branch per access; nothing of this class runs on a hit.
 */
export class AccessMissHandler {
  constructor(
    private readonly heap: SecureHeap,
    private readonly requests: MessagePort,
    /** Shared with the I/O thread: FETCH_FAILED becomes non-zero when pages will never arrive. */
    private readonly state: Int32Array,
  ) {}

  attach(): void {
    this.heap.onMiss = (first, count) => this.fetch(first, count);
  }

  detach(): void {
    this.heap.onMiss = null;
    this.requests.close();
  }

  private fetch(first: number, count: number): void {
    const { present } = this.heap;
    // Once the fetcher gave up, a miss fails at once rather than after a wait slice per access.
    if (Atomics.load(this.state, FETCH_FAILED) !== 0) {
      throw new PageLostError(present.firstClear(first, count));
    }
    const request: FetchRequest = [first, count];
    this.requests.postMessage(request);
    for (let page = first; page < first + count; page++) {
      while (!present.waitUntilSet(page, WAIT_SLICE_MS)) {
        if (Atomics.load(this.state, FETCH_FAILED) !== 0) throw new PageLostError(page);
      }
    }
  }
}

import { setImmediate as yieldToEvents } from 'node:timers/promises';
import { PAGE_SIZE } from '../heap/constants.js';
import type { PageBitmap } from '../heap/page-bitmap.js';
import type { PageSetDigest } from '../heap/page-set-digest.js';
import type { SecureHeap } from '../heap/secure-heap.js';
import type { RateLimiter } from '../wire/rate-limiter.js';
import { ProtocolError, receiveControl } from './control-channel.js';
import { PUSH_EXTENT_PAGES } from './extents.js';
import { MAX_FETCH_PAGES } from './messages.js';
import { type PageSink, sendExtent } from './page-frames.js';
import type { Channel } from './link.js';

/**
 * Pages sent around a demanded page: the aligned block that holds it. Neighbours are likely next
 * (spatial locality), and one fetch of 16 pages costs far less than 16 faults (DESIGN.md §8).
 */
export const FETCH_BLOCK_PAGES = 16;

export interface PushStats {
  pagesPushed: number;
  pagesFetched: number;
  fetchesServed: number;
}

/**
 * The source side of post-copy (DESIGN.md §4.6): pushes every page still pending over the bulk
 * channel in address order, and answers demand fetches on the urgent channel at once. A fetch moves
 * the bulk cursor to just after the block it served, so the push continues where the application is
 * working. The application is paused here, so every copy of a page is the same version: a page sent
 * on both channels is installed once by the destination and dropped the second time.
 */
export class PostcopyPusher {
  readonly stats: PushStats = { pagesPushed: 0, pagesFetched: 0, fetchesServed: 0 };
  private cursor = 0;
  private left: number;
  private stopped = false;
  private releasePush!: () => void;
  /** Opens when the destination says it resumed (or after a reconnection, which proves it runs). */
  private readonly pushGate = new Promise<void>((resolve) => {
    this.releasePush = resolve;
  });

  constructor(
    private readonly heap: SecureHeap,
    /** The pages to migrate (allocated at the blackout). */
    private readonly allocated: PageBitmap,
    /** Pages not sent yet; cleared as they go. */
    private readonly pending: PageBitmap,
    private bulk: PageSink,
    private urgent: Channel,
    private readonly epoch: number,
    private readonly digest: PageSetDigest | null,
    private readonly limit: RateLimiter,
    private readonly onProgress: () => void,
  ) {
    this.left = pending.count();
  }

  get pagesLeft(): number {
    return this.left;
  }

  /** The connections of a new generation, after the link broke. */
  use(bulk: PageSink, urgent: Channel): void {
    this.bulk = bulk;
    this.urgent = urgent;
  }

  /** What the destination holds after a reconnection: everything else is pending again. */
  resync(present: PageBitmap): void {
    this.releasePush();
    this.pending.clearAll();
    this.pending.or(this.allocated);
    this.pending.andNot(present);
    this.left = this.pending.count();
    this.cursor = 0;
  }

  /** Pushes until nothing is pending; serving fetches goes on until stop(). */
  async push(): Promise<void> {
    await this.pushGate;
    while (this.left > 0 && !this.stopped) {
      // Fetches arrive as I/O events; a resolved send alone would never let them in.
      await yieldToEvents();
      let first = this.pending.nextSet(this.cursor);
      if (first === -1) first = this.pending.nextSet(0);
      if (first === -1) break;
      const clear = this.pending.nextClear(first);
      const end = Math.min(
        clear === -1 ? this.heap.pageCount : clear,
        this.heap.segmentEndPage(first),
        first + PUSH_EXTENT_PAGES,
      );
      await this.limit.take((end - first) * PAGE_SIZE);
      if (this.stopped) break;
      this.cursor = end;
      this.markSent(first, end - first);
      await sendExtent(this.bulk, this.heap, first, end - first, this.epoch, this.digest);
      this.stats.pagesPushed += end - first;
      this.onProgress();
    }
  }

  /**
   * Answers fetches on the current urgent channel until stop(); rejects when that channel breaks (the
   * caller dials again) or a request is malformed (a protocol error).
   */
  async serveFetches(): Promise<void> {
    const urgent = this.urgent;
    for (;;) {
      let message;
      try {
        message = await receiveControl(urgent.channel, urgent.opener);
      } catch (err) {
        if (this.stopped) return;
        throw err;
      }
      if (message.t === 'resumed') {
        this.releasePush();
        continue;
      }
      if (message.t !== 'fetch') throw new ProtocolError(`unexpected '${message.t}' on the urgent channel`);
      await this.serveFetch(message.first, message.count);
    }
  }

  stop(): void {
    this.stopped = true;
  }

  private async serveFetch(first: number, count: number): Promise<void> {
    const { heap, allocated } = this;
    if (
      count > MAX_FETCH_PAGES ||
      first + count > heap.pageCount ||
      allocated.countRange(first, count) !== count
    ) {
      throw new ProtocolError(`fetch of pages ${first}+${count} that are not all to migrate`);
    }
    this.stats.fetchesServed++;
    // The demanded pages always go, even if the bulk channel sent them a moment ago: that copy may
    // still be queued behind megabytes of bulk data. Their unsent neighbours in the block come along.
    const blockStart = Math.floor(first / FETCH_BLOCK_PAGES) * FETCH_BLOCK_PAGES;
    const blockEnd = Math.min(
      Math.max(first + count, blockStart + FETCH_BLOCK_PAGES),
      heap.segmentEndPage(first),
      heap.pageCount,
    );
    let runStart = -1;
    for (let page = blockStart; page <= blockEnd; page++) {
      const wanted =
        page < blockEnd &&
        allocated.get(page) &&
        ((page >= first && page < first + count) || this.pending.get(page));
      if (wanted && runStart === -1) runStart = page;
      if (!wanted && runStart !== -1) {
        this.markSent(runStart, page - runStart);
        await sendExtent(this.urgent, heap, runStart, page - runStart, this.epoch, this.digest);
        this.stats.pagesFetched += page - runStart;
        runStart = -1;
      }
    }
    this.cursor = blockEnd;
    this.onProgress();
  }

  private markSent(first: number, count: number): void {
    const before = this.pending.countRange(first, count);
    this.pending.clearRange(first, count);
    this.left -= before;
  }
}

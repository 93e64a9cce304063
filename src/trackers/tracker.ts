/**
 * Trackers stop use-before-restore on a destination that runs before its heap has arrived
 * (DESIGN.md §3). A tracker lives on the application thread: on a miss it asks the fetcher (on the
 * enclave's I/O thread, which owns the migration channels) for the pages and blocks until they are
 * installed. The fetcher side is the same for every tracker: a FetchRequest on a MessagePort, pages
 * published with PageBitmap.publishRange.
 */

export const TRACKER_KINDS = ['access'] as const;
export type TrackerKind = (typeof TRACKER_KINDS)[number];

/** One demand fetch, posted by the application thread; the pages are [first, first + count). */
export type FetchRequest = readonly [first: number, count: number];

/** Figures for the migration report, kept on the application thread. */
export interface TrackerStats {
  kind: TrackerKind;
  /** Accesses that found a page missing and had to wait for it. */
  faults: number;
  /** Microseconds from the miss to the pages being usable, one entry per fault (capped). */
  latenciesUs: number[];
}

export interface Tracker {
  readonly kind: TrackerKind;
  /** Starts catching misses on the heap. */
  attach(): void;
  /** Stops catching misses (every page is present); returns the figures. */
  detach(): TrackerStats;
  stats(): TrackerStats;
}

/** The fetcher gave up (the migration failed before this page arrived): it will never arrive. */
export class PageLostError extends Error {
  override name = 'PageLostError';
  constructor(readonly page: number) {
    super(`page ${page} cannot be restored: the migration failed before it arrived`);
  }
}

/** Index of the flag in the shared state word array that the fetcher sets when it gives up. */
export const FETCH_FAILED = 0;

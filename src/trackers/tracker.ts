import type { MessagePort, Transferable } from 'node:worker_threads';

/**
 * Trackers stop use-before-restore on a destination that runs before its heap has arrived
 * (DESIGN.md §3). A tracker has two halves. On the application thread, whatever makes an access to a
 * missing page wait: the present test in every accessor (Access Tracker), or the kernel (Fault
 * Tracker: the heap is a userfaultfd region). On the enclave's I/O thread, which owns the migration
 * channels, the `Tracker` below: it turns each wait into a demand for the fetcher, hears of installed
 * pages, and ends the waits when the pages will never come. The two trackers differ only in these
 * halves; the fetcher, the urgent channel and the protocol are the same.
 */

export const TRACKER_KINDS = ['access', 'fault'] as const;
export type TrackerKind = (typeof TRACKER_KINDS)[number];

/** Pages [first, first + count) that an application thread waits for. */
export type DemandHandler = (first: number, count: number) => void;

/** One demand fetch, posted by the application thread; the pages are [first, first + count). */
export type FetchRequest = readonly [first: number, count: number];

/** Figures for the migration report, kept on the I/O thread. */
export interface TrackerStats {
  kind: TrackerKind;
  /** Waits the tracker saw: a miss posted by an accessor, or a page fault read from the kernel. */
  faults: number;
  /**
   * Microseconds from the wait reaching the I/O thread to its pages being installed, one entry per
   * fault (capped). The application thread's own wait is longer by the hops to and from the I/O
   * thread; `npm run bench:tracker` measures that end to end.
   */
  latenciesUs: number[];
}

/**
 * What an application thread needs to be tracked: made by `Tracker.bindThread`, posted to the thread
 * (with its transfer list), opened there with `attachTracker` (attach.ts).
 */
export type ThreadBinding =
  | { kind: 'access'; requests: MessagePort; state: SharedArrayBuffer }
  /** The kernel catches the thread's misses: nothing to open on the thread. */
  | { kind: 'fault' };

/** The I/O thread's half of a tracker, for one migration. */
export interface Tracker {
  readonly kind: TrackerKind;
  /** One more application thread to track. */
  bindThread(): { binding: ThreadBinding; transfer: Transferable[] };
  /** Pages [first, first + count) became present (whichever channel brought them). */
  installed(first: number, count: number): void;
  /**
   * The pages will never come (the migration failed after the application resumed): no waiting
   * access may go on as if they had. The Access Tracker makes each such access throw PageLostError;
   * the Fault Tracker cannot fail a single access, so it halts the application threads first.
   */
  fail(): void;
  /** Every page to migrate is present: stops catching misses; returns the figures. */
  finish(): TrackerStats;
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

import type { MigrationMode } from './modes.js';

/** Instants of each phase, in ms since the migration was requested (PREPARE). */
export interface PhaseTimes {
  prepare: number;
  handshake: number;
  prefaulted: number;
  blackout: number;
  transferDone: number;
  startSent: number;
  resumed: number;
  committed: number;
}

/** The one migration report (DESIGN.md §6 defines every figure). */
export interface MigrationReport {
  migrationId: string;
  enclaveId: string;
  app: string;
  mode: MigrationMode;
  from: string;
  to: string;
  tee: string;
  teeSecure: boolean;
  heapBytes: number;
  allocatedBytes: number;
  pagesTransferred: number;
  framesTransferred: number;
  bytesOnWire: number;
  /** Source stops serving -> destination serves again, both read on CLOCK_MONOTONIC. */
  downtimeMs: number;
  /** PREPARE -> COMMIT. */
  totalMs: number;
  /** Longest interval without a successful response at the demo's client; null outside the demo. */
  clientGapMs: number | null;
  /** Allocated page bytes / (first page sent -> last page sent, or COMMIT in post-copy), in MB/s. */
  throughputMBps: number;
  sourcePeakRssBytes: number;
  destinationPeakRssBytes: number;
  sourceCpuMs: number;
  destinationCpuMs: number;
  /** Pre-copy rounds sent before the blackout (0 without pre-copy). */
  precopyRounds: number;
  /**
   * Why the rounds stopped: the rest fit --max-downtime ('budget'), a round was not 10 % smaller than
   * the one before ('not-shrinking'), or the round limit; null without pre-copy.
   */
  precopyStop: 'budget' | 'not-shrinking' | 'max-rounds' | null;
  /** Bytes the application wrote per second during the pre-copy rounds, in MB/s; null without pre-copy. */
  dirtyRateMBps: number | null;
  /**
   * Post-copy: waits for a missing page the destination's tracker saw (a miss posted by an accessor,
   * or a page fault read from the kernel).
   */
  demandFaults: number;
  /**
   * Post-copy: from the wait reaching the destination's I/O thread to its pages being installed, in
   * microseconds; null without post-copy faults (trackers/tracker.ts, TrackerStats).
   */
  faultLatencyUs: { p50: number; p99: number; max: number; histogram: number[] } | null;
  /** Which tracker caught the misses (null without post-copy). */
  tracker: string | null;
  /** Why the destination uses that tracker (its host's word, for the operator); null without post-copy. */
  trackerReason: string | null;
  /** Post-copy: START sent -> COMMIT received; null without post-copy. */
  postcopyMs: number | null;
  /** Pages sent after the blackout because they were demanded (post-copy), and pushed in the background. */
  pagesFetched: number;
  pagesPushed: number;
  /** Times the link broke after START and was dialled again. */
  reconnects: number;
  /** True only if the destination's content digest equals the source's. */
  verified: boolean;
  sourceDigest: string | null;
  destinationDigest: string | null;
  startedAt: string;
  phases: PhaseTimes;
}

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
  /** Page bytes / (blackout start -> last page sent), in MB/s (10^6 bytes). */
  throughputMBps: number;
  sourcePeakRssBytes: number;
  destinationPeakRssBytes: number;
  sourceCpuMs: number;
  destinationCpuMs: number;
  /** True only if the destination's content digest equals the source's. */
  verified: boolean;
  sourceDigest: string | null;
  destinationDigest: string | null;
  startedAt: string;
  phases: PhaseTimes;
}

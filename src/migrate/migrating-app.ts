import type { Transferable } from 'node:worker_threads';
import type { AppSnapshot } from '../apps/app.js';
import type { ThreadBinding } from '../trackers/tracker.js';

/** What pause() hands over; the page sets are bitmap words (one bit per heap page). */
export interface PausedApp {
  pausedAtMs: number;
  snapshot: AppSnapshot;
  /** Pages written since the last takeDirty: the last epoch. */
  dirty: Uint32Array;
  /** Pages that restoring the application reads: the allocator's header and bitmap, its roots. */
  restorePages: Uint32Array;
}

/**
 * What the migration agent, on the enclave's I/O thread, asks of the application thread
 * (enclave/app-thread.ts implements it). Each call is answered between two application events, so a
 * pause or a dirty-page epoch never cuts a request in half.
 */
export interface MigratingApp {
  /**
   * Stops at a quiescent point; with the snapshot come the last epoch's dirty pages and the pages
   * restoring reads, in the same call: the blackout pays one round trip to the application thread.
   */
  pause(): Promise<PausedApp>;
  /** Serves; may be called before restore() settled, and then refuses if restoring failed. */
  serve(): Promise<{ servingAtMs: number }>;
  /** Attaches the allocator and the application to a heap that arrived (may fault on missing pages). */
  /**
   * `tracking` (post-copy): the application thread is bound to the tracker first, in the same call,
   * since restoring already faults (Tracker.bindThread).
   */
  restore(
    snapshot: AppSnapshot,
    tracking?: { binding: ThreadBinding; transfer: readonly Transferable[] },
  ): Promise<void>;
  /** Pages written since the last call (bitmap words), cleared on the application thread. */
  takeDirty(): Promise<Uint32Array>;
  untrack(): Promise<void>;
  /** Stops the application thread at once (the Fault Tracker's way out when pages are lost). */
  halt(reason: string): void;
  /** Clients leave (START is out); the state stays. */
  disconnect(): Promise<void>;
  /** Binds the port again after disconnect (an ABORT after START brought the application back). */
  reconnect(): Promise<void>;
  close(): Promise<void>;
}

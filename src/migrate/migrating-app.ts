import type { Transferable } from 'node:worker_threads';
import type { AppSnapshot } from '../apps/app.js';
import type { ThreadBinding } from '../trackers/tracker.js';

/**
 * What the migration agent, on the enclave's I/O thread, asks of the application thread
 * (enclave/app-thread.ts implements it). Each call is answered between two application events, so a
 * pause or a dirty-page epoch never cuts a request in half.
 */
export interface MigratingApp {
  pause(): Promise<{ pausedAtMs: number; snapshot: AppSnapshot }>;
  serve(): Promise<{ servingAtMs: number }>;
  /** Attaches the allocator and the application to a heap that arrived (may fault on missing pages). */
  restore(snapshot: AppSnapshot): Promise<void>;
  /** Pages written since the last call (bitmap words), cleared on the application thread. */
  takeDirty(): Promise<Uint32Array>;
  /** Binds the application thread to the tracker (Tracker.bindThread). */
  track(binding: ThreadBinding, transfer: readonly Transferable[]): Promise<void>;
  untrack(): Promise<void>;
  /** Stops the application thread at once (the Fault Tracker's way out when pages are lost). */
  halt(reason: string): void;
  /** Clients leave (START is out); the state stays. */
  disconnect(): Promise<void>;
  /** Binds the port again after disconnect (an ABORT after START brought the application back). */
  reconnect(): Promise<void>;
  close(): Promise<void>;
}

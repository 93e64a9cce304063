import type { AppSnapshot } from '../apps/app.js';
import type { AppKind } from '../apps/registry.js';
import type { SharedHeap } from '../heap/secure-heap.js';
import type { ThreadBinding } from '../trackers/tracker.js';

/**
 * Messages between the enclave's I/O thread (main) and its application thread (app-worker.ts). Both
 * run the same trusted code in one process, so they are typed, not validated.
 */

export interface AppWorkerData {
  kind: AppKind;
  heap: SharedHeap;
  bindAddress: string;
  port: number;
  logBase: Record<string, unknown>;
}

export type AppRequest =
  /** The first request: the heap and the application (the thread starts before they are known). */
  | { op: 'open'; config: AppWorkerData }
  /** Fresh start: format the heap, fill it, listen and serve. */
  | { op: 'start-fresh'; fillBytes: number }
  /** Destination: bind the port and hold connections until restore and serve. */
  | { op: 'listen' }
  /** Stop at a quiescent point: no request is half-done when this is answered. */
  | { op: 'pause' }
  | { op: 'serve' }
  /** Attach the allocator and the application to a heap that arrived, and take its snapshot. */
  /** `tracking`: misses wait for the I/O thread as the tracker's binding says, from before the restore on. */
  | { op: 'restore'; snapshot: AppSnapshot; tracking: ThreadBinding | null }
  /** Dirty pages since the last take, and clear them: one pre-copy epoch, cut at a quiescent point. */
  | { op: 'take-dirty' }
  | { op: 'untrack' }
  /** Source after START: clients go; the state stays, in case an ABORT brings the application back. */
  | { op: 'disconnect' }
  /** Source after an ABORT that followed START: bind the port again and serve. */
  | { op: 'reconnect' }
  | { op: 'stats' }
  | { op: 'close' };

export interface AppResults {
  open: Record<string, never>;
  'start-fresh': { stats: Record<string, number> };
  listen: Record<string, never>;
  pause: { pausedAtMs: number; snapshot: AppSnapshot; words: Uint32Array; restorePages: Uint32Array };
  serve: { servingAtMs: number };
  restore: Record<string, never>;
  'take-dirty': { words: Uint32Array };
  untrack: Record<string, never>;
  disconnect: Record<string, never>;
  reconnect: Record<string, never>;
  stats: { stats: Record<string, number> };
  close: Record<string, never>;
}

export type AppCall = { id: number } & AppRequest;
export type AppReply = { id: number } & ({ ok: true; result: unknown } | { ok: false; message: string });

import { HeapAllocator } from '../heap/allocator.js';
import { type HeapRange, markPagesOf } from '../heap/heap-range.js';
import { PageBitmap } from '../heap/page-bitmap.js';
import type { SecureHeap } from '../heap/secure-heap.js';

/**
 * The small, explicit "CPU state" an application hands over at a quiescent point. Everything large
 * lives in the SecureHeap; this is JSON and stays tiny (a few hundred bytes).
 */
export type AppSnapshot = Record<string, string | number | boolean | null>;

export interface AppContext {
  heap: SecureHeap;
  allocator: HeapAllocator;
  /** Address every application listener binds to (the host's --bind address). */
  bindAddress: string;
  /** Application TCP port; kept when the application moves. */
  port: number;
  log: (msg: string, fields?: Record<string, unknown>) => void;
}

/**
 * An application that runs inside the enclave runtime and can be migrated.
 *
 * Lifecycle on a fresh start: create -> format (fresh heap) -> listen -> serve.
 * On the destination of a migration: create -> listen (port reserved, connections are accepted but
 * no command is processed) -> [pages arrive] -> restore(snapshot) -> serve.
 * On the source of a migration: serving -> pause (quiescent) -> snapshot -> close.
 */
export interface EnclaveApp {
  readonly kind: string;
  /** Initialise application structures in a freshly formatted heap. */
  format(): void;
  /** Bind the application port. Rejects with a clear message if the port is in use. */
  listen(): Promise<void>;
  /** Start processing requests (first start, or after restore on a destination). */
  serve(): void;
  /** Stop processing requests at a quiescent point. Requests that arrive meanwhile wait, unanswered. */
  pause(): void;
  /** The small state that is not in the heap. */
  snapshot(): AppSnapshot;
  /** Re-attach to application structures that arrived in the heap, plus the snapshot. */
  restore(snapshot: AppSnapshot): void;
  /**
   * The heap bytes restore() reads (the allocator's own metadata aside), named by the source while
   * paused: a post-copy blackout sends their pages with START, so that restoring on the destination
   * never waits for a demand fetch.
   */
  restoreReads(): HeapRange[];
  /**
   * Close the listener and every client connection but keep the state; listen() may bind again.
   * A source does this once START is out: its clients should find the application where it runs now.
   */
  disconnect(): Promise<void>;
  /** Close the listener and every client connection, for good. */
  close(): Promise<void>;
  /** Figures for `ps` and INFO-like reporting. */
  stats(): Record<string, number>;
}

/**
 * The pages a destination reads when it attaches the allocator and restores `app` (which must be
 * formatted or restored here): what a post-copy source sends before START.
 */
export function restorePagesOf(heap: SecureHeap, app: EnclaveApp): PageBitmap {
  const pages = PageBitmap.create(heap.pageCount);
  markPagesOf([HeapAllocator.attachReads(), ...app.restoreReads()], pages);
  return pages;
}

import { type Transferable, Worker } from 'node:worker_threads';
import type { AppSnapshot } from '../apps/app.js';
import type { SecureHeap } from '../heap/secure-heap.js';
import type { PausedApp } from '../migrate/migrating-app.js';
import type { ThreadBinding } from '../trackers/tracker.js';
import type { AppCall, AppReply, AppRequest, AppResults, AppWorkerData } from './app-thread-protocol.js';

type Op = AppRequest['op'];

/**
 * The I/O thread's handle on the application thread (app-worker.ts): each call is a request
 * answered once the application thread handled it between two of its own events.
 */
export class AppThread {
  private readonly worker: Worker;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: unknown) => void; reject: (e: Error) => void }>();
  private failure: Error | null = null;

  private constructor() {
    this.worker = new Worker(new URL('./app-worker.js', import.meta.url));
    this.worker.on('message', (reply: AppReply) => {
      const waiter = this.pending.get(reply.id);
      if (!waiter) return;
      this.pending.delete(reply.id);
      if (reply.ok) waiter.resolve(reply.result);
      else waiter.reject(new Error(reply.message));
    });
    this.worker.on('error', (err) => this.fail(err));
    this.worker.on('exit', (code) => this.fail(new Error(`application thread exited (code ${code})`)));
  }

  /**
   * Starts the thread before its heap and application are known: it loads the application code
   * meanwhile (tens to hundreds of ms), which then costs nothing when the enclave is told what to run.
   */
  static boot(): AppThread {
    return new AppThread();
  }

  /** Gives the thread its heap and application; before any other call. */
  async open(heap: SecureHeap, config: Omit<AppWorkerData, 'heap'>): Promise<void> {
    await this.call({ op: 'open', config: { ...config, heap: heap.share() } });
  }

  startFresh(fillBytes: number): Promise<AppResults['start-fresh']> {
    return this.call({ op: 'start-fresh', fillBytes });
  }

  async listen(): Promise<void> {
    await this.call({ op: 'listen' });
  }

  async pause(): Promise<PausedApp> {
    const { pausedAtMs, snapshot, words, restorePages } = await this.call({ op: 'pause' });
    return { pausedAtMs, snapshot, dirty: words, restorePages };
  }

  serve(): Promise<AppResults['serve']> {
    return this.call({ op: 'serve' });
  }

  async restore(
    snapshot: AppSnapshot,
    tracking?: { binding: ThreadBinding; transfer: readonly Transferable[] },
  ): Promise<void> {
    await this.call({ op: 'restore', snapshot, tracking: tracking?.binding ?? null }, tracking?.transfer);
  }

  async takeDirty(): Promise<Uint32Array> {
    return (await this.call({ op: 'take-dirty' })).words;
  }

  async untrack(): Promise<void> {
    await this.call({ op: 'untrack' });
  }

  /**
   * Stops the application thread where it stands, without asking it: V8 is told to terminate it
   * before this returns, so it runs no further JavaScript once it leaves a wait in the kernel.
   */
  halt(reason: string): void {
    this.fail(new Error(`the application was halted: ${reason}`));
    void this.worker.terminate();
  }

  async disconnect(): Promise<void> {
    await this.call({ op: 'disconnect' });
  }

  async reconnect(): Promise<void> {
    await this.call({ op: 'reconnect' });
  }

  async stats(): Promise<Record<string, number>> {
    return (await this.call({ op: 'stats' })).stats;
  }

  async close(): Promise<void> {
    if (!this.failure) await this.call({ op: 'close' }).catch(() => {});
    await this.worker.terminate();
  }

  private call<O extends Op>(
    request: Extract<AppRequest, { op: O }>,
    transfer: readonly Transferable[] = [],
  ): Promise<AppResults[O]> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (r: unknown) => void, reject });
      const call: AppCall = { id, ...request };
      this.worker.postMessage(call, [...transfer]);
    });
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const waiter of this.pending.values()) waiter.reject(this.failure);
    this.pending.clear();
  }
}

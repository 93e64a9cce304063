import { MessageChannel, type MessagePort } from 'node:worker_threads';
import type { SecureHeap } from '../heap/secure-heap.js';
import { DemandLatency } from './demand-latency.js';
import {
  type DemandHandler,
  FETCH_FAILED,
  type FetchRequest,
  type ThreadBinding,
  type Tracker,
  type TrackerStats,
} from './tracker.js';

/**
 * The Access Tracker, I/O-thread half: every SecureHeap accessor tests the present bit inline, and on
 * a miss the application thread (AccessMissHandler, access-miss-handler.ts) posts the missing range
 * here and blocks in Atomics.wait until PageBitmap.publishRange sets the bits. Giving up sets
 * FETCH_FAILED and wakes every waiter, whose access then throws PageLostError.
 */
export class AccessTracker implements Tracker {
  readonly kind = 'access' as const;
  private readonly state = new Int32Array(new SharedArrayBuffer(4));
  private readonly ports: MessagePort[] = [];
  private readonly latency: DemandLatency;

  constructor(
    private readonly heap: SecureHeap,
    private readonly demand: DemandHandler,
  ) {
    if (!heap.presentChecks) throw new Error('the Access Tracker needs a heap with present checks');
    this.latency = new DemandLatency(this.kind, heap.present);
  }

  bindThread(): { binding: ThreadBinding; transfer: MessagePort[] } {
    const { port1, port2 } = new MessageChannel();
    port1.on('message', ([first, count]: FetchRequest) => {
      this.latency.demanded(first, count);
      this.demand(first, count);
    });
    this.ports.push(port1);
    const binding: ThreadBinding = {
      kind: 'access',
      requests: port2,
      state: this.state.buffer as SharedArrayBuffer,
    };
    return { binding, transfer: [port2] };
  }

  installed(first: number, count: number): void {
    this.latency.installed(first, count);
  }

  fail(): void {
    Atomics.store(this.state, FETCH_FAILED, 1);
    this.heap.present.wakeAll();
    this.closePorts();
  }

  finish(): TrackerStats {
    this.closePorts();
    return this.latency.stats();
  }

  private closePorts(): void {
    for (const port of this.ports.splice(0)) port.close();
  }
}

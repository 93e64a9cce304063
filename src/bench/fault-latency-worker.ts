import { parentPort, workerData } from 'node:worker_threads';
import { SecureHeap, type SharedHeap } from '../heap/secure-heap.js';
import { attachTracker } from '../trackers/attach.js';
import type { ThreadBinding } from '../trackers/tracker.js';

/**
 * The application thread of the fault-latency benchmark (fault-latency.ts): it opens the heap and
 * attaches the tracker's binding as the enclave's application thread does (src/enclave/app-worker.ts),
 * says it is ready, then reads one u32 at each address it is sent, in order, timing each read alone.
 * A read of a missing page blocks this thread (in the Access Tracker's wait or in the kernel) until
 * the I/O thread has installed the page, so each time is the miss-to-usable latency as the
 * application sees it.
 */

export interface FaultLatencyWorkerData {
  heap: SharedHeap;
  binding: ThreadBinding;
}

/** The values read and the nanoseconds each read took, in the order of the addresses. */
export interface FaultLatencyReply {
  values: Uint32Array;
  ns: Float64Array;
}

const data = workerData as FaultLatencyWorkerData;
const heap = SecureHeap.fromShared(data.heap);
attachTracker(heap, data.binding);

parentPort!.once('message', (addrs: Float64Array) => {
  const values = new Uint32Array(addrs.length);
  const ns = new Float64Array(addrs.length);
  for (let i = 0; i < addrs.length; i++) {
    const addr = addrs[i]!;
    const start = process.hrtime.bigint();
    const value = heap.readU32(addr);
    ns[i] = Number(process.hrtime.bigint() - start);
    values[i] = value;
  }
  const reply: FaultLatencyReply = { values, ns };
  parentPort!.postMessage(reply, [values.buffer, ns.buffer]);
});
parentPort!.postMessage('ready');

import { ContentDigest } from '../../src/apps/workloads/content-digest.js';
import type { WorkloadIo } from '../../src/apps/workloads/workload.js';
import { freshHeap } from './app-heap.js';

/** What WorkloadApp hands a workload, over a fresh heap: for testing a workload's own code directly. */
export function workloadIo(heapBytes: number, seed = 1): WorkloadIo {
  const { heap, allocator } = freshHeap(heapBytes);
  let x = seed >>> 0 || 1;
  return {
    heap,
    allocator,
    digest: new ContentDigest(),
    random() {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      return x;
    },
  };
}

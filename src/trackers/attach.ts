import type { SecureHeap } from '../heap/secure-heap.js';
import { AccessMissHandler } from './access-miss-handler.js';
import type { ThreadBinding } from './tracker.js';

/**
 * On an application thread: makes its heap's misses wait for the I/O thread as `binding` says
 * (Tracker.bindThread). Returns the detach function, for when every page is present.
 */
export function attachTracker(heap: SecureHeap, binding: ThreadBinding): () => void {
  switch (binding.kind) {
    case 'access': {
      const handler = new AccessMissHandler(heap, binding.requests, new Int32Array(binding.state));
      handler.attach();
      return () => handler.detach();
    }
    case 'fault':
      // The kernel holds the thread on a missing page; a present test here would only cost time.
      if (heap.presentChecks) throw new Error('a Fault Tracker binding needs a heap without present checks');
      return () => {};
  }
}

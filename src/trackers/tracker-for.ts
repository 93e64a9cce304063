import type { PageBitmap } from '../heap/page-bitmap.js';
import type { SecureHeap } from '../heap/secure-heap.js';
import { AccessTracker } from './access-tracker.js';
import { FaultTracker } from './fault-tracker.js';
import type { DemandHandler, Tracker } from './tracker.js';

/**
 * The tracker a destination heap was made for (SecureHeap.createIncoming): the Fault Tracker on
 * userfaultfd memory, the Access Tracker on a heap with present checks.
 */
export function trackerFor(
  heap: SecureHeap,
  deps: {
    /** The pages to migrate. */
    allocated: PageBitmap;
    demand: DemandHandler;
    /** Stops every application thread at once (the Fault Tracker's way out when pages are lost). */
    haltApplication: () => void;
  },
): Tracker {
  if (heap.userfaultfd) return new FaultTracker(heap, deps.allocated, deps.demand, deps.haltApplication);
  if (heap.presentChecks) return new AccessTracker(heap, deps.demand);
  throw new Error('this heap catches no misses: it was not made for post-copy');
}

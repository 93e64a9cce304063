import { PAGE_SIZE } from '../heap/constants.js';
import type { PageBitmap } from '../heap/page-bitmap.js';
import type { SecureHeap } from '../heap/secure-heap.js';
import type { UffdRegion } from '../native/uffd.js';
import { DemandLatency } from './demand-latency.js';
import type { DemandHandler, ThreadBinding, Tracker, TrackerStats } from './tracker.js';

/**
 * The Fault Tracker, I/O-thread half. The heap is a userfaultfd region (SecureHeap.createIncoming
 * with 'userfaultfd'), so the application's accessors test nothing: a thread that touches a page the
 * kernel does not hold blocks in the kernel, and the fault is read here, on the I/O thread's event
 * loop (UffdRegion.watch), next to the channels that bring the page. Each fault is
 *   - a page that holds nothing to migrate: a zero page at once (UFFDIO_ZEROPAGE), no round trip;
 *   - a page already installed by the time the fault is read (the bulk channel won the race): the
 *     install woke the thread already; waking it again is harmless;
 *   - otherwise a demand for the fetcher; the install (UFFDIO_COPY, SecureHeap.installPages) wakes
 *     every thread waiting on the page.
 * A kernel wait cannot be turned into an exception, so `fail` halts the application threads before it
 * lets them go (closing the region wakes them onto zero-filled pages).
 */
export class FaultTracker implements Tracker {
  readonly kind = 'fault' as const;
  private readonly region: UffdRegion;
  private readonly latency: DemandLatency;
  private stopped = false;

  constructor(
    private readonly heap: SecureHeap,
    /** The pages to migrate; every other page is a zero page. */
    private readonly allocated: PageBitmap,
    private readonly demand: DemandHandler,
    /** Stops every application thread of this heap at once (before any of them can run on). */
    private readonly haltApplication: () => void,
  ) {
    const region = heap.userfaultfd;
    if (!region) throw new Error('the Fault Tracker needs a userfaultfd heap');
    this.region = region;
    this.latency = new DemandLatency(this.kind, heap.present);
    region.watch((error, offsets) => this.onFaults(error, offsets));
  }

  bindThread(): { binding: ThreadBinding; transfer: [] } {
    return { binding: { kind: 'fault' }, transfer: [] };
  }

  installed(first: number, count: number): void {
    this.latency.installed(first, count);
  }

  fail(): void {
    if (this.stopped) return;
    this.haltApplication();
    this.stop();
  }

  finish(): TrackerStats {
    this.stop();
    return this.latency.stats();
  }

  private stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.region.unwatch();
    this.heap.releaseUserfaultfd();
  }

  private onFaults(error: NodeJS.ErrnoException | null, offsets: number[]): void {
    if (error) {
      // The descriptor broke: no fault can be served any more, so none may be left waiting.
      this.fail();
      return;
    }
    const { heap } = this;
    for (const offset of offsets) {
      const page = offset / PAGE_SIZE;
      if (!this.allocated.get(page)) {
        this.latency.demanded(page, 1);
        heap.installZeroPages(page, 1);
        this.latency.installed(page, 1);
      } else if (heap.present.get(page)) {
        this.region.wake(offset, PAGE_SIZE);
      } else {
        this.latency.demanded(page, 1);
        this.demand(page, 1);
      }
    }
  }
}

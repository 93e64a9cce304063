import type { PageBitmap } from '../heap/page-bitmap.js';
import type { TrackerKind, TrackerStats } from './tracker.js';

/** Power-of-two latency buckets: 1 µs to 2^23 µs (8 s) and above. */
export const FAULT_HISTOGRAM_BUCKETS = 24;

/** Counts per bucket i = [2^i, 2^(i+1)) µs; latencies under 1 µs count in bucket 0, above 2^23 in the last. */
export function latencyHistogram(latenciesUs: readonly number[]): number[] {
  const counts = new Array<number>(FAULT_HISTOGRAM_BUCKETS).fill(0);
  for (const us of latenciesUs) {
    const bucket = us < 1 ? 0 : Math.min(FAULT_HISTOGRAM_BUCKETS - 1, Math.floor(Math.log2(us)));
    counts[bucket]!++;
  }
  return counts;
}

/** Fault latencies kept per migration; beyond this the count still grows but no sample is kept. */
const MAX_SAMPLES = 1_000_000;

/**
 * Fault counts and latencies on the I/O thread, the same for every tracker: a demand starts a clock
 * that stops when all its pages are present. Few demands are open at a time (one per waiting
 * thread), so each install checks them all.
 */
export class DemandLatency {
  private faults = 0;
  private readonly latenciesUs: number[] = [];
  private open: { first: number; count: number; startNs: bigint }[] = [];

  constructor(
    private readonly kind: TrackerKind,
    private readonly present: PageBitmap,
  ) {}

  demanded(first: number, count: number): void {
    this.faults++;
    this.open.push({ first, count, startNs: process.hrtime.bigint() });
  }

  installed(first: number, count: number): void {
    if (this.open.length === 0) return;
    const nowNs = process.hrtime.bigint();
    this.open = this.open.filter((demand) => {
      const overlaps = demand.first < first + count && first < demand.first + demand.count;
      if (!overlaps || !this.present.allSet(demand.first, demand.count)) return true;
      if (this.latenciesUs.length < MAX_SAMPLES) {
        this.latenciesUs.push(Number(nowNs - demand.startNs) / 1000);
      }
      return false;
    });
  }

  stats(): TrackerStats {
    return { kind: this.kind, faults: this.faults, latenciesUs: [...this.latenciesUs] };
  }
}

import type { PhysicalLimits } from '../physical-limits.js';
import { type Cell, summarise, type Variant } from '../summary.js';
import type { BenchResults, Link, ResultsFailure, ResultsRun } from './results-file.js';

/** One workload's runs and their medians per heap size x variant (summary.ts's cells). */
export interface WorkloadResults {
  label: string;
  kind: string;
  writeShare: number | null;
  summary: string | null;
  /**
   * The largest heap this workload has a run at: the run's largest size, or less where a run was cut
   * short (sizes run in order, every workload at a size before the next size).
   */
  largest: number;
  runs: ResultsRun[];
  failures: ResultsFailure[];
  cells: Cell[];
}

/** The figures every section of the report works from. */
export interface Analysis {
  results: BenchResults;
  sizes: number[];
  largest: number;
  variants: Variant[];
  /** Bytes per second no migration can beat here, or null when the run measured no AES-GCM rate. */
  boundRateBytesPerSec: number | null;
  workloads: WorkloadResults[];
}

export function analyse(results: BenchResults): Analysis {
  const sizes = [...new Set(results.options.sizes)].sort((a, b) => a - b);
  const workloads = results.workloads.map((w): WorkloadResults => {
    const runs = results.runs.filter((r) => r.workload === w.label);
    const failures = results.failures.filter((f) => f.workload === w.label);
    return {
      label: w.label,
      kind: w.kind,
      writeShare: w.writeShare ?? null,
      summary: w.summary ?? null,
      largest: Math.max(sizes[0]!, ...runs.map((r) => r.heapBytes)),
      runs,
      failures,
      cells: summarise(sizes, results.variants, runs, failures),
    };
  });
  return {
    results,
    sizes,
    largest: sizes[sizes.length - 1]!,
    variants: results.variants,
    boundRateBytesPerSec: boundRate(results.link, results.machine.limits),
    workloads,
  };
}

/**
 * Every page crosses the link once, sealed with AES-256-GCM on one core: the slower of the two bounds
 * the migration's rate. Loopback has no rate of its own, so only AES-GCM bounds it there.
 */
export function boundRate(link: Link, limits: Pick<PhysicalLimits, 'aesGcmMBps'> | null): number | null {
  if (!limits) return null;
  const aesGcm = limits.aesGcmMBps * 1e6;
  return link.rateBytesPerSec === null ? aesGcm : Math.min(aesGcm, link.rateBytesPerSec);
}

/** Time to move a cell's allocated bytes at the bound rate, in ms; null without a bound. */
export const physicalBoundMs = (analysis: Pick<Analysis, 'boundRateBytesPerSec'>, cell: Cell) =>
  analysis.boundRateBytesPerSec === null
    ? null
    : (cell.allocatedBytes / analysis.boundRateBytesPerSec) * 1000;

/** A cell with at least one successful run (failed-only cells have no medians). */
export const measuredCell = (cells: readonly Cell[], heapBytes: number, variant: Variant) =>
  cells.find(
    (c) =>
      c.heapBytes === heapBytes && c.mode === variant.mode && c.tracker === variant.tracker && c.runs > 0,
  );

/** 1 - downtime / stop-and-copy's downtime at the same workload and size; null without either. */
export function downtimeReduction(cells: readonly Cell[], cell: Cell): number | null {
  const stopAndCopy = measuredCell(cells, cell.heapBytes, { mode: 'stop-and-copy', tracker: null });
  if (!stopAndCopy || cell.runs === 0 || stopAndCopy.downtimeMs === 0) return null;
  return 1 - cell.downtimeMs / stopAndCopy.downtimeMs;
}

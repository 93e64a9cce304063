import { type Cell, fixed, variantLabel, type Variant } from '../summary.js';
import { type Analysis, measuredCell, physicalBoundMs } from './analysis.js';

/** The performance goals of the issue, each judged on the medians of one workload x size x variant. */
export interface GoalCheck {
  goal: string;
  workload: string;
  heapBytes: number;
  variant: string;
  measured: string;
  wanted: string;
  /** 'no data': the cell has no successful run (failed or not run), or the run measured no bound. */
  status: 'pass' | 'fail' | 'no data';
}

export const GOALS = {
  postcopyDowntime: 'post-copy downtime < 10 ms at every size',
  stopAndCopyRate: 'stop-and-copy throughput within 2x of AES-256-GCM',
  postcopyTotal: 'post-copy total time within 1.5x of the physical bound',
} as const;

interface GoalRule {
  goal: string;
  variants: (analysis: Analysis) => Variant[];
  /** The measured figure and the verdict, or null when the figure cannot be had from this cell. */
  judge: (cell: Cell, analysis: Analysis) => { measured: string; pass: boolean } | null;
  wanted: (analysis: Analysis) => string;
}

const postcopyVariants = (a: Analysis) => a.variants.filter((v) => v.mode === 'post-copy');

const RULES: GoalRule[] = [
  {
    goal: GOALS.postcopyDowntime,
    variants: postcopyVariants,
    wanted: () => '< 10 ms',
    judge: (cell) => ({
      measured: `${fixed(cell.downtimeMs, 1)} ms`,
      pass: cell.downtimeMs < 10,
    }),
  },
  {
    goal: GOALS.stopAndCopyRate,
    variants: () => [{ mode: 'stop-and-copy', tracker: null }],
    wanted: (a) => aesGcmHalf(a) ?? '>= AES-GCM / 2 (not measured)',
    judge: (cell, a) => {
      const aesGcm = a.results.machine.limits?.aesGcmMBps;
      if (aesGcm === undefined) return null;
      return {
        measured: `${fixed(cell.throughputMBps)} MB/s`,
        pass: cell.throughputMBps >= aesGcm / 2,
      };
    },
  },
  {
    goal: GOALS.postcopyTotal,
    variants: postcopyVariants,
    wanted: () => '<= 1.5x bound',
    judge: (cell, a) => {
      const bound = physicalBoundMs(a, cell);
      if (bound === null) return null;
      const ratio = cell.totalMs / bound;
      return {
        measured: `${fixed(cell.totalMs)} ms = ${fixed(ratio, 2)}x of ${fixed(bound)} ms`,
        pass: ratio <= 1.5,
      };
    },
  },
];

const aesGcmHalf = (a: Analysis) => {
  const aesGcm = a.results.machine.limits?.aesGcmMBps;
  return aesGcm === undefined ? null : `>= ${fixed(aesGcm / 2)} MB/s`;
};

/** Every goal for every workload, size and variant it concerns, in that order. */
export function checkGoals(analysis: Analysis): GoalCheck[] {
  const checks: GoalCheck[] = [];
  for (const rule of RULES) {
    for (const w of analysis.workloads) {
      for (const heapBytes of analysis.sizes) {
        for (const variant of rule.variants(analysis)) {
          const cell = measuredCell(w.cells, heapBytes, variant);
          const verdict = cell ? rule.judge(cell, analysis) : null;
          checks.push({
            goal: rule.goal,
            workload: w.label,
            heapBytes,
            variant: variantLabel(variant),
            measured: verdict?.measured ?? (cell ? 'no bound measured' : 'no run'),
            wanted: rule.wanted(analysis),
            status: verdict ? (verdict.pass ? 'pass' : 'fail') : 'no data',
          });
        }
      }
    }
  }
  return checks;
}

/** "3 of 4 pass" per goal, for the summary line above the table. */
export function goalTally(checks: readonly GoalCheck[], goal: string): string {
  const mine = checks.filter((c) => c.goal === goal);
  const pass = mine.filter((c) => c.status === 'pass').length;
  const noData = mine.filter((c) => c.status === 'no data').length;
  return `${pass} of ${mine.length} pass${noData ? ` (${noData} without data)` : ''}`;
}

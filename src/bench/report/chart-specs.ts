import { formatBytes } from '../../util/size.js';
import type { TopLevelSpec } from 'vega-lite';
import { hasPostcopy } from '../../migrate/modes.js';
import { type Cell, variantLabel, type Variant } from '../summary.js';
import {
  type Analysis,
  downtimeReduction,
  measuredCell,
  physicalBoundMs,
  type WorkloadResults,
} from './analysis.js';
import { PAPER_REDUCTION_BAND } from './paper.js';
import type { ResultsRun } from './results-file.js';

/** One chart to render: its file name without extension, a caption for the report, and the spec. */
export interface ChartSpec {
  name: string;
  title: string;
  spec: TopLevelSpec;
}

const FACET_COLUMNS = 3;
const CELL = { width: 220, height: 160 } as const;
const GiB = 2 ** 30;

type FacetedCell = Extract<TopLevelSpec, { facet: unknown }>['spec'];

/** One small chart per workload, three to a row, from the same data. */
const perWorkload = (values: object[], cell: FacetedCell): TopLevelSpec => ({
  data: { values },
  facet: { field: 'workload', type: 'nominal', title: null },
  columns: FACET_COLUMNS,
  spec: { ...CELL, ...cell },
});

/** Every chart shows a variant in the same colour, in the harness's order. */
const variantColour = (a: Analysis) => ({
  field: 'variant',
  type: 'nominal' as const,
  title: 'mode',
  scale: { domain: a.variants.map(variantLabel) },
  sort: a.variants.map(variantLabel),
});

/** Log heap axis with ticks at the sizes measured, not at round numbers none of them is. */
const heapAxis = (a: Analysis) => ({
  field: 'heapGiB',
  type: 'quantitative' as const,
  title: 'heap (GiB)',
  scale: { type: 'log' as const, nice: false, padding: 12 },
  axis: { values: a.sizes.map((s) => s / GiB) },
});

const measuredCells = (w: WorkloadResults) => w.cells.filter((c) => c.runs > 0);

/** File names from workload labels: the label's letters and digits only. */
export const fileSafe = (label: string) => label.toLowerCase().replace(/[^a-z0-9]+/g, '-');

export function chartSpecs(a: Analysis): ChartSpec[] {
  return [
    downtimeVsHeap(a),
    reductionVsStopAndCopy(a),
    totalVsBound(a),
    totalOverBound(a),
    ...a.workloads.flatMap((w) => {
      const t = timeline(a, w);
      return t ? [t] : [];
    }),
    faultLatency(a),
  ].filter((c): c is ChartSpec => c !== null);
}

function downtimeVsHeap(a: Analysis): ChartSpec {
  const values = a.workloads.flatMap((w) =>
    measuredCells(w).map((c) => ({
      workload: w.label,
      variant: variantLabel(c),
      heapGiB: c.heapBytes / GiB,
      downtimeMs: c.downtimeMs,
    })),
  );
  return {
    name: 'downtime-vs-heap',
    title: 'Median downtime vs heap size per mode (log-log)',
    spec: perWorkload(values, {
      mark: { type: 'line', point: true },
      encoding: {
        x: heapAxis(a),
        y: { field: 'downtimeMs', type: 'quantitative', title: 'downtime (ms)', scale: { type: 'log' } },
        color: variantColour(a),
      },
    }),
  };
}

function reductionVsStopAndCopy(a: Analysis): ChartSpec {
  const values = a.workloads.flatMap((w) =>
    measuredCells(w)
      .filter((c) => c.heapBytes === w.largest && c.mode !== 'stop-and-copy')
      .flatMap((c) => {
        const reduction = downtimeReduction(w.cells, c);
        const workload = `${w.label} (${formatBytes(w.largest)})`;
        return reduction === null
          ? []
          : [{ workload, variant: variantLabel(c), reductionPct: reduction * 100 }];
      }),
  );
  const [low, high] = PAPER_REDUCTION_BAND;
  return {
    name: 'downtime-reduction',
    title: `Downtime reduction vs stop-and-copy at the largest heap (grey band: the paper's ${low}-${high} % vs MigSGX)`,
    spec: {
      width: Math.max(240, 60 * a.workloads.length * Math.max(1, a.variants.length - 1)),
      height: 220,
      layer: [
        {
          data: { values: [{ low, high }] },
          mark: { type: 'rect', color: '#888', opacity: 0.2 },
          encoding: { y: { field: 'low', type: 'quantitative' }, y2: { field: 'high' } },
        },
        {
          data: { values },
          mark: 'bar',
          encoding: {
            x: { field: 'workload', type: 'nominal', title: null, axis: { labelAngle: 0 } },
            xOffset: { field: 'variant', sort: a.variants.map(variantLabel) },
            y: {
              field: 'reductionPct',
              type: 'quantitative',
              title: 'downtime reduction vs stop-and-copy (%)',
              scale: { domainMax: 100 },
            },
            color: variantColour(a),
          },
        },
      ],
    },
  };
}

/** Total time per variant and the physical bound as one more (dashed) series. */
function totalVsBound(a: Analysis): ChartSpec | null {
  if (a.boundRateBytesPerSec === null) return null;
  const values = a.workloads.flatMap((w) => {
    const cells = measuredCells(w);
    const bounds = a.sizes.flatMap((heapBytes) => {
      const cell = cells.find((c) => c.heapBytes === heapBytes);
      return cell
        ? [
            {
              workload: w.label,
              series: 'physical bound',
              heapGiB: heapBytes / GiB,
              ms: physicalBoundMs(a, cell),
            },
          ]
        : [];
    });
    return [
      ...cells.map((c) => ({
        workload: w.label,
        series: variantLabel(c),
        heapGiB: c.heapBytes / GiB,
        ms: c.totalMs,
      })),
      ...bounds,
    ];
  });
  const series = [...a.variants.map(variantLabel), 'physical bound'];
  return {
    name: 'total-vs-bound',
    title: 'Median total migration time vs the physical bound (allocated bytes / min(link, AES-256-GCM))',
    spec: perWorkload(values, {
      mark: { type: 'line', point: true },
      encoding: {
        x: heapAxis(a),
        y: { field: 'ms', type: 'quantitative', title: 'total time (ms)', scale: { type: 'log' } },
        color: { field: 'series', type: 'nominal', title: 'mode', scale: { domain: series }, sort: series },
        strokeDash: {
          condition: { test: "datum.series === 'physical bound'", value: [4, 3] },
          value: [1, 0],
        },
      },
    }),
  };
}

function totalOverBound(a: Analysis): ChartSpec | null {
  if (a.boundRateBytesPerSec === null) return null;
  const values = a.workloads.flatMap((w) =>
    measuredCells(w).map((c) => ({
      workload: w.label,
      variant: variantLabel(c),
      heapGiB: c.heapBytes / GiB,
      ratio: c.totalMs / physicalBoundMs(a, c)!,
    })),
  );
  return {
    name: 'total-over-bound',
    title: 'Median total time / physical bound (1 = at the bound; the goal for post-copy is <= 1.5)',
    spec: perWorkload(values, {
      layer: [
        {
          mark: { type: 'line', point: true },
          encoding: {
            x: heapAxis(a),
            y: { field: 'ratio', type: 'quantitative', title: 'total time / bound' },
            color: variantColour(a),
          },
        },
        {
          mark: { type: 'rule', strokeDash: [4, 3], color: '#555' },
          encoding: { y: { datum: 1.5 } },
        },
      ],
    }),
  };
}

/** Post-copy once per tracker, and stop-and-copy for contrast. */
const timelineVariants = (a: Analysis): Variant[] =>
  a.variants.filter((v) => v.mode === 'stop-and-copy' || v.mode === 'post-copy');

/**
 * The run whose downtime is the cell's median (the lower middle one for an even count): one real
 * timeline, not an average that no client ever saw.
 */
export function medianRun(runs: readonly ResultsRun[], cell: Cell): ResultsRun | undefined {
  const mine = runs
    .filter((r) => r.heapBytes === cell.heapBytes && r.mode === cell.mode && r.tracker === cell.tracker)
    .sort((x, y) => x.report.downtimeMs - y.report.downtimeMs);
  return mine[(mine.length - 1) >> 1];
}

function timeline(a: Analysis, w: WorkloadResults): ChartSpec | null {
  const values: Record<string, string | number>[] = [];
  const shown = timelineVariants(a);
  for (const variant of shown) {
    const cell = measuredCell(w.cells, w.largest, variant);
    const run = cell && medianRun(w.runs, cell);
    if (!run) continue;
    const { bucketMs, opsPer100ms, marks } = run.timeline;
    const at = (ms: number) => (ms - marks.migrationRequested) / 1000;
    const label = variantLabel(variant);
    opsPer100ms.forEach((ops, i) =>
      values.push({ variant: label, kind: 'ops', t: at(i * bucketMs), opsPerSec: (ops * 1000) / bucketMs }),
    );
    for (const [mark, ms] of Object.entries(marks))
      if (ms !== null) values.push({ variant: label, kind: 'mark', mark, t: at(ms) });
  }
  if (values.length === 0) return null;
  return {
    name: `timeline-${fileSafe(w.label)}`,
    title: `${w.label}: client throughput through one migration at ${formatBytes(w.largest)} (the run with the median downtime)`,
    spec: {
      data: { values },
      facet: {
        row: { field: 'variant', type: 'nominal', title: null, sort: shown.map(variantLabel) },
      },
      spec: {
        width: 640,
        height: 110,
        layer: [
          {
            transform: [{ filter: "datum.kind === 'ops'" }],
            mark: { type: 'line', interpolate: 'step-after', color: '#333' },
            encoding: {
              x: { field: 't', type: 'quantitative', title: 's since the migration was requested' },
              y: { field: 'opsPerSec', type: 'quantitative', title: 'ops/s' },
            },
          },
          {
            transform: [{ filter: "datum.kind === 'mark'" }],
            mark: { type: 'rule', strokeDash: [4, 3] },
            encoding: {
              x: { field: 't', type: 'quantitative' },
              color: {
                field: 'mark',
                type: 'nominal',
                title: 'instant',
                sort: ['migrationRequested', 'blackout', 'resumed', 'committed'],
              },
            },
          },
        ],
      },
    },
  };
}

/** A histogram bucket's lower edge, 2^i µs, as people read it. */
const bucketLabel = (i: number) => (i < 10 ? `${2 ** i} µs` : `${2 ** i / 1000} ms`);

/**
 * Share of a cell's faults per latency bucket, the histograms summed over the cell's runs; only the
 * buckets from the fastest to the slowest fault of any cell, so that the bars are not lost among
 * empty ones.
 */
function faultLatency(a: Analysis): ChartSpec | null {
  const histograms = a.workloads.flatMap((w) =>
    a.variants
      .filter((v) => hasPostcopy(v.mode))
      .map((v) => {
        const runs = w.runs.filter(
          (r) => r.heapBytes === w.largest && r.mode === v.mode && r.tracker === v.tracker,
        );
        const summed = sumHistograms(runs.map((r) => r.report.faultLatencyUs?.histogram ?? []));
        return { workload: w.label, mode: v.mode, tracker: v.tracker ?? '-', summed };
      })
      .filter((h) => h.summed.some((n) => n > 0)),
  );
  if (histograms.length === 0) return null;
  const first = Math.min(...histograms.map((h) => h.summed.findIndex((n) => n > 0)));
  const last = Math.max(...histograms.map((h) => h.summed.length - 1));
  const buckets = Array.from({ length: last - first + 1 }, (_, k) => bucketLabel(first + k));
  const values = histograms.flatMap(({ summed, ...cell }) => {
    const total = summed.reduce((sum, n) => sum + n, 0);
    return buckets.map((bucket, k) => ({
      ...cell,
      bucket,
      sharePct: ((summed[first + k] ?? 0) / total) * 100,
    }));
  });
  return {
    name: 'fault-latency',
    title:
      "Demand-fault latency per tracker at each workload's largest heap (share of faults per [2^i, 2^(i+1)) µs bucket, summed over the runs)",
    spec: {
      data: { values },
      facet: {
        row: { field: 'workload', type: 'nominal', title: null },
        column: { field: 'mode', type: 'nominal', title: null },
      },
      spec: {
        ...CELL,
        mark: 'bar',
        encoding: {
          x: { field: 'bucket', type: 'ordinal', sort: buckets, title: 'fault latency (bucket from)' },
          xOffset: { field: 'tracker' },
          y: { field: 'sharePct', type: 'quantitative', title: 'faults (%)' },
          color: { field: 'tracker', type: 'nominal' },
        },
      },
    },
  };
}

/** Element-wise sum of histograms of different lengths (trailing empty buckets are left out). */
export function sumHistograms(histograms: readonly number[][]): number[] {
  const sum: number[] = [];
  for (const h of histograms) h.forEach((n, i) => (sum[i] = (sum[i] ?? 0) + n));
  return sum;
}

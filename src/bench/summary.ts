import type { ThroughputTimeline } from '../cli/commands/demo.js';
import { hasPostcopy, type MigrationMode } from '../migrate/modes.js';
import type { MigrationReport } from '../migrate/report.js';
import type { TrackerKind } from '../trackers/tracker.js';
import { formatBytes } from '../util/size.js';

/** One way to migrate that the benchmark compares: a mode, and the destination's tracker where it has post-copy. */
export interface Variant {
  mode: MigrationMode;
  /** null: the mode has no post-copy, so no tracker runs. */
  tracker: TrackerKind | null;
}

/** Every mode with post-copy once per tracker, the others once, in the order given. */
export function variants(modes: readonly MigrationMode[], trackers: readonly TrackerKind[]): Variant[] {
  return modes.flatMap((mode): Variant[] =>
    hasPostcopy(mode) ? trackers.map((tracker) => ({ mode, tracker })) : [{ mode, tracker: null }],
  );
}

/** 'post-copy/fault', or the mode alone without a tracker. */
export const variantLabel = (v: Variant): string => (v.tracker ? `${v.mode}/${v.tracker}` : v.mode);

const sameVariant = (a: Variant, b: Variant) => a.mode === b.mode && a.tracker === b.tracker;

/**
 * The client's successful operations per second in three windows of a run's timeline: `before`, from
 * the second bucket of the load (the first holds the connections' warm-up) to the migration request,
 * a baseline the migration has not touched yet; `during` post-copy, resumed -> committed (null without post-copy); `after`,
 * committed -> load stop. The ratios are during/before and after/before. Only the buckets that lie
 * wholly inside a window count: a bucket that straddles the blackout or the resume would lend its
 * rate to the window next to it. A window without a whole bucket (hybrid's post-copy often lasts a
 * few ms) has no figure.
 */
export interface ClientThroughput {
  beforeOpsPerSec: number | null;
  duringOpsPerSec: number | null;
  afterOpsPerSec: number | null;
  duringVsBefore: number | null;
  afterVsBefore: number | null;
}

export function clientThroughput(timeline: ThroughputTimeline, postcopy: boolean): ClientThroughput {
  const { bucketMs, opsPer100ms, marks } = timeline;
  const rate = (from: number | null, to: number | null): number | null => {
    if (from === null || to === null) return null;
    const first = Math.ceil(from / bucketMs);
    const end = Math.floor(to / bucketMs);
    if (end <= first) return null;
    let ops = 0;
    // Trailing buckets without a success are absent from opsPer100ms.
    for (let i = first; i < end; i++) ops += opsPer100ms[i] ?? 0;
    return (ops * 1000) / ((end - first) * bucketMs);
  };
  const before = rate(bucketMs, marks.migrationRequested);
  const during = postcopy ? rate(marks.resumed, marks.committed) : null;
  const after = rate(marks.committed, timeline.durationMs);
  return {
    beforeOpsPerSec: before,
    duringOpsPerSec: during,
    afterOpsPerSec: after,
    duringVsBefore: quotient(during, before),
    afterVsBefore: quotient(after, before),
  };
}

/** a / b, or null when either is missing or b is 0. */
const quotient = (a: number | null, b: number | null): number | null =>
  a === null || b === null || b === 0 ? null : a / b;

/** What the benchmark keeps of one migration: the whole report plus what the client load saw. */
export interface MigrationRun extends Variant {
  /** The workload's label (bench-options.ts WorkloadChoice). */
  workload: string;
  heapBytes: number;
  /** 1-based repetition this run belongs to. */
  repeat: number;
  /** Position of the run in the whole benchmark (1-based), for drift analysis. */
  index: number;
  /** Which host the enclave left: 0 = 127.0.0.1, 1 = 127.0.0.2. */
  fromHost: 0 | 1;
  /** Wall time of the migration request, as the benchmark saw it. */
  wallMs: number;
  report: MigrationReport;
  load: {
    ops: number;
    errors: number;
    reconnects: number;
    clientGapMs: number;
    /** kv: acknowledged keys read back; a workload: 1 (one VERIFY at the end). */
    ackedKeysChecked: number;
    /**
     * Acknowledged work that did not survive: kv, keys whose read-back value is not the last
     * acknowledged one; a workload, replies whose operation count did not continue, plus 1 if VERIFY failed.
     */
    lostWrites: number;
  };
  /**
   * How busy the machine was during the migration: the 1-minute load average when it began, and the
   * share of its wall time in which some task on the machine waited for a CPU (Linux PSI
   * /proc/pressure/cpu "some"; null where the kernel does not provide it).
   */
  contention: { loadAvg1: number; cpuPressureSomePct: number | null };
  /** Client operations per 100 ms with the migration's instants on the same axis (DESIGN.md §6 degradation). */
  timeline: ThroughputTimeline;
  client: ClientThroughput;
}

/** What summarise reads of a run: the report generator hands it runs parsed back from a results file. */
export type SummarisableRun = Variant &
  Pick<MigrationRun, 'heapBytes' | 'client'> & {
    report: Pick<
      MigrationReport,
      | 'allocatedBytes'
      | 'downtimeMs'
      | 'totalMs'
      | 'postcopyMs'
      | 'precopyRounds'
      | 'dirtyRateMBps'
      | 'demandFaults'
      | 'faultLatencyUs'
      | 'throughputMBps'
      | 'bytesOnWire'
      | 'destinationPeakRssBytes'
      | 'sourceCpuMs'
      | 'destinationCpuMs'
      | 'verified'
      | 'sourceDigest'
    >;
    load: Pick<MigrationRun['load'], 'clientGapMs' | 'lostWrites'>;
    contention: Pick<MigrationRun['contention'], 'cpuPressureSomePct'>;
  };

export interface FailedRun extends Variant {
  workload: string;
  heapBytes: number;
  repeat: number;
  index: number;
  error: string;
  logsKeptIn: string;
}

export const median = (values: readonly number[]): number => {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

/** Medians per heap size x variant; null fields when no run of the cell has the figure. */
export interface Cell extends Variant {
  heapBytes: number;
  runs: number;
  failed: number;
  allocatedBytes: number;
  downtimeMs: number;
  downtimeMinMs: number;
  downtimeMaxMs: number;
  clientGapMs: number;
  totalMs: number;
  postcopyMs: number | null;
  precopyRounds: number;
  dirtyRateMBps: number | null;
  demandFaults: number;
  /** Medians over the runs' own p50 and p99 (runs without faults have none). */
  faultP50Us: number | null;
  faultP99Us: number | null;
  faultMaxUs: number | null;
  throughputMBps: number;
  bytesOnWire: number;
  destinationRssOverAllocatedBytes: number;
  sourceCpuMs: number;
  destinationCpuMs: number;
  verified: number;
  /** No run of the cell computed the content digest (--no-verify). */
  verifyOff: boolean;
  lostWrites: number;
  cpuPressureSomePct: number | null;
  /** Medians over the runs of each figure, the ratios included (median of the runs' own ratios). */
  client: ClientThroughput;
}

const nullableMedian = (values: (number | null | undefined)[]): number | null => {
  const present = values.filter((v): v is number => typeof v === 'number');
  return present.length === 0 ? null : median(present);
};

export function summarise(
  sizes: readonly number[],
  measured: readonly Variant[],
  runs: readonly SummarisableRun[],
  failures: readonly (Variant & Pick<FailedRun, 'heapBytes'>)[],
): Cell[] {
  const cells: Cell[] = [];
  for (const heapBytes of sizes) {
    for (const variant of measured) {
      const mine = runs.filter((r) => r.heapBytes === heapBytes && sameVariant(r, variant));
      const failed = failures.filter((f) => f.heapBytes === heapBytes && sameVariant(f, variant)).length;
      if (mine.length === 0 && failed === 0) continue;
      const reports = mine.map((r) => r.report);
      const downtimes = reports.map((r) => r.downtimeMs);
      const clientMedian = (figure: keyof ClientThroughput) =>
        nullableMedian(mine.map((r) => r.client[figure]));
      cells.push({
        heapBytes,
        mode: variant.mode,
        tracker: variant.tracker,
        runs: mine.length,
        failed,
        allocatedBytes: median(reports.map((r) => r.allocatedBytes)),
        downtimeMs: median(downtimes),
        downtimeMinMs: Math.min(...downtimes),
        downtimeMaxMs: Math.max(...downtimes),
        clientGapMs: median(mine.map((r) => r.load.clientGapMs)),
        totalMs: median(reports.map((r) => r.totalMs)),
        postcopyMs: nullableMedian(reports.map((r) => r.postcopyMs)),
        precopyRounds: median(reports.map((r) => r.precopyRounds)),
        dirtyRateMBps: nullableMedian(reports.map((r) => r.dirtyRateMBps)),
        demandFaults: median(reports.map((r) => r.demandFaults)),
        faultP50Us: nullableMedian(reports.map((r) => r.faultLatencyUs?.p50)),
        faultP99Us: nullableMedian(reports.map((r) => r.faultLatencyUs?.p99)),
        faultMaxUs: reports.some((r) => r.faultLatencyUs)
          ? Math.max(...reports.map((r) => r.faultLatencyUs?.max ?? 0))
          : null,
        throughputMBps: median(reports.map((r) => r.throughputMBps)),
        bytesOnWire: median(reports.map((r) => r.bytesOnWire)),
        destinationRssOverAllocatedBytes: median(
          reports.map((r) => r.destinationPeakRssBytes - r.allocatedBytes),
        ),
        sourceCpuMs: median(reports.map((r) => r.sourceCpuMs)),
        destinationCpuMs: median(reports.map((r) => r.destinationCpuMs)),
        verified: reports.filter((r) => r.verified).length,
        verifyOff: reports.every((r) => r.sourceDigest === null),
        lostWrites: mine.reduce((sum, r) => sum + r.load.lostWrites, 0),
        cpuPressureSomePct: nullableMedian(mine.map((r) => r.contention.cpuPressureSomePct)),
        client: {
          beforeOpsPerSec: clientMedian('beforeOpsPerSec'),
          duringOpsPerSec: clientMedian('duringOpsPerSec'),
          afterOpsPerSec: clientMedian('afterOpsPerSec'),
          duringVsBefore: clientMedian('duringVsBefore'),
          afterVsBefore: clientMedian('afterVsBefore'),
        },
      });
    }
  }
  return cells;
}

export interface VariantRatio extends Variant {
  heapBytes: number;
  ratio: number;
}

/** Fault Tracker median / Access Tracker median at the same heap and mode; null where a side lacks it. */
export interface FaultVsAccess {
  heapBytes: number;
  mode: MigrationMode;
  downtime: number | null;
  duringOpsPerSec: number | null;
  faultP50: number | null;
}

export interface Ratios {
  /** Stop-and-copy median downtime / this variant's, at the same heap size (higher: shorter downtime). */
  vsStopAndCopy: VariantRatio[];
  /** This variant's median downtime at a size / at the smallest size measured (1: flat). */
  vsSmallest: VariantRatio[];
  faultVsAccess: FaultVsAccess[];
}

export function ratios(cells: readonly Cell[], sizes: readonly number[]): Ratios {
  const cell = (heapBytes: number, variant: Variant) =>
    cells.find((c) => c.heapBytes === heapBytes && sameVariant(c, variant) && c.runs > 0);
  const result: Ratios = { vsStopAndCopy: [], vsSmallest: [], faultVsAccess: [] };
  for (const c of cells) {
    if (c.runs === 0) continue;
    const variant = { mode: c.mode, tracker: c.tracker };
    const sc = cell(c.heapBytes, { mode: 'stop-and-copy', tracker: null });
    if (sc && c.mode !== 'stop-and-copy')
      result.vsStopAndCopy.push({ heapBytes: c.heapBytes, ...variant, ratio: sc.downtimeMs / c.downtimeMs });
    const smallest = sizes.map((s) => cell(s, variant)).find((x) => x !== undefined);
    if (smallest && smallest.heapBytes !== c.heapBytes)
      result.vsSmallest.push({
        heapBytes: c.heapBytes,
        ...variant,
        ratio: c.downtimeMs / smallest.downtimeMs,
      });
    const access = c.tracker === 'fault' ? cell(c.heapBytes, { mode: c.mode, tracker: 'access' }) : undefined;
    if (access)
      result.faultVsAccess.push({
        heapBytes: c.heapBytes,
        mode: c.mode,
        downtime: quotient(c.downtimeMs, access.downtimeMs),
        duringOpsPerSec: quotient(c.client.duringOpsPerSec, access.client.duringOpsPerSec),
        faultP50: quotient(c.faultP50Us, access.faultP50Us),
      });
  }
  return result;
}

/** A figure for a table or a progress line; '-' when there is none. */
export const fixed = (v: number | null, digits = 0) =>
  v === null || Number.isNaN(v) ? '-' : v.toFixed(digits);
/** A cell whose runs all failed has no figures: NaN medians print as '-'. */
const mib = (bytes: number) => fixed(bytes / 2 ** 20);
const bytesOrDash = (bytes: number) => (Number.isNaN(bytes) ? '-' : formatBytes(bytes));

/** Columns before `leftColumns` are names (left-aligned), the rest figures (right-aligned). */
function table(header: string[], rows: string[][], leftColumns = 2): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) =>
    r.map((c, i) => (i < leftColumns ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), ...rows.map(line)];
}

/** A title and one line per heap size with its variants' ratios; nothing when there are none. */
function ratioLines(
  title: string,
  entries: readonly VariantRatio[],
  sizes: readonly number[],
  format: (ratio: number) => string,
): string[] {
  if (entries.length === 0) return [];
  const lines = [title];
  for (const size of sizes) {
    const mine = entries.filter((x) => x.heapBytes === size);
    if (mine.length) {
      lines.push(
        `  ${formatBytes(size).padEnd(9)} ${mine.map((x) => `${variantLabel(x)} ${format(x.ratio)}`).join(', ')}`,
      );
    }
  }
  return lines;
}

/**
 * The two median tables (timing, then mechanics), the ratios, the issue 4 criteria and the post-copy
 * table by tracker with the fault/access ratios, as text.
 */
export function renderSummary(cells: readonly Cell[], r: Ratios, sizes: readonly number[]): string {
  const lines: string[] = [];
  const scOf = (c: Cell) => r.vsStopAndCopy.find((x) => x.heapBytes === c.heapBytes && sameVariant(x, c));
  lines.push(
    'Timing (medians over the runs; downtime = source stops serving -> destination serves; CPU wait = share of',
    'the migration in which some task on this machine waited for a CPU, /proc/pressure/cpu):',
    ...table(
      [
        'heap',
        'mode',
        'n',
        'downtime ms',
        'min-max',
        'S&C/mode',
        'client gap ms',
        'total ms',
        'post-copy ms',
        'CPU wait %',
      ],
      cells.map((c) => [
        formatBytes(c.heapBytes),
        variantLabel(c),
        `${c.runs}${c.failed ? ` (+${c.failed} FAILED)` : ''}`,
        fixed(c.downtimeMs, 1),
        c.runs ? `${c.downtimeMinMs.toFixed(0)}-${c.downtimeMaxMs.toFixed(0)}` : '-',
        c.runs === 0
          ? '-'
          : c.mode === 'stop-and-copy'
            ? '1'
            : scOf(c)
              ? `${scOf(c)!.ratio.toFixed(1)}x`
              : '-',
        fixed(c.clientGapMs, 1),
        fixed(c.totalMs),
        fixed(c.postcopyMs),
        fixed(c.cpuPressureSomePct),
      ]),
    ),
    '',
    'Mechanics (medians; fault p50/p99 = median over the runs of each run’s own percentile):',
    ...table(
      [
        'heap',
        'mode',
        'allocated',
        'rounds',
        'dirty MB/s',
        'faults',
        'fault p50 µs',
        'fault p99 µs',
        'fault max µs',
        'MB/s',
        'wire MiB',
        'dst RSS-alloc MiB',
        'src CPU ms',
        'dst CPU ms',
        'verified',
        'lost writes',
      ],
      cells.map((c) => [
        formatBytes(c.heapBytes),
        variantLabel(c),
        bytesOrDash(c.allocatedBytes),
        fixed(c.precopyRounds),
        fixed(c.dirtyRateMBps, 2),
        fixed(c.demandFaults),
        fixed(c.faultP50Us),
        fixed(c.faultP99Us),
        fixed(c.faultMaxUs),
        fixed(c.throughputMBps),
        mib(c.bytesOnWire),
        mib(c.destinationRssOverAllocatedBytes),
        fixed(c.sourceCpuMs),
        fixed(c.destinationCpuMs),
        c.runs === 0 ? '-' : c.verifyOff ? 'off' : `${c.verified}/${c.runs}`,
        String(c.lostWrites),
      ]),
    ),
  );
  const small = sizes[0]!;
  const large = sizes[sizes.length - 1]!;
  const criteria: string[] = [];
  for (const c of cells.filter((x) => x.mode === 'post-copy' && x.heapBytes === large)) {
    const growth = r.vsSmallest.find((x) => x.heapBytes === large && sameVariant(x, c));
    const vsSc = r.vsStopAndCopy.find((x) => x.heapBytes === large && sameVariant(x, c));
    if (growth) {
      criteria.push(
        `  ${variantLabel(c)} downtime ${formatBytes(large)} / ${formatBytes(small)} = ${growth.ratio.toFixed(2)} (wanted <= 2): ${growth.ratio <= 2 ? 'met' : 'NOT met'}`,
      );
    }
    if (vsSc) {
      criteria.push(
        `  stop-and-copy / ${variantLabel(c)} downtime at ${formatBytes(large)} = ${vsSc.ratio.toFixed(1)}x (wanted >= 20x): ${vsSc.ratio >= 20 ? 'met' : 'NOT met'}`,
      );
    }
  }
  const ratioSection = [
    ...ratioLines(
      'Downtime vs stop-and-copy at the same heap (S&C median / variant median; higher = shorter downtime):',
      r.vsStopAndCopy,
      sizes,
      (ratio) => `${ratio.toFixed(1)}x`,
    ),
    ...ratioLines(
      'Downtime at each heap vs the smallest heap measured (variant median / its median there; 1 = flat):',
      r.vsSmallest,
      sizes,
      (ratio) => ratio.toFixed(2),
    ),
    ...(criteria.length ? ['Issue 4 criteria (reported, not asserted):', ...criteria] : []),
  ];
  if (ratioSection.length) lines.push('', ...ratioSection);
  const postcopy = cells.filter((c) => hasPostcopy(c.mode));
  if (postcopy.length) lines.push('', ...renderPostcopy(postcopy, r.faultVsAccess));
  return lines.join('\n');
}

const ratioText = (v: number | null) => fixed(v, 2);

/** The post-copy variants side by side by tracker, with the client's throughput around post-copy. */
function renderPostcopy(cells: readonly Cell[], faultVsAccess: readonly FaultVsAccess[]): string[] {
  const lines = [
    'Post-copy by tracker (medians; faults and fault p50/p99 from the report; client throughput in',
    'successful ops/s from the whole 100 ms buckets in each window: before = load start (+100 ms) -> request,',
    'during = resumed -> committed, after = committed -> load stop; x/before = median of the runs’ own',
    'ratios; - = no whole bucket in the window in any run):',
    ...table(
      [
        'heap',
        'mode',
        'tracker',
        'n',
        'downtime ms',
        'post-copy ms',
        'faults',
        'fault p50 µs',
        'fault p99 µs',
        'before ops/s',
        'during ops/s',
        'during/before',
        'after ops/s',
        'after/before',
      ],
      cells.map((c) => [
        formatBytes(c.heapBytes),
        c.mode,
        c.tracker ?? '-',
        `${c.runs}${c.failed ? ` (+${c.failed} FAILED)` : ''}`,
        fixed(c.downtimeMs, 1),
        fixed(c.postcopyMs),
        fixed(c.demandFaults),
        fixed(c.faultP50Us),
        fixed(c.faultP99Us),
        fixed(c.client.beforeOpsPerSec),
        fixed(c.client.duringOpsPerSec),
        ratioText(c.client.duringVsBefore),
        fixed(c.client.afterOpsPerSec),
        ratioText(c.client.afterVsBefore),
      ]),
      3,
    ),
  ];
  if (faultVsAccess.length) {
    lines.push('Fault Tracker / Access Tracker at the same heap and mode (ratio of the medians above):');
    for (const x of faultVsAccess) {
      lines.push(
        `  ${formatBytes(x.heapBytes).padEnd(9)} ${x.mode}: downtime ${ratioText(x.downtime)}, throughput during ${ratioText(x.duringOpsPerSec)}, fault p50 ${ratioText(x.faultP50)}`,
      );
    }
  }
  return lines;
}

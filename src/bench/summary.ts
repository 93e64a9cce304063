import type { MigrationMode } from '../migrate/modes.js';
import type { MigrationReport } from '../migrate/report.js';
import { formatBytes } from '../util/size.js';

/** What the benchmark keeps of one migration: the whole report plus what the client load saw. */
export interface MigrationRun {
  heapBytes: number;
  mode: MigrationMode;
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
    ackedKeysChecked: number;
    lostWrites: number;
  };
  /**
   * How busy the machine was during the migration: the 1-minute load average when it began, and the
   * share of its wall time in which some task on the machine waited for a CPU (Linux PSI
   * /proc/pressure/cpu "some"; null where the kernel does not provide it).
   */
  contention: { loadAvg1: number; cpuPressureSomePct: number | null };
  /** Client operations per 100 ms with the migration's instants on the same axis (DESIGN.md §6 degradation). */
  timeline: unknown;
}

export interface FailedRun {
  heapBytes: number;
  mode: MigrationMode;
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

/** Medians per heap size x mode; null fields when no run of the cell has the figure. */
export interface Cell {
  heapBytes: number;
  mode: MigrationMode;
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
}

const nullableMedian = (values: (number | null | undefined)[]): number | null => {
  const present = values.filter((v): v is number => typeof v === 'number');
  return present.length === 0 ? null : median(present);
};

export function summarise(
  sizes: readonly number[],
  modes: readonly MigrationMode[],
  runs: readonly MigrationRun[],
  failures: readonly FailedRun[],
): Cell[] {
  const cells: Cell[] = [];
  for (const heapBytes of sizes) {
    for (const mode of modes) {
      const mine = runs.filter((r) => r.heapBytes === heapBytes && r.mode === mode);
      const failed = failures.filter((f) => f.heapBytes === heapBytes && f.mode === mode).length;
      if (mine.length === 0 && failed === 0) continue;
      const reports = mine.map((r) => r.report);
      const downtimes = reports.map((r) => r.downtimeMs);
      cells.push({
        heapBytes,
        mode,
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
      });
    }
  }
  return cells;
}

export interface Ratios {
  /** Stop-and-copy median downtime / this mode's, at the same heap size (higher: shorter downtime). */
  vsStopAndCopy: { heapBytes: number; mode: MigrationMode; ratio: number }[];
  /** This mode's median downtime at a size / at the smallest size measured (1: flat). */
  vsSmallest: { heapBytes: number; mode: MigrationMode; ratio: number }[];
}

export function ratios(cells: readonly Cell[], sizes: readonly number[]): Ratios {
  const cell = (heapBytes: number, mode: MigrationMode) =>
    cells.find((c) => c.heapBytes === heapBytes && c.mode === mode && c.runs > 0);
  const result: Ratios = { vsStopAndCopy: [], vsSmallest: [] };
  for (const c of cells) {
    if (c.runs === 0) continue;
    const sc = cell(c.heapBytes, 'stop-and-copy');
    if (sc && c.mode !== 'stop-and-copy')
      result.vsStopAndCopy.push({
        heapBytes: c.heapBytes,
        mode: c.mode,
        ratio: sc.downtimeMs / c.downtimeMs,
      });
    const smallest = sizes.map((s) => cell(s, c.mode)).find((x) => x !== undefined);
    if (smallest && smallest.heapBytes !== c.heapBytes)
      result.vsSmallest.push({
        heapBytes: c.heapBytes,
        mode: c.mode,
        ratio: c.downtimeMs / smallest.downtimeMs,
      });
  }
  return result;
}

const fixed = (v: number | null, digits = 0) => (v === null || Number.isNaN(v) ? '-' : v.toFixed(digits));
const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(0);

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) =>
    r.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), ...rows.map(line)];
}

/** The two median tables (timing, then mechanics), the ratios and the issue 4 criteria, as text. */
export function renderSummary(cells: readonly Cell[], r: Ratios, sizes: readonly number[]): string {
  const lines: string[] = [];
  const scOf = (c: Cell) => r.vsStopAndCopy.find((x) => x.heapBytes === c.heapBytes && x.mode === c.mode);
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
        c.mode,
        `${c.runs}${c.failed ? ` (+${c.failed} FAILED)` : ''}`,
        fixed(c.downtimeMs, 1),
        c.runs ? `${c.downtimeMinMs.toFixed(0)}-${c.downtimeMaxMs.toFixed(0)}` : '-',
        c.mode === 'stop-and-copy' ? '1' : scOf(c) ? `${scOf(c)!.ratio.toFixed(1)}x` : '-',
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
        c.mode,
        formatBytes(c.allocatedBytes),
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
        c.verifyOff ? 'off' : `${c.verified}/${c.runs}`,
        String(c.lostWrites),
      ]),
    ),
    '',
    'Downtime vs stop-and-copy at the same heap (S&C median / mode median; higher = shorter downtime):',
  );
  for (const size of sizes) {
    const mine = r.vsStopAndCopy.filter((x) => x.heapBytes === size);
    if (mine.length) {
      lines.push(
        `  ${formatBytes(size).padEnd(9)} ${mine.map((x) => `${x.mode} ${x.ratio.toFixed(1)}x`).join(', ')}`,
      );
    }
  }
  lines.push(
    'Downtime at each heap vs the smallest heap measured (mode median / its median there; 1 = flat):',
  );
  for (const size of sizes) {
    const mine = r.vsSmallest.filter((x) => x.heapBytes === size);
    if (mine.length) {
      lines.push(
        `  ${formatBytes(size).padEnd(9)} ${mine.map((x) => `${x.mode} ${x.ratio.toFixed(2)}`).join(', ')}`,
      );
    }
  }
  const small = sizes[0]!;
  const large = sizes[sizes.length - 1]!;
  const pcGrowth = r.vsSmallest.find((x) => x.mode === 'post-copy' && x.heapBytes === large);
  const pcVsSc = r.vsStopAndCopy.find((x) => x.mode === 'post-copy' && x.heapBytes === large);
  if (pcGrowth || pcVsSc) {
    lines.push('Issue 4 criteria (reported, not asserted):');
    if (pcGrowth) {
      lines.push(
        `  post-copy downtime ${formatBytes(large)} / ${formatBytes(small)} = ${pcGrowth.ratio.toFixed(2)} (wanted <= 2): ${pcGrowth.ratio <= 2 ? 'met' : 'NOT met'}`,
      );
    }
    if (pcVsSc) {
      lines.push(
        `  stop-and-copy / post-copy downtime at ${formatBytes(large)} = ${pcVsSc.ratio.toFixed(1)}x (wanted >= 20x): ${pcVsSc.ratio >= 20 ? 'met' : 'NOT met'}`,
      );
    }
  }
  return lines.join('\n');
}

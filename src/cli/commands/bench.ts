import path from 'node:path';
import { WORKLOAD_KINDS } from '../../apps/registry.js';
import { parseBenchOptions, type RawBenchOptions, runModesBench } from '../../bench/modes-bench.js';
import { measurePhysicalLimits } from '../../bench/physical-limits.js';
import { CHARTS_DIR, writeReport } from '../../bench/report/write-report.js';
import { UserError } from '../../util/errors.js';

export interface BenchCommandOptions extends Partial<Omit<RawBenchOptions, 'profile' | 'link'>> {
  quick?: boolean;
  full?: boolean;
  link?: string;
  verify: boolean;
}

/** Every workload: kv under YCSB-B (95 % reads) and YCSB-A (50/50), then the benchmark workloads. */
export const ALL_WORKLOADS = ['kv', 'kv:0.5', ...WORKLOAD_KINDS].join(',');

/** What each profile sets, unless given. */
const PROFILES = {
  /** Every workload and variant once at two small sizes: within 10 minutes on 2 cores. */
  quick: { sizes: '64MiB,256MiB', repeat: '1' },
  /** Up to 8 GiB, as docs/results.md is made. */
  full: { sizes: '64MiB,1GiB,8GiB', repeat: '1' },
  custom: { sizes: '256MiB,1GiB,4GiB', repeat: '3' },
} as const;
const DEFAULTS = {
  workloads: ALL_WORKLOADS,
  modes: 'stop-and-copy,pre-copy,post-copy,hybrid',
  trackers: 'access,fault',
  maxDowntime: '300',
  out: 'bench-results',
} as const;

/** `constmig bench`: workloads x sizes x migration modes (and trackers) side by side (src/bench/modes-bench.ts). */
export async function benchCommand(options: BenchCommandOptions): Promise<void> {
  if (options.quick && options.full) throw new UserError('--quick and --full: choose one profile');
  const profile = options.quick ? 'quick' : options.full ? 'full' : 'custom';
  const defaults = { ...DEFAULTS, ...PROFILES[profile] };
  const resultsFile = await runModesBench(
    parseBenchOptions({
      profile,
      workloads: options.workloads ?? defaults.workloads,
      sizes: options.sizes ?? defaults.sizes,
      modes: options.modes ?? defaults.modes,
      trackers: options.trackers ?? defaults.trackers,
      repeat: options.repeat ?? defaults.repeat,
      maxDowntime: options.maxDowntime ?? defaults.maxDowntime,
      link: options.link ?? null,
      out: options.out ?? defaults.out,
      verify: options.verify,
    }),
  );
  // Each run's report goes to a folder of its own beside its results file: bench-<time>/results.md.
  await benchReportCommand(resultsFile, { out: resultsFile.replace(/\.json$/, '') });
}

/** `constmig bench report <results.json>`: results.md and charts from a results file, by default beside it. */
export async function benchReportCommand(
  resultsFile: string,
  options: { out?: string; measureLimits?: boolean },
): Promise<void> {
  const outDir = options.out ?? path.dirname(resultsFile);
  const { markdownFile, charts, pngUnavailable } = await writeReport(resultsFile, outDir, {
    limitsNow: options.measureLimits ? measurePhysicalLimits : undefined,
  });
  process.stdout.write(`${markdownFile}\n${charts.length} chart files in ${path.join(outDir, CHARTS_DIR)}\n`);
  if (pngUnavailable) process.stderr.write(`constmig: warning: ${pngUnavailable}\n`);
}

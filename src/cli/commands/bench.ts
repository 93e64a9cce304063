import { parseBenchOptions, type RawBenchOptions, runModesBench } from '../../bench/modes-bench.js';

export interface BenchCommandOptions extends Partial<RawBenchOptions> {
  quick?: boolean;
  verify: boolean;
}

/** What `--quick` sets, unless given: two sizes, every variant once (a few minutes on 2 cores). */
const QUICK = { sizes: '256MiB,1GiB', repeat: '1' } as const;
const DEFAULTS = {
  sizes: '256MiB,1GiB,4GiB',
  modes: 'stop-and-copy,pre-copy,post-copy,hybrid',
  trackers: 'access,fault',
  repeat: '3',
  maxDowntime: '300',
  out: 'bench-results',
} as const;

/** `constmig bench`: every migration mode (and tracker) side by side, same data (src/bench/modes-bench.ts). */
export async function benchCommand(options: BenchCommandOptions): Promise<void> {
  const profile = options.quick ? { ...DEFAULTS, ...QUICK } : DEFAULTS;
  await runModesBench(
    parseBenchOptions({
      sizes: options.sizes ?? profile.sizes,
      modes: options.modes ?? profile.modes,
      trackers: options.trackers ?? profile.trackers,
      repeat: options.repeat ?? profile.repeat,
      maxDowntime: options.maxDowntime ?? profile.maxDowntime,
      out: options.out ?? profile.out,
      verify: options.verify,
    }),
  );
}

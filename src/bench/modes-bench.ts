/**
 * The migration benchmark (`constmig bench`): every workload x heap size x migration mode side by
 * side in one run. The modes with post-copy run once per destination tracker (--trackers), so a
 * variant is a mode, or a mode and a tracker. For each workload and heap size it starts two hosts
 * (BenchHosts: on loopback, or with --link in two network namespaces joined by a shaped link), fills
 * one enclave once, and migrates it back and forth between the hosts, the variants interleaved
 * round-robin (each repetition runs every variant once, starting one variant later than the previous
 * repetition) so that drift on a noisy machine hits all variants alike. The workload's client load
 * runs during every migration, so that pre-copy sees a dirty rate and post-copy demand faults, and its
 * throughput before, during and after is recorded. Prints medians per workload x size x variant and
 * writes one results JSON (schema 2) to --out.
 *
 *   npm run bench -- --workloads kv,micro --sizes 256MiB,1GiB --repeat 3
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { throughputTimeline } from '../cli/commands/demo.js';
import { requestMigration } from '../cli/commands/migrate.js';
import { MigrationProgressView } from '../cli/migrate-progress.js';
import type { EnclaveInfo } from '../host/api-schema.js';
import type { MigrationReport } from '../migrate/report.js';
import { hasPostcopy } from '../migrate/modes.js';
import { uffdAvailability } from '../native/uffd.js';
import { monotonicMs } from '../util/clock.js';
import { errorMessage, UserError } from '../util/errors.js';
import { formatBytes } from '../util/size.js';
import { VERSION } from '../version.js';
import type { BenchOptions, WorkloadChoice } from './bench-options.js';
import {
  type BenchHost,
  type BenchHosts,
  benchLink,
  checkLinkAvailable,
  describeLink,
  startBenchHosts,
} from './bench-hosts.js';
import { dataPathChoice } from '../crypto/data-path.js';
import { bitmapKernelsChoice } from '../heap/bitmap-kernels.js';
import { describeLimits, measurePhysicalLimits, type PhysicalLimits } from './physical-limits.js';
import { RESULTS_SCHEMA } from './report/results-file.js';
import {
  clientThroughput,
  type FailedRun,
  fixed,
  type MigrationRun,
  ratios,
  renderSummary,
  summarise,
  type Variant,
  variantLabel,
  variants,
} from './summary.js';

export { parseBenchOptions, type BenchOptions, type RawBenchOptions } from './bench-options.js';

/**
 * The client load runs this long before the migration is requested, and this long after it is served
 * again once the report (so COMMIT) is in: about ten whole buckets of throughput after post-copy.
 */
const LOAD_BEFORE_MS = 1000;
const LOAD_AFTER_MS = 1000;
/** After the report, wait at most this long for the client to be served again at the destination. */
const LOAD_RECOVERY_MS = 10_000;

function machineFacts() {
  let commit: string | null = null;
  try {
    commit = execFileSync('git', ['rev-parse', 'HEAD'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    commit = null;
  }
  return {
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    cpus: os.availableParallelism(),
    totalMemBytes: os.totalmem(),
    kernel: `${os.type()} ${os.release()}`,
    hostname: os.hostname(),
    loadAvgAtStart: os.loadavg(),
    versions: { constmig: VERSION, commit, ...process.versions },
  };
}

const duration = (ms: number): string => {
  const s = Math.round(ms / 1000);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
};

/**
 * Remaining time, assuming that a migration and a fill take time proportional to the heap size (the
 * ratio measured so far). Rough at first; the large sizes soon dominate the estimate.
 */
class Eta {
  private runMs = 0;
  private runBytes = 0;
  private fillMs = 0;
  private fillBytes = 0;

  /** `steps`: the heap size of each workload x size step, in the order they run. */
  constructor(
    private readonly steps: readonly number[],
    private readonly runsPerStep: number,
  ) {}

  ran(heapBytes: number, ms: number): void {
    this.runMs += ms;
    this.runBytes += heapBytes;
  }

  filled(heapBytes: number, ms: number): void {
    this.fillMs += ms;
    this.fillBytes += heapBytes;
  }

  /** ms left, given the step being measured and how many of its runs are done; null before any run. */
  remainingMs(step: number, runsDone: number): number | null {
    if (this.runBytes === 0) return null;
    const perRunByte = this.runMs / this.runBytes;
    const perFillByte = this.fillBytes ? this.fillMs / this.fillBytes : 0;
    let ms = (this.runsPerStep - runsDone) * this.steps[step]! * perRunByte;
    for (const size of this.steps.slice(step + 1)) ms += size * (perFillByte + this.runsPerStep * perRunByte);
    return ms;
  }
}

type MigrateOutcome =
  | { ok: true; run: Omit<MigrationRun, 'index' | 'repeat'>; lostDetail: string | null }
  | { ok: false; error: string };

/** [source, destination] as the enclave is first placed; it then serves at hosts[0] or hosts[1]. */
type HostPair = readonly [BenchHost, BenchHost];

/** One migration of the enclave from hosts[from] to the other host, with the client load around it. */
async function migrateOnce(
  cluster: BenchHosts,
  hosts: HostPair,
  from: 0 | 1,
  enclave: EnclaveInfo,
  workload: WorkloadChoice,
  { mode, tracker }: Variant,
  options: BenchOptions,
): Promise<MigrateOutcome> {
  const to = (1 - from) as 0 | 1;
  const application = (host: BenchHost) => ({ host: host.address, port: enclave.port });
  const load = await cluster.startLoad(hosts[from], {
    kind: workload.kind,
    writeShare: workload.writeShare,
    filledKeys: enclave.stats.keys ?? 0,
    endpoints: [application(hosts[from]), application(hosts[to])],
    checkAt: application(hosts[to]),
  });
  await sleep(LOAD_BEFORE_MS);
  const loadAvg1 = os.loadavg()[0]!;
  const pressureBefore = cpuPressureUs();
  const requestedAtMs = monotonicMs();
  let report: MigrationReport;
  try {
    report = await requestMigration(
      cluster.client(hosts[from]),
      enclave.id,
      {
        to: hosts[to].controlUrl,
        mode,
        verify: options.verify,
        maxDowntimeMs: options.maxDowntimeMs,
        tracker: tracker ?? undefined,
      },
      new MigrationProgressView(false),
    );
  } catch (err) {
    await load.stop(false);
    return { ok: false, error: errorMessage(err) };
  }
  const wallMs = monotonicMs() - requestedAtMs;
  const pressureAfter = cpuPressureUs();
  const cpuPressureSomePct =
    pressureBefore === null || pressureAfter === null ? null : (pressureAfter - pressureBefore) / 10 / wallMs;
  await load.servedAgain(LOAD_RECOVERY_MS);
  await sleep(LOAD_AFTER_MS);
  const { result: loadResult, check: checked } = await load.stop(true);
  if (!checked) throw new Error('the load stopped without the check it was asked for');
  report.clientGapMs = loadResult.clientGapMs;
  const timeline = throughputTimeline(loadResult, requestedAtMs - load.startedAtMs, report);
  return {
    ok: true,
    lostDetail: checked.detail,
    run: {
      workload: workload.label,
      heapBytes: enclave.heapBytes,
      mode,
      tracker,
      fromHost: from,
      wallMs,
      report,
      contention: { loadAvg1, cpuPressureSomePct },
      load: {
        ops: loadResult.ops,
        errors: loadResult.errors,
        reconnects: loadResult.reconnects,
        clientGapMs: loadResult.clientGapMs,
        ackedKeysChecked: checked.checked,
        lostWrites: checked.lost,
      },
      timeline,
      client: clientThroughput(timeline, hasPostcopy(mode)),
    },
  };
}

/** Microseconds some task on this machine has waited for a CPU since boot (PSI), or null. */
function cpuPressureUs(): number | null {
  try {
    const some = /^some .*total=(\d+)/m.exec(fs.readFileSync('/proc/pressure/cpu', 'utf8'));
    return some ? Number(some[1]) : null;
  } catch {
    return null;
  }
}

/** After a failed migration: which host serves the enclave now (0 or 1), or null if none does. */
async function locate(cluster: BenchHosts, hosts: HostPair, id: string) {
  for (const at of [0, 1] as const) {
    try {
      const list = await cluster.client(hosts[at]).call<EnclaveInfo[]>('GET', '/v1/enclaves');
      if (list.some((e) => e.id === id && e.state === 'running')) return at;
    } catch {
      // an unreachable host serves nothing
    }
  }
  return null;
}

/** Each repetition runs every variant once, starting one variant later than the previous repetition. */
const rotation = (all: readonly Variant[], repeat: number): Variant[] => {
  const shift = (repeat - 1) % all.length;
  return [...all.slice(shift), ...all.slice(0, shift)];
};

/** What the benchmark has gathered so far; written out after every run. */
interface Gathered {
  runs: MigrationRun[];
  failures: FailedRun[];
  fills: { workload: string; heapBytes: number; fillMs: number; items: number; allocatedBytes: number }[];
  notes: string[];
}

/** The medians and ratios of one workload's runs. */
function workloadSummary(options: BenchOptions, measured: readonly Variant[], all: Gathered, label: string) {
  const cells = summarise(
    options.sizes,
    measured,
    all.runs.filter((r) => r.workload === label),
    all.failures.filter((f) => f.workload === label),
  );
  return { workload: label, cells, ratios: ratios(cells, options.sizes) };
}

/** Runs the benchmark; sets a non-zero exit code if a migration failed. Returns the results file. */
export async function runModesBench(options: BenchOptions): Promise<string> {
  const { sizes, modes, repeat, workloads } = options;
  const link = benchLink(options.link);
  checkLinkAvailable(link);
  let trackers = options.trackers;
  let faultSkipped: string | null = null;
  if (trackers.includes('fault') && modes.some(hasPostcopy)) {
    const uffd = uffdAvailability();
    if (!uffd.ok) {
      faultSkipped = `Fault Tracker runs skipped: ${uffd.reason}`;
      process.stderr.write(`${faultSkipped}\n`);
      trackers = trackers.filter((t) => t !== 'fault');
    }
  }
  const measured = variants(modes, trackers);
  if (measured.length === 0) throw new UserError('nothing to run: no mode has a tracker left to run with');
  const startedAt = new Date();
  const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
  fs.mkdirSync(options.out, { recursive: true });
  const rawFile = path.join(options.out, `bench-${stamp}.json`);

  const machine = machineFacts();
  const machineLine = `machine: ${machine.cpuModel}, ${machine.cpus} CPUs, ${formatBytes(machine.totalMemBytes)}, Node ${process.versions.node}; data path ${describeDataPath()}; bitmap passes ${describeBitmapKernels()}; load average at start ${machine.loadAvgAtStart.map((l) => l.toFixed(2)).join(' ')}`;
  process.stderr.write(`${machineLine}\n`);
  /**
   * Measured at the end, once every enclave is gone: the measurement holds 512 MiB of buffers, and an
   * enclave spawned (by the in-process host daemons) while this process is that large inherits its
   * RSS as the floor of its own peak RSS (getrusage maxRSS survives fork and exec on Linux).
   */
  let limits: PhysicalLimits | null = null;
  const all: Gathered = { runs: [], failures: [], fills: [], notes: [] };
  const writeRaw = (complete: boolean) => {
    const raw = {
      benchmark: 'constmig bench',
      schema: RESULTS_SCHEMA,
      complete,
      startedAt: startedAt.toISOString(),
      writtenAt: new Date().toISOString(),
      argv: process.argv.slice(2),
      profile: options.profile,
      options,
      link,
      machine: { ...machine, limits, loadAvgNow: os.loadavg() },
      workloads,
      variants: measured,
      faultSkipped,
      fills: all.fills,
      medians: workloads.map((w) => workloadSummary(options, measured, all, w.label)),
      notes: all.notes,
      failures: all.failures,
      runs: all.runs,
    };
    fs.writeFileSync(rawFile, `${JSON.stringify(raw, null, 2)}\n`);
  };

  // Size-major: every workload at a size before any at the next, so that a long run cut short (or
  // still going) has every workload at the smaller sizes.
  const steps = sizes.flatMap((heapBytes) => workloads.map((workload) => ({ workload, heapBytes })));
  const runsPerStep = measured.length * repeat;
  const total = steps.length * runsPerStep;
  const eta = new Eta(
    steps.map((s) => s.heapBytes),
    runsPerStep,
  );
  const t0 = monotonicMs();
  let index = 0;
  // Ctrl-C (or SIGTERM) ends the benchmark after the migration under way, and the rest still happens:
  // the machine is measured and the results and the report are written. A second one quits at once.
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(130);
    stopping = true;
    process.stderr.write(
      `${signal}: stopping after the migration under way, then measuring this machine and writing the results (${signal} again to quit at once)\n`,
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  for (const [step, { workload, heapBytes }] of steps.entries()) {
    if (stopping) break;
    const cluster = await startBenchHosts(link, 'constmig-bench-');
    let keepLogs = false;
    const name = `${workload.label} ${formatBytes(heapBytes)}`;
    try {
      const hosts = [cluster.source, cluster.destination] as const;
      const port = await cluster.applicationPort();
      process.stderr.write(`${name}: starting and filling (logs in ${cluster.dir})…\n`);
      const fillStart = monotonicMs();
      const recordFailure = (variant: Variant, rep: number, at: number, error: string): void => {
        all.failures.push({
          workload: workload.label,
          heapBytes,
          ...variant,
          repeat: rep,
          index: at,
          error,
          logsKeptIn: cluster.dir,
        });
      };
      let enclave: EnclaveInfo;
      try {
        enclave = await cluster.client(hosts[0]).call<EnclaveInfo>('POST', '/v1/enclaves', {
          app: workload.kind,
          heapBytes,
          port,
          fillBytes: heapBytes,
        });
      } catch (err) {
        // The step's migrations cannot run; they are recorded as failed, and the benchmark goes on.
        keepLogs = true;
        const error = `starting and filling failed: ${errorMessage(err)}`;
        for (let rep = 1; rep <= repeat; rep++) {
          for (const variant of rotation(measured, rep)) {
            recordFailure(variant, rep, ++index, error);
          }
        }
        process.stderr.write(`${name}: ${error}; its ${runsPerStep} migrations are recorded as failed\n`);
        writeRaw(false);
        continue;
      }
      const fillMs = monotonicMs() - fillStart;
      eta.filled(heapBytes, fillMs);
      const items = enclave.stats.keys ?? enclave.stats.items ?? 0;
      const allocatedBytes = enclave.stats.allocatedBytes ?? 0;
      all.fills.push({ workload: workload.label, heapBytes, fillMs, items, allocatedBytes });
      process.stderr.write(
        `${name}: ${items} items, ${formatBytes(allocatedBytes)} allocated in ${duration(fillMs)}\n`,
      );
      let at: 0 | 1 = 0;
      let doneAtStep = 0;
      stepLoop: for (let rep = 1; rep <= repeat; rep++) {
        for (const variant of rotation(measured, rep)) {
          index++;
          const stepStart = monotonicMs();
          const outcome = await migrateOnce(cluster, hosts, at, enclave, workload, variant, options);
          eta.ran(heapBytes, monotonicMs() - stepStart);
          doneAtStep++;
          const head = `[${String(index).padStart(String(total).length)}/${total}] ${name} ${variantLabel(variant)} rep ${rep}/${repeat} ${hosts[at].address}->${hosts[at === 0 ? 1 : 0].address}:`;
          let line: string;
          if (outcome.ok) {
            const { report, load } = outcome.run;
            all.runs.push({ ...outcome.run, index, repeat: rep });
            const faults = report.faultLatencyUs
              ? `faults ${report.demandFaults} (p50 ${report.faultLatencyUs.p50.toFixed(0)} µs, p99 ${report.faultLatencyUs.p99.toFixed(0)} µs)`
              : `faults ${report.demandFaults}`;
            const rounds = report.precopyRounds ? `, ${report.precopyRounds} rounds` : '';
            const checks = `${options.verify ? (report.verified ? 'verified' : 'NOT VERIFIED') : 'verify off'}, ${load.lostWrites} lost`;
            const { cpuPressureSomePct: cpuWait } = outcome.run.contention;
            const wait = cpuWait === null ? '' : `, CPU wait ${cpuWait.toFixed(0)} %`;
            const { beforeOpsPerSec, duringOpsPerSec, afterOpsPerSec } = outcome.run.client;
            const client = `ops/s before ${fixed(beforeOpsPerSec)} during ${fixed(duringOpsPerSec)} after ${fixed(afterOpsPerSec)}`;
            line = `${head} downtime ${report.downtimeMs.toFixed(1)} ms, gap ${load.clientGapMs.toFixed(0)} ms, total ${report.totalMs.toFixed(0)} ms${rounds}, ${faults}, ${client}, ${checks}${wait}`;
            if ((options.verify && !report.verified) || load.lostWrites > 0) {
              keepLogs = true;
              all.notes.push(`${head} ${checks}${outcome.lostDetail ? `: ${outcome.lostDetail}` : ''}`);
            }
            at = (1 - at) as 0 | 1;
          } else {
            keepLogs = true;
            recordFailure(variant, rep, index, outcome.error);
            line = `${head} FAILED: ${outcome.error}`;
            const where = await locate(cluster, hosts, enclave.id);
            if (where === null) {
              all.notes.push(`${name}: the enclave serves on neither host after a failure; abandoned`);
              process.stderr.write(`${line}\n  the enclave serves on neither host: abandoning ${name}\n`);
              index += runsPerStep - doneAtStep;
              writeRaw(false);
              break stepLoop;
            }
            at = where;
          }
          const left = eta.remainingMs(step, doneAtStep);
          process.stderr.write(
            `${line} | ${duration(monotonicMs() - t0)} elapsed, ETA ${left === null ? '?' : `~${duration(left)}`}\n`,
          );
          writeRaw(false);
          if (stopping) break stepLoop;
        }
      }
    } finally {
      // Closed (enclave processes gone) before the next step: two 8 GiB heaps are ~17 GiB RSS.
      await cluster.close(keepLogs);
      if (keepLogs) process.stderr.write(`logs kept in ${cluster.dir}\n`);
    }
  }

  process.stderr.write('measuring this machine (AES-256-GCM, SHA-256, memcpy)…\n');
  limits = measurePhysicalLimits();
  writeRaw(!stopping);
  process.off('SIGINT', stop);
  process.off('SIGTERM', stop);
  const summary = [
    `constmig bench, ${startedAt.toISOString()}: ${workloads.map((w) => w.label).join(', ')} x ${sizes.map(formatBytes).join(', ')} x ${measured.map(variantLabel).join(', ')}, ${repeat} repetition(s), verify ${options.verify ? 'on' : 'off'}, max-downtime ${options.maxDowntimeMs} ms, client load on, ${describeLink(link)}`,
    ...(faultSkipped ? [faultSkipped] : []),
    machineLine,
    `this machine, measured after the migrations (one core, ${limits.recordBytes / 1024} KiB records): ${describeLimits(limits)}; load average at the end ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
    ...workloads.flatMap((w) => {
      const { cells, ratios: r } = workloadSummary(options, measured, all, w.label);
      return [
        '',
        `== ${w.label}: ${w.summary}, write share ${w.writeShare}`,
        '',
        renderSummary(cells, r, sizes),
      ];
    }),
    ...(all.failures.length
      ? [
          '',
          `FAILED migrations: ${all.failures.length}`,
          ...all.failures.map(
            (f) =>
              `  ${f.workload} ${formatBytes(f.heapBytes)} ${variantLabel(f)} rep ${f.repeat}: ${f.error} (logs: ${f.logsKeptIn})`,
          ),
        ]
      : []),
    ...(all.notes.length ? ['', 'Notes:', ...all.notes.map((n) => `  ${n}`)] : []),
    '',
    `raw results: ${rawFile} (${duration(monotonicMs() - t0)} in all)`,
  ].join('\n');
  process.stdout.write(`${summary}\n`);
  fs.writeFileSync(rawFile.replace(/\.json$/, '.txt'), `${summary}\n`);
  if (all.failures.length || all.notes.length) process.exitCode = 1;
  if (stopping) {
    process.stderr.write(`stopped early: ${index} of ${total} migrations run\n`);
    process.exitCode = 130;
  }
  return rawFile;
}

/** The enclaves load the same addons as this process: its choices are theirs. */
function describeDataPath(): string {
  const { name, why } = dataPathChoice();
  return name === 'native' ? name : `${name} (${why})`;
}

function describeBitmapKernels(): string {
  const { name, why } = bitmapKernelsChoice();
  return name === 'native' ? name : `${name} (${why})`;
}

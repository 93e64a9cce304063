/**
 * Migration benchmark: every migration mode side by side in one run, on the same data. The modes with
 * post-copy run once per destination tracker (--trackers), so a variant is a mode, or a mode and a
 * tracker. For each heap size it starts two host daemons (LocalCluster), fills one kv enclave once,
 * and migrates that enclave back and forth between the hosts, the variants interleaved round-robin
 * (each repetition runs every variant once, starting one variant later than the previous repetition)
 * so that drift on a noisy machine hits all variants alike. A client load (KvLoad) runs during every
 * migration, so that pre-copy sees a dirty rate and post-copy demand faults, and its throughput before,
 * during and after post-copy is what the trackers are compared by. Prints medians per size x variant
 * and the ratios, and writes every report to bench-results/.
 *
 *   npm run bench -- --sizes 256MiB,1GiB,4GiB --modes stop-and-copy,pre-copy,post-copy,hybrid --repeat 3
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
import type { HostDaemon } from '../host/daemon.js';
import type { MigrationReport } from '../migrate/report.js';
import { hasPostcopy, isMigrationMode, MIGRATION_MODES, type MigrationMode } from '../migrate/modes.js';
import { uffdAvailability } from '../native/uffd.js';
import { TRACKER_KINDS, type TrackerKind } from '../trackers/tracker.js';
import { monotonicMs } from '../util/clock.js';
import { errorMessage, UserError } from '../util/errors.js';
import { formatBytes, parseSize } from '../util/size.js';
import { VERSION } from '../version.js';
import { countLostWrites, KvLoad } from './kv-load.js';
import { DESTINATION_BIND, freePortOnBoth, LocalCluster, SOURCE_BIND } from './local-cluster.js';
import { measurePhysicalLimits, type PhysicalLimits } from './physical-limits.js';
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

export interface BenchOptions {
  sizes: number[];
  modes: MigrationMode[];
  trackers: TrackerKind[];
  repeat: number;
  verify: boolean;
  maxDowntimeMs: number;
  out: string;
}

/**
 * The client load runs this long before the migration is requested, and this long after it is served
 * again once the report (so COMMIT) is in: about ten whole buckets of throughput after post-copy.
 */
const LOAD_BEFORE_MS = 1000;
const LOAD_AFTER_MS = 1000;
/** After the report, wait at most this long for the client to be served again at the destination. */
const LOAD_RECOVERY_MS = 10_000;
const BINDS = [SOURCE_BIND, DESTINATION_BIND] as const;

/** The options as typed on the command line (`constmig bench`, `npm run bench`). */
export interface RawBenchOptions {
  sizes: string;
  modes: string;
  trackers: string;
  repeat: string;
  verify: boolean;
  maxDowntime: string;
  out: string;
}

function sizeOf(text: string): number {
  try {
    return parseSize(text.trim());
  } catch (err) {
    throw new UserError(`--sizes: ${errorMessage(err)}`);
  }
}

export function parseBenchOptions(raw: RawBenchOptions): BenchOptions {
  const sizes = [...new Set(raw.sizes.split(',').map((s) => sizeOf(s)))].sort((a, b) => a - b);
  const modes = raw.modes.split(',').map((m) => m.trim());
  for (const mode of modes) {
    if (!isMigrationMode(mode))
      throw new UserError(`--modes: unknown mode '${mode}' (available: ${MIGRATION_MODES.join(', ')})`);
  }
  const trackers = [...new Set(raw.trackers.split(',').map((t) => t.trim()))];
  for (const tracker of trackers) {
    if (!(TRACKER_KINDS as readonly string[]).includes(tracker))
      throw new UserError(
        `--trackers: unknown tracker '${tracker}' (available: ${TRACKER_KINDS.join(', ')})`,
      );
  }
  const repeat = Number(raw.repeat);
  if (!(Number.isInteger(repeat) && repeat >= 1))
    throw new UserError(`--repeat: '${raw.repeat}' is not 1 or more`);
  const maxDowntimeMs = Number(raw.maxDowntime);
  if (!(Number.isInteger(maxDowntimeMs) && maxDowntimeMs >= 1))
    throw new UserError(`--max-downtime: '${raw.maxDowntime}' is not a whole number of ms`);
  return {
    sizes,
    modes: modes as MigrationMode[],
    trackers: trackers as TrackerKind[],
    repeat,
    verify: raw.verify,
    maxDowntimeMs,
    out: raw.out,
  };
}

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

  constructor(
    private readonly sizes: readonly number[],
    private readonly runsPerSize: number,
  ) {}

  ran(heapBytes: number, ms: number): void {
    this.runMs += ms;
    this.runBytes += heapBytes;
  }

  filled(heapBytes: number, ms: number): void {
    this.fillMs += ms;
    this.fillBytes += heapBytes;
  }

  /** ms left, given the size being measured and how many of its runs are done; null before any run. */
  remainingMs(sizeIndex: number, runsDoneAtSize: number): number | null {
    if (this.runBytes === 0) return null;
    const perRunByte = this.runMs / this.runBytes;
    const perFillByte = this.fillBytes ? this.fillMs / this.fillBytes : 0;
    let ms = (this.runsPerSize - runsDoneAtSize) * this.sizes[sizeIndex]! * perRunByte;
    for (const size of this.sizes.slice(sizeIndex + 1)) {
      ms += size * (perFillByte + this.runsPerSize * perRunByte);
    }
    return ms;
  }
}

type MigrateOutcome =
  { ok: true; run: Omit<MigrationRun, 'index' | 'repeat'> } | { ok: false; error: string };

/** One migration of the enclave from hosts[from] to the other host, with the client load around it. */
async function migrateOnce(
  cluster: LocalCluster,
  hosts: readonly [HostDaemon, HostDaemon],
  from: 0 | 1,
  enclave: EnclaveInfo,
  { mode, tracker }: Variant,
  options: BenchOptions,
): Promise<MigrateOutcome> {
  const to = (1 - from) as 0 | 1;
  const load = new KvLoad([
    { host: BINDS[from], port: enclave.port },
    { host: BINDS[to], port: enclave.port },
  ]);
  load.start();
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
    await load.stop();
    return { ok: false, error: errorMessage(err) };
  }
  const wallMs = monotonicMs() - requestedAtMs;
  const pressureAfter = cpuPressureUs();
  const cpuPressureSomePct =
    pressureBefore === null || pressureAfter === null ? null : (pressureAfter - pressureBefore) / 10 / wallMs;
  for (let waited = 0; load.sinceLastSuccess() > 20 && waited < LOAD_RECOVERY_MS; waited += 10)
    await sleep(10);
  await sleep(LOAD_AFTER_MS);
  const loadResult = await load.stop();
  const readBack = await countLostWrites(load, { host: BINDS[to], port: enclave.port });
  report.clientGapMs = loadResult.clientGapMs;
  const timeline = throughputTimeline(loadResult, requestedAtMs - load.startedAtMs, report);
  return {
    ok: true,
    run: {
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
        ackedKeysChecked: readBack.checked,
        lostWrites: readBack.lost,
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
async function locate(cluster: LocalCluster, hosts: readonly [HostDaemon, HostDaemon], id: string) {
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

/** Runs the benchmark; sets a non-zero exit code if a migration failed. */
export async function runModesBench(options: BenchOptions): Promise<void> {
  const { sizes, modes, repeat } = options;
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
  const rawFile = path.join(options.out, `modes-${stamp}.json`);

  const machine = machineFacts();
  const machineLine = `machine: ${machine.cpuModel}, ${machine.cpus} CPUs, ${formatBytes(machine.totalMemBytes)}, Node ${process.versions.node}; load average at start ${machine.loadAvgAtStart.map((l) => l.toFixed(2)).join(' ')}`;
  process.stderr.write(`${machineLine}\n`);
  /**
   * Measured at the end, once every enclave is gone: the measurement holds 512 MiB of buffers, and an
   * enclave spawned (by the in-process host daemons) while this process is that large inherits its
   * RSS as the floor of its own peak RSS (getrusage maxRSS survives fork and exec on Linux).
   */
  let limits: PhysicalLimits | null = null;

  const runs: MigrationRun[] = [];
  const failures: FailedRun[] = [];
  const fills: { heapBytes: number; fillMs: number; keys: number; allocatedBytes: number }[] = [];
  const notes: string[] = [];
  const writeRaw = (complete: boolean) => {
    const cells = summarise(sizes, measured, runs, failures);
    const raw = {
      benchmark: 'migration modes side by side',
      complete,
      startedAt: startedAt.toISOString(),
      writtenAt: new Date().toISOString(),
      argv: process.argv.slice(2),
      options,
      variants: measured,
      faultSkipped,
      machine: { ...machine, limits, loadAvgNow: os.loadavg() },
      fills,
      medians: cells,
      ratios: ratios(cells, sizes),
      notes,
      failures,
      runs,
    };
    fs.writeFileSync(rawFile, `${JSON.stringify(raw, null, 2)}\n`);
  };

  const total = sizes.length * measured.length * repeat;
  const eta = new Eta(sizes, measured.length * repeat);
  const t0 = monotonicMs();
  let index = 0;
  for (const [sizeIndex, heapBytes] of sizes.entries()) {
    const cluster = await LocalCluster.start('constmig-bench-');
    let keepLogs = false;
    try {
      const hosts = [cluster.source, cluster.destination] as const;
      const port = await freePortOnBoth();
      process.stderr.write(
        `${formatBytes(heapBytes)}: starting kv and filling it (logs in ${cluster.dir})…\n`,
      );
      const fillStart = monotonicMs();
      const enclave = await cluster.client(hosts[0]).call<EnclaveInfo>('POST', '/v1/enclaves', {
        app: 'kv',
        heapBytes,
        port,
        fillBytes: heapBytes,
      });
      const fillMs = monotonicMs() - fillStart;
      eta.filled(heapBytes, fillMs);
      fills.push({
        heapBytes,
        fillMs,
        keys: enclave.stats.keys ?? 0,
        allocatedBytes: enclave.stats.allocatedBytes ?? 0,
      });
      process.stderr.write(
        `${formatBytes(heapBytes)}: ${enclave.stats.keys ?? 0} keys, ${formatBytes(enclave.stats.allocatedBytes ?? 0)} allocated in ${duration(fillMs)}\n`,
      );
      let at: 0 | 1 = 0;
      let doneAtSize = 0;
      sizeLoop: for (let rep = 1; rep <= repeat; rep++) {
        for (const variant of rotation(measured, rep)) {
          index++;
          const stepStart = monotonicMs();
          const outcome = await migrateOnce(cluster, hosts, at, enclave, variant, options);
          const stepMs = monotonicMs() - stepStart;
          eta.ran(heapBytes, stepMs);
          doneAtSize++;
          const head = `[${String(index).padStart(String(total).length)}/${total}] ${formatBytes(heapBytes)} ${variantLabel(variant)} rep ${rep}/${repeat} ${BINDS[at]}->${BINDS[1 - at]}:`;
          let line: string;
          if (outcome.ok) {
            const { report, load } = outcome.run;
            runs.push({ ...outcome.run, index, repeat: rep });
            const faults = report.faultLatencyUs
              ? `faults ${report.demandFaults} (p50 ${report.faultLatencyUs.p50.toFixed(0)} µs, p99 ${report.faultLatencyUs.p99.toFixed(0)} µs)`
              : `faults ${report.demandFaults}`;
            const rounds = report.precopyRounds ? `, ${report.precopyRounds} rounds` : '';
            const checks = `${options.verify ? (report.verified ? 'verified' : 'NOT VERIFIED') : 'verify off'}, ${load.lostWrites} lost writes`;
            const { cpuPressureSomePct: cpuWait } = outcome.run.contention;
            const wait = cpuWait === null ? '' : `, CPU wait ${cpuWait.toFixed(0)} %`;
            const { beforeOpsPerSec, duringOpsPerSec, afterOpsPerSec } = outcome.run.client;
            const client = `client ops/s before ${fixed(beforeOpsPerSec)} during ${fixed(duringOpsPerSec)} after ${fixed(afterOpsPerSec)}`;
            line = `${head} downtime ${report.downtimeMs.toFixed(1)} ms, gap ${load.clientGapMs.toFixed(0)} ms, total ${report.totalMs.toFixed(0)} ms${rounds}, ${faults}, ${client}, ${checks}${wait}`;
            if ((options.verify && !report.verified) || load.lostWrites > 0) {
              keepLogs = true;
              notes.push(`${head} ${checks}`);
            }
            at = (1 - at) as 0 | 1;
          } else {
            keepLogs = true;
            failures.push({
              heapBytes,
              ...variant,
              repeat: rep,
              index,
              error: outcome.error,
              logsKeptIn: cluster.dir,
            });
            line = `${head} FAILED: ${outcome.error}`;
            const where = await locate(cluster, hosts, enclave.id);
            if (where === null) {
              notes.push(
                `${formatBytes(heapBytes)}: the enclave serves on neither host after a failure; size abandoned`,
              );
              process.stderr.write(`${line}\n  the enclave serves on neither host: abandoning this size\n`);
              index += measured.length * repeat - doneAtSize;
              writeRaw(false);
              break sizeLoop;
            }
            at = where;
          }
          const left = eta.remainingMs(sizeIndex, doneAtSize);
          process.stderr.write(
            `${line} | ${duration(monotonicMs() - t0)} elapsed, ETA ${left === null ? '?' : `~${duration(left)}`}\n`,
          );
          writeRaw(false);
        }
      }
    } finally {
      // Closed (enclave processes gone) before the next size starts: two 4 GiB heaps are ~8-9 GiB RSS.
      await cluster.close(keepLogs);
      if (keepLogs) process.stderr.write(`logs kept in ${cluster.dir}\n`);
    }
  }

  process.stderr.write('measuring this machine (AES-256-GCM, SHA-256, memcpy)…\n');
  limits = measurePhysicalLimits();
  writeRaw(true);
  const cells = summarise(sizes, measured, runs, failures);
  const summary = [
    `constmig bench, ${startedAt.toISOString()}: ${sizes.map(formatBytes).join(', ')} x ${measured.map(variantLabel).join(', ')}, ${repeat} repetition(s), verify ${options.verify ? 'on' : 'off'}, max-downtime ${options.maxDowntimeMs} ms, client load on`,
    ...(faultSkipped ? [faultSkipped] : []),
    machineLine,
    `this machine, measured after the migrations: AES-256-GCM ${limits.aesGcmMBps.toFixed(0)} MB/s (one core, ${limits.recordBytes / 1024} KiB records), SHA-256 ${limits.sha256MBps.toFixed(0)} MB/s, memcpy ${limits.memcpyMBps.toFixed(0)} MB/s; load average at the end ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
    '',
    renderSummary(cells, ratios(cells, sizes), sizes),
    ...(failures.length
      ? [
          '',
          `FAILED migrations: ${failures.length}`,
          ...failures.map(
            (f) =>
              `  ${formatBytes(f.heapBytes)} ${variantLabel(f)} rep ${f.repeat}: ${f.error} (logs: ${f.logsKeptIn})`,
          ),
        ]
      : []),
    ...(notes.length ? ['', 'Notes:', ...notes.map((n) => `  ${n}`)] : []),
    '',
    `raw results: ${rawFile} (${duration(monotonicMs() - t0)} in all)`,
  ].join('\n');
  process.stdout.write(`${summary}\n`);
  fs.writeFileSync(rawFile.replace(/\.json$/, '.txt'), `${summary}\n`);
  if (failures.length || notes.length) process.exitCode = 1;
}

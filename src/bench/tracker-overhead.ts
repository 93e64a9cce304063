/**
 * The Access Tracker's per-access cost, side by side in one run (`npm run bench:tracker`).
 *
 * The Access Tracker has no code of its own on a hit: every SecureHeap accessor tests the page's
 * present bit inline (a load, a mask and a branch) and only a miss calls the tracker. What it costs is
 * therefore what that test costs on every access of an application whose pages are all present, which
 * is what this benchmark measures, in two workloads:
 *
 * (a) a tight scan: the sum of every u32 of a heap, through
 *     - a plain Uint32Array view of the heap's memory: no accessor at all; what an application pays
 *       with an untracked heap or with the Fault Tracker (page protection: nothing runs on a hit);
 *     - SecureHeap.readU32 with the present test removed (SecureHeap.create with presentChecks off): the accessor's own cost
 *       (bounds and alignment checks, segment arithmetic) without the tracker;
 *     - SecureHeap.readU32 as shipped: the accessor with the tracker's test.
 * (b) the kv application: GET and SET of existing keys, called directly on a KvStore (no RESP, no
 *     socket, so the store's own work is all there is and the test's share is as large as it can be),
 *     on the shipped SecureHeap and on the same heap with the present test removed. There is no plain
 *     array variant of kv: the store only exists on a SecureHeap, so the honest untracked baseline is
 *     that heap minus the test. A separate process counts the present tests per GET and per SET, to
 *     turn the throughput difference into a cost per access.
 *
 * Every variant runs in its own process (so the JIT sees one heap class only: sharing a process would
 * make the accessors polymorphic and slow both down), the processes are interleaved round-robin and
 * repeated, and each reports the median of several passes after a warm-up. Figures and ratios are
 * printed and written to bench-results/; nothing is asserted.
 */
import { fork } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { fillStore } from '../apps/kv/fill.js';
import { KvStore } from '../apps/kv/kv-store.js';
import { HeapAllocator } from '../heap/allocator.js';
import { SecureHeap } from '../heap/secure-heap.js';
import { errorMessage, UserError } from '../util/errors.js';
import { formatBytes, parseSize } from '../util/size.js';
import { VERSION } from '../version.js';
import { median } from './summary.js';
import { countPresentChecks } from './present-check-counter.js';

const SCAN_VARIANTS = ['plain', 'unchecked', 'tracked'] as const;
const KV_VARIANTS = ['unchecked', 'tracked'] as const;
type ScanVariant = (typeof SCAN_VARIANTS)[number];
type KvVariant = (typeof KV_VARIANTS)[number];

interface ScanSpec {
  kind: 'scan';
  variant: ScanVariant;
  heapBytes: number;
  passes: number;
}
interface KvSpec {
  kind: 'kv';
  variant: KvVariant | 'count';
  heapBytes: number;
  keys: number;
  valueSize: number;
  ops: number;
  passes: number;
}
type Spec = ScanSpec | KvSpec;

interface ScanResult {
  /** CPU ns per access (median pass), and each pass's. */
  nsPerAccess: number;
  passesNs: number[];
  /** The same by wall time, for comparison. */
  wallNsPerAccess: number;
  wallPassesNs: number[];
  accesses: number;
  sum: number;
}
interface KvResult {
  /** Operations per CPU second (median pass); *Passes: each pass's; wall*: the same by wall time. */
  getOpsPerSec: number;
  setOpsPerSec: number;
  getPasses: number[];
  setPasses: number[];
  wallGetOpsPerSec: number;
  wallSetOpsPerSec: number;
  keys: number;
  /** Only from the 'count' variant: present tests per operation (scalar accessors + byte ranges). */
  checksPerGet?: { single: number; ranges: number };
  checksPerSet?: { single: number; ranges: number };
}

// ---------------------------------------------------------------------------------------------------
// Child side: one variant, one process.

/** A deterministic xorshift32 stream: the same heap contents and key order in every process. */
function xorshift(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

function wordViews(heap: SecureHeap): Uint32Array[] {
  return heap.segments.map((s) => new Uint32Array(s.buffer, s.byteOffset, s.byteLength >>> 2));
}

function scanPlain(views: readonly Uint32Array[]): number {
  let sum = 0;
  for (const view of views) {
    const n = view.length;
    for (let i = 0; i < n; i++) sum = (sum + view[i]!) | 0;
  }
  return sum;
}

function scanHeap(heap: SecureHeap): number {
  let sum = 0;
  const end = heap.byteLength;
  for (let addr = 0; addr < end; addr += 4) sum = (sum + heap.readU32(addr)) | 0;
  return sum;
}

/**
 * Wall and CPU nanoseconds of one call. The figures use CPU time (user + system, the whole process:
 * the loop's thread and the GC helpers it keeps busy): on a machine shared with other jobs, wall time
 * also counts the time slices this process waited for a CPU, CPU time does not.
 */
function timeNs(fn: () => number): { wallNs: number; cpuNs: number; result: number } {
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const result = fn();
  const wallNs = Number(process.hrtime.bigint() - t0);
  const cpu = process.cpuUsage(cpu0);
  return { wallNs, cpuNs: (cpu.user + cpu.system) * 1000, result };
}

function runScan(spec: ScanSpec): ScanResult {
  const heap =
    spec.variant === 'unchecked'
      ? SecureHeap.create(spec.heapBytes, { presentChecks: false })
      : SecureHeap.create(spec.heapBytes);
  const views = wordViews(heap);
  const next = xorshift(0x9e3779b9);
  for (const view of views) for (let i = 0; i < view.length; i++) view[i] = next();
  const accesses = heap.byteLength / 4;
  const pass = spec.variant === 'plain' ? () => scanPlain(views) : () => scanHeap(heap);
  // Warm-up passes: the loop and the accessor reach the optimising tier before timing.
  const sum = pass();
  pass();
  pass();
  const passesNs: number[] = [];
  const wallPassesNs: number[] = [];
  for (let p = 0; p < spec.passes; p++) {
    const { cpuNs, wallNs, result } = timeNs(pass);
    if (result !== sum) throw new Error(`scan pass ${p} summed ${result}, the warm-up ${sum}`);
    passesNs.push(cpuNs / accesses);
    wallPassesNs.push(wallNs / accesses);
  }
  return {
    nsPerAccess: median(passesNs),
    passesNs,
    wallNsPerAccess: median(wallPassesNs),
    wallPassesNs,
    accesses,
    sum,
  };
}

function runKv(spec: KvSpec): KvResult {
  const counter = spec.variant === 'count' ? countPresentChecks() : null;
  const heap =
    spec.variant === 'unchecked'
      ? SecureHeap.create(spec.heapBytes, { presentChecks: false })
      : SecureHeap.create(spec.heapBytes);
  const allocator = HeapAllocator.format(heap);
  const store = KvStore.create(heap, allocator);
  const filled = fillStore(store, heap, allocator, spec.heapBytes, {
    valueSize: spec.valueSize,
    count: spec.keys,
    firstIndex: 0,
  });
  if (filled.keys !== spec.keys) {
    throw new UserError(
      `the ${formatBytes(spec.heapBytes)} heap holds only ${filled.keys} of ${spec.keys} keys`,
    );
  }
  const keys = Array.from({ length: spec.keys }, (_, n) => Buffer.from(`key:${n}`, 'latin1'));
  const next = xorshift(12345);
  const order = Uint32Array.from({ length: spec.ops }, () => next() % spec.keys);
  const pool = randomFillSync(Buffer.alloc(spec.valueSize + 4096));
  const values = Array.from({ length: 64 }, (_, i) => pool.subarray(i * 61, i * 61 + spec.valueSize));

  const gets = (ops: number) => {
    let bytes = 0;
    for (let i = 0; i < ops; i++) {
      const value = store.get(keys[order[i]!]!);
      if (value === null) throw new Error(`key ${order[i]} is missing`);
      bytes += value.length;
    }
    return bytes;
  };
  const sets = (ops: number) => {
    for (let i = 0; i < ops; i++) store.set(keys[order[i]!]!, values[i & 63]!);
    return ops;
  };

  if (counter) {
    const perOp = (fn: (ops: number) => number, ops: number) => {
      const single = counter.single();
      const ranges = counter.ranges();
      fn(ops);
      return { single: (counter.single() - single) / ops, ranges: (counter.ranges() - ranges) / ops };
    };
    const ops = Math.min(spec.ops, 100_000);
    return {
      getOpsPerSec: Number.NaN,
      setOpsPerSec: Number.NaN,
      getPasses: [],
      setPasses: [],
      wallGetOpsPerSec: Number.NaN,
      wallSetOpsPerSec: Number.NaN,
      keys: spec.keys,
      checksPerGet: perOp(gets, ops),
      checksPerSet: perOp(sets, ops),
    };
  }

  gets(spec.ops);
  sets(spec.ops);
  const getPasses: number[] = [];
  const setPasses: number[] = [];
  const wallGet: number[] = [];
  const wallSet: number[] = [];
  for (let p = 0; p < spec.passes; p++) {
    const get = timeNs(() => gets(spec.ops));
    const set = timeNs(() => sets(spec.ops));
    getPasses.push(spec.ops / (get.cpuNs / 1e9));
    setPasses.push(spec.ops / (set.cpuNs / 1e9));
    wallGet.push(spec.ops / (get.wallNs / 1e9));
    wallSet.push(spec.ops / (set.wallNs / 1e9));
  }
  return {
    getOpsPerSec: median(getPasses),
    setOpsPerSec: median(setPasses),
    getPasses,
    setPasses,
    wallGetOpsPerSec: median(wallGet),
    wallSetOpsPerSec: median(wallSet),
    keys: spec.keys,
  };
}

function child(spec: Spec): void {
  const result = spec.kind === 'scan' ? runScan(spec) : runKv(spec);
  process.send!(result, () => process.exit(0));
}

// ---------------------------------------------------------------------------------------------------
// Parent side: interleave the variants' processes and summarise.

function inChild<R>(spec: Spec): Promise<R> {
  return new Promise((resolve, reject) => {
    // Optimised code is compiled on the measuring thread: on a loaded machine a background compile
    // job can wait for a CPU longer than the warm-up lasts. The optimised code itself is the same.
    const proc = fork(fileURLToPath(import.meta.url), ['--child', JSON.stringify(spec)], {
      execArgv: ['--no-concurrent-recompilation'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let result: R | undefined;
    proc.on('message', (message) => {
      result = message as R;
    });
    proc.on('error', reject);
    proc.on('exit', (code) => {
      if (result !== undefined) resolve(result);
      else reject(new Error(`${spec.kind} ${spec.variant} process exited with code ${code} and no result`));
    });
  });
}

const rotate = <T>(items: readonly T[], by: number): T[] => {
  const shift = by % items.length;
  return [...items.slice(shift), ...items.slice(0, shift)];
};

const spread = (values: number[], digits: number) =>
  `${Math.min(...values).toFixed(digits)}-${Math.max(...values).toFixed(digits)}`;

async function parent(): Promise<void> {
  const raw = new Command('bench:tracker')
    .description("the Access Tracker's per-access cost: tracked vs untracked heap, array scan and kv")
    .option('--heap <size>', 'heap size of every variant', '256MiB')
    .option('--repeat <n>', 'processes per variant (interleaved)', '5')
    .option('--passes <n>', 'timed passes per process (after warm-up)', '5')
    .option('--kv-keys <n>', 'keys in the kv store', '500000')
    .option('--value-size <bytes>', 'kv value size', '64')
    .option('--kv-ops <n>', 'GETs and SETs per timed pass', '1000000')
    .option('--out <dir>', 'where to write the raw JSON', 'bench-results')
    .parse()
    .opts<{
      heap: string;
      repeat: string;
      passes: string;
      kvKeys: string;
      valueSize: string;
      kvOps: string;
      out: string;
    }>();
  const count = (text: string, name: string, min: number) => {
    const n = Number(text);
    if (!(Number.isInteger(n) && n >= min))
      throw new UserError(`${name}: '${text}' is not a whole number >= ${min}`);
    return n;
  };
  const heapBytes = parseSize(raw.heap);
  const repeat = count(raw.repeat, '--repeat', 1);
  const passes = count(raw.passes, '--passes', 1);
  const keys = count(raw.kvKeys, '--kv-keys', 1);
  const valueSize = count(raw.valueSize, '--value-size', 0);
  const ops = count(raw.kvOps, '--kv-ops', 1);
  const startedAt = new Date();
  const say = (msg: string) => process.stderr.write(`${msg}\n`);

  const scan: Record<ScanVariant, ScanResult[]> = { plain: [], unchecked: [], tracked: [] };
  for (let rep = 0; rep < repeat; rep++) {
    for (const variant of rotate(SCAN_VARIANTS, rep)) {
      const r = await inChild<ScanResult>({ kind: 'scan', variant, heapBytes, passes });
      scan[variant].push(r);
      say(`scan ${rep + 1}/${repeat} ${variant.padEnd(9)} ${r.nsPerAccess.toFixed(3)} ns/access`);
    }
  }
  const sums = new Set(Object.values(scan).flatMap((rs) => rs.map((r) => r.sum)));
  if (sums.size !== 1) throw new Error(`the scan variants disagree on the sum: ${[...sums].join(', ')}`);

  const kv: Record<KvVariant, KvResult[]> = { unchecked: [], tracked: [] };
  const kvSpec = { kind: 'kv' as const, heapBytes, keys, valueSize, ops, passes };
  for (let rep = 0; rep < repeat; rep++) {
    for (const variant of rotate(KV_VARIANTS, rep)) {
      const r = await inChild<KvResult>({ ...kvSpec, variant });
      kv[variant].push(r);
      say(
        `kv ${rep + 1}/${repeat} ${variant.padEnd(9)} GET ${(r.getOpsPerSec / 1e3).toFixed(0)} k/s, SET ${(r.setOpsPerSec / 1e3).toFixed(0)} k/s`,
      );
    }
  }
  const counted = await inChild<KvResult>({ ...kvSpec, variant: 'count' });

  // Medians over the processes of each process's median pass.
  const ns = (v: ScanVariant) => median(scan[v].map((r) => r.nsPerAccess));
  const [plain, unchecked, tracked] = [ns('plain'), ns('unchecked'), ns('tracked')];
  const wall = (v: ScanVariant) => median(scan[v].map((r) => r.wallNsPerAccess));
  const wallKv = (v: KvVariant, which: 'wallGetOpsPerSec' | 'wallSetOpsPerSec') =>
    (median(kv[v].map((r) => r[which])) / 1e3).toFixed(0);
  const ops_ = (v: KvVariant, which: 'getOpsPerSec' | 'setOpsPerSec') => median(kv[v].map((r) => r[which]));
  const checks = (c: { single: number; ranges: number } | undefined) =>
    c ? c.single + c.ranges : Number.NaN;
  const kvRow = (name: 'GET' | 'SET', which: 'getOpsPerSec' | 'setOpsPerSec', perOp: number) => {
    const base = ops_('unchecked', which);
    const withTest = ops_('tracked', which);
    const nsBase = 1e9 / base;
    const nsTracked = 1e9 / withTest;
    return {
      op: name,
      untrackedOpsPerSec: base,
      trackedOpsPerSec: withTest,
      untrackedNsPerOp: nsBase,
      trackedNsPerOp: nsTracked,
      trackedOverUntracked: nsTracked / nsBase,
      presentTestsPerOp: perOp,
      nsPerPresentTest: (nsTracked - nsBase) / perOp,
      untrackedSpread: spread(
        kv.unchecked.map((r) => r[which] / 1e3),
        0,
      ),
      trackedSpread: spread(
        kv.tracked.map((r) => r[which] / 1e3),
        0,
      ),
    };
  };
  const kvRows = [
    kvRow('GET', 'getOpsPerSec', checks(counted.checksPerGet)),
    kvRow('SET', 'setOpsPerSec', checks(counted.checksPerSet)),
  ];

  const accesses = scan.plain[0]!.accesses;
  const lines = [
    `Access Tracker overhead, ${startedAt.toISOString()}: ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.availableParallelism()} CPUs, Node ${process.versions.node}, load average ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
    `CPU time (user + system of the measuring process); medians over ${repeat} processes per variant (interleaved) of each process's median of ${passes} timed passes`,
    '',
    `(a) scan: sum of every u32 of a ${formatBytes(heapBytes)} heap, every page present (${accesses} accesses per pass)`,
    `  plain Uint32Array view              ${plain.toFixed(3)} ns/access  (${spread(
      scan.plain.map((r) => r.nsPerAccess),
      3,
    )})`,
    `  SecureHeap.readU32, no present test ${unchecked.toFixed(3)} ns/access  (${spread(
      scan.unchecked.map((r) => r.nsPerAccess),
      3,
    )})`,
    `  SecureHeap.readU32 (Access Tracker) ${tracked.toFixed(3)} ns/access  (${spread(
      scan.tracked.map((r) => r.nsPerAccess),
      3,
    )})`,
    `  tracked / plain ${(tracked / plain).toFixed(2)}x; tracked / no present test ${(tracked / unchecked).toFixed(2)}x; no present test / plain ${(unchecked / plain).toFixed(2)}x`,
    `  the present test: ${(tracked - unchecked).toFixed(3)} ns per access; the whole accessor over a plain array: ${(tracked - plain).toFixed(3)} ns per access`,
    `  by wall time instead: plain ${wall('plain').toFixed(3)}, no present test ${wall('unchecked').toFixed(3)}, tracked ${wall('tracked').toFixed(3)} ns/access`,
    '',
    `(b) kv: KvStore.get / KvStore.set of existing keys, direct calls, ${keys} keys, ${valueSize} B values, ${ops} random keys per pass`,
    '  op   untracked (no present test)   tracked (Access Tracker)   tracked/untracked   present tests/op   ns per test',
    ...kvRows.map(
      (r) =>
        `  ${r.op}  ${`${(r.untrackedOpsPerSec / 1e3).toFixed(0)} k/s = ${r.untrackedNsPerOp.toFixed(0)} ns/op`.padStart(27)}   ${`${(r.trackedOpsPerSec / 1e3).toFixed(0)} k/s = ${r.trackedNsPerOp.toFixed(0)} ns/op`.padStart(24)}   ${r.trackedOverUntracked.toFixed(3).padStart(17)}   ${r.presentTestsPerOp.toFixed(1).padStart(16)}   ${r.nsPerPresentTest.toFixed(2).padStart(11)}`,
    ),
    ...kvRows.map(
      (r) =>
        `  ${r.op} spread over processes (k ops/s): untracked ${r.untrackedSpread}, tracked ${r.trackedSpread}`,
    ),
    `  by wall time instead (k ops/s): GET untracked ${wallKv('unchecked', 'wallGetOpsPerSec')}, tracked ${wallKv('tracked', 'wallGetOpsPerSec')}; SET untracked ${wallKv('unchecked', 'wallSetOpsPerSec')}, tracked ${wallKv('tracked', 'wallSetOpsPerSec')}`,
    `  present tests per GET: ${counted.checksPerGet!.single.toFixed(1)} scalar + ${counted.checksPerGet!.ranges.toFixed(1)} range; per SET: ${counted.checksPerSet!.single.toFixed(1)} scalar + ${counted.checksPerSet!.ranges.toFixed(1)} range`,
    '  (ns per test = (tracked - untracked ns/op) / tests per op: the difference of two noisy figures, small against either)',
  ];
  const text = lines.join('\n');
  process.stdout.write(`${text}\n`);
  fs.mkdirSync(raw.out, { recursive: true });
  const file = path.join(raw.out, `tracker-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(
    file,
    `${JSON.stringify(
      {
        benchmark: 'access tracker overhead',
        startedAt: startedAt.toISOString(),
        options: { heapBytes, repeat, passes, keys, valueSize, ops },
        machine: {
          cpuModel: os.cpus()[0]?.model,
          cpus: os.availableParallelism(),
          loadAvg: os.loadavg(),
          versions: { constmig: VERSION, ...process.versions },
        },
        scan: {
          medianCpuNsPerAccess: { plain, unchecked, tracked },
          medianWallNsPerAccess: {
            plain: wall('plain'),
            unchecked: wall('unchecked'),
            tracked: wall('tracked'),
          },
          processes: scan,
        },
        kv: { rows: kvRows, counted, processes: kv },
        text,
      },
      null,
      2,
    )}\n`,
  );
  fs.writeFileSync(file.replace(/\.json$/, '.txt'), `${text}\n`);
  process.stderr.write(`raw results: ${file}\n`);
}

if (process.argv[2] === '--child') {
  child(JSON.parse(process.argv[3]!) as Spec);
} else {
  parent().catch((err) => {
    process.stderr.write(`bench:tracker: error: ${errorMessage(err)}\n`);
    process.exit(1);
  });
}

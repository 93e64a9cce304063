/**
 * The two trackers side by side in one run (`npm run bench:tracker`): what each costs an application
 * that migrates nothing (A), and how long an access to a missing page waits with each (B).
 *
 * A. Steady state, every page present. A tracker's cost on a hit is what its heap makes every access
 * do. The Access Tracker's heap tests the page's present bit in every SecureHeap accessor (a load, a
 * mask and a branch); the Fault Tracker's heap tests nothing (the kernel stops a read of a missing
 * page) but is userfaultfd memory. The variants are named by the heap the application gets:
 *   plain   a Uint32Array view over the heap's memory, no accessor at all: the floor;
 *   fault   the Fault Tracker's heap as a destination has it during and after post-copy:
 *           SecureHeap.createIncoming(bytes, 'userfaultfd'), every page installed with UFFDIO_COPY
 *           (installPages, 64-page chunks) and published before the warm-up, the region still
 *           registered; accessors without the present test. Where userfaultfd is unavailable, a heap
 *           without present checks on plain memory stands in (the same accessor class), and the
 *           report says so and why;
 *   access  the Access Tracker's heap: SecureHeap.create, present checks on;
 * in two workloads:
 * (a) a tight scan: the sum of every u32 of the heap (plain, fault, access);
 * (b) the kv application: GET and SET of existing keys, called directly on a KvStore (no RESP, no
 *     socket, so the store's own work is all there is and the accessors' share is as large as it can
 *     be), on the fault and access heaps (the store only exists on a SecureHeap: no plain variant).
 *     A separate process ('count') counts the present tests per GET and per SET, to turn the
 *     difference into a cost per test.
 * Every variant runs in its own process (so the JIT sees one heap class only: sharing a process would
 * make the accessors polymorphic and slow both down), the processes are interleaved round-robin and
 * repeated, and each reports the median of several passes after a warm-up, in CPU time.
 *
 * B. Fault latency at the application thread (fault-latency.ts): for each tracker, in processes of its
 * own interleaved the same way, a destination heap with every page missing; the main thread plays the
 * I/O thread and a worker the application thread, which times single reads of distinct missing pages,
 * with the I/O thread idle and busy with a bulk push; and the Fault Tracker's zero-page path.
 *
 * `--only scan,kv,latency` picks sections. Figures and ratios are printed and written to
 * bench-results/; nothing is asserted.
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
import { PAGE_SIZE } from '../heap/constants.js';
import { SecureHeap } from '../heap/secure-heap.js';
import { type UffdAvailability, uffdAvailability } from '../native/uffd.js';
import { TRACKER_KINDS, type TrackerKind } from '../trackers/tracker.js';
import { errorMessage, UserError } from '../util/errors.js';
import { formatBytes, parseSize } from '../util/size.js';
import { VERSION } from '../version.js';
import {
  type ConditionSamples,
  type LatencyCondition,
  type LatencySummary,
  maxReads,
  measureFaultLatency,
  PUSH_CHUNK_PAGES,
  summariseLatency,
} from './fault-latency.js';
import { median } from './summary.js';
import { countPresentChecks } from './present-check-counter.js';
import { xorshift } from '../util/random.js';

const SECTIONS = ['scan', 'kv', 'latency'] as const;
type Section = (typeof SECTIONS)[number];
const SCAN_VARIANTS = ['plain', 'fault', 'access'] as const;
const KV_VARIANTS = ['fault', 'access'] as const;
type ScanVariant = (typeof SCAN_VARIANTS)[number];
type KvVariant = (typeof KV_VARIANTS)[number];
/** Pages per installPages when a fault variant's heap is filled: the post-copy push's chunk. */
const INSTALL_CHUNK_PAGES = 64;

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
interface LatencySpec {
  kind: 'latency';
  variant: TrackerKind;
  heapBytes: number;
  reads: number;
  warmup: number;
}
type Spec = ScanSpec | KvSpec | LatencySpec;

/** What a fault variant ran on: the Fault Tracker's memory, or the stand-in and why. */
type FaultMemory =
  { kind: 'userfaultfd'; via: string; installMs: number } | { kind: 'fallback'; reason: string };

interface ScanResult {
  /** CPU ns per access (median pass), and each pass's. */
  nsPerAccess: number;
  passesNs: number[];
  /** The same by wall time, for comparison. */
  wallNsPerAccess: number;
  wallPassesNs: number[];
  accesses: number;
  sum: number;
  /** Only for the fault variant. */
  memory: FaultMemory | null;
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
  /** Only for the fault variant. */
  memory: FaultMemory | null;
  /** Only from the 'count' variant: present tests per operation (scalar accessors + byte ranges). */
  checksPerGet?: { single: number; ranges: number };
  checksPerSet?: { single: number; ranges: number };
}

// ---------------------------------------------------------------------------------------------------
// Child side: one variant, one process.

/**
 * The heap a variant measures, holding `word()`'s values in address order (zeros without it). Only
 * the fault variant's heap is userfaultfd memory; every other is SecureHeap.create's, with present
 * checks (the plain variant reads it through its own views).
 */
function variantHeap(
  variant: ScanVariant | KvSpec['variant'],
  bytes: number,
  word: (() => number) | null,
): { heap: SecureHeap; memory: FaultMemory | null } {
  if (variant !== 'fault') {
    const heap = SecureHeap.create(bytes);
    if (word) install(heap, word);
    return { heap, memory: null };
  }
  const uffd = uffdAvailability();
  if (!uffd.ok) {
    const heap = SecureHeap.create(bytes, { presentChecks: false });
    if (word) install(heap, word);
    return { heap, memory: { kind: 'fallback', reason: uffd.reason } };
  }
  const heap = SecureHeap.createIncoming(bytes, 'userfaultfd');
  // Every page, zeros included: this thread blocks for good on a page the kernel does not hold.
  const installMs = install(heap, word);
  return { heap, memory: { kind: 'userfaultfd', via: uffd.via, installMs } };
}

/**
 * Puts `word()`'s values (zeros without it) into the heap in address order, in 64-page chunks, as a
 * destination installs pages (installPages: UFFDIO_COPY for pages a userfaultfd region does not hold),
 * and publishes them (a no-op on a heap whose pages are all present). Returns the milliseconds spent
 * installing and publishing, without making the values.
 */
function install(heap: SecureHeap, word: (() => number) | null): number {
  const words = new Uint32Array((INSTALL_CHUNK_PAGES * PAGE_SIZE) / 4);
  const bytes = new Uint8Array(words.buffer);
  let ms = 0;
  for (let first = 0; first < heap.pageCount;) {
    const count = Math.min(INSTALL_CHUNK_PAGES, heap.segmentEndPage(first) - first);
    if (word) for (let i = 0; i < (count * PAGE_SIZE) / 4; i++) words[i] = word();
    const start = performance.now();
    heap.installPages(first, bytes.subarray(0, count * PAGE_SIZE));
    heap.present.publishRange(first, count);
    ms += performance.now() - start;
    first += count;
  }
  return ms;
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
  const { heap, memory } = variantHeap(spec.variant, spec.heapBytes, xorshift(0x9e3779b9));
  const views = wordViews(heap);
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
    memory,
  };
}

function runKv(spec: KvSpec): KvResult {
  const counter = spec.variant === 'count' ? countPresentChecks() : null;
  const { heap, memory } = variantHeap(spec.variant, spec.heapBytes, null);
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
      memory,
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
    memory,
  };
}

function runLatency(spec: LatencySpec): Promise<ConditionSamples[]> {
  return measureFaultLatency({
    tracker: spec.variant,
    heapBytes: spec.heapBytes,
    reads: spec.reads,
    warmup: spec.warmup,
    conditions: spec.variant === 'fault' ? ['idle', 'busy', 'zero'] : ['idle', 'busy'],
  });
}

async function child(spec: Spec): Promise<void> {
  let result: ScanResult | KvResult | ConditionSamples[];
  if (spec.kind === 'scan') result = runScan(spec);
  else if (spec.kind === 'kv') result = runKv(spec);
  else result = await runLatency(spec);
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

interface Options {
  sections: ReadonlySet<Section>;
  heapBytes: number;
  repeat: number;
  passes: number;
  keys: number;
  valueSize: number;
  ops: number;
  latencyHeapBytes: number;
  latencyReads: number;
  latencyWarmup: number;
  out: string;
}

function parseOptions(): Options {
  const raw = new Command('bench:tracker')
    .description(
      'both trackers side by side: steady-state cost (array scan, kv) and fault latency at the application thread',
    )
    .option(
      '--only <sections>',
      `comma-separated sections to run: ${SECTIONS.join(', ')}`,
      SECTIONS.join(','),
    )
    .option('--heap <size>', 'heap size of every steady-state variant', '256MiB')
    .option('--repeat <n>', 'processes per variant and per tracker (interleaved)', '3')
    .option('--passes <n>', 'timed passes per steady-state process (after warm-up)', '5')
    .option('--kv-keys <n>', 'keys in the kv store', '500000')
    .option('--value-size <bytes>', 'kv value size', '64')
    .option('--kv-ops <n>', 'GETs and SETs per timed pass', '1000000')
    .option('--latency-heap <size>', 'heap size of the fault-latency processes', '64MiB')
    .option('--latency-reads <n>', 'timed reads of distinct missing pages per condition', '4000')
    .option('--latency-warmup <n>', 'reads of other missing pages before the timed ones', '3000')
    .option('--out <dir>', 'where to write the raw JSON', 'bench-results')
    .parse()
    .opts<{
      only: string;
      heap: string;
      repeat: string;
      passes: string;
      kvKeys: string;
      valueSize: string;
      kvOps: string;
      latencyHeap: string;
      latencyReads: string;
      latencyWarmup: string;
      out: string;
    }>();
  const count = (text: string, name: string, min: number) => {
    const n = Number(text);
    if (!(Number.isInteger(n) && n >= min))
      throw new UserError(`${name}: '${text}' is not a whole number >= ${min}`);
    return n;
  };
  const sections = new Set<Section>();
  for (const name of raw.only.split(',').map((part) => part.trim())) {
    if (!(SECTIONS as readonly string[]).includes(name)) {
      throw new UserError(`--only: unknown section '${name}' (sections: ${SECTIONS.join(', ')})`);
    }
    sections.add(name as Section);
  }
  const latencyHeapBytes = parseSize(raw.latencyHeap);
  const latencyReads = count(raw.latencyReads, '--latency-reads', 1);
  const latencyWarmup = count(raw.latencyWarmup, '--latency-warmup', 0);
  if (latencyReads + latencyWarmup > maxReads(latencyHeapBytes)) {
    throw new UserError(
      `--latency-reads + --latency-warmup (${latencyReads + latencyWarmup}) exceed the ${maxReads(latencyHeapBytes)} pages of the lower half of a ${formatBytes(latencyHeapBytes)} --latency-heap`,
    );
  }
  return {
    sections,
    heapBytes: parseSize(raw.heap),
    repeat: count(raw.repeat, '--repeat', 1),
    passes: count(raw.passes, '--passes', 1),
    keys: count(raw.kvKeys, '--kv-keys', 1),
    valueSize: count(raw.valueSize, '--value-size', 0),
    ops: count(raw.kvOps, '--kv-ops', 1),
    latencyHeapBytes,
    latencyReads,
    latencyWarmup,
    out: raw.out,
  };
}

type Say = (msg: string) => void;
interface SectionReport {
  lines: string[];
  json: unknown;
}

/** How the fault variants' heaps were made, from their processes' reports. */
function faultMemoryLine(memories: (FaultMemory | null)[], heapBytes: number): string {
  const memory = memories[0];
  if (!memory) return '  fault heap: unknown';
  if (memory.kind === 'fallback') {
    return `  fault heap: NOT the Fault Tracker's memory: userfaultfd is unavailable here (${memory.reason}); a heap made with SecureHeap.create(bytes, { presentChecks: false }) stood in: the same accessors on plain memory`;
  }
  const ms = median(memories.map((m) => (m?.kind === 'userfaultfd' ? m.installMs : Number.NaN)));
  return `  fault heap: userfaultfd region (opened via ${memory.via}), still registered; its ${formatBytes(heapBytes)} went in with UFFDIO_COPY in ${INSTALL_CHUNK_PAGES}-page chunks and were published before the warm-up (median ${ms.toFixed(0)} ms, ${(heapBytes / 1e6 / ms).toFixed(2)} GB/s)`;
}

async function scanSection(o: Options, say: Say): Promise<SectionReport> {
  const scan: Record<ScanVariant, ScanResult[]> = { plain: [], fault: [], access: [] };
  for (let rep = 0; rep < o.repeat; rep++) {
    for (const variant of rotate(SCAN_VARIANTS, rep)) {
      const r = await inChild<ScanResult>({
        kind: 'scan',
        variant,
        heapBytes: o.heapBytes,
        passes: o.passes,
      });
      scan[variant].push(r);
      say(`scan ${rep + 1}/${o.repeat} ${variant.padEnd(6)} ${r.nsPerAccess.toFixed(3)} ns/access`);
    }
  }
  const sums = new Set(Object.values(scan).flatMap((rs) => rs.map((r) => r.sum)));
  if (sums.size !== 1) throw new Error(`the scan variants disagree on the sum: ${[...sums].join(', ')}`);

  // Medians over the processes of each process's median pass.
  const ns = (v: ScanVariant) => median(scan[v].map((r) => r.nsPerAccess));
  const wall = (v: ScanVariant) => median(scan[v].map((r) => r.wallNsPerAccess));
  const [plain, fault, access] = [ns('plain'), ns('fault'), ns('access')];
  const row = (v: ScanVariant, label: string) =>
    `  ${v.padEnd(6)}  ${label.padEnd(58)} ${ns(v).toFixed(3)} ns/access  (${spread(
      scan[v].map((r) => r.nsPerAccess),
      3,
    )})`;
  const fallback = scan.fault[0]?.memory?.kind === 'fallback';
  const lines = [
    `(a) scan: sum of every u32 of a ${formatBytes(o.heapBytes)} heap, every page present (${scan.plain[0]!.accesses} accesses per pass)`,
    row('plain', 'Uint32Array view over the memory, no accessor'),
    row(
      'fault',
      fallback
        ? 'SecureHeap.readU32, no present test, plain memory'
        : 'SecureHeap.readU32 on userfaultfd memory, no present test',
    ),
    row('access', 'SecureHeap.readU32 with the present test'),
    `  access / fault ${(access / fault).toFixed(2)}x; fault / plain ${(fault / plain).toFixed(2)}x; access / plain ${(access / plain).toFixed(2)}x`,
    `  access - fault: ${(access - fault).toFixed(3)} ns per access (the present test, and whatever the two memories differ by); the accessor over a plain read: fault - plain ${(fault - plain).toFixed(3)} ns`,
    `  by wall time instead: plain ${wall('plain').toFixed(3)}, fault ${wall('fault').toFixed(3)}, access ${wall('access').toFixed(3)} ns/access`,
    faultMemoryLine(
      scan.fault.map((r) => r.memory),
      o.heapBytes,
    ),
  ];
  const json = {
    medianCpuNsPerAccess: { plain, fault, access },
    medianWallNsPerAccess: { plain: wall('plain'), fault: wall('fault'), access: wall('access') },
    processes: scan,
  };
  return { lines, json };
}

async function kvSection(o: Options, say: Say): Promise<SectionReport> {
  const kv: Record<KvVariant, KvResult[]> = { fault: [], access: [] };
  const kvSpec = {
    kind: 'kv' as const,
    heapBytes: o.heapBytes,
    keys: o.keys,
    valueSize: o.valueSize,
    ops: o.ops,
    passes: o.passes,
  };
  for (let rep = 0; rep < o.repeat; rep++) {
    for (const variant of rotate(KV_VARIANTS, rep)) {
      const r = await inChild<KvResult>({ ...kvSpec, variant });
      kv[variant].push(r);
      say(
        `kv ${rep + 1}/${o.repeat} ${variant.padEnd(6)} GET ${(r.getOpsPerSec / 1e3).toFixed(0)} k/s, SET ${(r.setOpsPerSec / 1e3).toFixed(0)} k/s`,
      );
    }
  }
  const counted = await inChild<KvResult>({ ...kvSpec, variant: 'count' });

  type Which = 'getOpsPerSec' | 'setOpsPerSec';
  const opsPerSec = (v: KvVariant, which: Which) => median(kv[v].map((r) => r[which]));
  const wallKv = (v: KvVariant, which: 'wallGetOpsPerSec' | 'wallSetOpsPerSec') =>
    (median(kv[v].map((r) => r[which])) / 1e3).toFixed(0);
  const checks = (c: { single: number; ranges: number } | undefined) =>
    c ? c.single + c.ranges : Number.NaN;
  const kvRow = (op: 'GET' | 'SET', which: Which, testsPerOp: number) => {
    const fault = opsPerSec('fault', which);
    const access = opsPerSec('access', which);
    return {
      op,
      faultOpsPerSec: fault,
      accessOpsPerSec: access,
      faultNsPerOp: 1e9 / fault,
      accessNsPerOp: 1e9 / access,
      accessOverFault: fault / access,
      presentTestsPerOp: testsPerOp,
      nsPerPresentTest: (1e9 / access - 1e9 / fault) / testsPerOp,
      faultSpread: spread(
        kv.fault.map((r) => r[which] / 1e3),
        0,
      ),
      accessSpread: spread(
        kv.access.map((r) => r[which] / 1e3),
        0,
      ),
    };
  };
  const rows = [
    kvRow('GET', 'getOpsPerSec', checks(counted.checksPerGet)),
    kvRow('SET', 'setOpsPerSec', checks(counted.checksPerSet)),
  ];
  const lines = [
    `(b) kv: KvStore.get / KvStore.set of existing keys, direct calls, ${o.keys} keys, ${o.valueSize} B values, ${o.ops} random keys per pass, every page present`,
    '  op   fault (no present test)   access (present test)   access/fault   present tests/op   Δ ns per test',
    ...rows.map(
      (r) =>
        `  ${r.op}  ${`${(r.faultOpsPerSec / 1e3).toFixed(0)} k/s = ${r.faultNsPerOp.toFixed(0)} ns/op`.padStart(23)}   ${`${(r.accessOpsPerSec / 1e3).toFixed(0)} k/s = ${r.accessNsPerOp.toFixed(0)} ns/op`.padStart(21)}   ${r.accessOverFault.toFixed(3).padStart(12)}   ${r.presentTestsPerOp.toFixed(1).padStart(16)}   ${r.nsPerPresentTest.toFixed(2).padStart(13)}`,
    ),
    ...rows.map(
      (r) => `  ${r.op} spread over processes (k ops/s): fault ${r.faultSpread}, access ${r.accessSpread}`,
    ),
    `  by wall time instead (k ops/s): GET fault ${wallKv('fault', 'wallGetOpsPerSec')}, access ${wallKv('access', 'wallGetOpsPerSec')}; SET fault ${wallKv('fault', 'wallSetOpsPerSec')}, access ${wallKv('access', 'wallSetOpsPerSec')}`,
    `  present tests per GET: ${counted.checksPerGet!.single.toFixed(1)} scalar + ${counted.checksPerGet!.ranges.toFixed(1)} range; per SET: ${counted.checksPerSet!.single.toFixed(1)} scalar + ${counted.checksPerSet!.ranges.toFixed(1)} range`,
    '  (Δ ns per test = (access - fault ns/op) / tests per op: the difference of two noisy figures, small against either, and it also holds whatever the two memories differ by)',
    faultMemoryLine(
      kv.fault.map((r) => r.memory),
      o.heapBytes,
    ),
  ];
  return { lines, json: { rows, counted, processes: kv } };
}

/** One tracker's samples of one condition, pooled over its processes. */
function pooled(runs: ConditionSamples[]) {
  const push = { pages: 0, covers: 0, chunkNs: 0, wallNs: 0 };
  for (const r of runs) {
    push.pages += r.push.pages;
    push.covers += r.push.covers;
    push.chunkNs += r.push.chunkNs;
    push.wallNs += r.push.wallNs;
  }
  return {
    app: summariseLatency(runs.flatMap((r) => r.appUs)),
    io: summariseLatency(runs.flatMap((r) => r.ioUs)),
    appP50PerProcess: runs.map((r) => summariseLatency(r.appUs).p50),
    faultsPerProcess: runs.map((r) => r.faults),
    push,
  };
}

async function latencySection(o: Options, say: Say, uffd: UffdAvailability): Promise<SectionReport> {
  const trackers: readonly TrackerKind[] = uffd.ok ? TRACKER_KINDS : ['access'];
  const runs: Record<TrackerKind, ConditionSamples[][]> = { access: [], fault: [] };
  for (let rep = 0; rep < o.repeat; rep++) {
    for (const tracker of rotate(trackers, rep)) {
      const r = await inChild<ConditionSamples[]>({
        kind: 'latency',
        variant: tracker,
        heapBytes: o.latencyHeapBytes,
        reads: o.latencyReads,
        warmup: o.latencyWarmup,
      });
      runs[tracker].push(r);
      say(
        `latency ${rep + 1}/${o.repeat} ${tracker.padEnd(6)} ${r.map((c) => `${c.condition} p50 ${summariseLatency(c.appUs).p50.toFixed(1)} µs`).join(', ')}`,
      );
    }
  }
  const table: Partial<Record<TrackerKind, Partial<Record<LatencyCondition, ReturnType<typeof pooled>>>>> =
    {};
  for (const tracker of trackers) {
    const byCondition: Partial<Record<LatencyCondition, ReturnType<typeof pooled>>> = {};
    for (const condition of runs[tracker][0]!.map((c) => c.condition)) {
      byCondition[condition] = pooled(runs[tracker].map((r) => r.find((c) => c.condition === condition)!));
    }
    table[tracker] = byCondition;
  }

  const us = (x: number) => x.toFixed(1).padStart(8);
  const figures = (s: LatencySummary) => `${us(s.p50)} ${us(s.p99)} ${us(s.max)} ${us(s.mean)}`;
  const row = (tracker: TrackerKind, condition: LatencyCondition) => {
    const cell = table[tracker]?.[condition];
    if (!cell) return [];
    const label = condition === 'zero' ? 'zero page' : condition;
    return [
      `  ${tracker.padEnd(8)} ${label.padEnd(10)} ${figures(cell.app)}   ${spread(cell.appP50PerProcess, 1).padStart(13)}   | ${us(cell.io.p50)} ${us(cell.io.p99)}`,
    ];
  };
  const ratio = (condition: LatencyCondition) => {
    const f = table.fault?.[condition];
    const a = table.access?.[condition];
    if (!f || !a) return [];
    const x = (num: number, den: number) => `${(num / den).toFixed(2)}x`.padStart(8);
    return [
      `  ${'fault/access'.padEnd(19)} ${x(f.app.p50, a.app.p50)} ${x(f.app.p99, a.app.p99)} ${x(f.app.max, a.app.max)} ${x(f.app.mean, a.app.mean)}   ${''.padStart(13)}   | ${x(f.io.p50, a.io.p50)} ${x(f.io.p99, a.io.p99)}`,
    ];
  };
  const pushed = trackers.flatMap((tracker) => {
    const push = table[tracker]?.busy?.push;
    if (!push || push.pages === 0) return [];
    const chunks = push.pages / PUSH_CHUNK_PAGES;
    return [
      `${tracker} ${(push.pages / runs[tracker].length).toFixed(0)} pages per process (${(push.covers / runs[tracker].length).toFixed(1)} covers), ${(push.chunkNs / chunks / 1e3).toFixed(1)} µs per chunk, ${((100 * push.chunkNs) / push.wallNs).toFixed(0)} % of the I/O thread's time`,
    ];
  });
  const lines = [
    `B. Fault latency at the application thread: one u32 read of a missing page, timed alone on the worker (miss to usable); ${formatBytes(o.latencyHeapBytes)} heap, every page allocated, none present; per condition ${o.latencyReads} distinct pages of the lower half in random order, after ${o.latencyWarmup} warm-up reads of other pages; ${o.repeat} processes per tracker, samples pooled; µs`,
    `  ${'tracker'.padEnd(8)} ${'condition'.padEnd(10)} ${'p50'.padStart(8)} ${'p99'.padStart(8)} ${'max'.padStart(8)} ${'mean'.padStart(8)}   ${'p50/process'.padStart(13)}   | ${'I/O p50'.padStart(8)} ${'I/O p99'.padStart(8)}`,
    ...row('access', 'idle'),
    ...row('fault', 'idle'),
    ...ratio('idle'),
    ...row('access', 'busy'),
    ...row('fault', 'busy'),
    ...ratio('busy'),
    ...row('fault', 'zero'),
    `  ${'access'.padEnd(8)} ${'zero page'.padEnd(10)} no such path: a page that holds nothing to migrate is present from START, and reading it is a hit`,
    ...(uffd.ok
      ? [
          '  zero page: Fault Tracker, no page allocated: each fault gets UFFDIO_ZEROPAGE on the I/O thread, no demand',
        ]
      : [`  fault    skipped: ${uffd.reason}`]),
    `  idle: the I/O thread only serves the demands (each answered on the next turn of its event loop); busy: it also pushes the upper half of the heap (never read) in ${PUSH_CHUNK_PAGES}-page chunks, one per turn, over and over while the worker reads: ${pushed.join('; ')}`,
    "  (an answer runs after the chunk queued before it, as a destination's comes in after the bulk frame in progress: compare busy - idle with the µs per chunk)",
    "  I/O p50/p99: the tracker's own figure (TrackerStats.latenciesUs, as in the migration report): from the wait reaching the I/O thread to its page installed",
    '  every value read was checked against the source bytes (zeros for the zero page)',
  ];
  const processes = Object.fromEntries(
    trackers.map((tracker) => [
      tracker,
      runs[tracker].map((r) =>
        r.map((c) => ({
          condition: c.condition,
          app: summariseLatency(c.appUs),
          io: summariseLatency(c.ioUs),
          faults: c.faults,
          checked: c.checked,
          push: c.push,
        })),
      ),
    ]),
  );
  return {
    lines,
    json: {
      options: { heapBytes: o.latencyHeapBytes, reads: o.latencyReads, warmup: o.latencyWarmup },
      faultSkipped: uffd.ok ? null : uffd.reason,
      pooled: table,
      processes,
    },
  };
}

async function parent(): Promise<void> {
  const o = parseOptions();
  const startedAt = new Date();
  const say: Say = (msg) => process.stderr.write(`${msg}\n`);
  const uffd = uffdAvailability();

  const scan = o.sections.has('scan') ? await scanSection(o, say) : null;
  const kv = o.sections.has('kv') ? await kvSection(o, say) : null;
  const steady = [scan, kv].filter((section) => section !== null);
  const latency = o.sections.has('latency') ? await latencySection(o, say, uffd) : null;

  const lines = [
    `Trackers side by side, ${startedAt.toISOString()}: ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.availableParallelism()} CPUs, Node ${process.versions.node}, load average ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
    uffd.ok
      ? `Fault Tracker: userfaultfd works here (opened via ${uffd.via})`
      : `Fault Tracker: userfaultfd is unavailable here (${uffd.reason}): A's fault variants ran on plain memory, B measured the Access Tracker only`,
  ];
  if (steady.length > 0) {
    lines.push(
      '',
      `A. Steady state, no migration: each tracker's heap as the application gets it, every page present. CPU time (user + system of the measuring process); medians over ${o.repeat} processes per variant (interleaved) of each process's median of ${o.passes} timed passes`,
      ...steady.flatMap((section) => ['', ...section.lines]),
    );
  }
  if (latency) lines.push('', ...latency.lines);
  const text = lines.join('\n');
  process.stdout.write(`${text}\n`);
  fs.mkdirSync(o.out, { recursive: true });
  const file = path.join(o.out, `tracker-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
  const { sections, ...options } = o;
  fs.writeFileSync(
    file,
    `${JSON.stringify(
      {
        benchmark: 'trackers side by side',
        startedAt: startedAt.toISOString(),
        options: { ...options, sections: [...sections] },
        machine: {
          cpuModel: os.cpus()[0]?.model,
          cpus: os.availableParallelism(),
          loadAvg: os.loadavg(),
          versions: { constmig: VERSION, ...process.versions },
        },
        faultTracker: uffd.ok
          ? { available: true, via: uffd.via }
          : { available: false, reason: uffd.reason },
        scan: scan?.json ?? null,
        kv: kv?.json ?? null,
        latency: latency?.json ?? null,
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
  child(JSON.parse(process.argv[3]!) as Spec).catch((err) => {
    process.stderr.write(`bench:tracker child: error: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
} else {
  parent().catch((err) => {
    process.stderr.write(`bench:tracker: error: ${errorMessage(err)}\n`);
    process.exit(1);
  });
}

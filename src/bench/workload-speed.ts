/**
 * How fast each benchmark workload fills and runs (`node dist/src/bench/workload-speed.js [--size
 * 256MiB] [--runs 200] [kind...]`): what WORKLOADS' opsPerRequest (one RUN ≈ 1 ms) and the fill
 * budget (≤ ~2 s per GiB) are checked against. Each kind is filled to --size in a heap sized so the
 * fill is 90 % of it (as the harness does), with present checks on (the Access Tracker's heap: the
 * slower accessors); then RUN batches of opsPerRequest operations at the default write share run
 * round-robin across the kinds, so drift on a noisy machine hits all alike. It calls the workload
 * directly (no RESP, no socket): a served RUN adds the request's round trip. Prints medians.
 */
import { WORKLOAD_KINDS, type WorkloadKind, WORKLOADS } from '../apps/registry.js';
import { ContentDigest } from '../apps/workloads/content-digest.js';
import type { Workload } from '../apps/workloads/workload.js';
import { HeapAllocator } from '../heap/allocator.js';
import { SecureHeap } from '../heap/secure-heap.js';
import { parseSize } from '../util/size.js';
import { xorshift } from '../util/random.js';

const FILL_SHARE = 0.9;

function option(args: string[], name: string, fallback: string): string {
  const at = args.indexOf(name);
  if (at === -1) return fallback;
  const value = args[at + 1];
  if (value === undefined) throw new Error(`${name} needs a value`);
  args.splice(at, 2);
  return value;
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[sorted.length >> 1]!;
};

function main(): void {
  const args = process.argv.slice(2);
  const fillBytes = parseSize(option(args, '--size', '256MiB'));
  const runs = Number(option(args, '--runs', '200'));
  if (!(Number.isInteger(runs) && runs >= 1)) throw new Error('--runs must be a positive integer');
  const unknown = args.filter((kind) => !WORKLOAD_KINDS.includes(kind as WorkloadKind));
  if (unknown.length > 0)
    throw new Error(`unknown workload ${unknown.join(', ')} (known: ${WORKLOAD_KINDS.join(', ')})`);
  const kinds = args.length > 0 ? (args as WorkloadKind[]) : WORKLOAD_KINDS;

  const loaded: { kind: WorkloadKind; workload: Workload; runMs: number[]; cpuMs: number[] }[] = [];
  for (const kind of kinds) {
    const heap = SecureHeap.create(Math.ceil(fillBytes / FILL_SHARE));
    const allocator = HeapAllocator.format(heap);
    const workload = WORKLOADS[kind].create({
      heap,
      allocator,
      random: xorshift(1),
      digest: new ContentDigest(),
    });
    const start = performance.now();
    const cpuStart = process.cpuUsage();
    const { bytes } = workload.create(fillBytes);
    const seconds = (performance.now() - start) / 1000;
    const cpu = process.cpuUsage(cpuStart);
    const cpuSeconds = (cpu.user + cpu.system) / 1e6;
    const gib = bytes / 2 ** 30;
    console.log(
      `${kind}: filled ${(bytes / 2 ** 20).toFixed(0)} MiB in ${seconds.toFixed(2)} s = ${(seconds / gib).toFixed(2)} s/GiB` +
        ` (CPU ${(cpuSeconds / gib).toFixed(2)} s/GiB)`,
    );
    loaded.push({ kind, workload, runMs: [], cpuMs: [] });
  }
  for (let run = 0; run < runs; run++) {
    for (const entry of loaded) {
      const { opsPerRequest, defaultWriteShare } = WORKLOADS[entry.kind];
      const start = performance.now();
      const cpuStart = process.cpuUsage();
      entry.workload.run(opsPerRequest, defaultWriteShare);
      entry.runMs.push(performance.now() - start);
      const cpu = process.cpuUsage(cpuStart);
      entry.cpuMs.push((cpu.user + cpu.system) / 1000);
    }
  }
  for (const { kind, workload, runMs, cpuMs } of loaded) {
    const { opsPerRequest, defaultWriteShare } = WORKLOADS[kind];
    const ms = median(runMs);
    console.log(
      `${kind}: RUN ${opsPerRequest} ops at writeShare ${defaultWriteShare}: median ${ms.toFixed(3)} ms` +
        ` (CPU ${median(cpuMs).toFixed(3)} ms; ${Math.round((opsPerRequest / ms) * 1000)} ops/s) over ${runs} runs;` +
        ` ${JSON.stringify(workload.stats())}`,
    );
  }
}

main();

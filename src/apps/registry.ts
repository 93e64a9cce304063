import type { AppContext, EnclaveApp } from './app.js';
import { createKvApp } from './kv/kv-app.js';
import { createBtree } from './workloads/btree.js';
import { createGraph } from './workloads/graph.js';
import { createHashjoin } from './workloads/hashjoin.js';
import { createMicro } from './workloads/micro.js';
import { createStream } from './workloads/stream.js';
import type { WorkloadSpec } from './workloads/workload.js';
import { WorkloadApp } from './workloads/workload-app.js';

/**
 * The benchmark workloads (src/apps/workloads), each served over RESP by WorkloadApp. The order is
 * fixed: a workload's position is the kind code its heap carries.
 */
export const WORKLOADS = {
  micro: {
    create: createMicro,
    summary: "random u32 reads and writes over the whole heap (the paper's microbenchmark)",
    opsPerRequest: 8192,
    defaultWriteShare: 0.5,
  },
  btree: {
    create: createBtree,
    summary: 'a B+-tree index of u32 keys: point lookups, 32-entry range scans, inserts that split nodes',
    opsPerRequest: 1024,
    defaultWriteShare: 0.2,
  },
  graph: {
    create: createGraph,
    summary: 'PageRank steps and bounded BFS over an R-MAT graph in CSR form (irregular reads)',
    opsPerRequest: 16,
    defaultWriteShare: 0.5,
  },
  hashjoin: {
    create: createHashjoin,
    summary: 'a hash join: batches of S rows probe a hash table on R, writes insert or update rows of R',
    opsPerRequest: 400,
    defaultWriteShare: 0.1,
  },
  stream: {
    create: createStream,
    summary: 'STREAM triad over three u32 arrays, one page per operation (dense sequential writes)',
    opsPerRequest: 128,
    defaultWriteShare: 1,
  },
} as const satisfies Record<string, WorkloadSpec>;
export type WorkloadKind = keyof typeof WORKLOADS;
export const WORKLOAD_KINDS = Object.keys(WORKLOADS) as WorkloadKind[];

/** Applications the enclave runtime can host; each can fill itself to a size for demos and benchmarks. */
export const APP_KINDS = ['kv', ...WORKLOAD_KINDS] as const;
export type AppKind = 'kv' | WorkloadKind;

export interface MigratableApp extends EnclaveApp {
  fill(targetBytes: number): { keys: number; bytes: number };
}

export const isWorkloadKind = (kind: string): kind is WorkloadKind => Object.hasOwn(WORKLOADS, kind);

export function createApp(kind: AppKind, ctx: AppContext): MigratableApp {
  if (kind === 'kv') return createKvApp(ctx);
  return new WorkloadApp(kind, WORKLOAD_KINDS.indexOf(kind) + 1, ctx, WORKLOADS[kind].create);
}

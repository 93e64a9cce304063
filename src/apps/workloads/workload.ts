import type { HeapAllocator } from '../../heap/allocator.js';
import type { HeapRange } from '../../heap/heap-range.js';
import type { SecureHeap } from '../../heap/secure-heap.js';
import type { ContentDigest } from './content-digest.js';

/**
 * What a benchmark workload gets from the framework (workload-app.ts): the heap, its allocator, a
 * deterministic random stream and the running content digest, the last two carried in the heap so
 * that a migrated workload goes on with the same sequence and the same digest.
 */
export interface WorkloadIo {
  readonly heap: SecureHeap;
  readonly allocator: HeapAllocator;
  /** Uniform u32, never 0 (xorshift32); the state migrates with the heap. */
  random(): number;
  readonly digest: ContentDigest;
}

/**
 * One benchmark workload: data structures in the SecureHeap and a steady-state operation. The
 * framework serves it over RESP (RUN, VERIFY), keeps its operation count and digest in the heap, and
 * hands it over in a migration like any application.
 */
export interface Workload {
  /**
   * Allocates the structures in a freshly formatted heap and generates the data, deterministically
   * from the random stream, until it takes about targetBytes (the caller keeps it below the heap
   * size); every item goes into the digest. Returns the address attach() takes.
   */
  create(targetBytes: number): { root: number; items: number; bytes: number };
  /** Finds the structures again in a heap that arrived (create() leaves the workload attached). */
  attach(root: number): void;
  /** The heap bytes attach() reads, for the structures attached now. */
  attachReads(): HeapRange[];
  /** Runs `ops` operations; `writeShare` in [0, 1] is the share that modify the data. */
  run(ops: number, writeShare: number): void;
  /** The content digest recomputed from the data alone (a full scan). */
  scan(): number;
  /** Figures for stats (items, sizes). */
  stats(): Record<string, number>;
}

export type WorkloadFactory = (io: WorkloadIo) => Workload;

/** A workload as the registry lists it. */
export interface WorkloadSpec {
  readonly create: WorkloadFactory;
  /** One line for help texts and reports. */
  readonly summary: string;
  /** Operations per RUN that take about a millisecond on this kind of machine: the load's batch. */
  readonly opsPerRequest: number;
  /** The write share the harness uses unless told otherwise (`micro:0.2`). */
  readonly defaultWriteShare: number;
}

import type { HeapRange } from '../../heap/heap-range.js';
import { CsrGraph } from './csr-graph.js';
import { below } from '../../util/random.js';
import type { Workload, WorkloadIo } from './workload.js';

/** Generated (undirected) edges per vertex, as Graph500's default; each is stored twice. */
export const EDGE_FACTOR = 16;
/** Vertices one PageRank operation updates before the cursor moves on. */
export const PAGERANK_CHUNK = 64;
/** Vertices one BFS operation visits at most. */
export const BFS_LIMIT = 256;
const MIN_SCALE = 4;
const STATE_MAGIC = 0x47525048; // 'GRPH'
/** u32 words: magic, PageRank cursor; then u64 addresses of offsets, edges, ranks. */
const STATE_BYTES = 32;

/**
 * The R-MAT size for a fill: 2^scale vertices (the nearest power of two, in log scale, to what an
 * edge factor of 16 would give) and as many edges as fill the rest: 8 * (1 + edge factor) bytes per
 * vertex are within √2 of 8 * 17, so the edge factor stays from 11 to 23 (15 for a power-of-two fill).
 */
export function graphSize(targetBytes: number): { scale: number; undirectedEdges: number } {
  // Per vertex: offset and rank (8 bytes) and 2 * EDGE_FACTOR stored edges.
  const perVertex = 8 + 8 * EDGE_FACTOR;
  const scale = Math.max(MIN_SCALE, Math.round(Math.log2(targetBytes / perVertex)));
  let undirectedEdges = Math.floor((targetBytes - CsrGraph.bytesFor(scale, 0) - STATE_BYTES) / 8);
  // The edge array's directory grows with its chunks: take back what it adds.
  while (CsrGraph.bytesFor(scale, undirectedEdges) + STATE_BYTES > targetBytes) undirectedEdges--;
  return { scale, undirectedEdges: Math.max(2 ** scale, undirectedEdges) };
}

/**
 * Graph analytics on an R-MAT graph in CSR form (csr-graph.ts). An operation is, with probability
 * writeShare, a PageRank update of the next PAGERANK_CHUNK vertices (a cursor in the heap walks the
 * vertices and wraps), otherwise a BFS from a random vertex bounded to BFS_LIMIT visits: irregular,
 * pointer-chasing reads over the whole edge array. Digest items: (vertex, rank), and the structure
 * (offsets, edges), which only the build writes.
 */
export function createGraph(io: WorkloadIo): Workload {
  let graph: CsrGraph | null = null;
  let state = 0;
  const attached = (): CsrGraph => {
    if (!graph) throw new Error('graph: not attached');
    return graph;
  };

  return {
    attachReads: (): HeapRange[] => [{ addr: state, bytes: STATE_BYTES }, ...attached().attachReads()],
    attach(root) {
      const { heap } = io;
      if (heap.readU32(root) !== STATE_MAGIC) throw new Error('graph: the root holds no graph');
      state = root;
      graph = CsrGraph.attach(heap, heap.readU64(root + 8), heap.readU64(root + 16), heap.readU64(root + 24));
    },
    create(targetBytes) {
      const { heap, allocator } = io;
      const { scale, undirectedEdges } = graphSize(targetBytes);
      state = allocator.alloc(STATE_BYTES);
      graph = CsrGraph.build(heap, allocator, scale, undirectedEdges, io.random());
      heap.writeU32(state, STATE_MAGIC);
      heap.writeU32(state + 4, 0);
      heap.writeU64(state + 8, graph.offsets.address);
      heap.writeU64(state + 16, graph.edges.address);
      heap.writeU64(state + 24, graph.ranks.address);
      // Every item's hash, added at once (the digest is a sum).
      io.digest.value = (io.digest.value + graph.digest()) >>> 0;
      return {
        root: state,
        items: graph.vertexCount * 2 + 1 + graph.edgeCount,
        bytes: CsrGraph.bytesFor(scale, undirectedEdges),
      };
    },
    run(ops, writeShare) {
      const g = attached();
      const vertices = g.vertexCount;
      const writeBelow = writeShare * 4294967296;
      for (let op = 0; op < ops; op++) {
        if (io.random() < writeBelow) {
          const cursor = io.heap.readU32(state + 4);
          const count = Math.min(PAGERANK_CHUNK, vertices - cursor);
          g.pageRankStep(cursor, count, io.digest);
          io.heap.writeU32(state + 4, cursor + count === vertices ? 0 : cursor + count);
        } else {
          g.boundedBfs(below(io.random(), vertices), BFS_LIMIT);
        }
      }
    },
    scan: () => attached().digest(),
    stats: () => ({
      items: graph ? graph.vertexCount * 2 + 1 + graph.edgeCount : 0,
      vertices: graph?.vertexCount ?? 0,
      edges: graph?.edgeCount ?? 0,
    }),
  };
}

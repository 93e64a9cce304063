import type { HeapRange } from '../../heap/heap-range.js';
import type { HeapAllocator } from '../../heap/allocator.js';
import type { SecureHeap } from '../../heap/secure-heap.js';
import { type ContentDigest, itemHash } from './content-digest.js';
import { CHUNK_SHIFT, HeapU32Array } from './heap-array.js';
import { RmatGenerator } from './rmat.js';

/** Ranks are u32 fixed point with the mean rank (1/V) as 1.0: V-independent precision, hubs fit. */
export const RANK_ONE = 2 ** 14;
export const DAMPING = 0.85;
const RANK_BASE = (1 - DAMPING) * RANK_ONE;
const MAX_RANK = 0xffffffff;
/** Elements a neighbour-list view covers at most: a view's present test covers only what is read. */
const VIEW_ELEMENTS = 1024;
/** Digest keys: an edge is keyed by its index (E < 2^32); offsets and ranks by the vertex, tagged. */
const OFFSET_KEY = 0x80000000;
const RANK_KEY = 0xc0000000;
const rankKey = (vertex: number): number => (RANK_KEY + vertex) >>> 0;

/**
 * An undirected graph in compressed sparse row form, in three HeapU32Arrays: offsets (V+1), the
 * neighbour lists (E, every edge in both directions, so a vertex's list holds its in- and
 * out-neighbours alike) and the PageRank ranks (V, fixed point).
 */
export class CsrGraph {
  private constructor(
    readonly offsets: HeapU32Array,
    readonly edges: HeapU32Array,
    readonly ranks: HeapU32Array,
  ) {}

  get vertexCount(): number {
    return this.ranks.length;
  }

  get edgeCount(): number {
    return this.edges.length;
  }

  /** Heap bytes of a graph of 2^scale vertices and `undirectedEdges` generated edges. */
  static bytesFor(scale: number, undirectedEdges: number): number {
    const vertices = 2 ** scale;
    return (
      HeapU32Array.bytesFor(vertices + 1) +
      HeapU32Array.bytesFor(2 * undirectedEdges) +
      HeapU32Array.bytesFor(vertices)
    );
  }

  /**
   * Builds the graph of `undirectedEdges` R-MAT edges over 2^scale vertices: one generator pass counts
   * the degrees, a second one from the same seed places each edge in both lists, so the edge list is
   * never held. Every rank starts at 1.0.
   */
  static build(
    heap: SecureHeap,
    allocator: HeapAllocator,
    scale: number,
    undirectedEdges: number,
    seed: number,
  ): CsrGraph {
    const vertices = 2 ** scale;
    const edgeCount = 2 * undirectedEdges;
    if (edgeCount >= 2 ** 32) throw new RangeError(`${edgeCount} edges do not fit u32 offsets`);
    // Build scratch, not state: the degrees, then each list's next free slot.
    const next = new Uint32Array(vertices + 1);
    let generator = new RmatGenerator(scale, seed);
    for (let e = 0; e < undirectedEdges; e++) {
      generator.next();
      next[generator.src]!++;
      next[generator.dst]!++;
    }
    let start = 0;
    for (let v = 0; v <= vertices; v++) {
      const degree = next[v]!;
      next[v] = start;
      start += degree;
    }
    const offsets = HeapU32Array.create(heap, allocator, vertices + 1);
    writeAll(offsets, (from, view) => view.set(next.subarray(from, from + view.length)));
    const edges = HeapU32Array.create(heap, allocator, edgeCount);
    const chunks: Uint32Array[] = [];
    writeAll(edges, (_from, view) => chunks.push(view));
    const mask = 2 ** CHUNK_SHIFT - 1;
    generator = new RmatGenerator(scale, seed);
    for (let e = 0; e < undirectedEdges; e++) {
      generator.next();
      const { src, dst } = generator;
      const out = next[src]!++;
      chunks[out >>> CHUNK_SHIFT]![out & mask] = dst;
      const back = next[dst]!++;
      chunks[back >>> CHUNK_SHIFT]![back & mask] = src;
    }
    const ranks = HeapU32Array.create(heap, allocator, vertices);
    writeAll(ranks, (_from, view) => view.fill(RANK_ONE));
    return new CsrGraph(offsets, edges, ranks);
  }

  /** The heap bytes `attach` reads: the three arrays' directories. */
  attachReads(): HeapRange[] {
    return [this.offsets, this.edges, this.ranks].flatMap((array) => array.attachReads());
  }

  static attach(heap: SecureHeap, offsets: number, edges: number, ranks: number): CsrGraph {
    const graph = new CsrGraph(
      HeapU32Array.attach(heap, offsets),
      HeapU32Array.attach(heap, edges),
      HeapU32Array.attach(heap, ranks),
    );
    if (graph.offsets.length !== graph.vertexCount + 1) throw new Error('graph: damaged structure');
    return graph;
  }

  degree(vertex: number): number {
    return this.offsets.get(vertex + 1) - this.offsets.get(vertex);
  }

  /** Calls `visit` for each neighbour of `vertex` (one per stored edge) until it returns false. */
  forEachNeighbour(vertex: number, visit: (neighbour: number) => boolean): void {
    const end = this.offsets.get(vertex + 1);
    for (let from = this.offsets.get(vertex); from < end;) {
      const pieceEnd = this.edges.runEnd(from, Math.min(end, from + VIEW_ELEMENTS));
      const view = this.edges.view(from, pieceEnd - from);
      for (let i = 0; i < view.length; i++) if (!visit(view[i]!)) return;
      from = pieceEnd;
    }
  }

  /**
   * Breadth-first search from `start` that stops once `limit` vertices are visited; returns them in
   * visiting order. The visited set is the operation's own, not state.
   */
  boundedBfs(start: number, limit: number): number[] {
    const visited = new Set<number>([start]);
    const order = [start];
    for (let head = 0; head < order.length && order.length < limit; head++) {
      this.forEachNeighbour(order[head]!, (neighbour) => {
        if (!visited.has(neighbour)) {
          visited.add(neighbour);
          order.push(neighbour);
        }
        return order.length < limit;
      });
    }
    return order;
  }

  /**
   * One pull-style PageRank update of the vertices [first, first + count), Gauss-Seidel (each new rank
   * is written in place and used at once): rank[v] = (1 - d) + d * sum(rank[u] / degree[u]) over v's
   * neighbours, in units of the mean rank. Dangling mass is not redistributed.
   */
  pageRankStep(first: number, count: number, digest: ContentDigest): void {
    for (let v = first; v < first + count; v++) {
      let sum = 0;
      this.forEachNeighbour(v, (u) => {
        sum += this.ranks.get(u) / this.degree(u);
        return true;
      });
      const before = this.ranks.get(v);
      const after = Math.min(MAX_RANK, Math.round(RANK_BASE + DAMPING * sum));
      this.ranks.set(v, after);
      if (after !== before) digest.replace(rankKey(v), before, after);
    }
  }

  /** The digest of every item: (edge index, neighbour), (vertex, offset) and (vertex, rank). */
  digest(): number {
    let digest = 0;
    readAll(this.edges, (from, view) => {
      for (let i = 0; i < view.length; i++) digest = (digest + itemHash(from + i, view[i]!)) >>> 0;
    });
    readAll(this.offsets, (from, view) => {
      for (let i = 0; i < view.length; i++)
        digest = (digest + itemHash((OFFSET_KEY + from + i) >>> 0, view[i]!)) >>> 0;
    });
    readAll(this.ranks, (from, view) => {
      for (let i = 0; i < view.length; i++) digest = (digest + itemHash(rankKey(from + i), view[i]!)) >>> 0;
    });
    return digest;
  }
}

/** Hands `write` mutable views that cover the whole array, one per chunk. */
function writeAll(array: HeapU32Array, write: (from: number, view: Uint32Array) => void): void {
  for (let from = 0; from < array.length;) {
    const end = array.runEnd(from);
    write(from, array.mutableView(from, end - from));
    from = end;
  }
}

/** Hands `read` read-only views that cover the whole array, 64 Ki elements at a time. */
function readAll(array: HeapU32Array, read: (from: number, view: Uint32Array) => void): void {
  for (let from = 0; from < array.length;) {
    const end = array.runEnd(from, from + 65536);
    read(from, array.view(from, end - from));
    from = end;
  }
}

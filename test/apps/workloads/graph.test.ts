import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ContentDigest } from '../../../src/apps/workloads/content-digest.js';
import { CsrGraph, DAMPING, RANK_ONE } from '../../../src/apps/workloads/csr-graph.js';
import { EDGE_FACTOR, graphSize } from '../../../src/apps/workloads/graph.js';
import { RmatGenerator } from '../../../src/apps/workloads/rmat.js';
import { freshHeap } from '../../helpers/app-heap.js';

const MiB = 2 ** 20;

function edgesOf(scale: number, count: number, seed: number): [number, number][] {
  const generator = new RmatGenerator(scale, seed);
  return Array.from({ length: count }, () => {
    generator.next();
    return [generator.src, generator.dst];
  });
}

function build(scale: number, undirectedEdges: number, seed: number): CsrGraph {
  const { heap, allocator } = freshHeap(16 * MiB);
  return CsrGraph.build(heap, allocator, scale, undirectedEdges, seed);
}

const neighbours = (graph: CsrGraph, vertex: number): number[] => {
  const list: number[] = [];
  graph.forEachNeighbour(vertex, (u) => list.push(u) > 0);
  return list;
};

describe('R-MAT generator', () => {
  test('is deterministic for a seed, differs between seeds, stays below 2^scale', () => {
    const first = edgesOf(10, 5000, 7);
    assert.deepEqual(edgesOf(10, 5000, 7), first);
    assert.notDeepEqual(edgesOf(10, 5000, 8), first);
    assert.ok(first.flat().every((v) => Number.isInteger(v) && v >= 0 && v < 1024));
  });

  test('is skewed like R-MAT: a few hubs, many vertices without an edge', () => {
    const degree = new Array<number>(4096).fill(0);
    for (const [src, dst] of edgesOf(12, 16 * 4096, 3)) {
      degree[src]!++;
      degree[dst]!++;
    }
    const max = Math.max(...degree);
    assert.ok(max > 20 * 2 * 16, `the largest degree ${max} is no hub`);
    assert.ok(degree.filter((d) => d === 0).length > 4096 * 0.1, 'too few isolated vertices');
  });
});

describe('CSR graph', () => {
  test('holds every generated edge in both directions; degrees sum to E', () => {
    const graph = build(8, 3000, 11);
    assert.equal(graph.vertexCount, 256);
    assert.equal(graph.edgeCount, 6000);
    const expected = new Map<string, number>();
    const count = (map: Map<string, number>, u: number, v: number) => {
      const key = `${u}>${v}`;
      map.set(key, (map.get(key) ?? 0) + 1);
    };
    for (const [src, dst] of edgesOf(8, 3000, 11)) {
      count(expected, src, dst);
      count(expected, dst, src);
    }
    const stored = new Map<string, number>();
    let degrees = 0;
    for (let v = 0; v < graph.vertexCount; v++) {
      degrees += graph.degree(v);
      for (const u of neighbours(graph, v)) count(stored, v, u);
    }
    assert.equal(degrees, graph.edgeCount);
    assert.equal(graph.offsets.get(graph.vertexCount), graph.edgeCount);
    assert.deepEqual(stored, expected);
    for (const [key, n] of stored) {
      const [u, v] = key.split('>');
      assert.equal(stored.get(`${v}>${u}`), n, `${key} is not symmetric`);
    }
  });

  test('a bounded BFS visits distinct vertices reachable from the start, up to the limit', () => {
    const graph = build(9, 700, 5);
    const component = (start: number) => {
      const seen = new Set([start]);
      for (const queue = [start]; queue.length > 0;)
        for (const u of neighbours(graph, queue.pop()!))
          if (!seen.has(u)) {
            seen.add(u);
            queue.push(u);
          }
      return seen;
    };
    let capped = 0;
    for (const start of [0, 1, 17, 100, 311, 511]) {
      const reachable = component(start);
      for (const limit of [1, 8, 64, 512]) {
        const visited = graph.boundedBfs(start, limit);
        assert.equal(visited[0], start);
        assert.equal(new Set(visited).size, visited.length, 'a vertex was visited twice');
        assert.ok(
          visited.every((v) => reachable.has(v)),
          'visited an unreachable vertex',
        );
        assert.equal(visited.length, Math.min(limit, reachable.size));
        if (reachable.size > limit) capped++;
      }
    }
    assert.ok(capped > 0, 'no search hit its limit');
  });

  test('PageRank steps keep ranks finite and converge to a naive PageRank; the digest follows', () => {
    const scale = 6;
    const edges = edgesOf(scale, 300, 9);
    const graph = build(scale, 300, 9);
    const vertices = graph.vertexCount;
    // Naive Jacobi iteration of the same equation, in doubles, in units of the mean rank.
    const lists: number[][] = Array.from({ length: vertices }, () => []);
    for (const [src, dst] of edges) {
      lists[src]!.push(dst);
      lists[dst]!.push(src);
    }
    let naive = new Array<number>(vertices).fill(1);
    for (let iteration = 0; iteration < 200; iteration++)
      naive = lists.map(
        (list) => 1 - DAMPING + DAMPING * list.reduce((sum, u) => sum + naive[u]! / lists[u]!.length, 0),
      );
    const distance = () => {
      let sum = 0;
      for (let v = 0; v < vertices; v++) sum += Math.abs(graph.ranks.get(v) / RANK_ONE - naive[v]!);
      return sum / vertices;
    };
    const digest = new ContentDigest(graph.digest());
    const initial = distance();
    assert.ok(initial > 0.05, `the start (${initial}) is already the answer`);
    for (let sweep = 0; sweep < 60; sweep++)
      for (let first = 0; first < vertices; first += 16) graph.pageRankStep(first, 16, digest);
    for (let v = 0; v < vertices; v++) assert.ok(Number.isFinite(graph.ranks.get(v)));
    const final = distance();
    assert.ok(final < initial / 100 && final < 1e-3, `mean distance ${initial} -> ${final}`);
    assert.equal(digest.value, graph.digest(), 'the running digest lost a rank change');
  });
});

describe('graph sizing', () => {
  test('fills the target with a power-of-two vertex count and an edge factor of 11 to 23', () => {
    for (const target of [64 * 1024, 8 * MiB, 33 * MiB, 256 * MiB, 3 * 2 ** 30]) {
      const { scale, undirectedEdges } = graphSize(target);
      // Bytes per vertex are 8 * (1 + factor); the vertex count is off by at most √2 either way.
      const perVertex = 1 + undirectedEdges / 2 ** scale;
      assert.ok(
        perVertex >= (1 + EDGE_FACTOR) / Math.SQRT2 && perVertex <= (1 + EDGE_FACTOR) * Math.SQRT2,
        `edge factor ${perVertex - 1}`,
      );
      const bytes = CsrGraph.bytesFor(scale, undirectedEdges);
      assert.ok(bytes <= target && bytes > target * 0.99, `${bytes} bytes for ${target}`);
    }
  });
});

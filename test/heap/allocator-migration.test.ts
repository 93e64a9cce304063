import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { HeapAllocator, HeapFormatError } from '../../src/heap/allocator.js';
import { SecureHeap } from '../../src/heap/secure-heap.js';
import { copyPages, pattern } from './heap-fixtures.js';

const MiB = 2 ** 20;
const HEAP_BYTES = 8 * MiB;

type Op = { kind: 'alloc'; size: number } | { kind: 'free'; pick: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({ kind: fc.constant('alloc' as const), size: fc.integer({ min: 1, max: 3000 }) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('alloc' as const), size: fc.integer({ min: 1, max: 40_000 }) }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('free' as const), pick: fc.nat() }) },
);

/** Applies the operations and returns every address they produced (frees yield the freed address). */
function run(allocator: HeapAllocator, live: Map<number, number>, ops: Op[], heap?: SecureHeap): number[] {
  const trace: number[] = [];
  for (const o of ops) {
    if (o.kind === 'free') {
      const addrs = [...live.keys()];
      if (addrs.length === 0) continue;
      const addr = addrs[o.pick % addrs.length]!;
      allocator.free(addr);
      live.delete(addr);
      trace.push(-addr);
      continue;
    }
    const addr = allocator.alloc(o.size);
    live.set(addr, o.size);
    heap?.write(addr, pattern(addr, o.size));
    trace.push(addr);
  }
  return trace;
}

function formattedWithBlocks(ops: Op[]): {
  heap: SecureHeap;
  allocator: HeapAllocator;
  live: Map<number, number>;
} {
  const heap = SecureHeap.create(HEAP_BYTES);
  const allocator = HeapAllocator.format(heap);
  const live = new Map<number, number>();
  run(allocator, live, ops, heap);
  for (let i = 0; i < 8; i++) allocator.setRoot(i, [...live.keys()][i] ?? i * 1000 + 1);
  return { heap, allocator, live };
}

describe('HeapAllocator after migration', () => {
  test('a copy of the allocated pages attaches with the same roots, blocks and future addresses', () => {
    fc.assert(
      fc.property(
        fc.array(opArb, { maxLength: 120 }),
        fc.array(opArb, { maxLength: 60 }),
        (before, after) => {
          const a = formattedWithBlocks(before);
          const b = SecureHeap.create(HEAP_BYTES);
          const copied = copyPages(a.heap, b, a.allocator.allocated);
          assert.equal(copied, a.allocator.stats().allocatedPages);

          const attached = HeapAllocator.attach(b);
          assert.deepEqual(attached.stats(), a.allocator.stats());
          for (let i = 0; i < 8; i++) assert.equal(attached.getRoot(i), a.allocator.getRoot(i));
          for (const [addr, size] of a.live) {
            assert.ok(b.equals(addr, pattern(addr, size)), `block at ${addr} arrived`);
            assert.equal(attached.usableSize(addr), a.allocator.usableSize(addr));
          }

          const liveB = new Map(a.live);
          assert.deepEqual(run(attached, liveB, after), run(a.allocator, a.live, after));
          assert.deepEqual(attached.stats(), a.allocator.stats());
        },
      ),
      { numRuns: 25 },
    );
  });

  test('on a destination that fetches pages on demand, attach needs only the metadata pages', () => {
    const ops: Op[] = Array.from({ length: 300 }, (_, i) =>
      i % 4 === 3 ? { kind: 'free', pick: i * 7 } : { kind: 'alloc', size: 1 + ((i * 997) % 9000) },
    );
    const a = formattedWithBlocks(ops);
    const b = SecureHeap.create(HEAP_BYTES);
    b.present.clearAll();
    const fetched: number[] = [];
    b.onMiss = (first, count) => {
      for (let page = first; page < first + count; page++) {
        if (b.present.get(page)) continue;
        // Pages that were never allocated hold nothing and do not travel.
        if (a.allocator.allocated.get(page)) {
          b.rawPages(page, 1).set(a.heap.rawPages(page, 1));
          fetched.push(page);
        }
        b.present.set(page);
      }
    };

    const attached = HeapAllocator.attach(b);
    assert.deepEqual(fetched, [0], 'attach reads the header alone; the bitmap waits for first use');
    assert.equal(attached.stats().allocatedPages, a.allocator.stats().allocatedPages);

    for (const [addr, size] of a.live) assert.ok(b.equals(addr, pattern(addr, size)));
    const more: Op[] = Array.from({ length: 100 }, (_, i) => ({
      kind: 'alloc',
      size: 1 + ((i * 31) % 5000),
    }));
    const liveB = new Map(a.live);
    assert.deepEqual(run(attached, liveB, more), run(a.allocator, a.live, more));
    assert.ok(fetched.every((page) => a.allocator.allocated.get(page)));
  });
});

describe('HeapAllocator.attach validation', () => {
  test('rejects a heap that was never formatted', () => {
    assert.throws(
      () => HeapAllocator.attach(SecureHeap.create(MiB)),
      (err: unknown) => {
        return err instanceof HeapFormatError && /magic CMHEAP01 not found/.test(err.message);
      },
    );
  });

  test('rejects an unknown format version', () => {
    const heap = SecureHeap.create(MiB);
    HeapAllocator.format(heap);
    heap.writeU32(8, 99);
    assert.throws(() => HeapAllocator.attach(heap), /version 99 is not supported/);
  });

  test('rejects metadata formatted for another heap size', () => {
    const small = SecureHeap.create(MiB);
    HeapAllocator.format(small);
    const large = SecureHeap.create(2 * MiB);
    large.rawPages(0, 3).set(small.rawPages(0, 3));
    assert.throws(() => HeapAllocator.attach(large), /formatted for 256 pages but has 512/);
  });

  test('rejects an allocated bitmap that disagrees with the header count when it is first used', () => {
    const heap = SecureHeap.create(MiB);
    const allocator = HeapAllocator.format(heap);
    allocator.allocated.set(200);
    const attached = HeapAllocator.attach(heap);
    assert.throws(
      () => attached.alloc(64 * 1024),
      (err: unknown) =>
        err instanceof HeapFormatError && /bitmap holds 4 pages, the header says 3/.test(err.message),
    );
  });
});

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  HeapAllocator,
  HeapCorruptionError,
  HeapFullError,
  MAX_ALLOCATION_BYTES,
} from '../../src/heap/allocator.js';
import { PAGE_SIZE, SEGMENT_BYTES } from '../../src/heap/constants.js';
import { SecureHeap } from '../../src/heap/secure-heap.js';
import { pattern, spannedPages } from './heap-fixtures.js';

const MiB = 2 ** 20;

function dirtyPages(heap: SecureHeap): number[] {
  const pages: number[] = [];
  for (let page = heap.dirty.nextSet(0); page !== -1; page = heap.dirty.nextSet(page + 1)) pages.push(page);
  return pages;
}

describe('HeapAllocator basics', () => {
  test('a formatted heap holds only its metadata, in the allocated bitmap that lives in heap memory', () => {
    const heap = SecureHeap.create(MiB);
    const allocator = HeapAllocator.format(heap);
    const stats = allocator.stats();
    assert.deepEqual(stats, { pageCount: 256, allocatedPages: 3, metadataPages: 3, liveBytes: 0 });
    assert.equal(allocator.allocated.count(), 3);
    assert.ok(allocator.allocated.allSet(0, 3));
    assert.equal(allocator.allocated.words.buffer, heap.segments[0]!.buffer);
    assert.deepEqual(dirtyPages(heap), [0, 1, 2], 'every metadata page must travel with the first round');
  });

  test('addresses are non-zero, 8-byte aligned and hold at least the requested size', () => {
    const allocator = HeapAllocator.format(SecureHeap.create(4 * MiB));
    for (const size of [0, 1, 8, 16, 17, 100, 2048, 2049, 4096, 4097, 70_000]) {
      const addr = allocator.alloc(size);
      assert.ok(addr > 0 && addr % 8 === 0, `alloc(${size}) = ${addr}`);
      assert.ok(allocator.usableSize(addr) >= size);
    }
  });

  test('sizes above the maximum or not a byte count are refused', () => {
    const allocator = HeapAllocator.format(SecureHeap.create(MiB));
    for (const size of [MAX_ALLOCATION_BYTES + 1, -1, 1.5, Number.NaN]) {
      assert.throws(() => allocator.alloc(size), RangeError, `size ${size}`);
    }
  });

  test('roots are stored in the header and validated', () => {
    const heap = SecureHeap.create(MiB);
    const allocator = HeapAllocator.format(heap);
    allocator.setRoot(0, 12345);
    allocator.setRoot(7, Number.MAX_SAFE_INTEGER);
    assert.equal(allocator.getRoot(0), 12345);
    assert.equal(allocator.getRoot(7), Number.MAX_SAFE_INTEGER);
    assert.equal(allocator.getRoot(3), 0);
    assert.throws(() => allocator.getRoot(8), RangeError);
    assert.throws(() => allocator.setRoot(-1, 0), RangeError);
    assert.throws(() => allocator.setRoot(1, -5), RangeError);
    assert.equal(HeapAllocator.attach(heap).getRoot(0), 12345, 'roots live in heap memory');
  });

  test('freed runs go back to the allocator and are found first fit', () => {
    const allocator = HeapAllocator.format(SecureHeap.create(MiB));
    const before = allocator.stats().allocatedPages;
    const a = allocator.alloc(3 * PAGE_SIZE);
    const b = allocator.alloc(3 * PAGE_SIZE);
    assert.equal(b, a + 3 * PAGE_SIZE);
    allocator.free(a);
    assert.equal(allocator.allocated.countRange(a / PAGE_SIZE, 3), 0, 'a freed run is cleared in the bitmap');
    assert.equal(allocator.alloc(2 * PAGE_SIZE), a);
    allocator.free(b);
    assert.equal(allocator.stats().allocatedPages, before + 2);
  });

  test('slab pages stay allocated when all their chunks are free, and their chunks are reused', () => {
    const allocator = HeapAllocator.format(SecureHeap.create(MiB));
    const chunk = allocator.alloc(100);
    const pages = allocator.stats().allocatedPages;
    allocator.free(chunk);
    assert.equal(allocator.stats().allocatedPages, pages);
    assert.equal(allocator.stats().liveBytes, 0);
    assert.equal(allocator.alloc(100), chunk);
    allocator.free(chunk);
    assert.equal(allocator.stats().liveBytes, 0, 'a reused chunk that was never written frees normally');
  });

  test('allocation writes only metadata pages and marks them dirty', () => {
    const heap = SecureHeap.create(MiB);
    const allocator = HeapAllocator.format(heap);
    heap.dirty.clearAll();
    const run = allocator.alloc(3 * PAGE_SIZE);
    assert.deepEqual(dirtyPages(heap), [0, 1, 2], 'header, bitmap and page table; not the run itself');
    heap.dirty.clearAll();
    allocator.free(run);
    assert.deepEqual(dirtyPages(heap), [0, 1, 2]);
  });
});

describe('HeapAllocator exhaustion', () => {
  test('throws HeapFullError when no run fits, changes nothing, and recovers after a free', () => {
    const allocator = HeapAllocator.format(SecureHeap.create(MiB));
    const runs: number[] = [];
    for (let i = 0; i < 15; i++) runs.push(allocator.alloc(64 * 1024));
    const stats = allocator.stats();
    assert.throws(
      () => allocator.alloc(64 * 1024),
      (err: unknown) =>
        err instanceof HeapFullError &&
        err.message === 'heap full: cannot allocate 65536 bytes (243 of 256 pages in use)',
    );
    assert.deepEqual(allocator.stats(), stats, 'a failed allocation changes nothing');

    const chunks: number[] = [];
    for (let i = 0; i < 26; i++) chunks.push(allocator.alloc(2048));
    assert.throws(
      () => allocator.alloc(2048),
      /heap full: cannot allocate 2048 bytes \(256 of 256 pages in use\)/,
    );
    assert.throws(() => allocator.alloc(2 * PAGE_SIZE), HeapFullError);

    allocator.free(chunks[3]!);
    assert.equal(allocator.alloc(2048), chunks[3], 'a freed chunk is usable on a full heap');
    allocator.free(runs[4]!);
    assert.throws(() => allocator.alloc(64 * 1024 + 1), HeapFullError, '17 contiguous pages do not exist');
    assert.equal(allocator.alloc(64 * 1024), runs[4]);
  });
});

describe('HeapAllocator misuse detection', () => {
  function setup() {
    const heap = SecureHeap.create(MiB);
    const allocator = HeapAllocator.format(heap);
    return { heap, allocator, chunk: allocator.alloc(48), run: allocator.alloc(3 * PAGE_SIZE) };
  }

  test('free of an address that is not the start of a live block', () => {
    const { allocator, chunk, run } = setup();
    for (const addr of [
      0,
      8,
      PAGE_SIZE,
      chunk + 8,
      chunk + 48 * 2,
      run + PAGE_SIZE,
      run + 16,
      MiB,
      -16,
      0.5,
    ]) {
      assert.throws(() => allocator.free(addr), HeapCorruptionError, `free(${addr})`);
    }
    assert.equal(allocator.stats().liveBytes, 48 + 3 * PAGE_SIZE, 'rejected frees change nothing');
  });

  test('double free of a run and of a chunk', () => {
    const { allocator, chunk, run } = setup();
    allocator.free(run);
    assert.throws(() => allocator.free(run), /double free/);
    allocator.free(chunk);
    assert.throws(() => allocator.free(chunk), /already free/);
    assert.throws(() => allocator.usableSize(chunk), HeapCorruptionError);
    assert.throws(() => allocator.usableSize(run), HeapCorruptionError);
  });

  test('a live chunk holding the bytes of a freed chunk is not mistaken for a free one', () => {
    const { heap, allocator, chunk } = setup();
    const other = allocator.alloc(48);
    allocator.free(chunk);
    heap.write(other, heap.bytes(chunk, 48).slice());
    allocator.free(other);
    assert.equal(allocator.stats().liveBytes, 3 * PAGE_SIZE);
  });

  test('a write into a freed chunk is caught when the chunk is handed out again', () => {
    const { heap, allocator, chunk } = setup();
    allocator.free(chunk);
    heap.writeU64(chunk + 8, 0);
    assert.throws(() => allocator.alloc(48), /use after free/);
  });
});

describe('HeapAllocator segments', () => {
  test('a run that does not fit before a segment end starts the next segment; the gap stays usable', () => {
    const heap = SecureHeap.create(SEGMENT_BYTES + 16 * MiB);
    const allocator = HeapAllocator.format(heap);
    let remaining = SEGMENT_BYTES - allocator.stats().metadataPages * PAGE_SIZE - 3 * MiB - 2 * PAGE_SIZE;
    while (remaining > 0) {
      const size = Math.min(remaining, MAX_ALLOCATION_BYTES);
      allocator.alloc(size);
      remaining -= size;
    }
    for (let i = 0; i < 3; i++) assert.ok(allocator.alloc(MiB) < SEGMENT_BYTES);
    assert.equal(allocator.alloc(MiB), SEGMENT_BYTES);
    const gap = allocator.alloc(2 * PAGE_SIZE);
    assert.equal(gap, SEGMENT_BYTES - 2 * PAGE_SIZE);
  });

  test('random allocations and frees never overlap, keep their contents and match a model', () => {
    // One heap for every run (re-formatted each time), so free pages hold stale data as in real use.
    const heap = SecureHeap.create(SEGMENT_BYTES + 16 * MiB);
    type Op = { kind: 'alloc'; size: number } | { kind: 'free'; pick: number };
    const size = fc.oneof(
      { weight: 6, arbitrary: fc.integer({ min: 1, max: 2048 }) },
      { weight: 3, arbitrary: fc.integer({ min: 2049, max: 64 * 1024 }) },
      { weight: 1, arbitrary: fc.integer({ min: 64 * 1024 + 1, max: 1024 * 1024 }) },
    );
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 3, arbitrary: fc.record({ kind: fc.constant('alloc' as const), size }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('free' as const), pick: fc.nat() }) },
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 80 }), (ops) => {
        const allocator = HeapAllocator.format(heap);
        const model = new Map<number, { id: number; size: number; usable: number }>();
        // Fill segment 0 up to 1 MiB before its end so that the operations straddle the boundary.
        let remaining = SEGMENT_BYTES - allocator.stats().metadataPages * PAGE_SIZE - MiB;
        while (remaining > 0) {
          const fill = Math.min(remaining, MAX_ALLOCATION_BYTES);
          model.set(allocator.alloc(fill), { id: -1, size: 0, usable: fill });
          remaining -= fill;
        }
        const slabPages = new Set<number>();
        let nextId = 0;
        for (const o of ops) {
          if (o.kind === 'free') {
            const victims = [...model.keys()].filter((addr) => model.get(addr)!.id >= 0);
            if (victims.length === 0) continue;
            const addr = victims[o.pick % victims.length]!;
            allocator.free(addr);
            model.delete(addr);
            continue;
          }
          let addr: number;
          try {
            addr = allocator.alloc(o.size);
          } catch (err) {
            assert.ok(err instanceof HeapFullError, String(err));
            continue;
          }
          const usable = allocator.usableSize(addr);
          assert.ok(addr % 8 === 0 && !model.has(addr));
          if (o.size <= 2048) {
            assert.ok(usable >= o.size && usable <= 2048);
            slabPages.add(Math.floor(addr / PAGE_SIZE));
          } else {
            assert.equal(usable, Math.ceil(o.size / PAGE_SIZE) * PAGE_SIZE);
            assert.equal(addr % PAGE_SIZE, 0);
          }
          assert.equal(Math.floor(addr / SEGMENT_BYTES), Math.floor((addr + usable - 1) / SEGMENT_BYTES));
          const id = nextId++;
          heap.write(addr, pattern(id, o.size));
          model.set(addr, { id, size: o.size, usable });
        }

        const blocks = [...model.entries()].sort(([a], [b]) => a - b);
        let liveBytes = 0;
        let runPages = 0;
        for (const [i, [addr, block]] of blocks.entries()) {
          liveBytes += block.usable;
          if (block.usable > 2048) runPages += block.usable / PAGE_SIZE;
          const next = blocks[i + 1];
          if (next)
            assert.ok(addr + block.usable <= next[0], `block at ${addr} overlaps the one at ${next[0]}`);
          const { first, count } = spannedPages(addr, block.usable);
          assert.ok(allocator.allocated.allSet(first, count), `block at ${addr} is marked allocated`);
          if (block.id >= 0)
            assert.ok(heap.equals(addr, pattern(block.id, block.size)), `block ${block.id} intact`);
        }
        const stats = allocator.stats();
        assert.equal(stats.liveBytes, liveBytes);
        assert.equal(stats.allocatedPages, stats.metadataPages + runPages + slabPages.size);
        assert.equal(allocator.allocated.count(), stats.allocatedPages);
      }),
      { numRuns: 60 },
    );
  });
});

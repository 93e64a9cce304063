import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { SEGMENT_PAGES } from '../../src/heap/constants.js';
import { PageBitmap } from '../../src/heap/page-bitmap.js';
import { SecureHeap } from '../../src/heap/secure-heap.js';
import { ContentDigest } from '../../src/migrate/content-digest.js';
import { extentsOf } from '../../src/migrate/extents.js';

test('extents cover exactly the set pages, in order, bounded and within segments', () => {
  const heap = SecureHeap.create(2 ** 20);
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.nat(heap.pageCount - 1), { maxLength: 200 }),
      fc.integer({ min: 1, max: 70 }),
      (pages, max) => {
        const bitmap = PageBitmap.create(heap.pageCount);
        for (const p of pages) bitmap.set(p);
        const covered: number[] = [];
        for (const { first, count } of extentsOf(bitmap, heap, max)) {
          assert.ok(count >= 1 && count <= max);
          for (let p = first; p < first + count; p++) covered.push(p);
        }
        assert.deepEqual(
          covered,
          [...pages].sort((a, b) => a - b),
        );
      },
    ),
  );
});

test('an extent never crosses a segment boundary', () => {
  const heap = SecureHeap.create(2 ** 30 + 2 ** 20);
  const bitmap = PageBitmap.create(heap.pageCount);
  bitmap.setRange(SEGMENT_PAGES - 10, 20);
  assert.deepEqual(
    [...extentsOf(bitmap, heap, 64)],
    [
      { first: SEGMENT_PAGES - 10, count: 10 },
      { first: SEGMENT_PAGES, count: 10 },
    ],
  );
});

test('the incremental content digest equals SecureHeap.digest with the same extent length', () => {
  const heap = SecureHeap.create(4 * 2 ** 20);
  const bitmap = PageBitmap.create(heap.pageCount);
  for (const p of [0, 1, 2, 7, 8, 100, 101, 102, 103, 500]) {
    bitmap.set(p);
    heap.writeU32(p * 4096 + 12, p * 7 + 1);
  }
  const incremental = new ContentDigest();
  for (const { first, count } of extentsOf(bitmap, heap, 3))
    incremental.update(first, count, heap.rawPages(first, count));
  const before = heap.digest(bitmap, 3).toString('hex');
  assert.equal(incremental.hex(), before);
  heap.writeU8(101 * 4096 + 5, 9);
  assert.notEqual(heap.digest(bitmap, 3).toString('hex'), before, 'one changed byte changes the digest');
});

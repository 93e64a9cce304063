import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import { SEGMENT_PAGES } from '../../src/heap/constants.js';
import { PageSetDigest } from '../../src/heap/page-set-digest.js';
import { PageBitmap } from '../../src/heap/page-bitmap.js';
import { SecureHeap } from '../../src/heap/secure-heap.js';
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

test('the page-set digest is independent of order, extent length and re-sends, and sees one changed byte', () => {
  const heap = SecureHeap.create(4 * 2 ** 20);
  const bitmap = PageBitmap.create(heap.pageCount);
  for (const p of [0, 1, 2, 7, 8, 100, 101, 102, 103, 500]) {
    bitmap.set(p);
    heap.writeU32(p * 4096 + 12, p * 7 + 1);
  }
  const before = heap.digest(bitmap);
  const extents = [...extentsOf(bitmap, heap, 3)].reverse();
  const incremental = new PageSetDigest(heap.pageCount);
  for (const { first, count } of extents) incremental.add(first, count, heap.rawPages(first, count));
  // A page sent twice, and a page sent that is no longer allocated, must not change the result.
  incremental.add(100, 2, heap.rawPages(100, 2));
  incremental.add(300, 1, heap.rawPages(300, 1));
  incremental.retainOnly(bitmap);
  assert.equal(incremental.hex(), before);
  heap.writeU8(101 * 4096 + 5, 9);
  assert.notEqual(heap.digest(bitmap), before, 'one changed byte changes the digest');
  incremental.add(101, 1, heap.rawPages(101, 1));
  assert.equal(incremental.hex(), heap.digest(bitmap), 'a newer version replaces the older one');
});

test('the page-set digest is the XOR over pages of SHA-256(u64le(page) || page bytes)', () => {
  const heap = SecureHeap.create(4 * 2 ** 20);
  const pages = [3, 4, 700];
  for (const p of pages) heap.writeU32(p * 4096 + 100, 0xc0ffee + p);
  const expected = Buffer.alloc(32);
  for (const p of pages) {
    const index = Buffer.alloc(8);
    index.writeBigUInt64LE(BigInt(p));
    const leaf = createHash('sha256').update(index).update(heap.rawPages(p, 1)).digest();
    for (let i = 0; i < 32; i++) expected[i]! ^= leaf[i]!;
  }
  const digest = new PageSetDigest(heap.pageCount);
  digest.add(3, 2, heap.rawPages(3, 2));
  digest.add(700, 1, heap.rawPages(700, 1));
  assert.equal(digest.hex(), expected.toString('hex'));
});

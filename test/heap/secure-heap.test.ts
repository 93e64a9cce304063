import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { PAGE_SIZE, SEGMENT_BYTES, SEGMENT_PAGES } from '../../src/heap/constants.js';
import { PageBitmap } from '../../src/heap/page-bitmap.js';
import { HeapSizeError, PageNotPresentError, SecureHeap } from '../../src/heap/secure-heap.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;

function setPages(heap: SecureHeap, pages: number[]): PageBitmap {
  const bitmap = PageBitmap.create(heap.pageCount);
  for (const page of pages) bitmap.set(page);
  return bitmap;
}

function dirtyPages(heap: SecureHeap): number[] {
  const pages: number[] = [];
  for (let page = heap.dirty.nextSet(0); page !== -1; page = heap.dirty.nextSet(page + 1)) pages.push(page);
  return pages;
}

describe('SecureHeap creation', () => {
  test('a 1 MiB heap has 256 pages, all present, none dirty', () => {
    const heap = SecureHeap.create(MiB);
    assert.equal(heap.byteLength, MiB);
    assert.equal(heap.pageCount, 256);
    assert.equal(heap.segments.length, 1);
    assert.equal(heap.segments[0]!.length, MiB);
    assert.equal(heap.present.count(), 256);
    assert.equal(heap.dirty.count(), 0);
  });

  test('sizes are rounded up to whole pages', () => {
    const heap = SecureHeap.create(MiB + 1);
    assert.equal(heap.pageCount, 257);
    assert.equal(heap.byteLength, 257 * PAGE_SIZE);
  });

  test('rejects sizes outside 1 MiB .. 16 GiB', () => {
    for (const bytes of [0, -MiB, MiB - 1, 16 * GiB + 1, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.throws(() => SecureHeap.create(bytes), HeapSizeError, `size ${bytes}`);
    }
  });

  test('an 8 GiB heap is created lazily and its last page is addressable above 2^32', () => {
    const rssBefore = process.memoryUsage().rss;
    const heap = SecureHeap.create(8 * GiB);
    assert.equal(heap.segments.length, 8);
    const last = heap.byteLength - PAGE_SIZE;
    assert.ok(last > 2 ** 32);
    heap.writeU64(last, Number.MAX_SAFE_INTEGER);
    heap.writeU32(last + 8, 0xdeadbeef);
    heap.writeF64(last + 16, -Math.PI);
    heap.writeU8(heap.byteLength - 1, 0xab);
    assert.equal(heap.readU64(last), Number.MAX_SAFE_INTEGER);
    assert.equal(heap.readU32(last + 8), 0xdeadbeef);
    assert.equal(heap.readF64(last + 16), -Math.PI);
    assert.equal(heap.readU8(heap.byteLength - 1), 0xab);
    assert.deepEqual(dirtyPages(heap), [heap.pageCount - 1]);
    const grown = process.memoryUsage().rss - rssBefore;
    assert.ok(grown < 100 * MiB, `RSS grew by ${grown} B`);
  });
});

describe('SecureHeap typed accessors', () => {
  test('values round-trip and u64 is stored little-endian', () => {
    const heap = SecureHeap.create(MiB);
    heap.writeU64(4096, 0x1f020304050607);
    assert.deepEqual([...heap.bytes(4096, 8)], [7, 6, 5, 4, 3, 2, 0x1f, 0]);
    assert.equal(heap.readU64(4096), 0x1f020304050607);
    heap.writeU32(8200, 0xffffffff);
    assert.equal(heap.readU32(8200), 0xffffffff);
    heap.writeF64(9000, 1e-300);
    assert.equal(heap.readF64(9000), 1e-300);
    heap.writeU8(77, 255);
    assert.equal(heap.readU8(77), 255);
  });

  test('rejects misaligned, out-of-range and fractional addresses', () => {
    const heap = SecureHeap.create(MiB);
    assert.throws(() => heap.readU32(2), RangeError);
    assert.throws(() => heap.readU64(4), RangeError);
    assert.throws(() => heap.writeF64(12, 1), RangeError);
    assert.throws(() => heap.readU8(-1), RangeError);
    assert.throws(() => heap.readU8(1.5), RangeError);
    assert.throws(() => heap.readU32(MiB), RangeError);
    assert.throws(() => heap.readU64(MiB - 4), RangeError);
    assert.throws(() => heap.readU8(Number.NaN), RangeError);
  });

  test('rejects values that do not fit the type, without writing', () => {
    const heap = SecureHeap.create(MiB);
    assert.throws(() => heap.writeU8(0, 256), RangeError);
    assert.throws(() => heap.writeU32(0, -1), RangeError);
    assert.throws(() => heap.writeU32(0, 2 ** 32), RangeError);
    assert.throws(() => heap.writeU64(0, 2 ** 53), RangeError);
    assert.throws(() => heap.writeU64(0, -1), RangeError);
    assert.throws(() => heap.writeU64(0, 0.5), RangeError);
    assert.equal(heap.dirty.count(), 0);
  });

  test('a stored u64 above 2^53-1 is refused on read rather than rounded', () => {
    const heap = SecureHeap.create(MiB);
    heap.write(64, new Uint8Array([0, 0, 0, 0, 0, 0, 0x20, 0]));
    assert.throws(() => heap.readU64(64), /exceeds 2\^53-1/);
  });
});

describe('SecureHeap byte ranges', () => {
  test('write, readInto and equals see the same bytes across a page boundary', () => {
    const heap = SecureHeap.create(MiB);
    const data = Uint8Array.from({ length: 6000 }, (_, i) => (i * 7) & 0xff);
    heap.write(3000, data);
    const back = new Uint8Array(6000);
    heap.readInto(3000, back);
    assert.deepEqual(back, data);
    assert.ok(heap.equals(3000, data));
    data[5999] = data[5999]! ^ 1;
    assert.equal(heap.equals(3000, data), false);
  });

  test('mutableBytes writes through to the heap', () => {
    const heap = SecureHeap.create(MiB);
    heap.mutableBytes(100, 4).set([1, 2, 3, 4]);
    assert.deepEqual([...heap.bytes(100, 4)], [1, 2, 3, 4]);
  });

  test('ranges past the heap end or across a segment boundary throw RangeError', () => {
    const heap = SecureHeap.create(GiB + MiB);
    assert.throws(() => heap.bytes(heap.byteLength - 10, 11), RangeError);
    assert.throws(() => heap.bytes(SEGMENT_BYTES - 4, 8), /segment boundary/);
    assert.throws(() => heap.write(SEGMENT_BYTES - 1, new Uint8Array(2)), /segment boundary/);
    assert.equal(heap.dirty.count(), 0);
    assert.equal(heap.bytes(SEGMENT_BYTES - 4, 4).length, 4);
    assert.equal(heap.bytes(SEGMENT_BYTES, 4).length, 4);
  });
});

describe('SecureHeap present check', () => {
  test('every accessor refuses a page that is not present and names it', () => {
    const heap = SecureHeap.create(MiB);
    heap.writeU32(5 * PAGE_SIZE, 42);
    heap.dirty.clearAll();
    heap.present.clear(5);
    const inPage5 = 5 * PAGE_SIZE + 8;
    const attempts: Array<() => unknown> = [
      () => heap.readU8(inPage5),
      () => heap.readU32(inPage5),
      () => heap.readU64(inPage5),
      () => heap.readF64(inPage5),
      () => heap.writeU32(inPage5, 1),
      () => heap.bytes(4 * PAGE_SIZE, 3 * PAGE_SIZE),
      () => heap.mutableBytes(inPage5, 1),
      () => heap.readInto(inPage5 - 100, new Uint8Array(200)),
      () => heap.write(inPage5, new Uint8Array([9])),
      () => heap.equals(inPage5, new Uint8Array(4)),
    ];
    for (const attempt of attempts) {
      assert.throws(attempt, (err: unknown) => {
        assert.ok(err instanceof PageNotPresentError);
        assert.equal(err.page, 5);
        assert.match(err.message, /page 5\b/);
        return true;
      });
    }
    assert.equal(heap.dirty.count(), 0, 'a refused write marks nothing dirty');
    assert.equal(new DataView(heap.rawPages(5, 1).buffer).getUint32(8, true), 0, 'nor changes memory');
  });

  test('onMiss is called with the touched range, and the access succeeds once it made the pages present', () => {
    const heap = SecureHeap.create(MiB);
    heap.write(10 * PAGE_SIZE + 100, new Uint8Array([1, 2, 3]));
    heap.present.clearRange(10, 10);
    const calls: Array<[number, number]> = [];
    heap.onMiss = (first, count) => {
      calls.push([first, count]);
      heap.present.setRange(first, count);
    };
    assert.equal(heap.bytes(10 * PAGE_SIZE + 100, 3 * PAGE_SIZE).length, 3 * PAGE_SIZE);
    assert.deepEqual(calls, [[10, 4]]);
    assert.equal(heap.readU8(10 * PAGE_SIZE + 101), 2, 'page 10 is present now: no second call');
    assert.equal(heap.readU8(15 * PAGE_SIZE), 0);
    assert.deepEqual(calls, [
      [10, 4],
      [15, 1],
    ]);
  });

  test('a hook that cannot fetch the page leaves the access failing', () => {
    const heap = SecureHeap.create(MiB);
    heap.present.clear(3);
    let called = 0;
    heap.onMiss = () => {
      called++;
    };
    assert.throws(() => heap.readU32(3 * PAGE_SIZE), PageNotPresentError);
    assert.equal(called, 1);
  });
});

describe('SecureHeap dirty tracking', () => {
  test('writes mark exactly the pages they touch; reads and raw access mark nothing', () => {
    const heap = SecureHeap.create(MiB);
    heap.writeU32(3 * PAGE_SIZE + 4092, 1);
    heap.write(7 * PAGE_SIZE + 1, new Uint8Array(2 * PAGE_SIZE));
    heap.mutableBytes(21 * PAGE_SIZE - 1, 2);
    heap.writeU8(30 * PAGE_SIZE, 1);
    heap.writeU64(31 * PAGE_SIZE + 8, 1);
    heap.writeF64(32 * PAGE_SIZE + 4088, 1);
    heap.readU32(40 * PAGE_SIZE);
    heap.readU64(41 * PAGE_SIZE);
    heap.bytes(42 * PAGE_SIZE, PAGE_SIZE);
    heap.readInto(43 * PAGE_SIZE, new Uint8Array(10));
    heap.equals(44 * PAGE_SIZE, new Uint8Array(10));
    heap.rawPages(45, 2).fill(1);
    heap.digest(setPages(heap, [50]));
    assert.deepEqual(dirtyPages(heap), [3, 7, 8, 9, 20, 21, 30, 31, 32]);
  });
});

describe('SecureHeap raw pages', () => {
  test('rawPages gives whole pages and rejects ranges across a segment or past the end', () => {
    const heap = SecureHeap.create(GiB + MiB);
    assert.equal(heap.rawPages(SEGMENT_PAGES - 1, 1).length, PAGE_SIZE);
    assert.equal(heap.rawPages(SEGMENT_PAGES, 256).length, 256 * PAGE_SIZE);
    assert.throws(() => heap.rawPages(SEGMENT_PAGES - 1, 2), /segment boundary/);
    assert.throws(() => heap.rawPages(heap.pageCount - 1, 2), RangeError);
    assert.throws(() => heap.rawPages(-1, 1), RangeError);
    heap.rawPages(SEGMENT_PAGES, 1)[0] = 7;
    assert.equal(heap.readU8(SEGMENT_BYTES), 7);
  });

  test('segmentEndPage is the next segment start, or pageCount in the last segment', () => {
    const heap = SecureHeap.create(GiB + MiB);
    assert.equal(heap.segmentEndPage(0), SEGMENT_PAGES);
    assert.equal(heap.segmentEndPage(SEGMENT_PAGES - 1), SEGMENT_PAGES);
    assert.equal(heap.segmentEndPage(SEGMENT_PAGES), heap.pageCount);
  });

  test('rawPages bypasses the present check', () => {
    const heap = SecureHeap.create(MiB);
    heap.present.clearAll();
    heap.rawPages(0, 4).fill(3);
    assert.throws(() => heap.readU8(0), PageNotPresentError);
  });
});

describe('SecureHeap digest', () => {
  function filled(seed: number): SecureHeap {
    const heap = SecureHeap.create(MiB);
    for (let page = 0; page < 40; page++) heap.rawPages(page, 1).fill((page * 31 + seed) & 0xff);
    return heap;
  }

  test('is equal for equal content, changes with one byte of a selected page, ignores other pages', () => {
    const a = filled(1);
    const b = filled(1);
    const selected = [2, 3, 4, 10, 39];
    const digestA = a.digest(setPages(a, selected));
    assert.deepEqual(b.digest(setPages(b, selected)), digestA);

    b.writeU8(20 * PAGE_SIZE + 5, 0);
    assert.deepEqual(b.digest(setPages(b, selected)), digestA, 'page 20 is not selected');

    b.writeU8(3 * PAGE_SIZE + 4095, 0);
    assert.notDeepEqual(b.digest(setPages(b, selected)), digestA);
  });

  test('is the documented XOR over pages of SHA-256(u64le(page) || page bytes)', () => {
    const heap = filled(2);
    const expected = Buffer.alloc(32);
    for (const page of [2, 3, 4, 10]) {
      const prefix = Buffer.alloc(8);
      prefix.writeBigUInt64LE(BigInt(page));
      const leaf = createHash('sha256').update(prefix).update(heap.rawPages(page, 1)).digest();
      for (let i = 0; i < 32; i++) expected[i]! ^= leaf[i]!;
    }
    assert.equal(heap.digest(setPages(heap, [2, 3, 4, 10])), expected.toString('hex'));
  });

  test('rejects a bitmap of another heap size', () => {
    const heap = SecureHeap.create(MiB);
    assert.throws(() => heap.digest(PageBitmap.create(heap.pageCount + 1)), RangeError);
  });
});

describe('SecureHeap wipe', () => {
  test('zeroes every written byte, clears both bitmaps and refuses later access', () => {
    const heap = SecureHeap.create(GiB + MiB);
    heap.write(PAGE_SIZE, new Uint8Array(3 * PAGE_SIZE).fill(0x5a));
    heap.writeU64(heap.byteLength - 8, 123);
    heap.rawPages(100, 1).fill(0x77);
    heap.onMiss = (first, count) => heap.present.setRange(first, count);
    heap.wipe();
    for (const [first, count] of [
      [1, 3],
      [100, 1],
      [heap.pageCount - 1, 1],
    ] as const) {
      assert.ok(
        heap.rawPages(first, count).every((byte) => byte === 0),
        `pages ${first}+${count} are zero`,
      );
    }
    assert.equal(heap.present.count(), 0);
    assert.equal(heap.dirty.count(), 0);
    assert.throws(() => heap.readU8(PAGE_SIZE), PageNotPresentError, 'no tracker refetches after a wipe');
  });
});

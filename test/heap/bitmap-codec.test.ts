import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { BitmapCodecError, decodeBitmap, encodeBitmap } from '../../src/heap/bitmap-codec.js';
import { PageBitmap } from '../../src/heap/page-bitmap.js';

const bitmapOf = (pageCount: number, runs: [number, number][]) => {
  const bitmap = PageBitmap.create(pageCount);
  for (const [first, count] of runs) {
    const start = first % Math.max(pageCount, 1);
    bitmap.setRange(start, Math.min(count, pageCount - start));
  }
  return bitmap;
};

describe('bitmap codec', () => {
  test('round trip of any bitmap, in whichever form is shorter', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2000 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 300 })), { maxLength: 40 }),
        fc.array(fc.nat(), { maxLength: 200 }),
        (pageCount, runs, singles) => {
          const bitmap = bitmapOf(pageCount, runs);
          for (const p of singles) if (pageCount > 0) bitmap.set(p % pageCount);
          const text = encodeBitmap(bitmap);
          assert.deepEqual([...decodeBitmap(text, pageCount).words], [...bitmap.words]);
          assert.ok(Buffer.from(text, 'base64').length <= 1 + bitmap.words.byteLength);
        },
      ),
      { numRuns: 300 },
    );
  });

  test('a filled 8 GiB heap (2^21 pages, a few runs) travels in a few bytes; alternating bits as the words', () => {
    const filled = bitmapOf(2 ** 21, [
      [0, 1_900_000],
      [1_950_000, 1000],
    ]);
    assert.ok(Buffer.from(encodeBitmap(filled), 'base64').length < 16);
    const alternating = PageBitmap.create(4096);
    for (let p = 0; p < 4096; p += 2) alternating.set(p);
    const bytes = Buffer.from(encodeBitmap(alternating), 'base64');
    assert.equal(bytes[0], 0, 'words form');
    assert.equal(bytes.length, 1 + 512);
    assert.deepEqual([...decodeBitmap(encodeBitmap(alternating), 4096).words], [...alternating.words]);
  });

  test('refuses what does not describe exactly pageCount pages', () => {
    const runs = (...values: number[]) => Buffer.from([1, ...values]).toString('base64');
    const cases: [string, string, number][] = [
      ['empty', '', 10],
      ['unknown form', Buffer.from([7, 0]).toString('base64'), 10],
      ['runs short of the heap', runs(3, 4), 10],
      ['runs past the heap', runs(3, 8), 10],
      ['an empty run after the first', runs(3, 0, 7), 10],
      ['a cut varint', runs(0x80), 10],
      ['a varint of six bytes', runs(0x80, 0x80, 0x80, 0x80, 0x80, 0x01), 10],
      ['no runs at all', runs(), 10],
      ['words of the wrong size', Buffer.from([0, 0xff, 0xff]).toString('base64'), 10],
      ['words with a page past the end', Buffer.from([0, 0, 0x08, 0, 0]).toString('base64'), 10],
    ];
    for (const [what, text, pageCount] of cases) {
      assert.throws(() => decodeBitmap(text, pageCount), BitmapCodecError, what);
    }
    assert.equal(decodeBitmap(runs(3, 7), 10).count(), 7);
  });
});

import assert from 'node:assert/strict';
import { deflateRawSync } from 'node:zlib';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { BitmapCodecError, decodeBitmap, encodeBitmap } from '../../src/heap/bitmap-codec.js';
import { PageBitmap } from '../../src/heap/page-bitmap.js';

describe('bitmap codec', () => {
  test('round trip of any bitmap', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2000 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 300 })), { maxLength: 40 }),
        (pageCount, runs) => {
          const bitmap = PageBitmap.create(pageCount);
          for (const [first, count] of runs) {
            if (pageCount === 0) break;
            const start = first % pageCount;
            bitmap.setRange(start, Math.min(count, pageCount - start));
          }
          assert.deepEqual([...decodeBitmap(encodeBitmap(bitmap), pageCount).words], [...bitmap.words]);
        },
      ),
      { numRuns: 200 },
    );
  });

  test('the empty set is the empty string, at any size', () => {
    for (const pageCount of [0, 1, 33, 2 ** 21]) {
      assert.equal(encodeBitmap(PageBitmap.create(pageCount)), '');
      assert.equal(decodeBitmap('', pageCount).count(), 0);
      assert.equal(decodeBitmap('', pageCount).pageCount, pageCount);
    }
    const one = PageBitmap.create(40);
    one.set(39);
    assert.notEqual(encodeBitmap(one), '');
  });

  test('refuses what does not describe exactly pageCount pages', () => {
    const deflated = (bytes: number[]) => deflateRawSync(Buffer.from(bytes)).toString('base64');
    const cases: [string, string][] = [
      ['not deflate', Buffer.from('not a bitmap').toString('base64')],
      ['too few bytes', deflated([0xff])],
      ['too many bytes', deflated([0, 0, 0, 0, 0, 0, 0, 0])],
      ['a page past the end', deflated([0, 0x08, 0, 0])],
    ];
    for (const [what, text] of cases) assert.throws(() => decodeBitmap(text, 10), BitmapCodecError, what);
    assert.equal(decodeBitmap(deflated([0xff, 0x03, 0, 0]), 10).count(), 10);
  });
});

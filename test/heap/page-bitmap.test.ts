import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { PageBitmap, warmUpBitmapCode } from '../../src/heap/page-bitmap.js';

describe('PageBitmap', () => {
  test('single bits can be set, read and cleared', () => {
    const bitmap = PageBitmap.create(100);
    bitmap.set(0);
    bitmap.set(31);
    bitmap.set(32);
    bitmap.set(99);
    assert.deepEqual(
      [0, 1, 31, 32, 33, 98, 99].map((page) => bitmap.get(page)),
      [true, false, true, true, false, false, true],
    );
    bitmap.clear(31);
    assert.equal(bitmap.get(31), false);
    assert.equal(bitmap.count(), 3);
  });

  test('ranges spanning several words set and clear exactly their pages', () => {
    const bitmap = PageBitmap.create(200);
    bitmap.setRange(5, 100);
    assert.equal(bitmap.count(), 100);
    assert.equal(bitmap.get(4), false);
    assert.equal(bitmap.get(5), true);
    assert.equal(bitmap.get(104), true);
    assert.equal(bitmap.get(105), false);
    bitmap.clearRange(40, 30);
    assert.equal(bitmap.countRange(5, 100), 70);
    assert.equal(bitmap.firstClear(5, 100), 40);
    assert.equal(bitmap.nextSet(40), 70);
    assert.equal(bitmap.nextClear(5), 40);
  });

  test('searches report -1 when nothing matches', () => {
    const bitmap = PageBitmap.create(70);
    assert.equal(bitmap.nextSet(0), -1);
    bitmap.setAll();
    assert.equal(bitmap.nextClear(0), -1, 'bits past pageCount in the last word are not pages');
    assert.equal(bitmap.firstClear(0, 70), -1);
    assert.equal(bitmap.nextSet(70), -1);
    assert.equal(bitmap.count(), 70);
  });

  test('setAll leaves the bits past pageCount clear', () => {
    const bitmap = PageBitmap.create(33);
    bitmap.setAll();
    assert.equal(bitmap.words[0], 0xffffffff);
    assert.equal(bitmap.words[1], 1);
  });

  test('bits past pageCount in the last word are not pages, whatever they hold', () => {
    const bitmap = new PageBitmap(Uint32Array.of(0xffffffe0), 5);
    assert.equal(bitmap.nextSet(0), -1);
    assert.equal(bitmap.nextClear(0), 0);
    assert.equal(bitmap.count(), 0);
    assert.equal(bitmap.countAnd(new PageBitmap(Uint32Array.of(0xffffffff), 5)), 0);
    bitmap.setAll();
    assert.equal(bitmap.nextClear(0), -1);
    assert.ok(bitmap.allSet(0, 5));
  });

  test('a bitmap over a view into other memory writes only inside its words', () => {
    const memory = new Uint32Array(8).fill(0xaaaaaaaa);
    const bitmap = new PageBitmap(memory.subarray(2, 5), 96);
    bitmap.clearAll();
    bitmap.setRange(10, 50);
    assert.deepEqual([...memory.subarray(0, 2), ...memory.subarray(5)], Array(5).fill(0xaaaaaaaa));
    assert.equal(bitmap.count(), 50);
  });

  test('rejects pages and ranges outside the bitmap, and a words array of the wrong size', () => {
    const bitmap = PageBitmap.create(64);
    assert.throws(() => bitmap.get(64), RangeError);
    assert.throws(() => bitmap.set(-1), RangeError);
    assert.throws(() => bitmap.set(1.5), RangeError);
    assert.throws(() => bitmap.setRange(60, 5), RangeError);
    assert.throws(() => bitmap.countRange(0, Number.NaN), RangeError);
    assert.throws(() => new PageBitmap(new Uint32Array(1), 64), RangeError);
  });

  test('behaves like an array of booleans under any sequence of operations', () => {
    type Op =
      | { kind: 'bit'; set: boolean; at: number }
      | { kind: 'range'; set: boolean; at: number; length: number }
      | { kind: 'all'; set: boolean };
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ kind: fc.constant('bit' as const), set: fc.boolean(), at: fc.nat() }),
      fc.record({
        kind: fc.constant('range' as const),
        set: fc.boolean(),
        at: fc.nat(),
        length: fc.nat({ max: 150 }),
      }),
      fc.record({ kind: fc.constant('all' as const), set: fc.boolean() }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300 }), fc.array(op, { maxLength: 40 }), (pageCount, ops) => {
        const bitmap = PageBitmap.create(pageCount);
        const model: boolean[] = Array(pageCount).fill(false);
        for (const o of ops) {
          switch (o.kind) {
            case 'all':
              if (o.set) bitmap.setAll();
              else bitmap.clearAll();
              model.fill(o.set);
              break;
            case 'bit': {
              const page = o.at % pageCount;
              if (o.set) bitmap.set(page);
              else bitmap.clear(page);
              model[page] = o.set;
              break;
            }
            case 'range': {
              const first = o.at % pageCount;
              const count = Math.min(o.length, pageCount - first);
              if (o.set) bitmap.setRange(first, count);
              else bitmap.clearRange(first, count);
              model.fill(o.set, first, first + count);
              break;
            }
          }
        }
        assertMatchesModel(bitmap, model);
      }),
    );
  });
});

test('set operations between two bitmaps match the same operations on arrays of booleans', () => {
  const bitmapAndModel = (pageCount: number, pages: number[]) => {
    const bitmap = PageBitmap.create(pageCount);
    const model: boolean[] = Array(pageCount).fill(false);
    for (const page of pages) {
      bitmap.set(page % pageCount);
      model[page % pageCount] = true;
    }
    return { bitmap, model };
  };
  const asModel = (bitmap: PageBitmap) => [...Array(bitmap.pageCount).keys()].map((page) => bitmap.get(page));
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 200 }),
      fc.array(fc.nat(), { maxLength: 120 }),
      fc.array(fc.nat(), { maxLength: 120 }),
      (pageCount, pagesA, pagesB) => {
        const a = bitmapAndModel(pageCount, pagesA);
        const b = bitmapAndModel(pageCount, pagesB);
        const both = a.model.map((x, i) => x && b.model[i]!);
        assert.equal(a.bitmap.countAnd(b.bitmap), both.filter(Boolean).length);
        assert.equal(
          a.bitmap.isSubsetOf(b.bitmap),
          a.model.every((x, i) => !x || b.model[i]!),
        );
        const cases: [(x: PageBitmap) => void, (x: boolean, y: boolean) => boolean][] = [
          [(x) => x.and(b.bitmap), (x, y) => x && y],
          [(x) => x.andNot(b.bitmap), (x, y) => x && !y],
          [(x) => x.or(b.bitmap), (x, y) => x || y],
          [(x) => x.xor(b.bitmap), (x, y) => x !== y],
          [(x) => x.invert(), (x) => !x],
        ];
        for (const [run, model] of cases) {
          const result = a.bitmap.copy();
          run(result);
          const expected = a.model.map((x, i) => model(x, b.model[i]!));
          assert.deepEqual(asModel(result), expected);
          assert.equal(result.count(), expected.filter(Boolean).length);
        }
      },
    ),
  );
});

function assertMatchesModel(bitmap: PageBitmap, model: boolean[]): void {
  const n = model.length;
  assert.deepEqual(
    model.map((_, page) => bitmap.get(page)),
    model,
  );
  assert.equal(bitmap.count(), model.filter(Boolean).length);
  const runs = [...bitmap.runs()];
  assert.deepEqual(
    runs.flatMap(([first, end]) => [...Array(end - first).keys()].map((i) => first + i)),
    model.flatMap((set, page) => (set ? [page] : [])),
  );
  for (let i = 1; i < runs.length; i++) assert.ok(runs[i]![0] > runs[i - 1]![1], 'runs are maximal');
  for (let from = 0; from <= n; from++) {
    assert.equal(bitmap.nextSet(from), firstIndex(model, from, n, true), `nextSet(${from})`);
    assert.equal(bitmap.nextClear(from), firstIndex(model, from, n, false), `nextClear(${from})`);
  }
  for (let first = 0; first < n; first += 7) {
    for (const count of [0, 1, 2, 31, 32, 33, 64, 100, n - first]) {
      if (first + count > n) continue;
      const slice = model.slice(first, first + count);
      assert.equal(bitmap.countRange(first, count), slice.filter(Boolean).length);
      assert.equal(bitmap.allSet(first, count), slice.every(Boolean), `allSet(${first}, ${count})`);
      assert.equal(bitmap.firstClear(first, count), firstIndex(model, first, first + count, false));
    }
  }
}

function firstIndex(model: boolean[], from: number, end: number, value: boolean): number {
  for (let page = from; page < end; page++) if (model[page] === value) return page;
  return -1;
}

test('warmUpBitmapCode runs on any page count and changes no bitmap of the caller', () => {
  const kept = PageBitmap.create(70);
  kept.setRange(3, 40);
  for (const pageCount of [1, 31, 32, 33, 65_537]) warmUpBitmapCode(pageCount);
  assert.equal(kept.count(), 40);
  assert.throws(() => warmUpBitmapCode(2 ** 32), RangeError);
});

test('setAllBeforeWaiters sets exactly the pages given, keeps the ones already set, and refuses another size', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 300 }),
      fc.array(fc.nat(), { maxLength: 60 }),
      fc.array(fc.nat(), { maxLength: 60 }),
      (pageCount, given, before) => {
        const target = PageBitmap.create(pageCount);
        const pages = PageBitmap.create(pageCount);
        for (const p of before) target.set(p % pageCount);
        for (const p of given) pages.set(p % pageCount);
        const expected = target.copy();
        expected.or(pages);
        target.setAllBeforeWaiters(pages);
        assert.deepEqual([...target.words], [...expected.words]);
      },
    ),
  );
  assert.throws(() => PageBitmap.create(64).setAllBeforeWaiters(PageBitmap.create(65)), RangeError);
});

test('runs goes on past a batch: every other page of 3000 is 1500 runs', () => {
  const bitmap = PageBitmap.create(3000);
  for (let page = 0; page < 3000; page += 2) bitmap.set(page);
  const runs = [...bitmap.runs()];
  assert.equal(runs.length, 1500);
  assert.ok(runs.every(([first, end], i) => first === 2 * i && end === first + 1));
});

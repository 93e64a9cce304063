import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { BitmapKernels } from '../../src/heap/bitmap-kernels.js';

/**
 * What every implementation of the bitmap passes (src/heap/bitmap-kernels.ts) must do, checked
 * against a model that works bit by bit: the same counts and the same words, over an ArrayBuffer or a
 * SharedArrayBuffer, and a refusal of arrays that do not match.
 */
export function bitmapKernelsCompliance(kernels: BitmapKernels): void {
  // Words skewed towards the values bitmaps hold: empty, full, and >= 2^31 (not a Smi in V8).
  const word = fc.oneof(
    fc.constant(0),
    fc.constant(0xffffffff),
    fc.constant(0x80000000),
    fc.nat({ max: 0xffffffff }),
  );
  const pair = fc
    .integer({ min: 0, max: 70 })
    .chain((length) =>
      fc.tuple(
        fc.array(word, { minLength: length, maxLength: length }),
        fc.array(word, { minLength: length, maxLength: length }),
      ),
    );
  const words = (values: number[], shared: boolean): Uint32Array => {
    const array = new Uint32Array(
      shared ? new SharedArrayBuffer(values.length * 4) : new ArrayBuffer(values.length * 4),
    );
    array.set(values);
    return array;
  };
  const bits = (value: number) => [...Array(32).keys()].filter((bit) => ((value >>> bit) & 1) === 1).length;
  const modelCount = (values: number[]) => values.reduce((sum, value) => sum + bits(value), 0);
  const bitwise = (a: number[], b: number[], op: (x: number, y: number) => number) =>
    a.map((x, i) => op(x, b[i]!) >>> 0);

  test(`${kernels.name}: count and countAnd count the set bits`, () => {
    fc.assert(
      fc.property(pair, fc.boolean(), ([a, b], shared) => {
        assert.equal(kernels.count(words(a, shared)), modelCount(a));
        assert.equal(
          kernels.countAnd(words(a, shared), words(b, !shared)),
          modelCount(bitwise(a, b, (x, y) => x & y)),
        );
      }),
    );
  });

  test(`${kernels.name}: and, andNot, or, xor and invert change only the first array, word by word`, () => {
    const cases: [string, (a: Uint32Array, b: Uint32Array) => void, (x: number, y: number) => number][] = [
      ['and', kernels.and, (x, y) => x & y],
      ['andNot', kernels.andNot, (x, y) => x & ~y],
      ['or', kernels.or, (x, y) => x | y],
      ['xor', kernels.xor, (x, y) => x ^ y],
      ['invert', (a) => kernels.invert(a), (x) => ~x],
    ];
    fc.assert(
      fc.property(pair, fc.boolean(), ([a, b], shared) => {
        for (const [name, run, model] of cases) {
          const target = words(a, shared);
          const other = words(b, !shared);
          run(target, other);
          assert.deepEqual([...target], bitwise(a, b, model), name);
          assert.deepEqual([...other], b, `${name} left its second array alone`);
        }
      }),
    );
  });

  test(`${kernels.name}: isSubsetOf is true exactly when no bit of the first is missing from the second`, () => {
    fc.assert(
      fc.property(pair, ([a, b]) => {
        const expected = a.every((x, i) => (x & ~b[i]!) === 0);
        assert.equal(kernels.isSubsetOf(words(a, false), words(b, true)), expected);
        assert.equal(
          kernels.isSubsetOf(
            words(a, true),
            words(
              bitwise(a, b, (x, y) => x | y),
              false,
            ),
          ),
          true,
        );
      }),
    );
  });

  test(`${kernels.name}: publishBits ors into a shared array with atomics a waiting thread can see`, () => {
    fc.assert(
      fc.property(pair, ([a, b]) => {
        const shared = words(a, true);
        kernels.publishBits(shared, words(b, false));
        const atomic = new Int32Array(shared.buffer);
        assert.deepEqual(
          a.map((_, i) => Atomics.load(atomic, i) >>> 0),
          bitwise(a, b, (x, y) => x | y),
        );
      }),
    );
  });

  test(`${kernels.name}: findRuns gives the maximal runs of set bits below pageCount, resuming where it stopped`, () => {
    const modelRuns = (values: number[], from: number, pageCount: number) => {
      const runs: [number, number][] = [];
      for (let page = from; page < pageCount; page++) {
        if (((values[page >>> 5]! >>> (page & 31)) & 1) === 0) continue;
        if (runs.length > 0 && runs[runs.length - 1]![1] === page) runs[runs.length - 1]![1] = page + 1;
        else runs.push([page, page + 1]);
      }
      return runs;
    };
    fc.assert(
      fc.property(
        fc.array(word, { maxLength: 12 }),
        fc.nat(),
        fc.nat(),
        fc.integer({ min: 1, max: 4 }),
        (values, fromSeed, countSeed, pairs) => {
          const pageCount = countSeed % (values.length * 32 + 1);
          const from = fromSeed % (pageCount + 1);
          const array = words(values, false);
          const out = new Uint32Array(pairs * 2);
          const found: [number, number][] = [];
          for (let at = from, n = -1; n !== 0;) {
            n = kernels.findRuns(array, at, pageCount, out);
            assert.ok(n <= pairs);
            for (let i = 0; i < n; i++) found.push([out[2 * i]!, out[2 * i + 1]!]);
            if (n > 0) at = out[2 * n - 1]!;
            if (n < pairs) break;
          }
          // A run cut by `from` starts at `from`: the model sees only bits from there on.
          assert.deepEqual(found, modelRuns(values, from, pageCount));
        },
      ),
    );
    assert.throws(() => kernels.findRuns(words([1], false), 0, 33, new Uint32Array(2)), TypeError);
  });

  test(`${kernels.name}: arrays of different lengths are refused, and nothing is changed`, () => {
    const a = words([1, 2, 3], false);
    const b = words([0xffffffff, 0xffffffff], false);
    for (const run of [
      kernels.and,
      kernels.andNot,
      kernels.or,
      kernels.xor,
      kernels.countAnd,
      kernels.isSubsetOf,
    ]) {
      assert.throws(() => run(a, b), TypeError);
    }
    assert.throws(() => kernels.publishBits(words([0, 0, 0], true), b), TypeError);
    assert.deepEqual([...a], [1, 2, 3]);
  });
}

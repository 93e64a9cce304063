import { type Chosen, chooseImplementation } from '../native/addon-path.js';
import { type BitmapAddon, loadBitmapAddon } from '../native/bitmap.js';

/**
 * The whole-bitmap passes under PageBitmap, one call per pass over the words (arrays of equal
 * length). Two implementations with one compliance suite (test/heap/bitmap-kernels-compliance.ts):
 * the page-bitmap addon, whose cost does not depend on what V8 has compiled (a blackout's passes run
 * a few times per migration, too rarely to stay compiled: docs/decisions.md, "Native bitmap passes"),
 * and JavaScript, the fallback.
 */
export interface BitmapKernels extends BitmapAddon {
  readonly name: 'native' | 'javascript';
}

/** Index of the lowest set bit of a non-zero word. */
export function lowestBit(word: number): number {
  return 31 - Math.clz32(word & -word);
}

/** Number of set bits of a word. */
export function popcount(word: number): number {
  let v = word - ((word >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24;
}

function sameLength(a: Uint32Array, b: Uint32Array): void {
  if (a.length !== b.length) throw new TypeError('expected two Uint32Arrays of the same length');
}

/** The first set (or, with `flip` = ~0, clear) bit at or after `from` among the words, or -1. */
export function nextBit(a: Uint32Array, from: number, flip: number): number {
  let w = from >>> 5;
  if (w >= a.length) return -1;
  let bits = (a[w]! ^ flip) & (~0 << (from & 31));
  while (bits === 0) {
    if (++w === a.length) return -1;
    bits = a[w]! ^ flip;
  }
  return w * 32 + lowestBit(bits);
}

export const javascriptBitmapKernels: BitmapKernels = {
  name: 'javascript',
  count(a) {
    let total = 0;
    for (let w = 0; w < a.length; w++) total += popcount(a[w]!);
    return total;
  },
  countAnd(a, b) {
    sameLength(a, b);
    let total = 0;
    for (let w = 0; w < a.length; w++) total += popcount(a[w]! & b[w]!);
    return total;
  },
  and(a, b) {
    sameLength(a, b);
    for (let w = 0; w < a.length; w++) a[w]! &= b[w]!;
  },
  andNot(a, b) {
    sameLength(a, b);
    for (let w = 0; w < a.length; w++) a[w]! &= ~b[w]!;
  },
  or(a, b) {
    sameLength(a, b);
    for (let w = 0; w < a.length; w++) a[w]! |= b[w]!;
  },
  xor(a, b) {
    sameLength(a, b);
    for (let w = 0; w < a.length; w++) a[w]! ^= b[w]!;
  },
  invert(a) {
    for (let w = 0; w < a.length; w++) a[w] = ~a[w]!;
  },
  isSubsetOf(a, b) {
    sameLength(a, b);
    for (let w = 0; w < a.length; w++) if ((a[w]! & ~b[w]!) !== 0) return false;
    return true;
  },
  publishBits(shared, bits) {
    sameLength(shared, bits);
    const atomic = new Int32Array(shared.buffer, shared.byteOffset, shared.length);
    for (let w = 0; w < bits.length; w++) {
      const mask = bits[w]!;
      if (mask !== 0) Atomics.or(atomic, w, mask | 0);
    }
  },
  findRuns(a, from, pageCount, out) {
    if (pageCount > a.length * 32) throw new TypeError('pageCount is past the end of the array');
    let written = 0;
    let page = from;
    while (written + 2 <= out.length && page < pageCount) {
      const first = nextBit(a, page, 0);
      if (first === -1 || first >= pageCount) break;
      const clear = nextBit(a, first, ~0);
      const end = clear === -1 ? pageCount : Math.min(clear, pageCount);
      out[written++] = first;
      out[written++] = end;
      page = end;
    }
    return written / 2;
  },
};

/** The addon's functions themselves, without a JavaScript frame around each (cold, that costs too). */
export function nativeBitmapKernels(addon: BitmapAddon): BitmapKernels {
  const { count, countAnd, and, andNot, or, xor, invert, isSubsetOf, publishBits, findRuns } = addon;
  return { name: 'native', count, countAnd, and, andNot, or, xor, invert, isSubsetOf, publishBits, findRuns };
}

let chosen: Chosen<BitmapKernels> | null = null;

/**
 * The bitmap passes of this thread: the addon if it loads, JavaScript otherwise or when
 * CONSTMIG_BITMAP=js (for comparisons and to test the fallback).
 */
export function bitmapKernels(): BitmapKernels {
  return chooseBitmapKernels().impl;
}

/** Which bitmap passes this thread uses, and why. */
export function bitmapKernelsChoice(): { name: BitmapKernels['name']; why: string } {
  const { impl, why } = chooseBitmapKernels();
  return { name: impl.name, why };
}

function chooseBitmapKernels(): Chosen<BitmapKernels> {
  chosen ??= chooseImplementation({
    forceEnv: 'CONSTMIG_BITMAP',
    forceValue: 'js',
    load: loadBitmapAddon,
    native: nativeBitmapKernels,
    fallback: javascriptBitmapKernels,
    label: 'page-bitmap',
  });
  return chosen;
}

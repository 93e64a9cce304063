import { type AddonLoad, loadAddon } from './addon-path.js';

/**
 * Loader for the page-bitmap addon (native/bitmap, built with the others on `npm ci`): the blackout's
 * whole-bitmap passes in C++. Optional: without it src/heap/bitmap-kernels.ts runs them in JavaScript,
 * with the same results.
 */

const ADDON_FILE = 'constmig_bitmap.node';

/** The addon's exports (native/bitmap/bitmap.cc); every pair of arrays must be of the same length. */
export interface BitmapAddon {
  count(a: Uint32Array): number;
  countAnd(a: Uint32Array, b: Uint32Array): number;
  and(a: Uint32Array, b: Uint32Array): void;
  andNot(a: Uint32Array, b: Uint32Array): void;
  or(a: Uint32Array, b: Uint32Array): void;
  xor(a: Uint32Array, b: Uint32Array): void;
  invert(a: Uint32Array): void;
  isSubsetOf(a: Uint32Array, b: Uint32Array): boolean;
  /** shared |= bits with an atomic or per word that changes; wakes nobody. */
  publishBits(shared: Uint32Array, bits: Uint32Array): void;
  /**
   * The maximal runs of set bits among [from, pageCount), in order, as (first, end) pairs in `out`,
   * as many as fit; returns how many. Runs are whole: the caller resumes at the last end.
   */
  findRuns(a: Uint32Array, from: number, pageCount: number, out: Uint32Array): number;
}

let loaded: AddonLoad<BitmapAddon> | null = null;

/** Loads the addon once per thread; `{ ok: false, reason }` says why it is not there. */
export function loadBitmapAddon(): AddonLoad<BitmapAddon> {
  loaded ??= loadAddon<BitmapAddon>(ADDON_FILE, 'page-bitmap', 'CONSTMIG_BITMAP_ADDON');
  return loaded;
}

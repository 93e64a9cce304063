import { PAGE_SIZE } from '../../src/heap/constants.js';
import type { PageBitmap } from '../../src/heap/page-bitmap.js';
import type { SecureHeap } from '../../src/heap/secure-heap.js';

/** Deterministic bytes that differ between ids everywhere (xorshift32 seeded by the id). */
export function pattern(id: number, size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  let state = (Math.imul(id, 0x9e3779b9) + 1) | 0 || 1;
  for (let i = 0; i < size; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    bytes[i] = state & 0xff;
  }
  return bytes;
}

/** What the migration agent does: copy every page set in `pages` from one heap to the other, raw. */
export function copyPages(from: SecureHeap, to: SecureHeap, pages: PageBitmap): number {
  let copied = 0;
  for (let page = pages.nextSet(0); page !== -1; page = pages.nextSet(page + 1)) {
    to.rawPages(page, 1).set(from.rawPages(page, 1));
    copied++;
  }
  return copied;
}

/** Pages spanned by a block of `size` bytes at `addr`. */
export function spannedPages(addr: number, size: number): { first: number; count: number } {
  const first = Math.floor(addr / PAGE_SIZE);
  return { first, count: Math.floor((addr + Math.max(size, 1) - 1) / PAGE_SIZE) - first + 1 };
}

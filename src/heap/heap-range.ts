import { PAGE_SIZE } from './constants.js';
import type { PageBitmap } from './page-bitmap.js';

/** Heap bytes [addr, addr + bytes). */
export interface HeapRange {
  addr: number;
  bytes: number;
}

/** Marks in `pages` every page that one of `ranges` touches (empty ranges touch none). */
export function markPagesOf(ranges: Iterable<HeapRange>, pages: PageBitmap): void {
  for (const { addr, bytes } of ranges) {
    if (!(Number.isSafeInteger(addr) && Number.isSafeInteger(bytes) && addr >= 0 && bytes >= 0)) {
      throw new RangeError(`invalid heap range ${addr}+${bytes}`);
    }
    if (bytes === 0) continue;
    const first = Math.floor(addr / PAGE_SIZE);
    const last = Math.floor((addr + bytes - 1) / PAGE_SIZE);
    if (last >= pages.pageCount) {
      throw new RangeError(`heap range ${addr}+${bytes} ends past page ${pages.pageCount - 1}`);
    }
    pages.setRange(first, last - first + 1);
  }
}

import type { PageBitmap } from '../heap/page-bitmap.js';
import type { SecureHeap } from '../heap/secure-heap.js';

/**
 * Pages travel in extents: runs of contiguous set pages, cut at a segment boundary and at a maximum
 * length. One AES-GCM call per extent instead of per page is what makes sealing run at GB/s
 * (DESIGN.md §8: 64 KiB records are 3-4x faster than 4 KiB ones). Stop-and-copy and pre-copy rounds
 * send 1 MiB extents: each frame also costs a cipher context, a header, a write and a read (tens of
 * µs each on a busy 2-vCPU machine), a quarter as many times as with 256 KiB ones.
 */
export const DEFAULT_EXTENT_PAGES = 256;

/**
 * The post-copy push keeps 256 KiB extents: a demand fetch waits for the bulk frame the source is
 * sealing and the destination is opening, and on a shared core each takes ~0.2 ms per 256 KiB.
 */
export const PUSH_EXTENT_PAGES = 64;

export interface Extent {
  first: number;
  count: number;
}

export function extentsOf(
  pages: PageBitmap,
  heap: SecureHeap,
  maxPages = DEFAULT_EXTENT_PAGES,
): Iterable<Extent> {
  return heap.runs(pages, maxPages);
}

import { PAGE_SIZE } from './constants.js';
import { bitmapWords, PageBitmap } from './page-bitmap.js';
import type { SecureHeap } from './secure-heap.js';
import { SIZE_CLASSES } from './size-classes.js';

/**
 * Where the allocator keeps its state inside the heap. Page 0 is the header; the `allocated` bitmap
 * (one bit per page) and the page table (one u32 per page) follow it. All of it is ordinary heap
 * memory, so migrating the allocated pages migrates the allocator.
 */
export const MAGIC = Buffer.from('CMHEAP01', 'latin1');
export const FORMAT_VERSION = 1;
export const ROOT_COUNT = 8;

/** Header fields: byte offsets in page 0. Counters are u64 unless noted. */
export const Header = {
  magic: 0,
  /** u32 */
  version: 8,
  pageCount: 16,
  metadataPages: 24,
  bitmapAddr: 32,
  pageTableAddr: 40,
  /** No page below this one is free: first-fit searches start here. */
  runHint: 48,
  allocatedPages: 56,
  liveBytes: 64,
  roots: 128,
  /** Per size class: free-list head, bump pointer into the current slab page, chunks left there. */
  classes: 256,
} as const;

export const CLASS_STATE_BYTES = 24;
export const ClassState = { freeHead: 0, bumpNext: 8, bumpLeft: 16 } as const;

if (Header.classes + SIZE_CLASSES.length * CLASS_STATE_BYTES > PAGE_SIZE)
  throw new Error('allocator header overflows page 0');

/**
 * Page table entries (u32 per page). Only the first page of a block has a non-zero entry, so a free of
 * any other address is caught: run interiors, metadata and free pages all read 0.
 */
export const PageEntry = {
  kindShift: 30,
  slab: 1,
  run: 2,
  payloadMask: 0x3fffffff,
} as const;

export function slabEntry(sizeClass: number): number {
  return ((PageEntry.slab << PageEntry.kindShift) | sizeClass) >>> 0;
}

export function runEntry(pages: number): number {
  return ((PageEntry.run << PageEntry.kindShift) | pages) >>> 0;
}

export interface HeapLayout {
  pageCount: number;
  metadataPages: number;
  bitmapAddr: number;
  pageTableAddr: number;
}

export function layoutFor(pageCount: number): HeapLayout {
  const bitmapPages = Math.ceil((bitmapWords(pageCount) * 4) / PAGE_SIZE);
  const pageTablePages = Math.ceil((pageCount * 4) / PAGE_SIZE);
  return {
    pageCount,
    metadataPages: 1 + bitmapPages + pageTablePages,
    bitmapAddr: PAGE_SIZE,
    pageTableAddr: (1 + bitmapPages) * PAGE_SIZE,
  };
}

/**
 * The `allocated` bitmap of a formatted heap, read in place without present checks or dirty marking:
 * for the migration agent, which reads pages the application thread may be changing. Rather than
 * trusting a header that might be torn, the layout is derived from the page count.
 */
export function allocatedBitmapOf(heap: SecureHeap): PageBitmap {
  const { bitmapAddr } = layoutFor(heap.pageCount);
  const words = bitmapWords(heap.pageCount);
  const bytes = heap.rawPages(bitmapAddr / PAGE_SIZE, Math.ceil((words * 4) / PAGE_SIZE));
  return new PageBitmap(new Uint32Array(bytes.buffer, bytes.byteOffset, words), heap.pageCount);
}

import { HeapAllocator } from '../../src/heap/allocator.js';
import type { PageBitmap } from '../../src/heap/page-bitmap.js';
import { SecureHeap } from '../../src/heap/secure-heap.js';

export function freshHeap(bytes: number): { heap: SecureHeap; allocator: HeapAllocator } {
  const heap = SecureHeap.create(bytes);
  return { heap, allocator: HeapAllocator.format(heap) };
}

/**
 * What a migration does to the heap: only the allocated pages are copied, raw, into a fresh heap of
 * the same size, and the allocator is attached there. Anything kept outside the heap is lost.
 */
export function copyAllocatedPages(
  source: SecureHeap,
  allocator: HeapAllocator,
): { heap: SecureHeap; allocator: HeapAllocator; pagesCopied: number } {
  const heap = SecureHeap.create(source.byteLength);
  const allocated = allocator.allocated;
  let pagesCopied = 0;
  for (let first = allocated.nextSet(0); first !== -1;) {
    const clear = allocated.nextClear(first);
    const end = Math.min(clear === -1 ? source.pageCount : clear, source.segmentEndPage(first));
    heap.rawPages(first, end - first).set(source.rawPages(first, end - first));
    pagesCopied += end - first;
    first = end >= source.pageCount ? -1 : allocated.nextSet(end);
  }
  return { heap, allocator: HeapAllocator.attach(heap), pagesCopied };
}

/**
 * What a post-copy destination holds when it restores the application: only `pages` (restorePagesOf,
 * what the source sends before START), copied raw; every other page is missing, and reading one throws.
 */
export function copyOnlyPages(source: SecureHeap, pages: PageBitmap): SecureHeap {
  const heap = SecureHeap.createIncoming(source.byteLength, 'present-checks');
  for (const { first, count } of source.runs(pages)) {
    heap.rawPages(first, count).set(source.rawPages(first, count));
    heap.present.publishRange(first, count);
  }
  return heap;
}

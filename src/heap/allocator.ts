import {
  CLASS_STATE_BYTES,
  ClassState,
  FORMAT_VERSION,
  Header,
  type HeapLayout,
  layoutFor,
  MAGIC,
  PageEntry,
  ROOT_COUNT,
  runEntry,
  slabEntry,
} from './allocator-layout.js';
import { PAGE_SIZE } from './constants.js';
import { HeapCorruptionError, HeapFormatError, HeapFullError } from './errors.js';
import type { HeapRange } from './heap-range.js';
import { bitmapWords, PageBitmap } from './page-bitmap.js';
import type { SecureHeap } from './secure-heap.js';
import { CHUNKS_PER_PAGE, MAX_CHUNK_BYTES, SIZE_CLASSES, sizeClassOf } from './size-classes.js';

export { HeapCorruptionError, HeapFormatError, HeapFullError } from './errors.js';

/** Largest single allocation: far below a segment, so a run always fits inside one. */
export const MAX_ALLOCATION_BYTES = 256 * 2 ** 20;

/**
 * A free chunk carries this mark at offset 8, next to the free-list link at offset 0. Finding it on
 * free means a double free; missing it on allocation means the chunk was written after it was freed.
 * The mark is mixed with the chunk address so that a live chunk holding a copy of a freed chunk's bytes
 * is not taken for free. Best effort: live data that happens to equal the mark is misread.
 */
const FREE_MARK = 0x5afe_f4ee;

function freeMark(chunk: number): number {
  return (FREE_MARK ^ (chunk / 16)) >>> 0;
}

export interface HeapStats {
  pageCount: number;
  /** Metadata pages plus pages of live runs and slabs. */
  allocatedPages: number;
  metadataPages: number;
  /** Sum of the usable sizes of live blocks. */
  liveBytes: number;
}

/**
 * Allocator whose every piece of state lives inside the heap (see allocator-layout.ts): the header,
 * the `allocated` bitmap and the page table. The fields of this object are only the layout, re-derived
 * by `attach`, and a view of the bitmap, so the destination of a migration continues exactly where the
 * source stopped. Metadata is written through the heap's accessors, so it is present-checked and
 * dirty-tracked like any page.
 *
 * Small requests come from one-page slabs per size class (free lists threaded through free chunks,
 * bump allocation in the newest slab); slab pages stay allocated once used, even when all their chunks
 * are free. Larger requests get first-fit runs of whole pages inside one segment, released on free.
 */
export class HeapAllocator {
  /** Null on an attached heap until first used: see `allocated`. */
  private bitmap: PageBitmap | null = null;

  private constructor(
    private readonly heap: SecureHeap,
    private readonly layout: HeapLayout,
  ) {}

  /**
   * A page is set iff it holds allocator metadata, a slab, or a live run. It is a view into heap
   * memory: only set pages need to migrate. On an attached heap its pages are required on first use,
   * not by `attach`: a post-copy destination restores the application and serves before they arrive,
   * as they are a quarter of a MiB at 8 GiB (docs/decisions.md, "The blackout carries no heap-sized
   * data").
   */
  get allocated(): PageBitmap {
    return this.bitmap ?? this.attachBitmap();
  }

  /** Writes a fresh allocator into the heap: header, empty bitmap and page table, nothing live. */
  static format(heap: SecureHeap): HeapAllocator {
    const layout = layoutFor(heap.pageCount);
    heap.mutableBytes(0, layout.metadataPages * PAGE_SIZE).fill(0);
    heap.write(Header.magic, MAGIC);
    heap.writeU32(Header.version, FORMAT_VERSION);
    heap.writeU64(Header.pageCount, layout.pageCount);
    heap.writeU64(Header.metadataPages, layout.metadataPages);
    heap.writeU64(Header.bitmapAddr, layout.bitmapAddr);
    heap.writeU64(Header.pageTableAddr, layout.pageTableAddr);
    heap.writeU64(Header.runHint, layout.metadataPages);
    heap.writeU64(Header.allocatedPages, layout.metadataPages);
    const allocator = new HeapAllocator(heap, layout);
    allocator.bitmap = allocator.bitmapView();
    allocator.bitmap.setRange(0, layout.metadataPages);
    return allocator;
  }

  /**
   * Re-attaches to an allocator that arrived with the heap pages; validates the header, which is all
   * it reads. The `allocated` bitmap is checked against the header's count when first used.
   */
  static attach(heap: SecureHeap): HeapAllocator {
    if (!heap.equals(Header.magic, MAGIC))
      throw new HeapFormatError('heap holds no allocator: magic CMHEAP01 not found');
    const version = heap.readU32(Header.version);
    if (version !== FORMAT_VERSION) {
      throw new HeapFormatError(
        `heap format version ${version} is not supported (expected ${FORMAT_VERSION})`,
      );
    }
    const pageCount = heap.readU64(Header.pageCount);
    if (pageCount !== heap.pageCount) {
      throw new HeapFormatError(`heap was formatted for ${pageCount} pages but has ${heap.pageCount}`);
    }
    const layout = layoutFor(pageCount);
    if (
      heap.readU64(Header.metadataPages) !== layout.metadataPages ||
      heap.readU64(Header.bitmapAddr) !== layout.bitmapAddr ||
      heap.readU64(Header.pageTableAddr) !== layout.pageTableAddr
    ) {
      throw new HeapFormatError('heap metadata layout does not match its page count');
    }
    return new HeapAllocator(heap, layout);
  }

  /** The heap bytes `attach` reads: the header, page 0. */
  static attachReads(): HeapRange {
    return { addr: 0, bytes: PAGE_SIZE };
  }

  /** An 8-byte aligned address (never 0) of at least `size` bytes; the contents are unspecified. */
  alloc(size: number): number {
    if (!(Number.isInteger(size) && size >= 0 && size <= MAX_ALLOCATION_BYTES)) {
      throw new RangeError(`cannot allocate ${size} bytes: sizes run from 0 to ${MAX_ALLOCATION_BYTES}`);
    }
    if (size <= MAX_CHUNK_BYTES) return this.allocChunk(sizeClassOf(size), size);
    const pages = Math.ceil(size / PAGE_SIZE);
    const first = this.takePages(pages, size);
    this.setPageEntry(first, runEntry(pages));
    this.addLiveBytes(pages * PAGE_SIZE);
    return first * PAGE_SIZE;
  }

  free(addr: number): void {
    const entry = this.liveBlockEntry(addr, 'free');
    const page = Math.floor(addr / PAGE_SIZE);
    if (entry >>> PageEntry.kindShift === PageEntry.slab) {
      this.freeChunk(addr, entry & PageEntry.payloadMask);
      return;
    }
    const pages = entry & PageEntry.payloadMask;
    this.setPageEntry(page, 0);
    this.claimBitmapWords(page, pages);
    this.allocated.clearRange(page, pages);
    this.heap.writeU64(Header.allocatedPages, this.heap.readU64(Header.allocatedPages) - pages);
    this.addLiveBytes(-pages * PAGE_SIZE);
    if (page < this.heap.readU64(Header.runHint)) this.heap.writeU64(Header.runHint, page);
  }

  /** Bytes usable at `addr`, which must be the start of a live block. */
  usableSize(addr: number): number {
    const entry = this.liveBlockEntry(addr, 'usableSize');
    const payload = entry & PageEntry.payloadMask;
    return entry >>> PageEntry.kindShift === PageEntry.slab ? SIZE_CLASSES[payload]! : payload * PAGE_SIZE;
  }

  getRoot(index: number): number {
    return this.heap.readU64(rootAddr(index));
  }

  setRoot(index: number, value: number): void {
    this.heap.writeU64(rootAddr(index), value);
  }

  stats(): HeapStats {
    return {
      pageCount: this.layout.pageCount,
      allocatedPages: this.heap.readU64(Header.allocatedPages),
      metadataPages: this.layout.metadataPages,
      liveBytes: this.heap.readU64(Header.liveBytes),
    };
  }

  private allocChunk(sizeClass: number, size: number): number {
    const heap = this.heap;
    const state = Header.classes + sizeClass * CLASS_STATE_BYTES;
    const chunkSize = SIZE_CLASSES[sizeClass]!;
    const head = heap.readU64(state + ClassState.freeHead);
    let chunk: number;
    if (head !== 0) {
      if (!(head % 16 === 0 && head < heap.byteLength && heap.readU32(head + 8) === freeMark(head))) {
        throw new HeapCorruptionError(`free chunk at ${head} was overwritten (use after free?)`);
      }
      heap.writeU64(state + ClassState.freeHead, heap.readU64(head));
      chunk = head;
    } else {
      const left = heap.readU64(state + ClassState.bumpLeft);
      if (left === 0) {
        const page = this.takePages(1, size);
        this.setPageEntry(page, slabEntry(sizeClass));
        chunk = page * PAGE_SIZE;
        heap.writeU64(state + ClassState.bumpLeft, CHUNKS_PER_PAGE[sizeClass]! - 1);
      } else {
        chunk = heap.readU64(state + ClassState.bumpNext);
        heap.writeU64(state + ClassState.bumpLeft, left - 1);
      }
      heap.writeU64(state + ClassState.bumpNext, chunk + chunkSize);
    }
    // A live chunk must not carry the mark, whatever the page held before.
    heap.writeU32(chunk + 8, 0);
    this.addLiveBytes(chunkSize);
    return chunk;
  }

  private freeChunk(chunk: number, sizeClass: number): void {
    const heap = this.heap;
    const state = Header.classes + sizeClass * CLASS_STATE_BYTES;
    heap.writeU64(chunk, heap.readU64(state + ClassState.freeHead));
    heap.writeU32(chunk + 8, freeMark(chunk));
    heap.writeU64(state + ClassState.freeHead, chunk);
    this.addLiveBytes(-SIZE_CLASSES[sizeClass]!);
  }

  /**
   * The page table entry of the live block starting at `addr`; throws HeapCorruptionError for any
   * other address (block interiors, free pages, metadata, free or never-handed-out chunks).
   */
  private liveBlockEntry(addr: number, action: string): number {
    const heap = this.heap;
    if (!(
      Number.isInteger(addr) &&
      addr >= this.layout.metadataPages * PAGE_SIZE &&
      addr < heap.byteLength
    )) {
      throw new HeapCorruptionError(`${action} of ${addr}: not an address of a heap block`);
    }
    const page = Math.floor(addr / PAGE_SIZE);
    const entry = heap.readU32(this.layout.pageTableAddr + page * 4);
    const kind = entry >>> PageEntry.kindShift;
    const offset = addr - page * PAGE_SIZE;
    if (kind === PageEntry.run && offset === 0) return entry;
    if (kind !== PageEntry.slab) {
      throw new HeapCorruptionError(`${action} of ${addr}: not the start of a live block (double free?)`);
    }
    const sizeClass = entry & PageEntry.payloadMask;
    const chunkSize = SIZE_CLASSES[sizeClass]!;
    if (offset % chunkSize !== 0 || offset / chunkSize >= CHUNKS_PER_PAGE[sizeClass]!) {
      throw new HeapCorruptionError(`${action} of ${addr}: not the start of a ${chunkSize}-byte chunk`);
    }
    const state = Header.classes + sizeClass * CLASS_STATE_BYTES;
    // In the slab being bump-allocated, chunks at or after the bump pointer were never handed out.
    const bumpNext = heap.readU64(state + ClassState.bumpNext);
    if (
      heap.readU64(state + ClassState.bumpLeft) > 0 &&
      addr >= bumpNext &&
      Math.floor(bumpNext / PAGE_SIZE) === page
    ) {
      throw new HeapCorruptionError(`${action} of ${addr}: chunk was never allocated`);
    }
    if (heap.readU32(addr + 8) === freeMark(addr)) {
      throw new HeapCorruptionError(`${action} of ${addr}: chunk is already free (double free?)`);
    }
    return entry;
  }

  /** First fit for `pages` free pages inside one segment; marks them allocated. */
  private takePages(pages: number, requestBytes: number): number {
    const heap = this.heap;
    const allocated = this.allocated;
    const hint = heap.readU64(Header.runHint);
    const lowestFree = allocated.nextClear(hint);
    let first = lowestFree;
    while (first !== -1) {
      const segmentEnd = heap.segmentEndPage(first);
      if (first + pages > segmentEnd) {
        first = allocated.nextClear(segmentEnd);
      } else if (allocated.countRange(first, pages) !== 0) {
        first = allocated.nextClear(allocated.nextSet(first));
      } else {
        break;
      }
    }
    const inUse = heap.readU64(Header.allocatedPages);
    if (first === -1) {
      throw new HeapFullError(
        `heap full: cannot allocate ${requestBytes} bytes (${inUse} of ${this.layout.pageCount} pages in use)`,
      );
    }
    this.claimBitmapWords(first, pages);
    allocated.setRange(first, pages);
    heap.writeU64(Header.allocatedPages, inUse + pages);
    // Keep the hint at the lowest free page as far as this search knows, so the next one skips less.
    const nextHint = first === lowestFree ? first + pages : lowestFree;
    if (nextHint !== hint) heap.writeU64(Header.runHint, nextHint);
    return first;
  }

  private setPageEntry(page: number, entry: number): void {
    this.heap.writeU32(this.layout.pageTableAddr + page * 4, entry);
  }

  /** The bitmap read in place; the present check happens here, once, for all of it. */
  private bitmapView(): PageBitmap {
    const words = bitmapWords(this.layout.pageCount);
    const bytes = this.heap.bytes(this.layout.bitmapAddr, words * 4);
    return new PageBitmap(new Uint32Array(bytes.buffer, bytes.byteOffset, words), this.layout.pageCount);
  }

  private attachBitmap(): PageBitmap {
    const bitmap = this.bitmapView();
    const counted = bitmap.count();
    const recorded = this.heap.readU64(Header.allocatedPages);
    if (counted !== recorded) {
      throw new HeapFormatError(`allocated bitmap holds ${counted} pages, the header says ${recorded}`);
    }
    this.bitmap = bitmap;
    return bitmap;
  }

  /**
   * The bitmap is changed through its own view, not the heap accessors: present-check and dirty the
   * words that cover these pages before they change.
   */
  private claimBitmapWords(first: number, pages: number): void {
    const firstWordAddr = this.layout.bitmapAddr + (first >>> 5) * 4;
    const endWordAddr = this.layout.bitmapAddr + (((first + pages - 1) >>> 5) + 1) * 4;
    this.heap.mutableBytes(firstWordAddr, endWordAddr - firstWordAddr);
  }

  private addLiveBytes(delta: number): void {
    this.heap.writeU64(Header.liveBytes, this.heap.readU64(Header.liveBytes) + delta);
  }
}

function rootAddr(index: number): number {
  if (!(Number.isInteger(index) && index >= 0 && index < ROOT_COUNT)) {
    throw new RangeError(`root index ${index} is outside 0..${ROOT_COUNT - 1}`);
  }
  return Header.roots + index * 8;
}

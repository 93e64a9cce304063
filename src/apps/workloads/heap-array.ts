import { type HeapAllocator, MAX_ALLOCATION_BYTES } from '../../heap/allocator.js';
import type { HeapRange } from '../../heap/heap-range.js';
import type { SecureHeap } from '../../heap/secure-heap.js';

/** Elements per chunk: 64 MiB blocks, well under the allocator's largest block and within a segment. */
export const CHUNK_SHIFT = 24;
const CHUNK_ELEMENTS = 2 ** CHUNK_SHIFT;
const CHUNK_MASK = CHUNK_ELEMENTS - 1;
const HEADER_BYTES = 16;

/**
 * A u32 array of any length in the SecureHeap, made of 64 MiB chunks (the allocator's blocks are
 * bounded, and a multi-GiB array would not fit one). Its directory block holds the length and the
 * chunks' addresses, so the array is found again from one address after a migration. Every access
 * goes through the heap's accessors: present test (Access Tracker) and dirty marking (pre-copy).
 */
export class HeapU32Array {
  private constructor(
    private readonly heap: SecureHeap,
    readonly address: number,
    readonly length: number,
    private readonly chunks: readonly number[],
  ) {}

  /** Bytes an array of `length` elements takes, directory included (for sizing a fill). */
  static bytesFor(length: number): number {
    return length * 4 + HEADER_BYTES + Math.ceil(length / CHUNK_ELEMENTS) * 8;
  }

  /** A new array of zeroes (freshly allocated heap memory reads as zero). */
  static create(heap: SecureHeap, allocator: HeapAllocator, length: number): HeapU32Array {
    if (!(Number.isSafeInteger(length) && length >= 0)) throw new RangeError(`bad array length ${length}`);
    const chunkCount = Math.ceil(length / CHUNK_ELEMENTS);
    const directory = allocator.alloc(HEADER_BYTES + chunkCount * 8);
    heap.writeU64(directory, length);
    heap.writeU64(directory + 8, chunkCount);
    const chunks: number[] = [];
    for (let i = 0; i < chunkCount; i++) {
      const elements = Math.min(CHUNK_ELEMENTS, length - i * CHUNK_ELEMENTS);
      if (elements * 4 > MAX_ALLOCATION_BYTES) throw new RangeError('array chunk above the allocation limit');
      const chunk = allocator.alloc(elements * 4);
      heap.writeU64(directory + HEADER_BYTES + i * 8, chunk);
      chunks.push(chunk);
    }
    return new HeapU32Array(heap, directory, length, chunks);
  }

  static attach(heap: SecureHeap, directory: number): HeapU32Array {
    const length = heap.readU64(directory);
    const chunkCount = heap.readU64(directory + 8);
    if (chunkCount !== Math.ceil(length / CHUNK_ELEMENTS)) throw new Error('heap array: damaged directory');
    const chunks: number[] = [];
    for (let i = 0; i < chunkCount; i++) chunks.push(heap.readU64(directory + HEADER_BYTES + i * 8));
    return new HeapU32Array(heap, directory, length, chunks);
  }

  /** The heap bytes `attach` reads: the directory. */
  attachReads(): HeapRange[] {
    return [{ addr: this.address, bytes: HEADER_BYTES + this.chunks.length * 8 }];
  }

  get(index: number): number {
    return this.heap.readU32(this.chunks[index >>> CHUNK_SHIFT]! + (index & CHUNK_MASK) * 4);
  }

  set(index: number, value: number): void {
    this.heap.writeU32(this.chunks[index >>> CHUNK_SHIFT]! + (index & CHUNK_MASK) * 4, value);
  }

  /**
   * A read-only view of elements [from, from + count), which must lie in one chunk (see runEnd):
   * one present test for the range instead of one per element, for scans.
   */
  view(from: number, count: number): Uint32Array {
    const bytes = this.heap.bytes(this.chunks[from >>> CHUNK_SHIFT]! + (from & CHUNK_MASK) * 4, count * 4);
    return new Uint32Array(bytes.buffer, bytes.byteOffset, count);
  }

  /** Like view, but the range's pages are marked dirty: for writing many elements at once. */
  mutableView(from: number, count: number): Uint32Array {
    const bytes = this.heap.mutableBytes(
      this.chunks[from >>> CHUNK_SHIFT]! + (from & CHUNK_MASK) * 4,
      count * 4,
    );
    return new Uint32Array(bytes.buffer, bytes.byteOffset, count);
  }

  /** The end (exclusive) of the longest run from `from` that one view can cover, at most `limit`. */
  runEnd(from: number, limit = this.length): number {
    return Math.min(limit, this.length, ((from >>> CHUNK_SHIFT) + 1) * CHUNK_ELEMENTS);
  }
}

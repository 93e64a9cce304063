import { endianness } from 'node:os';
import { UffdRegion } from '../native/uffd.js';
import { PAGE_SIZE, SEGMENT_BYTES, SEGMENT_PAGES } from './constants.js';
import { HeapSizeError, PageNotPresentError } from './errors.js';
import { PageBitmap } from './page-bitmap.js';
import { PageSetDigest } from './page-set-digest.js';

export { HeapSizeError, PageNotPresentError } from './errors.js';

export const MIN_HEAP_BYTES = 2 ** 20;
export const MAX_HEAP_BYTES = 16 * 2 ** 30;

// The u32/f64 accessors use native-order typed arrays; the heap format is little-endian.
if (endianness() !== 'LE') throw new Error('constmig needs a little-endian host');

const TWO_32 = 2 ** 32;
const SEGMENT_PAGE_SHIFT = Math.log2(SEGMENT_PAGES);
/** Largest high word of a u64 that still fits in a safe integer (2^53 - 1). */
const MAX_SAFE_HIGH_WORD = 2 ** 21 - 1;
/** wipe() compares and zeroes in blocks of this size; reading untouched memory costs no RSS. */
const WIPE_BLOCK_BYTES = 16 * PAGE_SIZE;

export type MissHandler = (firstPage: number, pageCount: number) => void;

/**
 * Everything another thread needs to open the same heap (SecureHeap.fromShared): the memory and both
 * bitmaps are SharedArrayBuffers, so posting this to a worker shares them instead of copying.
 */
export interface SharedHeap {
  pageCount: number;
  segments: SharedArrayBuffer[];
  present: SharedArrayBuffer;
  dirty: SharedArrayBuffer;
  /**
   * Whether accessors test the present bit (the Access Tracker's hit path). Off where no page can be
   * missing (a heap that did not migrate in) or where the kernel catches a missing page (userfaultfd).
   */
  presentChecks: boolean;
}

/**
 * How a heap that migrates in stops reads of pages that have not arrived:
 *   present-checks  every accessor tests the present bit (Access Tracker);
 *   userfaultfd     the memory is a userfaultfd region: a missing page blocks the thread in the kernel
 *                   until the migration agent installs it (Fault Tracker); accessors test nothing;
 *   none            nothing: only for a migration that installs every page before the application
 *                   runs (stop-and-copy, pre-copy); `catchesMisses` is false, and post-copy is refused.
 */
export type MissCatcher = 'present-checks' | 'userfaultfd' | 'none';

/**
 * The application's large state: fixed-size pages in SharedArrayBuffer segments, with two bitmaps that
 * describe this copy of the heap and never migrate: `present` (the page has arrived) and `dirty` (the
 * page was written since the migration agent last cleared the bit).
 *
 * Every accessor checks the present bits of the pages it touches and asks `onMiss` (the tracker) to
 * fetch missing ones, so no code reads a page that has not been restored; every write marks its pages
 * dirty. Addresses are byte offsets from the heap start and may exceed 2^32.
 */
export class SecureHeap {
  readonly byteLength: number;
  readonly pageCount: number;
  readonly segments: readonly Uint8Array[];
  readonly present: PageBitmap;
  readonly dirty: PageBitmap;
  /** Called with the touched page range when an access finds a page missing; must make it present. */
  onMiss: MissHandler | null = null;

  /** The bitmaps' words, held directly: one load fewer on every access. */
  private readonly presentWords: Uint32Array;
  private readonly dirtyWords: Uint32Array;
  private readonly u32: readonly Uint32Array[];
  private readonly f64: readonly Float64Array[];
  /**
   * The userfaultfd region under the memory, on the thread that made it, until it is released; and
   * which of its pages the kernel holds (copy, zeroPage) — not the same as present: a page of a
   * pre-copy round is held, and after BEGIN may be stale and dropped again.
   */
  private faultRegion: { region: UffdRegion; held: PageBitmap } | null = null;

  protected constructor(private readonly shared: SharedHeap) {
    const { pageCount } = shared;
    this.pageCount = pageCount;
    this.byteLength = pageCount * PAGE_SIZE;
    this.segments = shared.segments.map((buffer) => new Uint8Array(buffer));
    this.u32 = shared.segments.map((buffer) => new Uint32Array(buffer));
    this.f64 = shared.segments.map((buffer) => new Float64Array(buffer));
    this.present = new PageBitmap(new Uint32Array(shared.present), pageCount);
    this.dirty = new PageBitmap(new Uint32Array(shared.dirty), pageCount);
    this.presentWords = this.present.words;
    this.dirtyWords = this.dirty.words;
  }

  /**
   * A zeroed heap of `bytes` rounded up to whole pages, every page present and none dirty. Without
   * `presentChecks` (default on) the accessors skip the present test: right for a heap whose pages
   * can never be missing (an application started here), wrong for anything else.
   */
  static create(bytes: number, options: { presentChecks?: boolean } = {}): SecureHeap {
    const pageCount = pagesFor(bytes);
    const byteLength = pageCount * PAGE_SIZE;
    const segments: SharedArrayBuffer[] = [];
    for (let start = 0; start < byteLength; start += SEGMENT_BYTES) {
      // SharedArrayBuffer memory is committed lazily, so untouched pages cost no RSS.
      segments.push(new SharedArrayBuffer(Math.min(SEGMENT_BYTES, byteLength - start)));
    }
    const heap = SecureHeap.open(pageCount, segments, options.presentChecks ?? true);
    heap.present.setAll();
    return heap;
  }

  /**
   * A heap for a migration to arrive in: every page missing, reads of missing pages stopped by
   * `catcher`. 'userfaultfd' needs the addon and the kernel's permission (native/uffd.ts) and throws
   * with the reason otherwise.
   */
  static createIncoming(bytes: number, catcher: MissCatcher): SecureHeap {
    const pageCount = pagesFor(bytes);
    if (catcher !== 'userfaultfd') {
      const heap = SecureHeap.create(bytes, { presentChecks: catcher === 'present-checks' });
      heap.present.clearAll();
      return heap;
    }
    const region = UffdRegion.map(pageCount * PAGE_SIZE, { segmentBytes: SEGMENT_BYTES });
    const heap = SecureHeap.open(pageCount, [...region.segments], false);
    heap.faultRegion = { region, held: PageBitmap.create(pageCount) };
    return heap;
  }

  private static open(pageCount: number, segments: SharedArrayBuffer[], presentChecks: boolean): SecureHeap {
    const shared: SharedHeap = {
      pageCount,
      segments,
      present: PageBitmap.create(pageCount).words.buffer as SharedArrayBuffer,
      dirty: PageBitmap.create(pageCount).words.buffer as SharedArrayBuffer,
      presentChecks,
    };
    return SecureHeap.fromShared(shared);
  }

  /** The same heap, opened on another thread from `share()`: same memory, same bitmaps. */
  static fromShared(shared: SharedHeap): SecureHeap {
    return shared.presentChecks ? new SecureHeap(shared) : new HeapWithoutPresentChecks(shared);
  }

  /** What fromShared needs, to post to a worker. */
  share(): SharedHeap {
    return this.shared;
  }

  get presentChecks(): boolean {
    return this.shared.presentChecks;
  }

  /** The userfaultfd region under this heap while it catches misses (this thread only), else null. */
  get userfaultfd(): UffdRegion | null {
    return this.faultRegion?.region ?? null;
  }

  /** Whether a read of a missing page is stopped (present checks or userfaultfd). */
  get catchesMisses(): boolean {
    return this.shared.presentChecks || this.faultRegion !== null;
  }

  /**
   * Migration agent: puts `bytes` (whole pages) into the heap at `first`, within one segment, without
   * changing the present bits. On a userfaultfd heap, pages the kernel does not hold yet go in with
   * UFFDIO_COPY (which wakes any thread waiting on them); writing them directly would fault on this
   * very thread. Pages it holds are overwritten in place (a later pre-copy round's version).
   */
  installPages(first: number, bytes: Uint8Array): void {
    const count = bytes.length / PAGE_SIZE;
    const target = this.rawPages(first, count);
    const fault = this.faultRegion;
    if (!fault || fault.held.allSet(first, count)) {
      target.set(bytes);
      return;
    }
    for (let page = first; page < first + count;) {
      const held = fault.held.get(page);
      let end = page + 1;
      while (end < first + count && fault.held.get(end) === held) end++;
      const slice = bytes.subarray((page - first) * PAGE_SIZE, (end - first) * PAGE_SIZE);
      if (held) this.rawPages(page, end - page).set(slice);
      else fault.region.copy(page * PAGE_SIZE, slice);
      page = end;
    }
    fault.held.setRange(first, count);
  }

  /**
   * Migration agent: whether `installPages` could be skipped by writing straight into
   * `rawPages(first, count)` (decrypting in place): always, except where the kernel does not hold them.
   */
  writableInPlace(first: number, count: number): boolean {
    return this.faultRegion === null || this.faultRegion.held.allSet(first, count);
  }

  /**
   * Fault Tracker: satisfies faults on pages that hold nothing to migrate with zero pages (no round
   * trip), and marks them present. A page the kernel holds already is left as it is.
   */
  installZeroPages(first: number, count: number): void {
    const fault = this.faultRegion;
    if (!fault) throw new Error('installZeroPages needs a userfaultfd heap');
    fault.region.zeroPage(first * PAGE_SIZE, count * PAGE_SIZE);
    fault.held.setRange(first, count);
    this.present.publishRange(first, count);
  }

  /**
   * Migration agent: the pages set in `pages` stop being present (a pre-copy round's version went
   * stale); on a userfaultfd heap the kernel drops them too, so that touching one faults again.
   */
  dropPages(pages: PageBitmap): void {
    this.present.andNot(pages);
    const fault = this.faultRegion;
    if (!fault) return;
    const stale = pages.copy();
    stale.and(fault.held);
    for (const { first, count } of this.runs(stale)) {
      fault.region.discard(first * PAGE_SIZE, count * PAGE_SIZE);
    }
    fault.held.andNot(stale);
  }

  /**
   * Ends userfaultfd handling: from now on the memory is plain memory, and a page the kernel never
   * got reads as zeros. Right once every page to migrate is here, or when no migration will fill it;
   * the caller must have stopped any watch on the region. Nothing to do on another heap.
   */
  releaseUserfaultfd(): void {
    this.faultRegion?.region.close();
    this.faultRegion = null;
  }

  readU8(addr: number): number {
    const page = this.checkAccess(addr, 1);
    this.requirePage(page);
    const segment = page >>> SEGMENT_PAGE_SHIFT;
    return this.segments[segment]![addr - segment * SEGMENT_BYTES]!;
  }

  writeU8(addr: number, value: number): void {
    if ((value & 0xff) !== value) throw new RangeError(`u8 value ${value} is out of range`);
    const page = this.checkAccess(addr, 1);
    this.requirePage(page);
    this.markPageDirty(page);
    const segment = page >>> SEGMENT_PAGE_SHIFT;
    this.segments[segment]![addr - segment * SEGMENT_BYTES] = value;
  }

  readU32(addr: number): number {
    const page = this.checkAccess(addr, 4);
    this.requirePage(page);
    const segment = page >>> SEGMENT_PAGE_SHIFT;
    return this.u32[segment]![(addr - segment * SEGMENT_BYTES) >>> 2]!;
  }

  writeU32(addr: number, value: number): void {
    if (value >>> 0 !== value) throw new RangeError(`u32 value ${value} is out of range`);
    const page = this.checkAccess(addr, 4);
    this.requirePage(page);
    this.markPageDirty(page);
    const segment = page >>> SEGMENT_PAGE_SHIFT;
    this.u32[segment]![(addr - segment * SEGMENT_BYTES) >>> 2] = value;
  }

  /** A little-endian u64 that must fit in a safe integer; a larger stored value throws RangeError. */
  readU64(addr: number): number {
    const page = this.checkAccess(addr, 8);
    this.requirePage(page);
    const segment = page >>> SEGMENT_PAGE_SHIFT;
    const words = this.u32[segment]!;
    const index = (addr - segment * SEGMENT_BYTES) >>> 2;
    const high = words[index + 1]!;
    if (high > MAX_SAFE_HIGH_WORD) throw new RangeError(`u64 at ${addr} exceeds 2^53-1`);
    return high * TWO_32 + words[index]!;
  }

  /** Stores a non-negative safe integer as 8 little-endian bytes. */
  writeU64(addr: number, value: number): void {
    if (!(Number.isSafeInteger(value) && value >= 0))
      throw new RangeError(`u64 value ${value} is out of range`);
    const page = this.checkAccess(addr, 8);
    this.requirePage(page);
    this.markPageDirty(page);
    const segment = page >>> SEGMENT_PAGE_SHIFT;
    const words = this.u32[segment]!;
    const index = (addr - segment * SEGMENT_BYTES) >>> 2;
    const low = value % TWO_32;
    words[index] = low;
    words[index + 1] = (value - low) / TWO_32;
  }

  readF64(addr: number): number {
    const page = this.checkAccess(addr, 8);
    this.requirePage(page);
    const segment = page >>> SEGMENT_PAGE_SHIFT;
    return this.f64[segment]![(addr - segment * SEGMENT_BYTES) >>> 3]!;
  }

  writeF64(addr: number, value: number): void {
    const page = this.checkAccess(addr, 8);
    this.requirePage(page);
    this.markPageDirty(page);
    const segment = page >>> SEGMENT_PAGE_SHIFT;
    this.f64[segment]![(addr - segment * SEGMENT_BYTES) >>> 3] = value;
  }

  /** A view of `len` bytes, after the present check; read-only by convention (writes would not be tracked). */
  bytes(addr: number, len: number): Uint8Array {
    const view = this.rangeView(addr, len);
    if (len > 0) this.requirePages(addr, len);
    return view;
  }

  /** A writable view of `len` bytes: present check, and every touched page is marked dirty. */
  mutableBytes(addr: number, len: number): Uint8Array {
    const view = this.rangeView(addr, len);
    if (len > 0) {
      this.requirePages(addr, len);
      this.markRangeDirty(addr, len);
    }
    return view;
  }

  readInto(addr: number, target: Uint8Array): void {
    target.set(this.bytes(addr, target.length));
  }

  write(addr: number, src: Uint8Array): void {
    this.mutableBytes(addr, src.length).set(src);
  }

  equals(addr: number, other: Uint8Array): boolean {
    return Buffer.compare(this.bytes(addr, other.length), other) === 0;
  }

  /**
   * Migration agent only: a view over whole pages that skips the present check and dirty marking
   * (the agent installs pages that are not present yet, and reads pages without dirtying them).
   */
  rawPages(firstPage: number, pageCount: number): Uint8Array {
    if (!(Number.isInteger(firstPage) && Number.isInteger(pageCount) && firstPage >= 0 && pageCount >= 0)) {
      throw new RangeError(`invalid page range ${firstPage}+${pageCount}`);
    }
    if (firstPage + pageCount > this.pageCount) {
      throw new RangeError(`pages ${firstPage}+${pageCount} run past the heap end (${this.pageCount} pages)`);
    }
    if (pageCount > 0 && firstPage + pageCount > this.segmentEndPage(firstPage)) {
      throw new RangeError(`pages ${firstPage}+${pageCount} cross a segment boundary`);
    }
    const segment = Math.floor(firstPage / SEGMENT_PAGES);
    const offset = (firstPage - segment * SEGMENT_PAGES) * PAGE_SIZE;
    return this.segments[segment]!.subarray(offset, offset + pageCount * PAGE_SIZE);
  }

  /** The first page of the segment after the one holding `page`, or pageCount for the last segment. */
  segmentEndPage(page: number): number {
    return Math.min((Math.floor(page / SEGMENT_PAGES) + 1) * SEGMENT_PAGES, this.pageCount);
  }

  /**
   * The page-set digest (page-set-digest.ts) of the pages set in `pages`, as they are now: what both
   * sides of a migration compute incrementally. It reads raw memory: no present check, no dirty marking.
   */
  digest(pages: PageBitmap): string {
    const digest = new PageSetDigest(this.pageCount);
    for (const { first, count } of this.runs(pages)) digest.add(first, count, this.rawPages(first, count));
    return digest.hex();
  }

  /**
   * The maximal runs of pages set in `pages`, in increasing order, cut at every segment end and after
   * `maxRunPages` pages: each run is one contiguous view (`rawPages`). The migration agent sends
   * exactly these runs as its extents.
   */
  *runs(
    pages: PageBitmap,
    maxRunPages = Number.POSITIVE_INFINITY,
  ): Generator<{ first: number; count: number }> {
    if (pages.pageCount !== this.pageCount) {
      throw new RangeError(`bitmap has ${pages.pageCount} pages, the heap ${this.pageCount}`);
    }
    if (!(maxRunPages >= 1)) throw new RangeError(`invalid run length ${maxRunPages}`);
    for (const [first, runEnd] of pages.runs()) {
      for (let page = first; page < runEnd;) {
        const end = Math.min(runEnd, this.segmentEndPage(page), page + maxRunPages);
        yield { first: page, count: end - page };
        page = end;
      }
    }
  }

  /**
   * Self-destroy: zero every byte that may hold data and clear both bitmaps, so every later access
   * fails. It scans the memory instead of trusting any bookkeeping, and zeroes only blocks that are
   * not already zero: reading never-touched memory commits nothing, writing it would commit it all.
   */
  wipe(): void {
    this.onMiss = null;
    // Reading a missing page of a userfaultfd region here would wait for a handler that never comes.
    this.releaseUserfaultfd();
    const zeros = new Uint8Array(WIPE_BLOCK_BYTES);
    for (const segment of this.segments) {
      for (let offset = 0; offset < segment.length; offset += WIPE_BLOCK_BYTES) {
        const block = segment.subarray(offset, offset + WIPE_BLOCK_BYTES);
        if (Buffer.compare(block, zeros.subarray(0, block.length)) !== 0) block.fill(0);
      }
    }
    this.present.clearAll();
    this.dirty.clearAll();
  }

  /** Validates a naturally aligned access of `size` bytes and returns its page. */
  private checkAccess(addr: number, size: number): number {
    // Integer arithmetic on the offset in the page: `addr % size` on a double costs an fmod call.
    const page = (addr / PAGE_SIZE) >>> 0;
    const inPage = addr - page * PAGE_SIZE;
    if (!(
      addr >= 0 &&
      addr <= this.byteLength - size &&
      (inPage | 0) === inPage &&
      (inPage & (size - 1)) === 0
    )) {
      throw new RangeError(`invalid ${size}-byte access at ${addr} (heap of ${this.byteLength} B)`);
    }
    return page;
  }

  /** Validates a byte range that stays inside one segment and returns a view of it. */
  private rangeView(addr: number, len: number): Uint8Array {
    if (!(
      Number.isInteger(addr) &&
      Number.isInteger(len) &&
      addr >= 0 &&
      len >= 0 &&
      addr + len <= this.byteLength
    )) {
      throw new RangeError(`invalid byte range ${addr}+${len} (heap of ${this.byteLength} B)`);
    }
    const segment = Math.floor(addr / SEGMENT_BYTES);
    const offset = addr - segment * SEGMENT_BYTES;
    if (offset + len > SEGMENT_BYTES)
      throw new RangeError(`byte range ${addr}+${len} crosses a segment boundary`);
    return this.segments[segment]!.subarray(offset, offset + len);
  }

  protected requirePage(page: number): void {
    if ((this.presentWords[page >>> 5]! & (1 << (page & 31))) === 0) this.miss(page, 1);
  }

  protected requirePages(addr: number, len: number): void {
    const first = Math.floor(addr / PAGE_SIZE);
    const count = Math.floor((addr + len - 1) / PAGE_SIZE) - first + 1;
    if (!this.present.allSet(first, count)) this.miss(first, count);
  }

  private miss(first: number, count: number): void {
    this.onMiss?.(first, count);
    const missing = this.present.firstClear(first, count);
    if (missing !== -1) throw new PageNotPresentError(missing);
  }

  private markPageDirty(page: number): void {
    this.dirtyWords[page >>> 5]! |= 1 << (page & 31);
  }

  private markRangeDirty(addr: number, len: number): void {
    const first = Math.floor(addr / PAGE_SIZE);
    this.dirty.setRange(first, Math.floor((addr + len - 1) / PAGE_SIZE) - first + 1);
  }
}

/**
 * A heap whose accessors skip the present test, which the JIT then inlines to nothing: for memory
 * where no page can be missing, or where the kernel stops a read of one (userfaultfd). Everything else
 * (bounds, alignment, dirty marking) is SecureHeap's. A thread only ever sees one of the two classes,
 * so the accessors' call sites stay monomorphic.
 */
class HeapWithoutPresentChecks extends SecureHeap {
  protected override requirePage(): void {}
  protected override requirePages(): void {}
}

function pagesFor(bytes: number): number {
  if (!(bytes >= MIN_HEAP_BYTES && bytes <= MAX_HEAP_BYTES)) {
    throw new HeapSizeError(`heap size ${bytes} B is outside the supported range 1 MiB .. 16 GiB`);
  }
  return Math.ceil(bytes / PAGE_SIZE);
}

import { bitmapKernels, lowestBit, nextBit, popcount } from './bitmap-kernels.js';

/** The whole-bitmap passes: native where the addon loads (see bitmap-kernels.ts). */
const kernels = bitmapKernels();

/** Runs found per call of the bitmap passes by PageBitmap.runs. */
const RUN_BATCH = 512;

/** Number of 32-bit words that hold one bit per page. */
export function bitmapWords(pageCount: number): number {
  return Math.ceil(pageCount / 32);
}

/** Bits [bit, 31] of a word. */
function fromBit(bit: number): number {
  return ~0 << bit;
}

/** Bits [0, bit] of a word. */
function throughBit(bit: number): number {
  return (~0 >>> (31 - bit)) | 0;
}

/**
 * One bit per page over a Uint32Array, which may be a private buffer or a view into heap memory (the
 * allocator keeps its `allocated` bitmap inside the heap so that it migrates with the pages).
 *
 * Operations are plain loads and stores, not Atomics: a bit set costs a few nanoseconds and every heap
 * write pays one. A user on another thread (a fetcher worker marking pages present) must use Atomics on
 * `words` itself, and the owning thread must expect a plain read to miss a concurrent update.
 */
export class PageBitmap {
  readonly words: Uint32Array;
  readonly pageCount: number;
  /** The same words as Int32Array: Atomics.wait and notify take no other view. */
  private i32: Int32Array | undefined;

  constructor(words: Uint32Array, pageCount: number) {
    if (!Number.isSafeInteger(pageCount) || pageCount < 0 || pageCount >= 2 ** 32) {
      throw new RangeError(`invalid bitmap page count ${pageCount}`);
    }
    if (words.length !== bitmapWords(pageCount)) {
      throw new RangeError(
        `a bitmap of ${pageCount} pages needs ${bitmapWords(pageCount)} words, got ${words.length}`,
      );
    }
    this.words = words;
    this.pageCount = pageCount;
  }

  /** A bitmap with every bit clear, in a SharedArrayBuffer so that workers can share it. */
  static create(pageCount: number): PageBitmap {
    const words = new Uint32Array(new SharedArrayBuffer(bitmapWords(pageCount) * 4));
    return new PageBitmap(words, pageCount);
  }

  get(page: number): boolean {
    this.checkPage(page);
    return ((this.words[page >>> 5]! >>> (page & 31)) & 1) === 1;
  }

  set(page: number): void {
    this.checkPage(page);
    this.words[page >>> 5]! |= 1 << (page & 31);
  }

  clear(page: number): void {
    this.checkPage(page);
    this.words[page >>> 5]! &= ~(1 << (page & 31));
  }

  setRange(first: number, count: number): void {
    this.checkRange(first, count);
    if (count === 0) return;
    const end = first + count - 1;
    const firstWord = first >>> 5;
    const lastWord = end >>> 5;
    const words = this.words;
    if (firstWord === lastWord) {
      words[firstWord]! |= fromBit(first & 31) & throughBit(end & 31);
      return;
    }
    words[firstWord]! |= fromBit(first & 31);
    words.fill(0xffffffff, firstWord + 1, lastWord);
    words[lastWord]! |= throughBit(end & 31);
  }

  clearRange(first: number, count: number): void {
    this.checkRange(first, count);
    if (count === 0) return;
    const end = first + count - 1;
    const firstWord = first >>> 5;
    const lastWord = end >>> 5;
    const words = this.words;
    if (firstWord === lastWord) {
      words[firstWord]! &= ~(fromBit(first & 31) & throughBit(end & 31));
      return;
    }
    words[firstWord]! &= ~fromBit(first & 31);
    words.fill(0, firstWord + 1, lastWord);
    words[lastWord]! &= ~throughBit(end & 31);
  }

  /**
   * Sets every page set in `pages`, with Atomics but without waking anyone: only for a bitmap no
   * thread can be waiting on yet (the destination's never-allocated pages, published before the
   * application restores). One pass over the words whatever the number of runs: a fragmented heap
   * has thousands, and publishRange per run (a wake-up per word) cost 2-7 ms of the blackout at 1 GiB.
   */
  setAllBeforeWaiters(pages: PageBitmap): void {
    this.checkSame(pages);
    this.sharedWords();
    kernels.publishBits(this.words, pages.words);
  }

  /**
   * Sets the range with Atomics and wakes every thread blocked in waitUntilSet on its words: how the
   * fetcher publishes installed pages to the application thread. Atomics are sequentially consistent,
   * so a thread that sees the bit also sees the page bytes stored before it.
   */
  publishRange(first: number, count: number): void {
    this.checkRange(first, count);
    if (count === 0) return;
    const end = first + count - 1;
    const lastWord = end >>> 5;
    const shared = this.sharedWords();
    for (let w = first >>> 5; w <= lastWord; w++) {
      let mask = ~0;
      if (w === first >>> 5) mask &= fromBit(first & 31);
      if (w === lastWord) mask &= throughBit(end & 31);
      Atomics.or(shared, w, mask);
      Atomics.notify(shared, w);
    }
  }

  /** Wakes every waiter without changing a bit (they re-check and find out why, e.g. a failure). */
  wakeAll(): void {
    const shared = this.sharedWords();
    for (let w = 0; w < shared.length; w++) Atomics.notify(shared, w);
  }

  /**
   * Blocks the calling thread (never the main thread of a process with an event loop to keep) until
   * `page` is set or `timeoutMs` passed; true if it is set.
   */
  waitUntilSet(page: number, timeoutMs: number): boolean {
    this.checkPage(page);
    const shared = this.sharedWords();
    const w = page >>> 5;
    const bit = 1 << (page & 31);
    const value = Atomics.load(shared, w);
    if ((value & bit) !== 0) return true;
    Atomics.wait(shared, w, value, timeoutMs);
    return (Atomics.load(shared, w) & bit) !== 0;
  }

  /** Copies the bits into a new private bitmap and clears them here (one epoch of dirty pages). */
  take(): PageBitmap {
    const taken = new PageBitmap(this.words.slice(), this.pageCount);
    this.clearAll();
    return taken;
  }

  /** A copy in its own SharedArrayBuffer. */
  copy(): PageBitmap {
    const copy = PageBitmap.create(this.pageCount);
    copy.words.set(this.words);
    return copy;
  }

  /** this |= other */
  or(other: PageBitmap): void {
    this.checkSame(other);
    kernels.or(this.words, other.words);
  }

  /** this ^= other: the pages set in exactly one of the two. */
  xor(other: PageBitmap): void {
    this.checkSame(other);
    kernels.xor(this.words, other.words);
  }

  /** this &= other */
  and(other: PageBitmap): void {
    this.checkSame(other);
    kernels.and(this.words, other.words);
  }

  /** this &= ~other */
  andNot(other: PageBitmap): void {
    this.checkSame(other);
    kernels.andNot(this.words, other.words);
  }

  /** Flips every page (bits past pageCount stay clear). */
  invert(): void {
    kernels.invert(this.words);
    const tail = this.pageCount & 31;
    if (tail !== 0) this.words[this.words.length - 1]! &= throughBit(tail - 1);
  }

  /** True if every page set here is set in `other`. */
  isSubsetOf(other: PageBitmap): boolean {
    this.checkSame(other);
    return kernels.isSubsetOf(this.words, other.words);
  }

  setAll(): void {
    this.clearAll();
    this.setRange(0, this.pageCount);
  }

  clearAll(): void {
    this.words.fill(0);
  }

  /** True if every page of the range is set; one masked compare when the range sits in one word. */
  allSet(first: number, count: number): boolean {
    this.checkRange(first, count);
    if (count === 0) return true;
    const end = first + count - 1;
    const firstWord = first >>> 5;
    const lastWord = end >>> 5;
    const words = this.words;
    if (firstWord === lastWord)
      return (~words[firstWord]! & fromBit(first & 31) & throughBit(end & 31)) === 0;
    if ((~words[firstWord]! & fromBit(first & 31)) !== 0) return false;
    for (let w = firstWord + 1; w < lastWord; w++) if (words[w] !== 0xffffffff) return false;
    return (~words[lastWord]! & throughBit(end & 31)) === 0;
  }

  /** The first clear page in [first, first + count), or -1. */
  firstClear(first: number, count: number): number {
    this.checkRange(first, count);
    if (count === 0) return -1;
    const end = first + count - 1;
    const firstWord = first >>> 5;
    const lastWord = end >>> 5;
    for (let w = firstWord; w <= lastWord; w++) {
      let clear = ~this.words[w]!;
      if (w === firstWord) clear &= fromBit(first & 31);
      if (w === lastWord) clear &= throughBit(end & 31);
      if (clear !== 0) return w * 32 + lowestBit(clear);
    }
    return -1;
  }

  /** The first set page at or after `from`, or -1. */
  nextSet(from: number): number {
    return this.next(from, 0);
  }

  /** The first clear page at or after `from`, or -1. */
  nextClear(from: number): number {
    return this.next(from, ~0);
  }

  private next(from: number, flip: number): number {
    this.checkFrom(from);
    if (from >= this.pageCount) return -1;
    const page = nextBit(this.words, from, flip);
    return page < this.pageCount ? page : -1;
  }

  /**
   * The maximal runs of set pages, in increasing order, as [first, end) pairs; found a batch at a time
   * by one call to the bitmap passes, so a sparse or fragmented bitmap costs no per-word JavaScript.
   */
  *runs(): Generator<[first: number, end: number]> {
    const out = new Uint32Array(RUN_BATCH * 2);
    let from = 0;
    for (;;) {
      const found = kernels.findRuns(this.words, from, this.pageCount, out);
      for (let i = 0; i < found; i++) yield [out[2 * i]!, out[2 * i + 1]!];
      if (found < RUN_BATCH) return;
      from = out[2 * found - 1]!;
    }
  }

  /** Number of set pages. */
  count(): number {
    return kernels.count(this.words) - popcount(this.tailBits());
  }

  /** Number of pages set both here and in `other`. */
  countAnd(other: PageBitmap): number {
    this.checkSame(other);
    return kernels.countAnd(this.words, other.words) - popcount(this.tailBits() & other.tailBits());
  }

  countRange(first: number, count: number): number {
    this.checkRange(first, count);
    if (count === 0) return 0;
    const end = first + count - 1;
    const firstWord = first >>> 5;
    const lastWord = end >>> 5;
    let total = 0;
    for (let w = firstWord; w <= lastWord; w++) {
      let bits = this.words[w]!;
      if (w === firstWord) bits &= fromBit(first & 31);
      if (w === lastWord) bits &= throughBit(end & 31);
      total += popcount(bits);
    }
    return total;
  }

  /** Bits past the last page, which no operation here sets; words given to the constructor might. */
  private tailBits(): number {
    const tail = this.pageCount & 31;
    return tail === 0 ? 0 : this.words[this.words.length - 1]! & ~throughBit(tail - 1);
  }

  private checkSame(other: PageBitmap): void {
    if (other.pageCount !== this.pageCount) {
      throw new RangeError(`bitmaps of ${this.pageCount} and ${other.pageCount} pages do not combine`);
    }
  }

  private sharedWords(): Int32Array {
    if (!(this.words.buffer instanceof SharedArrayBuffer)) {
      throw new TypeError('only a bitmap in a SharedArrayBuffer can be waited on');
    }
    this.i32 ??= new Int32Array(this.words.buffer, this.words.byteOffset, this.words.length);
    return this.i32;
  }

  private checkPage(page: number): void {
    if (!(page >>> 0 === page && page < this.pageCount)) {
      throw new RangeError(`page ${page} is outside the bitmap of ${this.pageCount} pages`);
    }
  }

  private checkRange(first: number, count: number): void {
    if (!(first >>> 0 === first && count >>> 0 === count && first + count <= this.pageCount)) {
      throw new RangeError(`pages ${first}+${count} are outside the bitmap of ${this.pageCount} pages`);
    }
  }

  private checkFrom(from: number): void {
    if (from >>> 0 !== from) throw new RangeError(`invalid bitmap position ${from}`);
  }
}

/**
 * Runs each whole-bitmap operation twice on scratch bitmaps of `pageCount` pages before a migration's
 * blackout. With the JavaScript passes (no addon), cold they cost 20-30 ms of CPU over the bitmaps of
 * a 4 GiB heap and warm 2-3, though V8 may still drop the compiled code later (docs/decisions.md,
 * "Nothing cold in the blackout"); with the addon this warms the JavaScript around its calls and the
 * searches still written in JavaScript (allSet, nextSet, nextClear).
 */
export function warmUpBitmapCode(pageCount: number): void {
  const half = PageBitmap.create(pageCount);
  half.setRange(0, pageCount >>> 1);
  const none = PageBitmap.create(pageCount);
  for (let round = 0; round < 2; round++) {
    const scratch = half.copy();
    scratch.or(none);
    scratch.xor(none);
    scratch.and(half);
    scratch.andNot(none);
    scratch.invert();
    scratch.count();
    scratch.isSubsetOf(half);
    scratch.allSet(0, pageCount);
    PageBitmap.create(pageCount).setAllBeforeWaiters(scratch);
    for (let page = scratch.nextSet(0); page !== -1;) {
      const clear = scratch.nextClear(page);
      page = clear === -1 ? -1 : scratch.nextSet(clear);
    }
    for (const run of scratch.runs()) void run;
  }
}

import { type DataPath, dataPath, LEAF_BYTES } from '../crypto/data-path.js';
import { PAGE_SIZE } from './constants.js';
import { PageBitmap } from './page-bitmap.js';

/**
 * The end-to-end check behind `verified`: the XOR over every allocated page p of
 * SHA-256(u64le(p) || the 4096 bytes of p), the final version of each page. Unlike a hash over the
 * stream, it does not depend on the order or the channel in which pages travel, nor on how often a
 * page was sent (pre-copy rounds, a demand fetch racing the bulk push): each side keeps the leaf of
 * the version it last sent or installed and replaces it when a newer one comes. The source feeds it
 * the pages it seals, the destination the pages it just installed, read back from its own heap before
 * the application can touch them; pages that were sent but are no longer allocated at the blackout
 * are removed on both sides.
 */
export class PageSetDigest {
  private readonly acc = Buffer.alloc(LEAF_BYTES);
  /** Lazily committed: untouched pages' leaves cost no memory. */
  private readonly leaves: Uint8Array;
  private readonly has: PageBitmap;
  /** The new leaves of one add(), hashed in one call to the data path. */
  private fresh = new Uint8Array(0);

  constructor(
    pageCount: number,
    private readonly path: DataPath = dataPath(),
  ) {
    this.leaves = new Uint8Array(pageCount * LEAF_BYTES);
    this.has = PageBitmap.create(pageCount);
  }

  /** Records the current version of pages [first, first + count), whose bytes are `bytes`. */
  add(first: number, count: number, bytes: Uint8Array): void {
    if (this.fresh.length < count * LEAF_BYTES) this.fresh = new Uint8Array(count * LEAF_BYTES);
    this.path.pageLeaves(
      bytes.subarray(0, count * PAGE_SIZE),
      first,
      this.fresh.subarray(0, count * LEAF_BYTES),
    );
    for (let i = 0; i < count; i++) {
      const page = first + i;
      this.remove(page);
      const leaf = this.fresh.subarray(i * LEAF_BYTES, (i + 1) * LEAF_BYTES);
      this.leaves.set(leaf, page * LEAF_BYTES);
      this.xor(leaf);
      this.has.set(page);
    }
  }

  /** Forgets page `page` (no longer allocated, or about to be replaced). */
  remove(page: number): void {
    if (!this.has.get(page)) return;
    this.xor(this.leaves.subarray(page * LEAF_BYTES, (page + 1) * LEAF_BYTES));
    this.has.clear(page);
  }

  /** Forgets every recorded page that `keep` does not hold (in the blackout: whole-bitmap passes). */
  retainOnly(keep: PageBitmap): void {
    // Usually there is nothing to drop (a post-copy blackout's digest holds nothing yet): one pass
    // then, instead of a fresh heap-sized copy whose first touch alone cost 0.2-0.4 ms at 8 GiB.
    if (this.has.isSubsetOf(keep)) return;
    const drop = this.has.copy();
    drop.andNot(keep);
    for (const [first, end] of drop.runs()) for (let page = first; page < end; page++) this.remove(page);
  }

  hex(): string {
    return this.acc.toString('hex');
  }

  private xor(leaf: Uint8Array): void {
    for (let i = 0; i < LEAF_BYTES; i++) this.acc[i]! ^= leaf[i]!;
  }
}

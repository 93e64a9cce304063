import type { Opener } from '../crypto/seal.js';
import { PAGE_SIZE } from '../heap/constants.js';
import type { PageBitmap } from '../heap/page-bitmap.js';
import type { PageSetDigest } from '../heap/page-set-digest.js';
import type { SecureHeap } from '../heap/secure-heap.js';
import type { Frame } from '../wire/frame.js';
import { ProtocolError } from './control-channel.js';

/** Upper bound on pages in one frame; a larger claim is a protocol violation, not an allocation. */
const MAX_FRAME_PAGES = 4096;

/**
 * How page frames may change the heap, by phase of the destination:
 *   rounds   before BEGIN (pre-copy): any page, a later round's version replaces an earlier one;
 *   final    after BEGIN, before resuming: only pages still missing, each once;
 *   live     after resuming (post-copy): only pages still missing; a page that arrived on the other
 *            channel first is dropped, never written again (the application may have changed it).
 */
export type InstallPolicy =
  | { kind: 'rounds' }
  | { kind: 'final'; epoch: number; allocated: PageBitmap }
  | { kind: 'live'; epoch: number; allocated: PageBitmap };

/**
 * Verifies, decrypts and installs page frames into the heap (present bits, digest). Decryption goes
 * straight into the heap when every page of the frame is missing and the memory allows it; on a
 * userfaultfd heap it goes to a scratch buffer, from which UFFDIO_COPY installs the pages
 * (SecureHeap.installPages). A frame that is partly a duplicate is decrypted aside and only its
 * missing pages are installed.
 */
export class PageInstaller {
  /** Pages installed under the current policy. */
  installed = 0;
  private lastRoundEpoch = 0;
  private scratch = new Uint8Array(0);

  constructor(
    private readonly heap: SecureHeap,
    private readonly digest: PageSetDigest | null,
    private readonly publish: (first: number, count: number) => void,
  ) {}

  /** Returns how many pages this frame installed. */
  install(frame: Frame, opener: Opener, policy: InstallPolicy): number {
    const { heap } = this;
    const { firstPage: first, pageCount: count, epoch } = frame.header;
    if (count < 1 || count > MAX_FRAME_PAGES || first + count > heap.segmentEndPage(first)) {
      throw new ProtocolError(`page frame out of range: pages ${first}+${count} of ${heap.pageCount}`);
    }
    if (frame.bodyLength !== count * PAGE_SIZE + 16) {
      throw new ProtocolError(`page frame length ${frame.bodyLength} does not match ${count} pages`);
    }
    if (policy.kind === 'rounds') {
      if (epoch < Math.max(1, this.lastRoundEpoch)) {
        throw new ProtocolError(`page frame of round ${epoch} after round ${this.lastRoundEpoch}`);
      }
      this.lastRoundEpoch = epoch;
      return this.installAll(frame, opener, first, count);
    }
    if (epoch !== policy.epoch)
      throw new ProtocolError(`page frame of epoch ${epoch}, expected ${policy.epoch}`);
    if (policy.allocated.countRange(first, count) !== count) {
      throw new ProtocolError(`page frame ${first}+${count} holds pages that are not to migrate`);
    }
    const alreadyPresent = heap.present.countRange(first, count);
    if (alreadyPresent === 0) return this.installAll(frame, opener, first, count);
    if (policy.kind === 'final') throw new ProtocolError(`page ${first}+${count} received twice`);
    // Verify even a full duplicate: it still has to be the next authentic frame of its channel.
    const plaintext = opener.open(frame)!;
    let installed = 0;
    for (let page = first; page < first + count; page++) {
      if (heap.present.get(page)) continue;
      const bytes = plaintext.subarray((page - first) * PAGE_SIZE, (page - first + 1) * PAGE_SIZE);
      // The digest takes the bytes before they go in: once installed, the application may change them.
      this.digest?.add(page, 1, bytes);
      heap.installPages(page, bytes);
      this.publish(page, 1);
      installed++;
    }
    this.installed += installed;
    return installed;
  }

  private installAll(frame: Frame, opener: Opener, first: number, count: number): number {
    const { heap } = this;
    if (heap.writableInPlace(first, count)) {
      const target = heap.rawPages(first, count);
      opener.open(frame, target);
      // Read back from the heap (nothing else sees these pages before publish), so a page installed
      // at the wrong place changes the digest.
      this.digest?.add(first, count, target);
    } else {
      // A userfaultfd heap: UFFDIO_COPY makes the pages visible to the application at once, so the
      // digest takes them on the way in.
      const bytes = count * PAGE_SIZE;
      if (this.scratch.length < bytes) this.scratch = new Uint8Array(bytes);
      const plaintext = this.scratch.subarray(0, bytes);
      opener.open(frame, plaintext);
      this.digest?.add(first, count, plaintext);
      heap.installPages(first, plaintext);
    }
    this.publish(first, count);
    this.installed += count;
    return count;
  }
}

import type { Sealer } from '../crypto/seal.js';
import { PAGE_SIZE } from '../heap/constants.js';
import type { PageSetDigest } from '../heap/page-set-digest.js';
import type { SecureHeap } from '../heap/secure-heap.js';
import { FrameType } from '../wire/frame.js';
import type { FramedSocket } from '../wire/framed-socket.js';

/** One direction of one connection: where pages go and the key that seals them. */
export interface PageSink {
  channel: FramedSocket;
  sealer: Sealer;
}

/**
 * Seals and sends pages [first, first + count) (one extent, inside one segment) and records their
 * current version in the digest. Returns the bytes of page data sent.
 */
export async function sendExtent(
  sink: PageSink,
  heap: SecureHeap,
  first: number,
  count: number,
  epoch: number,
  digest: PageSetDigest | null,
): Promise<number> {
  const pages = heap.rawPages(first, count);
  digest?.add(first, count, pages);
  const frame = sink.sealer.seal({ type: FrameType.Pages, firstPage: first, pageCount: count, epoch }, pages);
  await sink.channel.send(frame, () => sink.sealer.recycle(frame));
  return count * PAGE_SIZE;
}

import { createHash, type Hash } from 'node:crypto';

/**
 * The end-to-end check behind `verified`: SHA-256 over every transferred extent in order, each as
 * u64le(first page) || u64le(page count) || page bytes. The source feeds it the pages it seals; the
 * destination feeds it the pages read back from its own heap after installing them, so a page installed
 * at the wrong place, lost or corrupted after decryption changes the result. It equals
 * `SecureHeap.digest(allocated, extentPages)` computed over a whole heap.
 */
export class ContentDigest {
  private readonly hash: Hash = createHash('sha256');
  private readonly prefix = Buffer.alloc(16);

  update(first: number, count: number, bytes: Uint8Array): void {
    this.prefix.writeBigUInt64LE(BigInt(first), 0);
    this.prefix.writeBigUInt64LE(BigInt(count), 8);
    this.hash.update(this.prefix);
    this.hash.update(bytes);
  }

  hex(): string {
    return this.hash.digest('hex');
  }
}

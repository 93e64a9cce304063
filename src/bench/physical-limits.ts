import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { monotonicMs } from '../util/clock.js';

/**
 * The machine's own ceilings, measured in the same run as the migrations they bound: single-core
 * AES-256-GCM sealing at the extent size, SHA-256 (the verify digest) and memcpy.
 */
export interface PhysicalLimits {
  aesGcmMBps: number;
  sha256MBps: number;
  memcpyMBps: number;
  recordBytes: number;
}

function bestOf(runs: number, bytes: number, fn: () => void): number {
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < runs; i++) {
    const t0 = monotonicMs();
    fn();
    best = Math.min(best, monotonicMs() - t0);
  }
  return bytes / 1e6 / (best / 1000);
}

export function measurePhysicalLimits(totalBytes = 256 * 2 ** 20, recordBytes = 256 * 1024): PhysicalLimits {
  const src = Buffer.alloc(totalBytes);
  randomBytes(1 << 20).copy(src);
  src.fill(src.subarray(0, 1 << 20), 1 << 20);
  const dst = Buffer.alloc(totalBytes);
  dst.fill(1);
  const key = randomBytes(32);
  const iv = Buffer.alloc(12);
  let counter = 0;
  const aesGcmMBps = bestOf(3, totalBytes, () => {
    for (let off = 0; off < totalBytes; off += recordBytes) {
      iv.writeUInt32BE(counter++, 8);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.update(src.subarray(off, off + recordBytes));
      cipher.final();
      cipher.getAuthTag();
    }
  });
  const sha256MBps = bestOf(3, totalBytes, () => {
    const hash = createHash('sha256');
    for (let off = 0; off < totalBytes; off += recordBytes) hash.update(src.subarray(off, off + recordBytes));
    hash.digest();
  });
  const memcpyMBps = bestOf(3, totalBytes, () => {
    src.copy(dst);
  });
  return { aesGcmMBps, sha256MBps, memcpyMBps, recordBytes };
}

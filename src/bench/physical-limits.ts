import { createCipheriv, randomBytes } from 'node:crypto';
import { dataPath, LEAF_BYTES } from '../crypto/data-path.js';
import { PAGE_SIZE } from '../heap/constants.js';
import { monotonicMs } from '../util/clock.js';

/**
 * The machine's own ceilings, measured in the same run as the migrations they bound, one core each:
 * AES-256-GCM sealing at the extent size and SHA-256 as the migration's data path does them (the
 * native addon where it loads, src/crypto/data-path.ts), AES-256-GCM through node:crypto's API for
 * comparison (it allocates every output: ~1/4 of the native rate here), and memcpy.
 */
export interface PhysicalLimits {
  /** The faster of the two AES-256-GCM figures: the primitive's rate on this machine. */
  aesGcmMBps: number;
  /** Cipher.update into a new buffer per record, then final and the tag. */
  aesGcmNodeCryptoMBps: number;
  /** Which data path produced `aesGcmMBps` and `sha256MBps`. */
  dataPath: 'native' | 'node:crypto';
  /** SHA-256 page leaves (the verify digest's work per byte). */
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
  const aesGcmNodeCryptoMBps = bestOf(3, totalBytes, () => {
    for (let off = 0; off < totalBytes; off += recordBytes) {
      iv.writeUInt32BE(counter++, 8);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.update(src.subarray(off, off + recordBytes));
      cipher.final();
      cipher.getAuthTag();
    }
  });
  const path = dataPath();
  const aead = path.aead(key);
  const out = Buffer.alloc(recordBytes + 16);
  const aesGcmPathMBps = bestOf(3, totalBytes, () => {
    for (let off = 0; off < totalBytes; off += recordBytes) {
      iv.writeUInt32BE(counter++, 8);
      aead.seal(iv, [], [src.subarray(off, off + recordBytes)], () => out);
    }
  });
  const leaves = new Uint8Array((recordBytes / PAGE_SIZE) * LEAF_BYTES);
  const sha256MBps = bestOf(3, totalBytes, () => {
    for (let off = 0; off < totalBytes; off += recordBytes) {
      path.pageLeaves(src.subarray(off, off + recordBytes), off / PAGE_SIZE, leaves);
    }
  });
  const memcpyMBps = bestOf(3, totalBytes, () => {
    src.copy(dst);
  });
  return {
    aesGcmMBps: Math.max(aesGcmPathMBps, aesGcmNodeCryptoMBps),
    aesGcmNodeCryptoMBps,
    dataPath: path.name,
    sha256MBps,
    memcpyMBps,
    recordBytes,
  };
}

/** One line for people: the rates, and which implementation gave them. */
export function describeLimits(
  limits: Pick<PhysicalLimits, 'aesGcmMBps' | 'sha256MBps' | 'memcpyMBps'> & Partial<PhysicalLimits>,
): string {
  const how =
    limits.dataPath === undefined
      ? ''
      : ` (${limits.dataPath} data path${limits.aesGcmNodeCryptoMBps === undefined ? '' : `; through node:crypto's API ${limits.aesGcmNodeCryptoMBps.toFixed(0)} MB/s`})`;
  return `AES-256-GCM ${limits.aesGcmMBps.toFixed(0)} MB/s${how}, SHA-256 page leaves ${limits.sha256MBps.toFixed(0)} MB/s, memcpy ${limits.memcpyMBps.toFixed(0)} MB/s`;
}

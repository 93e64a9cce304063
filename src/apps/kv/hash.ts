import { fmix32 } from '../../util/fmix32.js';
/**
 * MurmurHash3 (x86, 32-bit) of a byte string. Seeded per store with a random value, so that a client
 * cannot precompute keys that all land in one bucket of a given store.
 */
export function murmur3(key: Uint8Array, seed: number): number {
  let h = seed | 0;
  const tail = key.length & ~3;
  for (let i = 0; i < tail; i += 4) {
    const k = key[i]! | (key[i + 1]! << 8) | (key[i + 2]! << 16) | (key[i + 3]! << 24);
    h ^= scramble(k);
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const rest = key.length & 3;
  if (rest > 0) {
    let k = key[tail]!;
    if (rest > 1) k |= key[tail + 1]! << 8;
    if (rest > 2) k |= key[tail + 2]! << 16;
    h ^= scramble(k);
  }
  return fmix32(h ^ key.length);
}

function scramble(k: number): number {
  let s = Math.imul(k, 0xcc9e2d51);
  s = (s << 15) | (s >>> 17);
  return Math.imul(s, 0x1b873593);
}

/** One step of xorshift32: the next state (and output) after `x`, never 0 when `x` is not. */
export function xorshift32(x: number): number {
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  return x >>> 0;
}

/**
 * A deterministic xorshift32 stream, never 0: the benchmarks' heap contents and access orders are the
 * same in every process and every run.
 */
export function xorshift(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => (x = xorshift32(x));
}

/** Maps a uniform u32 onto [0, n) without the bias of `%` (n up to 2^32). */
export const below = (random: number, n: number): number => Math.floor((random / 4294967296) * n);

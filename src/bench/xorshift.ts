/**
 * A deterministic xorshift32 stream, never 0: the benchmarks' heap contents and access orders are the
 * same in every process and every run.
 */
export function xorshift(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

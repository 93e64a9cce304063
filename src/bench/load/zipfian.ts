/**
 * YCSB's scrambled zipfian generator (Gray et al., "Quickly generating billion-record synthetic
 * databases", as in YCSB's ZipfianGenerator with theta 0.99): item ranks follow a zipfian law, and a
 * hash of the rank spreads the popular items over the key space instead of packing them at its start.
 */
const THETA = 0.99;

export class ScrambledZipfian {
  private readonly alpha = 1 / (1 - THETA);
  private readonly zetaN: number;
  private readonly eta: number;
  private readonly half: number;

  constructor(
    private readonly items: number,
    private readonly random: () => number = Math.random,
  ) {
    if (!(Number.isSafeInteger(items) && items >= 1)) throw new RangeError(`zipfian over ${items} items`);
    let zeta = 0;
    for (let i = 1; i <= items; i++) zeta += 1 / i ** THETA;
    this.zetaN = zeta;
    const zeta2 = 1 + 1 / 2 ** THETA;
    this.eta = (1 - (2 / items) ** (1 - THETA)) / (1 - zeta2 / zeta);
    this.half = 1 + 0.5 ** THETA;
  }

  /** An item in [0, items). */
  next(): number {
    const u = this.random();
    const uz = u * this.zetaN;
    let rank: number;
    if (uz < 1) rank = 0;
    else if (uz < this.half) rank = 1;
    else rank = Math.floor(this.items * (this.eta * u - this.eta + 1) ** this.alpha);
    return fnv1a64Mod(Math.min(rank, this.items - 1), this.items);
  }
}

/** FNV-1a over the 8 bytes of `value`, reduced modulo n (YCSB's fnvhash64 scrambling). */
function fnv1a64Mod(value: number, n: number): number {
  let hash = 0xcbf29ce484222325n;
  let v = BigInt(value);
  for (let i = 0; i < 8; i++) {
    hash ^= v & 0xffn;
    hash = (hash * 0x100000001b3n) & 0xffffffffffffffffn;
    v >>= 8n;
  }
  return Number(hash % BigInt(n));
}

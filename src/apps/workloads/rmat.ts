/** The quadrant probabilities a, b, c, d of R-MAT (Chakrabarti et al.), as Graph500 uses them. */
export const RMAT_QUADRANTS = [0.57, 0.19, 0.19, 0.05] as const;

/** R-MAT levels one table lookup decides, from 16 random bits (two lookups per u32). */
const LEVELS_PER_LOOKUP = 4;
const LOOKUP_BITS = 16;
/** An odd multiplier: id * M + K modulo 2^scale is a bijection that scatters the hubs over the ids. */
const PERMUTE_MULTIPLIER = 0x9e3779b1;
const PERMUTE_OFFSET = 0x7f4a7c15;

/**
 * The inverse distribution of four R-MAT levels at 2^-16 resolution: entry r holds the source's and
 * the destination's four bits (src << 4 | dst) that 16 uniform bits r pick. Each of the 256 quadrant
 * sequences gets its probability's share of the 65536 entries, rounded by largest remainder; only the
 * rarest sequences (below 2^-16, all of them mostly quadrant d) are off, by less than 2^-16 each.
 */
function levelTable(): Uint8Array {
  const outcomes = 4 ** LEVELS_PER_LOOKUP;
  const entries = 2 ** LOOKUP_BITS;
  const shares = Array.from({ length: outcomes }, (_, outcome) => {
    let probability = 1;
    let src = 0;
    let dst = 0;
    for (let level = 0; level < LEVELS_PER_LOOKUP; level++) {
      const quadrant = (outcome >>> (2 * level)) & 3;
      probability *= RMAT_QUADRANTS[quadrant]!;
      src = (src << 1) | (quadrant >>> 1);
      dst = (dst << 1) | (quadrant & 1);
    }
    const exact = probability * entries;
    return { bits: (src << LEVELS_PER_LOOKUP) | dst, count: Math.floor(exact), remainder: exact % 1 };
  });
  let missing = entries - shares.reduce((sum, share) => sum + share.count, 0);
  for (const share of [...shares].sort((x, y) => y.remainder - x.remainder)) {
    if (missing-- <= 0) break;
    share.count++;
  }
  const table = new Uint8Array(entries);
  let entry = 0;
  for (const { bits, count } of shares) {
    table.fill(bits, entry, entry + count);
    entry += count;
  }
  return table;
}

let sharedTable: Uint8Array | null = null;

/**
 * A deterministic stream of R-MAT edges over 2^scale vertices: the same scale and seed give the same
 * edges in the same order, so a build can count degrees in one pass and place the edges in a second
 * instead of holding them. Vertex ids are scattered by a fixed bijection (as Graph500 permutes them),
 * so that the hubs do not all sit in the first pages of the arrays. Duplicates and self-loops are
 * kept, as R-MAT makes them.
 */
export class RmatGenerator {
  /** The last edge's endpoints. */
  src = 0;
  dst = 0;
  private readonly table: Uint8Array;
  private readonly randomWords: number;
  /** Levels drawn beyond the scale (lookups come in fours), dropped from the low end. */
  private readonly extraLevels: number;
  private readonly mask: number;
  // xorshift128's four words: xorshift32's period (2^32) is shorter than the draws of a multi-GiB
  // graph. A typed array keeps them raw int32 (fields would box half the values).
  private readonly state = new Int32Array(4);

  constructor(
    readonly scale: number,
    seed: number,
  ) {
    if (!(Number.isInteger(scale) && scale >= 1 && scale <= 31))
      throw new RangeError(`bad R-MAT scale ${scale}`);
    this.table = sharedTable ??= levelTable();
    const lookups = Math.ceil(scale / LEVELS_PER_LOOKUP);
    this.randomWords = Math.ceil(lookups / 2);
    this.extraLevels = this.randomWords * 2 * LEVELS_PER_LOOKUP - scale;
    this.mask = 2 ** scale - 1;
    // splitmix32 spreads one seed over the four words (never all zero: the last is forced odd).
    let s = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      s = (s + 0x9e3779b9) >>> 0;
      let h = Math.imul(s ^ (s >>> 16), 0x85ebca6b);
      h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
      this.state[i] = h ^ (h >>> 16);
    }
    this.state[3]! |= 1;
  }

  /** Draws the next edge into src and dst. */
  next(): void {
    const table = this.table;
    // Up to 32 levels in int32s; the extra low levels are shifted out (levels are independent).
    let src = 0;
    let dst = 0;
    for (let word = 0; word < this.randomWords; word++) {
      const random = this.random();
      const high = table[random >>> LOOKUP_BITS]!;
      const low = table[random & 0xffff]!;
      src = (src << 8) | ((high >>> 4) << 4) | (low >>> 4);
      dst = (dst << 8) | ((high & 15) << 4) | (low & 15);
    }
    src >>>= this.extraLevels;
    dst >>>= this.extraLevels;
    this.src = (Math.imul(src, PERMUTE_MULTIPLIER) + PERMUTE_OFFSET) & this.mask;
    this.dst = (Math.imul(dst, PERMUTE_MULTIPLIER) + PERMUTE_OFFSET) & this.mask;
  }

  private random(): number {
    const state = this.state;
    const t = state[0]! ^ (state[0]! << 11);
    const w = state[3]!;
    state[0] = state[1]!;
    state[1] = state[2]!;
    state[2] = w;
    state[3] = w ^ (w >>> 19) ^ (t ^ (t >>> 8));
    return state[3]!;
  }
}

import { fmix32 } from '../../util/fmix32.js';

/**
 * An order-independent digest of a workload's content: the sum, modulo 2^32, of a mixed hash of every
 * item (a key and a value, both u32). Adding and removing an item are O(1), so a workload keeps the
 * digest current on every write and a full scan must arrive at the same figure: a page that came back
 * stale or damaged after a migration makes the two differ (with probability 1 - 2^-32).
 */
export function itemHash(key: number, value: number): number {
  return fmix32(Math.imul(key, 0x9e3779b1) ^ value);
}

export class ContentDigest {
  constructor(public value = 0) {}

  add(key: number, value: number): void {
    this.value = (this.value + itemHash(key, value)) >>> 0;
  }

  remove(key: number, value: number): void {
    this.value = (this.value - itemHash(key, value)) >>> 0;
  }

  /** An item's value changed from `before` to `after`. */
  replace(key: number, before: number, after: number): void {
    this.value = (this.value - itemHash(key, before) + itemHash(key, after)) >>> 0;
  }
}

export const formatDigest = (digest: number): string => digest.toString(16).padStart(8, '0');

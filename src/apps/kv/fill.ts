import { randomFillSync } from 'node:crypto';
import { type HeapAllocator, HeapFullError, MAX_ALLOCATION_BYTES } from '../../heap/allocator.js';
import { PAGE_SIZE } from '../../heap/constants.js';
import type { SecureHeap } from '../../heap/secure-heap.js';
import type { KvStore } from './kv-store.js';

export interface FillOptions {
  /** Bytes per value (default 1024). */
  valueSize?: number;
  /** Keys are `<keyPrefix><n>` (default `key:`). */
  keyPrefix?: string;
  /** First n; by default the store's size, so that a second fill continues the numbering. */
  firstIndex?: number;
  /** Visit at most this many numbers (DEBUG POPULATE's count); by default only memory bounds the fill. */
  count?: number;
}

export interface FillResult {
  /** Keys inserted (numbers whose key already existed are skipped and not counted). */
  keys: number;
  /** Key and value bytes inserted. */
  bytes: number;
  /** True if the fill stopped because it reached its memory bound rather than `count`. */
  memoryBound: boolean;
}

/** The fill stops below this share of the heap, leaving room for the table to grow and to serve. */
const HEAP_SHARE = 0.92;
const VALUE_POOL_BYTES = 4 * 1024 * 1024;
/** Inserts between two looks at the allocator's page count. */
const MAX_BATCH = 65536;

/**
 * Fills the store with keys `key:<n>` and pseudo-random values until the allocator's pages in use
 * reach `targetBytes` or 92 % of the heap, whichever is less; never fails with HeapFullError. Values
 * are slices of one random pool at varying offsets, so filling costs copies, not random generation.
 */
export function fillStore(
  store: KvStore,
  heap: SecureHeap,
  allocator: HeapAllocator,
  targetBytes: number,
  options: FillOptions = {},
): FillResult {
  const valueSize = options.valueSize ?? 1024;
  const prefix = options.keyPrefix ?? 'key:';
  const count = options.count ?? Number.POSITIVE_INFINITY;
  if (!(Number.isInteger(valueSize) && valueSize >= 0 && valueSize <= MAX_ALLOCATION_BYTES)) {
    throw new RangeError(`value size ${valueSize} is not a byte count up to ${MAX_ALLOCATION_BYTES}`);
  }
  const limit = Math.min(targetBytes, Math.floor(heap.byteLength * HEAP_SHARE));
  const pool = randomFillSync(Buffer.allocUnsafe(Math.max(VALUE_POOL_BYTES, valueSize + 64 * 1024)));
  const offsets = pool.length - valueSize + 1;
  const usedBytes = (): number => allocator.stats().allocatedPages * PAGE_SIZE;

  const result: FillResult = { keys: 0, bytes: 0, memoryBound: false };
  let n = options.firstIndex ?? store.size;
  let visited = 0;
  let used = usedBytes();
  // What one key costs at least; the allocator's page count refines it after every batch.
  const minBytesPerKey = valueSize + prefix.length + 32;
  let bytesPerKey = minBytesPerKey;
  while (visited < count) {
    if (used >= limit) {
      result.memoryBound = true;
      break;
    }
    // Half of what should fit, so that the batches shrink as the fill approaches its bound.
    const batch = Math.min(
      MAX_BATCH,
      count - visited,
      Math.max(1, Math.floor((limit - used) / bytesPerKey / 2)),
    );
    const keysBefore = result.keys;
    for (let i = 0; i < batch; i++, n++, visited++) {
      const key = Buffer.from(`${prefix}${n}`, 'latin1');
      const offset = (n * 4099) % offsets;
      try {
        if (!store.setIfAbsent(key, pool.subarray(offset, offset + valueSize))) continue;
      } catch (err) {
        if (!(err instanceof HeapFullError)) throw err;
        result.memoryBound = true;
        return result;
      }
      result.keys++;
      result.bytes += key.length + valueSize;
    }
    const nowUsed = usedBytes();
    const inserted = result.keys - keysBefore;
    if (inserted > 0) bytesPerKey = Math.max(minBytesPerKey, (nowUsed - used) / inserted);
    used = nowUsed;
  }
  return result;
}

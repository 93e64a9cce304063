import { randomInt } from 'node:crypto';
import { type HeapAllocator, HeapFullError, MAX_ALLOCATION_BYTES } from '../../heap/allocator.js';
import { PAGE_SIZE } from '../../heap/constants.js';
import type { HeapRange } from '../../heap/heap-range.js';
import type { SecureHeap } from '../../heap/secure-heap.js';
import { murmur3 } from './hash.js';
import { KvFormatError, KvValueError } from './kv-errors.js';
import { INT64_MAX, INT64_MIN, parseRedisInteger } from './redis-integer.js';

/**
 * A hash table that lives entirely in the SecureHeap, so that migrating the heap pages migrates the
 * store. Separate chaining; the table doubles when the load factor passes 1 and, as in Redis's dict,
 * moves its entries to the new bucket array incrementally (a few buckets per write), so that no
 * single command pays for rehashing millions of keys.
 *
 * Header (allocator root slot 0), all little-endian:
 *   0 magic u32 | 4 layout u32 | 8 hash seed u32 | 12 zero u32 | 16 size u64
 *   24 buckets u64 | 32 bucket count u64          (the table insertions go to)
 *   40 old buckets u64 | 48 old bucket count u64  (the table being drained; 0 when not rehashing)
 *   56 rehash index u64                           (next old bucket to move)
 * Bucket array: one u64 per bucket, the address of the first entry or 0.
 * Entry (one allocation): 0 next u64 | 8 key length u32 | 12 hash u32 | 16 value length u32 |
 *   20 zero u32 | 24 key bytes, value bytes.
 * The allocator marks a free chunk at offset 8 with a value that always has bit 30 set and checks for
 * it on free; a key length (< 2^28, the largest allocation) can never be mistaken for it, a hash could.
 * For the same reason bucket arrays are at least a page: pages are runs, which carry no mark.
 * Because `next` is at offset 0, "the u64 that points at an entry" is either a bucket slot or the
 * previous entry's own address: lookups return that link address, which makes unlinking uniform.
 */
export const KV_ROOT_SLOT = 0;
const MAGIC = 0x3153564b; // "KVS1"
const LAYOUT_VERSION = 1;
const HEADER_BYTES = 64;
const H_SIZE = 16;
const H_BUCKETS = 24;
const H_BUCKET_COUNT = 32;
const H_OLD_BUCKETS = 40;
const H_OLD_BUCKET_COUNT = 48;
const H_REHASH_INDEX = 56;

const ENTRY_HEADER = 24;
const E_KEY_LENGTH = 8;
const E_HASH = 12;
const E_VALUE_LENGTH = 16;

const DEFAULT_INITIAL_BUCKETS = 1024;
/** 256 MiB of bucket array; past 2^25 buckets the chains simply grow longer. */
const MAX_BUCKETS = 2 ** 25;
/** Old buckets moved per write while rehashing; 2 finishes a rehash before the next one is due. */
const REHASH_STEPS_PER_WRITE = 2;
/** A replacement reuses the old entry when it fits and would not waste more than half of it. */
const IN_PLACE_SLACK = 2;

export interface KvStoreOptions {
  /** Bucket count of a new store (a power of two); small values let tests exercise growth. */
  initialBuckets?: number;
}

export interface KvStoreStats {
  keys: number;
  buckets: number;
  /** 1 while entries are being moved to a doubled bucket array. */
  rehashing: number;
}

export class KvStore {
  private count: number;
  private buckets: number;
  private bucketCount: number;
  private oldBuckets: number;
  private oldBucketCount: number;
  private rehashIndex: number;
  private readonly seed: number;
  private readonly entryHeader = Buffer.alloc(ENTRY_HEADER);
  /** After a failed growth (heap full), wait for this size before trying again. */
  private growthRetrySize = 0;

  private constructor(
    private readonly heap: SecureHeap,
    private readonly allocator: HeapAllocator,
    private readonly header: number,
  ) {
    if (
      !(header % 8 === 0 && header + HEADER_BYTES <= heap.byteLength) ||
      heap.readU32(header) !== MAGIC ||
      heap.readU32(header + 4) !== LAYOUT_VERSION
    ) {
      throw new KvFormatError('the heap holds no kv store (root slot 0 has no kv header)');
    }
    this.seed = heap.readU32(header + 8);
    this.count = heap.readU64(header + H_SIZE);
    this.buckets = heap.readU64(header + H_BUCKETS);
    this.bucketCount = heap.readU64(header + H_BUCKET_COUNT);
    this.oldBuckets = heap.readU64(header + H_OLD_BUCKETS);
    this.oldBucketCount = heap.readU64(header + H_OLD_BUCKET_COUNT);
    this.rehashIndex = heap.readU64(header + H_REHASH_INDEX);
    if (!isBucketCount(this.bucketCount) || (this.oldBuckets !== 0 && !isBucketCount(this.oldBucketCount))) {
      throw new KvFormatError('the kv header is damaged (bucket count is not a power of two)');
    }
  }

  /** A new, empty store whose header is recorded in allocator root slot 0. */
  static create(heap: SecureHeap, allocator: HeapAllocator, options: KvStoreOptions = {}): KvStore {
    const bucketCount = options.initialBuckets ?? DEFAULT_INITIAL_BUCKETS;
    if (!isBucketCount(bucketCount)) {
      throw new RangeError(`initial bucket count ${bucketCount} is not a power of two up to ${MAX_BUCKETS}`);
    }
    const buckets = allocateBuckets(heap, allocator, bucketCount);
    let header: number;
    try {
      header = allocator.alloc(HEADER_BYTES);
    } catch (err) {
      allocator.free(buckets);
      throw err;
    }
    heap.mutableBytes(header, HEADER_BYTES).fill(0);
    heap.writeU32(header, MAGIC);
    heap.writeU32(header + 4, LAYOUT_VERSION);
    heap.writeU32(header + 8, randomInt(2 ** 32 - 1));
    heap.writeU64(header + H_BUCKETS, buckets);
    heap.writeU64(header + H_BUCKET_COUNT, bucketCount);
    allocator.setRoot(KV_ROOT_SLOT, header);
    return new KvStore(heap, allocator, header);
  }

  /** Re-opens the store recorded in root slot 0 (after the heap pages arrived on a destination). */
  static attach(heap: SecureHeap, allocator: HeapAllocator): KvStore {
    const header = allocator.getRoot(KV_ROOT_SLOT);
    if (header === 0) throw new KvFormatError('the heap holds no kv store (root slot 0 is empty)');
    return new KvStore(heap, allocator, header);
  }

  get size(): number {
    return this.count;
  }

  /** The heap bytes `attach` reads besides the allocator's root slot: the header. */
  attachReads(): HeapRange[] {
    return [{ addr: this.header, bytes: HEADER_BYTES }];
  }

  /** A copy of the value, or null. */
  get(key: Buffer): Buffer | null {
    const link = this.findLink(key, this.hash(key));
    if (link < 0) return null;
    const entry = this.heap.readU64(link);
    const keyLength = this.heap.readU32(entry + E_KEY_LENGTH);
    const value = Buffer.allocUnsafe(this.heap.readU32(entry + E_VALUE_LENGTH));
    this.heap.readInto(entry + ENTRY_HEADER + keyLength, value);
    return value;
  }

  exists(key: Buffer): boolean {
    return this.findLink(key, this.hash(key)) >= 0;
  }

  /** Inserts or replaces. On HeapFullError nothing has changed. */
  set(key: Buffer, value: Buffer): void {
    this.rehashSteps(REHASH_STEPS_PER_WRITE);
    const hash = this.hash(key);
    const link = this.findLink(key, hash);
    if (link >= 0) this.replace(link, key, value, hash);
    else this.insert(this.newEntry(key, value, hash), hash);
  }

  /** Inserts only if the key is absent (SETNX); true if inserted. On HeapFullError nothing has changed. */
  setIfAbsent(key: Buffer, value: Buffer): boolean {
    this.rehashSteps(REHASH_STEPS_PER_WRITE);
    const hash = this.hash(key);
    if (this.findLink(key, hash) >= 0) return false;
    this.insert(this.newEntry(key, value, hash), hash);
    return true;
  }

  /** Sets every pair, or none of them if the heap cannot hold them all (MSET is atomic). */
  setMany(pairs: readonly (readonly [Buffer, Buffer])[]): void {
    const hashes = pairs.map(([key]) => this.hash(key));
    const entries: number[] = [];
    try {
      for (const [i, [key, value]] of pairs.entries()) entries.push(this.newEntry(key, value, hashes[i]!));
    } catch (err) {
      for (const entry of entries) this.allocator.free(entry);
      throw err;
    }
    for (const [i, [key]] of pairs.entries()) {
      this.rehashSteps(REHASH_STEPS_PER_WRITE);
      const hash = hashes[i]!;
      const link = this.findLink(key, hash);
      if (link >= 0) this.relink(link, entries[i]!);
      else this.insert(entries[i]!, hash);
    }
  }

  delete(key: Buffer): boolean {
    this.rehashSteps(REHASH_STEPS_PER_WRITE);
    const link = this.findLink(key, this.hash(key));
    if (link < 0) return false;
    const entry = this.heap.readU64(link);
    this.heap.writeU64(link, this.heap.readU64(entry));
    this.allocator.free(entry);
    this.setSize(this.count - 1);
    return true;
  }

  /** INCRBY with Redis semantics; see incrBy. */
  incr(key: Buffer, by = 1): number {
    return Number(this.incrBy(key, BigInt(by)));
  }

  /**
   * Adds `by` to the 64-bit integer stored at `key` (a missing key counts as 0) and stores the result
   * as its decimal text, exactly as Redis does; returns the new value.
   */
  incrBy(key: Buffer, by: bigint): bigint {
    const current = this.get(key);
    const value = current === null ? 0n : parseRedisInteger(current);
    if (value === null) throw new KvValueError('ERR value is not an integer or out of range');
    const result = value + by;
    if (result < INT64_MIN || result > INT64_MAX)
      throw new KvValueError('ERR increment or decrement would overflow');
    this.set(key, Buffer.from(result.toString(), 'latin1'));
    return result;
  }

  /** Copies of every pair, in table order. The store must not change while this is iterated. */
  *entries(): Iterable<[Buffer, Buffer]> {
    if (this.oldBuckets !== 0) yield* this.tableEntries(this.oldBuckets, this.oldBucketCount);
    yield* this.tableEntries(this.buckets, this.bucketCount);
  }

  stats(): KvStoreStats {
    return { keys: this.count, buckets: this.bucketCount, rehashing: this.oldBuckets === 0 ? 0 : 1 };
  }

  private *tableEntries(buckets: number, count: number): Iterable<[Buffer, Buffer]> {
    for (let i = 0; i < count; i++) {
      for (let entry = this.heap.readU64(buckets + i * 8); entry !== 0; entry = this.heap.readU64(entry)) {
        const keyLength = this.heap.readU32(entry + E_KEY_LENGTH);
        const key = Buffer.allocUnsafe(keyLength);
        const value = Buffer.allocUnsafe(this.heap.readU32(entry + E_VALUE_LENGTH));
        this.heap.readInto(entry + ENTRY_HEADER, key);
        this.heap.readInto(entry + ENTRY_HEADER + keyLength, value);
        yield [key, value];
      }
    }
  }

  private hash(key: Buffer): number {
    return murmur3(key, this.seed);
  }

  /** The address of the u64 that points at the entry for `key` (a bucket slot or an entry), or -1. */
  private findLink(key: Buffer, hash: number): number {
    if (this.oldBuckets !== 0) {
      // Old buckets below the rehash index are already empty, so searching them costs one read.
      const link = this.findInChain(this.oldBuckets + (hash & (this.oldBucketCount - 1)) * 8, key, hash);
      if (link >= 0) return link;
    }
    return this.findInChain(this.buckets + (hash & (this.bucketCount - 1)) * 8, key, hash);
  }

  private findInChain(slot: number, key: Buffer, hash: number): number {
    const heap = this.heap;
    let link = slot;
    for (let entry = heap.readU64(link); entry !== 0; link = entry, entry = heap.readU64(entry)) {
      if (
        heap.readU32(entry + E_HASH) === hash &&
        heap.readU32(entry + E_KEY_LENGTH) === key.length &&
        heap.equals(entry + ENTRY_HEADER, key)
      ) {
        return link;
      }
    }
    return -1;
  }

  /** Allocates and fills an unlinked entry; throws HeapFullError before anything changes. */
  private newEntry(key: Buffer, value: Buffer, hash: number): number {
    const length = ENTRY_HEADER + key.length + value.length;
    if (length > MAX_ALLOCATION_BYTES) {
      throw new KvValueError(
        `ERR string exceeds maximum allowed size (${MAX_ALLOCATION_BYTES} bytes per entry)`,
      );
    }
    const entry = this.allocator.alloc(length);
    const header = this.entryHeader;
    header.writeUInt32LE(0, 0);
    header.writeUInt32LE(0, 4);
    header.writeUInt32LE(key.length, E_KEY_LENGTH);
    header.writeUInt32LE(hash, E_HASH);
    header.writeUInt32LE(value.length, E_VALUE_LENGTH);
    header.writeUInt32LE(0, 20);
    const bytes = this.heap.mutableBytes(entry, length);
    bytes.set(header, 0);
    bytes.set(key, ENTRY_HEADER);
    bytes.set(value, ENTRY_HEADER + key.length);
    return entry;
  }

  private replace(link: number, key: Buffer, value: Buffer, hash: number): void {
    const entry = this.heap.readU64(link);
    const needed = ENTRY_HEADER + key.length + value.length;
    const usable = this.allocator.usableSize(entry);
    if (needed <= usable && needed * IN_PLACE_SLACK >= usable) {
      this.heap.writeU32(entry + E_VALUE_LENGTH, value.length);
      this.heap.write(entry + ENTRY_HEADER + key.length, value);
      return;
    }
    this.relink(link, this.newEntry(key, value, hash));
  }

  /** Puts `replacement` where the entry at `link` was, and frees that entry. */
  private relink(link: number, replacement: number): void {
    const heap = this.heap;
    const old = heap.readU64(link);
    heap.writeU64(replacement, heap.readU64(old));
    heap.writeU64(link, replacement);
    this.allocator.free(old);
  }

  private insert(entry: number, hash: number): void {
    const slot = this.buckets + (hash & (this.bucketCount - 1)) * 8;
    this.heap.writeU64(entry, this.heap.readU64(slot));
    this.heap.writeU64(slot, entry);
    this.setSize(this.count + 1);
    if (this.count > this.bucketCount) this.startGrowth();
  }

  private setSize(size: number): void {
    this.count = size;
    this.heap.writeU64(this.header + H_SIZE, size);
  }

  /** Doubles the bucket array; a full heap only postpones it (the store works at any load factor). */
  private startGrowth(): void {
    if (this.oldBuckets !== 0 || this.bucketCount >= MAX_BUCKETS || this.count < this.growthRetrySize) return;
    const doubled = this.bucketCount * 2;
    let buckets: number;
    try {
      buckets = allocateBuckets(this.heap, this.allocator, doubled);
    } catch (err) {
      if (!(err instanceof HeapFullError)) throw err;
      this.growthRetrySize = this.count + Math.max(1024, this.count >>> 3);
      return;
    }
    this.oldBuckets = this.buckets;
    this.oldBucketCount = this.bucketCount;
    this.buckets = buckets;
    this.bucketCount = doubled;
    this.rehashIndex = 0;
    const heap = this.heap;
    heap.writeU64(this.header + H_OLD_BUCKETS, this.oldBuckets);
    heap.writeU64(this.header + H_OLD_BUCKET_COUNT, this.oldBucketCount);
    heap.writeU64(this.header + H_REHASH_INDEX, 0);
    heap.writeU64(this.header + H_BUCKETS, buckets);
    heap.writeU64(this.header + H_BUCKET_COUNT, doubled);
  }

  /** Moves up to `steps` old buckets (skipping at most 10 empty ones per step, as Redis does). */
  private rehashSteps(steps: number): void {
    if (this.oldBuckets === 0) return;
    const heap = this.heap;
    const mask = this.bucketCount - 1;
    let emptyVisits = steps * 10;
    for (let moved = 0; moved < steps && this.rehashIndex < this.oldBucketCount; this.rehashIndex++) {
      const slot = this.oldBuckets + this.rehashIndex * 8;
      let entry = heap.readU64(slot);
      if (entry === 0) {
        if (--emptyVisits === 0) break;
        continue;
      }
      while (entry !== 0) {
        const next = heap.readU64(entry);
        const target = this.buckets + (heap.readU32(entry + E_HASH) & mask) * 8;
        heap.writeU64(entry, heap.readU64(target));
        heap.writeU64(target, entry);
        entry = next;
      }
      heap.writeU64(slot, 0);
      moved++;
    }
    if (this.rehashIndex < this.oldBucketCount) {
      heap.writeU64(this.header + H_REHASH_INDEX, this.rehashIndex);
      return;
    }
    this.allocator.free(this.oldBuckets);
    this.oldBuckets = 0;
    this.oldBucketCount = 0;
    this.rehashIndex = 0;
    heap.writeU64(this.header + H_OLD_BUCKETS, 0);
    heap.writeU64(this.header + H_OLD_BUCKET_COUNT, 0);
    heap.writeU64(this.header + H_REHASH_INDEX, 0);
  }
}

function isBucketCount(count: number): boolean {
  return Number.isInteger(count) && count >= 1 && count <= MAX_BUCKETS && (count & (count - 1)) === 0;
}

function allocateBuckets(heap: SecureHeap, allocator: HeapAllocator, count: number): number {
  const buckets = allocator.alloc(Math.max(count * 8, PAGE_SIZE));
  heap.mutableBytes(buckets, count * 8).fill(0);
  return buckets;
}

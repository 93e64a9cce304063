import type { HeapRange } from '../../heap/heap-range.js';
import { PAGE_SIZE } from '../../heap/constants.js';
import { itemHash } from './content-digest.js';
import { BPlusTree, BULK_LEAF_ENTRIES, INSERTED, NO_ROOM } from './btree-index.js';
import { below } from '../../util/random.js';
import type { Workload, WorkloadIo } from './workload.js';

const ROOT_MAGIC = 0x4254574c; // 'BTWL'
/** u32 words: magic, key limit, tree descriptor address (u64). */
const ROOT_BYTES = 16;
/** Share of the reads that are range scans (the rest are point lookups), and a scan's length. */
const RANGE_SHARE = 0.1;
export const RANGE_ENTRIES = 32;

/**
 * An ordered index: a B+-tree of u32 keys to u32 values (btree-index.ts), bulk-loaded from a sorted
 * run of even keys with random gaps, so that the odd keys between them can be inserted later. Each
 * operation draws a key uniformly below the largest loaded key: with probability writeShare it sets
 * that key to a random value (an insert when the key is new, which splits nodes and grows the heap;
 * an update of the nearest key in its leaf once the tree may not grow), otherwise it looks the key up
 * (90 %) or scans 32 entries from it in key order (10 %). A digest item is (key, value).
 */
export function createBtree(io: WorkloadIo): Workload {
  let tree: BPlusTree | null = null;
  let keyLimit = 0;
  const index = (): BPlusTree => {
    if (!tree) throw new Error('btree: not attached');
    return tree;
  };

  const write = (key: number, value: number): void => {
    const outcome = index().upsert(key, value);
    if (outcome === INSERTED) io.digest.add(key, value);
    else if (outcome === NO_ROOM) {
      const nearest = index().updateNearest(key, value);
      io.digest.replace(nearest.key, nearest.previous, value);
    } else io.digest.replace(key, outcome, value);
  };

  let rootBlock = 0;
  return {
    attachReads: (): HeapRange[] => [{ addr: rootBlock, bytes: ROOT_BYTES }, ...index().attachReads()],
    attach(root) {
      rootBlock = root;
      if (io.heap.readU32(root) !== ROOT_MAGIC) throw new Error('btree: the heap holds no btree workload');
      keyLimit = io.heap.readU32(root + 4);
      tree = BPlusTree.attach(io.heap, io.allocator, io.heap.readU64(root + 8));
    },
    create(targetBytes) {
      const entries = Math.max(1, Math.floor((targetBytes / PAGE_SIZE) * 0.99)) * BULK_LEAF_ENTRIES;
      // Gaps of 2..2·maxHalfGap keep every loaded key even and the last one below 2^32.
      const maxHalfGap = Math.max(1, Math.floor(2 ** 31 / entries));
      let key = -2;
      tree = BPlusTree.bulkLoad(io.heap, io.allocator, entries, (keys, values) => {
        for (let i = 0; i < keys.length; i++) {
          key += 2 + 2 * below(io.random(), maxHalfGap);
          const value = io.random();
          keys[i] = key;
          values[i] = value;
          io.digest.add(key, value);
        }
      });
      keyLimit = key + 1;
      const root = io.allocator.alloc(ROOT_BYTES);
      rootBlock = root;
      io.heap.writeU32(root, ROOT_MAGIC);
      io.heap.writeU32(root + 4, keyLimit);
      io.heap.writeU64(root + 8, tree.address);
      const { leaves, innerNodes } = tree.stats();
      return { root, items: entries, bytes: (leaves + innerNodes) * PAGE_SIZE };
    },
    run(ops, writeShare) {
      const lookups = index();
      const writeBelow = writeShare * 4294967296;
      const rangeBelow = RANGE_SHARE * 4294967296;
      const ignore = (): void => {};
      for (let op = 0; op < ops; op++) {
        if (io.random() < writeBelow) write(below(io.random(), keyLimit), io.random());
        else if (io.random() < rangeBelow) lookups.range(below(io.random(), keyLimit), RANGE_ENTRIES, ignore);
        else lookups.get(below(io.random(), keyLimit));
      }
    },
    scan() {
      let digest = 0;
      index().forEach((key, value) => {
        digest = (digest + itemHash(key, value)) >>> 0;
      });
      return digest;
    },
    stats() {
      if (!tree) return {};
      const { entries, ...shape } = tree.stats();
      return { items: entries, ...shape };
    },
  };
}

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  BPlusTree,
  BULK_LEAF_ENTRIES,
  INSERTED,
  LEAF_CAPACITY,
  NO_ROOM,
} from '../../../src/apps/workloads/btree-index.js';
import { createBtree } from '../../../src/apps/workloads/btree.js';
import { ContentDigest } from '../../../src/apps/workloads/content-digest.js';
import { HeapFullError } from '../../../src/heap/allocator.js';
import { xorshift } from '../../../src/util/random.js';
import { freshHeap } from '../../helpers/app-heap.js';

const MiB = 2 ** 20;

/** A tree of `count` even keys 0, 2, 4, ... with value key + 1, and the same entries in a Map. */
function evenTree(heapBytes: number, count: number, growthLimit?: number) {
  const { heap, allocator } = freshHeap(heapBytes);
  const model = new Map<number, number>();
  let next = 0;
  const tree = BPlusTree.bulkLoad(
    heap,
    allocator,
    count,
    (keys, values) => {
      for (let i = 0; i < keys.length; i++, next += 2) {
        keys[i] = next;
        values[i] = next + 1;
        model.set(next, next + 1);
      }
    },
    growthLimit === undefined ? {} : { growthLimit },
  );
  return { heap, allocator, tree, model };
}

function entriesOf(tree: BPlusTree): [number, number][] {
  const entries: [number, number][] = [];
  tree.forEach((key, value) => entries.push([key, value]));
  return entries;
}

const sortedModel = (model: Map<number, number>): [number, number][] =>
  [...model].sort((a, b) => a[0] - b[0]);

describe('btree: the B+-tree index', () => {
  test('stays sorted and agrees with a Map through many inserts, updates and splits', () => {
    const { tree, model } = evenTree(16 * MiB, BULK_LEAF_ENTRIES);
    const before = tree.stats();
    const random = xorshift(7);
    const put = (key: number, value: number) => {
      const previous = model.get(key);
      assert.equal(tree.upsert(key, value), previous === undefined ? INSERTED : previous, `upsert of ${key}`);
      model.set(key, value);
    };
    // Keys in a narrow range (new odd ones and existing even ones): leaves split all over it.
    for (let i = 0; i < 60_000; i++) put(random() % (8 * BULK_LEAF_ENTRIES), random());
    // Ascending keys past the end: each split leaves a half-full leaf behind, enough to split the root.
    for (let key = 8 * BULK_LEAF_ENTRIES; model.size < 200_000; key += 3) put(key, key);
    const after = tree.stats();
    assert.equal(before.height, 1);
    assert.equal(after.height, 3, 'inner nodes split');
    assert.ok(after.leaves > 2 * (model.size / LEAF_CAPACITY) * 0.9, 'leaves split');
    assert.equal(after.entries, model.size);
    assert.deepEqual(entriesOf(tree), sortedModel(model));
    for (const [key, value] of model) assert.equal(tree.get(key), value);
    assert.equal(tree.get(8 * BULK_LEAF_ENTRIES + 1), undefined);
  });

  test('range scans return the next keys in order, across leaves, up to the end', () => {
    const { tree, model } = evenTree(16 * MiB, 2 * BULK_LEAF_ENTRIES);
    const random = xorshift(11);
    for (let i = 0; i < 5_000; i++) {
      const key = (random() % (4 * BULK_LEAF_ENTRIES)) | 1;
      tree.upsert(key, 1);
      model.set(key, 1);
    }
    const all = sortedModel(model);
    for (const from of [0, 1, 777, all[all.length - 40]![0] + 1, all[all.length - 1]![0] + 1]) {
      const seen: [number, number][] = [];
      const visited = tree.range(from, 64, (key, value) => seen.push([key, value]));
      const first = all.findIndex(([key]) => key >= from);
      const expected = first === -1 ? [] : all.slice(first, first + 64);
      assert.equal(visited, expected.length);
      assert.deepEqual(seen, expected, `range from ${from}`);
    }
  });

  test('stops growing at its share of the heap: new keys get NO_ROOM, updates go on', () => {
    const { tree, allocator, model } = evenTree(2 * MiB, BULK_LEAF_ENTRIES, 0.95);
    const random = xorshift(3);
    let refused = 0;
    for (let i = 0; i < 200_000 && refused < 100; i++) {
      const key = random();
      const outcome = tree.upsert(key, 5);
      if (outcome === NO_ROOM) refused++;
      else model.set(key, 5);
    }
    assert.equal(refused, 100, 'the tree never ran out of room');
    const { allocatedPages, pageCount } = allocator.stats();
    assert.ok(allocatedPages <= pageCount * 0.95, `${allocatedPages} of ${pageCount} pages`);
    assert.ok(allocatedPages > pageCount * 0.9, `only ${allocatedPages} of ${pageCount} pages used`);
    const nearest = tree.updateNearest(12345, 99);
    model.set(nearest.key, 99);
    assert.deepEqual(entriesOf(tree), sortedModel(model));
  });

  test('a full heap (HeapFullError) refuses the insert and changes nothing', () => {
    const { tree, allocator, model } = evenTree(16 * MiB, BULK_LEAF_ENTRIES);
    // Fill the only leaf; the next new key needs a split.
    for (let key = 1; model.size < LEAF_CAPACITY; key += 2) {
      assert.equal(tree.upsert(key, 0), INSERTED);
      model.set(key, 0);
    }
    const pages = allocator.stats().allocatedPages;
    allocator.alloc = () => {
      throw new HeapFullError('heap full (test)');
    };
    assert.equal(tree.upsert(100_001, 0), NO_ROOM);
    assert.equal(allocator.stats().allocatedPages, pages);
    assert.deepEqual(entriesOf(tree), sortedModel(model));
  });

  test('a scan rejects leaves out of order', () => {
    const { heap, tree } = evenTree(4 * MiB, 4);
    assert.equal(tree.stats().height, 1);
    // The descriptor's word 1 is the root, here the only leaf; its keys start after a 16-byte header.
    const leafPage = heap.readU32(tree.address + 4);
    heap.writeU32(leafPage * 4096 + 16 + 4, 0); // keys 0, 0, 4, 6
    assert.throws(() => tree.forEach(() => {}), /damaged structure/);
  });
});

describe('btree: the workload', () => {
  test('a long write-only run in a nearly full heap never fails, and the scan agrees', () => {
    const { heap, allocator } = freshHeap(4 * MiB);
    const digest = new ContentDigest();
    const workload = createBtree({ heap, allocator, random: xorshift(5), digest });
    workload.create(Math.floor(4 * MiB * 0.9));
    for (let i = 0; i < 40; i++) workload.run(2000, 1);
    const { allocatedPages, pageCount } = allocator.stats();
    assert.ok(allocatedPages <= pageCount * 0.95);
    assert.equal(workload.scan(), digest.value);
  });
});

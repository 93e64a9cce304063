import { type HeapAllocator, HeapFullError } from '../../heap/allocator.js';
import { PAGE_SIZE } from '../../heap/constants.js';
import type { HeapRange } from '../../heap/heap-range.js';
import type { SecureHeap } from '../../heap/secure-heap.js';

/** A node is one heap page of u32 words: a 4-word header, then keys, then values or children. */
const NODE_WORDS = PAGE_SIZE / 4;
const HEADER_WORDS = 4;
const MAGIC = 0;
const COUNT = 1;
/** Leaves only: the page of the next leaf in key order, 0 at the end (page 0 is allocator metadata). */
const NEXT = 2;
const KEYS = HEADER_WORDS;
const LEAF_MAGIC = 0x4c454146; // 'LEAF'
const INNER_MAGIC = 0x494e4e52; // 'INNR'

/** Entries of a full leaf: keys and values fill the page. */
export const LEAF_CAPACITY = (NODE_WORDS - HEADER_WORDS) / 2;
const VALUES = KEYS + LEAF_CAPACITY;
/** Keys of a full inner node, which has one child more than keys. */
export const INNER_CAPACITY = Math.floor((NODE_WORDS - HEADER_WORDS - 1) / 2);
const CHILDREN = KEYS + INNER_CAPACITY;
/**
 * A bulk load fills nodes to 90 % (like a database's fill factor): the first inserts into a leaf
 * find room, instead of every insert splitting a full leaf.
 */
export const BULK_LEAF_ENTRIES = Math.floor(LEAF_CAPACITY * 0.9);
const BULK_INNER_CHILDREN = Math.floor((INNER_CAPACITY + 1) * 0.9);

/** The tree's descriptor block: u32 fields, by word. */
const Descriptor = {
  magic: 0,
  root: 1,
  height: 2,
  entries: 3,
  leaves: 4,
  innerNodes: 5,
  firstLeaf: 6,
} as const;
const DESCRIPTOR_BYTES = 32;
const DESCRIPTOR_MAGIC = 0x42545245; // 'BTRE'

/** upsert's answer when the key was new. */
export const INSERTED = -1;
/** upsert's answer when the key was new but the tree may not grow: nothing changed. */
export const NO_ROOM = -2;

export interface BPlusTreeOptions {
  /**
   * Inserts that need new pages stop once the allocator would hold more than this share of the heap
   * (the rest stays for whatever else lives there); HeapFullError below the share stops them too.
   */
  growthLimit?: number;
}

const damaged = (what: string): Error => new Error(`btree: damaged structure (${what})`);

/**
 * A B+-tree of u32 keys to u32 values in the SecureHeap. Nodes are single pages named by page
 * number; leaves are linked in key order for range scans and full scans; an inner node's key i is the
 * smallest key under child i + 1. Every access goes through heap views (one present test per node,
 * writes mark the node's page dirty), and the shape (root, height, counts) lives in a descriptor block,
 * so attach() finds the tree again after a migration. Keys are never deleted, so nodes are never freed.
 */
export class BPlusTree {
  /** Pages of the last descent, root first, and the child taken at each inner node. */
  private readonly pathPages: number[] = [];
  private readonly pathSlots: number[] = [];
  private readonly limitPages: number;

  private constructor(
    private readonly heap: SecureHeap,
    private readonly allocator: HeapAllocator,
    readonly address: number,
    options: BPlusTreeOptions,
  ) {
    this.limitPages = Math.floor(heap.pageCount * (options.growthLimit ?? 0.95));
  }

  /**
   * Builds a tree of `entryCount` entries bottom-up: leaves left to right, `fillLeaf` writing each
   * leaf's keys (ascending, above the previous leaf's) and values into the views it gets, then the
   * inner levels over the leaves' first keys.
   */
  static bulkLoad(
    heap: SecureHeap,
    allocator: HeapAllocator,
    entryCount: number,
    fillLeaf: (keys: Uint32Array, values: Uint32Array) => void,
    options: BPlusTreeOptions = {},
  ): BPlusTree {
    if (!(Number.isSafeInteger(entryCount) && entryCount >= 1 && entryCount < 2 ** 32))
      throw new RangeError(`btree: cannot bulk-load ${entryCount} entries`);
    const address = allocator.alloc(DESCRIPTOR_BYTES);
    const tree = new BPlusTree(heap, allocator, address, options);
    const leafCount = Math.ceil(entryCount / BULK_LEAF_ENTRIES);
    let pages: number[] = [];
    let firstKeys: number[] = [];
    let previous: Uint32Array | null = null;
    for (let leaf = 0; leaf < leafCount; leaf++) {
      const count = share(entryCount, leafCount, leaf);
      const page = tree.newPage();
      const node = tree.mutableNode(page);
      node[MAGIC] = LEAF_MAGIC;
      node[COUNT] = count;
      fillLeaf(node.subarray(KEYS, KEYS + count), node.subarray(VALUES, VALUES + count));
      if (previous) previous[NEXT] = page;
      previous = node;
      pages.push(page);
      firstKeys.push(node[KEYS]!);
    }
    let height = 1;
    let innerNodes = 0;
    while (pages.length > 1) {
      const nodeCount = Math.ceil(pages.length / BULK_INNER_CHILDREN);
      const parents: number[] = [];
      const parentKeys: number[] = [];
      for (let n = 0, from = 0; n < nodeCount; n++) {
        const children = share(pages.length, nodeCount, n);
        const page = tree.newPage();
        const node = tree.mutableNode(page);
        node[MAGIC] = INNER_MAGIC;
        node[COUNT] = children - 1;
        for (let c = 0; c < children; c++) {
          node[CHILDREN + c] = pages[from + c]!;
          if (c > 0) node[KEYS + c - 1] = firstKeys[from + c]!;
        }
        parents.push(page);
        parentKeys.push(firstKeys[from]!);
        from += children;
      }
      innerNodes += nodeCount;
      pages = parents;
      firstKeys = parentKeys;
      height++;
    }
    tree.setField(Descriptor.magic, DESCRIPTOR_MAGIC);
    tree.setField(Descriptor.root, pages[0]!);
    tree.setField(Descriptor.height, height);
    tree.setField(Descriptor.entries, entryCount);
    tree.setField(Descriptor.leaves, leafCount);
    tree.setField(Descriptor.innerNodes, innerNodes);
    tree.setField(Descriptor.firstLeaf, tree.firstLeafOf(pages[0]!));
    return tree;
  }

  static attach(
    heap: SecureHeap,
    allocator: HeapAllocator,
    address: number,
    options: BPlusTreeOptions = {},
  ): BPlusTree {
    const tree = new BPlusTree(heap, allocator, address, options);
    if (tree.field(Descriptor.magic) !== DESCRIPTOR_MAGIC) throw damaged('no tree descriptor');
    return tree;
  }

  /** The heap bytes `attach` reads: the descriptor. */
  attachReads(): HeapRange[] {
    return [{ addr: this.address, bytes: DESCRIPTOR_BYTES }];
  }

  stats(): { entries: number; height: number; leaves: number; innerNodes: number } {
    return {
      entries: this.field(Descriptor.entries),
      height: this.field(Descriptor.height),
      leaves: this.field(Descriptor.leaves),
      innerNodes: this.field(Descriptor.innerNodes),
    };
  }

  /** The value stored under `key`, or undefined. */
  get(key: number): number | undefined {
    const leaf = this.leaf(this.descend(key));
    const count = leaf[COUNT]!;
    const slot = lowerBound(leaf, KEYS, count, key);
    return slot < count && leaf[KEYS + slot] === key ? leaf[VALUES + slot] : undefined;
  }

  /**
   * Sets `key` to `value`: the previous value (>= 0) if the key was there, INSERTED if it was added,
   * NO_ROOM (and nothing changed) if adding it needed pages past the growth limit.
   */
  upsert(key: number, value: number): number {
    const leafPage = this.descend(key);
    const leaf = this.leaf(leafPage);
    const count = leaf[COUNT]!;
    const slot = lowerBound(leaf, KEYS, count, key);
    if (slot < count && leaf[KEYS + slot] === key) {
      const previous = leaf[VALUES + slot]!;
      this.mutableNode(leafPage)[VALUES + slot] = value;
      return previous;
    }
    const fresh = this.reservePages();
    if (!fresh) return NO_ROOM;
    this.insertAt(slot, key, value, fresh);
    this.setField(Descriptor.entries, this.field(Descriptor.entries) + 1);
    return INSERTED;
  }

  /**
   * Overwrites the value of the entry nearest to `key` in key's leaf (the first at or after it, else
   * the last before it): a write that never grows the tree. Returns that entry's key and old value.
   */
  updateNearest(key: number, value: number): { key: number; previous: number } {
    const leafPage = this.descend(key);
    const count = this.leaf(leafPage)[COUNT]!;
    if (count === 0) throw damaged(`empty leaf ${leafPage}`);
    const leaf = this.mutableNode(leafPage);
    const slot = Math.min(lowerBound(leaf, KEYS, count, key), count - 1);
    const previous = leaf[VALUES + slot]!;
    leaf[VALUES + slot] = value;
    return { key: leaf[KEYS + slot]!, previous };
  }

  /**
   * Calls `visit` for up to `limit` entries in key order from the first key at or above `from`,
   * following the leaf links; returns how many it visited.
   */
  range(from: number, limit: number, visit: (key: number, value: number) => void): number {
    let page = this.descend(from);
    let leaf = this.leaf(page);
    let slot = lowerBound(leaf, KEYS, leaf[COUNT]!, from);
    let visited = 0;
    while (visited < limit) {
      if (slot >= leaf[COUNT]!) {
        page = leaf[NEXT]!;
        if (page === 0) break;
        leaf = this.leaf(page);
        slot = 0;
        continue;
      }
      visit(leaf[KEYS + slot]!, leaf[VALUES + slot]!);
      slot++;
      visited++;
    }
    return visited;
  }

  /**
   * Every entry in key order, leaf by leaf (one view per leaf: the scan's cost is linear). Throws if
   * the leaves are out of order or their number or entries disagree with the descriptor.
   */
  forEach(visit: (key: number, value: number) => void): void {
    const leaves = this.field(Descriptor.leaves);
    const recordedEntries = this.field(Descriptor.entries);
    let page = this.field(Descriptor.firstLeaf);
    let seen = 0;
    let entries = 0;
    let last = -1;
    for (; page !== 0; seen++) {
      if (seen >= leaves) throw damaged(`more than the ${leaves} leaves recorded`);
      const leaf = this.leaf(page);
      const count = leaf[COUNT]!;
      if (count > LEAF_CAPACITY) throw damaged(`leaf ${page} holds ${count} entries`);
      for (let slot = 0; slot < count; slot++) {
        const key = leaf[KEYS + slot]!;
        if (key <= last) throw damaged(`key ${key} after ${last} in leaf ${page}`);
        last = key;
        visit(key, leaf[VALUES + slot]!);
      }
      entries += count;
      page = leaf[NEXT]!;
    }
    if (seen !== leaves || entries !== recordedEntries)
      throw damaged(`${seen} leaves and ${entries} entries found, ${leaves} and ${recordedEntries} recorded`);
  }

  /** The leaf page where `key` belongs (callers open it with leaf(), which checks it); records the path for an insert. */
  private descend(key: number): number {
    let page = this.field(Descriptor.root);
    const height = this.field(Descriptor.height);
    this.pathPages.length = 0;
    this.pathSlots.length = 0;
    for (let level = 1; level < height; level++) {
      const node = this.node(page);
      if (node[MAGIC] !== INNER_MAGIC) throw damaged(`page ${page} is no inner node`);
      const child = upperBound(node, KEYS, node[COUNT]!, key);
      this.pathPages.push(page);
      this.pathSlots.push(child);
      page = node[CHILDREN + child]!;
    }
    this.pathPages.push(page);
    return page;
  }

  /**
   * The pages an insert on the last descent's path needs: one per full node from the leaf up, and a
   * new root if the root splits too. Null, having taken none, when the growth limit or a full heap
   * forbids them.
   */
  private reservePages(): number[] | null {
    let splits = 0;
    for (let level = this.pathPages.length - 1; level >= 0; level--) {
      const count = this.heap.readU32(this.pathPages[level]! * PAGE_SIZE + COUNT * 4);
      const capacity = level === this.pathPages.length - 1 ? LEAF_CAPACITY : INNER_CAPACITY;
      if (count < capacity) break;
      splits++;
    }
    const needed = splits + (splits === this.pathPages.length ? 1 : 0);
    if (needed === 0) return [];
    if (this.allocator.stats().allocatedPages + needed > this.limitPages) return null;
    const pages: number[] = [];
    try {
      while (pages.length < needed) pages.push(this.newPage());
    } catch (err) {
      if (!(err instanceof HeapFullError)) throw err;
      for (const page of pages) this.allocator.free(page * PAGE_SIZE);
      return null;
    }
    return pages;
  }

  /** Inserts into the last descent's leaf at `slot`, splitting full nodes into pages from `fresh`. */
  private insertAt(slot: number, key: number, value: number, fresh: number[]): void {
    let level = this.pathPages.length - 1;
    let split = this.insertIntoLeaf(this.pathPages[level]!, slot, key, value, fresh);
    while (split) {
      level--;
      if (level < 0) {
        this.growRoot(split.key, split.page, fresh.pop()!);
        return;
      }
      split = this.insertIntoInner(this.pathPages[level]!, this.pathSlots[level]! + 1, split, fresh);
    }
  }

  private insertIntoLeaf(
    page: number,
    slot: number,
    key: number,
    value: number,
    fresh: number[],
  ): { key: number; page: number } | null {
    const leaf = this.mutableNode(page);
    const count = leaf[COUNT]!;
    if (count < LEAF_CAPACITY) {
      shiftInsert(leaf, KEYS, count, slot, key);
      shiftInsert(leaf, VALUES, count, slot, value);
      leaf[COUNT] = count + 1;
      return null;
    }
    // Split: the upper half moves to a new leaf linked after this one; the entry goes to its half.
    const rightPage = fresh.pop()!;
    const right = this.mutableNode(rightPage);
    const half = LEAF_CAPACITY >>> 1;
    right[MAGIC] = LEAF_MAGIC;
    right[COUNT] = count - half;
    right[NEXT] = leaf[NEXT]!;
    right.set(leaf.subarray(KEYS + half, KEYS + count), KEYS);
    right.set(leaf.subarray(VALUES + half, VALUES + count), VALUES);
    leaf[COUNT] = half;
    leaf[NEXT] = rightPage;
    const [target, at] = slot <= half ? [leaf, slot] : [right, slot - half];
    shiftInsert(target, KEYS, target[COUNT]!, at, key);
    shiftInsert(target, VALUES, target[COUNT]!, at, value);
    target[COUNT]!++;
    this.setField(Descriptor.leaves, this.field(Descriptor.leaves) + 1);
    return { key: right[KEYS]!, page: rightPage };
  }

  /** Puts child `entry.page` at position `child` (its key just before it), splitting a full node. */
  private insertIntoInner(
    page: number,
    child: number,
    entry: { key: number; page: number },
    fresh: number[],
  ): { key: number; page: number } | null {
    const node = this.mutableNode(page);
    const count = node[COUNT]!;
    if (count < INNER_CAPACITY) {
      shiftInsert(node, KEYS, count, child - 1, entry.key);
      shiftInsert(node, CHILDREN, count + 1, child, entry.page);
      node[COUNT] = count + 1;
      return null;
    }
    // Split around the middle key, which moves up; the new entry goes to its half first.
    const keys = new Uint32Array(count + 1);
    const children = new Uint32Array(count + 2);
    keys.set(node.subarray(KEYS, KEYS + count));
    children.set(node.subarray(CHILDREN, CHILDREN + count + 1));
    shiftInsert(keys, 0, count, child - 1, entry.key);
    shiftInsert(children, 0, count + 1, child, entry.page);
    const middle = keys.length >>> 1;
    const rightPage = fresh.pop()!;
    const right = this.mutableNode(rightPage);
    right[MAGIC] = INNER_MAGIC;
    right[COUNT] = keys.length - middle - 1;
    right.set(keys.subarray(middle + 1), KEYS);
    right.set(children.subarray(middle + 1), CHILDREN);
    node[COUNT] = middle;
    node.set(keys.subarray(0, middle), KEYS);
    node.set(children.subarray(0, middle + 1), CHILDREN);
    this.setField(Descriptor.innerNodes, this.field(Descriptor.innerNodes) + 1);
    return { key: keys[middle]!, page: rightPage };
  }

  private growRoot(key: number, rightPage: number, rootPage: number): void {
    const root = this.mutableNode(rootPage);
    root[MAGIC] = INNER_MAGIC;
    root[COUNT] = 1;
    root[KEYS] = key;
    root[CHILDREN] = this.field(Descriptor.root);
    root[CHILDREN + 1] = rightPage;
    this.setField(Descriptor.root, rootPage);
    this.setField(Descriptor.height, this.field(Descriptor.height) + 1);
    this.setField(Descriptor.innerNodes, this.field(Descriptor.innerNodes) + 1);
  }

  private firstLeafOf(root: number): number {
    let page = root;
    while (this.node(page)[MAGIC] === INNER_MAGIC) page = this.node(page)[CHILDREN]!;
    return page;
  }

  private newPage(): number {
    return this.allocator.alloc(PAGE_SIZE) / PAGE_SIZE;
  }

  private leaf(page: number): Uint32Array {
    const node = this.node(page);
    if (node[MAGIC] !== LEAF_MAGIC) throw damaged(`page ${page} is no leaf`);
    return node;
  }

  private node(page: number): Uint32Array {
    const bytes = this.heap.bytes(page * PAGE_SIZE, PAGE_SIZE);
    return new Uint32Array(bytes.buffer, bytes.byteOffset, NODE_WORDS);
  }

  private mutableNode(page: number): Uint32Array {
    const bytes = this.heap.mutableBytes(page * PAGE_SIZE, PAGE_SIZE);
    return new Uint32Array(bytes.buffer, bytes.byteOffset, NODE_WORDS);
  }

  private field(field: number): number {
    return this.heap.readU32(this.address + field * 4);
  }

  private setField(field: number, value: number): void {
    this.heap.writeU32(this.address + field * 4, value);
  }
}

/** Part `index` of `total` items cut into `parts` near-equal parts. */
function share(total: number, parts: number, index: number): number {
  return Math.floor((total * (index + 1)) / parts) - Math.floor((total * index) / parts);
}

/** The first of `count` keys at `words[base..]` that is >= key (count if none). */
function lowerBound(words: Uint32Array, base: number, count: number, key: number): number {
  let low = 0;
  let high = count;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (words[base + mid]! < key) low = mid + 1;
    else high = mid;
  }
  return low;
}

/** The first of `count` keys at `words[base..]` that is > key: the child of an inner node to take. */
function upperBound(words: Uint32Array, base: number, count: number, key: number): number {
  let low = 0;
  let high = count;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (words[base + mid]! <= key) low = mid + 1;
    else high = mid;
  }
  return low;
}

/** Inserts `value` at position `at` of the `count` words at `words[base..]`, shifting the rest up. */
function shiftInsert(words: Uint32Array, base: number, count: number, at: number, value: number): void {
  // A plain loop: copyWithin on memory of a SharedArrayBuffer takes a slow path in V8 (~10x).
  for (let i = base + count; i > base + at; i--) words[i] = words[i - 1]!;
  words[base + at] = value;
}

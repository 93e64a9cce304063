import type { HeapRange } from '../../heap/heap-range.js';
import { itemHash } from './content-digest.js';
import { HeapU32Array } from './heap-array.js';
import { below } from '../../util/random.js';
import type { Workload, WorkloadIo } from './workload.js';

const ROOT_MAGIC = 0x484a574c; // 'HJWL'
/** The workload's root block: u32 fields, by word (the arrays' addresses and the matches are u64). */
export const Root = {
  magic: 0,
  salt: 1,
  rRows: 2,
  rCapacity: 3,
  sRows: 4,
  cursor: 5,
  payloadSum: 6,
  matches: 10,
  r: 12,
  s: 14,
  table: 16,
} as const;
const ROOT_BYTES = 72;

/** S rows one probe operation joins: consecutive rows from a cursor that wraps. */
export const PROBE_BATCH = 16;
/** Share of S's foreign keys that name a row R had at the fill. */
export const HIT_SHARE = 0.8;
/** Share of R's capacity the fill uses: the rest takes inserted rows. */
const R_LOADED_SHARE = 0.8;
/** Table slots per row of R's capacity: the load factor stays at or below 1/2. */
const SLOTS_PER_ROW = 2;
/** Bytes per row of R's capacity: the row (key, payload) and its slots (key, row + 1). */
const BUILD_BYTES_PER_ROW = 8 + SLOTS_PER_ROW * 8;
/** The build side (R and its table) takes this share of the fill, the probe side (S) the rest. */
const BUILD_SHARE = 0.25;
const FILL_RUN = 65536;

/**
 * Row i of R has key itemHash(i, salt): a bijection of i (a multiplication by an odd constant, an xor
 * and murmur3's finaliser are each invertible), so R's keys are distinct without a set to check, and
 * a key made from an index R never uses is a foreign key that matches nothing.
 */
const keyOf = (index: number, salt: number): number => itemHash(index, salt);
/** The home slot of a key: Fibonacci hashing onto [0, slots). */
const homeSlot = (key: number, slots: number): number => below(Math.imul(key, 0x9e3779b1) >>> 0, slots);

/**
 * A hash join's build and probe. R (build side) and S (probe side) are tables of u32 rows (key,
 * payload) in HeapU32Arrays; the fill generates them (R and its table take a quarter of the bytes, S
 * the rest) and builds an open-addressing hash table on R.key (linear probing, slots (key, row + 1)).
 * An operation, with probability writeShare, inserts a new row into R and the table (while R has
 * capacity; half the writes, and all once it is full, update a random row's payload instead);
 * otherwise it probes the next 16 rows of S against the table and, for each match, adds R's payload
 * to the running join aggregate (match count and payload sum, kept in the heap). 80 % of S's keys name
 * a row of R. Digest items: every row of R and of S (key, payload) and every used slot (key, row + 1).
 */
export interface HashjoinWorkload extends Workload {
  /**
   * Copies of R's and S's rows (key, payload, key, ...), for checking the join against a naive one;
   * each table must fit one view (a small fill).
   */
  joinInputs(): { r: Uint32Array; s: Uint32Array };
}

export function createHashjoin(io: WorkloadIo): HashjoinWorkload {
  const { heap } = io;
  let root = 0;
  let r: HeapU32Array | null = null;
  let s: HeapU32Array | null = null;
  let table: HeapU32Array | null = null;
  const field = (name: keyof typeof Root): number => heap.readU32(root + Root[name] * 4);
  const setField = (name: keyof typeof Root, value: number): void =>
    heap.writeU32(root + Root[name] * 4, value);
  const arrays = () => {
    if (!r || !s || !table) throw new Error('hashjoin: not attached');
    return { r, s, table };
  };

  /** Puts R's row `row` (key) into its first free slot from home. */
  const tableInsert = (key: number, row: number): void => {
    const { table } = arrays();
    const slots = table.length / 2;
    let slot = homeSlot(key, slots);
    while (table.get(2 * slot + 1) !== 0) slot = slot + 1 === slots ? 0 : slot + 1;
    table.set(2 * slot, key);
    table.set(2 * slot + 1, row + 1);
    io.digest.add(key, row + 1);
  };

  /** The row of R with `key`, or -1. */
  const tableFind = (key: number): number => {
    const { table } = arrays();
    const slots = table.length / 2;
    for (let slot = homeSlot(key, slots); ; slot = slot + 1 === slots ? 0 : slot + 1) {
      const row = table.get(2 * slot + 1);
      if (row === 0) return -1;
      if (table.get(2 * slot) === key) return row - 1;
    }
  };

  /** Writes rows [0, to) of `array` through views, `makeRow` filling each; every row goes into the digest. */
  const fillRows = (
    array: HeapU32Array,
    to: number,
    makeRow: (row: number, words: Uint32Array, at: number) => void,
  ) => {
    for (let from = 0; from < 2 * to;) {
      const end = array.runEnd(from, Math.min(2 * to, from + FILL_RUN));
      const view = array.mutableView(from, end - from);
      for (let at = 0; at < view.length; at += 2) {
        makeRow((from + at) / 2, view, at);
        io.digest.add(view[at]!, view[at + 1]!);
      }
      from = end;
    }
  };

  const probe = (): void => {
    const { r, s } = arrays();
    const rows = s.length / 2;
    let cursor = field('cursor');
    let matches = 0;
    let payloadSum = field('payloadSum');
    for (let left = PROBE_BATCH; left > 0;) {
      const end = s.runEnd(2 * cursor, 2 * Math.min(rows, cursor + left));
      const view = s.view(2 * cursor, end - 2 * cursor);
      for (let at = 0; at < view.length; at += 2) {
        const row = tableFind(view[at]!);
        if (row !== -1) {
          matches++;
          payloadSum = (payloadSum + r.get(2 * row + 1)) >>> 0;
        }
      }
      left -= view.length / 2;
      cursor = end / 2 === rows ? 0 : end / 2;
    }
    setField('cursor', cursor);
    setField('payloadSum', payloadSum);
    heap.writeU64(root + Root.matches * 4, heap.readU64(root + Root.matches * 4) + matches);
  };

  const write = (): void => {
    const { r } = arrays();
    const rows = field('rRows');
    if (rows < field('rCapacity') && io.random() < 2 ** 31) {
      const key = keyOf(rows, field('salt'));
      const payload = io.random();
      r.set(2 * rows, key);
      r.set(2 * rows + 1, payload);
      io.digest.add(key, payload);
      tableInsert(key, rows);
      setField('rRows', rows + 1);
      return;
    }
    const row = below(io.random(), rows);
    const key = r.get(2 * row);
    const before = r.get(2 * row + 1);
    const after = io.random();
    r.set(2 * row + 1, after);
    io.digest.replace(key, before, after);
  };

  return {
    attachReads: (): HeapRange[] => [
      { addr: root, bytes: ROOT_BYTES },
      ...Object.values(arrays()).flatMap((array) => array.attachReads()),
    ],
    attach(address) {
      root = address;
      if (field('magic') !== ROOT_MAGIC) throw new Error('hashjoin: the heap holds no hashjoin workload');
      r = HeapU32Array.attach(heap, heap.readU64(root + Root.r * 4));
      s = HeapU32Array.attach(heap, heap.readU64(root + Root.s * 4));
      table = HeapU32Array.attach(heap, heap.readU64(root + Root.table * 4));
    },
    create(targetBytes) {
      const capacity = Math.max(16, Math.floor((targetBytes * BUILD_SHARE) / BUILD_BYTES_PER_ROW));
      const loaded = Math.floor(capacity * R_LOADED_SHARE);
      const sRows = Math.max(PROBE_BATCH, Math.floor((targetBytes * (1 - BUILD_SHARE)) / 8));
      const salt = io.random();
      root = io.allocator.alloc(ROOT_BYTES);
      r = HeapU32Array.create(heap, io.allocator, 2 * capacity);
      s = HeapU32Array.create(heap, io.allocator, 2 * sRows);
      table = HeapU32Array.create(heap, io.allocator, 2 * SLOTS_PER_ROW * capacity);
      setField('magic', ROOT_MAGIC);
      setField('salt', salt);
      setField('rRows', loaded);
      setField('rCapacity', capacity);
      setField('sRows', sRows);
      heap.writeU64(root + Root.r * 4, r.address);
      heap.writeU64(root + Root.s * 4, s.address);
      heap.writeU64(root + Root.table * 4, table.address);
      fillRows(r, loaded, (row, words, at) => {
        const key = keyOf(row, salt);
        words[at] = key;
        words[at + 1] = io.random();
        tableInsert(key, row);
      });
      const hitBelow = HIT_SHARE * 4294967296;
      fillRows(s, sRows, (_row, words, at) => {
        const pick = io.random();
        // A hit names a loaded row of R (pick scaled onto them); a miss an index R never uses.
        words[at] =
          pick < hitBelow
            ? keyOf(Math.floor((pick / hitBelow) * loaded), salt)
            : keyOf(capacity + below(io.random(), 4294967296 - capacity), salt);
        words[at + 1] = io.random();
      });
      const bytes =
        HeapU32Array.bytesFor(r.length) +
        HeapU32Array.bytesFor(s.length) +
        HeapU32Array.bytesFor(table.length);
      return { root, items: loaded + sRows, bytes };
    },
    run(ops, writeShare) {
      const writeBelow = writeShare * 4294967296;
      for (let op = 0; op < ops; op++) {
        if (io.random() < writeBelow) write();
        else probe();
      }
    },
    scan() {
      const { r, s, table } = arrays();
      const rows = field('rRows');
      let digest = 0;
      const add = (array: HeapU32Array, words: number, check: (key: number, value: number) => boolean) => {
        for (let from = 0; from < words;) {
          const end = array.runEnd(from, Math.min(words, from + FILL_RUN));
          const view = array.view(from, end - from);
          for (let at = 0; at < view.length; at += 2) {
            if (check(view[at]!, view[at + 1]!)) digest = (digest + itemHash(view[at]!, view[at + 1]!)) >>> 0;
          }
          from = end;
        }
      };
      add(r, 2 * rows, () => true);
      add(s, s.length, () => true);
      add(table, table.length, (_key, row) => {
        if (row > rows) throw new Error(`hashjoin: damaged table (a slot names row ${row - 1} of ${rows})`);
        return row !== 0;
      });
      return digest;
    },
    stats(): Record<string, number> {
      if (!root) return {};
      return {
        items: field('rRows') + field('sRows'),
        rRows: field('rRows'),
        rCapacity: field('rCapacity'),
        sRows: field('sRows'),
        tableSlots: arrays().table.length / 2,
        matches: heap.readU64(root + Root.matches * 4),
        payloadSum: field('payloadSum'),
      };
    },
    joinInputs() {
      const { r, s } = arrays();
      return { r: Uint32Array.from(r.view(0, 2 * field('rRows'))), s: Uint32Array.from(s.view(0, s.length)) };
    },
  };
}

import type { HeapRange } from '../../heap/heap-range.js';
import { PAGE_SIZE } from '../../heap/constants.js';
import type { SecureHeap } from '../../heap/secure-heap.js';
import { itemHash } from './content-digest.js';
import { HeapU32Array } from './heap-array.js';
import type { Workload, WorkloadIo } from './workload.js';

/** Elements one operation covers: one 4 KiB page of each array it touches. */
export const STREAM_PAGE_ELEMENTS = PAGE_SIZE / 4;
const STATE_MAGIC = 0x5354524d; // 'STRM'
/** u32 words: magic, triad cursor (page), triad pass, dot cursor (page); u64 addresses of a, b, c. */
const STATE_BYTES = 40;
const TRIAD_CURSOR = 4;
const TRIAD_PASS = 8;
const DOT_CURSOR = 12;
/** Digest keys: the element index tagged with its array in the top two bits (n < 2^30). */
const ARRAY_TAGS = [0, 0x40000000, 0x80000000] as const;
const A = 0;
const itemKey = (array: number, index: number): number => (ARRAY_TAGS[array]! + index) >>> 0;

/** The triad's value for one element: b + s * c, wrapping around at 2^32. */
export const triad = (b: number, c: number, scalar: number): number => (b + Math.imul(scalar, c)) >>> 0;

/** The arrays a, b and c of the stream workload whose root (create's) is `root`. */
export function attachStreamArrays(
  heap: SecureHeap,
  root: number,
): readonly [HeapU32Array, HeapU32Array, HeapU32Array] {
  if (heap.readU32(root) !== STATE_MAGIC) throw new Error('stream: the root holds no stream arrays');
  const array = (n: number) => HeapU32Array.attach(heap, heap.readU64(root + 16 + 8 * n));
  return [array(0), array(1), array(2)];
}

/**
 * STREAM-like dense sequential work on three u32 arrays a, b, c of equal length (a third of the fill
 * each). A write operation is the triad a[i] = b[i] + s * c[i] over the page at its cursor, which
 * walks the arrays and wraps, s being the pass number + 1 so that every pass changes a; a read
 * operation (the share 1 - writeShare) is a dot product of a and b over the page at a cursor of its
 * own. Digest items: (element index tagged by array, value) for all three arrays.
 */
export function createStream(io: WorkloadIo): Workload {
  let arrays: readonly [HeapU32Array, HeapU32Array, HeapU32Array] | null = null;
  let state = 0;
  // Keeps the dot products observable, so that no compiler may drop the reads.
  let dotSink = 0;
  const attached = () => {
    if (!arrays) throw new Error('stream: not attached');
    return arrays;
  };
  const pages = () => attached()[0].length / STREAM_PAGE_ELEMENTS;

  function triadStep(): void {
    const [a, b, c] = attached();
    const { heap } = io;
    const page = heap.readU32(state + TRIAD_CURSOR);
    const pass = heap.readU32(state + TRIAD_PASS);
    const from = page * STREAM_PAGE_ELEMENTS;
    const va = a.mutableView(from, STREAM_PAGE_ELEMENTS);
    const vb = b.view(from, STREAM_PAGE_ELEMENTS);
    const vc = c.view(from, STREAM_PAGE_ELEMENTS);
    const scalar = (pass + 1) >>> 0;
    for (let i = 0; i < STREAM_PAGE_ELEMENTS; i++) {
      const before = va[i]!;
      const after = triad(vb[i]!, vc[i]!, scalar);
      va[i] = after;
      io.digest.replace(itemKey(A, from + i), before, after);
    }
    if (page + 1 < pages()) heap.writeU32(state + TRIAD_CURSOR, page + 1);
    else {
      heap.writeU32(state + TRIAD_CURSOR, 0);
      heap.writeU32(state + TRIAD_PASS, (pass + 1) >>> 0);
    }
  }

  function dotStep(): void {
    const [a, b] = attached();
    const { heap } = io;
    const page = heap.readU32(state + DOT_CURSOR);
    const from = page * STREAM_PAGE_ELEMENTS;
    const va = a.view(from, STREAM_PAGE_ELEMENTS);
    const vb = b.view(from, STREAM_PAGE_ELEMENTS);
    let sum = 0;
    for (let i = 0; i < STREAM_PAGE_ELEMENTS; i++) sum = (sum + Math.imul(va[i]!, vb[i]!)) | 0;
    dotSink ^= sum;
    heap.writeU32(state + DOT_CURSOR, page + 1 < pages() ? page + 1 : 0);
  }

  return {
    attachReads: (): HeapRange[] => [
      { addr: state, bytes: STATE_BYTES },
      ...attached().flatMap((array) => array.attachReads()),
    ],
    attach(root) {
      const { heap } = io;
      state = root;
      arrays = attachStreamArrays(heap, root);
    },
    create(targetBytes) {
      const { heap, allocator } = io;
      const length = Math.max(1, Math.floor(targetBytes / 3 / PAGE_SIZE)) * STREAM_PAGE_ELEMENTS;
      const created = [0, 1, 2].map(() => HeapU32Array.create(heap, allocator, length));
      state = allocator.alloc(STATE_BYTES);
      heap.writeU32(state, STATE_MAGIC);
      created.forEach((array, n) => {
        heap.writeU64(state + 16 + 8 * n, array.address);
        for (let from = 0; from < length;) {
          const end = array.runEnd(from, from + 65536);
          const view = array.mutableView(from, end - from);
          for (let i = 0; i < view.length; i++) {
            const value = io.random();
            view[i] = value;
            io.digest.add(itemKey(n, from + i), value);
          }
          from = end;
        }
      });
      arrays = [created[0]!, created[1]!, created[2]!];
      return { root: state, items: 3 * length, bytes: 3 * length * 4 };
    },
    run(ops, writeShare) {
      const writeBelow = writeShare * 4294967296;
      for (let op = 0; op < ops; op++) {
        if (io.random() < writeBelow) triadStep();
        else dotStep();
      }
    },
    scan() {
      let digest = 0;
      attached().forEach((array, n) => {
        for (let from = 0; from < array.length;) {
          const end = array.runEnd(from, from + 65536);
          const view = array.view(from, end - from);
          for (let i = 0; i < view.length; i++)
            digest = (digest + itemHash(itemKey(n, from + i), view[i]!)) >>> 0;
          from = end;
        }
      });
      return digest;
    },
    stats: () => ({
      items: arrays ? 3 * arrays[0].length : 0,
      elementsPerArray: arrays?.[0].length ?? 0,
      dotChecksum: dotSink >>> 0,
    }),
  };
}

import { below } from '../../util/random.js';
import { itemHash } from './content-digest.js';
import { HeapU32Array } from './heap-array.js';
import type { Workload, WorkloadIo } from './workload.js';

/**
 * The paper's microbenchmark: one array of u32 words over the whole fill; each operation reads or
 * writes one word at a uniformly random index, so every page of the heap is equally hot (the worst
 * case for post-copy, whose demand faults land anywhere, and for pre-copy, whose writes dirty pages
 * all over). An item of the digest is (index, word).
 */
export function createMicro(io: WorkloadIo): Workload {
  let words: HeapU32Array | null = null;
  const data = (): HeapU32Array => {
    if (!words) throw new Error('micro: not attached');
    return words;
  };

  return {
    attach(root) {
      words = HeapU32Array.attach(io.heap, root);
    },
    attachReads: () => data().attachReads(),
    create(targetBytes) {
      const length = Math.max(1024, Math.floor(targetBytes / 4 / 1024) * 1024);
      words = HeapU32Array.create(io.heap, io.allocator, length);
      for (let from = 0; from < length;) {
        const end = words.runEnd(from, from + 65536);
        const view = words.mutableView(from, end - from);
        for (let i = 0; i < view.length; i++) {
          const value = io.random();
          view[i] = value;
          io.digest.add(from + i, value);
        }
        from = end;
      }
      return { root: words.address, items: length, bytes: length * 4 };
    },
    run(ops, writeShare) {
      const array = data();
      const n = array.length;
      const writeBelow = writeShare * 4294967296;
      for (let op = 0; op < ops; op++) {
        const index = below(io.random(), n);
        if (io.random() < writeBelow) {
          const before = array.get(index);
          const after = io.random();
          array.set(index, after);
          io.digest.replace(index, before, after);
        } else {
          array.get(index);
        }
      }
    },
    scan() {
      const array = data();
      let digest = 0;
      for (let from = 0; from < array.length;) {
        const end = array.runEnd(from, from + 65536);
        const view = array.view(from, end - from);
        for (let i = 0; i < view.length; i++) digest = (digest + itemHash(from + i, view[i]!)) >>> 0;
        from = end;
      }
      return digest;
    },
    stats: () => ({ items: words?.length ?? 0 }),
  };
}

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { fillStore } from '../../../src/apps/kv/fill.js';
import { KvStore } from '../../../src/apps/kv/kv-store.js';
import { PAGE_SIZE } from '../../../src/heap/constants.js';
import { freshHeap } from '../../helpers/app-heap.js';

const MiB = 2 ** 20;

function usedBytes(allocator: { stats(): { allocatedPages: number } }): number {
  return allocator.stats().allocatedPages * PAGE_SIZE;
}

describe('fillStore', () => {
  test('fills until the pages in use reach the target, with keys key:<n> and varied random values', () => {
    const { heap, allocator } = freshHeap(64 * MiB);
    const store = KvStore.create(heap, allocator);
    const result = fillStore(store, heap, allocator, 16 * MiB);
    const used = usedBytes(allocator);
    assert.ok(used >= 16 * MiB && used < 16 * MiB + MiB, `${used} bytes in use for a 16 MiB target`);
    assert.equal(result.keys, store.size);
    assert.equal(result.memoryBound, true);
    assert.equal(
      result.bytes,
      [...store.entries()].reduce((sum, [k, v]) => sum + k.length + v.length, 0),
    );
    const first = store.get(Buffer.from('key:0'))!;
    const last = store.get(Buffer.from(`key:${result.keys - 1}`))!;
    assert.equal(first.length, 1024);
    assert.ok(
      first.some((b) => b !== 0),
      'values must not be all zero',
    );
    assert.notDeepEqual(first, last);
    assert.equal(store.get(Buffer.from(`key:${result.keys}`)), null);
  });

  test('a second fill continues the numbering and skips keys that exist', () => {
    const { heap, allocator } = freshHeap(64 * MiB);
    const store = KvStore.create(heap, allocator);
    store.set(Buffer.from('key:3'), Buffer.from('mine'));
    const first = fillStore(store, heap, allocator, 4 * MiB, { valueSize: 100 });
    assert.deepEqual(store.get(Buffer.from('key:3')), Buffer.from('mine'));
    const sizeBefore = store.size;
    const second = fillStore(store, heap, allocator, 8 * MiB, { valueSize: 100, keyPrefix: 'key:' });
    assert.ok(first.keys > 0 && second.keys > 0);
    assert.equal(store.size, sizeBefore + second.keys);
    assert.equal(store.get(Buffer.from(`key:${sizeBefore + second.keys - 1}`))?.length, 100);
  });

  test('a target beyond the heap stops at about 92 % of it without HeapFullError', () => {
    const { heap, allocator } = freshHeap(8 * MiB);
    const store = KvStore.create(heap, allocator);
    const result = fillStore(store, heap, allocator, 1024 * MiB, { valueSize: 3000 });
    const share = usedBytes(allocator) / heap.byteLength;
    assert.ok(share >= 0.9 && share < 0.95, `filled ${share} of the heap`);
    assert.equal(result.memoryBound, true);
    store.set(Buffer.from('still'), Buffer.from('writable'));
  });

  test('with a count, visits exactly that many numbers (DEBUG POPULATE)', () => {
    const { heap, allocator } = freshHeap(16 * MiB);
    const store = KvStore.create(heap, allocator);
    store.set(Buffer.from('p:1'), Buffer.from('kept'));
    const result = fillStore(store, heap, allocator, heap.byteLength, {
      count: 10,
      keyPrefix: 'p:',
      firstIndex: 0,
      valueSize: 8,
    });
    assert.deepEqual(result, { keys: 9, bytes: 9 * (3 + 8), memoryBound: false });
    assert.equal(store.size, 10);
    assert.deepEqual(store.get(Buffer.from('p:1')), Buffer.from('kept'));
    assert.equal(store.exists(Buffer.from('p:10')), false);
  });

  test('fills 256 MiB quickly', () => {
    const { heap, allocator } = freshHeap(300 * MiB);
    const store = KvStore.create(heap, allocator);
    const started = performance.now();
    const result = fillStore(store, heap, allocator, 256 * MiB);
    const seconds = (performance.now() - started) / 1000;
    assert.ok(usedBytes(allocator) >= 256 * MiB);
    // About 1 s here; the bound leaves room for a noisy machine.
    assert.ok(seconds < 8, `256 MiB took ${seconds.toFixed(1)} s (${result.keys} keys)`);
  });
});

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BufferPool } from '../../src/util/buffer-pool.js';

describe('BufferPool', () => {
  test('gives a returned buffer out again for the same length, and a fresh one for another length', () => {
    const pool = new BufferPool(1024, 1 << 20);
    const a = pool.take(4096);
    assert.equal(a.length, 4096);
    pool.give(a);
    assert.equal(pool.take(4096), a);
    assert.notEqual(pool.take(4096), a, 'taken again: no longer free');
    pool.give(a);
    assert.notEqual(pool.take(8192).buffer, a.buffer);
  });

  test('ignores buffers it did not lend, and a buffer given back twice', () => {
    const pool = new BufferPool(1024, 1 << 20);
    pool.give(Buffer.alloc(4096));
    const a = pool.take(4096);
    pool.give(a);
    pool.give(a);
    assert.equal(pool.take(4096), a);
    assert.notEqual(pool.take(4096), a, 'given back twice, lent once only');
  });

  test('keeps at most maxFreeBytes for reuse, and never pools small buffers', () => {
    const pool = new BufferPool(1024, 8192);
    const taken = [pool.take(4096), pool.take(4096), pool.take(4096)];
    for (const b of taken) pool.give(b);
    const again = [pool.take(4096), pool.take(4096), pool.take(4096)];
    assert.equal(again.filter((b) => taken.includes(b)).length, 2);
    const small = pool.take(100);
    pool.give(small);
    assert.notEqual(pool.take(100), small);
  });
});

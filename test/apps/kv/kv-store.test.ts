import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { murmur3 } from '../../../src/apps/kv/hash.js';
import { KvFormatError, KvValueError } from '../../../src/apps/kv/kv-errors.js';
import { KV_ROOT_SLOT, KvStore } from '../../../src/apps/kv/kv-store.js';
import { HeapFullError } from '../../../src/heap/allocator.js';
import { copyAllocatedPages, freshHeap } from '../../helpers/app-heap.js';

const MiB = 2 ** 20;
const INT64_MAX = 2n ** 63n - 1n;
const INT64_MIN = -(2n ** 63n);

function sortedEntries(pairs: Iterable<[Buffer, Buffer]>): string[] {
  return [...pairs].map(([k, v]) => `${k.toString('hex')}=${v.toString('hex')}`).sort();
}

function modelEntries(model: Map<string, Buffer>): string[] {
  return [...model].map(([k, v]) => `${k}=${v.toString('hex')}`).sort();
}

/** The Redis rule for INCR, written independently of the store: canonical int64 text, int64 result. */
function modelIncr(current: Buffer | undefined, by: bigint): bigint | 'not an integer' | 'overflow' {
  const text = current === undefined ? '0' : current.toString('latin1');
  if (!/^(0|-?[1-9][0-9]*)$/.test(text)) return 'not an integer';
  const value = BigInt(text);
  if (value > INT64_MAX || value < INT64_MIN) return 'not an integer';
  const result = value + by;
  return result > INT64_MAX || result < INT64_MIN ? 'overflow' : result;
}

const KEYS = [
  ...Array.from({ length: 10 }, (_, i) => Buffer.from(`key:${i}`)),
  Buffer.from([0, 255, 13, 10]),
  Buffer.alloc(0),
];
const keyIndex = fc.nat(KEYS.length - 1);
const value = fc.oneof(
  fc
    .record({ size: fc.nat(5000), seed: fc.nat(255) })
    .map(({ size, seed }) => Buffer.from(Array.from({ length: size }, (_, i) => (seed + i * 31) & 255))),
  fc.bigInt({ min: INT64_MIN, max: INT64_MAX }).map((n) => Buffer.from(n.toString())),
  fc
    .constantFrom('9223372036854775807', '-9223372036854775808', '01', '-0', ' 1', '+1', '1.5', '')
    .map((s) => Buffer.from(s)),
);
const operation = fc.oneof(
  fc.record({ op: fc.constant('set' as const), key: keyIndex, value }),
  fc.record({ op: fc.constant('get' as const), key: keyIndex }),
  fc.record({ op: fc.constant('delete' as const), key: keyIndex }),
  fc.record({ op: fc.constant('exists' as const), key: keyIndex }),
  fc.record({
    op: fc.constant('incr' as const),
    key: keyIndex,
    by: fc.oneof(fc.bigInt({ min: -1000n, max: 1000n }), fc.constantFrom(INT64_MAX, INT64_MIN)),
  }),
  fc.record({
    op: fc.constant('mset' as const),
    pairs: fc.array(fc.tuple(keyIndex, value), { minLength: 1, maxLength: 4 }),
  }),
);

describe('KvStore', () => {
  test(
    'property: behaves like a Map under random set/get/delete/exists/incr/mset, across growth',
    { timeout: 120_000 },
    () => {
      fc.assert(
        fc.property(fc.array(operation, { maxLength: 120 }), (ops) => {
          const { heap, allocator } = freshHeap(8 * MiB);
          // One bucket, so that the table doubles (and rehashes incrementally) several times.
          const store = KvStore.create(heap, allocator, { initialBuckets: 1 });
          const model = new Map<string, Buffer>();
          for (const step of ops) {
            if (step.op === 'mset') {
              store.setMany(step.pairs.map(([k, v]) => [KEYS[k]!, v] as const));
              for (const [k, v] of step.pairs) model.set(KEYS[k]!.toString('hex'), v);
              continue;
            }
            const key = KEYS[step.key]!;
            const hex = key.toString('hex');
            switch (step.op) {
              case 'set':
                store.set(key, step.value);
                model.set(hex, step.value);
                break;
              case 'get':
                assert.deepEqual(store.get(key), model.get(hex) ?? null);
                break;
              case 'delete':
                assert.equal(store.delete(key), model.delete(hex));
                break;
              case 'exists':
                assert.equal(store.exists(key), model.has(hex));
                break;
              case 'incr': {
                const expected = modelIncr(model.get(hex), step.by);
                if (typeof expected === 'bigint') {
                  assert.equal(store.incrBy(key, step.by), expected);
                  model.set(hex, Buffer.from(expected.toString()));
                } else {
                  const message =
                    expected === 'overflow'
                      ? 'ERR increment or decrement would overflow'
                      : 'ERR value is not an integer or out of range';
                  assert.throws(
                    () => store.incrBy(key, step.by),
                    (err) => err instanceof KvValueError && err.message === message,
                  );
                }
                break;
              }
            }
            assert.equal(store.size, model.size);
          }
          assert.deepEqual(sortedEntries(store.entries()), modelEntries(model));
          // Everything is in the heap: a second handle on the same heap sees the same store.
          assert.deepEqual(sortedEntries(KvStore.attach(heap, allocator).entries()), modelEntries(model));
        }),
        { numRuns: 120 },
      );
    },
  );

  test('grows its table past load factor 1 and finds every key during and after rehashing', () => {
    const { heap, allocator } = freshHeap(32 * MiB);
    const store = KvStore.create(heap, allocator, { initialBuckets: 4 });
    let sawRehash = false;
    for (let i = 0; i < 20000; i++) {
      store.set(Buffer.from(`k${i}`), Buffer.from(`v${i}`));
      if (store.stats().rehashing === 1) {
        sawRehash = true;
        const probe = i >> 1;
        assert.deepEqual(store.get(Buffer.from(`k${probe}`)), Buffer.from(`v${probe}`));
      }
    }
    assert.ok(sawRehash);
    const stats = store.stats();
    assert.ok(stats.buckets >= 20000 / 2, `only ${stats.buckets} buckets for 20000 keys`);
    assert.equal(store.size, 20000);
    for (let i = 0; i < 20000; i += 7)
      assert.deepEqual(store.get(Buffer.from(`k${i}`)), Buffer.from(`v${i}`));
    assert.equal([...store.entries()].length, 20000);
  });

  test('attach on a heap holding only the copied allocated pages yields identical entries, mid-rehash', () => {
    const { heap, allocator } = freshHeap(32 * MiB);
    const store = KvStore.create(heap, allocator, { initialBuckets: 2 });
    let n = 0;
    while (n < 3000 || store.stats().rehashing === 0) {
      store.set(Buffer.from(`key:${n}`), Buffer.alloc(n % 3000, n & 255));
      if (n % 5 === 0) store.delete(Buffer.from(`key:${n >> 1}`));
      n++;
    }
    const before = sortedEntries(store.entries());
    const copy = copyAllocatedPages(heap, allocator);
    assert.ok(copy.pagesCopied < heap.pageCount / 2, 'the copy should not need unallocated pages');
    const moved = KvStore.attach(copy.heap, copy.allocator);
    assert.equal(moved.size, store.size);
    assert.equal(moved.stats().rehashing, 1);
    assert.deepEqual(sortedEntries(moved.entries()), before);
    // The moved store keeps working: it finishes its rehash and takes new keys.
    for (let i = 0; i < 5000; i++) moved.set(Buffer.from(`new:${i}`), Buffer.from([i & 255]));
    assert.equal(moved.size, store.size + 5000);
    assert.deepEqual(moved.get(Buffer.from('new:4999')), Buffer.from([4999 & 255]));
    assert.deepEqual(moved.get(Buffer.from(`key:${n - 1}`)), store.get(Buffer.from(`key:${n - 1}`)));
  });

  test('attach refuses a heap without a kv store', () => {
    const { heap, allocator } = freshHeap(2 * MiB);
    assert.throws(() => KvStore.attach(heap, allocator), KvFormatError);
    const block = allocator.alloc(64);
    heap.mutableBytes(block, 64).fill(0xab);
    allocator.setRoot(KV_ROOT_SLOT, block);
    assert.throws(() => KvStore.attach(heap, allocator), KvFormatError);
  });

  test('a full heap leaves the store consistent: failed writes change nothing, and freed space is reused', () => {
    const { heap, allocator } = freshHeap(2 * MiB);
    const store = KvStore.create(heap, allocator, { initialBuckets: 1 });
    const stored = new Map<string, Buffer>();
    let failedKey: Buffer | null = null;
    for (let i = 0; failedKey === null; i++) {
      const key = Buffer.from(`key:${i}`);
      const v = Buffer.alloc(1000 + (i % 7) * 3000, i & 255);
      try {
        store.set(key, v);
        stored.set(key.toString(), v);
      } catch (err) {
        assert.ok(err instanceof HeapFullError);
        failedKey = key;
      }
    }
    const check = (): void => {
      assert.equal(store.size, stored.size);
      for (const [k, v] of stored) assert.deepEqual(store.get(Buffer.from(k)), v);
      assert.deepEqual(
        sortedEntries(store.entries()),
        [...stored].map(([k, v]) => `${Buffer.from(k).toString('hex')}=${v.toString('hex')}`).sort(),
      );
    };
    assert.equal(store.exists(failedKey), false);
    check();
    // A replacement that does not fit keeps the old value.
    assert.throws(() => store.set(Buffer.from('key:0'), Buffer.alloc(MiB)), HeapFullError);
    check();
    // MSET is all or nothing.
    assert.throws(
      () =>
        store.setMany([
          [Buffer.from('small'), Buffer.from('x')],
          [Buffer.from('key:1'), Buffer.alloc(MiB)],
        ]),
      HeapFullError,
    );
    assert.equal(store.exists(Buffer.from('small')), false);
    check();
    // Deleting frees room that a later write can use.
    for (const k of [...stored.keys()].slice(0, 40)) {
      assert.equal(store.delete(Buffer.from(k)), true);
      stored.delete(k);
    }
    store.set(failedKey, Buffer.from('fits now'));
    stored.set(failedKey.toString(), Buffer.from('fits now'));
    check();
  });

  test('frees what it replaces and deletes: live bytes return to the empty-store baseline', () => {
    const { heap, allocator } = freshHeap(16 * MiB);
    const store = KvStore.create(heap, allocator);
    const baseline = allocator.stats().liveBytes;
    for (let i = 0; i < 500; i++) store.set(Buffer.from(`k${i}`), Buffer.alloc(i * 13, 1));
    for (let i = 0; i < 500; i++) store.set(Buffer.from(`k${i}`), Buffer.alloc((500 - i) * 17, 2));
    for (let i = 0; i < 500; i += 3) store.incr(Buffer.from(`n${i}`), i);
    store.setMany([
      [Buffer.from('k1'), Buffer.from('a')],
      [Buffer.from('k1'), Buffer.from('b')],
    ]);
    assert.deepEqual(store.get(Buffer.from('k1')), Buffer.from('b'));
    for (const [key] of [...store.entries()]) assert.equal(store.delete(key), true);
    assert.equal(store.size, 0);
    assert.equal(allocator.stats().liveBytes, baseline);
  });

  test('replacing in place never writes past the entry: its neighbours stay intact at every size', () => {
    const { heap, allocator } = freshHeap(16 * MiB);
    const store = KvStore.create(heap, allocator);
    const [a, b] = [Buffer.from('a'), Buffer.from('b')];
    for (let size = 0; size < 2200; size++) {
      // Neighbouring chunks of one size class, then a slightly larger value for the first.
      store.set(a, Buffer.alloc(size, 1));
      store.set(b, Buffer.alloc(size, 2));
      store.set(a, Buffer.alloc(size + 1 + (size % 8), 3));
      assert.deepEqual(store.get(b), Buffer.alloc(size, 2));
      assert.deepEqual(store.get(a), Buffer.alloc(size + 1 + (size % 8), 3));
      assert.equal([...store.entries()].length, 2);
      store.delete(a);
      store.delete(b);
    }
  });

  test('holds binary keys and values up to several MiB', () => {
    const { heap, allocator } = freshHeap(64 * MiB);
    const store = KvStore.create(heap, allocator);
    const big = Buffer.alloc(8 * MiB);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7919) & 255;
    const key = Buffer.from([0, 1, 2, 255, 13, 10]);
    store.set(key, big);
    store.set(Buffer.from('empty'), Buffer.alloc(0));
    assert.deepEqual(store.get(key), big);
    assert.deepEqual(store.get(Buffer.from('empty')), Buffer.alloc(0));
    assert.equal(store.get(Buffer.from([0, 1, 2, 255, 13])), null);
  });

  test('incr follows Redis: missing key is 0, strict integer text, 64-bit range', () => {
    const { heap, allocator } = freshHeap(2 * MiB);
    const store = KvStore.create(heap, allocator);
    const key = Buffer.from('n');
    assert.equal(store.incr(key), 1);
    assert.equal(store.incr(key, 41), 42);
    assert.equal(store.incr(key, -50), -8);
    assert.deepEqual(store.get(key), Buffer.from('-8'));
    for (const bad of ['-0', '01', ' 1', '+1', '1.5', '', 'abc', '9223372036854775808']) {
      store.set(key, Buffer.from(bad));
      assert.throws(() => store.incr(key), { message: 'ERR value is not an integer or out of range' }, bad);
      assert.deepEqual(store.get(key), Buffer.from(bad));
    }
    store.set(key, Buffer.from('9223372036854775807'));
    assert.throws(() => store.incr(key), {
      name: 'KvValueError',
      message: 'ERR increment or decrement would overflow',
    });
    assert.equal(store.incrBy(key, -1n), INT64_MAX - 1n);
  });

  test('rejects an entry larger than the allocator can hold without changing anything', () => {
    const { heap, allocator } = freshHeap(2 * MiB);
    const store = KvStore.create(heap, allocator);
    // Never written, so it costs address space only.
    const tooBig = Buffer.allocUnsafe(257 * MiB);
    assert.throws(() => store.set(Buffer.from('k'), tooBig), KvValueError);
    assert.equal(store.size, 0);
  });
});

describe('murmur3', () => {
  test('matches the reference MurmurHash3_x86_32 vectors', () => {
    assert.equal(murmur3(Buffer.alloc(0), 0), 0);
    assert.equal(murmur3(Buffer.alloc(0), 1), 0x514e28b7);
    assert.equal(murmur3(Buffer.from('hello'), 0), 0x248bfa47);
    assert.equal(murmur3(Buffer.from('Hello, world!'), 1234), 0xfaf6cdb3);
    assert.equal(murmur3(Buffer.from('The quick brown fox jumps over the lazy dog'), 0x9747b28c), 0x2fa826cd);
  });
});

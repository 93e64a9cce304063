import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ContentDigest } from '../../../src/apps/workloads/content-digest.js';
import { createHashjoin, HIT_SHARE, PROBE_BATCH, Root } from '../../../src/apps/workloads/hashjoin.js';
import { HeapU32Array } from '../../../src/apps/workloads/heap-array.js';
import { xorshift } from '../../../src/util/random.js';
import { freshHeap } from '../../helpers/app-heap.js';

const MiB = 2 ** 20;

function smallJoin(fillBytes: number) {
  const { heap, allocator } = freshHeap(4 * MiB);
  const digest = new ContentDigest();
  const workload = createHashjoin({ heap, allocator, random: xorshift(9), digest });
  const { root } = workload.create(fillBytes);
  return { workload, digest, heap, root };
}

/** The join of the S rows a probe run visits (from row `from`, wrapping) with R, in plain JS. */
function naiveJoin(r: Uint32Array, s: Uint32Array, from: number, rows: number) {
  const payloads = new Map<number, number>();
  for (let i = 0; i < r.length; i += 2) payloads.set(r[i]!, r[i + 1]!);
  const sRows = s.length / 2;
  let matches = 0;
  let payloadSum = 0;
  for (let n = 0; n < rows; n++) {
    const payload = payloads.get(s[2 * ((from + n) % sRows)]!);
    if (payload === undefined) continue;
    matches++;
    payloadSum = (payloadSum + payload) >>> 0;
  }
  return { matches, payloadSum };
}

describe('hashjoin', () => {
  test('R keys are distinct and about 80 % of S names a row of R', () => {
    const { workload } = smallJoin(MiB);
    const { r, s } = workload.joinInputs();
    const rKeys = new Set<number>();
    for (let i = 0; i < r.length; i += 2) rKeys.add(r[i]!);
    assert.equal(rKeys.size, r.length / 2);
    let hits = 0;
    for (let i = 0; i < s.length; i += 2) if (rKeys.has(s[i]!)) hits++;
    const share = hits / (s.length / 2);
    assert.ok(Math.abs(share - HIT_SHARE) < 0.02, `hit share ${share}`);
    assert.ok(s.length > 2 * r.length, 'S is the larger side');
  });

  test('the probes count the same matches and payload sum as a naive join, past the wrap', () => {
    const { workload } = smallJoin(256 * 1024);
    const { r, s } = workload.joinInputs();
    const ops = Math.ceil(s.length / 2 / PROBE_BATCH) + 37;
    workload.run(ops, 0);
    const expected = naiveJoin(r, s, 0, ops * PROBE_BATCH);
    const stats = workload.stats();
    assert.ok(expected.matches > 0);
    assert.equal(stats.matches, expected.matches);
    assert.equal(stats.payloadSum, expected.payloadSum);
  });

  test('writes insert rows until R is full, then update; probes see them; the scan agrees', () => {
    const { workload, digest } = smallJoin(256 * 1024);
    const loaded = workload.stats().rRows!;
    for (let i = 0; i < 20; i++) workload.run(1000, 1);
    const grown = workload.stats().rRows!;
    assert.ok(grown > loaded, 'no row was inserted');
    assert.equal(grown, workload.stats().rCapacity, 'R did not fill its capacity');
    assert.equal(workload.scan(), digest.value);
    const { r, s } = workload.joinInputs();
    const rKeys = new Set<number>();
    for (let i = 0; i < r.length; i += 2) rKeys.add(r[i]!);
    assert.equal(rKeys.size, grown, 'an inserted key repeats one of R');
    const before = workload.stats();
    workload.run(100, 0);
    const after = workload.stats();
    // The cursor has not moved yet: the reads start at S row 0.
    const expected = naiveJoin(r, s, 0, 100 * PROBE_BATCH);
    assert.equal(after.matches! - before.matches!, expected.matches);
    assert.equal((after.payloadSum! - before.payloadSum! + 2 ** 32) % 2 ** 32, expected.payloadSum);
  });

  test('a scan rejects a table slot that names a row R does not have', () => {
    const { workload, heap, root } = smallJoin(256 * 1024);
    const table = HeapU32Array.attach(heap, heap.readU64(root + Root.table * 4));
    let used = 0;
    while (table.get(2 * used + 1) === 0) used++;
    table.set(2 * used + 1, workload.stats().rRows! + 1);
    assert.throws(() => workload.scan(), /damaged table/);
  });
});

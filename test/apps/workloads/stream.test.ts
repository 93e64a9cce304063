import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  attachStreamArrays,
  createStream,
  STREAM_PAGE_ELEMENTS,
  triad,
} from '../../../src/apps/workloads/stream.js';
import { workloadIo } from '../../helpers/workload-io.js';

const MiB = 2 ** 20;

/** Indices spread over the pages [firstPage, endPage): the first, a middle and the last of each. */
function sampledIndices(firstPage: number, endPage: number): number[] {
  const indices: number[] = [];
  for (let page = firstPage; page < endPage; page++) {
    const from = page * STREAM_PAGE_ELEMENTS;
    indices.push(from, from + 517, from + STREAM_PAGE_ELEMENTS - 1);
  }
  return indices;
}

describe('stream workload', () => {
  test('a triad pass makes a = b + s * c on every page, s being the pass number + 1', () => {
    const io = workloadIo(16 * MiB);
    const stream = createStream(io);
    const { root } = stream.create(3 * MiB);
    const [a, b, c] = attachStreamArrays(io.heap, root);
    const pages = a.length / STREAM_PAGE_ELEMENTS;
    assert.equal(pages, 256);
    const holds = (index: number, scalar: number) =>
      a.get(index) === triad(b.get(index), c.get(index), scalar);

    // Half a pass: the pages behind the cursor hold the formula, the ones ahead still their fill.
    stream.run(pages / 2, 1);
    assert.ok(sampledIndices(0, pages / 2).every((i) => holds(i, 1)));
    assert.ok(!sampledIndices(pages / 2, pages).some((i) => holds(i, 1)), 'a page ahead was written');

    stream.run(pages / 2, 1);
    assert.ok(sampledIndices(0, pages).every((i) => holds(i, 1)));
    // The cursor wrapped: the second pass writes with s = 2.
    stream.run(pages, 1);
    assert.ok(sampledIndices(0, pages).every((i) => holds(i, 2) && !holds(i, 1)));
    assert.equal(stream.scan(), io.digest.value);
  });

  test('the triad wraps around at 2^32', () => {
    assert.equal(triad(0xffffffff, 2, 3), 5);
    assert.equal(triad(1, 0x80000000, 2), 1);
  });

  test('dot operations leave the arrays as they are', () => {
    const io = workloadIo(16 * MiB);
    const stream = createStream(io);
    const { root } = stream.create(3 * MiB);
    const [a, b, c] = attachStreamArrays(io.heap, root);
    const copy = [a, b, c].map((array) => Array.from({ length: array.length }, (_, i) => array.get(i)));
    io.heap.dirty.clearAll();
    stream.run(1000, 0);
    assert.deepEqual(
      [a, b, c].map((array) => Array.from({ length: array.length }, (_, i) => array.get(i))),
      copy,
    );
    const dirtyPages = [...Array(io.heap.pageCount).keys()].filter((page) => io.heap.dirty.get(page));
    assert.equal(dirtyPages.length, 1, 'only the state block (the dot cursor) was written');
  });
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FAULT_HISTOGRAM_BUCKETS, latencyHistogram } from '../../src/trackers/demand-latency.js';

test('fault latencies fall into power-of-two buckets, the extremes into the first and last', () => {
  const counts = latencyHistogram([0.3, 1, 1.9, 2, 3.9, 1000, 1023, 1024, 2 ** 30]);
  assert.equal(counts.length, FAULT_HISTOGRAM_BUCKETS);
  assert.equal(counts[0], 3); // 0.3, 1, 1.9
  assert.equal(counts[1], 2); // 2, 3.9
  assert.equal(counts[9], 2); // 1000, 1023
  assert.equal(counts[10], 1); // 1024
  assert.equal(counts[FAULT_HISTOGRAM_BUCKETS - 1], 1);
  assert.equal(
    counts.reduce((a, b) => a + b, 0),
    9,
  );
});

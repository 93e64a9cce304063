import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AppThread } from '../../src/enclave/app-thread.js';
import { SecureHeap } from '../../src/heap/secure-heap.js';

const MiB = 2 ** 20;

test('a serve queued behind a restore that fails is refused: the application never serves', async (t) => {
  const heap = SecureHeap.createIncoming(4 * MiB, 'present-checks');
  heap.present.setAll();
  const app = AppThread.boot();
  t.after(() => app.close());
  await app.open(heap, { kind: 'kv', bindAddress: '127.0.0.1', port: 0, logBase: {} });
  await app.listen();
  // An empty heap holds no allocator: restoring fails, and the serve sent right behind it must not run.
  const restored = app.restore({ app: 'kv', totalCommands: 0 });
  const served = app.serve();
  await assert.rejects(restored, /magic CMHEAP01 not found/);
  await assert.rejects(served, /not serving: restoring the application failed/);
});

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { AppContext } from '../../../src/apps/app.js';
import { createApp, type MigratableApp, type WorkloadKind, WORKLOADS } from '../../../src/apps/registry.js';
import type { WorkloadApp } from '../../../src/apps/workloads/workload-app.js';
import { PAGE_SIZE } from '../../../src/heap/constants.js';
import { restorePagesOf } from '../../../src/apps/app.js';
import { HeapAllocator } from '../../../src/heap/allocator.js';
import { PageNotPresentError } from '../../../src/heap/errors.js';
import type { SecureHeap } from '../../../src/heap/secure-heap.js';
import { copyAllocatedPages, copyOnlyPages, freshHeap } from '../../helpers/app-heap.js';
import { RespErrorReply, RespTestClient } from '../../helpers/resp-test-client.js';

const MiB = 2 ** 20;

interface Served {
  app: MigratableApp;
  client: RespTestClient;
  ctx: AppContext;
}

async function serve(ctx: AppContext, kind: WorkloadKind, fillBytes: number | null): Promise<Served> {
  const app = createApp(kind, ctx);
  if (fillBytes === null) app.restore({ app: kind });
  else {
    app.format();
    if (fillBytes > 0) app.fill(fillBytes);
  }
  await app.listen();
  app.serve();
  return { app, ctx, client: await RespTestClient.connect((app as WorkloadApp).boundPort) };
}

const context = (heap: AppContext['heap'], allocator: AppContext['allocator']): AppContext => ({
  heap,
  allocator,
  bindAddress: '127.0.0.1',
  port: 0,
  log: () => {},
});

async function run(client: RespTestClient, ops: number, writeShare: number) {
  const reply = await client.command('RUN', String(ops), String(writeShare));
  if (!Array.isArray(reply)) assert.fail(`RUN answered ${String(reply)}`);
  return { opsDone: Number(reply[0]), digest: String(reply[1]) };
}

/** VERIFY's answer; an error reply (a structure too damaged to scan) counts as no match. */
async function verify(client: RespTestClient) {
  const reply = await client.command('VERIFY');
  if (!Array.isArray(reply)) return { match: false, running: '', scanned: String(reply) };
  return { match: Number(reply[0]) === 1, running: String(reply[1]), scanned: String(reply[2]) };
}

/**
 * What every benchmark workload must do, whatever its data structure: a fill near the size asked,
 * a digest that a full scan reproduces after any mix of operations, a migration (allocated pages
 * copied raw into a new heap) after which it goes on exactly as the original would, and a lost
 * delta (the pages a batch dirtied, left stale) that VERIFY catches.
 */
export function workloadCompliance(kind: WorkloadKind, heapBytes = 48 * MiB): void {
  const spec = WORKLOADS[kind];
  describe(`workload ${kind}: compliance`, () => {
    const open: Served[] = [];
    const start = async (ctx: AppContext, fillBytes: number | null) => {
      const served = await serve(ctx, kind, fillBytes);
      open.push(served);
      return served;
    };
    after(async () => {
      for (const { app, client } of open) {
        client.close();
        await app.close();
      }
    });

    test('fills near the size asked, and a scan reproduces the digest', async () => {
      const { heap, allocator } = freshHeap(heapBytes);
      const target = 32 * MiB;
      const { client, app } = await start(context(heap, allocator), target);
      const used = allocator.stats().allocatedPages * PAGE_SIZE;
      assert.ok(
        used >= target * 0.75 && used <= target * 1.1,
        `${used} bytes used for a ${target}-byte fill`,
      );
      assert.ok((app.stats().items ?? 0) > 0, 'the fill made items');
      const checked = await verify(client);
      assert.ok(checked.match, `scan ${checked.scanned} != running ${checked.running}`);
    });

    test('RUN counts operations; reads leave the digest, writes change it, a scan agrees', async () => {
      const { heap, allocator } = freshHeap(heapBytes);
      const { client } = await start(context(heap, allocator), 8 * MiB);
      const before = (await verify(client)).running;
      const read = await run(client, spec.opsPerRequest, 0);
      assert.equal(read.opsDone, spec.opsPerRequest);
      assert.equal(read.digest, before, 'a read-only batch changed the content');
      const written = await run(client, spec.opsPerRequest, 1);
      assert.equal(written.opsDone, 2 * spec.opsPerRequest);
      assert.notEqual(written.digest, before, 'a write batch left the content as it was');
      for (let i = 0; i < 5; i++) await run(client, spec.opsPerRequest, 0.3);
      const checked = await verify(client);
      assert.ok(checked.match, `scan ${checked.scanned} != running ${checked.running}`);
    });

    test('after a migration it goes on exactly as the original does', async () => {
      const { heap, allocator } = freshHeap(heapBytes);
      const original = await start(context(heap, allocator), 8 * MiB);
      await run(original.client, spec.opsPerRequest, 0.5);
      const copy = copyAllocatedPages(heap, allocator);
      const moved = await start(context(copy.heap, copy.allocator), null);
      assert.ok((await verify(moved.client)).match);
      for (let i = 0; i < 3; i++) {
        const a = await run(original.client, spec.opsPerRequest, 0.5);
        const b = await run(moved.client, spec.opsPerRequest, 0.5);
        assert.deepEqual(b, a, 'the migrated workload diverged from the original');
      }
      assert.ok((await verify(moved.client)).match);
    });

    test('restoreReads names what restore reads: a heap holding only those pages restores', async () => {
      const { heap, allocator } = freshHeap(heapBytes);
      const original = await start(context(heap, allocator), 8 * MiB);
      await run(original.client, spec.opsPerRequest, 0.5);
      original.app.pause();
      const pages = restorePagesOf(heap, original.app);
      const restoreOn = (copy: SecureHeap) =>
        createApp(kind, context(copy, HeapAllocator.attach(copy))).restore(original.app.snapshot());
      restoreOn(copyOnlyPages(heap, pages));
      // Without the state block's page the same restore misses a page: the check above can fail.
      const statePage = Math.floor(allocator.getRoot(0) / PAGE_SIZE);
      assert.ok(pages.get(statePage));
      pages.clear(statePage);
      assert.throws(() => restoreOn(copyOnlyPages(heap, pages)), PageNotPresentError);
      original.app.serve();
    });

    test('a lost delta (the pages of the last batch left stale) fails VERIFY', async () => {
      const { heap, allocator } = freshHeap(heapBytes);
      const original = await start(context(heap, allocator), 8 * MiB);
      const stale = copyAllocatedPages(heap, allocator);
      heap.dirty.clearAll();
      await run(original.client, spec.opsPerRequest, 1);
      // Only the state block's page (operation count, digest) reaches the copy: the data stays old.
      const statePage = Math.floor(allocator.getRoot(0) / PAGE_SIZE);
      assert.ok(heap.dirty.get(statePage), 'the state block was written');
      stale.heap.rawPages(statePage, 1).set(heap.rawPages(statePage, 1));
      const moved = await start(context(stale.heap, stale.allocator), null);
      const checked = await verify(moved.client);
      assert.equal(checked.match, false, 'VERIFY accepted data older than its digest');
    });

    test('bad RUN arguments get an error reply, not a crash', async () => {
      const { heap, allocator } = freshHeap(heapBytes);
      const { client } = await start(context(heap, allocator), 0);
      for (const args of [
        ['RUN'],
        ['RUN', '0'],
        ['RUN', 'x'],
        ['RUN', '10', '2'],
        ['RUN', '1', '0.5', 'x'],
      ]) {
        const reply = await client.command(...args);
        assert.ok(reply instanceof RespErrorReply, `${args.join(' ')} was accepted`);
      }
      assert.equal(await client.command('PING'), 'PONG');
    });
  });
}

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  DESTINATION_BIND,
  freePortOnBoth,
  LocalCluster,
  SOURCE_BIND,
} from '../../src/bench/local-cluster.js';
import { requestMigration } from '../../src/cli/commands/migrate.js';
import { MigrationProgressView } from '../../src/cli/migrate-progress.js';
import type { EnclaveInfo } from '../../src/host/api-schema.js';
import type { MigrationReport } from '../../src/migrate/report.js';
import type { TrackerKind } from '../../src/trackers/tracker.js';
import { FollowingClient, KvModel, ModelWorker, recordFill, Rng } from '../helpers/kv-model.js';
import { faultTrackerSkip } from '../helpers/fault-tracker.js';

/**
 * Model-based test of live migration: a kv enclave filled with tens of thousands of 1 KiB values
 * (so its keys live on thousands of pages) serves a random workload of GET, SET, DEL, INCR, MSET and
 * MGET from several clients before, during and after a post-copy or hybrid migration. Every reply is
 * checked against a reference model (keys untouched since the fill must still hold the values read
 * back from the source before the workload began); the clients follow the application from the
 * source address to the destination's, retry what is safe to retry when a reply is lost at START,
 * and read back a lost INCR to settle which way it went. After the migration, every key is read
 * from the destination and compared with the model.
 */

const MiB = 2 ** 20;
const HEAP_BYTES = 64 * MiB;
/**
 * A bit over half the heap. The workload replaces 1 KiB fill values with values of up to 9 KB, and slab
 * pages stay allocated once used, so the heap grows with the number of writes, which depends on the
 * machine's speed: at 48 MiB a slow run met a full heap ("OOM command not allowed") now and then.
 */
const FILL_BYTES = 36 * MiB;
const WORKERS = 3;
const EXTRA_KEYS = 1500;
/**
 * Slows the background pages (not demand fetches), so that the clients meet missing pages for sure:
 * post-copy pushes the whole heap after START; hybrid only what its last round left dirty, so it
 * gets a slower link to keep its (short) post-copy window open long enough.
 */
const BANDWIDTH_BPS: Record<'post-copy' | 'hybrid', number> = { 'post-copy': 40e6, hybrid: 20e6 };
/** Operations each client must get answered by the destination before the workload stops. */
const OPS_AFTER_MIGRATION = 200;

describe(
  'a kv enclave under a random workload, checked against a model, migrates live',
  { timeout: 120_000 },
  () => {
    let cluster: LocalCluster;
    before(async () => {
      cluster = await LocalCluster.start('constmig-model-');
    });
    after(async () => {
      await cluster.close();
    });

    async function migrateUnderModel(
      mode: 'post-copy' | 'hybrid',
      tracker: TrackerKind,
      seed: number,
    ): Promise<void> {
      const port = await freePortOnBoth();
      const info = await cluster.client(cluster.source).call<EnclaveInfo>('POST', '/v1/enclaves', {
        app: 'kv',
        heapBytes: HEAP_BYTES,
        port,
        fillBytes: FILL_BYTES,
      });
      const endpoints = [
        { host: SOURCE_BIND, port },
        { host: DESTINATION_BIND, port },
      ];
      const model = new KvModel(await recordFill(endpoints[0]!));
      assert.ok(model.fill.length > 20_000, `only ${model.fill.length} keys were filled`);

      const clients = Array.from({ length: WORKERS }, () => new FollowingClient(endpoints));
      const workers = clients.map(
        (client, i) =>
          new ModelWorker(i, WORKERS, client, model, new Rng(seed + i), EXTRA_KEYS, endpoints.length),
      );
      let running = true;
      const runs = workers.map((w) => w.run(() => running));
      // A mismatch ends its worker at once; the others stop too, and the test reports the first one.
      const failed = Promise.race(runs.map((r) => r.then(() => new Promise<never>(() => {}))));
      failed.catch(() => {
        running = false;
      });
      let report: MigrationReport | undefined;
      let failure: unknown;
      try {
        await Promise.race([sleep(500), failed]);
        report = await Promise.race([
          requestMigration(
            cluster.client(cluster.source),
            info.id,
            {
              to: cluster.destination.controlUrl,
              mode,
              tracker,
              verify: true,
              bandwidthBps: BANDWIDTH_BPS[mode],
            },
            new MigrationProgressView(false),
          ),
          failed,
        ]);
        const deadline = Date.now() + 30_000;
        while (workers.some((w) => w.figures.opsByEndpoint[1]! < OPS_AFTER_MIGRATION)) {
          if (Date.now() > deadline) assert.fail('the clients did not get served by the destination');
          await Promise.race([sleep(50), failed]);
        }
      } catch (err) {
        failure = err;
      }
      running = false;
      // Every worker's outcome first, so that a mismatch is reported rather than a later symptom.
      const outcomes = await Promise.allSettled(runs);
      for (const client of clients) client.close();
      const errors = outcomes.flatMap((o) => (o.status === 'rejected' ? [o.reason as Error] : []));
      if (errors.length > 0) throw errors[0]!;
      if (failure !== undefined || !report) throw failure;

      // Every key, read from the destination, is what the model says.
      let swept = 0;
      for (const w of workers) swept += await w.sweep();
      for (const client of clients) client.close();

      const figures = workers.map((w) => w.figures);
      const summary = {
        mode,
        seed,
        fillKeys: model.fill.length,
        changedKeys: model.changedKeys,
        swept,
        ops: figures.map((f) => f.ops),
        onDestination: figures.map((f) => f.opsByEndpoint[1]),
        lostReplies: figures.map((f) => f.lostReplies),
        settledIncr: figures.map((f) => f.settledIncr),
        demandFaults: report.demandFaults,
        pagesFetched: report.pagesFetched,
        pagesPushed: report.pagesPushed,
        precopyRounds: report.precopyRounds,
        downtimeMs: report.downtimeMs,
        postcopyMs: report.postcopyMs,
        phases: report.phases,
        faultLatencyUs: report.faultLatencyUs,
      };
      process.stderr.write(`live-model ${JSON.stringify(summary)}\n`);

      assert.equal(report.mode, mode);
      assert.equal(report.verified, true, 'the destination digest equals the source digest');
      assert.equal(report.tracker, tracker);
      assert.ok(report.demandFaults > 0, 'the workload met pages that had not arrived yet');
      assert.ok(report.pagesFetched > 0, 'demanded pages came on the urgent channel');
      for (const f of figures) {
        assert.ok(f.opsByEndpoint[0]! > 0, 'every client was served by the source first');
        assert.ok(f.touches >= 1, 'every client touched keys spread over the heap on the destination');
      }
      await cluster.client(cluster.destination).call('DELETE', `/v1/enclaves/${info.id}`);
    }

    for (const tracker of ['access', 'fault'] as const) {
      const skip = tracker === 'fault' && faultTrackerSkip;
      test(
        `post-copy, ${tracker} tracker: every reply before, during and after matches the model`,
        { skip },
        async () => {
          await migrateUnderModel('post-copy', tracker, 0x5eed);
        },
      );

      test(
        `hybrid, ${tracker} tracker: every reply before, during and after matches the model`,
        { skip },
        async () => {
          await migrateUnderModel('hybrid', tracker, 0xb1ed);
        },
      );
    }
  },
);

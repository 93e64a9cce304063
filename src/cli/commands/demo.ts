import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { countLostWrites, KvLoad, type LoadResult } from '../../bench/load/kv-load.js';
import { DESTINATION_BIND, freePortOnBoth, LocalCluster, SOURCE_BIND } from '../../bench/local-cluster.js';
import type { EnclaveInfo } from '../../host/api-schema.js';
import type { MigrationReport } from '../../migrate/report.js';
import { monotonicMs } from '../../util/clock.js';
import { UserError } from '../../util/errors.js';
import { formatBytes } from '../../util/size.js';
import { portOption, printJson, sizeOption } from '../context.js';
import { MigrationProgressView } from '../migrate-progress.js';
import { renderReport } from '../render.js';
import { checkMode, liveOptions, requestMigration } from './migrate.js';

export interface DemoOptions {
  heap: string;
  mode: string;
  port?: string;
  maxDowntime: string;
  bandwidth?: string;
  tracker: string;
  timeline?: string;
  json?: boolean;
}

/**
 * `constmig demo`: two host daemons on this machine (127.0.0.1 and 127.0.0.2), kv filled to the heap
 * size, a client load running throughout, one real migration, and a check of every page (digest) and
 * of every write the client saw acknowledged.
 */
export async function demoCommand(options: DemoOptions): Promise<void> {
  const heapBytes = sizeOption(options.heap, '--heap');
  const mode = checkMode(options.mode);
  const live = liveOptions(options);
  const say = (msg: string) => {
    if (!options.json) process.stderr.write(`• ${msg}\n`);
  };
  const port = options.port ? portOption(options.port) : await freePortOnBoth();
  const cluster = await LocalCluster.start('constmig-demo-');
  const { source, destination } = cluster;
  let ok = false;
  try {
    say(`hosts: ${source.controlUrl} and ${destination.controlUrl} (logs in ${cluster.dir})`);
    const sourceClient = cluster.client(source);

    say(`starting kv with a ${formatBytes(heapBytes)} heap on port ${port} and filling it…`);
    const enclave = await sourceClient.call<EnclaveInfo>('POST', '/v1/enclaves', {
      app: 'kv',
      heapBytes,
      port,
      name: 'demo-kv',
      fillBytes: heapBytes,
    });
    say(
      `kv ${enclave.id}: ${enclave.stats.keys ?? 0} keys, ${formatBytes(enclave.stats.allocatedBytes ?? 0)} allocated; TEE ${enclave.tee}`,
    );

    const keys = enclave.stats.keys ?? 0;
    // YCSB-B: 95 % GETs, zipfian over the filled keys.
    const load = new KvLoad(
      [
        { host: SOURCE_BIND, port },
        { host: DESTINATION_BIND, port },
      ],
      { keySpace: Math.max(keys, 1), filledKeys: keys, writeShare: 0.05 },
    );
    load.start();
    await sleep(500);

    say(`migrating ${enclave.id} by ${mode} while a client keeps using it…`);
    const requestedAtMs = monotonicMs();
    const report: MigrationReport = await requestMigration(
      sourceClient,
      enclave.id,
      { to: destination.controlUrl, mode, verify: true, ...live },
      new MigrationProgressView(!options.json),
    );
    for (let waited = 0; load.sinceLastSuccess() > 20 && waited < 10_000; waited += 10) await sleep(10);
    await sleep(500);
    const loadResult = await load.stop();
    const readBack = await countLostWrites(load, { host: DESTINATION_BIND, port });
    report.clientGapMs = loadResult.clientGapMs;
    const timeline = throughputTimeline(loadResult, requestedAtMs - load.startedAtMs, report);
    if (options.timeline) fs.writeFileSync(options.timeline, `${JSON.stringify(timeline, null, 2)}\n`);

    const demo = {
      clientOps: loadResult.ops,
      clientErrors: loadResult.errors,
      clientReconnects: loadResult.reconnects,
      ackedKeysChecked: readBack.checked,
      lostWrites: readBack.lost,
    };
    ok = report.verified && readBack.lost === 0;
    if (options.json) printJson({ ...report, demo, timeline });
    else {
      process.stdout.write(`${renderReport(report)}\n`);
      process.stdout.write(
        `client      ${demo.clientOps} ops, ${demo.clientReconnects} reconnects; ${demo.ackedKeysChecked} acknowledged writes read back, ${demo.lostWrites} lost\n`,
      );
    }
    if (!ok) throw new UserError('demo failed: the destination state does not match the source');
  } finally {
    await cluster.close(!ok);
    if (!ok) say(`logs kept in ${cluster.dir}`);
  }
}

/**
 * The client's successful operations per 100 ms, with the migration's instants on the same axis (ms
 * since the load started), so that before, during and after can be told apart.
 */
export interface ThroughputTimeline {
  bucketMs: number;
  /** When the load stopped: the last bucket covers only the part of it before this instant. */
  durationMs: number;
  opsPer100ms: number[];
  marks: {
    migrationRequested: number;
    blackout: number | null;
    resumed: number | null;
    committed: number | null;
  };
}

export function throughputTimeline(
  load: LoadResult,
  requestedAtMs: number,
  report: MigrationReport,
): ThroughputTimeline {
  const at = (phaseMs: number | undefined) => (phaseMs === undefined ? null : requestedAtMs + phaseMs);
  return {
    bucketMs: 100,
    durationMs: load.durationMs,
    opsPer100ms: load.opsPer100ms,
    marks: {
      migrationRequested: requestedAtMs,
      blackout: at(report.phases.blackout),
      resumed: at(report.phases.resumed),
      committed: at(report.phases.committed),
    },
  };
}

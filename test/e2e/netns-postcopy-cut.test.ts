import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { NetnsCluster } from '../../src/bench/netns-cluster.js';
import { requestMigration } from '../../src/cli/commands/migrate.js';
import { MigrationProgressView } from '../../src/cli/migrate-progress.js';
import type { EnclaveInfo, MigrateEvent } from '../../src/host/api-schema.js';

/**
 * The network between the two hosts goes dark in the middle of post-copy, for longer than the source
 * waits for a send to drain: the source must notice, dial both channels again once the link is back,
 * and finish the same migration with every page verified. Needs root and iproute2.
 */

const MiB = 2 ** 20;
const KV_PORT = 6381;
/** Longer than the source's send-stall limit (10 s), so that the old connections are given up. */
const DARK_MS = 13_000;

const availability = NetnsCluster.available();
const skip = availability.ok ? false : `network namespaces unavailable: ${availability.reason}`;

/** Takes the link down once, when post-copy has moved a fifth of the pages. */
class CutDuringPostcopy extends MigrationProgressView {
  cut: Promise<void> | null = null;

  constructor(private readonly cluster: NetnsCluster) {
    super(false);
  }

  override update(event: MigrateEvent): void {
    if (this.cut || event.type !== 'progress' || event.phase !== 'postcopy') return;
    if (event.bytesDone < event.bytesTotal / 5) return;
    this.cut = (async () => {
      await this.cluster.linkDown();
      await sleep(DARK_MS);
      await this.cluster.linkUp();
    })();
  }
}

describe('post-copy across a link that goes dark', { skip, timeout: 180_000 }, () => {
  let cluster: NetnsCluster;
  before(async () => {
    cluster = await NetnsCluster.start({ rate: '1gbit' });
  });
  after(async () => {
    await cluster?.close();
  });

  test('the link goes down and up mid post-copy: reconnect, resume, verified', async () => {
    const source = cluster.client(cluster.source);
    const info = await source.call<EnclaveInfo>('POST', '/v1/enclaves', {
      app: 'kv',
      heapBytes: 128 * MiB,
      port: KV_PORT,
      fillBytes: 128 * MiB,
    });
    const view = new CutDuringPostcopy(cluster);
    const report = await requestMigration(
      source,
      info.id,
      {
        to: cluster.destination.controlUrl,
        mode: 'post-copy',
        verify: true,
        // Slow enough that the push is still running when the link goes dark.
        bandwidthBps: 20e6,
        reconnectTimeoutMs: 60_000,
      },
      view,
    );
    assert.ok(view.cut, 'the link was cut during post-copy');
    await view.cut;
    assert.equal(report.mode, 'post-copy');
    assert.equal(report.verified, true, 'the content digest still matches');
    assert.ok(report.reconnects >= 1, `the source dialled again (reconnects: ${report.reconnects})`);
    const onDestination = await cluster
      .client(cluster.destination)
      .call<EnclaveInfo[]>('GET', '/v1/enclaves');
    assert.equal(onDestination.find((e) => e.id === info.id)?.state, 'running');
  });
});

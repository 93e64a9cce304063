import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  DESTINATION_BIND,
  freePortOnBoth,
  LocalCluster,
  SOURCE_BIND,
} from '../../src/bench/local-cluster.js';
import { requestMigration } from '../../src/cli/commands/migrate.js';
import { MigrationProgressView } from '../../src/cli/migrate-progress.js';
import { PAGE_SIZE } from '../../src/heap/constants.js';
import type { EnclaveInfo, MigrateRequest } from '../../src/host/api-schema.js';
import { HostClient } from '../../src/host/client.js';
import { unusedPort } from '../helpers/ports.js';
import { Relay } from '../helpers/relay.js';
import { RespTestClient } from '../helpers/resp-test-client.js';

const MiB = 2 ** 20;

describe('stop-and-copy migration between two host daemons', () => {
  let cluster: LocalCluster;
  before(async () => {
    cluster = await LocalCluster.start('constmig-test-');
  });
  after(async () => {
    await cluster.close();
  });

  async function runKv(fillBytes: number): Promise<EnclaveInfo> {
    const port = await freePortOnBoth();
    return cluster
      .client(cluster.source)
      .call<EnclaveInfo>('POST', '/v1/enclaves', { app: 'kv', heapBytes: 32 * MiB, port, fillBytes });
  }

  const migrate = (id: string, body: MigrateRequest) =>
    requestMigration(cluster.client(cluster.source), id, body, new MigrationProgressView(false));

  test('moves every page and key, keeps the port, and the source is gone', async () => {
    const info = await runKv(8 * MiB);
    const before = await RespTestClient.connect(info.port, SOURCE_BIND);
    assert.equal(await before.command('SET', 'greeting', 'hello enclave'), 'OK');
    assert.equal(await before.command('INCRBY', 'counter', '41'), 41);
    const keysBefore = (await before.command('DBSIZE')) as number;
    before.close();

    const report = await migrate(info.id, {
      to: cluster.destination.controlUrl,
      mode: 'stop-and-copy',
      verify: true,
    });
    assert.equal(report.verified, true);
    assert.equal(report.sourceDigest, report.destinationDigest);
    assert.ok(report.allocatedBytes >= 8 * MiB, `allocated ${report.allocatedBytes}`);
    assert.equal(report.pagesTransferred * PAGE_SIZE, report.allocatedBytes);
    assert.ok(report.allocatedBytes < 32 * MiB, 'never-allocated pages are not transferred');
    assert.ok(report.bytesOnWire > report.allocatedBytes, 'pages travel with headers and tags');
    assert.ok(report.downtimeMs > 0 && report.downtimeMs < report.totalMs);
    assert.equal(report.teeSecure, false);

    const moved = await RespTestClient.connect(info.port, DESTINATION_BIND);
    assert.deepEqual(await moved.command('GET', 'greeting'), Buffer.from('hello enclave'));
    assert.equal(await moved.command('INCR', 'counter'), 42);
    assert.equal(await moved.command('DBSIZE'), keysBefore);
    moved.close();

    const onDestination = await cluster
      .client(cluster.destination)
      .call<EnclaveInfo[]>('GET', '/v1/enclaves');
    assert.deepEqual(
      onDestination.map((e) => [e.id, e.state]),
      [[info.id, 'running']],
    );
    const onSource = await cluster.client(cluster.source).call<EnclaveInfo[]>('GET', '/v1/enclaves');
    assert.equal(onSource.length, 0);
    await RespTestClient.connect(info.port, SOURCE_BIND).then(
      () => assert.fail('the source still accepts connections after COMMIT'),
      () => {},
    );
    await cluster.client(cluster.destination).call('DELETE', `/v1/enclaves/${info.id}`);
  });

  test('--data-address routes the data path through a relay', async () => {
    const info = await runKv(2 * MiB);
    const relay = new Relay({ host: DESTINATION_BIND, port: cluster.destination.peerPort });
    const port = await relay.listen();
    try {
      const report = await migrate(info.id, {
        to: cluster.destination.controlUrl,
        mode: 'stop-and-copy',
        verify: true,
        dataAddress: `127.0.0.1:${port}`,
      });
      assert.equal(report.verified, true);
      assert.ok(relay.bytesForwarded >= report.allocatedBytes, 'the pages went through the relay');
    } finally {
      relay.close();
      await cluster.client(cluster.destination).call('DELETE', `/v1/enclaves/${info.id}`);
    }
  });

  test('a flipped bit on the data path aborts the migration and the source serves again', async () => {
    const info = await runKv(4 * MiB);
    const client = await RespTestClient.connect(info.port, SOURCE_BIND);
    assert.equal(await client.command('SET', 'still', 'here'), 'OK');
    const relay = new Relay(
      { host: DESTINATION_BIND, port: cluster.destination.peerPort },
      (chunk, offset) => {
        const target = 2 * MiB;
        if (offset <= target && target < offset + chunk.length) chunk[target - offset]! ^= 0x01;
        return chunk;
      },
    );
    const port = await relay.listen();
    try {
      await assert.rejects(
        migrate(info.id, {
          to: cluster.destination.controlUrl,
          mode: 'stop-and-copy',
          verify: true,
          dataAddress: `127.0.0.1:${port}`,
        }),
        /migration failed: destination aborted: .*the source serves again/,
      );
      // If the flip hit START or later, the source had already sent its clients away (they find the
      // application where it runs); either way it serves again here.
      client.close();
      const again = await RespTestClient.connect(info.port, SOURCE_BIND);
      assert.deepEqual(await again.command('GET', 'still'), Buffer.from('here'));
      again.close();
      const onSource = await cluster.client(cluster.source).call<EnclaveInfo[]>('GET', '/v1/enclaves');
      assert.deepEqual(
        onSource.map((e) => [e.id, e.state]),
        [[info.id, 'running']],
      );
      const onDestination = await cluster
        .client(cluster.destination)
        .call<EnclaveInfo[]>('GET', '/v1/enclaves');
      assert.equal(onDestination.length, 0, 'the refused destination enclave is gone');
    } finally {
      client.close();
      relay.close();
      await cluster.client(cluster.source).call('DELETE', `/v1/enclaves/${info.id}`);
    }
  });

  test('an unreachable destination fails before anything stops', async () => {
    const info = await runKv(0);
    const nobody = await unusedPort();
    await assert.rejects(
      migrate(info.id, { to: `http://127.0.0.1:${nobody}`, mode: 'stop-and-copy', verify: true }),
      /PREPARE on http:\/\/127\.0\.0\.1:\d+ failed: cannot reach host .*connection refused/,
    );
    const [again] = await cluster.client(cluster.source).call<EnclaveInfo[]>('GET', '/v1/enclaves');
    assert.equal(again?.state, 'running');
    await cluster.client(cluster.source).call('DELETE', `/v1/enclaves/${info.id}`);
  });

  test('--tracker fault where the destination cannot use userfaultfd: a clear refusal before anything stops; auto falls back and says why', async () => {
    const info = await runKv(2 * MiB);
    // Destination enclaves spawned while this is set find no addon, as on a machine where it did not build.
    process.env.CONSTMIG_UFFD_ADDON = '/nonexistent/constmig_uffd.node';
    try {
      await assert.rejects(
        migrate(info.id, { to: cluster.destination.controlUrl, mode: 'post-copy', tracker: 'fault' }),
        /PREPARE on .* failed: .*the Fault Tracker is not available here: the userfaultfd addon is missing at \/nonexistent\/constmig_uffd\.node/,
      );
      const [still] = await cluster.client(cluster.source).call<EnclaveInfo[]>('GET', '/v1/enclaves');
      assert.equal(still?.state, 'running');

      const report = await migrate(info.id, { to: cluster.destination.controlUrl, mode: 'post-copy' });
      assert.equal(report.verified, true);
      assert.equal(report.tracker, 'access');
      assert.match(report.trackerReason ?? '', /the userfaultfd addon is missing/);
    } finally {
      delete process.env.CONSTMIG_UFFD_ADDON;
    }
    await cluster.client(cluster.destination).call('DELETE', `/v1/enclaves/${info.id}`);
  });

  test('the control API refuses callers without the token', async () => {
    await assert.rejects(
      new HostClient(cluster.source.controlUrl).call('GET', '/v1/enclaves'),
      /missing or wrong control token/,
    );
  });
});

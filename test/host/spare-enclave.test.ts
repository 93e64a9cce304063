import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { DESTINATION_BIND, freePortOnBoth, LocalCluster } from '../../src/bench/local-cluster.js';
import { requestMigration } from '../../src/cli/commands/migrate.js';
import { MigrationProgressView } from '../../src/cli/migrate-progress.js';
import type { EnclaveInfo, IncomingReply } from '../../src/host/api-schema.js';
import { HostClient } from '../../src/host/client.js';
import { HostDaemon } from '../../src/host/daemon.js';
import { adoptLog, SpareEnclave } from '../../src/host/spare-enclave.js';
import { isAlive } from '../helpers/processes.js';

const MiB = 2 ** 20;
const silent = pino({ level: 'silent' });

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'constmig-spare-'));
}

async function until<T>(probe: () => T | null, what: string, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = probe();
    if (value !== null) return value;
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${ms} ms`);
    await sleep(20);
  }
}

describe('adoptLog', () => {
  test('moves the spare log to the enclave log', () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'spare.log'), 'spare line\n');
    adoptLog(path.join(dir, 'spare.log'), path.join(dir, 'id.log'));
    assert.equal(fs.readFileSync(path.join(dir, 'id.log'), 'utf8'), 'spare line\n');
    assert.equal(fs.existsSync(path.join(dir, 'spare.log')), false);
  });

  test("keeps an earlier enclave's log of the same id first, and later appends after both", () => {
    const dir = tempDir();
    const spareLog = path.join(dir, 'spare.log');
    const idLog = path.join(dir, 'id.log');
    fs.writeFileSync(idLog, 'earlier enclave\n');
    fs.writeFileSync(spareLog, 'spare\n');
    // The spare's own descriptor, opened for appending before the move, as the enclave process holds it.
    const fd = fs.openSync(spareLog, 'a');
    adoptLog(spareLog, idLog);
    fs.writeSync(fd, 'after init\n');
    fs.closeSync(fd);
    assert.equal(fs.readFileSync(idLog, 'utf8'), 'earlier enclave\nspare\nafter init\n');
  });
});

describe('SpareEnclave', () => {
  test('is taken once, with its log moved; close stops a spare that was not taken', async () => {
    const dir = tempDir();
    const spares = new SpareEnclave(dir, silent);
    assert.equal(spares.pid, null);
    spares.replenish();
    const pid = spares.pid;
    assert.ok(pid !== null && pid > 0);
    const taken = spares.take(path.join(dir, 'abcd0123.log'));
    assert.equal(taken?.pid, pid);
    assert.equal(spares.take(path.join(dir, 'other.log')), null, 'one spare is taken once');
    assert.deepEqual(fs.readdirSync(dir), ['abcd0123.log']);
    await taken!.stop();

    spares.replenish();
    const next = spares.take(path.join(dir, 'next.log'))!;
    spares.replenish();
    const unused = spares.pid;
    assert.ok(unused !== null && unused !== next.pid);
    await spares.close();
    assert.equal(isAlive(unused), false, 'close stops the spare');
    spares.replenish();
    assert.equal(spares.pid, null, 'no spare after close');
    await next.stop();
  });

  test('a spare started under another environment is stopped instead of taken', async () => {
    const dir = tempDir();
    const spares = new SpareEnclave(dir, silent);
    spares.replenish();
    const stale = spares.pid!;
    process.env.CONSTMIG_SPARE_TEST = 'changed';
    try {
      assert.equal(spares.take(path.join(dir, 'x.log')), null);
    } finally {
      delete process.env.CONSTMIG_SPARE_TEST;
    }
    await until(() => (isAlive(stale) ? null : true), 'the stale spare to exit');
    spares.replenish();
    const fresh = spares.pid!;
    assert.equal(spares.take(path.join(dir, 'y.log'))?.pid, fresh, 'same environment: taken');
    process.kill(fresh, 'SIGKILL');
  });

  test('a spare that exits on its own is forgotten, not started again', async () => {
    const spares = new SpareEnclave(tempDir(), silent);
    spares.replenish();
    process.kill(spares.pid!, 'SIGKILL');
    // Started again on its exit, the spare would never be seen missing.
    await until(() => (spares.pid === null ? true : null), 'the spare to be forgotten');
    assert.equal(spares.take(path.join(tempDir(), 'x.log')), null);
  });
});

describe('a host with a spare enclave', () => {
  let cluster: LocalCluster;
  before(async () => {
    cluster = await LocalCluster.start('constmig-test-');
  });
  after(async () => {
    await cluster.close();
  });

  const destinationEnclaves = () =>
    cluster.client(cluster.destination).call<EnclaveInfo[]>('GET', '/v1/enclaves');
  const spare = () => cluster.destination.spare!;

  test('an incoming migration runs in the spare; the next spare starts once it has ended', async () => {
    const sparePid = spare().pid;
    assert.ok(sparePid !== null);
    const port = await freePortOnBoth();
    const info = await cluster
      .client(cluster.source)
      .call<EnclaveInfo>('POST', '/v1/enclaves', { app: 'kv', heapBytes: 4 * MiB, port, fillBytes: MiB });
    const report = await requestMigration(
      cluster.client(cluster.source),
      info.id,
      { to: cluster.destination.controlUrl, mode: 'post-copy', verify: true },
      new MigrationProgressView(false),
    );
    assert.equal(report.verified, true);
    const [moved] = await destinationEnclaves();
    assert.equal(moved?.pid, sparePid, 'the destination enclave is the spare');
    const logs = path.join(cluster.destination.options.stateDir, 'logs');
    assert.match(fs.readFileSync(path.join(logs, `${info.id}.log`), 'utf8'), /incoming migration complete/);
    const next = await until(() => spare().pid, 'a new spare');
    assert.notEqual(next, sparePid);
    await cluster.client(cluster.destination).call('DELETE', `/v1/enclaves/${info.id}`);
  });

  test('no spare starts while an incoming migration is prepared; without a spare PREPARE forks one', async () => {
    const sparePid = await until(() => spare().pid, 'a spare');
    const prepare = async () => {
      const reply = await cluster.client(cluster.destination).call<IncomingReply>('POST', '/v1/incoming', {
        id: randomBytes(4).toString('hex'),
        name: 'spare-test',
        app: 'kv',
        heapBytes: 2 * MiB,
        port: await freePortOnBoth(),
        tracker: 'none',
      });
      const enclave = (await destinationEnclaves()).find((e) => e.id === reply.id)!;
      return { id: reply.id, pid: enclave.pid };
    };
    const first = await prepare();
    assert.equal(first.pid, sparePid);
    assert.equal(spare().pid, null, 'no spare while the incoming enclave waits for its source');
    const second = await prepare();
    assert.ok(second.pid > 0 && second.pid !== sparePid);
    assert.equal(spare().pid, null);

    const destination = cluster.client(cluster.destination);
    await destination.call('DELETE', `/v1/enclaves/${first.id}`);
    assert.equal(spare().pid, null, 'one incoming migration is still prepared');
    await destination.call('DELETE', `/v1/enclaves/${second.id}`);
    const next = await until(() => spare().pid, 'a new spare once none is prepared');
    assert.ok(next !== first.pid && next !== second.pid);
  });

  test('a host started without one forks the incoming enclave', async () => {
    const dir = tempDir();
    const host = new HostDaemon({
      listen: { host: DESTINATION_BIND, port: 0 },
      bind: DESTINATION_BIND,
      peerPort: null,
      stateDir: dir,
      logFile: path.join(dir, 'host.log'),
      token: cluster.token,
      simRootKeyFile: path.join(cluster.dir, 'sim-root-key.pem'),
      spareEnclave: false,
    });
    await host.start();
    try {
      assert.equal(host.spare, null);
      const client = new HostClient(host.controlUrl, cluster.token);
      const reply = await client.call<IncomingReply>('POST', '/v1/incoming', {
        id: randomBytes(4).toString('hex'),
        name: 'no-spare',
        app: 'kv',
        heapBytes: 2 * MiB,
        port: await freePortOnBoth(),
        tracker: 'none',
      });
      const [incoming] = await client.call<EnclaveInfo[]>('GET', '/v1/enclaves');
      assert.deepEqual([incoming?.id, incoming?.state], [reply.id, 'incoming']);
      assert.deepEqual(fs.readdirSync(path.join(dir, 'logs')), [`${reply.id}.log`]);
    } finally {
      await host.close();
    }
  });
});

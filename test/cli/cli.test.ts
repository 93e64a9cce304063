import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freePortOnBoth, LocalCluster } from '../../src/bench/local-cluster.js';
import { unusedPort } from '../helpers/ports.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

function cli(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A user mistake is one line on stderr, a non-zero exit, and never a stack trace. */
function assertOneLineError(result: { code: number | null; stderr: string }, pattern: RegExp): void {
  assert.notEqual(result.code, 0);
  assert.match(result.stderr, pattern);
  assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace');
  assert.equal(result.stderr.trim().split('\n').length, 1, `one line, got: ${result.stderr}`);
}

describe('constmig CLI against real host daemons', () => {
  let cluster: LocalCluster;
  let env: Record<string, string>;
  before(async () => {
    cluster = await LocalCluster.start('constmig-cli-test-');
    env = { CONSTMIG_TOKEN: cluster.token };
  });
  after(async () => {
    await cluster.close();
  });

  test('run, ps --json, migrate --json, stop', async () => {
    const port = String(await freePortOnBoth());
    const run = await cli(
      [
        'run',
        'kv',
        '--host',
        cluster.source.controlUrl,
        '--heap',
        '16MiB',
        '--port',
        port,
        '--fill',
        '4MiB',
        '--name',
        'cli-kv',
      ],
      env,
    );
    assert.equal(run.code, 0, run.stderr);
    const id = run.stdout.trim();
    assert.match(id, /^[0-9a-f]{8}$/);

    const ps = await cli(['ps', '--host', cluster.source.controlUrl, '--json'], env);
    const list = JSON.parse(ps.stdout) as {
      id: string;
      name: string;
      state: string;
      stats: { keys: number };
    }[];
    assert.deepEqual(
      list.map((e) => [e.id, e.name, e.state]),
      [[id, 'cli-kv', 'running']],
    );
    assert.ok(list[0]!.stats.keys > 0, 'filled');

    const migrate = await cli(
      ['migrate', id, '--from', cluster.source.controlUrl, '--to', cluster.destination.controlUrl, '--json'],
      env,
    );
    assert.equal(migrate.code, 0, migrate.stderr);
    const report = JSON.parse(migrate.stdout) as Record<string, unknown>;
    assert.equal(report.verified, true);
    assert.equal(report.mode, 'stop-and-copy');
    for (const field of [
      'heapBytes',
      'allocatedBytes',
      'pagesTransferred',
      'bytesOnWire',
      'downtimeMs',
      'totalMs',
      'throughputMBps',
      'sourcePeakRssBytes',
      'destinationPeakRssBytes',
    ]) {
      assert.equal(typeof report[field], 'number', field);
    }
    assert.equal(typeof report.phases, 'object');

    const back = await cli(
      ['migrate', id, '--from', cluster.destination.controlUrl, '--to', cluster.source.controlUrl],
      env,
    );
    assert.equal(back.code, 0, back.stderr);
    assert.match(back.stdout, /^verified\s+yes/m);
    assert.match(back.stdout, /^downtime\s+\d+\.\d ms$/m);
    assert.match(back.stdout, /^client gap\s+-$/m);
    const home = await cli(
      ['migrate', id, '--from', cluster.source.controlUrl, '--to', cluster.destination.controlUrl],
      env,
    );
    assert.equal(home.code, 0, home.stderr);

    const table = await cli(['ps', '--host', cluster.destination.controlUrl], env);
    assert.match(table.stdout, new RegExp(`${id}\\s+cli-kv\\s+kv\\s+running\\s+127\\.0\\.0\\.2:${port}`));
    assert.match(table.stdout, /NOT SECURE/);
    const stop = await cli(['stop', id, '--host', cluster.destination.controlUrl], env);
    assert.equal(stop.code, 0, stop.stderr);
  });

  test('bad input is one line and a non-zero exit', async () => {
    const src = cluster.source.controlUrl;
    const dst = cluster.destination.controlUrl;
    assertOneLineError(
      await cli(['migrate', 'abcd1234', '--from', src, '--to', dst, '--mode', 'teleport'], env),
      /unknown mode 'teleport'/,
    );
    assertOneLineError(
      await cli(['run', 'kv', '--host', src, '--heap', 'lots', '--port', '7000'], env),
      /--heap: malformed size 'lots'/,
    );
    assertOneLineError(
      await cli(['run', 'kv', '--host', src, '--heap', '1XB', '--port', '7000'], env),
      /unknown unit/,
    );
    assertOneLineError(
      await cli(['run', 'nosuchapp', '--host', src, '--heap', '8MiB', '--port', '7000'], env),
      /unknown application/,
    );
    const nobody = await unusedPort();
    assertOneLineError(
      await cli(['ps', '--host', `http://127.0.0.1:${nobody}`], env),
      new RegExp(`cannot reach host http://127\\.0\\.0\\.1:${nobody}: connection refused`),
    );
    assertOneLineError(await cli(['stop', 'deadbeef', '--host', src], env), /no enclave with id 'deadbeef'/);
    assertOneLineError(
      await cli(['migrate', 'deadbeef', '--from', src, '--to', dst], env),
      /no enclave with id 'deadbeef'/,
    );
    assertOneLineError(
      await cli(['ps', '--host', src], { CONSTMIG_TOKEN: 'wrong-token-000000' }),
      /missing or wrong control token/,
    );
    assertOneLineError(
      await cli(['migrate', 'abcd1234', '--from', src, '--to', dst, '--data-address', 'nowhere'], env),
      /malformed --data-address/,
    );

    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen({ host: '127.0.0.1', port: 0 }, r));
    const busy = String((blocker.address() as net.AddressInfo).port);
    try {
      assertOneLineError(
        await cli(['run', 'kv', '--host', src, '--heap', '8MiB', '--port', busy], env),
        /in use/,
      );
      assertOneLineError(await cli(['host', '--listen', `127.0.0.1:${busy}`]), /already in use/);
    } finally {
      blocker.close();
    }
  });
});

test('constmig demo migrates under client load and verifies', async () => {
  const result = await cli(['demo', '--heap', '48MiB', '--json']);
  assert.equal(result.code, 0, result.stderr);
  const report = JSON.parse(result.stdout) as {
    verified: boolean;
    clientGapMs: number;
    demo: { lostWrites: number; clientOps: number; ackedKeysChecked: number };
  };
  assert.equal(report.verified, true);
  assert.equal(report.demo.lostWrites, 0);
  assert.ok(report.demo.clientOps > 0 && report.demo.ackedKeysChecked > 0);
  assert.ok(report.clientGapMs > 0);
});

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import readline from 'node:readline';
import { after, before, describe, test } from 'node:test';
import type { LoadParams } from '../../src/bench/load/bench-load.js';
import {
  LOAD_PROCESS_MAIN,
  type NodeSpawner,
  startLoadProcess,
} from '../../src/bench/load/load-process-client.js';
import { freePortOnBoth, LocalCluster, SOURCE_BIND } from '../../src/bench/local-cluster.js';
import type { EnclaveInfo } from '../../src/host/api-schema.js';
import { monotonicMs } from '../../src/util/clock.js';

/** A client load in a process of its own (load-process.ts), here simply a child of the test. */

const MiB = 2 ** 20;
const spawnHere: NodeSpawner = (args, options) => spawn(process.execPath, args, options);

async function runWith(args: string[]): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [LOAD_PROCESS_MAIN, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stderr };
}

describe('load-process: parameters', () => {
  const valid: LoadParams = {
    kind: 'kv',
    writeShare: 0.5,
    filledKeys: 10,
    endpoints: [{ host: '127.0.0.1', port: 6379 }],
    checkAt: { host: '127.0.0.1', port: 6379 },
  };

  for (const [what, args, pattern] of [
    ['no parameters', [], /load parameters are not JSON/],
    ['not JSON', ['{kind'], /load parameters are not JSON/],
    ['an unknown workload', [JSON.stringify({ ...valid, kind: 'sort' })], /load parameters: kind: /],
    ['a write share above 1', [JSON.stringify({ ...valid, writeShare: 2 })], /load parameters: writeShare: /],
    ['no endpoint', [JSON.stringify({ ...valid, endpoints: [] })], /load parameters: endpoints: /],
    [
      'a port out of range',
      [JSON.stringify({ ...valid, checkAt: { host: 'h', port: 0 } })],
      /checkAt\.port: /,
    ],
    ['an unknown field', [JSON.stringify({ ...valid, rate: 1 })], /load parameters: \(top\): .*rate/],
  ] as const) {
    test(`${what}: one line on stderr, exit code 2`, async () => {
      const { code, stderr } = await runWith([...args]);
      assert.equal(code, 2);
      assert.match(stderr, pattern);
      assert.equal(stderr.trim().split('\n').length, 1, stderr);
    });
  }

  test('a child that dies before its load runs: the error says how, with its stderr', async () => {
    const dying: NodeSpawner = (_args, options) =>
      spawn(process.execPath, ['-e', 'console.error("no luck"); process.exit(3)'], options);
    await assert.rejects(startLoadProcess(dying, valid), /the load process exited with code 3: no luck/);
  });
});

describe('load-process against a kv enclave', { timeout: 60_000 }, () => {
  let cluster: LocalCluster;
  let params: LoadParams;
  before(async () => {
    cluster = await LocalCluster.start('constmig-load-process-test-');
    const port = await freePortOnBoth();
    const enclave = await cluster.client(cluster.source).call<EnclaveInfo>('POST', '/v1/enclaves', {
      app: 'kv',
      heapBytes: 16 * MiB,
      port,
      fillBytes: 2 * MiB,
    });
    const at = { host: SOURCE_BIND, port };
    params = {
      kind: 'kv',
      writeShare: 0.5,
      filledKeys: enclave.stats.keys ?? 0,
      endpoints: [at],
      checkAt: at,
    };
    assert.ok(params.filledKeys > 0);
  });
  after(async () => {
    await cluster?.close();
  });

  test('runs, is served, stops with its result and the read-back of its writes', async () => {
    const before = monotonicMs();
    const load = await startLoadProcess(spawnHere, params);
    // The same CLOCK_MONOTONIC in every process: the child's start lies between these two readings.
    assert.ok(
      before <= load.startedAtMs && load.startedAtMs <= monotonicMs(),
      `${before} ${load.startedAtMs}`,
    );
    await load.servedAgain(5000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const { result, check } = await load.stop(true);
    assert.ok(result.ops > 0, `ops ${result.ops}`);
    assert.equal(result.errors, 0);
    assert.equal(
      result.opsPer100ms.reduce((a, b) => a + b, 0),
      result.ops,
      'every operation is in a bucket',
    );
    assert.ok(result.durationMs >= 300);
    assert.ok(check && check.checked > 0, `checked ${check?.checked}`);
    assert.equal(check.lost, 0);
  });

  test('stop without check: no read-back', async () => {
    const load = await startLoadProcess(spawnHere, params);
    const { result, check } = await load.stop(false);
    assert.equal(check, null);
    assert.ok(result.durationMs >= 0);
  });

  test('the protocol: a start line, then one JSON line answering `stop check`, then exit 0', async () => {
    const child = spawn(process.execPath, [LOAD_PROCESS_MAIN, JSON.stringify(params)], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const lines = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    const started = JSON.parse((await lines.next()).value as string) as Record<string, unknown>;
    assert.deepEqual(Object.keys(started), ['startedAtMs']);
    child.stdin.write('bogus\n');
    assert.deepEqual(JSON.parse((await lines.next()).value as string), { error: "unknown command 'bogus'" });
    child.stdin.write('stop check\n');
    const outcome = JSON.parse((await lines.next()).value as string) as Record<
      string,
      Record<string, unknown>
    >;
    assert.deepEqual(Object.keys(outcome).sort(), ['check', 'result']);
    assert.equal(outcome.check!.lost, 0);
    assert.equal(typeof outcome.result!.ops, 'number');
    const [code] = (await once(child, 'close')) as [number | null];
    assert.equal(code, 0);
  });
});

import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { createKvApp, type KvApp } from '../../../src/apps/kv/kv-app.js';
import { freshHeap } from '../../helpers/app-heap.js';

/**
 * The kv application driven by the real Redis clients. The app runs in this process, so the clients
 * must run asynchronously (a synchronous child would block the server it talks to).
 */
const run = promisify(execFile);
const installed =
  spawnSync('redis-cli', ['--version']).status === 0 &&
  spawnSync('redis-benchmark', ['--version']).status === 0;
if (!installed && process.env.CI)
  throw new Error('redis-cli and redis-benchmark must be installed in CI (apt-get install redis-tools)');
const skip = installed
  ? false
  : 'redis-cli/redis-benchmark not installed (apt-get install redis-tools); skipping';

async function startApp(): Promise<KvApp> {
  const app = createKvApp({ ...freshHeap(64 * 2 ** 20), bindAddress: '127.0.0.1', port: 0, log: () => {} });
  app.format();
  await app.listen();
  app.serve();
  return app;
}

describe('redis-cli', { skip }, () => {
  let app: KvApp;
  const cli = async (...args: string[]): Promise<string> => {
    const { stdout } = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(app.boundPort), ...args]);
    return stdout.replace(/\n$/, '');
  };
  before(async () => {
    app = await startApp();
  });
  after(() => app.close());

  test('PING, SET, GET, EXISTS, DEL', async () => {
    assert.equal(await cli('PING'), 'PONG');
    assert.equal(await cli('SET', 'greeting', 'hello world'), 'OK');
    assert.equal(await cli('GET', 'greeting'), 'hello world');
    assert.equal(await cli('EXISTS', 'greeting', 'nope'), '1');
    assert.equal(await cli('DEL', 'greeting'), '1');
    assert.equal(await cli('GET', 'greeting'), '');
  });

  test('INCR, MSET, MGET, DBSIZE', async () => {
    assert.equal(await cli('INCR', 'visits'), '1');
    assert.equal(await cli('INCR', 'visits'), '2');
    assert.equal(await cli('MSET', 'a', '1', 'b', '2'), 'OK');
    assert.equal(await cli('MGET', 'a', 'missing', 'b'), '1\n\n2');
    assert.equal(await cli('DBSIZE'), '3');
  });

  test('INFO', async () => {
    const info = await cli('INFO');
    assert.match(info, /^# Server\r?\nredis_version:7\.0\.0\r?$/m);
    assert.match(info, /^db0:keys=3,expires=0,avg_ttl=0\r?$/m);
    assert.match(info, /^used_memory:\d+\r?$/m);
  });

  test('errors are printed as Redis prints them', async () => {
    assert.equal(await cli('NOSUCH', 'x'), "ERR unknown command 'NOSUCH', with args beginning with: 'x' \n");
    assert.equal(await cli('GET'), "ERR wrong number of arguments for 'get' command\n");
  });
});

describe('redis-benchmark', { skip }, () => {
  test('ping, set, get, incr, mset pipelined: exit 0, one result line per test, keys as expected', async () => {
    const app = await startApp();
    try {
      const { stdout } = await run('redis-benchmark', [
        '-h',
        '127.0.0.1',
        '-p',
        String(app.boundPort),
        '-q',
        '-n',
        '5000',
        '-P',
        '16',
        '-t',
        'ping,set,get,incr,mset',
      ]);
      // -q redraws a progress line with \r; the final figure of each test follows the last \r.
      const results = stdout
        .split(/[\r\n]+/)
        .map((line) => line.trim())
        .filter((line) => / requests per second/.test(line));
      const names = results.map((line) => line.slice(0, line.indexOf(':')));
      assert.deepEqual(names, ['PING_INLINE', 'PING_MBULK', 'SET', 'GET', 'INCR', 'MSET (10 keys)']);
      for (const line of results) assert.match(line, /: \d+(\.\d+)? requests per second/);
      // SET, GET and MSET use the literal key key:__rand_int__, INCR counter:__rand_int__.
      const cli = (...args: string[]) =>
        run('redis-cli', ['-h', '127.0.0.1', '-p', String(app.boundPort), ...args]);
      assert.equal((await cli('DBSIZE')).stdout.trim(), '2');
      assert.equal(app.stats().keys, 2);
      // With -P, clients send whole pipelines, so a few more than -n requests may run.
      const increments = Number((await cli('GET', 'counter:__rand_int__')).stdout.trim());
      assert.ok(increments >= 5000 && increments < 5000 + 50 * 16, `${increments} increments`);
    } finally {
      await app.close();
    }
  });
});

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { AppContext } from '../../../src/apps/app.js';
import { createKvApp, type KvApp } from '../../../src/apps/kv/kv-app.js';
import { restorePagesOf } from '../../../src/apps/app.js';
import { KV_ROOT_SLOT } from '../../../src/apps/kv/kv-store.js';
import { HeapAllocator } from '../../../src/heap/allocator.js';
import { PAGE_SIZE } from '../../../src/heap/constants.js';
import { PageNotPresentError } from '../../../src/heap/errors.js';
import type { SecureHeap } from '../../../src/heap/secure-heap.js';
import { copyAllocatedPages, copyOnlyPages, freshHeap } from '../../helpers/app-heap.js';
import { encodeCommand, RespErrorReply, RespTestClient } from '../../helpers/resp-test-client.js';

const MiB = 2 ** 20;

function context(overrides: Partial<AppContext> = {}): AppContext {
  const { heap, allocator } = freshHeap(32 * MiB);
  return { heap, allocator, bindAddress: '127.0.0.1', port: 0, log: () => {}, ...overrides };
}

async function servingApp(ctx = context()): Promise<KvApp> {
  const app = createKvApp(ctx);
  app.format();
  await app.listen();
  app.serve();
  return app;
}

const OK = 'OK';
const err = (message: string) => new RespErrorReply(message);
const bulk = (text: string) => Buffer.from(text);

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

describe('kv app commands', () => {
  let app: KvApp;
  let client: RespTestClient;
  before(async () => {
    app = await servingApp();
    client = await RespTestClient.connect(app.boundPort);
  });
  after(async () => {
    client.close();
    await app.close();
  });

  test('PING and ECHO', async () => {
    assert.equal(await client.command('PING'), 'PONG');
    assert.deepEqual(await client.command('ping', 'hi'), bulk('hi'));
    assert.deepEqual(
      await client.command('PING', 'a', 'b'),
      err("ERR wrong number of arguments for 'ping' command"),
    );
    assert.deepEqual(await client.command('ECHO', Buffer.from([0, 13, 10])), Buffer.from([0, 13, 10]));
  });

  test('SET and GET, with NX, XX and GET options', async () => {
    assert.equal(await client.command('SET', 'k', 'v1'), OK);
    assert.deepEqual(await client.command('GET', 'k'), bulk('v1'));
    assert.equal(await client.command('GET', 'missing'), null);
    assert.equal(await client.command('SET', 'k', 'v2', 'NX'), null);
    assert.equal(await client.command('SET', 'k', 'v2', 'xx'), OK);
    assert.equal(await client.command('SET', 'fresh', 'v', 'XX'), null);
    assert.equal(await client.command('SET', 'fresh', 'v', 'NX'), OK);
    assert.deepEqual(await client.command('SET', 'k', 'v3', 'GET'), bulk('v2'));
    assert.deepEqual(await client.command('GET', 'k'), bulk('v3'));
    assert.deepEqual(await client.command('SET', 'k', 'v', 'EX', '10'), err('ERR syntax error'));
    assert.deepEqual(await client.command('SET', 'k', 'v', 'NX', 'XX'), err('ERR syntax error'));
    assert.deepEqual(
      await client.command('SET', 'k'),
      err("ERR wrong number of arguments for 'set' command"),
    );
    assert.deepEqual(await client.command('GET', 'k'), bulk('v3'));
  });

  test('DEL and EXISTS count keys, duplicates included for EXISTS', async () => {
    await client.command('MSET', 'd1', 'x', 'd2', 'y');
    assert.equal(await client.command('EXISTS', 'd1', 'd1', 'd2', 'nope'), 3);
    assert.equal(await client.command('DEL', 'd1', 'd2', 'nope'), 2);
    assert.equal(await client.command('EXISTS', 'd1', 'd2'), 0);
    assert.deepEqual(await client.command('DEL'), err("ERR wrong number of arguments for 'del' command"));
  });

  test('INCR, INCRBY, DECR, DECRBY with Redis errors', async () => {
    assert.equal(await client.command('INCR', 'counter'), 1);
    assert.equal(await client.command('INCRBY', 'counter', '41'), 42);
    assert.equal(await client.command('DECR', 'counter'), 41);
    assert.equal(await client.command('DECRBY', 'counter', '50'), -9);
    await client.command('SET', 'text', 'abc');
    assert.deepEqual(
      await client.command('INCR', 'text'),
      err('ERR value is not an integer or out of range'),
    );
    assert.deepEqual(
      await client.command('INCRBY', 'counter', '1.5'),
      err('ERR value is not an integer or out of range'),
    );
    assert.deepEqual(
      await client.command('DECRBY', 'counter', '-9223372036854775808'),
      err('ERR decrement would overflow'),
    );
    await client.command('SET', 'max', '9223372036854775806');
    assert.equal(await client.command('INCR', 'max'), 2n ** 63n - 1n);
    assert.deepEqual(await client.command('GET', 'max'), bulk('9223372036854775807'));
    assert.deepEqual(await client.command('INCR', 'max'), err('ERR increment or decrement would overflow'));
  });

  test('MGET and MSET', async () => {
    assert.equal(await client.command('MSET', 'm1', 'a', 'm2', Buffer.from([1, 2, 3])), OK);
    assert.deepEqual(await client.command('MGET', 'm1', 'nope', 'm2'), [
      bulk('a'),
      null,
      Buffer.from([1, 2, 3]),
    ]);
    assert.deepEqual(
      await client.command('MSET', 'm1', 'a', 'm2'),
      err("ERR wrong number of arguments for 'mset' command"),
    );
  });

  test('DBSIZE, SELECT, COMMAND, CONFIG GET', async () => {
    const keys = await client.command('DBSIZE');
    assert.equal(keys, app.stats().keys);
    assert.equal(await client.command('SELECT', '0'), OK);
    assert.deepEqual(await client.command('SELECT', '1'), err('ERR DB index is out of range'));
    assert.deepEqual(await client.command('SELECT', 'x'), err('ERR value is not an integer or out of range'));
    assert.deepEqual(await client.command('COMMAND'), []);
    assert.deepEqual(await client.command('COMMAND', 'DOCS'), []);
    assert.ok(((await client.command('COMMAND', 'COUNT')) as number) > 15);
    assert.deepEqual(await client.command('CONFIG', 'GET', 'save'), [bulk('save'), bulk('')]);
    assert.deepEqual(await client.command('CONFIG', 'GET', 'appendonly'), [bulk('appendonly'), bulk('no')]);
    assert.deepEqual(await client.command('CONFIG', 'GET', 'no-such-param'), []);
    assert.deepEqual(
      await client.command('CONFIG', 'SET', 'save', ''),
      err("ERR unknown subcommand 'SET'. Try CONFIG HELP."),
    );
  });

  test('INFO reports server, keyspace and heap figures, and single sections', async () => {
    await client.command('SET', 'info-key', 'v');
    const info = ((await client.command('INFO')) as Buffer).toString();
    assert.match(info, /^# Server\r\nredis_version:7\.0\.0\r\n/);
    assert.match(info, new RegExp(`\r\ntcp_port:${app.boundPort}\r\n`));
    assert.match(info, new RegExp(`# Keyspace\r\ndb0:keys=${app.stats().keys},expires=0,avg_ttl=0\r\n$`));
    const used = /\r\nused_memory:(\d+)\r\n/.exec(info);
    assert.ok(used && Number(used[1]) > 0);
    assert.match(info, new RegExp(`\r\nmaxmemory:${32 * MiB}\r\n`));
    assert.match(info, /\r\nconnected_clients:1\r\n/);
    const keyspace = ((await client.command('INFO', 'keyspace')) as Buffer).toString();
    assert.equal(keyspace, `# Keyspace\r\ndb0:keys=${app.stats().keys},expires=0,avg_ttl=0\r\n`);
    assert.deepEqual(await client.command('INFO', 'nonsense'), bulk(''));
  });

  test('DEBUG POPULATE creates prefix:n keys, keeping existing ones', async () => {
    await client.command('SET', 'pop:2', 'mine');
    const before = (await client.command('DBSIZE')) as number;
    assert.equal(await client.command('DEBUG', 'POPULATE', '5', 'pop', '16'), OK);
    assert.equal(await client.command('DBSIZE'), before + 4);
    assert.deepEqual(await client.command('GET', 'pop:2'), bulk('mine'));
    assert.equal(((await client.command('GET', 'pop:4')) as Buffer).length, 16);
    assert.deepEqual(
      await client.command('DEBUG', 'POPULATE', '-1'),
      err('ERR value is out of range, must be positive'),
    );
    assert.deepEqual(
      await client.command('DEBUG', 'SLEEP', '1'),
      err("ERR unknown subcommand or wrong number of arguments for 'SLEEP'. Try DEBUG HELP."),
    );
  });

  test('unknown commands and wrong arity get the Redis 7 messages', async () => {
    assert.deepEqual(
      await client.command('FOO'),
      err("ERR unknown command 'FOO', with args beginning with: "),
    );
    assert.deepEqual(
      await client.command('foo', 'a', 'b c'),
      err("ERR unknown command 'foo', with args beginning with: 'a' 'b c' "),
    );
    assert.deepEqual(await client.command('GET'), err("ERR wrong number of arguments for 'get' command"));
    assert.deepEqual(
      await client.command('GeT', 'a', 'b'),
      err("ERR wrong number of arguments for 'get' command"),
    );
  });

  test('a full heap answers OOM and the store stays usable', async (t) => {
    const small = await servingApp(context(freshHeap(2 * MiB)));
    t.after(() => small.close());
    const c = await RespTestClient.connect(small.boundPort);
    t.after(() => c.close());
    let reply: unknown = OK;
    let i = 0;
    while (reply === OK) reply = await c.command('SET', `big:${i++}`, Buffer.alloc(100_000, 1));
    assert.deepEqual(reply, err("OOM command not allowed when used memory > 'maxmemory'."));
    assert.equal(await c.command('DBSIZE'), i - 1);
    assert.equal(await c.command('DEL', 'big:0'), 1);
    assert.equal(await c.command('SET', 'after', 'ok'), OK);
  });
});

describe('kv app connections', () => {
  test('answers a pipelined batch in order, with one write', async (t) => {
    const app = await servingApp();
    t.after(() => app.close());
    const client = await RespTestClient.connect(app.boundPort);
    t.after(() => client.close());
    const commands = Array.from(
      { length: 200 },
      (_, i) => encodeCommand(['INCR', 'pipelined']).toString() + (i % 2 ? 'PING\r\n' : ''),
    );
    // Held while paused, so that the whole batch is processed at once however TCP chunked it.
    app.pause();
    client.send(commands.join(''));
    await sleep(100);
    app.serve();
    const replies = await client.read(300);
    let expected = 0;
    const wanted = commands.flatMap((_, i) => (i % 2 ? [++expected, 'PONG'] : [++expected]));
    assert.deepEqual(replies, wanted);
    assert.equal(client.chunksReceived, 1);
  });

  test('a protocol error gets the replies before it, the error, then the connection closes', async (t) => {
    const app = await servingApp();
    t.after(() => app.close());
    const client = await RespTestClient.connect(app.boundPort);
    t.after(() => client.close());
    client.send(`${encodeCommand(['PING']).toString()}*1\r\n$x\r\n`);
    assert.deepEqual(await client.read(2), ['PONG', err('ERR Protocol error: invalid bulk length')]);
    await client.closed;
  });

  test('QUIT replies OK and closes; later commands in the batch are not run', async (t) => {
    const app = await servingApp();
    t.after(() => app.close());
    const client = await RespTestClient.connect(app.boundPort);
    t.after(() => client.close());
    client.send(Buffer.concat([encodeCommand(['QUIT']), encodeCommand(['SET', 'after-quit', 'x'])]));
    assert.deepEqual(await client.read(1), [OK]);
    await client.closed;
    const other = await RespTestClient.connect(app.boundPort);
    assert.equal(await other.command('EXISTS', 'after-quit'), 0);
    other.close();
  });

  test('a command sent while paused is answered only after serve()', async (t) => {
    const app = await servingApp();
    t.after(() => app.close());
    const client = await RespTestClient.connect(app.boundPort);
    t.after(() => client.close());
    assert.equal(await client.command('SET', 'k', '1'), OK);
    app.pause();
    client.send(encodeCommand(['INCR', 'k']));
    await sleep(150);
    assert.equal(client.pending, 0);
    assert.equal(app.stats().commands, 1);
    app.serve();
    assert.deepEqual(await client.read(1), [2]);
  });

  test('connections accepted before serve() are held and served once restore() and serve() ran', async (t) => {
    const sourceCtx = context();
    const source = await servingApp(sourceCtx);
    t.after(() => source.close());
    const sourceClient = await RespTestClient.connect(source.boundPort);
    t.after(() => sourceClient.close());
    await sourceClient.command('MSET', 'a', '1', 'b', Buffer.alloc(5000, 9));
    source.pause();
    const snapshot = source.snapshot();
    // The destination: listening, not served, its heap still empty.
    const copy = copyAllocatedPages(sourceCtx.heap, sourceCtx.allocator);
    const destination = createKvApp({ ...context(), heap: copy.heap, allocator: copy.allocator });
    await destination.listen();
    t.after(() => destination.close());
    const early = await RespTestClient.connect(destination.boundPort);
    t.after(() => early.close());
    early.send(encodeCommand(['GET', 'a']));
    await sleep(100);
    assert.equal(early.pending, 0);
    destination.restore(snapshot);
    destination.serve();
    assert.deepEqual(await early.read(1), [bulk('1')]);
    assert.deepEqual(await early.command('GET', 'b'), Buffer.alloc(5000, 9));
    assert.equal(destination.stats().commands, (snapshot.totalCommands as number) + 2);
  });

  test('restoreReads names what restore reads: a heap holding only those pages restores', async (t) => {
    const sourceCtx = context();
    const source = await servingApp(sourceCtx);
    t.after(() => source.close());
    const client = await RespTestClient.connect(source.boundPort);
    t.after(() => client.close());
    for (let i = 0; i < 200; i++) await client.command('SET', `key:${i}`, Buffer.alloc(3000, i));
    source.pause();
    const pages = restorePagesOf(sourceCtx.heap, source);
    const restoreOn = (heap: SecureHeap) => {
      const app = createKvApp({ ...context(), heap, allocator: HeapAllocator.attach(heap) });
      app.restore(source.snapshot());
      return app;
    };
    assert.equal(restoreOn(copyOnlyPages(sourceCtx.heap, pages)).stats().keys, 200);
    // Without the store's header page the same restore misses a page: the check above can fail.
    const headerPage = Math.floor(sourceCtx.allocator.getRoot(KV_ROOT_SLOT) / PAGE_SIZE);
    assert.ok(pages.get(headerPage));
    pages.clear(headerPage);
    assert.throws(() => restoreOn(copyOnlyPages(sourceCtx.heap, pages)), PageNotPresentError);
  });

  test('restore rejects a snapshot that is not from kv', () => {
    const app = createKvApp(context());
    assert.throws(() => app.restore({ app: 'other', totalCommands: 1 }), /not a kv snapshot/);
    assert.throws(() => app.serve(), /neither formatted nor restored/);
  });

  test('listen on a port in use rejects with a one-line message', async (t) => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    t.after(() => blocker.close());
    const port = (blocker.address() as net.AddressInfo).port;
    const app = createKvApp(context({ port }));
    await assert.rejects(app.listen(), { message: `port 127.0.0.1:${port} is already in use` });
  });

  test('close() closes the listener and every client connection', async (t) => {
    const app = await servingApp();
    const port = app.boundPort;
    const clients = await Promise.all([RespTestClient.connect(port), RespTestClient.connect(port)]);
    t.after(() => {
      for (const c of clients) c.close();
    });
    await Promise.all(clients.map((c) => c.command('PING')));
    assert.equal(app.stats().clients, 2);
    await app.close();
    await Promise.all(clients.map((c) => c.closed));
    await assert.rejects(RespTestClient.connect(port), { code: 'ECONNREFUSED' });
  });

  test('stats and fill: keys, clients, commands', async (t) => {
    const app = await servingApp();
    t.after(() => app.close());
    const filled = app.fill(4 * MiB);
    const client = await RespTestClient.connect(app.boundPort);
    t.after(() => client.close());
    assert.equal(await client.command('DBSIZE'), filled.keys);
    assert.ok(filled.bytes > filled.keys * 1024);
    assert.deepEqual(app.stats(), { keys: filled.keys, clients: 1, commands: 1 });
  });
});

import assert from 'node:assert/strict';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test } from 'node:test';
import { KvLoad } from '../../../src/bench/load/kv-load.js';
import { encodeCommand, parseReply } from '../../../src/bench/load/resp-reply.js';
import { WorkloadLoad } from '../../../src/bench/load/workload-load.js';
import { ScrambledZipfian } from '../../../src/bench/load/zipfian.js';
import { xorshift } from '../../../src/util/random.js';

/** A RESP server on loopback answering each parsed command with `answer(args)` (raw RESP text). */
async function fakeServer(answer: (args: string[]) => string) {
  const server = net.createServer((socket) => {
    let buffer = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      for (let parsed = parseReply(buffer); parsed; parsed = parseReply(buffer)) {
        buffer = buffer.slice(parsed.end);
        socket.write(answer(parsed.value as string[]));
      }
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  const { port } = server.address() as net.AddressInfo;
  return { port, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

const runReply = (opsDone: number) => `*2\r\n:${opsDone}\r\n$8\r\n0000abcd\r\n`;

describe('client loads', () => {
  test('RESP replies parse whole or not at all, arrays included', () => {
    const text = `${runReply(42)}+OK\r\n$3\r\nabc\r\n-ERR no\r\n$-1\r\n`;
    const values = [];
    let at = 0;
    for (let r = parseReply(text, at); r; r = parseReply(text, at)) {
      values.push(r.value);
      at = r.end;
    }
    assert.deepEqual(values, [['42', '0000abcd'], 'OK', 'abc', { error: 'ERR no' }, null]);
    assert.equal(parseReply(runReply(42).slice(0, -3)), null);
    assert.deepEqual(parseReply(encodeCommand(['RUN', '8', '0.5']))?.value, ['RUN', '8', '0.5']);
  });

  test('a workload load counts operations and accepts a count that continues', async () => {
    let opsDone = 0;
    const server = await fakeServer(([, ops]) => runReply((opsDone += Number(ops))));
    const load = new WorkloadLoad([{ host: '127.0.0.1', port: server.port }], 16, 0.5);
    load.start();
    await sleep(100);
    const result = await load.stop();
    await server.close();
    assert.ok(result.ops > 0 && result.ops % 16 === 0, `${result.ops} ops`);
    assert.equal(load.discontinuities, 0);
    assert.equal(result.errors, 0);
  });

  test('a workload whose operation count steps back (lost batches) is caught', async () => {
    let opsDone = 0;
    let replies = 0;
    // After 20 replies the count goes back 3 batches, as if the destination had an old heap.
    const server = await fakeServer(([, ops]) => {
      if (++replies === 20) opsDone -= 3 * Number(ops);
      return runReply((opsDone += Number(ops)));
    });
    const load = new WorkloadLoad([{ host: '127.0.0.1', port: server.port }], 16, 0.5);
    load.start();
    while (replies < 30) await sleep(5);
    await load.stop();
    await server.close();
    assert.equal(load.discontinuities, 1);
  });

  test('a kv load sees a lost write: a GET that does not return the acknowledged value', async () => {
    const store = new Map<string, string>();
    let forget = false;
    const server = await fakeServer(([name, key, value]) => {
      if (name === 'SET') {
        if (!forget) store.set(key!, value!);
        return '+OK\r\n';
      }
      const v = store.get(key!);
      return v === undefined ? '$-1\r\n' : `$${v.length}\r\n${v}\r\n`;
    });
    const load = new KvLoad([{ host: '127.0.0.1', port: server.port }], { keySpace: 10, writeShare: 0.5 });
    load.start();
    await sleep(100);
    const honest = (await load.stop()).errors;
    assert.equal(honest, 0, 'errors against an honest server');
    forget = true;
    const lossy = new KvLoad([{ host: '127.0.0.1', port: server.port }], { keySpace: 10, writeShare: 0.5 });
    lossy.start();
    await sleep(100);
    const result = await lossy.stop();
    await server.close();
    assert.ok(result.errors > 0, 'writes the server dropped went unnoticed');
  });

  test('the scrambled zipfian stays in range and is skewed', () => {
    const items = 100_000;
    const random = xorshift(7);
    const zipf = new ScrambledZipfian(items, () => random() / 2 ** 32);
    const counts = new Map<number, number>();
    const draws = 200_000;
    for (let i = 0; i < draws; i++) {
      const item = zipf.next();
      assert.ok(Number.isInteger(item) && item >= 0 && item < items);
      counts.set(item, (counts.get(item) ?? 0) + 1);
    }
    const top = [...counts.values()].sort((a, b) => b - a);
    const top1pct = top.slice(0, items / 100).reduce((a, b) => a + b, 0);
    // Uniform draws would put ~1 % there; theta 0.99 puts roughly half.
    assert.ok(top1pct / draws > 0.3, `top 1 % of keys got ${((100 * top1pct) / draws).toFixed(1)} %`);
    assert.ok(counts.size > items / 10, 'the popular keys are not all there is');
  });
});

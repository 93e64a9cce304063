import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { describe, test } from 'node:test';
import { DESTINATION_BIND, SOURCE_BIND } from '../../src/bench/local-cluster.js';
import type { EnclaveInfo, IncomingOutcome, IncomingReply } from '../../src/host/api-schema.js';
import type { HostDaemon } from '../../src/host/daemon.js';
import type { EnclaveRecord } from '../../src/host/enclave-record.js';
import { peerAuth } from '../../src/host/peer-auth.js';
import { encodePreamble } from '../../src/wire/preamble.js';
import { FORWARD } from '../helpers/frame-relay.js';
import { TOKEN_FRAME_TYPE } from '../helpers/frame-roles.js';
import { rawFrame } from '../helpers/frame-splitter.js';
import { RespTestClient } from '../helpers/resp-test-client.js';
import { useAttackBench, on } from './harness.js';

/**
 * Fork attempts (DESIGN.md §2.4): every way the untrusted side could try to get the application to
 * run in two places — resuming the source after START without a genuine ABORT token, feeding one
 * migration stream to a second destination, handing a resumed enclave a second migration.
 */

const MiB = 2 ** 20;

describe('fork attempts', { timeout: 120_000 }, () => {
  const bench = useAttackBench();

  const sourceApi = () => bench.cluster.client(bench.cluster.source);
  const destinationApi = () => bench.cluster.client(bench.cluster.destination);

  async function stateOn(host: HostDaemon, id: string): Promise<string | undefined> {
    const list = await bench.cluster.client(host).call<EnclaveInfo[]>('GET', '/v1/enclaves');
    return list.find((e) => e.id === id)?.state;
  }

  async function answers(port: number, host: string): Promise<boolean> {
    const client = await RespTestClient.connect(port, host).catch(() => null);
    if (!client) return false;
    try {
      client.send('*1\r\n$4\r\nPING\r\n');
      await client.read(1, 300);
      return true;
    } catch {
      return false;
    } finally {
      client.close();
    }
  }

  /** A real ABORT token, valid for some other migration: what a host could have kept from earlier. */
  async function abortTokenOfAnotherMigration(): Promise<string> {
    const other = await bench.startKv(MiB);
    const relay = await bench.relay(on('pages', 0, { do: 'flip', offset: 40 }));
    await assert.rejects(bench.migrate(other, relay), /failed authentication/);
    const outcome = await destinationApi().call<IncomingOutcome>('GET', `/v1/incoming/${other.id}/outcome`);
    assert.ok(outcome.abortToken);
    return outcome.abortToken;
  }

  test('COMMIT lost after the destination resumed: the source stays paused and no token lets it serve', async () => {
    const kv = await bench.startKv();
    const relay = await bench.relay(on('commit-or-abort', 0, { do: 'cut', when: 'before' }, 'to-source'));
    await assert.rejects(
      bench.migrate(kv, relay),
      /START was sent; the application stays paused.*the destination resumed and holds the application/,
    );
    assert.ok(
      relay.events.some((e) => e.action === 'cut'),
      'the relay cut the connection',
    );
    assert.equal(await stateOn(bench.cluster.destination, kv.id), 'running');
    assert.equal(await stateOn(bench.cluster.source, kv.id), 'in-doubt');
    assert.equal(await answers(kv.port, DESTINATION_BIND), true, 'the destination serves');
    assert.equal(await answers(kv.port, SOURCE_BIND), false, 'the source must not');

    // The host tries to resume the source: a forged token, another migration's genuine token, garbage.
    const resume = (abortToken: string) =>
      sourceApi().call('POST', `/v1/enclaves/${kv.id}/resume`, { abortToken });
    await assert.rejects(
      resume('ab'.repeat(32)),
      /refused to resume: ABORT token is not valid for this migration/,
    );
    await assert.rejects(
      resume(await abortTokenOfAnotherMigration()),
      /refused to resume: ABORT token is not valid for this migration/,
    );
    await assert.rejects(resume('not a token'), /an ABORT token is 64 hex digits/);
    await assert.rejects(
      destinationApi().call('GET', `/v1/incoming/${kv.id}/outcome`),
      /resumed on this host: it holds the application/,
    );
    assert.equal(await stateOn(bench.cluster.source, kv.id), 'in-doubt');
    assert.equal(await answers(kv.port, SOURCE_BIND), false, 'still only one copy serves');
  });

  test('a bit flipped in COMMIT: the source cannot trust it and stays paused while the destination serves', async () => {
    const kv = await bench.startKv();
    const relay = await bench.relay(on('commit-or-abort', 0, { do: 'flip', offset: 40 }, 'to-source'));
    await assert.rejects(
      bench.migrate(kv, relay),
      /failed authentication \(START was sent; the application stays paused\); the destination resumed/,
    );
    assert.ok(relay.events.some((e) => e.action === 'flip' && e.frame?.role === 'commit-or-abort'));
    assert.equal(await stateOn(bench.cluster.source, kv.id), 'in-doubt');
    assert.equal(await answers(kv.port, SOURCE_BIND), false);
    assert.equal(await answers(kv.port, DESTINATION_BIND), true);
  });

  test('a forged ABORT (or COMMIT) injected towards the source after START releases nothing', async () => {
    const kv = await bench.startKv();
    // Sealed token frames look alike on the wire: a forged one can only guess a tag.
    const forged = rawFrame({ type: TOKEN_FRAME_TYPE, flags: 1, seq: 1n }, randomBytes(120));
    const relay = await bench.relay(on('commit-or-abort', 0, { do: 'replace', bytes: forged }, 'to-source'));
    await assert.rejects(
      bench.migrate(kv, relay),
      /frame seq 1 failed authentication \(START was sent; the application stays paused\); the destination resumed/,
    );
    assert.ok(relay.events.some((e) => e.action === 'replace'));
    assert.equal(await stateOn(bench.cluster.source, kv.id), 'in-doubt');
    assert.equal(await answers(kv.port, SOURCE_BIND), false);
    assert.equal(await answers(kv.port, DESTINATION_BIND), true);
  });

  test('the same migration stream fed to a second destination is refused by its handshake', async () => {
    const kv = await bench.startKv(MiB);
    const relay = await bench.relay(() => FORWARD);
    await bench.expectMigrated(kv, relay);
    const recorded = relay.frames.filter((f) => f.connection === 0 && f.direction === 'to-destination');
    assert.ok(
      recorded.some((f) => f.role === 'start'),
      'the whole stream was recorded',
    );

    // A second incoming enclave, prepared as for a real migration; the attacker replays the stream.
    const secondId = 'f0f0f0f0';
    const prepared = await destinationApi().call<IncomingReply>('POST', '/v1/incoming', {
      id: secondId,
      name: 'fork',
      app: 'kv',
      heapBytes: 32 * MiB,
      port: kv.port,
    });
    const socket = net.connect({ host: DESTINATION_BIND, port: prepared.dataPort });
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(
      encodePreamble(prepared.ticket, peerAuth(bench.cluster.token, prepared.ticket).toString('hex')),
    );
    await new Promise((resolve) => socket.once('data', resolve)); // its Hello
    for (const frame of recorded) socket.write(frame.bytes);
    socket.on('error', () => {});

    const outcome = await pollOutcome(secondId);
    assert.match(outcome.reason, /source evidence rejected: evidence is bound to different report data/);
    socket.destroy();
    assert.equal(await stateOn(bench.cluster.destination, secondId), undefined, 'the second enclave is gone');
  });

  test('a host handing a resumed enclave a second data connection gets it closed unread', async () => {
    const kv = await bench.startKv(MiB);
    const relay = await bench.relay(() => FORWARD);
    await bench.migrate(kv, relay);
    const records = (bench.cluster.destination as unknown as { enclaves: Map<string, EnclaveRecord> })
      .enclaves;
    const record = records.get(kv.id)!;
    const listener = net.createServer();
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    const accepted = new Promise<net.Socket>((resolve) => listener.once('connection', resolve));
    const attacker = net.connect((listener.address() as net.AddressInfo).port, '127.0.0.1');
    const handed = await accepted;
    listener.close();
    let received = 0;
    attacker.on('data', (chunk: Buffer) => (received += chunk.length));
    const closed = new Promise((resolve) => attacker.once('close', resolve));
    attacker.on('error', () => {});
    // Straight over IPC, as a malicious host would, with any ticket it likes.
    record.process.send({ type: 'data-connection', ticket: '00'.repeat(16) }, handed);
    await closed;
    assert.equal(received, 0, 'the enclave must not even start a handshake');
    assert.equal(await stateOn(bench.cluster.destination, kv.id), 'running');
    await destinationApi().call('DELETE', `/v1/enclaves/${kv.id}`);
  });

  async function pollOutcome(id: string): Promise<IncomingOutcome> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        return await destinationApi().call<IncomingOutcome>('GET', `/v1/incoming/${id}/outcome`);
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }
});

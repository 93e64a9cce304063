import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, test } from 'node:test';
import { HandshakeError, handshake, type SessionKeys } from '../../src/crypto/handshake.js';
import { IntegrityError, Opener, Sealer } from '../../src/crypto/seal.js';
import type { Evidence, SimEvidence, TeeBackend } from '../../src/tee/backend.js';
import type { AttestationPolicy } from '../../src/tee/policy.js';
import type { SimTee } from '../../src/tee/sim.js';
import { type Frame, FrameReader, FrameType, plainFrame } from '../../src/wire/frame.js';
import { FramedSocket } from '../../src/wire/framed-socket.js';
import { newSimRoot, newSimTee, testPolicy } from '../helpers/sim-tee.js';
import { tcpPair } from '../wire/tcp-pair.js';

const MEASUREMENT = '5e'.repeat(32);
const TIMEOUT_MS = 3000;

/** Each host has its own platform key, certified by the test root; the enclaves run the same code. */
function newTee(measurement = MEASUREMENT): SimTee {
  return newSimTee(measurement);
}

interface Link {
  source: FramedSocket;
  destination: FramedSocket;
  close: () => void;
}

async function directLink(): Promise<Link> {
  const { client, server, close } = await tcpPair();
  return { source: new FramedSocket(client), destination: new FramedSocket(server), close };
}

type Direction = 'toSource' | 'toDestination';
type Rewrite = (
  direction: Direction,
  type: FrameType,
  message: Record<string, unknown>,
) => Record<string, unknown>;

function jsonFrame(type: FrameType, message: unknown): Buffer[] {
  return plainFrame(type, Buffer.from(JSON.stringify(message)));
}

/**
 * An attacker on the path: two TCP connections, frames relayed between them, every handshake message
 * handed to `rewrite` on the way.
 */
async function relayedLink(rewrite: Rewrite): Promise<Link> {
  const toSource = await tcpPair();
  const toDestination = await tcpPair();
  const sourceSide = new FramedSocket(toSource.server);
  const destinationSide = new FramedSocket(toDestination.client);
  const pump = async (from: FramedSocket, to: FramedSocket, direction: Direction): Promise<void> => {
    try {
      for (;;) {
        const frame = await from.next();
        const message = JSON.parse(Buffer.concat(frame.body).toString()) as Record<string, unknown>;
        await to.send(jsonFrame(frame.header.type, rewrite(direction, frame.header.type, message)));
      }
    } catch {
      from.destroy();
      to.destroy();
    }
  };
  void pump(destinationSide, sourceSide, 'toSource');
  void pump(sourceSide, destinationSide, 'toDestination');
  return {
    source: new FramedSocket(toSource.client),
    destination: new FramedSocket(toDestination.server),
    close: () => {
      toSource.close();
      toDestination.close();
    },
  };
}

interface Outcome {
  source: PromiseSettledResult<SessionKeys>;
  destination: PromiseSettledResult<SessionKeys>;
}

/**
 * Runs both sides. The handshake leaves the channel to its caller, so, as a caller would, each side
 * destroys its channel when it fails; the other side then fails too instead of waiting for the timeout.
 */
async function runHandshake(
  link: Link,
  tees: { source?: TeeBackend; destination?: TeeBackend } = {},
  policy: AttestationPolicy = testPolicy(),
): Promise<Outcome> {
  const side = (role: 'source' | 'destination', channel: FramedSocket, tee: TeeBackend) =>
    handshake({ role, channel, tee, policy, timeoutMs: TIMEOUT_MS }).catch((err: unknown) => {
      channel.destroy();
      throw err;
    });
  try {
    const [source, destination] = await Promise.allSettled([
      side('source', link.source, tees.source ?? newTee()),
      side('destination', link.destination, tees.destination ?? newTee()),
    ]);
    return { source, destination };
  } finally {
    link.close();
  }
}

/** The source side alone, against whatever the test sends from the destination end. */
function sourceAlone(link: Link, timeoutMs = TIMEOUT_MS): Promise<SessionKeys> {
  return handshake({ role: 'source', channel: link.source, tee: newTee(), policy: testPolicy(), timeoutMs });
}

function keysOf(result: PromiseSettledResult<SessionKeys>): SessionKeys {
  if (result.status === 'rejected') throw result.reason;
  return result.value;
}

function assertRejected(result: PromiseSettledResult<SessionKeys>, message: RegExp): void {
  assert.equal(result.status, 'rejected', 'the handshake must fail');
  const reason = (result as PromiseRejectedResult).reason as Error;
  assert.ok(reason instanceof HandshakeError, `${reason.name}: ${reason.message}`);
  assert.match(reason.message, message);
}

function readSingleFrame(parts: readonly Buffer[]): Frame {
  const reader = new FrameReader();
  for (const part of parts) reader.push(part);
  return reader.next()!;
}

/** A TEE that tampers with its own evidence, as a host forging reports would. */
function tamperingTee(inner: TeeBackend, tamper: (evidence: Evidence) => Evidence): TeeBackend {
  return {
    kind: inner.kind,
    measurement: inner.measurement,
    secure: inner.secure,
    kernelInTcb: inner.kernelInTcb,
    describe: () => inner.describe(),
    report: (reportData) => tamper(inner.report(reportData)),
  };
}

function flipSignatureBit(evidence: Evidence): Evidence {
  assert.equal(evidence.backend, 'sim');
  const signature = Buffer.from(evidence.signature, 'base64');
  signature[10]! ^= 0x04;
  return { ...evidence, signature: signature.toString('base64') };
}

const x25519Pub = (): string =>
  generateKeyPairSync('x25519')
    .publicKey.export({ format: 'der', type: 'spki' })
    .subarray(12)
    .toString('base64');

describe('handshake over loopback TCP', { timeout: 30_000 }, () => {
  test('both sides agree on the migration id and get crossed direction keys', async () => {
    const link = await directLink();
    const { source: sourceChannel, destination: destinationChannel } = link;
    const sourceTee = newTee();
    const destinationTee = newTee();
    const { source, destination } = await runHandshakeKeepingLink(link, sourceTee, destinationTee);
    try {
      assert.equal(source.role, 'source');
      assert.equal(destination.role, 'destination');
      assert.equal(source.migrationId.length, 32);
      assert.deepEqual(source.migrationId, destination.migrationId);
      assert.deepEqual(source.sendKey, destination.recvKey);
      assert.deepEqual(source.recvKey, destination.sendKey);
      assert.notDeepEqual(source.sendKey, source.recvKey);
      const platformOf = (tee: SimTee) => ({
        kind: 'sim',
        root: tee.report(Buffer.alloc(64)).root,
        platformKey: tee.report(Buffer.alloc(64)).platformKey,
      });
      assert.deepEqual(source.peer.platform, platformOf(destinationTee));
      assert.deepEqual(destination.peer.platform, platformOf(sourceTee));
      assert.equal(source.peer.measurement, MEASUREMENT);
      assert.equal(destination.peer.secure, false);

      // The keys work over the same channel, and a frame reflected back to its sender fails.
      const toDestination = new Sealer(source.sendKey, source.migrationId).seal(
        { type: FrameType.Control },
        Buffer.from('hello destination'),
      );
      await sourceChannel.send(toDestination);
      const received = await destinationChannel.next();
      assert.deepEqual(
        new Opener(destination.recvKey, destination.migrationId).open(received),
        Buffer.from('hello destination'),
      );
      const sourceOpener = new Opener(source.recvKey, source.migrationId);
      assert.throws(() => sourceOpener.open(readSingleFrame(toDestination)), IntegrityError);
    } finally {
      link.close();
    }
  });

  test('two handshakes never yield the same keys or migration id', async () => {
    const sourceTee = newTee();
    const destinationTee = newTee();
    const seen = new Set<string>();
    for (let run = 0; run < 3; run++) {
      const link = await directLink();
      const { source, destination } = await runHandshakeKeepingLink(link, sourceTee, destinationTee);
      link.close();
      for (const value of [source.migrationId, source.sendKey, source.recvKey])
        seen.add(value.toString('hex'));
      assert.deepEqual(destination.migrationId, source.migrationId);
    }
    assert.equal(seen.size, 9);
  });

  test('rejected when the measurements differ', async () => {
    const outcome = await runHandshake(await directLink(), { source: newTee('00'.repeat(32)) });
    assertRejected(
      outcome.destination,
      /source refused by policy: measurement (5e){32} may not receive from 0{64}/,
    );
    assertRejected(outcome.source, /closed/);
  });

  test('rejected when the peer platform is certified by a root the policy does not trust', async () => {
    const outcome = await runHandshake(await directLink(), {
      source: newSimTee(MEASUREMENT, newSimRoot()),
    });
    assertRejected(outcome.destination, /source refused by policy: sim root [0-9a-f]{16} is not trusted/);
  });

  test('a policy without sim platforms refuses sim peers on both sides', async () => {
    const noSim = testPolicy({ version: 1, platforms: {} });
    const outcome = await runHandshake(await directLink(), {}, noSim);
    assertRejected(
      outcome.destination,
      /source refused by policy: simulated \(sim\) platforms are not trusted/,
    );
  });

  test('rejected when the source evidence signature is bit-flipped', async () => {
    const outcome = await runHandshake(await directLink(), {
      source: tamperingTee(newTee(), flipSignatureBit),
    });
    assertRejected(outcome.destination, /source evidence rejected: .*signature/);
  });

  test('rejected when the destination evidence signature is bit-flipped', async () => {
    const outcome = await runHandshake(await directLink(), {
      destination: tamperingTee(newTee(), flipSignatureBit),
    });
    assertRejected(outcome.source, /destination evidence rejected: .*signature/);
    assertRejected(outcome.destination, /closed/);
  });

  test('rejected when evidence claims another measurement than it was signed with', async () => {
    const lie = (evidence: Evidence): Evidence => ({
      ...(evidence as SimEvidence),
      measurement: '00'.repeat(32),
    });
    const outcome = await runHandshake(await directLink(), { source: tamperingTee(newTee(), lie) });
    assertRejected(outcome.destination, /source evidence rejected: .*signature/);
  });

  test('a man in the middle substituting its X25519 key in the Hello is detected', async () => {
    const link = await relayedLink((direction, type, message) =>
      direction === 'toSource' && type === FrameType.Hello ? { ...message, pub: x25519Pub() } : message,
    );
    const outcome = await runHandshake(link);
    assertRejected(
      outcome.destination,
      /source evidence rejected: evidence is bound to different report data/,
    );
    assertRejected(outcome.source, /closed/);
  });

  test('a man in the middle substituting both X25519 keys is detected', async () => {
    const link = await relayedLink((_direction, type, message) =>
      type === FrameType.Hello || type === FrameType.HelloReply ? { ...message, pub: x25519Pub() } : message,
    );
    const outcome = await runHandshake(link);
    assertRejected(
      outcome.destination,
      /source evidence rejected: evidence is bound to different report data/,
    );
  });

  test('a tampered key confirmation is detected, in each direction', async () => {
    const forgedMac = Buffer.alloc(32, 7).toString('base64');
    const towardsSource = await runHandshake(
      await relayedLink((direction, type, message) =>
        direction === 'toSource' && type === FrameType.Confirm ? { ...message, mac: forgedMac } : message,
      ),
    );
    assertRejected(towardsSource.source, /destination key confirmation failed/);

    const towardsDestination = await runHandshake(
      await relayedLink((direction, type, message) =>
        direction === 'toDestination' && type === FrameType.Confirm
          ? { ...message, mac: forgedMac }
          : message,
      ),
    );
    assertRejected(towardsDestination.destination, /source key confirmation failed/);
    assert.equal(
      towardsDestination.source.status,
      'fulfilled',
      'the source cannot tell; the destination refuses',
    );
  });

  test('evidence recorded from an earlier handshake is rejected in a new one', async () => {
    const recorded: Partial<Record<FrameType, Record<string, unknown>>> = {};
    const recording = await runHandshake(
      await relayedLink((_direction, type, message) => {
        recorded[type] = message;
        return message;
      }),
    );
    keysOf(recording.source);
    const oldReply = recorded[FrameType.HelloReply]!;

    const evidenceOnly = await runHandshake(
      await relayedLink((_direction, type, message) =>
        type === FrameType.HelloReply ? { ...message, evidence: oldReply.evidence } : message,
      ),
    );
    assertRejected(
      evidenceOnly.destination,
      /source evidence rejected: evidence is bound to different report data/,
    );

    const wholeReply = await runHandshake(
      await relayedLink((_direction, type, message) => (type === FrameType.HelloReply ? oldReply : message)),
    );
    assertRejected(
      wholeReply.destination,
      /source evidence rejected: evidence is bound to different report data/,
    );
  });

  test('destination evidence recorded earlier is rejected by the source', async () => {
    let oldEvidence: unknown;
    const recording = await runHandshake(
      await relayedLink((direction, type, message) => {
        if (direction === 'toSource' && type === FrameType.Confirm) oldEvidence = message.evidence;
        return message;
      }),
    );
    keysOf(recording.destination);
    const replayed = await runHandshake(
      await relayedLink((direction, type, message) =>
        direction === 'toSource' && type === FrameType.Confirm
          ? { ...message, evidence: oldEvidence }
          : message,
      ),
    );
    assertRejected(
      replayed.source,
      /destination evidence rejected: evidence is bound to different report data/,
    );
  });

  test('malformed messages are refused', async () => {
    const cases: Array<[string, Buffer[], RegExp]> = [
      [
        'not JSON',
        jsonFrame(FrameType.Hello, 'x').map((part, i) => (i === 1 ? Buffer.from('{no') : part)),
        /not JSON/,
      ],
      [
        'an extra field',
        jsonFrame(FrameType.Hello, { v: 1, pub: x25519Pub(), nonce: x25519Pub(), x: 1 }),
        /malformed/,
      ],
      [
        'a short key',
        jsonFrame(FrameType.Hello, { v: 1, pub: 'AAAA', nonce: x25519Pub() }),
        /malformed Hello message: pub/,
      ],
      [
        'another version',
        jsonFrame(FrameType.Hello, { v: 2, pub: x25519Pub(), nonce: x25519Pub() }),
        /malformed/,
      ],
      [
        'the wrong frame type',
        jsonFrame(FrameType.Confirm, { v: 1 }),
        /expected a plaintext Hello frame, got Confirm/,
      ],
      ['an oversized message', jsonFrame(FrameType.Hello, { pad: 'x'.repeat(10_000) }), /exceeds/],
    ];
    for (const [name, frame, message] of cases) {
      const link = await directLink();
      try {
        await link.destination.send(frame);
        await assert.rejects(
          sourceAlone(link),
          (err: Error) => err instanceof HandshakeError && message.test(err.message),
          name,
        );
      } finally {
        link.close();
      }
    }
  });

  test('a low-order X25519 key is refused', async () => {
    const link = await directLink();
    try {
      await link.destination.send(
        jsonFrame(FrameType.Hello, { v: 1, pub: Buffer.alloc(32).toString('base64'), nonce: x25519Pub() }),
      );
      await assert.rejects(sourceAlone(link), /peer X25519 public key is unusable/);
    } finally {
      link.close();
    }
  });

  test('times out without destroying the channel or swallowing a later frame', async () => {
    const link = await directLink();
    try {
      await assert.rejects(sourceAlone(link, 150), /handshake timed out after 150 ms/);
      await link.destination.send(jsonFrame(FrameType.Control, { still: 'open' }));
      const frame = await link.source.next();
      assert.equal(frame.header.type, FrameType.Control);
    } finally {
      link.close();
    }
  });
});

async function runHandshakeKeepingLink(
  link: Link,
  sourceTee: TeeBackend,
  destinationTee: TeeBackend,
): Promise<{ source: SessionKeys; destination: SessionKeys }> {
  const [source, destination] = await Promise.all([
    handshake({
      role: 'source',
      channel: link.source,
      tee: sourceTee,
      policy: testPolicy(),
      timeoutMs: TIMEOUT_MS,
    }),
    handshake({
      role: 'destination',
      channel: link.destination,
      tee: destinationTee,
      policy: testPolicy(),
      timeoutMs: TIMEOUT_MS,
    }),
  ]);
  return { source, destination };
}

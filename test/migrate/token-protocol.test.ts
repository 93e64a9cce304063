import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';
import type { AppSnapshot } from '../../src/apps/app.js';
import { handshake, type SessionKeys } from '../../src/crypto/handshake.js';
import { Opener, Sealer } from '../../src/crypto/seal.js';
import { HeapAllocator } from '../../src/heap/allocator.js';
import { PAGE_SIZE } from '../../src/heap/constants.js';
import { encodeBitmap } from '../../src/heap/bitmap-codec.js';
import { bitmapWords, PageBitmap } from '../../src/heap/page-bitmap.js';
import { SecureHeap } from '../../src/heap/secure-heap.js';
import { openControl, sendControl } from '../../src/migrate/control-channel.js';
import { type DestinationOutcome, migrateIn } from '../../src/migrate/destination.js';
import type { ControlMessage, ControlOf } from '../../src/migrate/messages.js';
import type { MigratingApp, PausedApp } from '../../src/migrate/migrating-app.js';
import { metadataDigest } from '../../src/migrate/metadata-digest.js';
import { migrateOut, type SourceOutcome } from '../../src/migrate/source.js';
import { TokenMinter, TokenVerifier } from '../../src/migrate/tokens.js';
import { monotonicMs } from '../../src/util/clock.js';
import { FrameType } from '../../src/wire/frame.js';
import { FramedSocket } from '../../src/wire/framed-socket.js';
import { PREAMBLE_BYTES } from '../../src/wire/preamble.js';
import { newSimTee, testPolicy } from '../helpers/sim-tee.js';
import { tcpPair } from '../wire/tcp-pair.js';

/**
 * The token protocol against a peer that holds valid migration keys but misbehaves (a buggy or
 * compromised peer, or what an attacker could do if the channel's sealing failed): each check of
 * START, ABORT and COMMIT must hold on its own, not only because frames are sealed.
 */

const MEASUREMENT = '7a'.repeat(32);
const HEAP_BYTES = 4 * 2 ** 20;
const tee = () => newSimTee(MEASUREMENT);

/** An application that only records what the migration agent does to it. */
class RecordingApp implements MigratingApp {
  running = false;
  timesServed = 0;
  restored: AppSnapshot | null = null;
  closed = false;
  serve(): Promise<{ servingAtMs: number }> {
    this.running = true;
    this.timesServed++;
    return Promise.resolve({ servingAtMs: monotonicMs() });
  }
  pause(): Promise<PausedApp> {
    this.running = false;
    return Promise.resolve({
      pausedAtMs: monotonicMs(),
      snapshot: { app: 'kv', totalCommands: 7 },
      dirty: new Uint32Array(bitmapWords(HEAP_BYTES / PAGE_SIZE)),
      restorePages: new Uint32Array(bitmapWords(HEAP_BYTES / PAGE_SIZE)),
    });
  }
  restore(snapshot: AppSnapshot): Promise<void> {
    this.restored = snapshot;
    return Promise.resolve();
  }
  takeDirty(): Promise<Uint32Array> {
    return Promise.resolve(new Uint32Array(bitmapWords(HEAP_BYTES / PAGE_SIZE)));
  }
  untrack(): Promise<void> {
    return Promise.resolve();
  }
  halt(): void {
    throw new Error('stop-and-copy never halts the application');
  }
  disconnect(): Promise<void> {
    return Promise.resolve();
  }
  reconnect(): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    this.closed = true;
    this.running = false;
    return Promise.resolve();
  }
}

interface SessionEnd {
  channel: FramedSocket;
  keys: SessionKeys;
  sealer: Sealer;
  opener: Opener;
  minter: TokenMinter;
  verifier: TokenVerifier;
}

function sessionEnd(channel: FramedSocket, keys: SessionKeys): SessionEnd {
  return {
    channel,
    keys,
    sealer: new Sealer(keys.sendKey, keys.migrationId),
    opener: new Opener(keys.recvKey, keys.migrationId),
    minter: new TokenMinter(keys.ownTokenKey, keys.migrationId),
    verifier: new TokenVerifier(keys.peerTokenKey, keys.migrationId),
  };
}

/** Token keys of a migration that is not this one: what a replayed token was minted under. */
async function otherMigrationKeys(): Promise<SessionKeys> {
  const { client, server, close } = await tcpPair();
  try {
    const [source] = await Promise.all([
      handshake({ role: 'source', channel: new FramedSocket(client), tee: tee(), policy: testPolicy() }),
      handshake({ role: 'destination', channel: new FramedSocket(server), tee: tee(), policy: testPolicy() }),
    ]);
    return source;
  } finally {
    close();
  }
}

// ---------------------------------------------------------------------------------------------
// A real destination (migrateIn) fed by a scripted source.

/** One page to migrate, page 0. */
const ONE_PAGE = (() => {
  const pages = PageBitmap.create(HEAP_BYTES / PAGE_SIZE);
  pages.set(0);
  return encodeBitmap(pages);
})();
const NO_PAGE = encodeBitmap(PageBitmap.create(HEAP_BYTES / PAGE_SIZE));
const BEGIN = {
  mode: 'stop-and-copy',
  app: 'kv',
  heapBytes: HEAP_BYTES,
  allocatedPages: 1,
  verify: false,
  epoch: 1,
  /** The same page PREFAULT announced. */
  allocatedChange: NO_PAGE,
  current: NO_PAGE,
} as const;
const PREFAULT = { t: 'prefault', allocated: ONE_PAGE, mode: 'stop-and-copy', verify: false } as const;
const SNAPSHOT = JSON.stringify({ app: 'kv', totalCommands: 7 });

/** A destination prepared as for stop-and-copy: its heap catches no misses (no tracker). */
async function destinationUnderTest() {
  const heap = SecureHeap.createIncoming(HEAP_BYTES, 'none');
  const app = new RecordingApp();
  const { client, server, close } = await tcpPair();
  const outcome = migrateIn(
    { heap, app, appKind: 'kv', tee: tee(), policy: testPolicy(), onResumed: () => {} },
    server,
  );
  const channel = new FramedSocket(client);
  const keys = await handshake({ role: 'source', channel, tee: tee(), policy: testPolicy() });
  const source = sessionEnd(channel, keys);
  const send = (message: ControlMessage) => sendControl(channel, source.sealer, message);

  /** PREFAULT, BEGIN and one page: everything before START. */
  async function sendHeap(begin = BEGIN): Promise<void> {
    await send(PREFAULT);
    const prefaulted = openControl(await channel.next(), source.opener);
    assert.equal(prefaulted.t, 'prefaulted');
    await send({ t: 'begin', ...begin });
    const page = Buffer.alloc(PAGE_SIZE, 0x5a);
    await channel.send(
      source.sealer.seal({ type: FrameType.Pages, firstPage: 0, pageCount: 1, epoch: 1 }, page),
    );
  }

  function start(overrides: Partial<ControlOf<'start'>> = {}): ControlOf<'start'> {
    const metadata = metadataDigest(PREFAULT.allocated, BEGIN, SNAPSHOT);
    return {
      t: 'start',
      snapshot: SNAPSHOT,
      stoppedAtMs: monotonicMs(),
      pagesTotal: 1,
      framesTotal: 1,
      metadataDigest: metadata.toString('hex'),
      digest: null,
      token: source.minter.start({ pagesTotal: 1, metadataDigest: metadata }),
      ...overrides,
    };
  }

  return { heap, app, outcome, source, send, sendHeap, start, close };
}

async function expectAbort(outcome: Promise<DestinationOutcome>, message: RegExp): Promise<string> {
  const result = await outcome;
  assert.equal(result.kind, 'aborted');
  assert.match((result as { message: string }).message, message);
  const { abortToken } = result as { abortToken: string | null };
  assert.ok(abortToken, 'an aborted destination mints an ABORT token');
  return abortToken;
}

describe('destination: the tracker its host prepared', { timeout: 20_000 }, () => {
  test('a post-copy PREFAULT to a destination whose heap catches no misses is refused before anything runs', async () => {
    const d = await destinationUnderTest();
    try {
      await d.send({ ...PREFAULT, mode: 'post-copy' });
      await expectAbort(d.outcome, /post-copy needs a tracker; this destination was prepared without one/);
      assert.equal(d.app.restored, null, 'the application was never restored');
    } finally {
      d.close();
    }
  });
});

describe('destination: START token', { timeout: 20_000 }, () => {
  test('a valid START resumes the application and COMMIT carries a valid token (control)', async () => {
    const d = await destinationUnderTest();
    try {
      await d.sendHeap();
      await d.send(d.start());
      const commit = openControl(await d.source.channel.next(), d.source.opener);
      assert.equal(commit.t, 'commit');
      const c = commit as ControlOf<'commit'>;
      d.source.verifier.checkCommit(c.token, {
        pagesInstalled: 1,
        metadataDigest: metadataDigest(PREFAULT.allocated, BEGIN, SNAPSHOT),
        contentDigest: null,
      });
      const outcome = await d.outcome;
      assert.equal(outcome.kind, 'resumed');
      assert.equal(d.app.timesServed, 1);
      assert.deepEqual(d.app.restored, JSON.parse(SNAPSHOT));
    } finally {
      d.close();
    }
  });

  const refusals: Array<
    [string, (d: Awaited<ReturnType<typeof destinationUnderTest>>) => Promise<ControlOf<'start'>>, RegExp]
  > = [
    [
      'a START token minted under another migration',
      async (d) => {
        const other = new TokenMinter((await otherMigrationKeys()).ownTokenKey, d.source.keys.migrationId);
        return d.start({
          token: other.start({
            pagesTotal: 1,
            metadataDigest: metadataDigest(PREFAULT.allocated, BEGIN, SNAPSHOT),
          }),
        });
      },
      /START token is not valid for this migration/,
    ],
    [
      'a START token of another migration id',
      async (d) => {
        const other = await otherMigrationKeys();
        const replayed = new TokenMinter(d.source.keys.ownTokenKey, other.migrationId);
        return d.start({
          token: replayed.start({
            pagesTotal: 1,
            metadataDigest: metadataDigest(PREFAULT.allocated, BEGIN, SNAPSHOT),
          }),
        });
      },
      /START token is not valid for this migration/,
    ],
    [
      'a forged START token',
      (d) => Promise.resolve(d.start({ token: 'ab'.repeat(32) })),
      /START token is not valid/,
    ],
    [
      'a START token minted by the destination side (wrong key)',
      (d) => {
        const wrongSide = new TokenMinter(d.source.keys.peerTokenKey, d.source.keys.migrationId);
        return Promise.resolve(
          d.start({
            token: wrongSide.start({
              pagesTotal: 1,
              metadataDigest: metadataDigest(PREFAULT.allocated, BEGIN, SNAPSHOT),
            }),
          }),
        );
      },
      /START token is not valid/,
    ],
    [
      'a START whose page count was changed after minting',
      (d) => Promise.resolve(d.start({ pagesTotal: 0 })),
      /START token is not valid/,
    ],
    [
      'a valid START token over a page count that did not arrive',
      (d) => {
        const metadata = metadataDigest(PREFAULT.allocated, BEGIN, SNAPSHOT);
        return Promise.resolve(
          d.start({
            pagesTotal: 2,
            token: d.source.minter.start({ pagesTotal: 2, metadataDigest: metadata }),
          }),
        );
      },
      /page count mismatch/,
    ],
    [
      "a START minted over another PREFAULT page set (BEGIN's is relative to it)",
      (d) => {
        const metadata = metadataDigest(NO_PAGE, BEGIN, SNAPSHOT);
        return Promise.resolve(
          d.start({
            metadataDigest: metadata.toString('hex'),
            token: d.source.minter.start({ pagesTotal: 1, metadataDigest: metadata }),
          }),
        );
      },
      /START names other metadata/,
    ],
    [
      'a START with a substituted snapshot',
      (d) => Promise.resolve(d.start({ snapshot: JSON.stringify({ app: 'kv', totalCommands: 8 }) })),
      /START names other metadata/,
    ],
    [
      'a START with a substituted snapshot and a matching metadata digest',
      (d) => {
        const snapshot = JSON.stringify({ app: 'kv', totalCommands: 8 });
        return Promise.resolve(
          d.start({
            snapshot,
            metadataDigest: metadataDigest(PREFAULT.allocated, BEGIN, snapshot).toString('hex'),
          }),
        );
      },
      /START token is not valid/,
    ],
  ];
  for (const [name, makeStart, message] of refusals) {
    test(`refuses ${name}; the application never runs; ABORT token released`, async () => {
      const d = await destinationUnderTest();
      try {
        await d.sendHeap();
        await d.send(await makeStart(d));
        const abort = openControl(await d.source.channel.next(), d.source.opener);
        assert.equal(abort.t, 'abort');
        d.source.verifier.checkAbort((abort as ControlOf<'abort'>).token);
        d.source.channel.destroy();
        const token = await expectAbort(d.outcome, message);
        assert.equal(token, (abort as ControlOf<'abort'>).token);
        assert.equal(d.app.timesServed, 0, 'the destination application must not run');
        assert.equal(d.app.restored, null);
      } finally {
        d.close();
      }
    });
  }

  test('a START before any page or BEGIN is refused', async () => {
    const d = await destinationUnderTest();
    try {
      await d.send(PREFAULT);
      await d.source.channel.next();
      await d.send(d.start());
      d.source.channel.destroy();
      await expectAbort(d.outcome, /unexpected 'start' while receiving pages/);
      assert.equal(d.app.timesServed, 0);
    } finally {
      d.close();
    }
  });

  test("a BEGIN whose change from PREFAULT's pages disagrees with its page count is refused", async () => {
    const d = await destinationUnderTest();
    try {
      // PREFAULT announced page 0; a change of page 0 leaves nothing to migrate, not the one page named.
      await d.sendHeap({ ...BEGIN, allocatedChange: ONE_PAGE });
      d.source.channel.destroy();
      await expectAbort(d.outcome, /BEGIN announces 1 pages but names 0/);
      assert.equal(d.app.timesServed, 0);
    } finally {
      d.close();
    }
  });

  test('a cut before START aborts with an ABORT token that releases the source', async () => {
    const d = await destinationUnderTest();
    try {
      await d.sendHeap();
      d.source.channel.destroy();
      const token = await expectAbort(d.outcome, /closed|reset/);
      d.source.verifier.checkAbort(token);
      assert.equal(d.app.timesServed, 0);
    } finally {
      d.close();
    }
  });

  test('a token message in a control frame (type confusion) is refused', async () => {
    const d = await destinationUnderTest();
    try {
      await d.sendHeap();
      const start = d.start();
      await d.source.channel.send(
        d.source.sealer.seal({ type: FrameType.Control }, Buffer.from(JSON.stringify(start))),
      );
      d.source.channel.destroy();
      await expectAbort(d.outcome, /'start' arrived in a frame of type Control/);
      assert.equal(d.app.timesServed, 0);
    } finally {
      d.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// A real source (migrateOut) talking to a scripted destination.

function readPreamble(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    const onReadable = () => {
      if (socket.read(PREAMBLE_BYTES) === null) return;
      socket.off('readable', onReadable);
      socket.pause();
      resolve();
    };
    socket.on('readable', onReadable);
  });
}

type Answer = (d: SessionEnd, start: ControlOf<'start'>) => Promise<void>;

async function sourceUnderTest(answer: Answer) {
  const heap = SecureHeap.create(HEAP_BYTES);
  const allocator = HeapAllocator.format(heap);
  const block = allocator.alloc(3 * PAGE_SIZE);
  heap.writeU32(block, 0xc0ffee);
  const app = new RecordingApp();
  await app.serve();

  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const outcome = migrateOut(
    { heap, app, appKind: 'kv', tee: tee(), policy: testPolicy() },
    {
      mode: 'stop-and-copy',
      dataHost: '127.0.0.1',
      dataPort: port,
      ticket: '00'.repeat(16),
      peerAuth: '00'.repeat(32),
      verify: true,
      requestedAtMs: monotonicMs(),
      maxDowntimeMs: 300,
      bandwidthBps: null,
      // No reconnection: these cases are about what the source does when no answer can come.
      reconnectTimeoutMs: 0,
    },
    () => {},
  );
  const socket = await accepted;
  server.close();
  await readPreamble(socket);
  const channel = new FramedSocket(socket);
  const keys = await handshake({ role: 'destination', channel, tee: tee(), policy: testPolicy() });
  const d = sessionEnd(channel, keys);

  const prefault = openControl(await channel.next(), d.opener);
  assert.equal(prefault.t, 'prefault');
  await sendControl(channel, d.sealer, { t: 'prefaulted', pages: 0 });
  let start: ControlOf<'start'> | undefined;
  while (!start) {
    const frame = await channel.next();
    if (frame.header.type === FrameType.Pages) {
      d.opener.open(frame);
      continue;
    }
    const message = openControl(frame, d.opener);
    if (message.t === 'start') start = message;
  }
  await answer(d, start);
  return { heap, app, block, outcome: await outcome, d };
}

function commitFor(
  d: SessionEnd,
  start: ControlOf<'start'>,
  pagesInstalled = start.pagesTotal,
): ControlOf<'commit'> {
  return {
    t: 'commit',
    resumedAtMs: monotonicMs(),
    pagesInstalled,
    digest: start.digest,
    peakRssBytes: 0,
    cpuUserMs: 0,
    cpuSystemMs: 0,
    faults: null,
    token: d.minter.commit({
      pagesInstalled,
      metadataDigest: Buffer.from(start.metadataDigest, 'hex'),
      contentDigest: start.digest === null ? null : Buffer.from(start.digest, 'hex'),
    }),
  };
}

function assertInDoubt(
  run: { outcome: SourceOutcome; app: RecordingApp; heap: SecureHeap; block: number },
  message: RegExp,
): Extract<SourceOutcome, { kind: 'in-doubt' }> {
  assert.equal(run.outcome.kind, 'in-doubt');
  const outcome = run.outcome as Extract<SourceOutcome, { kind: 'in-doubt' }>;
  assert.match(outcome.message, message);
  assert.equal(run.app.running, false, 'an in-doubt source must not serve');
  assert.equal(run.app.closed, false, 'nor destroy itself');
  assert.equal(run.heap.readU32(run.block), 0xc0ffee, 'its heap is intact');
  return outcome;
}

describe('source: COMMIT and ABORT tokens after START', { timeout: 20_000 }, () => {
  test('a valid COMMIT wipes the heap and closes the application (control)', async () => {
    const run = await sourceUnderTest((d, start) => sendControl(d.channel, d.sealer, commitFor(d, start)));
    assert.equal(run.outcome.kind, 'committed');
    assert.equal(run.app.closed, true);
    assert.equal(run.app.running, false);
  });

  test('a COMMIT with a forged token leaves the source in doubt, paused and intact', async () => {
    const run = await sourceUnderTest((d, start) =>
      sendControl(d.channel, d.sealer, { ...commitFor(d, start), token: 'cd'.repeat(32) }),
    );
    assertInDoubt(run, /COMMIT token is not valid for this migration/);
  });

  test('a validly minted COMMIT over fewer pages than were sent leaves the source in doubt', async () => {
    const run = await sourceUnderTest((d, start) =>
      sendControl(d.channel, d.sealer, commitFor(d, start, start.pagesTotal - 1)),
    );
    assertInDoubt(run, /COMMIT names \d+ pages .* but \d+ pages/);
  });

  test('an ABORT after START with a valid token lets the source serve again', async () => {
    const run = await sourceUnderTest((d) =>
      sendControl(d.channel, d.sealer, { t: 'abort', reason: 'disk on fire', token: d.minter.abort() }),
    );
    assert.equal(run.outcome.kind, 'aborted');
    assert.match((run.outcome as { message: string }).message, /destination aborted: disk on fire/);
    assert.equal(run.app.running, true);
  });

  test('an ABORT after START with a token of another migration does not release the source', async () => {
    const other = await otherMigrationKeys();
    const run = await sourceUnderTest((d) =>
      sendControl(d.channel, d.sealer, {
        t: 'abort',
        reason: 'let me fork you',
        token: new TokenMinter(other.peerTokenKey, other.migrationId).abort(),
      }),
    );
    assertInDoubt(run, /ABORT token is not valid for this migration/);
  });

  test('a cut after START: in doubt until a valid ABORT token arrives by another path', async () => {
    let validAbort = '';
    const run = await sourceUnderTest((d) => {
      validAbort = d.minter.abort();
      d.channel.destroy();
      return Promise.resolve();
    });
    const outcome = assertInDoubt(run, /START was sent; the application stays paused/);
    assert.throws(() => outcome.tokens.checkAbort('00'.repeat(32)), /ABORT token is not valid/);
    assert.throws(
      () =>
        outcome.tokens.checkAbort(new TokenMinter(run.d.keys.peerTokenKey, run.d.keys.migrationId).abort()),
      /ABORT token is not valid/,
      'a token minted with the source’s own key is not an ABORT token',
    );
    outcome.tokens.checkAbort(validAbort);
  });
});

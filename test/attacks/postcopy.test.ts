import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { countLostWrites, KvLoad } from '../../src/bench/load/kv-load.js';
import { DESTINATION_BIND, SOURCE_BIND } from '../../src/bench/local-cluster.js';
import type { EnclaveInfo, MigrateRequest } from '../../src/host/api-schema.js';
import type { HostDaemon } from '../../src/host/daemon.js';
import type { TrackerKind } from '../../src/trackers/tracker.js';
import { HEADER_BYTES } from '../../src/wire/frame.js';
import { type Action, type Attack, FORWARD, type FrameRelay } from '../helpers/frame-relay.js';
import type { Direction, FrameRole } from '../helpers/frame-roles.js';
import { type Reply, RespErrorReply, RespTestClient } from '../helpers/resp-test-client.js';
import {
  AttackBench,
  CONNECTION_LOST,
  type Expectation,
  on,
  type KvUnderTest,
  SMALL_FILL,
  STREAMING_FILL,
} from './harness.js';
import { faultTrackerSkip } from '../helpers/fault-tracker.js';

/**
 * The attack suite's relay against post-copy. Post-copy opens a second connection through the relay
 * (the urgent channel: connection 1, whose first frames are READY from the destination and ATTACH
 * from the source). On the bulk connection (0) the source sends PREFAULT, BEGIN, the few pages that
 * restoring the application reads, START, then the other pages. Roles and ordinals count per
 * connection, so every attack here names its connection.
 *
 * Before START a failure must leave the source serving, and a client load on it must keep every
 * acknowledged write. After START the destination resumes at once: from then on a corrupted page
 * must fail the migration without being installed, the destination keeps running without it
 * ('incomplete'), and the source, which cannot know whether the destination resumed, stays paused.
 */

/** The bench of harness.ts, migrating by post-copy (optionally with the push slowed down). */
class PostcopyBench extends AttackBench {
  bandwidthBps: number | undefined;
  tracker: TrackerKind = 'access';

  protected override migrationRequest(): Omit<MigrateRequest, 'to' | 'dataAddress'> {
    return {
      ...super.migrationRequest(),
      mode: 'post-copy',
      tracker: this.tracker,
      ...(this.bandwidthBps === undefined ? {} : { bandwidthBps: this.bandwidthBps }),
    };
  }

  override async cleanup(): Promise<void> {
    this.bandwidthBps = undefined;
    this.tracker = 'access';
    await super.cleanup();
  }
}

/** An attack on the `ordinal`-th frame of a role on one connection, in one direction. */
function onConnection(
  connection: number,
  role: FrameRole,
  ordinal: number,
  action: Action,
  direction: Direction = 'to-destination',
): Attack {
  const attack = on(role, ordinal, action, direction);
  return (frame, relay) => (frame.connection === connection ? attack(frame, relay) : FORWARD);
}

/** The migration either failed before START, or sent START and was released by the destination's ABORT token. */
const REFUSED_BEFORE_RESUME = new RegExp(
  `${CONNECTION_LOST.source}|START was sent.*the destination never resumed .*ABORT token verified`,
);

async function stateOn(bench: AttackBench, host: HostDaemon, id: string): Promise<string | undefined> {
  const list = await bench.cluster.client(host).call<EnclaveInfo[]>('GET', '/v1/enclaves');
  return list.find((e) => e.id === id)?.state;
}

describe('a relay against post-copy', { timeout: 180_000 }, () => {
  const bench = new PostcopyBench();
  before(() => bench.start());
  afterEach(() => bench.cleanup());
  after(() => bench.close());

  /**
   * Runs `attacked` (which must end in a refused migration) while KvLoad uses the source, then checks
   * that the load is served by the source again and that every write it saw acknowledged is there.
   */
  async function underLoad(kv: KvUnderTest, attacked: () => Promise<void>): Promise<void> {
    const load = new KvLoad([
      { host: SOURCE_BIND, port: kv.port },
      { host: DESTINATION_BIND, port: kv.port },
    ]);
    load.start();
    let stopped = false;
    try {
      await sleep(200);
      await attacked();
      for (let waited = 0; load.sinceLastSuccess() > 50; waited += 10) {
        if (waited > 20_000) assert.fail('the client load is not served again after the refused migration');
        await sleep(10);
      }
      await sleep(300);
      assert.ok(load.sinceLastSuccess() < 5000, 'the load kept being served after the migration failed');
      await load.stop();
      stopped = true;
      const { checked, lost } = await countLostWrites(load, { host: SOURCE_BIND, port: kv.port });
      assert.ok(checked > 0, 'the load had writes acknowledged');
      assert.equal(lost, 0, `${lost} of ${checked} acknowledged writes are gone from the source`);
    } finally {
      if (!stopped) await load.stop();
    }
  }

  interface Cut {
    boundary: string;
    attack: Attack;
    fill: number;
    fired: Expectation['fired'];
  }

  const CUTS: readonly Cut[] = [
    {
      boundary: 'after PREFAULT',
      attack: onConnection(0, 'prefault', 0, { do: 'cut', when: 'after' }),
      fill: SMALL_FILL,
      fired: [['cut', 'prefault']],
    },
    {
      boundary: 'after PREFAULTED, before the urgent channel opens',
      attack: onConnection(0, 'prefaulted', 0, { do: 'cut', when: 'after' }, 'to-source'),
      fill: SMALL_FILL,
      fired: [['cut', 'prefaulted']],
    },
    {
      boundary: 'on the urgent channel, before its READY reaches the source',
      // READY is an unsealed frame type the attacker's classifier does not name.
      attack: onConnection(1, 'unknown', 0, { do: 'cut', when: 'before' }, 'to-source'),
      fill: SMALL_FILL,
      fired: [['cut', 'unknown']],
    },
    {
      boundary: 'after BEGIN (the application is paused)',
      attack: onConnection(0, 'begin', 0, { do: 'cut', when: 'after' }),
      fill: STREAMING_FILL,
      fired: [['cut', 'begin']],
    },
  ];

  for (const cut of CUTS) {
    test(`cut ${cut.boundary}: the source serves again and the load keeps its writes`, async () => {
      const kv = await bench.startKv(cut.fill);
      const relay = await bench.relay(cut.attack);
      await underLoad(kv, () =>
        bench.expectRefused(kv, relay, { error: REFUSED_BEFORE_RESUME, fired: cut.fired }),
      );
    });
  }

  /**
   * The migration fails after the destination resumed: the source must learn it (the call ends), stay
   * paused in doubt, and the destination runs on without the pages that never arrived: keys on them
   * answer an error, never a wrong value.
   */
  async function expectIncomplete(
    kv: KvUnderTest,
    relay: FrameRelay,
    reason: RegExp,
    sample: ReadonlyMap<string, Buffer>,
  ): Promise<void> {
    const error = await Promise.race([
      bench.migrate(kv, relay).then(
        (report) => assert.fail(`the attacked migration succeeded (${report.migrationId})`),
        (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
      ),
      // Unref'd: once the call ended, this timer must not keep the test file running for a minute.
      sleep(60_000, undefined, { ref: false }).then(() =>
        assert.fail('the migration call never ended: the source still waits for COMMIT after 60 s'),
      ),
    ]);
    assert.match(error.message, /\(START was sent; the application stays paused\)/);
    assert.match(
      error.message,
      bench.tracker === 'access'
        ? /the destination resumed and holds the application; the source stays paused/
        : /the destination gave no ABORT token \(post-copy failed after resume .*the Fault Tracker halted the application\); the source stays paused/,
    );
    assert.match(error.message, /\(the source stays paused\)$/);
    assert.deepEqual(relay.attackErrors, []);

    const { source, destination } = bench.cluster;
    assert.equal(await stateOn(bench, source, kv.id), 'in-doubt');
    // Its clients left at START and its port stays closed: it serves nobody.
    await assert.rejects(
      RespTestClient.connect(kv.port, SOURCE_BIND),
      /ECONNREFUSED/,
      'the in-doubt source accepts clients',
    );

    const log = path.join(destination.options.stateDir, 'logs', `${kv.id}.log`);
    const failure = fs
      .readFileSync(log, 'utf8')
      .split('\n')
      .find((line) => line.includes('post-copy failed after resume'));
    assert.ok(failure, 'the destination logged that post-copy failed after it resumed');
    assert.match(failure, reason);

    if (bench.tracker === 'fault') {
      // A kernel wait cannot fail one access: the application was halted, and serves nothing at all.
      assert.equal(await stateOn(bench, destination, kv.id), undefined, 'the destination enclave is gone');
      await assert.rejects(RespTestClient.connect(kv.port, DESTINATION_BIND), /ECONNREFUSED/);
      return;
    }
    assert.equal(await stateOn(bench, destination, kv.id), 'running');
    // The destination serves what it has; what it lacks fails loudly. A corrupted page was never installed.
    const client = await RespTestClient.connect(kv.port, DESTINATION_BIND);
    let lostKeys = 0;
    try {
      assert.equal(await client.command('PING'), 'PONG');
      for (const [key, value] of sample) {
        // Each access to a page that will never come waits one tracker slice (200 ms) before it fails.
        client.send(`*2\r\n$3\r\nGET\r\n$${key.length}\r\n${key}\r\n`);
        const [reply] = (await client.read(1, 10_000)) as Reply[];
        if (reply instanceof RespErrorReply) {
          assert.match(reply.message, /page \d+ cannot be restored/);
          lostKeys++;
        } else {
          assert.deepEqual(reply, value, `${key} holds another value than the source's`);
        }
      }
    } finally {
      client.close();
    }
    assert.ok(lostKeys > 0, 'some sampled keys live on pages that never arrived');
  }

  /** `count` fill keys spread over the whole fill, with their values read from the source. */
  async function sampleFill(kv: KvUnderTest, count: number): Promise<Map<string, Buffer>> {
    const client = await RespTestClient.connect(kv.port, SOURCE_BIND);
    try {
      const size = (await client.command('DBSIZE')) as number;
      const sample = new Map<string, Buffer>();
      for (let i = 0; i < count; i++) {
        const key = `key:${Math.floor((i * (size - 10)) / count)}`;
        const value = await client.command('GET', key);
        assert.ok(Buffer.isBuffer(value), `${key} is not a fill key`);
        sample.set(key, value);
      }
      return sample;
    } finally {
      client.close();
    }
  }

  /**
   * Polls the destination host until it reports the enclave running, which it does once the enclave
   * serves there (after restore): from then on the destination has resumed for sure.
   */
  function watchResumed(id: string): { resumed: () => boolean; stop: () => void } {
    let resumed = false;
    let stopped = false;
    void (async () => {
      while (!stopped && !resumed) {
        const state = await stateOn(bench, bench.cluster.destination, id).catch(() => undefined);
        if (state === 'running') resumed = true;
        else await sleep(20);
      }
    })();
    return {
      resumed: () => resumed,
      stop: () => {
        stopped = true;
      },
    };
  }

  /**
   * Flips a bit in the first Pages frame of `connection` that passes once `armed()` is true;
   * `holdBulk`: the bulk pages after START are held back (those before it, which restoring reads, pass).
   */
  function flipFirstPagesOnceArmed(connection: number, armed: () => boolean, holdBulk: boolean): Attack {
    let flipped = false;
    let bulkStarted = false;
    return (frame) => {
      if (frame.direction !== 'to-destination') return FORWARD;
      if (frame.connection === 0 && frame.role === 'start') bulkStarted = true;
      if (frame.role !== 'pages') return FORWARD;
      if (holdBulk && frame.connection === 0 && bulkStarted) return { do: 'hold' };
      if (frame.connection !== connection || flipped || !armed()) return FORWARD;
      flipped = true;
      return { do: 'flip', offset: HEADER_BYTES + 1000 };
    };
  }

  for (const tracker of ['access', 'fault'] as const) {
    const skip = tracker === 'fault' && faultTrackerSkip;

    test(
      `${tracker} tracker: a bit flipped in a bulk Pages frame after the destination resumed: incomplete, the source stays paused`,
      { skip },
      async () => {
        bench.tracker = tracker;
        // A slow push, so that bulk pages still flow once the destination is known to have resumed.
        bench.bandwidthBps = 4e6;
        const kv = await bench.startKv(STREAMING_FILL);
        const sample = await sampleFill(kv, 16);
        const watch = watchResumed(kv.id);
        try {
          const relay = await bench.relay(flipFirstPagesOnceArmed(0, watch.resumed, false));
          await expectIncomplete(kv, relay, /failed authentication/, sample);
          assert.equal(relay.performed('flip', 'pages').length, 1);
        } finally {
          watch.stop();
        }
      },
    );

    test(
      `${tracker} tracker: a bit flipped in a page demanded after the destination resumed (urgent channel): the same outcome`,
      { skip },
      async () => {
        bench.tracker = tracker;
        // The relay holds every bulk page back: whatever the destination gets comes on the urgent channel.
        const kv = await bench.startKv(STREAMING_FILL);
        const sample = await sampleFill(kv, 16);
        const watch = watchResumed(kv.id);
        // Once the destination serves, a client reads keys all over the heap there: each demands a page.
        const probing = (async () => {
          while (!watch.resumed()) await sleep(10);
          const client = await RespTestClient.connect(kv.port, DESTINATION_BIND);
          try {
            for (const key of sample.keys()) {
              client.send(`*2\r\n$3\r\nGET\r\n$${key.length}\r\n${key}\r\n`);
              await client.read(1, 10_000);
            }
          } finally {
            client.close();
          }
          // The probe only makes pages wanted: with the Fault Tracker its connection closes when the
          // application is halted, which expectIncomplete checks.
        })().catch(() => {});
        try {
          const relay = await bench.relay(flipFirstPagesOnceArmed(1, watch.resumed, true));
          await expectIncomplete(kv, relay, /failed authentication/, sample);
          assert.equal(relay.performed('flip', 'pages').length, 1);
          assert.ok(relay.performed('hold', 'pages').length > 0, 'bulk pages were held back');
        } finally {
          watch.stop();
          await probing;
        }
      },
    );

    test(
      `${tracker} tracker: a bit flipped in a page that restoring reads (sent with START): it never resumes, the source serves again`,
      { skip },
      async () => {
        bench.tracker = tracker;
        // The first Pages frame on the bulk connection is one the restore reads, before START. The
        // destination has not served yet, so it may still refuse.
        const kv = await bench.startKv(SMALL_FILL);
        const relay = await bench.relay(flipFirstPagesOnceArmed(0, () => true, false));
        await underLoad(kv, () =>
          bench.expectRefused(kv, relay, {
            error: /destination aborted: frame seq \d+ failed authentication/,
            fired: [['flip', 'pages']],
          }),
        );
      },
    );
  }
});

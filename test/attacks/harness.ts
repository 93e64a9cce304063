import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, afterEach, before } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  DESTINATION_BIND,
  freePortOnBoth,
  LocalCluster,
  SOURCE_BIND,
} from '../../src/bench/local-cluster.js';
import { requestMigration } from '../../src/cli/commands/migrate.js';
import { MigrationProgressView } from '../../src/cli/migrate-progress.js';
import type { EnclaveInfo, MigrateRequest } from '../../src/host/api-schema.js';
import type { MigrationReport } from '../../src/migrate/report.js';
import {
  type Action,
  type Attack,
  FORWARD,
  FrameRelay,
  type FrameRelayOptions,
  type RelayEvent,
} from '../helpers/frame-relay.js';
import type { Direction, FrameRole } from '../helpers/frame-roles.js';
import { RespTestClient } from '../helpers/resp-test-client.js';

/**
 * One real migration per attack: a kv enclave on the source host of a LocalCluster, a FrameRelay on its
 * data path, and the checks every refused migration must pass (DESIGN.md §2): the specific error, the
 * source serving every key again, nothing left on the destination, and proof that the attack fired.
 */

const MiB = 2 ** 20;
const HEAP_BYTES = 32 * MiB;
/** A few MiB: about twenty Pages frames of 64 pages. */
export const SMALL_FILL = 4 * MiB;
/**
 * For attacks that kill the connection while pages flow and leave the destination no way to answer:
 * the source must still be sending when it learns of it, or it has already sent START and rightly stays
 * paused (in doubt). Far more pages than socket buffers can hold keep that a certainty.
 */
export const STREAMING_FILL = 20 * MiB;

/** Set by every case before migrating, read back from the source afterwards. */
const KNOWN_KEYS: ReadonlyMap<string, Buffer> = new Map([
  ['attack:greeting', Buffer.from('hello enclave')],
  ['attack:binary', Buffer.from([0, 1, 2, 0xfe, 0xff, 13, 10])],
  ['attack:large', Buffer.alloc(20_000, 'x')],
]);

/** Any of the ways a peer's disappearance surfaces on the source. */
export const CONNECTION_LOST = /peer closed the channel|on a closed channel|channel closed|ECONNRESET|EPIPE/;

export interface KvUnderTest {
  id: string;
  port: number;
}

export interface Expectation {
  /** What the migration call must fail with. */
  error: RegExp;
  /** The destination's own reason (from its log), for attacks that leave it no way to tell the source. */
  destinationReason?: RegExp;
  /** Attacks the relay must have performed: [action] or [action, role of the frame]. */
  fired: readonly (readonly [RelayEvent['action'], FrameRole?])[];
}

/** An attack on the `ordinal`-th frame of a role in one direction (by default towards the destination). */
export function on(
  role: FrameRole,
  ordinal: number,
  action: Action,
  direction: Direction = 'to-destination',
): Attack {
  return (frame) =>
    frame.direction === direction && frame.role === role && frame.ordinal === ordinal ? action : FORWARD;
}

/** The offset of a character of a JSON string field in a plaintext frame whose bit 0 can flip and stay base64. */
export function base64CharOffset(frame: Buffer, field: string, fromChar: number): number {
  const start = frame.indexOf(`"${field}":"`);
  assert.ok(start >= 0, `no field ${field} in the frame`);
  const base64 = /[A-Za-z0-9+/]/;
  for (let offset = start + field.length + 4 + fromChar; frame[offset] !== 0x22; offset++) {
    const flipped = String.fromCharCode(frame[offset]! ^ 0x01);
    if (base64.test(flipped)) return offset;
  }
  throw new Error(`no flippable character in field ${field}`);
}

async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`${what} (still not the case after ${timeoutMs} ms)`);
    await sleep(25);
  }
}

function refusesConnections(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}

/** One bench per test file: a cluster for the whole file, cleaned between cases. Call inside describe. */
export function useAttackBench(): AttackBench {
  const bench = new AttackBench();
  before(() => bench.start());
  afterEach(() => bench.cleanup());
  after(() => bench.close());
  return bench;
}

export class AttackBench {
  private readonly relays: FrameRelay[] = [];
  private readonly enclaves: string[] = [];

  /** Set by start(), before any test of the file runs. */
  cluster!: LocalCluster;

  async start(): Promise<void> {
    this.cluster = await LocalCluster.start('constmig-attacks-');
  }

  async close(): Promise<void> {
    await this.cleanup();
    await this.cluster.close();
  }

  /** Removes what a case left behind, whatever its outcome, so the next case starts clean. */
  async cleanup(): Promise<void> {
    for (const relay of this.relays.splice(0)) relay.close();
    for (const id of this.enclaves.splice(0)) {
      for (const host of [this.cluster.source, this.cluster.destination]) {
        await this.cluster
          .client(host)
          .call('DELETE', `/v1/enclaves/${id}`)
          .catch(() => {});
      }
    }
  }

  /** A kv enclave on the source holding `fillBytes` of filler and KNOWN_KEYS. */
  async startKv(fillBytes = SMALL_FILL): Promise<KvUnderTest> {
    const port = await freePortOnBoth();
    const info = await this.cluster
      .client(this.cluster.source)
      .call<EnclaveInfo>('POST', '/v1/enclaves', { app: 'kv', heapBytes: HEAP_BYTES, port, fillBytes });
    this.enclaves.push(info.id);
    const client = await RespTestClient.connect(port, SOURCE_BIND);
    try {
      for (const [key, value] of KNOWN_KEYS) assert.equal(await client.command('SET', key, value), 'OK');
    } finally {
      client.close();
    }
    return { id: info.id, port };
  }

  /** A relay towards the destination host's peer port, closed by cleanup(). */
  async relay(attack: Attack, options: FrameRelayOptions = {}): Promise<FrameRelay> {
    const relay = new FrameRelay(
      { host: DESTINATION_BIND, port: this.cluster.destination.peerPort },
      attack,
      options,
    );
    this.relays.push(relay);
    await relay.listen();
    return relay;
  }

  /** What every migration of this bench asks for besides its destination and relay; a subclass may change it. */
  protected migrationRequest(): Omit<MigrateRequest, 'to' | 'dataAddress'> {
    return {
      mode: 'stop-and-copy',
      verify: true,
      // A relay that keeps attacking every new connection would otherwise be dialled for a minute.
      reconnectTimeoutMs: 3000,
    };
  }

  migrate(kv: KvUnderTest, relay: FrameRelay): Promise<MigrationReport> {
    return requestMigration(
      this.cluster.client(this.cluster.source),
      kv.id,
      { ...this.migrationRequest(), to: this.cluster.destination.controlUrl, dataAddress: relay.address },
      new MigrationProgressView(false),
    );
  }

  /** An unattacked migration through `relay`; the moved enclave is then removed from the destination. */
  async expectMigrated(kv: KvUnderTest, relay: FrameRelay): Promise<MigrationReport> {
    const report = await this.migrate(kv, relay);
    assert.equal(report.verified, true);
    await this.cluster.client(this.cluster.destination).call('DELETE', `/v1/enclaves/${kv.id}`);
    return report;
  }

  /** The migration fails as expected, and the source serves every key again. */
  async expectRefused(kv: KvUnderTest, relay: FrameRelay, expected: Expectation): Promise<void> {
    await this.expectFailure(kv, relay, expected, /\(the source serves again\)$/);
    assert.equal(await this.sourceState(kv), 'running');
    const client = await RespTestClient.connect(kv.port, SOURCE_BIND);
    try {
      for (const [key, value] of KNOWN_KEYS) assert.deepEqual(await client.command('GET', key), value, key);
    } finally {
      client.close();
    }
  }

  /**
   * The migration fails after the source sent START: it may never serve again on its own (the
   * destination might have resumed), so it stays paused, holding requests without answering them.
   */
  async expectInDoubt(kv: KvUnderTest, relay: FrameRelay, expected: Expectation): Promise<void> {
    await this.expectFailure(
      kv,
      relay,
      expected,
      /\(START was sent; the application stays paused\) \(the source stays paused\)$/,
    );
    assert.equal(await this.sourceState(kv), 'in-doubt');
    const client = await RespTestClient.connect(kv.port, SOURCE_BIND);
    try {
      client.send('*1\r\n$4\r\nPING\r\n');
      await assert.rejects(
        client.read(1, 300),
        /timed out waiting for 1 replies/,
        'the paused source answered',
      );
    } finally {
      client.close();
    }
  }

  private async expectFailure(
    kv: KvUnderTest,
    relay: FrameRelay,
    expected: Expectation,
    sourceOutcome: RegExp,
  ): Promise<void> {
    const error = await this.migrate(kv, relay).then(
      (report) => assert.fail(`the attacked migration succeeded (${report.migrationId})`),
      (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
    );
    assert.match(error.message, expected.error);
    assert.match(error.message, sourceOutcome);
    assert.deepEqual(relay.attackErrors, []);
    for (const [action, role] of expected.fired) {
      assert.ok(
        relay.performed(action, role).length > 0,
        `the relay never performed ${action} ${role ?? ''}`,
      );
    }
    const destination = this.cluster.client(this.cluster.destination);
    await eventually('the destination host still holds an enclave', async () => {
      return (await destination.call<EnclaveInfo[]>('GET', '/v1/enclaves')).length === 0;
    });
    assert.ok(
      await refusesConnections(DESTINATION_BIND, kv.port),
      'something listens on the destination app port',
    );
    // The destination has exited by now, so its log is complete.
    if (expected.destinationReason) assert.match(this.destinationErrors(kv), expected.destinationReason);
  }

  /** What the destination enclave logged as errors: its reasons, for those it could not send back. */
  private destinationErrors(kv: KvUnderTest): string {
    const log = path.join(this.cluster.destination.options.stateDir, 'logs', `${kv.id}.log`);
    if (!fs.existsSync(log)) return '';
    const lines = fs.readFileSync(log, 'utf8').split('\n');
    return lines.filter((line) => line.includes('"level":50')).join('\n');
  }

  private async sourceState(kv: KvUnderTest): Promise<string> {
    const info = await this.cluster
      .client(this.cluster.source)
      .call<EnclaveInfo>('GET', `/v1/enclaves/${kv.id}`);
    return info.state;
  }
}

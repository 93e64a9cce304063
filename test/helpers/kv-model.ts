import { setTimeout as sleep } from 'node:timers/promises';
import type { HostPort } from '../../src/util/address.js';
import { encodeCommand, type Reply, RespErrorReply, RespTestClient } from './resp-test-client.js';

/**
 * Model-based checking of a kv enclave that migrates while it serves: clients that follow the
 * application from the source to the destination address, a random workload whose every reply is
 * checked against a reference model, and the handling of replies lost when the source lets its
 * clients go at START.
 */

/** A reply that takes longer than this is a hang, not a slow fault. */
const REPLY_TIMEOUT_MS = 30_000;
const CONNECT_DEADLINE_MS = 30_000;

/** The connection closed before the reply came: the request may or may not have run. */
export class LostReply extends Error {
  override name = 'LostReply';
}

/** A reply that contradicts the model: the application lost or invented state. */
export class ModelMismatch extends Error {
  override name = 'ModelMismatch';
}

/**
 * One connection at a time, one request in flight, to the first endpoint that accepts; when the
 * connection closes it moves on to the next endpoint (the application left the source at START).
 */
export class FollowingClient {
  private client: RespTestClient | null = null;
  private closed = false;
  private endpoint = 0;
  /** Index (in `endpoints`) of the endpoint of the current connection. */
  connectedTo = -1;
  connections = 0;
  lostReplies = 0;

  constructor(private readonly endpoints: readonly HostPort[]) {}

  async command(args: readonly (string | Buffer)[]): Promise<Reply> {
    const client = await this.connected();
    client.send(encodeCommand(args));
    try {
      const [reply] = await client.read(1, REPLY_TIMEOUT_MS);
      return reply!;
    } catch (err) {
      if (!(err instanceof Error && /connection closed/.test(err.message))) throw err;
      this.drop();
      this.lostReplies++;
      throw new LostReply(`${String(args[0])}: the connection closed before the reply`);
    }
  }

  close(): void {
    this.client?.close();
    this.client = null;
  }

  private async connected(): Promise<RespTestClient> {
    if (this.client && !this.closed) return this.client;
    if (this.client) this.drop();
    const deadline = Date.now() + CONNECT_DEADLINE_MS;
    for (;;) {
      const index = this.endpoint % this.endpoints.length;
      const target = this.endpoints[index]!;
      try {
        const client = await RespTestClient.connect(target.port, target.host);
        this.client = client;
        this.closed = false;
        void client.closed.then(() => {
          if (this.client === client) this.closed = true;
        });
        this.connectedTo = index;
        this.connections++;
        return client;
      } catch {
        this.endpoint++;
        if (Date.now() > deadline) throw new Error('no endpoint accepted a connection for 30 s');
        await sleep(5);
      }
    }
  }

  private drop(): void {
    this.client?.close();
    this.client = null;
    this.closed = false;
    this.endpoint++;
  }
}

/** Deterministic pseudo-random numbers (mulberry32), so a failing seed can be replayed. */
export class Rng {
  constructor(private state: number) {}

  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  }

  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  bytes(length: number): Buffer {
    const out = Buffer.allocUnsafe(length);
    for (let i = 0; i < length; i++) out[i] = this.int(256);
    return out;
  }
}

/**
 * The reference: what every key holds. Keys never touched since the fill hold the value recorded
 * from the source before the workload began.
 */
export class KvModel {
  private readonly changed = new Map<string, Buffer | null>();

  constructor(
    /** `key:<n>` for n < fill.length: the fill's values, read back from the source. */
    readonly fill: readonly Buffer[],
  ) {}

  get(key: string): Buffer | null {
    if (this.changed.has(key)) return this.changed.get(key)!;
    const match = /^key:(\d+)$/.exec(key);
    return match ? (this.fill[Number(match[1])] ?? null) : null;
  }

  set(key: string, value: Buffer | null): void {
    this.changed.set(key, value);
  }

  get changedKeys(): number {
    return this.changed.size;
  }
}

/** Reads the fill (`key:0` .. `key:<dbsize-1>`) back from a fresh enclave, in MGET batches. */
export async function recordFill(endpoint: HostPort, batch = 256): Promise<Buffer[]> {
  const client = await RespTestClient.connect(endpoint.port, endpoint.host);
  try {
    const size = await client.command('DBSIZE');
    if (typeof size !== 'number' || size <= 0) throw new Error(`DBSIZE answered ${String(size)}`);
    const values: Buffer[] = [];
    for (let first = 0; first < size; first += batch) {
      const keys = Array.from({ length: Math.min(batch, size - first) }, (_, i) => `key:${first + i}`);
      const replies = (await client.command('MGET', ...keys)) as Reply[];
      for (const [i, reply] of replies.entries()) {
        if (!Buffer.isBuffer(reply)) throw new Error(`fill key ${keys[i]} holds ${String(reply)}`);
        values.push(reply);
      }
    }
    return values;
  } finally {
    client.close();
  }
}

const CANONICAL_INTEGER = /^(?:0|-?[1-9][0-9]{0,18})$/;
const INT64_MAX = 2n ** 63n - 1n;
const INT64_MIN = -(2n ** 63n);

function show(reply: Reply | undefined): string {
  if (Buffer.isBuffer(reply)) {
    const text = reply.toString('latin1');
    return `${reply.length} B ${JSON.stringify(text.length > 24 ? `${text.slice(0, 24)}…` : text)}`;
  }
  if (reply instanceof RespErrorReply) return `error ${JSON.stringify(reply.message)}`;
  if (Array.isArray(reply)) return `[${reply.map(show).join(', ')}]`;
  return String(reply);
}

function sameValue(reply: Reply | undefined, expected: Buffer | null): boolean {
  return expected === null ? reply === null : Buffer.isBuffer(reply) && reply.equals(expected);
}

export interface WorkloadFigures {
  ops: number;
  /** Operations answered by each endpoint (index as in the endpoints list). */
  opsByEndpoint: number[];
  lostReplies: number;
  /** Lost INCRs whose effect was settled by reading the key back: [not applied, applied]. */
  settledIncr: [number, number];
  /** Checked reads of keys spread over the heap, right after the client reached a new endpoint. */
  touches: number;
}

/**
 * One client of the random workload. It owns the keys whose number is `index` modulo `of`, so that
 * several workers can run at once against one model without ordering questions between them.
 */
export class ModelWorker {
  readonly figures: WorkloadFigures;
  private readonly recent: string[] = [];
  private touchedEndpoint = -1;
  private readonly ownFill: number;
  private readonly ownExtra: number;

  constructor(
    private readonly index: number,
    private readonly of: number,
    private readonly client: FollowingClient,
    private readonly model: KvModel,
    private readonly rng: Rng,
    private readonly extraKeys: number,
    endpoints: number,
  ) {
    this.figures = {
      ops: 0,
      opsByEndpoint: new Array<number>(endpoints).fill(0),
      lostReplies: 0,
      settledIncr: [0, 0],
      touches: 0,
    };
    this.ownFill = Math.floor((model.fill.length - 1 - index) / of) + 1;
    this.ownExtra = Math.floor((extraKeys - 1 - index) / of) + 1;
  }

  /** Runs random operations until `running()` turns false; throws on the first mismatch. */
  async run(running: () => boolean): Promise<void> {
    while (running()) {
      await this.step();
      if (this.client.connectedTo !== this.touchedEndpoint) {
        this.touchedEndpoint = this.client.connectedTo;
        if (this.touchedEndpoint > 0) await this.touch();
      }
    }
  }

  /** Every key this worker owns, for a final sweep. */
  ownKeys(): string[] {
    const keys: string[] = [];
    for (let i = 0; i < this.ownFill; i++) keys.push(`key:${this.index + i * this.of}`);
    for (let i = 0; i < this.ownExtra; i++) keys.push(`x:${this.index + i * this.of}`);
    return keys;
  }

  /** MGETs every owned key in batches and checks each against the model. */
  async sweep(batch = 200): Promise<number> {
    const keys = this.ownKeys();
    for (let i = 0; i < keys.length; i += batch) await this.mget(keys.slice(i, i + batch), 'sweep');
    return keys.length;
  }

  /**
   * Keys spread over the whole fill (so over the whole heap) and the keys written last: right after
   * the client reached the destination, these are pages post-copy has most likely not sent yet.
   */
  private async touch(): Promise<void> {
    const spread = 48;
    const keys = new Set<string>(this.recent);
    for (let i = 0; i < spread; i++) {
      keys.add(`key:${this.index + Math.floor((i * this.ownFill) / spread) * this.of}`);
    }
    await this.mget([...keys], 'touch');
    this.figures.touches++;
  }

  private fillKey(): string {
    return `key:${this.index + this.rng.int(this.ownFill) * this.of}`;
  }

  private key(): string {
    return this.rng.next() < 0.7 ? this.fillKey() : `x:${this.index + this.rng.int(this.ownExtra) * this.of}`;
  }

  private keys(count: number): string[] {
    const keys = new Set<string>();
    while (keys.size < count) keys.add(this.key());
    return [...keys];
  }

  private value(): Buffer {
    const r = this.rng.next();
    if (r < 0.3) return Buffer.from(String(this.rng.int(2_000_000) - 1_000_000));
    if (r < 0.6) return this.rng.bytes(1 + this.rng.int(200));
    if (r < 0.9) return this.rng.bytes(200 + this.rng.int(1800));
    // Spans two or three pages.
    return this.rng.bytes(4000 + this.rng.int(5000));
  }

  private async step(): Promise<void> {
    const r = this.rng.next();
    if (r < 0.3) return this.mget([this.key()], 'GET');
    if (r < 0.48) return this.setMany([[this.key(), this.value()]], 'SET');
    if (r < 0.6) return this.mget(this.keys(2 + this.rng.int(7)), 'MGET');
    if (r < 0.7) {
      const pairs = this.keys(2 + this.rng.int(3)).map((k) => [k, this.value()] as const);
      return this.setMany(pairs, 'MSET');
    }
    if (r < 0.8) return this.del(this.keys(1 + this.rng.int(3)));
    return this.incr(
      this.rng.next() < 0.5 ? `x:${this.index + this.rng.int(this.ownExtra) * this.of}` : this.key(),
    );
  }

  /** Sends a command whose repetition is harmless, again on the next connection while its reply is lost. */
  private async idempotent(args: (string | Buffer)[]): Promise<{ reply: Reply; retried: boolean }> {
    let retried = false;
    for (let attempt = 0; ; attempt++) {
      try {
        return { reply: await this.send(args), retried };
      } catch (err) {
        if (!(err instanceof LostReply) || attempt >= 20) throw err;
        this.figures.lostReplies++;
        retried = true;
      }
    }
  }

  private async send(args: (string | Buffer)[]): Promise<Reply> {
    const reply = await this.client.command(args);
    this.figures.ops++;
    this.figures.opsByEndpoint[this.client.connectedTo]!++;
    return reply;
  }

  private mismatch(what: string, expected: string, reply: Reply | undefined): never {
    throw new ModelMismatch(
      `worker ${this.index}, ${what} on endpoint ${this.client.connectedTo}: expected ${expected}, got ${show(reply)}`,
    );
  }

  private async mget(keys: string[], what: string): Promise<void> {
    const single = what === 'GET';
    const { reply } = await this.idempotent(single ? ['GET', keys[0]!] : ['MGET', ...keys]);
    const replies = single ? [reply] : reply;
    if (!Array.isArray(replies) || replies.length !== keys.length)
      this.mismatch(what, `${keys.length} replies`, reply);
    for (const [i, key] of keys.entries()) {
      const expected = this.model.get(key);
      if (!sameValue(replies[i], expected)) {
        this.mismatch(`${what} ${key}`, expected === null ? 'nil' : show(expected), replies[i]);
      }
    }
  }

  private async setMany(pairs: readonly (readonly [string, Buffer])[], what: 'SET' | 'MSET'): Promise<void> {
    const args = what === 'SET' ? ['SET', ...pairs[0]!] : ['MSET', ...pairs.flat()];
    const { reply } = await this.idempotent(args);
    if (reply !== 'OK') this.mismatch(`${what} ${pairs.map(([k]) => k).join(' ')}`, 'OK', reply);
    for (const [key, value] of pairs) {
      this.model.set(key, value);
      this.remember(key);
    }
  }

  private async del(keys: string[]): Promise<void> {
    const expected = keys.filter((k) => this.model.get(k) !== null).length;
    const { reply, retried } = await this.idempotent(['DEL', ...keys]);
    // A retry after a lost reply finds nothing left to delete if the first attempt ran.
    if (!(reply === expected || (retried && reply === 0))) {
      this.mismatch(`DEL ${keys.join(' ')}`, `${expected}${retried ? ' or 0 (retried)' : ''}`, reply);
    }
    for (const key of keys) {
      this.model.set(key, null);
      this.remember(key);
    }
  }

  /**
   * INCR is not idempotent: when its reply is lost, the key is read back on the next connection
   * and must hold either the old value (it did not run) or the incremented one (it did).
   */
  private async incr(key: string): Promise<void> {
    const before = this.model.get(key);
    const text = before?.toString('latin1') ?? '0';
    // Redis's rules (src/apps/kv/redis-integer.ts): a canonical 64-bit integer, and no overflow.
    const integer = before === null || (before.length <= 20 && CANONICAL_INTEGER.test(text));
    const next = integer ? BigInt(text) + 1n : null;
    const after =
      next !== null && next > INT64_MIN && next <= INT64_MAX ? Buffer.from(next.toString()) : null;
    this.remember(key);
    let reply: Reply;
    try {
      reply = await this.send(['INCR', key]);
    } catch (err) {
      if (!(err instanceof LostReply)) throw err;
      this.figures.lostReplies++;
      const { reply: now } = await this.idempotent(['GET', key]);
      if (after && sameValue(now, after)) {
        this.model.set(key, after);
        this.figures.settledIncr[1]++;
      } else if (sameValue(now, before)) {
        this.figures.settledIncr[0]++;
      } else {
        this.mismatch(`GET ${key} after a lost INCR`, `${show(before)} or ${show(after ?? undefined)}`, now);
      }
      return;
    }
    if (!after) {
      if (!(reply instanceof RespErrorReply && /not an integer|overflow/.test(reply.message))) {
        this.mismatch(`INCR ${key} of a non-integer`, 'an error', reply);
      }
      return;
    }
    if (reply !== Number(after.toString())) this.mismatch(`INCR ${key}`, after.toString(), reply);
    this.model.set(key, after);
  }

  private remember(key: string): void {
    this.recent.push(key);
    if (this.recent.length > 16) this.recent.shift();
  }
}

import net from 'node:net';
import type { HostPort } from '../util/address.js';
import { monotonicMs } from '../util/clock.js';

/**
 * A Redis client load that keeps one request in flight (SET then GET of its own keys) and follows the
 * application when it moves: on a refused or closed connection it tries the next endpoint. It measures
 * the client-observed gap (the longest interval without a successful response, DESIGN.md §6) and
 * remembers every acknowledged write, so that a lost write after migration can be detected.
 */
export interface LoadResult {
  ops: number;
  errors: number;
  reconnects: number;
  /** Longest interval between two successful responses while the load ran. */
  clientGapMs: number;
  /** Successful operations per 100 ms bucket since start (degradation over time). */
  opsPer100ms: number[];
  /** Start -> stop, on the axis of the buckets (the last bucket is only partly covered). */
  durationMs: number;
}

const KEY_SPACE = 1000;

export class KvLoad {
  private socket: net.Socket | null = null;
  private endpoint = 0;
  private running = false;
  private lastSuccess = 0;
  private startedAt = 0;
  private seq = 0;
  private pending: { key: string; value: string | null; resolve: (ok: boolean) => void } | null = null;
  private buffer = '';
  private stopped: Promise<void> = Promise.resolve();
  /** Last acknowledged value per key, and the value of a write whose reply was lost (either may hold). */
  readonly acked = new Map<string, string>();
  readonly ambiguous = new Map<string, string>();
  private readonly result: LoadResult = {
    ops: 0,
    errors: 0,
    reconnects: 0,
    clientGapMs: 0,
    opsPer100ms: [],
    durationMs: 0,
  };

  constructor(private readonly endpoints: HostPort[]) {}

  start(): void {
    this.running = true;
    this.startedAt = monotonicMs();
    this.lastSuccess = this.startedAt;
    this.stopped = this.loop();
  }

  async stop(): Promise<LoadResult> {
    this.running = false;
    await this.stopped;
    this.result.durationMs = monotonicMs() - this.startedAt;
    this.socket?.destroy();
    return this.result;
  }

  /** CLOCK_MONOTONIC ms at which the load started (bucket 0 of opsPer100ms begins here). */
  get startedAtMs(): number {
    return this.startedAt;
  }

  /** Milliseconds since the last successful response (for waiting until the load is served again). */
  sinceLastSuccess(): number {
    return monotonicMs() - this.lastSuccess;
  }

  private async loop(): Promise<void> {
    while (this.running) {
      const key = `load:${this.seq % KEY_SPACE}`;
      const value = `v${this.seq}`;
      this.seq++;
      const wrote = await this.request(key, value);
      if (wrote) await this.request(key, null);
      else await new Promise((r) => setTimeout(r, 1));
    }
  }

  /** SET key value (value given) or GET key; resolves true on a successful, consistent reply. */
  private async request(key: string, value: string | null): Promise<boolean> {
    const socket = await this.connected();
    if (!socket) return false;
    const args = value === null ? ['GET', key] : ['SET', key, value];
    const ok = await new Promise<boolean>((resolve) => {
      this.pending = { key, value, resolve };
      socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
    });
    if (ok) this.success();
    return ok;
  }

  private success(): void {
    const now = monotonicMs();
    this.result.clientGapMs = Math.max(this.result.clientGapMs, now - this.lastSuccess);
    this.lastSuccess = now;
    this.result.ops++;
    const bucket = Math.floor((now - this.startedAt) / 100);
    while (this.result.opsPer100ms.length <= bucket) this.result.opsPer100ms.push(0);
    this.result.opsPer100ms[bucket]!++;
  }

  private async connected(): Promise<net.Socket | null> {
    if (this.socket) return this.socket;
    const target = this.endpoints[this.endpoint % this.endpoints.length]!;
    const socket = await new Promise<net.Socket | null>((resolve) => {
      const s = net.connect({ host: target.host, port: target.port, noDelay: true });
      s.once('connect', () => resolve(s));
      s.once('error', () => resolve(null));
    });
    if (!socket) {
      this.result.errors++;
      this.endpoint++;
      return null;
    }
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', () => {});
    socket.on('close', () => this.onClose(socket));
    this.socket = socket;
    return socket;
  }

  private onClose(socket: net.Socket): void {
    if (this.socket !== socket) return;
    this.socket = null;
    this.buffer = '';
    this.endpoint++;
    this.result.reconnects++;
    const pending = this.pending;
    this.pending = null;
    if (pending) {
      if (pending.value !== null) this.ambiguous.set(pending.key, pending.value);
      this.result.errors++;
      pending.resolve(false);
    }
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    const pending = this.pending;
    if (!pending) return;
    const reply = parseReply(this.buffer);
    if (!reply) return;
    this.buffer = this.buffer.slice(reply.length);
    this.pending = null;
    if (pending.value !== null) {
      const ok = reply.value === 'OK';
      if (ok) {
        this.acked.set(pending.key, pending.value);
        this.ambiguous.delete(pending.key);
      }
      pending.resolve(ok);
    } else {
      // A read must return the acknowledged value (or the one whose acknowledgement was lost).
      const expected = this.acked.get(pending.key);
      const consistent = reply.value === expected || reply.value === this.ambiguous.get(pending.key);
      if (!consistent) this.result.errors++;
      pending.resolve(consistent);
    }
  }
}

/** Parses one simple-string, error, integer or bulk reply; null if incomplete. */
function parseReply(buffer: string): { value: string | null; length: number } | null {
  const end = buffer.indexOf('\r\n');
  if (end === -1) return null;
  const kind = buffer[0];
  const line = buffer.slice(1, end);
  if (kind === '$') {
    const size = Number(line);
    if (size < 0) return { value: null, length: end + 2 };
    if (buffer.length < end + 2 + size + 2) return null;
    return { value: buffer.slice(end + 2, end + 2 + size), length: end + 2 + size + 2 };
  }
  return { value: kind === '-' ? `ERR:${line}` : line, length: end + 2 };
}

/**
 * Reads back every key the load wrote and counts those whose value is neither the acknowledged one
 * nor the one whose acknowledgement was lost: an acknowledged write that did not survive.
 */
export async function countLostWrites(
  load: KvLoad,
  endpoint: HostPort,
): Promise<{ checked: number; lost: number }> {
  const keys = [...load.acked.keys()];
  if (keys.length === 0) return { checked: 0, lost: 0 };
  const socket = net.connect({ host: endpoint.host, port: endpoint.port });
  socket.setEncoding('utf8');
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.write(keys.map((k) => `*2\r\n$3\r\nGET\r\n$${k.length}\r\n${k}\r\n`).join(''));
  let buffer = '';
  let lost = 0;
  let index = 0;
  for await (const chunk of socket as AsyncIterable<string>) {
    buffer += chunk;
    for (let reply = parseReply(buffer); reply; reply = parseReply(buffer)) {
      buffer = buffer.slice(reply.length);
      const key = keys[index++]!;
      if (reply.value !== load.acked.get(key) && reply.value !== load.ambiguous.get(key)) lost++;
    }
    if (index === keys.length) break;
  }
  socket.destroy();
  return { checked: keys.length, lost };
}

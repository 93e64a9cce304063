import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { HostPort } from '../../util/address.js';
import { monotonicMs } from '../../util/clock.js';
import { encodeCommand, parseReply, type Reply } from './resp-reply.js';

/** What a client load saw while it ran. */
export interface LoadResult {
  /** Successful operations (a request may count several: a workload's RUN batch). */
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

/** One request of a load: its arguments and how many operations a success counts. */
export interface LoadRequest {
  args: string[];
  ops: number;
}

/**
 * A Redis-protocol client load that keeps one request in flight and follows the application when it
 * moves: on a refused or closed connection it tries the next endpoint. It measures the client-observed
 * gap (the longest interval without a successful response, DESIGN.md §6) and the successful operations
 * per 100 ms. What it sends and how it checks replies is the subclass's.
 */
export abstract class FollowingLoad<R extends LoadRequest = LoadRequest> {
  private socket: net.Socket | null = null;
  private endpoint = 0;
  private running = false;
  private lastSuccess = 0;
  private startedAt = 0;
  private pending: { request: R; resolve: (ok: boolean) => void } | null = null;
  private buffer = '';
  private stopped: Promise<void> = Promise.resolve();
  protected readonly result: LoadResult = {
    ops: 0,
    errors: 0,
    reconnects: 0,
    clientGapMs: 0,
    opsPer100ms: [],
    durationMs: 0,
  };

  constructor(protected readonly endpoints: HostPort[]) {}

  /** The next request to send. */
  protected abstract next(): R;
  /** Whether a reply is a success; an inconsistent reply should also count itself where it matters. */
  protected abstract accept(request: R, reply: Reply): boolean;
  /** The connection closed with `request` unanswered: it may or may not have run. */
  protected abstract unanswered(request: R): void;

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
      if (!(await this.send(this.next()))) await sleep(1);
    }
  }

  private async send(request: R): Promise<boolean> {
    const socket = await this.connected();
    if (!socket) return false;
    const ok = await new Promise<boolean>((resolve) => {
      this.pending = { request, resolve };
      socket.write(encodeCommand(request.args));
    });
    if (ok) this.success(request.ops);
    else this.result.errors++;
    return ok;
  }

  private success(ops: number): void {
    const now = monotonicMs();
    this.result.clientGapMs = Math.max(this.result.clientGapMs, now - this.lastSuccess);
    this.lastSuccess = now;
    this.result.ops += ops;
    const bucket = Math.floor((now - this.startedAt) / 100);
    while (this.result.opsPer100ms.length <= bucket) this.result.opsPer100ms.push(0);
    this.result.opsPer100ms[bucket]! += ops;
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
    socket.setEncoding('latin1');
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
      this.unanswered(pending.request);
      pending.resolve(false);
    }
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    const pending = this.pending;
    if (!pending) return;
    const reply = parseReply(this.buffer);
    if (!reply) return;
    this.buffer = this.buffer.slice(reply.end);
    this.pending = null;
    pending.resolve(this.accept(pending.request, reply.value));
  }
}

/** Sends commands to an endpoint, pipelined, and returns their replies in order. */
export async function pipelined(endpoint: HostPort, commands: string[][]): Promise<Reply[]> {
  if (commands.length === 0) return [];
  const socket = net.connect({ host: endpoint.host, port: endpoint.port });
  socket.setEncoding('latin1');
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.write(commands.map(encodeCommand).join(''));
  let buffer = '';
  const replies: Reply[] = [];
  for await (const chunk of socket as AsyncIterable<string>) {
    buffer += chunk;
    for (let reply = parseReply(buffer); reply; reply = parseReply(buffer)) {
      buffer = buffer.slice(reply.end);
      replies.push(reply.value);
    }
    if (replies.length === commands.length) break;
  }
  socket.destroy();
  if (replies.length < commands.length)
    throw new Error(`${endpoint.host}:${endpoint.port} closed before replying`);
  return replies;
}

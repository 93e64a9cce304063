import net from 'node:net';
import type { HeapAllocator } from '../../heap/allocator.js';
import type { AppContext, AppSnapshot, EnclaveApp } from '../app.js';
import { type CommandContext, type CommandOutcome, executeCommand } from './commands.js';
import { ClientConnection, type ConnectionHost } from './connection.js';
import { fillStore } from './fill.js';
import { KvStore } from './kv-store.js';
import type { ReplyWriter } from './resp.js';

/**
 * The kv application: a Redis-protocol server whose data lives in the SecureHeap.
 * `fill(targetBytes)` is how the runtime implements `--fill SIZE`: it inserts keys `key:<n>` with
 * 1 KiB pseudo-random values until the heap's pages in use reach targetBytes (at most 92 % of the heap).
 */
export interface KvApp extends EnclaveApp {
  readonly kind: 'kv';
  fill(targetBytes: number): { keys: number; bytes: number };
  /** The port actually bound: ctx.port, or the one the system chose when ctx.port is 0. */
  readonly boundPort: number;
}

export function createKvApp(ctx: AppContext): KvApp {
  return new KvServer(ctx);
}

/** `holding`: connections are accepted and their input kept, but nothing runs (before serve, or paused). */
type Phase = 'holding' | 'serving' | 'closed';

class KvServer implements KvApp, ConnectionHost {
  readonly kind = 'kv';
  private phase: Phase = 'holding';
  private store: KvStore | null = null;
  private server: net.Server | null = null;
  private readonly connections = new Set<ClientConnection>();
  private readonly startedAtMs = Date.now();
  private totalCommands = 0;
  private totalConnections = 0;
  private readonly commandContext: CommandContext;

  constructor(private readonly ctx: AppContext) {
    const requireStore = () => this.requireStore();
    this.commandContext = {
      get store(): KvStore {
        return requireStore();
      },
      heap: ctx.heap,
      // The runtime provides the allocator only once the heap is formatted or restored.
      get allocator(): HeapAllocator {
        return ctx.allocator;
      },
      facts: () => ({
        port: this.boundPort,
        startedAtMs: this.startedAtMs,
        connectedClients: this.connections.size,
        totalConnections: this.totalConnections,
        totalCommands: this.totalCommands,
      }),
    };
  }

  get serving(): boolean {
    return this.phase === 'serving';
  }

  get boundPort(): number {
    const address = this.server?.address();
    return address && typeof address === 'object' ? address.port : this.ctx.port;
  }

  format(): void {
    this.store = KvStore.create(this.ctx.heap, this.ctx.allocator);
  }

  restore(snapshot: AppSnapshot): void {
    const { app, totalCommands } = snapshot;
    if (app !== 'kv' || typeof totalCommands !== 'number' || !Number.isSafeInteger(totalCommands)) {
      throw new Error('kv: the snapshot is not a kv snapshot');
    }
    this.store = KvStore.attach(this.ctx.heap, this.ctx.allocator);
    this.totalCommands = totalCommands;
  }

  snapshot(): AppSnapshot {
    return { app: 'kv', totalCommands: this.totalCommands };
  }

  listen(): Promise<void> {
    if (this.server) return Promise.reject(new Error('kv: already listening'));
    const { bindAddress, port } = this.ctx;
    const server = net.createServer((socket) => this.accept(socket));
    return new Promise((resolve, reject) => {
      const failed = (err: NodeJS.ErrnoException): void => {
        server.close();
        reject(listenError(err, bindAddress, port));
      };
      server.once('error', failed);
      server.listen({ host: bindAddress, port }, () => {
        server.off('error', failed);
        server.on('error', (err) => this.ctx.log('kv listener error', { err: err.message }));
        this.server = server;
        this.ctx.log('kv listening', { address: bindAddress, port: this.boundPort });
        resolve();
      });
    });
  }

  serve(): void {
    if (this.phase === 'closed') throw new Error('kv: serve() after close()');
    this.requireStore();
    this.phase = 'serving';
    // Requests that arrived while holding are answered now, before anything newer.
    for (const connection of this.connections) connection.process();
  }

  pause(): void {
    if (this.phase === 'serving') this.phase = 'holding';
  }

  async disconnect(): Promise<void> {
    for (const connection of this.connections) connection.destroy();
    this.connections.clear();
    const server = this.server;
    this.server = null;
    if (!server) return;
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  async close(): Promise<void> {
    this.phase = 'closed';
    await this.disconnect();
  }

  stats(): Record<string, number> {
    return { keys: this.store?.size ?? 0, clients: this.connections.size, commands: this.totalCommands };
  }

  fill(targetBytes: number): { keys: number; bytes: number } {
    const { keys, bytes } = fillStore(this.requireStore(), this.ctx.heap, this.ctx.allocator, targetBytes);
    return { keys, bytes };
  }

  execute(args: Buffer[], out: ReplyWriter): CommandOutcome {
    this.totalCommands++;
    try {
      return executeCommand(this.commandContext, args, out);
    } catch (err) {
      // A fault of the server, not of the request: the client gets an error, the server goes on.
      const message = err instanceof Error ? err.message : String(err);
      this.ctx.log('kv command failed', { err: message });
      out.error(`ERR internal error: ${message}`);
      return 'continue';
    }
  }

  closed(connection: ClientConnection): void {
    this.connections.delete(connection);
  }

  private accept(socket: net.Socket): void {
    if (this.phase === 'closed') {
      socket.destroy();
      return;
    }
    this.totalConnections++;
    const connection = new ClientConnection(socket, this);
    this.connections.add(connection);
  }

  private requireStore(): KvStore {
    if (!this.store) throw new Error('kv: the store is neither formatted nor restored');
    return this.store;
  }
}

function listenError(err: NodeJS.ErrnoException, host: string, port: number): Error {
  const address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  if (err.code === 'EADDRINUSE') return new Error(`port ${address} is already in use`);
  if (err.code === 'EADDRNOTAVAIL') return new Error(`address ${host} is not available on this host`);
  return new Error(`cannot listen on ${address}: ${err.message}`);
}

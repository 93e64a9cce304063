import type { HeapAllocator } from '../../heap/allocator.js';
import type { HeapRange } from '../../heap/heap-range.js';
import type { AppContext, AppSnapshot, EnclaveApp } from '../app.js';
import { RespServer } from '../resp-server.js';
import { type CommandContext, executeCommand } from './commands.js';
import { fillStore } from './fill.js';
import { KvStore } from './kv-store.js';

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

class KvServer implements KvApp {
  readonly kind = 'kv';
  private store: KvStore | null = null;
  private readonly server: RespServer;
  private readonly startedAtMs = Date.now();
  /** Commands run before this process took the application over (from the snapshot). */
  private carriedCommands = 0;
  private readonly commandContext: CommandContext;

  constructor(private readonly ctx: AppContext) {
    const requireStore = () => this.requireStore();
    this.server = new RespServer(ctx, 'kv', (args, out) => executeCommand(this.commandContext, args, out));
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
        connectedClients: this.server.connectedClients,
        totalConnections: this.server.totalConnections,
        totalCommands: this.totalCommands,
      }),
    };
  }

  get boundPort(): number {
    return this.server.boundPort;
  }

  private get totalCommands(): number {
    return this.carriedCommands + this.server.totalCommands;
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
    this.carriedCommands = totalCommands;
  }

  snapshot(): AppSnapshot {
    return { app: 'kv', totalCommands: this.totalCommands };
  }

  restoreReads(): HeapRange[] {
    return this.requireStore().attachReads();
  }

  listen(): Promise<void> {
    return this.server.listen();
  }

  serve(): void {
    this.requireStore();
    this.server.serve();
  }

  pause(): void {
    this.server.pause();
  }

  disconnect(): Promise<void> {
    return this.server.disconnect();
  }

  close(): Promise<void> {
    return this.server.close();
  }

  stats(): Record<string, number> {
    return {
      keys: this.store?.size ?? 0,
      clients: this.server.connectedClients,
      commands: this.totalCommands,
    };
  }

  fill(targetBytes: number): { keys: number; bytes: number } {
    const { keys, bytes } = fillStore(this.requireStore(), this.ctx.heap, this.ctx.allocator, targetBytes);
    return { keys, bytes };
  }

  private requireStore(): KvStore {
    if (!this.store) throw new Error('kv: the store is neither formatted nor restored');
    return this.store;
  }
}

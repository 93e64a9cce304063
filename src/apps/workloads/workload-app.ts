import { xorshift32 } from '../../util/random.js';
import type { HeapRange } from '../../heap/heap-range.js';
import type { AppContext, AppSnapshot } from '../app.js';
import type { CommandOutcome } from '../kv/commands.js';
import type { ReplyWriter } from '../kv/resp.js';
import type { MigratableApp } from '../registry.js';
import { RespServer } from '../resp-server.js';
import { ContentDigest, formatDigest } from './content-digest.js';
import type { Workload, WorkloadFactory } from './workload.js';

/** Allocator root slot of the workload's state block (each enclave runs one application). */
const STATE_ROOT_SLOT = 0;
const STATE_MAGIC = 0x574b4c44; // 'WKLD'
/** u32 words: magic, kind code, ops low, ops high, digest, random state, root low, root high. */
const STATE_BYTES = 32;
/** A RUN may ask for at most this many operations: a request must stay short (pause waits for it). */
export const MAX_OPS_PER_RUN = 1 << 20;
/** A fill takes this share of the heap at most (like kv's), leaving room for the allocator's own pages. */
const HEAP_SHARE = 0.9;
const MIN_FILL_BYTES = 64 * 1024;

/**
 * A benchmark workload served over the Redis protocol, so that the harness drives it like kv: a client
 * sends `RUN <ops> <writeShare>` and gets `[opsDone, digest]` back (opsDone counts every operation
 * the workload ever ran, on any host, so a client sees a lost batch as a step back); `VERIFY` scans the
 * data and answers `[match, running digest, scanned digest]`; `PING`, `STATS`. The operation count,
 * digest and random state live in a state block in the heap and are written after every request,
 * which is a quiescent point, so they migrate with the data.
 */
export class WorkloadApp implements MigratableApp {
  private readonly server: RespServer;
  private readonly workload: Workload;
  private readonly digest = new ContentDigest();
  private randomState = 1;
  private opsDone = 0;
  private state = 0;
  private created = false;

  constructor(
    readonly kind: string,
    private readonly kindCode: number,
    private readonly ctx: AppContext,
    factory: WorkloadFactory,
  ) {
    this.server = new RespServer(ctx, kind, (args, out) => this.execute(args, out));
    this.workload = factory({
      heap: ctx.heap,
      get allocator() {
        return ctx.allocator;
      },
      random: () => this.random(),
      digest: this.digest,
    });
  }

  /** The port actually bound: ctx.port, or the one the system chose when ctx.port is 0. */
  get boundPort(): number {
    return this.server.boundPort;
  }

  format(): void {
    const { heap, allocator } = this.ctx;
    this.state = allocator.alloc(STATE_BYTES);
    heap.writeU32(this.state, STATE_MAGIC);
    heap.writeU32(this.state + 4, this.kindCode);
    allocator.setRoot(STATE_ROOT_SLOT, this.state);
    this.saveState();
  }

  /** Generates the data; without a fill, serve() generates a minimal one. */
  fill(targetBytes: number): { keys: number; bytes: number } {
    if (this.created) throw new Error(`${this.kind}: already filled`);
    const target = Math.max(MIN_FILL_BYTES, Math.min(targetBytes, this.ctx.heap.byteLength * HEAP_SHARE));
    const { root, items, bytes } = this.workload.create(Math.floor(target));
    this.ctx.heap.writeU64(this.state + 24, root);
    this.created = true;
    this.saveState();
    return { keys: items, bytes };
  }

  restore(snapshot: AppSnapshot): void {
    if (snapshot.app !== this.kind)
      throw new Error(`${this.kind}: the snapshot is not a ${this.kind} snapshot`);
    const { heap, allocator } = this.ctx;
    const state = allocator.getRoot(STATE_ROOT_SLOT);
    if (heap.readU32(state) !== STATE_MAGIC || heap.readU32(state + 4) !== this.kindCode)
      throw new Error(`${this.kind}: the heap holds no ${this.kind} workload`);
    this.state = state;
    this.opsDone = heap.readU64(state + 8);
    this.digest.value = heap.readU32(state + 16);
    this.randomState = heap.readU32(state + 20);
    this.workload.attach(heap.readU64(state + 24));
    this.created = true;
  }

  snapshot(): AppSnapshot {
    return { app: this.kind };
  }

  restoreReads(): HeapRange[] {
    if (!this.state) throw new Error(`${this.kind}: neither formatted nor restored`);
    const state = { addr: this.state, bytes: STATE_BYTES };
    return this.created ? [state, ...this.workload.attachReads()] : [state];
  }

  listen(): Promise<void> {
    return this.server.listen();
  }

  serve(): void {
    if (!this.state) throw new Error(`${this.kind}: neither formatted nor restored`);
    if (!this.created) this.fill(0);
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
      ...(this.created ? this.workload.stats() : {}),
      opsDone: this.opsDone,
      clients: this.server.connectedClients,
      commands: this.server.totalCommands,
    };
  }

  private random(): number {
    this.randomState = xorshift32(this.randomState);
    return this.randomState;
  }

  private saveState(): void {
    const { heap } = this.ctx;
    heap.writeU64(this.state + 8, this.opsDone);
    heap.writeU32(this.state + 16, this.digest.value);
    heap.writeU32(this.state + 20, this.randomState);
  }

  private execute(args: Buffer[], out: ReplyWriter): CommandOutcome {
    const name = args[0]!.toString('latin1').toUpperCase();
    switch (name) {
      case 'PING':
        out.simple('PONG');
        break;
      case 'RUN': {
        const ops = Number(args[1]?.toString('latin1'));
        const writeShare = Number(args[2]?.toString('latin1') ?? '0');
        if (args.length > 3 || !(Number.isInteger(ops) && ops >= 1 && ops <= MAX_OPS_PER_RUN)) {
          out.error(`ERR usage: RUN <ops 1..${MAX_OPS_PER_RUN}> [writeShare 0..1]`);
          break;
        }
        if (!(writeShare >= 0 && writeShare <= 1)) {
          out.error('ERR writeShare must be a number from 0 to 1');
          break;
        }
        this.workload.run(ops, writeShare);
        this.opsDone += ops;
        this.saveState();
        out.arrayHeader(2);
        out.integer(this.opsDone);
        out.bulk(formatDigest(this.digest.value));
        break;
      }
      case 'VERIFY': {
        const scanned = this.workload.scan();
        out.arrayHeader(3);
        out.integer(scanned === this.digest.value ? 1 : 0);
        out.bulk(formatDigest(this.digest.value));
        out.bulk(formatDigest(scanned));
        break;
      }
      case 'STATS': {
        const stats = Object.entries(this.stats());
        out.arrayHeader(stats.length * 2);
        for (const [key, value] of stats) {
          out.bulk(key);
          out.integer(value);
        }
        break;
      }
      case 'QUIT':
        out.simple('OK');
        return 'close';
      default:
        out.error(
          `ERR unknown command '${name.slice(0, 64)}' (${this.kind} understands RUN, VERIFY, STATS, PING, QUIT)`,
        );
    }
    return 'continue';
  }
}

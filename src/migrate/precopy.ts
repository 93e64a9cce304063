import { PAGE_SIZE } from '../heap/constants.js';
import { PageBitmap } from '../heap/page-bitmap.js';
import type { PageSetDigest } from '../heap/page-set-digest.js';
import type { SecureHeap } from '../heap/secure-heap.js';
import { monotonicMs } from '../util/clock.js';
import type { RateLimiter } from '../wire/rate-limiter.js';
import { extentsOf } from './extents.js';
import type { MigratingApp } from './migrating-app.js';
import { type PageSink, sendExtent } from './page-frames.js';

export interface PrecopyOptions {
  /** Stop iterating once the estimated blackout copy of what is left fits this budget. */
  maxDowntimeMs: number;
  maxRounds: number;
}

export interface PrecopyResult {
  rounds: number;
  /** Bytes written per second by the application while the rounds ran (from the dirty pages found). */
  dirtyRateBps: number;
  /** Page bytes per second the rounds achieved on the wire. */
  sendRateBps: number;
  /** The pages whose latest version the destination holds (sent, not written since the round took them). */
  current: PageBitmap;
  /** Why the rounds stopped, for the log and the report. */
  stopReason: 'budget' | 'not-shrinking' | 'max-rounds';
}

/** A round whose dirty set is at least this share of the previous one is not converging. */
const SHRINK_FACTOR = 0.9;

/**
 * Pre-copy rounds (DESIGN.md §4.3): send every allocated page while the application runs, then the
 * pages it wrote meanwhile, epoch after epoch. Each epoch is cut on the application thread between two
 * requests (takeDirty), so a page written after the cut is marked for the next round and a page written
 * before it is already in memory when it is read here. The rounds stop when what is left would fit
 * the downtime budget at the measured send rate, when a round stops shrinking (the application writes
 * faster than the link carries), or after maxRounds; what is left goes in the blackout.
 */
export async function runPrecopy(
  ctx: {
    heap: SecureHeap;
    app: MigratingApp;
    allocated: PageBitmap;
    sink: PageSink;
    digest: PageSetDigest | null;
    limit: RateLimiter;
    onRound: (round: number, pagesLeft: number) => void;
    onBytes: (bytes: number) => void;
  },
  options: PrecopyOptions,
): Promise<PrecopyResult> {
  const { heap, app } = ctx;
  await app.takeDirty();
  const current = PageBitmap.create(heap.pageCount);
  let round = ctx.allocated.copy();
  let rounds = 0;
  let sentBytes = 0;
  let sendMs = 0;
  let dirtyBytes = 0;
  const startedAt = monotonicMs();
  let stopReason: PrecopyResult['stopReason'] = 'max-rounds';
  while (rounds < options.maxRounds) {
    rounds++;
    ctx.onRound(rounds, round.count());
    const roundStart = monotonicMs();
    for (const { first, count } of extentsOf(round, heap)) {
      await ctx.limit.take(count * PAGE_SIZE);
      const bytes = await sendExtent(ctx.sink, heap, first, count, rounds, ctx.digest);
      sentBytes += bytes;
      ctx.onBytes(bytes);
    }
    sendMs += monotonicMs() - roundStart;
    current.or(round);
    const dirty = new PageBitmap(await app.takeDirty(), heap.pageCount);
    current.andNot(dirty);
    dirtyBytes += dirty.count() * PAGE_SIZE;
    const next = dirty;
    next.and(ctx.allocated);
    const rate = sentBytes / Math.max(sendMs / 1000, 1e-6);
    const estimateMs = ((next.count() * PAGE_SIZE) / rate) * 1000;
    if (estimateMs <= options.maxDowntimeMs) {
      stopReason = 'budget';
      break;
    }
    if (next.count() >= round.count() * SHRINK_FACTOR) {
      stopReason = 'not-shrinking';
      break;
    }
    round = next;
  }
  const elapsedS = Math.max((monotonicMs() - startedAt) / 1000, 1e-6);
  return {
    rounds,
    dirtyRateBps: dirtyBytes / elapsedS,
    sendRateBps: sentBytes / Math.max(sendMs / 1000, 1e-6),
    current,
    stopReason,
  };
}

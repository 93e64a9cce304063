import { setTimeout as delay } from 'node:timers/promises';
import { monotonicMs } from '../util/clock.js';

export interface RateLimiterOptions {
  /**
   * Bytes that may go out at once after an idle spell (the bucket's size). It also absorbs timer
   * lateness: time a sleep overran is credited back up to this much, so keep it well above
   * bytesPerSecond x 1 ms. Default: DEFAULT_BURST_SECONDS of traffic.
   */
  burstBytes?: number;
  /** Milliseconds on a monotonic clock. */
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

/**
 * 50 ms: short enough that the link sees the limit rather than bursts, and 50 times Node's ~1 ms
 * timer granularity, so the lateness of a timer is credited in full.
 */
export const DEFAULT_BURST_SECONDS = 0.05;

/**
 * A token bucket for the bulk channel: the background sender (pre-copy rounds, the post-copy push)
 * awaits take(n) before writing n bytes. Senders on the urgent channel never call it. That is how a
 * bandwidth limit cannot starve demand fetches: a fault waits neither for tokens nor behind pages
 * that do, and whatever capacity the limit holds back from the bulk channel stays free for them.
 *
 * Accounting is done on the clock, not on the sleeps: each take reserves its bytes against the
 * bucket at the current instant and computes when the deficit is repaid; the sleep only waits for
 * that instant (again, if it woke early). A sleep that overruns is credited to the next take as
 * refill, so timer granularity does not make the long-run rate drift below the limit, and the bytes
 * released by any instant never exceed burst + rate x elapsed.
 *
 * Takes are served in call order. A take larger than the burst is allowed; it waits until the bucket
 * has refilled enough to cover it.
 */
export class RateLimiter {
  /** The null object for "no limit", so a sender takes unconditionally. */
  static readonly unlimited = new RateLimiter(Infinity);

  readonly burstBytes: number;
  private readonly bytesPerMs: number;
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  /** May go negative: bytes reserved ahead of the refill, which later takes wait behind. */
  private tokens: number;
  private updatedAt: number;
  /** Settles when the latest take has resolved (never rejects), so the next one goes after it. */
  private lastTurn: Promise<unknown> = Promise.resolve();

  constructor(
    readonly bytesPerSecond: number,
    options: RateLimiterOptions = {},
  ) {
    if (!(bytesPerSecond > 0)) throw new RangeError(`rate limit must be positive, got ${bytesPerSecond}`);
    this.burstBytes = options.burstBytes ?? bytesPerSecond * DEFAULT_BURST_SECONDS;
    if (!(this.burstBytes > 0)) throw new RangeError(`burst must be positive, got ${this.burstBytes}`);
    this.bytesPerMs = bytesPerSecond / 1000;
    this.now = options.now ?? monotonicMs;
    this.sleep = options.sleep ?? ((ms) => delay(ms));
    this.tokens = this.burstBytes;
    this.updatedAt = this.now();
  }

  /** Resolves when `bytes` may be sent. */
  take(bytes: number): Promise<void> {
    if (!(bytes >= 0 && Number.isFinite(bytes))) {
      return Promise.reject(new RangeError(`cannot take ${bytes} bytes`));
    }
    if (this.bytesPerSecond === Infinity) return Promise.resolve();
    const now = this.now();
    this.tokens = Math.min(this.burstBytes, this.tokens + (now - this.updatedAt) * this.bytesPerMs);
    this.updatedAt = now;
    this.tokens -= bytes;
    const readyAt = now + Math.max(0, -this.tokens) / this.bytesPerMs;
    const turn = this.lastTurn.then(() => this.waitUntil(readyAt));
    this.lastTurn = turn.catch(() => undefined);
    return turn;
  }

  private async waitUntil(readyAt: number): Promise<void> {
    for (let left = readyAt - this.now(); left > 0; left = readyAt - this.now()) await this.sleep(left);
  }
}

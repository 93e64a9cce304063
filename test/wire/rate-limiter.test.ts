import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { monotonicMs } from '../../src/util/clock.js';
import { formatRate } from '../../src/util/rate.js';
import { DEFAULT_BURST_SECONDS, RateLimiter } from '../../src/wire/rate-limiter.js';

interface Timer {
  at: number;
  resolve: () => void;
}

/**
 * Virtual time. Like Node's timers, a sleep never fires early, fires on a whole millisecond, and
 * may fire `lateMs` after that. Timers due at the same instant fire newest first: Node keeps one list
 * per duration, so two sleeps ending together can fire in either order, and this is the harsher one.
 */
class FakeClock {
  time = 0;
  sleeps = 0;
  private timers: Timer[] = [];

  constructor(private readonly lateMs = 0) {}

  readonly now = (): number => this.time;

  readonly sleep = (ms: number): Promise<void> => {
    this.sleeps++;
    return new Promise((resolve) => {
      this.timers.push({ at: Math.ceil(this.time + ms) + this.lateMs, resolve });
    });
  };

  limiter(bytesPerSecond: number, burstBytes?: number): RateLimiter {
    return new RateLimiter(bytesPerSecond, { burstBytes, now: this.now, sleep: this.sleep });
  }

  /** Fires timers, earliest first, until `work` settles; fails if it waits on nothing. */
  async run<T>(work: Promise<T>): Promise<T> {
    let settled = false;
    work.then(
      () => (settled = true),
      () => (settled = true),
    );
    for (;;) {
      await new Promise((resolve) => setImmediate(resolve));
      if (settled) return work;
      const due = Math.min(...this.timers.map((t) => t.at));
      const index = this.timers.findLastIndex((t) => t.at === due);
      const [timer] = this.timers.splice(index, 1);
      assert.ok(timer, 'deadlock: the work waits but no timer is pending');
      this.time = timer.at;
      timer.resolve();
    }
  }
}

/**
 * A bulk sender: takes `chunk` bytes at a time until `durationMs` of virtual time have passed, and
 * checks after every take that no more than burst + rate x elapsed has been released.
 */
async function sendFor(clock: FakeClock, limiter: RateLimiter, chunk: number, durationMs: number) {
  let sent = 0;
  await clock.run(
    (async () => {
      while (clock.time < durationMs) {
        await limiter.take(chunk);
        sent += chunk;
        const allowed = limiter.burstBytes + (limiter.bytesPerSecond * clock.time) / 1000;
        assert.ok(sent <= allowed * (1 + 1e-9), `${sent} bytes released by ${clock.time} ms`);
      }
    })(),
  );
  return { sent, rate: (sent * 1000) / clock.time };
}

describe('RateLimiter', () => {
  test('the long-run rate is the configured rate within 1 %, also when every sleep fires late', async () => {
    for (const lateMs of [0, 1, 1.7]) {
      const clock = new FakeClock(lateMs);
      const limiter = clock.limiter(10e6);
      // 64 KiB at 10 MB/s is 6.6 ms a take: crediting no lateness would lose up to a fifth of the rate.
      const { rate } = await sendFor(clock, limiter, 64 * 1024, 20_000);
      assert.ok(Math.abs(rate - 10e6) <= 10e6 * 0.01, `late ${lateMs} ms: ${formatRate(rate)}`);
    }
  });

  test('the long-run rate holds for any rate, chunk size and timer lateness', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.double({ min: 1e3, max: 1.25e11, noNaN: true }),
        fc.double({ min: 0.002, max: 0.05, noNaN: true }),
        fc.double({ min: 0, max: 3, noNaN: true }),
        async (bytesPerSecond, chunkSeconds, lateMs) => {
          const clock = new FakeClock(lateMs);
          const limiter = clock.limiter(bytesPerSecond);
          const chunk = Math.max(1, Math.round(bytesPerSecond * chunkSeconds));
          const { rate } = await sendFor(clock, limiter, chunk, 10_000);
          assert.ok(Math.abs(rate - bytesPerSecond) <= bytesPerSecond * 0.01, formatRate(rate));
        },
      ),
      { numRuns: 20 },
    );
  });

  test('the default burst is DEFAULT_BURST_SECONDS of traffic', () => {
    assert.equal(new RateLimiter(1e6).burstBytes, 1e6 * DEFAULT_BURST_SECONDS);
  });

  test('a full bucket releases the burst at once, and no more however long it sat idle', async () => {
    const clock = new FakeClock();
    const limiter = clock.limiter(1000, 5000);
    await clock.run(Promise.all([limiter.take(2000), limiter.take(3000)]));
    assert.equal(clock.now(), 0);
    await clock.run(limiter.take(1000));
    assert.equal(clock.now(), 1000);

    clock.time += 60_000;
    await clock.run(limiter.take(5000));
    assert.equal(clock.now(), 61_000);
    await clock.run(limiter.take(1));
    assert.equal(clock.now(), 61_001);
  });

  test('a take far larger than the burst waits for its deficit, and the next one waits behind it', async () => {
    const clock = new FakeClock();
    const limiter = clock.limiter(1000, 100);
    await clock.run(limiter.take(10_100));
    assert.equal(clock.now(), 10_000);
    await clock.run(limiter.take(500));
    assert.equal(clock.now(), 10_500);
  });

  test('concurrent takes are served in call order, each when its bytes are paid for', async () => {
    const clock = new FakeClock();
    const limiter = clock.limiter(1000, 1000);
    const served: [number, number][] = [];
    const takes = [1000, 500, 0, 2000, 1].map((bytes, i) =>
      limiter.take(bytes).then(() => served.push([i, clock.time])),
    );
    await clock.run(Promise.all(takes));
    assert.deepEqual(served, [
      [0, 0],
      [1, 500],
      [2, 500],
      [3, 2500],
      [4, 2501],
    ]);
  });

  test('the unlimited limiter never waits', async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter(Infinity, { now: clock.now, sleep: clock.sleep });
    await clock.run(Promise.all([limiter.take(1e15), limiter.take(1), RateLimiter.unlimited.take(1e15)]));
    assert.equal(clock.now(), 0);
    assert.equal(clock.sleeps, 0);
    assert.equal(formatRate(RateLimiter.unlimited.bytesPerSecond), 'unlimited');
  });

  test('refuses a rate, burst or take it cannot honour', async () => {
    for (const rate of [0, -1, NaN]) assert.throws(() => new RateLimiter(rate), RangeError, String(rate));
    assert.throws(() => new RateLimiter(1000, { burstBytes: 0 }), RangeError);
    const limiter = new RateLimiter(1000);
    for (const bytes of [-1, NaN, Infinity]) await assert.rejects(limiter.take(bytes), RangeError);
  });

  test('on the real clock, 5 MB at 50 MB/s takes at least 90 ms', async () => {
    const limiter = new RateLimiter(50e6, { burstBytes: 64 * 1024 });
    const start = monotonicMs();
    for (let left = 5e6; left > 0; left -= 64 * 1024) await limiter.take(Math.min(left, 64 * 1024));
    const elapsed = monotonicMs() - start;
    assert.ok(elapsed >= 90 && elapsed < 5000, `${elapsed} ms`);
  });
});

import { setTimeout as sleep } from 'node:timers/promises';
import type { SessionKeys } from '../crypto/handshake.js';
import { monotonicMs } from '../util/clock.js';
import { errorMessage } from '../util/errors.js';
import { ChannelClosedError } from '../wire/framed-socket.js';
import { type Channel, type DataTarget, openChannel } from './link.js';

/** The link could not be brought back within the reconnection budget. */
export class LinkLostError extends Error {
  override name = 'LinkLostError';
}

/** No answer within the wait: the link is treated as broken and dialled again. */
export class LinkStalledError extends ChannelClosedError {
  override name = 'LinkStalledError';
}

/** Failures that a new connection can cure; anything else (a forged frame, a protocol error) cannot. */
export function isLinkFailure(err: unknown): boolean {
  return err instanceof ChannelClosedError;
}

const FIRST_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 5000;

/**
 * The source's connections after START. When one breaks, both are dialled again as the next
 * generation, with exponential backoff, until the budget runs out: the network may be down for a
 * while, and the application waits at the destination only for pages it touches meanwhile.
 */
export class SourceLink {
  reconnects = 0;
  private stopped = false;

  constructor(
    private readonly target: DataTarget,
    private readonly keys: SessionKeys,
    public bulk: Channel,
    public urgent: Channel | undefined,
    private readonly budgetMs: number,
    private readonly log: (message: string) => void,
  ) {}

  async redial(): Promise<void> {
    this.close();
    const generation = Math.max(this.bulk.generation, this.urgent?.generation ?? 0) + 1;
    const deadline = monotonicMs() + this.budgetMs;
    let backoff = FIRST_BACKOFF_MS;
    for (let attempt = 1; ; attempt++) {
      if (this.stopped) throw new LinkLostError('the migration ended while the link was down');
      let bulk: Channel | undefined;
      try {
        bulk = await openChannel(this.target, this.keys, 'bulk', generation + attempt - 1);
        const urgent = this.urgent
          ? await openChannel(this.target, this.keys, 'urgent', generation + attempt - 1)
          : undefined;
        this.bulk = bulk;
        this.urgent = urgent;
        this.reconnects++;
        return;
      } catch (err) {
        bulk?.channel.destroy();
        if (monotonicMs() + backoff > deadline) {
          throw new LinkLostError(
            `the link did not come back within ${this.budgetMs} ms: ${errorMessage(err)}`,
          );
        }
        this.log(`reconnect attempt ${attempt} failed (${errorMessage(err)}); retrying in ${backoff} ms`);
        await sleep(backoff);
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      }
    }
  }

  close(): void {
    this.bulk.channel.destroy();
    this.urgent?.channel.destroy();
  }

  /** The migration is over (or was released): no more dialling, every connection closed. */
  stop(): void {
    this.stopped = true;
    this.close();
  }
}

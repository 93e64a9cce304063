import cliProgress from 'cli-progress';
import type { MigrateEvent } from '../host/api-schema.js';

/** Phases in which pages move, so the rate means something. */
const MOVING = new Set(['precopy', 'transfer', 'postcopy']);

/**
 * Live progress of a migration on a terminal: phase, bytes, rate and ETA, the pre-copy round, and in
 * post-copy the pages restored so far and the demand faults served. Silent when stderr is not a
 * terminal or when --json asked for machine output only.
 */
export class MigrationProgressView {
  private readonly bar: cliProgress.SingleBar | null;
  private started = false;
  private transferStartMs: number | undefined;

  constructor(private readonly enabled: boolean) {
    this.bar =
      enabled && process.stderr.isTTY
        ? new cliProgress.SingleBar(
            {
              stream: process.stderr,
              format:
                '{phase} |{bar}| {percentage}% {doneMiB}/{totalMiB} MiB  {rate} MB/s  ETA {eta_formatted}  {detail}',
              hideCursor: true,
              etaBuffer: 20,
            },
            cliProgress.Presets.shades_classic,
          )
        : null;
  }

  update(event: MigrateEvent): void {
    if (this.enabled && event.type === 'prepared' && event.tracker.kind !== null) {
      process.stderr.write(`destination tracker: ${event.tracker.kind} (${event.tracker.reason})\n`);
    }
    if (!this.bar || event.type !== 'progress') return;
    const mib = (b: number) => (b / 2 ** 20).toFixed(0);
    // The rate counts from the first progress of the transfer, not from the request (PREPARE).
    this.transferStartMs ??= MOVING.has(event.phase) ? event.elapsedMs : undefined;
    const transferMs = this.transferStartMs === undefined ? 0 : event.elapsedMs - this.transferStartMs;
    const payload = {
      phase: event.phase.padEnd(9),
      doneMiB: mib(event.bytesDone),
      totalMiB: mib(event.bytesTotal),
      rate: transferMs > 0 ? (event.bytesDone / 1e3 / transferMs).toFixed(0) : '-',
      detail:
        event.round !== undefined
          ? `round ${event.round}`
          : event.faultsServed !== undefined
            ? `${event.faultsServed} faults served`
            : '',
    };
    if (!this.started) {
      this.bar.start(Math.max(event.bytesTotal, 1), event.bytesDone, payload);
      this.started = true;
    } else {
      this.bar.setTotal(Math.max(event.bytesTotal, 1));
      this.bar.update(event.bytesDone, payload);
    }
  }

  stop(): void {
    if (this.started) this.bar?.stop();
  }
}

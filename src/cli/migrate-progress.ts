import cliProgress from 'cli-progress';
import type { MigrateEvent } from '../host/api-schema.js';

/**
 * Live progress of a migration on a terminal: phase, bytes, rate and ETA. Silent when stderr is not a
 * terminal or when --json asked for machine output only.
 */
export class MigrationProgressView {
  private readonly bar: cliProgress.SingleBar | null;
  private started = false;
  private transferStartMs: number | undefined;

  constructor(enabled: boolean) {
    this.bar =
      enabled && process.stderr.isTTY
        ? new cliProgress.SingleBar(
            {
              stream: process.stderr,
              format:
                '{phase} |{bar}| {percentage}% {doneMiB}/{totalMiB} MiB  {rate} MB/s  ETA {eta_formatted}',
              hideCursor: true,
              etaBuffer: 20,
            },
            cliProgress.Presets.shades_classic,
          )
        : null;
  }

  update(event: MigrateEvent): void {
    if (!this.bar || event.type !== 'progress') return;
    const mib = (b: number) => (b / 2 ** 20).toFixed(0);
    // The rate counts from the first progress of the transfer, not from the request (PREPARE).
    this.transferStartMs ??= event.phase === 'transfer' ? event.elapsedMs : undefined;
    const transferMs = this.transferStartMs === undefined ? 0 : event.elapsedMs - this.transferStartMs;
    const payload = {
      phase: event.phase.padEnd(9),
      doneMiB: mib(event.bytesDone),
      totalMiB: mib(event.bytesTotal),
      rate: transferMs > 0 ? (event.bytesDone / 1e3 / transferMs).toFixed(0) : '-',
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

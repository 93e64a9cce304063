import type { MigrationProgress } from '../enclave/ipc.js';
import { monotonicMs } from '../util/clock.js';

/** Rate-limits progress events to one per interval (the CLI redraws at that pace anyway). */
export class ProgressTicker {
  private last = 0;

  constructor(
    private readonly emit: (p: MigrationProgress) => void,
    private readonly startedAtMs: number,
    private readonly intervalMs = 100,
  ) {}

  report(
    phase: MigrationProgress['phase'],
    bytesDone: number,
    bytesTotal: number,
    force = false,
    extra: Pick<MigrationProgress, 'round' | 'faultsServed'> = {},
  ): void {
    const now = monotonicMs();
    if (!force && now - this.last < this.intervalMs) return;
    this.last = now;
    this.emit({ phase, bytesDone, bytesTotal, elapsedMs: now - this.startedAtMs, ...extra });
  }
}

/**
 * Milliseconds on CLOCK_MONOTONIC. process.hrtime reads the system-wide monotonic clock, so two
 * processes on one machine read the same timeline: downtime is the destination's resume instant minus
 * the source's stop instant, each read in its own process (DESIGN.md §6).
 */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

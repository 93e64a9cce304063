/**
 * A full garbage collection now, where the runtime exposes one (enclave processes run with
 * --expose-gc; elsewhere, e.g. in tests, this does nothing). A migration calls it just before its
 * blackout: V8 collects when the memory held by ArrayBuffers has grown by 64 MiB since its last full
 * collection, and a profiled 8 GiB blackout met such a collection on one side or the other, 2-9 ms of
 * pause plus marking threads taking the CPU the other side needed. Collected before, the blackout's
 * few allocations stay far below the next threshold.
 */
export function collectGarbage(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

import { SecureHeap } from '../heap/secure-heap.js';

/**
 * Counts the present tests a workload makes (requirePage for the scalar accessors, requirePages for
 * byte ranges) by wrapping both on the SecureHeap prototype of this process. Only for a process that
 * measures nothing else: the wrappers change what the JIT sees.
 */
export function countPresentChecks(): { single: () => number; ranges: () => number } {
  const proto = SecureHeap.prototype as unknown as Record<string, (...args: unknown[]) => unknown>;
  let single = 0;
  let ranges = 0;
  const requirePage = proto.requirePage!;
  const requirePages = proto.requirePages!;
  proto.requirePage = function (this: unknown, ...args: unknown[]) {
    single++;
    return requirePage.apply(this, args);
  };
  proto.requirePages = function (this: unknown, ...args: unknown[]) {
    ranges++;
    return requirePages.apply(this, args);
  };
  return { single: () => single, ranges: () => ranges };
}

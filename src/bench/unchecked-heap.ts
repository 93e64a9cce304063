import { type SharedHeap, SecureHeap } from '../heap/secure-heap.js';

/**
 * Benchmark only: a SecureHeap whose present-bit test is gone, i.e. the heap as it would be without
 * the Access Tracker. Everything else is the real SecureHeap code: the same accessors, bounds and
 * alignment checks, dirty marking and segment arithmetic, on the same memory layout. Only the two
 * private methods that hold the tracker's hit path (`requirePage`, `requirePages`: the load, mask and
 * branch on the present bitmap) are overridden with empty ones, which the JIT inlines to nothing.
 *
 * SecureHeap's constructor is private and the overridden methods are private, so TypeScript does not
 * allow the subclass as such; at run time it is an ordinary subclass. Never use it outside a
 * benchmark: a page that has not arrived would be read as zeros instead of being fetched.
 */
const SecureHeapConstructor = SecureHeap as unknown as new (shared: SharedHeap) => object;

class HeapWithoutPresentCheck extends SecureHeapConstructor {
  requirePage(): void {}
  requirePages(): void {}
}

/** A zeroed heap of `bytes`, every page present, whose accessors skip the present test. */
export function heapWithoutPresentCheck(bytes: number): SecureHeap {
  return new HeapWithoutPresentCheck(SecureHeap.create(bytes).share()) as unknown as SecureHeap;
}

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

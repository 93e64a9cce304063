/**
 * Reused output buffers for sealed page frames. A fresh 1 MiB Buffer per frame costs more than the
 * encryption itself: its pages are faulted in (and zeroed by the kernel) on first write, and the
 * garbage collector has to find it again (issue 6, docs/benchmarks.md). Buffers are kept by exact
 * length: a migration's page frames come in a few lengths (its extents, its push and fetch sizes).
 * A buffer must be given back only once nothing can read it any more (its socket write completed);
 * one never given back is simply collected.
 */
export class BufferPool {
  private readonly free = new Map<number, Buffer[]>();
  private readonly lent = new WeakSet<Buffer>();
  private freeBytes = 0;

  /**
   * @param minBytes shorter buffers are plainly allocated (Node's own small-buffer pool serves them)
   * @param maxFreeBytes the most memory kept for reuse
   */
  constructor(
    private readonly minBytes = 64 * 1024,
    private readonly maxFreeBytes = 32 * 2 ** 20,
  ) {}

  /** A buffer of exactly `length` bytes, contents undefined. */
  take(length: number): Buffer {
    if (length < this.minBytes) return Buffer.allocUnsafe(length);
    const buffer = this.free.get(length)?.pop();
    if (buffer) this.freeBytes -= length;
    const out = buffer ?? Buffer.allocUnsafeSlow(length);
    this.lent.add(out);
    return out;
  }

  /** Takes back a buffer from take() for reuse; anything else is ignored. */
  give(buffer: Uint8Array): void {
    if (!(buffer instanceof Buffer) || !this.lent.delete(buffer)) return;
    if (this.freeBytes + buffer.length > this.maxFreeBytes) return;
    let list = this.free.get(buffer.length);
    if (!list) this.free.set(buffer.length, (list = []));
    list.push(buffer);
    this.freeBytes += buffer.length;
  }
}

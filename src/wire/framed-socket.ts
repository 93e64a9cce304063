import type { Duplex } from 'node:stream';
import { type Frame, FrameError, FrameReader, HEADER_BYTES } from './frame.js';

export class ChannelClosedError extends Error {
  override name = 'ChannelClosedError';
}

export interface FramedSocketOptions {
  /** Received bytes (complete frames not yet taken plus a partial frame) above which reading pauses. */
  maxQueuedBytes?: number;
  /**
   * A send that waits this long for the socket to drain destroys the channel: a link that went dark
   * does not reset a TCP connection, it only stops it, and the sender must find out to dial again.
   */
  sendStallMs?: number;
}

const DEFAULT_MAX_QUEUED_BYTES = 8 * 2 ** 20;
/**
 * send() resolves while less than this is waiting in the socket's user-space buffer: enough to keep
 * the kernel busy between two awaits, small enough to bound the writer's memory.
 */
const SEND_READY_BYTES = 4 * 2 ** 20;

interface Waiter {
  resolve: (frame: Frame) => void;
  reject: (err: Error) => void;
}

/**
 * Frames over a connected stream, with back-pressure both ways: send() waits while the socket holds
 * too much unsent data, and reading pauses while too many received bytes wait for next().
 */
export class FramedSocket {
  private readonly reader = new FrameReader();
  private readonly frames: Frame[] = [];
  private queuedFrameBytes = 0;
  private readonly waiters: Waiter[] = [];
  private closed: Error | null = null;
  private readonly maxQueuedBytes: number;
  private readonly sendReadyBytes: number;
  private readonly sendStallMs: number | undefined;
  private received = 0;
  private sent = 0;

  constructor(
    private readonly socket: Duplex,
    opts: FramedSocketOptions = {},
  ) {
    this.maxQueuedBytes = opts.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
    this.sendStallMs = opts.sendStallMs;
    // 'drain' only fires after a write() returned false, which needs the buffer at the high-water mark.
    this.sendReadyBytes = Math.max(SEND_READY_BYTES, socket.writableHighWaterMark);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.close(new ChannelClosedError(this.endMessage())));
    socket.on('error', (err) =>
      this.close(new ChannelClosedError(`channel failed: ${err.message}`, { cause: err })),
    );
    socket.on('close', () => this.close(new ChannelClosedError('channel closed')));
    // A socket handed over by someone else may have been paused; a 'data' listener alone would not resume it.
    socket.resume();
  }

  get bytesRead(): number {
    return this.received;
  }

  get bytesWritten(): number {
    return this.sent;
  }

  get remoteAddress(): string | undefined {
    const address: unknown = (this.socket as { remoteAddress?: unknown }).remoteAddress;
    return typeof address === 'string' ? address : undefined;
  }

  /**
   * Writes one frame's parts back to back; resolves once the socket can take more, which may be before
   * these parts are written. `written` is called once the socket is done with them (written or failed).
   */
  async send(parts: readonly Uint8Array[], written?: () => void): Promise<void> {
    this.assertWritable();
    this.socket.cork();
    parts.forEach((part, i) => {
      this.socket.write(part, i === parts.length - 1 ? written : undefined);
      this.sent += part.byteLength;
    });
    this.socket.uncork();
    while (this.socket.writableLength >= this.sendReadyBytes) {
      this.assertWritable();
      await this.drained();
    }
  }

  /** The next complete frame, in order. */
  next(signal?: AbortSignal): Promise<Frame> {
    const frame = this.frames.shift();
    if (frame) {
      this.queuedFrameBytes -= HEADER_BYTES + frame.bodyLength;
      this.updateFlow();
      return Promise.resolve(frame);
    }
    if (this.closed) return Promise.reject(this.closed);
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<Frame>((resolve, reject) => {
      const onAbort = (): void => {
        const index = this.waiters.indexOf(waiter);
        if (index >= 0) this.waiters.splice(index, 1);
        reject(signal?.reason);
      };
      const waiter: Waiter = {
        resolve: (f) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(f);
        },
        reject: (err) => {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /** Ends our direction after everything written so far was handed to the OS. */
  end(): Promise<void> {
    if (this.socket.writableFinished) return Promise.resolve();
    if (this.socket.destroyed)
      return Promise.reject(this.closedError('channel closed before its end was flushed'));
    return new Promise<void>((resolve, reject) => {
      const onFinish = (): void => {
        this.socket.off('close', onClose);
        resolve();
      };
      const onClose = (): void => {
        this.socket.off('finish', onFinish);
        reject(this.closedError('channel closed before its end was flushed'));
      };
      this.socket.once('finish', onFinish);
      this.socket.once('close', onClose);
      this.socket.end();
    });
  }

  destroy(err?: Error): void {
    this.socket.destroy(err);
    this.close(new ChannelClosedError(err ? `channel destroyed: ${err.message}` : 'channel destroyed'));
  }

  private assertWritable(): void {
    if (this.socket.destroyed || !this.socket.writable) {
      throw this.closedError('cannot send on a closed channel');
    }
  }

  private onData(chunk: Buffer): void {
    this.received += chunk.length;
    this.reader.push(chunk);
    try {
      for (let frame = this.reader.next(); frame; frame = this.reader.next()) this.deliver(frame);
    } catch (err) {
      const error = err instanceof FrameError ? err : new FrameError(String(err));
      this.socket.destroy();
      this.close(error);
      return;
    }
    this.updateFlow();
  }

  private deliver(frame: Frame): void {
    const waiter = this.waiters.shift();
    if (waiter) {
      waiter.resolve(frame);
      return;
    }
    this.frames.push(frame);
    this.queuedFrameBytes += HEADER_BYTES + frame.bodyLength;
  }

  /**
   * Pauses only while a complete frame waits to be taken: a single frame larger than the limit must
   * still be read in full, or neither side could make progress.
   */
  private updateFlow(): void {
    if (this.closed) return;
    const queued = this.queuedFrameBytes + this.reader.bufferedBytes;
    if (this.frames.length > 0 && queued > this.maxQueuedBytes) this.socket.pause();
    else if (this.socket.isPaused()) this.socket.resume();
  }

  private endMessage(): string {
    const partial = this.reader.bufferedBytes;
    return partial > 0
      ? `peer closed the channel in the middle of a frame (${partial} B pending)`
      : 'peer closed the channel';
  }

  /** Frames already queued stay readable; everything after them fails with the first close reason. */
  private close(reason: Error): void {
    if (this.closed) return;
    this.closed = reason;
    for (const waiter of this.waiters.splice(0)) waiter.reject(reason);
  }

  private closedError(context: string): ChannelClosedError {
    return new ChannelClosedError(this.closed ? `${context}: ${this.closed.message}` : context);
  }

  private drained(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const stall =
        this.sendStallMs === undefined
          ? undefined
          : setTimeout(
              () => this.destroy(new ChannelClosedError(`send stalled for ${this.sendStallMs} ms`)),
              this.sendStallMs,
            );
      const cleanup = (): void => {
        clearTimeout(stall);
        this.socket.off('drain', onDrain);
        this.socket.off('close', onClose);
      };
      const onDrain = (): void => {
        cleanup();
        resolve();
      };
      const onClose = (): void => {
        cleanup();
        reject(this.closedError('channel closed while sending'));
      };
      this.socket.once('drain', onDrain);
      this.socket.once('close', onClose);
    });
  }
}

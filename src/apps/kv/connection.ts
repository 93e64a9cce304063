import type net from 'node:net';
import type { CommandOutcome } from './commands.js';
import { ReplyWriter, RespParser, RespProtocolError } from './resp.js';

/** Redis's client-query-buffer-limit: a client that sends more without completing a request is cut off. */
export const MAX_QUERY_BUFFER_BYTES = 2 ** 30;
/** Replies queued but not yet taken by the kernel; past this the client's input is no longer read. */
const MAX_PENDING_OUTPUT_BYTES = 64 * 2 ** 20;
/** After QUIT or a protocol error, how long the client has to close its side before it is cut. */
const LINGER_MS = 5000;

/** What a connection needs from the server that owns it. */
export interface ConnectionHost {
  /** Requests are processed only while this is true; otherwise they are kept, unparsed. */
  readonly serving: boolean;
  execute(args: Buffer[], out: ReplyWriter): CommandOutcome;
  closed(connection: ClientConnection): void;
}

/**
 * One client socket. Input is always read and buffered; it is parsed and executed only while the
 * host serves, and all replies to what one read delivered (a pipelined batch) go out in one write.
 */
export class ClientConnection {
  private readonly parser = new RespParser();
  private state: 'open' | 'closing' = 'open';

  constructor(
    private readonly socket: net.Socket,
    private readonly host: ConnectionHost,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('drain', () => socket.resume());
    // A reset by the peer is not the server's problem; 'close' follows and cleans up.
    socket.on('error', () => {});
    socket.on('close', () => host.closed(this));
  }

  /** Executes every complete buffered request, if the host serves. */
  process(): void {
    if (this.state !== 'open' || !this.host.serving) return;
    const out = new ReplyWriter();
    try {
      for (let args = this.parser.next(); args; args = this.parser.next()) {
        if (this.host.execute(args, out) === 'close') {
          this.state = 'closing';
          break;
        }
      }
    } catch (err) {
      if (!(err instanceof RespProtocolError)) throw err;
      // Like Redis: the replies so far, the error, then the connection closes.
      out.error(`ERR ${err.message}`);
      this.state = 'closing';
    }
    if (!out.isEmpty) this.socket.write(out.take());
    if (this.state === 'closing') this.finish();
    else if (this.socket.writableLength > MAX_PENDING_OUTPUT_BYTES) this.socket.pause();
  }

  destroy(): void {
    this.socket.destroy();
  }

  private receive(chunk: Buffer): void {
    // After QUIT or a protocol error the rest of the input is read and dropped.
    if (this.state !== 'open') return;
    this.parser.feed(chunk);
    if (this.parser.bufferedBytes > MAX_QUERY_BUFFER_BYTES) {
      this.socket.destroy();
      return;
    }
    this.process();
  }

  private finish(): void {
    this.socket.end();
    setTimeout(() => this.socket.destroy(), LINGER_MS).unref();
  }
}

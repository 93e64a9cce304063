import net from 'node:net';

/**
 * A reply as the tests see it: simple strings as string, bulks as Buffer, errors as RespErrorReply,
 * integers as number (bigint beyond 2^53).
 */
export type Reply = string | number | bigint | Buffer | null | RespErrorReply | Reply[];

export class RespErrorReply {
  constructor(readonly message: string) {}
}

/**
 * A deliberately independent RESP2 client for the kv tests: sends raw bytes or encoded commands,
 * parses replies (bulks stay binary), and records how many chunks the socket delivered.
 */
export class RespTestClient {
  private buffer = Buffer.alloc(0);
  private readonly replies: Reply[] = [];
  private readonly waiters: (() => void)[] = [];
  private ended = false;
  readonly closed: Promise<void>;
  chunksReceived = 0;

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.chunksReceived++;
      this.buffer = Buffer.concat([this.buffer, chunk]);
      for (let parsed = parseReply(this.buffer, 0); parsed; parsed = parseReply(this.buffer, 0)) {
        this.buffer = this.buffer.subarray(parsed.end);
        this.replies.push(parsed.value);
      }
      this.wake();
    });
    this.closed = new Promise((resolve) => {
      socket.on('close', () => {
        this.ended = true;
        this.wake();
        resolve();
      });
    });
    socket.on('error', () => {});
  }

  static connect(port: number, host = '127.0.0.1'): Promise<RespTestClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port }, () => {
        socket.off('error', reject);
        resolve(new RespTestClient(socket));
      });
      socket.once('error', reject);
    });
  }

  send(raw: Buffer | string): void {
    this.socket.write(raw);
  }

  /** Sends one command and waits for its reply. */
  async command(...args: (string | Buffer)[]): Promise<Reply> {
    this.send(encodeCommand(args));
    const [reply] = await this.read(1);
    return reply!;
  }

  /** The next `count` replies; rejects if the server closes first or nothing comes within `timeoutMs`. */
  async read(count: number, timeoutMs = 5000): Promise<Reply[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.replies.length < count) {
      if (this.ended) throw new Error(`connection closed after ${this.replies.length} of ${count} replies`);
      const remaining = deadline - Date.now();
      if (remaining <= 0)
        throw new Error(`timed out waiting for ${count} replies (got ${this.replies.length})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.replies.splice(0, count);
  }

  /** Replies received and not yet read. */
  get pending(): number {
    return this.replies.length;
  }

  close(): void {
    this.socket.destroy();
  }

  private wake(): void {
    for (const waiter of this.waiters.splice(0)) waiter();
  }
}

export function encodeCommand(args: readonly (string | Buffer)[]): Buffer {
  const parts = args.map((a) => (typeof a === 'string' ? Buffer.from(a) : a));
  return Buffer.concat([
    Buffer.from(`*${parts.length}\r\n`),
    ...parts.flatMap((p) => [Buffer.from(`$${p.length}\r\n`), p, Buffer.from('\r\n')]),
  ]);
}

function parseReply(buf: Buffer, start: number): { value: Reply; end: number } | null {
  const eol = buf.indexOf('\r\n', start);
  if (eol === -1) return null;
  const line = buf.toString('utf8', start + 1, eol);
  switch (String.fromCharCode(buf[start]!)) {
    case '+':
      return { value: line, end: eol + 2 };
    case '-':
      return { value: new RespErrorReply(line), end: eol + 2 };
    case ':':
      return { value: Number.isSafeInteger(Number(line)) ? Number(line) : BigInt(line), end: eol + 2 };
    case '$': {
      const length = Number(line);
      if (length < 0) return { value: null, end: eol + 2 };
      if (buf.length < eol + 2 + length + 2) return null;
      return { value: Buffer.from(buf.subarray(eol + 2, eol + 2 + length)), end: eol + 2 + length + 2 };
    }
    case '*': {
      const count = Number(line);
      const items: Reply[] = [];
      let position = eol + 2;
      for (let i = 0; i < count; i++) {
        const item = parseReply(buf, position);
        if (!item) return null;
        items.push(item.value);
        position = item.end;
      }
      return { value: items, end: position };
    }
    default:
      throw new Error(`bad RESP reply type byte ${buf[start]}`);
  }
}

import net from 'node:net';

/** A minimal RESP2 client for tests: one command at a time, replies as JS values. */
export type Reply = string | number | null | Error | Reply[];

export class RespClient {
  private buffer = Buffer.alloc(0);
  private waiters: ((r: Reply) => void)[] = [];

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      for (let parsed = parse(this.buffer, 0); parsed; parsed = parse(this.buffer, 0)) {
        this.buffer = this.buffer.subarray(parsed.end);
        this.waiters.shift()?.(parsed.value);
      }
    });
  }

  static connect(host: string, port: number): Promise<RespClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port }, () => resolve(new RespClient(socket)));
      socket.once('error', reject);
    });
  }

  command(...args: (string | Buffer)[]): Promise<Reply> {
    const parts = args.map((a) => (typeof a === 'string' ? Buffer.from(a) : a));
    this.socket.write(
      Buffer.concat([
        Buffer.from(`*${parts.length}\r\n`),
        ...parts.flatMap((p) => [Buffer.from(`$${p.length}\r\n`), p, Buffer.from('\r\n')]),
      ]),
    );
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  close(): void {
    this.socket.destroy();
  }
}

function parse(buf: Buffer, start: number): { value: Reply; end: number } | null {
  const eol = buf.indexOf('\r\n', start);
  if (eol === -1) return null;
  const line = buf.toString('utf8', start + 1, eol);
  switch (String.fromCharCode(buf[start]!)) {
    case '+':
      return { value: line, end: eol + 2 };
    case '-':
      return { value: new Error(line), end: eol + 2 };
    case ':':
      return { value: Number(line), end: eol + 2 };
    case '$': {
      const len = Number(line);
      if (len < 0) return { value: null, end: eol + 2 };
      if (buf.length < eol + 2 + len + 2) return null;
      return { value: buf.toString('utf8', eol + 2, eol + 2 + len), end: eol + 2 + len + 2 };
    }
    case '*': {
      const count = Number(line);
      const items: Reply[] = [];
      let pos = eol + 2;
      for (let i = 0; i < count; i++) {
        const item = parse(buf, pos);
        if (!item) return null;
        items.push(item.value);
        pos = item.end;
      }
      return { value: items, end: pos };
    }
    default:
      throw new Error(`bad RESP reply byte ${buf[start]}`);
  }
}

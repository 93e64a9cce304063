import { splitInlineArgs } from './inline-args.js';

/** Redis's proto-max-bulk-len default. */
export const MAX_BULK_LENGTH = 512 * 1024 * 1024;
/** Redis's bound on a multibulk length for clients that are not authenticated. */
export const MAX_ARRAY_LENGTH = 1024 * 1024;
/** Redis's PROTO_INLINE_MAX_SIZE: the longest inline command or length line. */
export const MAX_INLINE_LENGTH = 64 * 1024;

/** A malformed request; the message is what Redis replies (`Protocol error: ...`) before it closes. */
export class RespProtocolError extends Error {
  override name = 'RespProtocolError';
  constructor(detail: string) {
    super(`Protocol error: ${detail}`);
  }
}

const CR = 0x0d;
const LF = 0x0a;
const CRLF = Buffer.from('\r\n');
const EMPTY = Buffer.alloc(0);

/**
 * Incremental RESP2 request parser: multibulk arrays of bulk strings (what redis-cli and
 * redis-benchmark send) and inline commands. `feed` only stores input; `next` parses one command at a
 * time, so a caller can hold input unparsed (while paused) and parse it later. Arguments are views
 * into the received chunks, not copies; a bulk that spans chunks is assembled with one concat once all
 * of it has arrived.
 */
export class RespParser {
  private buffer: Buffer = EMPTY;
  private offset = 0;
  /** Chunks received but not yet joined to `buffer`, held back until parsing can make progress. */
  private parked: Buffer[] = [];
  private parkedBytes = 0;
  /** Bytes needed from `offset` before parsing can make progress. */
  private needed = 1;
  /** The command being assembled: its arguments so far and how many are still to come. */
  private args: Buffer[] = [];
  private argsRemaining = 0;
  /** Length of the bulk whose payload is awaited, or -1 while its `$<len>` line is awaited. */
  private bulkLength = -1;
  private failure: RespProtocolError | null = null;

  feed(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.parked.push(chunk);
    this.parkedBytes += chunk.length;
  }

  /** Input received and not yet returned as a command. */
  get bufferedBytes(): number {
    return this.buffer.length - this.offset + this.parkedBytes;
  }

  /** The next complete command, or null if more input is needed. Throws RespProtocolError, for good. */
  next(): Buffer[] | null {
    if (this.failure) throw this.failure;
    try {
      for (;;) {
        const command = this.parseStep();
        if (command === INCOMPLETE) {
          if (!this.absorbParked()) return null;
        } else if (command !== EMPTY_COMMAND) {
          return command;
        }
      }
    } catch (err) {
      if (err instanceof RespProtocolError) this.failure = err;
      throw err;
    }
  }

  private absorbParked(): boolean {
    const available = this.buffer.length - this.offset;
    if (this.parkedBytes === 0 || available + this.parkedBytes < this.needed) return false;
    if (available === 0 && this.parked.length === 1) this.buffer = this.parked[0]!;
    else this.buffer = Buffer.concat([this.buffer.subarray(this.offset), ...this.parked]);
    this.offset = 0;
    this.parked = [];
    this.parkedBytes = 0;
    return true;
  }

  /** Advances as far as the buffered bytes allow: a command, an empty command, or INCOMPLETE. */
  private parseStep(): Buffer[] | typeof INCOMPLETE | typeof EMPTY_COMMAND {
    if (this.argsRemaining === 0) {
      if (this.offset >= this.buffer.length) return this.awaitMore(1);
      if (this.buffer[this.offset] !== 0x2a /* '*' */) return this.parseInline();
      const count = this.parseArrayHeader();
      if (count === INCOMPLETE) return INCOMPLETE;
      // Like Redis, `*0` and `*-1` are empty requests that get no reply.
      if (count <= 0) return EMPTY_COMMAND;
      this.argsRemaining = count;
    }
    while (this.argsRemaining > 0) {
      if (this.bulkLength < 0) {
        const header = this.parseBulkHeader();
        if (header === INCOMPLETE) return header;
        this.bulkLength = header;
      }
      const end = this.offset + this.bulkLength;
      if (end + 2 > this.buffer.length) return this.awaitMore(this.bulkLength + 2);
      if (this.buffer[end] !== CR || this.buffer[end + 1] !== LF) {
        throw new RespProtocolError('expected CRLF after bulk payload');
      }
      this.args.push(this.buffer.subarray(this.offset, end));
      this.offset = end + 2;
      this.bulkLength = -1;
      this.argsRemaining--;
    }
    const command = this.args;
    this.args = [];
    return command;
  }

  private awaitMore(neededFromOffset: number): typeof INCOMPLETE {
    this.needed = neededFromOffset;
    return INCOMPLETE;
  }

  /** Position of the CRLF that ends the line at `offset`, or -1 (after checking the line bound). */
  private lineEnd(tooBig: string): number {
    const end = this.buffer.indexOf(CRLF, this.offset);
    if (end >= 0) return end;
    const available = this.buffer.length - this.offset;
    if (available > MAX_INLINE_LENGTH) throw new RespProtocolError(tooBig);
    this.needed = available + 1;
    return -1;
  }

  private parseArrayHeader(): number | typeof INCOMPLETE {
    const end = this.lineEnd('too big mbulk count string');
    if (end < 0) return INCOMPLETE;
    const count = parseDecimal(this.buffer, this.offset + 1, end);
    if (Number.isNaN(count) || count > MAX_ARRAY_LENGTH)
      throw new RespProtocolError('invalid multibulk length');
    this.offset = end + 2;
    return count;
  }

  private parseBulkHeader(): number | typeof INCOMPLETE {
    if (this.offset >= this.buffer.length) return this.awaitMore(1);
    const first = this.buffer[this.offset]!;
    if (first !== 0x24 /* '$' */) {
      throw new RespProtocolError(`expected '$', got '${printable(first)}'`);
    }
    const end = this.lineEnd('too big bulk count string');
    if (end < 0) return INCOMPLETE;
    const length = parseDecimal(this.buffer, this.offset + 1, end);
    if (Number.isNaN(length) || length < 0 || length > MAX_BULK_LENGTH) {
      throw new RespProtocolError('invalid bulk length');
    }
    this.offset = end + 2;
    return length;
  }

  private parseInline(): Buffer[] | typeof INCOMPLETE | typeof EMPTY_COMMAND {
    const newline = this.buffer.indexOf(LF, this.offset);
    if (newline < 0) {
      const available = this.buffer.length - this.offset;
      if (available > MAX_INLINE_LENGTH) throw new RespProtocolError('too big inline request');
      return this.awaitMore(available + 1);
    }
    const lineEnd = newline > this.offset && this.buffer[newline - 1] === CR ? newline - 1 : newline;
    const args = splitInlineArgs(this.buffer.subarray(this.offset, lineEnd));
    if (!args) throw new RespProtocolError('unbalanced quotes in request');
    this.offset = newline + 1;
    return args.length === 0 ? EMPTY_COMMAND : args;
  }
}

const INCOMPLETE = Symbol('incomplete');
/** A request with no arguments (`*0`, a blank inline line): consumed, never answered. */
const EMPTY_COMMAND = Symbol('empty command');

function printable(byte: number): string {
  return byte >= 0x20 && byte < 0x7f ? String.fromCharCode(byte) : ' ';
}

/**
 * Redis's string2ll for length lines: an optional '-', digits without leading zeros, nothing else.
 * NaN if malformed; lengths are bounded by the caller, so 15 digits are plenty.
 */
export function parseDecimal(buf: Buffer, start: number, end: number): number {
  let p = start;
  const negative = buf[p] === 0x2d;
  if (negative) p++;
  const digits = end - p;
  if (digits <= 0 || digits > 15) return Number.NaN;
  if (buf[p] === 0x30 && (digits > 1 || negative)) return Number.NaN;
  let value = 0;
  for (; p < end; p++) {
    const d = buf[p]! - 0x30;
    if (d < 0 || d > 9) return Number.NaN;
    value = value * 10 + d;
  }
  return negative ? -value : value;
}

/**
 * Accumulates the replies to one batch of commands into a single Buffer, so that a pipelined batch
 * is answered with one socket.write.
 */
export class ReplyWriter {
  private out: Buffer = EMPTY;
  private length = 0;

  get isEmpty(): boolean {
    return this.length === 0;
  }

  simple(text: string): void {
    this.line('+', text);
  }

  /** An error reply; `message` starts with its code (ERR, OOM, ...). CR and LF become spaces. */
  error(message: string): void {
    this.line('-', message.replace(/[\r\n]/g, ' '));
  }

  integer(value: number | bigint): void {
    this.line(':', String(value));
  }

  bulk(value: Buffer | string | null): void {
    if (value === null) {
      this.nullBulk();
      return;
    }
    const payload = typeof value === 'string' ? Buffer.from(value) : value;
    this.line('$', String(payload.length));
    this.reserve(payload.length + 2);
    payload.copy(this.out, this.length);
    this.length += payload.length;
    this.out[this.length++] = CR;
    this.out[this.length++] = LF;
  }

  nullBulk(): void {
    this.line('$', '-1');
  }

  /** The header of an array of `count` replies; the caller writes the elements next. */
  arrayHeader(count: number): void {
    this.line('*', String(count));
  }

  /** The replies written so far, and a fresh start; the returned Buffer is never written again. */
  take(): Buffer {
    const replies = this.out.subarray(0, this.length);
    this.out = EMPTY;
    this.length = 0;
    return replies;
  }

  private line(prefix: string, text: string): void {
    this.reserve(Buffer.byteLength(text) + 3);
    this.out[this.length++] = prefix.charCodeAt(0);
    this.length += this.out.write(text, this.length);
    this.out[this.length++] = CR;
    this.out[this.length++] = LF;
  }

  private reserve(bytes: number): void {
    const required = this.length + bytes;
    if (required <= this.out.length) return;
    // Small first batches come from Node's pooled allocations; big ones double.
    const grown = Buffer.allocUnsafe(Math.max(required, this.out.length * 2, 1024));
    this.out.copy(grown, 0, 0, this.length);
    this.out = grown;
  }
}

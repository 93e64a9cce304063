/**
 * The 32-byte little-endian frame header and an incremental, zero-copy frame reader.
 *
 * ```
 * off size field
 * 0   4   bodyLength u32  (bytes after the header, at most MAX_BODY)
 * 4   1   type u8         (FrameType)
 * 5   1   flags u8        (bit0 = sealed; other bits must be 0)
 * 6   2   reserved u16    (must be 0)
 * 8   4   epoch u32
 * 12  4   pageCount u32
 * 16  8   firstPage u64   (at most 2^53-1)
 * 24  8   seq u64         (per-direction frame counter, the AEAD nonce of sealed frames; at most 2^53-1)
 * ```
 */

export const HEADER_BYTES = 32;
export const MAX_BODY = 64 * 2 ** 20;

export enum FrameType {
  Hello = 1,
  HelloReply = 2,
  Confirm = 3,
  /**
   * Unsealed and empty: the enclave now holds this connection, the dialler may speak. The receiving
   * host reads the routing preamble with a stream that buffers whatever follows it, and bytes buffered
   * there would not travel with the socket to the enclave; so the enclave always speaks first.
   */
  Ready = 4,
  Control = 16,
  Pages = 17,
  /** A sealed control message that carries a migration token (START, COMMIT, ABORT). */
  Token = 18,
}

const FLAG_SEALED = 0x01;
const U32_MAX = 2 ** 32 - 1;
const KNOWN_TYPES: ReadonlySet<number> = new Set(
  Object.values(FrameType).filter((value): value is number => typeof value === 'number'),
);

export interface FrameHeader {
  bodyLength: number;
  type: FrameType;
  sealed: boolean;
  epoch: number;
  pageCount: number;
  firstPage: number;
  seq: number;
}

export interface Frame {
  header: FrameHeader;
  /** The 32 header bytes exactly as they were on the wire (sealing binds them as associated data). */
  headerBytes: Buffer;
  /** Slices of the received chunks, in order; a body spanning several chunks is several slices. */
  body: Buffer[];
  bodyLength: number;
}

export class FrameError extends Error {
  override name = 'FrameError';
}

function checkUint(value: number, max: number, field: string): void {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new FrameError(`frame ${field} ${value} is not an integer in 0..${max}`);
  }
}

function checkHeader(h: FrameHeader): void {
  checkUint(h.bodyLength, MAX_BODY, 'bodyLength');
  if (!KNOWN_TYPES.has(h.type)) throw new FrameError(`unknown frame type ${h.type}`);
  checkUint(h.epoch, U32_MAX, 'epoch');
  checkUint(h.pageCount, U32_MAX, 'pageCount');
  checkUint(h.firstPage, Number.MAX_SAFE_INTEGER, 'firstPage');
  checkUint(h.seq, Number.MAX_SAFE_INTEGER, 'seq');
}

export function encodeHeader(h: FrameHeader): Buffer {
  checkHeader(h);
  const buf = Buffer.alloc(HEADER_BYTES);
  buf.writeUInt32LE(h.bodyLength, 0);
  buf.writeUInt8(h.type, 4);
  buf.writeUInt8(h.sealed ? FLAG_SEALED : 0, 5);
  buf.writeUInt32LE(h.epoch, 8);
  buf.writeUInt32LE(h.pageCount, 12);
  buf.writeBigUInt64LE(BigInt(h.firstPage), 16);
  buf.writeBigUInt64LE(BigInt(h.seq), 24);
  return buf;
}

function readSafeU64(buf: Buffer, offset: number, field: string): number {
  const value = buf.readBigUInt64LE(offset);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new FrameError(`frame ${field} ${value} exceeds 2^53-1`);
  return Number(value);
}

export function decodeHeader(buf: Buffer, offset = 0): FrameHeader {
  if (buf.length - offset < HEADER_BYTES) {
    throw new FrameError(`frame header needs ${HEADER_BYTES} bytes, got ${Math.max(0, buf.length - offset)}`);
  }
  const flags = buf.readUInt8(offset + 5);
  if ((flags & ~FLAG_SEALED) !== 0)
    throw new FrameError(`frame flags 0x${flags.toString(16)} has unknown bits`);
  const reserved = buf.readUInt16LE(offset + 6);
  if (reserved !== 0) throw new FrameError(`frame reserved field is ${reserved}, must be 0`);
  const header: FrameHeader = {
    bodyLength: buf.readUInt32LE(offset),
    type: buf.readUInt8(offset + 4),
    sealed: (flags & FLAG_SEALED) !== 0,
    epoch: buf.readUInt32LE(offset + 8),
    pageCount: buf.readUInt32LE(offset + 12),
    firstPage: readSafeU64(buf, offset + 16, 'firstPage'),
    seq: readSafeU64(buf, offset + 24, 'seq'),
  };
  checkHeader(header);
  return header;
}

/**
 * Cuts a byte stream into frames. Chunks are kept as they arrived and bodies are handed out as slices
 * of them, so pages are never copied between the socket and the decryption. A header is decoded (and
 * rejected) as soon as its 32 bytes are here, before its body is buffered. After a FrameError the
 * stream has lost sync, so every later call throws it again.
 */
export class FrameReader {
  private readonly chunks: Buffer[] = [];
  /** Bytes of chunks[0] already consumed. */
  private head = 0;
  private buffered = 0;
  private pending: { header: FrameHeader; headerBytes: Buffer } | null = null;
  private failure: FrameError | null = null;

  get bufferedBytes(): number {
    return this.buffered;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  next(): Frame | null {
    if (this.failure) throw this.failure;
    if (!this.pending) {
      if (this.buffered < HEADER_BYTES) return null;
      const headerBytes = this.take(HEADER_BYTES);
      const contiguous = headerBytes.length === 1 ? headerBytes[0]! : Buffer.concat(headerBytes);
      try {
        this.pending = { header: decodeHeader(contiguous), headerBytes: contiguous };
      } catch (err) {
        this.failure = err instanceof FrameError ? err : new FrameError(String(err));
        throw this.failure;
      }
    }
    const { header, headerBytes } = this.pending;
    if (this.buffered < header.bodyLength) return null;
    this.pending = null;
    return { header, headerBytes, body: this.take(header.bodyLength), bodyLength: header.bodyLength };
  }

  /** Removes `length` buffered bytes (the caller checked they are there) as slices of the chunks. */
  private take(length: number): Buffer[] {
    const slices: Buffer[] = [];
    let remaining = length;
    while (remaining > 0) {
      const chunk = this.chunks[0]!;
      const available = chunk.length - this.head;
      const used = Math.min(available, remaining);
      slices.push(chunk.subarray(this.head, this.head + used));
      remaining -= used;
      if (used === available) {
        this.chunks.shift();
        this.head = 0;
      } else {
        this.head += used;
      }
    }
    this.buffered -= length;
    return slices;
  }
}

/** The parts of an unsealed frame (handshake messages): header and body, ready for FramedSocket.send. */
export function plainFrame(type: FrameType, body: Buffer, seq = 0): Buffer[] {
  const header = encodeHeader({
    bodyLength: body.length,
    type,
    sealed: false,
    epoch: 0,
    pageCount: 0,
    firstPage: 0,
    seq,
  });
  return [header, body];
}

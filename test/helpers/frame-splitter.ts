import { HEADER_BYTES } from '../../src/wire/frame.js';

/**
 * The header fields as they are on the wire, read without any validation: an attacker's tools must
 * handle (and build) frames the protocol would reject. Layout: src/wire/frame.ts.
 */
export interface RawHeader {
  bodyLength: number;
  type: number;
  flags: number;
  epoch: number;
  pageCount: number;
  firstPage: bigint;
  seq: bigint;
}

export function readRawHeader(bytes: Buffer): RawHeader {
  return {
    bodyLength: bytes.readUInt32LE(0),
    type: bytes.readUInt8(4),
    flags: bytes.readUInt8(5),
    epoch: bytes.readUInt32LE(8),
    pageCount: bytes.readUInt32LE(12),
    firstPage: bytes.readBigUInt64LE(16),
    seq: bytes.readBigUInt64LE(24),
  };
}

/** A frame with any header at all (unknown type, reserved bits, a length that does not match the body). */
export function rawFrame(
  fields: Partial<RawHeader> & { type: number },
  body: Buffer = Buffer.alloc(0),
): Buffer {
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeUInt32LE(fields.bodyLength ?? body.length, 0);
  header.writeUInt8(fields.type, 4);
  header.writeUInt8(fields.flags ?? 0, 5);
  header.writeUInt32LE(fields.epoch ?? 0, 8);
  header.writeUInt32LE(fields.pageCount ?? 0, 12);
  header.writeBigUInt64LE(fields.firstPage ?? 0n, 16);
  header.writeBigUInt64LE(fields.seq ?? 0n, 24);
  return Buffer.concat([header, body]);
}

/**
 * Cuts a byte stream into complete frames (header and body in one buffer), however the bytes were
 * chunked. Trusts the announced body length: it only ever parses what honest enclaves sent.
 */
export class FrameSplitter {
  private pending: Buffer = Buffer.alloc(0);

  /** Bytes received that do not make a complete frame yet. */
  get bufferedBytes(): number {
    return this.pending.length;
  }

  push(chunk: Buffer): Buffer[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const frames: Buffer[] = [];
    while (this.pending.length >= HEADER_BYTES) {
      const length = HEADER_BYTES + this.pending.readUInt32LE(0);
      if (this.pending.length < length) break;
      // A copy: the relay records frames and must not pin (or see reused) socket buffers.
      frames.push(Buffer.from(this.pending.subarray(0, length)));
      this.pending = this.pending.subarray(length);
    }
    return frames;
  }
}

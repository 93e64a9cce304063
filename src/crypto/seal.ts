import { BufferPool } from '../util/buffer-pool.js';
import { type Aead, type DataPath, dataPath, TAG_BYTES } from './data-path.js';
import { decodeHeader, encodeHeader, type Frame, type FrameHeader, type FrameType } from '../wire/frame.js';

/**
 * AES-256-GCM sealing of frames, one key per direction.
 *
 * Nonce = 4 zero bytes || seq (u64 big-endian), where seq is the frame counter in the header: it starts
 * at 0 for every key and only ever grows, so no (key, nonce) pair repeats. The associated data is the
 * migration id followed by the 32 header bytes, which binds type, epoch, first page, page count, seq
 * and length: a frame moved to another place, another migration or another position in the stream
 * fails verification. Body of a sealed frame = ciphertext || 16-byte tag.
 */

export { TAG_BYTES };
const KEY_BYTES = 32;
const MIGRATION_ID_BYTES = 32;
/** NIST SP 800-38D caps one GCM key at 2^32 invocations; we stop there. */
const MAX_FRAMES_PER_KEY = 2 ** 32;

export class IntegrityError extends Error {
  override name = 'IntegrityError';
}

export class ReplayError extends Error {
  override name = 'ReplayError';
}

export class KeyExhaustedError extends Error {
  override name = 'KeyExhaustedError';
}

export interface SealFields {
  type: FrameType;
  epoch?: number;
  firstPage?: number;
  pageCount?: number;
}

function nonceFor(seq: number): Buffer {
  const nonce = Buffer.alloc(12);
  nonce.writeBigUInt64BE(BigInt(seq), 4);
  return nonce;
}

function importKey(key: Buffer, migrationId: Buffer, path: DataPath): Aead {
  if (key.length !== KEY_BYTES)
    throw new RangeError(`sealing key must be ${KEY_BYTES} bytes, got ${key.length}`);
  if (migrationId.length !== MIGRATION_ID_BYTES) {
    throw new RangeError(`migration id must be ${MIGRATION_ID_BYTES} bytes, got ${migrationId.length}`);
  }
  return path.aead(key);
}

export class Sealer {
  private readonly key: Aead;
  private readonly migrationId: Buffer;
  private readonly pool = new BufferPool();
  private seq = 0;

  constructor(key: Buffer, migrationId: Buffer, path: DataPath = dataPath()) {
    this.key = importKey(key, migrationId, path);
    this.migrationId = Buffer.from(migrationId);
  }

  get framesSealed(): number {
    return this.seq;
  }

  /**
   * Returns [header, ciphertext || tag in one or more buffers], ready for FramedSocket.send. Encrypts
   * straight from the given views (they may be heap pages in a SharedArrayBuffer): the plaintext is
   * never copied.
   */
  seal(fields: SealFields, plaintext: Uint8Array | readonly Uint8Array[]): Buffer[] {
    if (this.seq >= MAX_FRAMES_PER_KEY) {
      throw new KeyExhaustedError(`sealing key used for ${MAX_FRAMES_PER_KEY} frames; a new key is needed`);
    }
    const parts = plaintext instanceof Uint8Array ? [plaintext] : plaintext;
    let length = 0;
    for (const part of parts) length += part.byteLength;
    const header = encodeHeader({
      bodyLength: length + TAG_BYTES,
      type: fields.type,
      sealed: true,
      epoch: fields.epoch ?? 0,
      pageCount: fields.pageCount ?? 0,
      firstPage: fields.firstPage ?? 0,
      seq: this.seq,
    });
    const out = [
      header,
      ...this.key.seal(nonceFor(this.seq), [this.migrationId, header], parts, (n) => this.pool.take(n)),
    ];
    this.seq++;
    return out;
  }

  /** Takes back the memory of a frame from seal() once its socket write completed (optional). */
  recycle(parts: readonly Uint8Array[]): void {
    for (const part of parts) this.pool.give(part);
  }
}

function sameHeader(a: FrameHeader, b: FrameHeader): boolean {
  return (
    a.bodyLength === b.bodyLength &&
    a.type === b.type &&
    a.sealed === b.sealed &&
    a.epoch === b.epoch &&
    a.pageCount === b.pageCount &&
    a.firstPage === b.firstPage &&
    a.seq === b.seq
  );
}

/** Splits a body (a list of slices) into its ciphertext slices and the trailing tag, without copying. */
function splitTag(body: readonly Buffer[], ciphertextLength: number): { ciphertext: Buffer[]; tag: Buffer } {
  const ciphertext: Buffer[] = [];
  const tagParts: Buffer[] = [];
  let remaining = ciphertextLength;
  for (const slice of body) {
    const inCiphertext = Math.min(slice.length, remaining);
    if (inCiphertext > 0) ciphertext.push(slice.subarray(0, inCiphertext));
    if (inCiphertext < slice.length) tagParts.push(slice.subarray(inCiphertext));
    remaining -= inCiphertext;
  }
  return { ciphertext, tag: tagParts.length === 1 ? tagParts[0]! : Buffer.concat(tagParts) };
}

/**
 * Verifies and decrypts the frames of one direction, strictly in order. Any failure is fatal: the
 * stream can no longer be trusted, so every later call throws as well.
 */
export class Opener {
  private readonly key: Aead;
  private readonly migrationId: Buffer;
  private expectedSeq = 0;
  private failure: Error | null = null;

  constructor(key: Buffer, migrationId: Buffer, path: DataPath = dataPath()) {
    this.key = importKey(key, migrationId, path);
    this.migrationId = Buffer.from(migrationId);
  }

  /**
   * Without `target`, returns the plaintext. With `target` (exactly the plaintext's length), decrypts
   * into it and returns undefined. The plaintext may be written there before the tag is checked (the
   * native data path decrypts in place), so `target` must be memory nothing reads until this returns;
   * if the frame does not verify, `target` is left holding none of it and this throws.
   */
  open(frame: Frame, target?: Uint8Array): Buffer | undefined {
    if (this.failure) {
      throw new IntegrityError(`opener refuses frames after an earlier failure (${this.failure.message})`);
    }
    try {
      return this.openInOrder(frame, target);
    } catch (err) {
      this.failure = err instanceof Error ? err : new IntegrityError(String(err));
      throw err;
    }
  }

  private openInOrder(frame: Frame, target: Uint8Array | undefined): Buffer | undefined {
    // The header fields the caller acts on must be the ones the tag covers.
    const header = decodeHeader(frame.headerBytes);
    if (!sameHeader(header, frame.header))
      throw new IntegrityError('frame header does not match its wire bytes');
    if (!header.sealed) throw new IntegrityError(`frame of type ${header.type} is not sealed`);
    if (header.seq !== this.expectedSeq) {
      throw new ReplayError(
        `frame seq ${header.seq} where ${this.expectedSeq} was expected (replayed, dropped or reordered)`,
      );
    }
    let bodyBytes = 0;
    for (const slice of frame.body) bodyBytes += slice.length;
    if (bodyBytes !== header.bodyLength || frame.bodyLength !== header.bodyLength) {
      throw new IntegrityError(`frame body holds ${bodyBytes} B, its header says ${header.bodyLength} B`);
    }
    if (bodyBytes < TAG_BYTES)
      throw new IntegrityError(`sealed frame body of ${bodyBytes} B is shorter than its tag`);
    const plaintextLength = bodyBytes - TAG_BYTES;
    if (target && target.byteLength !== plaintextLength) {
      throw new IntegrityError(
        `sealed frame carries ${plaintextLength} B, target holds ${target.byteLength} B`,
      );
    }

    const { ciphertext, tag } = splitTag(frame.body, plaintextLength);
    const into = target ?? Buffer.allocUnsafe(plaintextLength);
    if (!this.key.open(nonceFor(header.seq), [this.migrationId, frame.headerBytes], ciphertext, tag, into)) {
      throw new IntegrityError(`frame seq ${header.seq} failed authentication`);
    }
    this.expectedSeq++;
    return target ? undefined : (into as Buffer);
  }
}

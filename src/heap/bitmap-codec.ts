import { bitmapWords, PageBitmap } from './page-bitmap.js';

export class BitmapCodecError extends Error {
  override name = 'BitmapCodecError';
}

/**
 * Page bitmaps travel inside control messages, BEGIN among them, which is sent and read in the
 * blackout. A filled heap's bitmaps are long runs, so they travel as run lengths: the clear run at
 * the start (maybe empty), then set and clear runs in turn (each at least one page), as LEB128
 * varints. A bitmap whose runs would take more room than its words (alternating bits) travels as the
 * words. One pass over the words either way: this replaced deflate, which took 0.3-2 ms per bitmap
 * at 1 GiB (cold zlib state) in the blackout.
 *
 * Layout (then base64): byte 0 = 0 (words, little-endian u32) or 1 (runs); the rest as above.
 */
const WORDS = 0;
const RUNS = 1;
/** A run length is at most 2^32 - 1 pages: five 7-bit groups. */
const MAX_VARINT_BYTES = 5;

export function encodeBitmap(bitmap: PageBitmap): string {
  const runs = encodeRuns(bitmap);
  const rawBytes = bitmap.words.byteLength;
  if (runs !== null && runs.length <= rawBytes) return runs.toString('base64');
  const out = Buffer.allocUnsafe(1 + rawBytes);
  out[0] = WORDS;
  out.set(new Uint8Array(bitmap.words.buffer, bitmap.words.byteOffset, rawBytes), 1);
  return out.toString('base64');
}

/** The run form, or null as soon as it grows past the words' size. */
function encodeRuns(bitmap: PageBitmap): Buffer | null {
  const limit = bitmap.words.byteLength;
  const out = Buffer.allocUnsafe(limit + MAX_VARINT_BYTES + 1);
  out[0] = RUNS;
  let at = 1;
  const put = (value: number): boolean => {
    while (value >= 0x80) {
      out[at++] = (value & 0x7f) | 0x80;
      value = Math.floor(value / 0x80);
    }
    out[at++] = value;
    return at <= limit;
  };
  const { pageCount } = bitmap;
  let page = 0;
  let set = false;
  while (page < pageCount) {
    let next = set ? bitmap.nextClear(page) : bitmap.nextSet(page);
    if (next === -1 || next > pageCount) next = pageCount;
    if (!put(next - page)) return null;
    page = next;
    set = !set;
  }
  if (pageCount === 0 && !put(0)) return null;
  return out.subarray(0, at);
}

/** Decodes a bitmap of exactly `pageCount` pages; anything else (or a bit past the end) is refused. */
export function decodeBitmap(text: string, pageCount: number): PageBitmap {
  const bytes = Buffer.from(text, 'base64');
  if (bytes.length === 0) throw new BitmapCodecError('empty page bitmap');
  if (bytes[0] === WORDS) return decodeWords(bytes.subarray(1), pageCount);
  if (bytes[0] === RUNS) return decodeRuns(bytes.subarray(1), pageCount);
  throw new BitmapCodecError(`page bitmap of unknown form ${bytes[0]}`);
}

function decodeWords(bytes: Buffer, pageCount: number): PageBitmap {
  const expected = bitmapWords(pageCount) * 4;
  if (bytes.length !== expected) {
    throw new BitmapCodecError(`page bitmap of ${bytes.length} B does not fit ${pageCount} pages`);
  }
  const bitmap = PageBitmap.create(pageCount);
  new Uint8Array(bitmap.words.buffer).set(bytes);
  const tail = pageCount & 31;
  if (tail !== 0 && bitmap.words[bitmap.words.length - 1]! >>> tail !== 0) {
    throw new BitmapCodecError('page bitmap sets pages past the end of the heap');
  }
  return bitmap;
}

function decodeRuns(bytes: Buffer, pageCount: number): PageBitmap {
  const bitmap = PageBitmap.create(pageCount);
  let at = 0;
  let page = 0;
  let set = false;
  let first = true;
  while (at < bytes.length) {
    let value = 0;
    let scale = 1;
    for (let i = 0; ; i++) {
      if (i === MAX_VARINT_BYTES || at === bytes.length)
        throw new BitmapCodecError('page bitmap run is cut or too long');
      const byte = bytes[at++]!;
      value += (byte & 0x7f) * scale;
      scale *= 0x80;
      if (byte < 0x80) break;
    }
    if (value === 0 && !first) throw new BitmapCodecError('page bitmap has an empty run');
    if (page + value > pageCount) throw new BitmapCodecError(`page bitmap runs past ${pageCount} pages`);
    if (set) bitmap.setRange(page, value);
    page += value;
    set = !set;
    first = false;
  }
  if (first || page !== pageCount) {
    throw new BitmapCodecError(`page bitmap runs cover ${page} of ${pageCount} pages`);
  }
  return bitmap;
}

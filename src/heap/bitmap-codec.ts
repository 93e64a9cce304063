import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { bitmapWords, PageBitmap } from './page-bitmap.js';

const EMPTY = '';

export class BitmapCodecError extends Error {
  override name = 'BitmapCodecError';
}

/**
 * Page bitmaps travel inside control messages, so they travel compressed: a filled heap's `allocated`
 * bitmap is long runs of ones, and 4 GiB of pages (128 KiB of bitmap) deflates to a few hundred bytes,
 * which keeps BEGIN, sent during the blackout, small whatever the heap size. A run-length form was
 * tried (issue 6) and reverted: on a fragmented 8 GiB bitmap (72k runs) it took 2.4-17 ms to encode
 * and 6-7 ms to decode, deflate 3-4 and 1 ms, and real kv heaps at 8 GiB are that fragmented.
 */
export function encodeBitmap(bitmap: PageBitmap): string {
  // The empty set is the empty string: BEGIN's `current` in every post-copy, whose inflate (256 KiB of
  // zeros at 8 GiB, into fresh memory) took 0.5-6 ms of the blackout.
  if (bitmap.count() === 0) return EMPTY;
  const { words } = bitmap;
  return deflateRawSync(Buffer.from(words.buffer, words.byteOffset, words.byteLength), { level: 1 }).toString(
    'base64',
  );
}

/** Decodes a bitmap of exactly `pageCount` pages; anything else (or a bit past the end) is refused. */
export function decodeBitmap(text: string, pageCount: number): PageBitmap {
  if (text === EMPTY) return PageBitmap.create(pageCount);
  const expected = bitmapWords(pageCount) * 4;
  let bytes: Buffer;
  try {
    bytes = inflateRawSync(Buffer.from(text, 'base64'), {
      maxOutputLength: Math.max(expected, 1),
      // The output's exact size in one chunk (zlib's default is 16 KiB): no concatenation, in the blackout.
      chunkSize: Math.max(expected, 64),
    });
  } catch {
    throw new BitmapCodecError(`page bitmap does not decode to ${expected} B`);
  }
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

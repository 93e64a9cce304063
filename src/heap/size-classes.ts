import { PAGE_SIZE } from './constants.js';

/**
 * Chunk sizes of the slab allocator. Each slab is one page, so the sizes are chosen to leave little of
 * a page unused (816 x 5 and 1360 x 3 fill 4080 bytes); all are multiples of 16, which keeps chunks
 * 16-byte aligned. Requests above the largest class get whole pages.
 */
export const SIZE_CLASSES: readonly number[] = [
  16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 816, 1024, 1360, 2048,
];

export const MAX_CHUNK_BYTES = SIZE_CLASSES[SIZE_CLASSES.length - 1]!;

/** Chunks that fit in one slab page, per class. */
export const CHUNKS_PER_PAGE: readonly number[] = SIZE_CLASSES.map((size) => Math.floor(PAGE_SIZE / size));

/** Class index for every request size rounded up to 16 bytes: CLASS_BY_UNITS[ceil(size / 16)]. */
const CLASS_BY_UNITS: readonly number[] = Array.from({ length: MAX_CHUNK_BYTES / 16 + 1 }, (_, units) =>
  SIZE_CLASSES.findIndex((size) => size >= units * 16),
);

/** The smallest class that holds `size` bytes (0 <= size <= MAX_CHUNK_BYTES). */
export function sizeClassOf(size: number): number {
  return CLASS_BY_UNITS[(size + 15) >>> 4]!;
}

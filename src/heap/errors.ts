/** A heap size outside the supported range. */
export class HeapSizeError extends RangeError {
  override name = 'HeapSizeError';
}

/** An access touched a page that has not arrived, and no tracker could fetch it. */
export class PageNotPresentError extends Error {
  override name = 'PageNotPresentError';
  constructor(readonly page: number) {
    super(`page ${page} is not present in this heap`);
  }
}

/** The heap does not hold an allocator this code can attach to. */
export class HeapFormatError extends Error {
  override name = 'HeapFormatError';
}

/** No free run of pages is large enough for the request. */
export class HeapFullError extends Error {
  override name = 'HeapFullError';
}

/** The allocator caught a misuse (invalid or double free) or damaged metadata. */
export class HeapCorruptionError extends Error {
  override name = 'HeapCorruptionError';
}

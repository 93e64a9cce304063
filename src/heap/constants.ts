/** Pages are the unit of presence, dirtiness, allocation and transfer. */
export const PAGE_SIZE = 4096;
export const PAGE_SHIFT = 12;

/**
 * Node 20 refuses a Uint8Array view above 4 GiB, so the heap is a list of SharedArrayBuffer segments
 * of this size (the last one may be shorter). Blocks and transfer extents never cross a segment, so
 * each of them is one contiguous view.
 */
export const SEGMENT_BYTES = 2 ** 30;
export const SEGMENT_PAGES = SEGMENT_BYTES / PAGE_SIZE;

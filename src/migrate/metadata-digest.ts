import { createHash } from 'node:crypto';
import type { ControlOf } from './messages.js';

/**
 * SHA-256 over everything the destination learns about the heap besides the pages themselves: the
 * BEGIN fields and PREFAULT's `allocated` that BEGIN's page set is relative to (the page sets it must
 * trust: which pages exist, which it already holds) and the application snapshot (the allocator's own
 * metadata travels in heap pages). START binds it, so a host cannot swap the snapshot, shrink the
 * page set or change the heap geometry between the two enclaves without the START token failing.
 */
export function metadataDigest(
  prefaultAllocated: string,
  begin: Omit<ControlOf<'begin'>, 't'> & { t?: 'begin' },
  snapshotJson: string,
): Buffer {
  const hash = createHash('sha256').update('constmig/v1/metadata\0');
  const field = (text: string): void => {
    const data = Buffer.from(text, 'utf8');
    const length = Buffer.alloc(8);
    length.writeBigUInt64BE(BigInt(data.byteLength));
    hash.update(length).update(data);
  };
  field(begin.mode);
  field(begin.app);
  field(String(begin.heapBytes));
  field(String(begin.allocatedPages));
  field(begin.verify ? 'verify' : 'no-verify');
  field(String(begin.epoch));
  field(prefaultAllocated);
  field(begin.allocatedChange);
  field(begin.current);
  field(snapshotJson);
  return hash.digest();
}

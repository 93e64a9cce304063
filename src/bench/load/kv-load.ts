import type { HostPort } from '../../util/address.js';
import { FollowingLoad, type LoadRequest, pipelined } from './following-load.js';
import type { Reply } from './resp-reply.js';
import { ScrambledZipfian } from './zipfian.js';

export type { LoadResult } from './following-load.js';

export interface KvLoadOptions {
  /** Keys `key:<n>` for n below this are requested (default 1000). */
  keySpace?: number;
  /** Keys below this were filled (`--fill`): a GET of one of them must find a value. Default 0. */
  filledKeys?: number;
  /** Share of SETs in the mix (YCSB-B 0.05, YCSB-A 0.5). Default 0.5. */
  writeShare?: number;
}

interface KvRequest extends LoadRequest {
  key: string;
  /** The value a SET writes; null for a GET. */
  value: string | null;
}

/**
 * A YCSB-like kv load: GETs and SETs of keys drawn from a scrambled zipfian distribution, one request
 * in flight, following the application when it moves. It remembers every acknowledged write, so that
 * a read, or the read-back after the migration (countLostWrites), sees a lost write; a GET of a filled
 * key that finds nothing is an error too.
 */
export class KvLoad extends FollowingLoad<KvRequest> {
  private seq = 0;
  private readonly keys: ScrambledZipfian;
  private readonly writeShare: number;
  private readonly filledKeys: number;
  /** Last acknowledged value per key, and the value of a write whose reply was lost (either may hold). */
  readonly acked = new Map<string, string>();
  readonly ambiguous = new Map<string, string>();

  constructor(endpoints: HostPort[], options: KvLoadOptions = {}) {
    super(endpoints);
    this.keys = new ScrambledZipfian(options.keySpace ?? 1000);
    this.writeShare = options.writeShare ?? 0.5;
    this.filledKeys = options.filledKeys ?? 0;
  }

  protected next(): KvRequest {
    const n = this.keys.next();
    const key = `key:${n}`;
    if (Math.random() >= this.writeShare) return { args: ['GET', key], ops: 1, key, value: null };
    const value = `v${this.seq++}`;
    return { args: ['SET', key, value], ops: 1, key, value };
  }

  protected accept(request: KvRequest, reply: Reply): boolean {
    if (request.value !== null) {
      const ok = reply === 'OK';
      if (ok) {
        this.acked.set(request.key, request.value);
        this.ambiguous.delete(request.key);
      }
      return ok;
    }
    return this.consistent(request.key, reply);
  }

  protected unanswered(request: KvRequest): void {
    if (request.value !== null) this.ambiguous.set(request.key, request.value);
  }

  /** A read must return the acknowledged value (or the one whose acknowledgement was lost). */
  consistent(key: string, reply: Reply): boolean {
    const expected = this.acked.get(key);
    if (expected !== undefined || this.ambiguous.has(key))
      return reply === expected || reply === this.ambiguous.get(key);
    // Never written by this load: a filled key must still hold its value.
    return Number(key.slice(4)) < this.filledKeys ? typeof reply === 'string' : true;
  }
}

/**
 * Reads back every key the load wrote and counts those whose value is neither the acknowledged one
 * nor the one whose acknowledgement was lost: an acknowledged write that did not survive.
 */
export async function countLostWrites(
  load: KvLoad,
  endpoint: HostPort,
): Promise<{ checked: number; lost: number }> {
  const keys = [...load.acked.keys()];
  const replies = await pipelined(
    endpoint,
    keys.map((key) => ['GET', key]),
  );
  const lost = replies.filter((reply, i) => !load.consistent(keys[i]!, reply)).length;
  return { checked: keys.length, lost };
}

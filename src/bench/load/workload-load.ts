import type { HostPort } from '../../util/address.js';
import { FollowingLoad, type LoadRequest, pipelined } from './following-load.js';
import type { Reply } from './resp-reply.js';

/**
 * The load of a benchmark workload (src/apps/workloads): `RUN <batch> <writeShare>` requests, one in
 * flight, following the application when it moves. Every reply carries the workload's total
 * operation count, which migrates with the heap: a reply that does not continue the count exactly
 * (batch after batch, or two batches after a request whose reply was lost) means operations the client
 * saw acknowledged were lost, or ran twice.
 */
export class WorkloadLoad extends FollowingLoad {
  private lastOpsDone: number | null = null;
  /** A RUN went unanswered: it may have run (then the next reply counts two batches). */
  private maybeRan = false;
  /** Replies whose operation count did not continue the one before. */
  discontinuities = 0;
  private readonly request: LoadRequest;

  constructor(endpoints: HostPort[], batch: number, writeShare: number) {
    super(endpoints);
    this.request = { args: ['RUN', String(batch), String(writeShare)], ops: batch };
  }

  protected next(): LoadRequest {
    return this.request;
  }

  protected accept(request: LoadRequest, reply: Reply): boolean {
    if (!Array.isArray(reply) || typeof reply[0] !== 'string') return false;
    const opsDone = Number(reply[0]);
    const last = this.lastOpsDone;
    const continues =
      last === null ||
      opsDone === last + request.ops ||
      (this.maybeRan && opsDone === last + 2 * request.ops);
    if (!continues) this.discontinuities++;
    this.lastOpsDone = opsDone;
    this.maybeRan = false;
    return continues;
  }

  protected unanswered(): void {
    this.maybeRan = true;
  }
}

/** VERIFY at the endpoint: whether the workload's data, scanned, matches its running digest. */
export async function verifyWorkload(endpoint: HostPort): Promise<{ match: boolean; detail: string }> {
  const [reply] = await pipelined(endpoint, [['VERIFY']]);
  if (!Array.isArray(reply)) return { match: false, detail: `VERIFY answered ${JSON.stringify(reply)}` };
  const [match, running, scanned] = reply;
  return { match: match === '1', detail: `running digest ${String(running)}, scanned ${String(scanned)}` };
}

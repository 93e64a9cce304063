import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { APP_KINDS, WORKLOADS } from '../../apps/registry.js';
import { errorMessage } from '../../util/errors.js';
import type { LoadResult } from './following-load.js';
import { countLostWrites, KvLoad } from './kv-load.js';
import { verifyWorkload, WorkloadLoad } from './workload-load.js';

/**
 * The benchmark's client load around one migration, whether it runs in this process or in a child
 * process (load-process.ts): what to start, and the same handle either way.
 */

const hostPort = z.object({ host: z.string().min(1), port: z.number().int().min(1).max(65535) }).strict();

export const loadParamsSchema = z
  .object({
    kind: z.enum(APP_KINDS),
    writeShare: z.number().min(0).max(1),
    /** kv: keys the fill wrote (`key:0` ..); GETs of them must find a value. Ignored by workloads. */
    filledKeys: z.number().int().min(0),
    /** The application where it runs now, then where it goes: the load follows it. */
    endpoints: z.array(hostPort).min(1),
    /** Where acknowledged work is checked after the migration (the destination). */
    checkAt: hostPort,
  })
  .strict();

export type LoadParams = z.infer<typeof loadParamsSchema>;

/** Acknowledged work checked at the destination, and how much of it was lost. */
export interface LoadCheck {
  checked: number;
  lost: number;
  /** What was lost, for the notes; null when nothing was. */
  detail: string | null;
}

export interface LoadOutcome {
  result: LoadResult;
  /** null when the stop asked for no check (the migration failed). */
  check: LoadCheck | null;
}

/** A started load. */
export interface RunningLoad {
  /** CLOCK_MONOTONIC ms at which it started: bucket 0 of its ops per 100 ms. */
  readonly startedAtMs: number;
  /** Resolves once a request succeeded within the last 20 ms, or after `timeoutMs`. */
  servedAgain(timeoutMs: number): Promise<void>;
  /** Stops the load; with `check`, then checks the acknowledged work at `checkAt`. */
  stop(check: boolean): Promise<LoadOutcome>;
}

/** A success this recent means the client is served (the loads keep one request in flight). */
const SERVED_WITHIN_MS = 20;

/** Starts the load of `params` in this process. */
export function startLoad(params: LoadParams): RunningLoad {
  const { load, check } = createLoad(params);
  load.start();
  return {
    startedAtMs: load.startedAtMs,
    async servedAgain(timeoutMs) {
      for (let waited = 0; load.sinceLastSuccess() > SERVED_WITHIN_MS && waited < timeoutMs; waited += 10)
        await sleep(10);
    },
    async stop(wanted) {
      const result = await load.stop();
      return { result, check: wanted ? await check() : null };
    },
  };
}

/** Parses the parameters a child process is given (JSON); the error names what is wrong. */
export function parseLoadParams(json: string): LoadParams {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (err) {
    throw new Error(`load parameters are not JSON: ${errorMessage(err)}`);
  }
  const parsed = loadParamsSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`load parameters: ${issue.path.join('.') || '(top)'}: ${issue.message}`);
  }
  return parsed.data;
}

function createLoad(params: LoadParams): {
  load: KvLoad | WorkloadLoad;
  check: () => Promise<LoadCheck>;
} {
  const { kind } = params;
  if (kind === 'kv') {
    const load = new KvLoad(params.endpoints, {
      keySpace: Math.max(params.filledKeys, 1),
      filledKeys: params.filledKeys,
      writeShare: params.writeShare,
    });
    return { load, check: async () => ({ ...(await countLostWrites(load, params.checkAt)), detail: null }) };
  }
  const load = new WorkloadLoad(params.endpoints, WORKLOADS[kind].opsPerRequest, params.writeShare);
  return {
    load,
    async check() {
      const verified = await verifyWorkload(params.checkAt);
      const lost = load.discontinuities + (verified.match ? 0 : 1);
      const detail = lost
        ? `${load.discontinuities} replies did not continue the operation count; VERIFY ${verified.match ? 'matched' : 'FAILED'} (${verified.detail})`
        : null;
      return { checked: 1, lost, detail };
    },
  };
}

import { z } from 'zod';
import { APP_KINDS } from '../apps/registry.js';
import { MIGRATION_MODES } from '../migrate/modes.js';
import { TRACKER_REQUESTS, type TrackerChoice, trackerChoice } from '../trackers/choice.js';
import { parseHostPort } from '../util/address.js';
import { errorMessage } from '../util/errors.js';
import { normaliseHostUrl } from './client.js';

/** Request bodies of the host daemon's control API; unknown fields are rejected, sizes are bounded. */

const MIN_HEAP = 2 ** 20;
const MAX_HEAP = 16 * 2 ** 30;
const enclaveId = z.string().regex(/^[0-9a-f]{8}$/, 'enclave ids are 8 hex digits');
const name = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'names are 1-64 of A-Z a-z 0-9 . _ -');
const heapBytes = z
  .number()
  .int('heap must be a whole number of bytes')
  .min(MIN_HEAP, 'heap must be at least 1 MiB')
  .max(MAX_HEAP, 'heap must be at most 16 GiB');
const appPort = z
  .number()
  .int('port must be 1-65535')
  .min(1, 'port must be 1-65535')
  .max(65535, 'port must be 1-65535');

/** A string the given parser accepts; its one-line error becomes the validation message. */
const parsedBy = (parse: (text: string) => unknown) =>
  z
    .string()
    .max(2048)
    .superRefine((text, ctx) => {
      try {
        parse(text);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: errorMessage(err) });
      }
    });
const hostUrl = parsedBy(normaliseHostUrl);
const dataAddress = parsedBy((text) => {
  if (parseHostPort(text, 'dataAddress').port === 0)
    throw new Error(`dataAddress '${text}' needs a port 1-65535`);
});
const ticket = z.string().regex(/^[0-9a-f]{32}$/, 'tickets are 32 hex digits');

export const runRequest = z.strictObject({
  app: z.enum(APP_KINDS),
  heapBytes,
  port: appPort,
  name: name.optional(),
  fillBytes: z
    .number()
    .int('fill must be a whole number of bytes')
    .nonnegative('fill must not be negative')
    .max(MAX_HEAP, 'fill must be at most 16 GiB')
    .default(0),
});
export type RunRequest = z.input<typeof runRequest>;

export const incomingRequest = z.strictObject({
  id: enclaveId,
  name,
  app: z.enum(APP_KINDS),
  heapBytes,
  port: appPort,
  /** What the destination's heap must catch misses with ('none': the mode has no post-copy). */
  tracker: z.enum([...TRACKER_REQUESTS, 'none']).default('auto'),
});
export type IncomingRequest = z.infer<typeof incomingRequest>;

export const migrateRequest = z.strictObject({
  to: hostUrl,
  mode: z.enum(MIGRATION_MODES).default('stop-and-copy'),
  dataAddress: dataAddress.optional(),
  verify: z.boolean().default(true),
  /** Pre-copy: the blackout the rounds aim for, in ms. */
  maxDowntimeMs: z.number().int().min(1).max(3_600_000).default(300),
  /** Background pages (pre-copy rounds, post-copy push), bytes per second; absent: no limit. */
  bandwidthBps: z.number().positive().max(1.25e11).optional(),
  /** After START, how long the source keeps dialling a broken link before it stays in doubt. */
  reconnectTimeoutMs: z.number().int().min(0).max(3_600_000).default(60_000),
  /** Post-copy and hybrid: the destination's tracker ('auto': fault where userfaultfd works). */
  tracker: z.enum(TRACKER_REQUESTS).default('auto'),
});
export type MigrateRequest = z.input<typeof migrateRequest>;

export const resumeRequest = z.strictObject({
  abortToken: z.string().regex(/^[0-9a-f]{64}$/, 'an ABORT token is 64 hex digits'),
});

export const enclaveIdParam = enclaveId;

export type EnclaveState =
  'starting' | 'running' | 'incoming' | 'migrating-in' | 'migrating-out' | 'in-doubt';

export interface EnclaveInfo {
  id: string;
  name: string;
  app: string;
  state: EnclaveState;
  heapBytes: number;
  port: number;
  address: string;
  pid: number;
  measurement: string;
  tee: string;
  teeSecure: boolean;
  startedAt: string;
  stats: Record<string, number>;
}

/** The destination host is as untrusted as any caller: its PREPARE reply is validated too. */
export const incomingReply = z.object({
  id: enclaveId,
  ticket,
  dataHost: z.string().min(1).max(255),
  dataPort: appPort,
  tracker: trackerChoice,
});
export type IncomingReply = z.infer<typeof incomingReply>;

/** GET /v1/incoming/:id/outcome: why an incoming migration failed, and its ABORT token if any. */
export interface IncomingOutcome {
  id: string;
  reason: string;
  abortToken: string | null;
}

export interface HostInfo {
  version: string;
  control: string;
  bind: string;
  peerPort: number;
  tee: string;
}

/** Events streamed (NDJSON) by POST /v1/enclaves/:id/migrate. */
export type MigrateEvent =
  | { type: 'prepared'; destinationId: string; dataAddress: string; tracker: TrackerChoice }
  | {
      type: 'progress';
      phase: string;
      bytesDone: number;
      bytesTotal: number;
      elapsedMs: number;
      /** Pre-copy: the round being sent. */
      round?: number;
      /** Post-copy: demand fetches answered so far. */
      faultsServed?: number;
    }
  | { type: 'report'; report: Record<string, unknown> }
  | { type: 'error'; message: string; sourceServing: boolean };

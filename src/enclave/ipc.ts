import { z } from 'zod';
import { APP_KINDS } from '../apps/registry.js';
import { MIGRATION_MODES } from '../migrate/modes.js';
import { TRACKER_REQUESTS, trackerChoice } from '../trackers/choice.js';

/**
 * Messages between a host daemon and the enclave processes it spawns (Node IPC channel). The host is
 * untrusted: the enclave validates every command, and secrets never cross this channel except the sim
 * platform key, which stands in for the CPU (the sim backend gives no protection and says so).
 */

const appConfig = z.strictObject({
  app: z.enum(APP_KINDS),
  heapBytes: z.number().int().positive(),
  port: z.number().int().min(0).max(65535),
  bindAddress: z.string().min(1),
});
export type AppConfig = z.infer<typeof appConfig>;

/** The sim backend's stand-in for the CPU: its platform key and the sim root's certificate of it. */
const simPlatform = z.strictObject({
  kind: z.literal('sim'),
  platformPrivateKeyPem: z.string().max(4096),
  platformCert: z.string().max(256),
  root: z.string().max(256),
});

export type SimPlatformIdentity = z.infer<typeof simPlatform>;

const hex64 = z.string().regex(/^[0-9a-f]{64}$/);

export const hostToEnclave = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('init'),
    config: appConfig,
    tee: simPlatform,
    /** The attestation policy document; the enclave validates it (tee/policy.ts). */
    policy: z.unknown(),
    role: z.discriminatedUnion('kind', [
      z.strictObject({ kind: z.literal('fresh'), fillBytes: z.number().int().nonnegative() }),
      z.strictObject({
        kind: z.literal('incoming'),
        ticket: z.string().regex(/^[0-9a-f]{32}$/),
        tracker: z.enum([...TRACKER_REQUESTS, 'none']),
      }),
    ]),
  }),
  z.strictObject({
    type: z.literal('migrate-out'),
    requestId: z.string(),
    mode: z.enum(MIGRATION_MODES),
    dataHost: z.string().min(1),
    dataPort: z.number().int().min(1).max(65535),
    ticket: z.string().regex(/^[0-9a-f]{32}$/),
    peerAuth: z.string().regex(/^[0-9a-f]{64}$/),
    verify: z.boolean(),
    requestedAtMs: z.number(),
    /** Pre-copy: the blackout the rounds aim for. */
    maxDowntimeMs: z.number().int().positive(),
    /** Background pages (pre-copy rounds, post-copy push) in bytes per second; null: no limit. */
    bandwidthBps: z.number().positive().nullable(),
    reconnectTimeoutMs: z.number().int().nonnegative(),
  }),
  /** Sent together with the accepted data socket as the IPC handle. */
  z.strictObject({ type: z.literal('data-connection'), ticket: z.string() }),
  /**
   * An ABORT token the destination minted, relayed by the hosts: releases an in-doubt source, or a
   * source still waiting after START (its link to a destination that gave up is gone).
   */
  z.strictObject({ type: z.literal('resume'), requestId: z.string(), abortToken: z.string().max(128) }),
  z.strictObject({ type: z.literal('query'), id: z.number().int() }),
  z.strictObject({ type: z.literal('stop') }),
]);
export type HostToEnclave = z.infer<typeof hostToEnclave>;

const enclaveStats = z.record(z.string(), z.number());

export const migrationProgress = z.strictObject({
  phase: z.enum(['handshake', 'precopy', 'blackout', 'transfer', 'resume', 'postcopy', 'commit']),
  bytesDone: z.number().nonnegative(),
  bytesTotal: z.number().nonnegative(),
  elapsedMs: z.number().nonnegative(),
  /** Pre-copy: the round being sent. */
  round: z.number().int().positive().optional(),
  /** Post-copy: demand fetches the source answered so far. */
  faultsServed: z.number().int().nonnegative().optional(),
});
export type MigrationProgress = z.infer<typeof migrationProgress>;

export const enclaveToHost = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('ready'),
    measurement: z.string(),
    tee: z.string(),
    teeSecure: z.boolean(),
    appPort: z.number().int(),
    stats: enclaveStats,
    /** Destination: the tracker its heap was made for, and why. */
    tracker: trackerChoice.optional(),
  }),
  z.strictObject({ type: z.literal('fatal'), message: z.string() }),
  /**
   * Destination: the incoming migration failed and this enclave never resumed; it exits next. The
   * ABORT token (null if no keys were agreed) may release a source that is in doubt.
   */
  z.strictObject({ type: z.literal('incoming-aborted'), message: z.string(), abortToken: hex64.nullable() }),
  z.strictObject({
    type: z.literal('resume-result'),
    requestId: z.string(),
    resumed: z.boolean(),
    message: z.string(),
  }),
  z.strictObject({ type: z.literal('progress'), requestId: z.string(), progress: migrationProgress }),
  /** Source: COMMIT received, heap wiped; the process exits right after. */
  z.strictObject({
    type: z.literal('migrated-out'),
    requestId: z.string(),
    report: z.record(z.string(), z.unknown()),
  }),
  /** Source: the migration failed before START; the application serves again. */
  z.strictObject({
    type: z.literal('migration-failed'),
    requestId: z.string(),
    message: z.string(),
    resumed: z.boolean(),
  }),
  /** Destination: the application serves on this host now. */
  z.strictObject({ type: z.literal('resumed'), stats: enclaveStats }),
  /** Destination: the incoming migration is over (after COMMIT, or post-copy gave up); no page comes any more. */
  z.strictObject({ type: z.literal('migrated-in') }),
  z.strictObject({ type: z.literal('query-result'), id: z.number().int(), stats: enclaveStats }),
]);
export type EnclaveToHost = z.infer<typeof enclaveToHost>;

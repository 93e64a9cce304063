import { z } from 'zod';
import { MIGRATION_MODES } from './modes.js';

/**
 * Control messages between the two enclaves. They travel sealed (FrameType.Control) under the
 * migration keys, so a host can neither read nor forge them; they are still validated, because a bug
 * or a compromised peer must not crash the receiver with a malformed shape.
 */
const hex = z.string().regex(/^[0-9a-f]*$/);
const digest = hex.length(64);
const token = hex.length(64);
/** The application snapshot is small by contract (roots into the heap and a few counters). */
const MAX_SNAPSHOT_CHARS = 64 * 1024;

export const controlMessage = z.discriminatedUnion('t', [
  /**
   * Before the blackout: the pages the source has allocated (its `allocated` bitmap, base64), so the
   * destination can first-touch them while the application still serves. First touch costs 3-10 µs
   * per page on these VMs, as much as decrypting the page; paid here, it leaves the downtime.
   */
  z.strictObject({ t: z.literal('prefault'), allocated: z.string().max(2 ** 22) }),
  z.strictObject({ t: z.literal('prefaulted'), pages: z.number().int().nonnegative() }),
  z.strictObject({
    t: z.literal('begin'),
    mode: z.enum(MIGRATION_MODES),
    app: z.string().max(64),
    heapBytes: z.number().int().positive(),
    allocatedPages: z.number().int().nonnegative(),
    verify: z.boolean(),
  }),
  /**
   * START (a token frame): the application stopped at the source; the destination may resume once it
   * holds every page this names and the token verifies (tokens.ts). `snapshot` is the application's
   * snapshot as JSON text, hashed as sent into the metadata digest.
   */
  z.strictObject({
    t: z.literal('start'),
    snapshot: z.string().max(MAX_SNAPSHOT_CHARS),
    stoppedAtMs: z.number(),
    pagesTotal: z.number().int().nonnegative(),
    framesTotal: z.number().int().nonnegative(),
    metadataDigest: digest,
    digest: digest.nullable(),
    token,
  }),
  /** COMMIT (a token frame): the destination holds every page and serves; the source self-destroys. */
  z.strictObject({
    t: z.literal('commit'),
    resumedAtMs: z.number(),
    pagesInstalled: z.number().int().nonnegative(),
    digest: digest.nullable(),
    peakRssBytes: z.number().int().nonnegative(),
    cpuUserMs: z.number().nonnegative(),
    cpuSystemMs: z.number().nonnegative(),
    token,
  }),
  /** ABORT (a token frame): the destination has not resumed and never will, so the source may go on. */
  z.strictObject({ t: z.literal('abort'), reason: z.string().max(500), token }),
]);

/** The messages that carry a token travel in FrameType.Token frames, the others in Control frames. */
export const TOKEN_MESSAGES: ReadonlySet<ControlMessage['t']> = new Set(['start', 'commit', 'abort']);

export type ControlMessage = z.infer<typeof controlMessage>;
export type ControlOf<T extends ControlMessage['t']> = Extract<ControlMessage, { t: T }>;

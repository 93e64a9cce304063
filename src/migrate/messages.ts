import { z } from 'zod';
import { MIGRATION_MODES } from './modes.js';

/**
 * Control messages between the two enclaves. They travel sealed (FrameType.Control) under the
 * migration keys, so a host can neither read nor forge them; they are still validated, because a bug
 * or a compromised peer must not crash the receiver with a malformed shape.
 */
const hex = z.string().regex(/^[0-9a-f]*$/);
const snapshot = z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()]));

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
  /** START: the destination may resume once it holds every page this names. */
  z.strictObject({
    t: z.literal('start'),
    snapshot,
    stoppedAtMs: z.number(),
    pagesTotal: z.number().int().nonnegative(),
    framesTotal: z.number().int().nonnegative(),
    digest: hex.length(64).nullable(),
  }),
  z.strictObject({
    t: z.literal('commit'),
    resumedAtMs: z.number(),
    pagesInstalled: z.number().int().nonnegative(),
    digest: hex.length(64).nullable(),
    peakRssBytes: z.number().int().nonnegative(),
    cpuUserMs: z.number().nonnegative(),
    cpuSystemMs: z.number().nonnegative(),
  }),
  /** Sent by the destination before it resumes: it will not run, so the source may go on. */
  z.strictObject({ t: z.literal('abort'), reason: z.string().max(500) }),
]);

export type ControlMessage = z.infer<typeof controlMessage>;
export type ControlOf<T extends ControlMessage['t']> = Extract<ControlMessage, { t: T }>;

import { z } from 'zod';
import { FAULT_HISTOGRAM_BUCKETS } from '../trackers/demand-latency.js';
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
/** A page bitmap, base64: 16 GiB of pages is 512 KiB of bitmap. */
const bitmap = z.string().max(2 ** 20);
/** Pages one demand fetch may name. */
export const MAX_FETCH_PAGES = 256;

export const controlMessage = z.discriminatedUnion('t', [
  /**
   * Before the blackout: the pages the source has allocated (its `allocated` bitmap, base64), so the
   * destination can first-touch them while the application still serves. First touch costs 3-10 µs
   * per page on these VMs, as much as decrypting the page; paid here, it leaves the downtime.
   */
  z.strictObject({
    t: z.literal('prefault'),
    allocated: bitmap,
    mode: z.enum(MIGRATION_MODES),
    verify: z.boolean(),
  }),
  z.strictObject({ t: z.literal('prefaulted'), pages: z.number().int().nonnegative() }),
  z.strictObject({
    t: z.literal('begin'),
    mode: z.enum(MIGRATION_MODES),
    app: z.string().max(64),
    heapBytes: z.number().int().positive(),
    allocatedPages: z.number().int().nonnegative(),
    verify: z.boolean(),
    /** The epoch (frame header field) of every page sent from the blackout on. */
    epoch: z
      .number()
      .int()
      .min(1)
      .max(2 ** 31),
    /**
     * The pages to migrate, the source's `allocated` bitmap when the application stopped, as its
     * difference (XOR) from PREFAULT's: the pages allocated or freed since, usually a handful. The whole
     * set of a fragmented 8 GiB heap deflates to ~100 KiB and took milliseconds of the blackout to
     * deflate and inflate; the difference takes tenths of one.
     */
    allocatedChange: bitmap,
    /**
     * The pages whose latest version the destination already holds (sent in a pre-copy round and not
     * written since); every other allocated page still has to come, before START or after it.
     */
    current: bitmap,
  }),
  /** First frame on a connection opened after the handshake (sealed under that channel's own key). */
  z.strictObject({ t: z.literal('attach'), channel: z.enum(['bulk', 'urgent']) }),
  /**
   * Destination to source, first message on a bulk channel that replaced a broken one: the pages to
   * migrate it holds. Whatever was in flight when the link broke is sent again.
   */
  z.strictObject({ t: z.literal('resync'), present: bitmap }),
  /**
   * Post-copy, destination to source on the urgent channel: the application serves. The push starts
   * only now, so that the faults of restoring the application meet an idle link and idle cores.
   */
  z.strictObject({ t: z.literal('resumed') }),
  /** Post-copy, destination to source on the urgent channel: the application waits for these pages. */
  z.strictObject({
    t: z.literal('fetch'),
    first: z.number().int().nonnegative(),
    count: z.number().int().min(1).max(MAX_FETCH_PAGES),
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
    /** Demand faults the destination's tracker caught during post-copy; null without post-copy. */
    faults: z
      .strictObject({
        tracker: z.string().max(32),
        count: z.number().int().nonnegative(),
        p50Us: z.number().nonnegative(),
        p99Us: z.number().nonnegative(),
        maxUs: z.number().nonnegative(),
        /** Faults per latency bucket: bucket i holds [2^i, 2^(i+1)) µs (the first also below 1 µs). */
        histogram: z.array(z.number().int().nonnegative()).max(FAULT_HISTOGRAM_BUCKETS),
      })
      .nullable(),
    token,
  }),
  /** ABORT (a token frame): the destination has not resumed and never will, so the source may go on. */
  z.strictObject({ t: z.literal('abort'), reason: z.string().max(500), token }),
]);

/** The messages that carry a token travel in FrameType.Token frames, the others in Control frames. */
export const TOKEN_MESSAGES: ReadonlySet<ControlMessage['t']> = new Set(['start', 'commit', 'abort']);

export type ControlMessage = z.infer<typeof controlMessage>;
export type ControlOf<T extends ControlMessage['t']> = Extract<ControlMessage, { t: T }>;

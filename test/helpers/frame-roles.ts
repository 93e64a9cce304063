import { FrameType } from '../../src/wire/frame.js';

/**
 * What a frame on the data connection is, as an attacker who cannot decrypt sealed frames tells it
 * apart: by type and position. The ONE place that knows the frame order of the protocol, so that a
 * change of the protocol is one edit here.
 *
 * Order today: source→destination HelloReply, Confirm, Control PREFAULT, Control BEGIN, Pages × N,
 * START; destination→source Hello, Confirm, Control PREFAULTED, Control COMMIT or ABORT.
 */
export type Direction = 'to-destination' | 'to-source';

export type FrameRole =
  | 'handshake'
  | 'prefault'
  | 'begin'
  | 'pages'
  | 'start'
  /** The destination's first control frame: PREFAULTED, or an ABORT sent instead (sealed alike). */
  | 'prefaulted'
  /** The destination's final answer: sealed, so COMMIT and ABORT look the same on the wire. */
  | 'commit-or-abort'
  /** Anything the protocol does not send at this position. */
  | 'unknown';

/** The token protocol carries START, COMMIT and ABORT in frames of this (sealed) type. */
export const TOKEN_FRAME_TYPE = 18;

const HANDSHAKE_TYPES: ReadonlySet<number> = new Set([
  FrameType.Hello,
  FrameType.HelloReply,
  FrameType.Confirm,
]);

/** `earlier`: the frames that came before this one in the same direction of the same connection. */
export function classify(
  direction: Direction,
  type: number,
  earlier: readonly { type: number; role: FrameRole }[],
): FrameRole {
  if (HANDSHAKE_TYPES.has(type)) return 'handshake';
  const controlsBefore = earlier.filter((frame) => frame.type === FrameType.Control).length;
  if (direction === 'to-destination') {
    if (type === FrameType.Pages) return 'pages';
    if (type === TOKEN_FRAME_TYPE) return 'start';
    if (type !== FrameType.Control) return 'unknown';
    if (earlier.some((frame) => frame.role === 'start')) return 'unknown';
    if (earlier.some((frame) => frame.type === FrameType.Pages)) return 'start';
    return (['prefault', 'begin'] as const)[controlsBefore] ?? 'start';
  }
  if (type === TOKEN_FRAME_TYPE) return 'commit-or-abort';
  if (type !== FrameType.Control) return 'unknown';
  return (['prefaulted', 'commit-or-abort'] as const)[controlsBefore] ?? 'unknown';
}

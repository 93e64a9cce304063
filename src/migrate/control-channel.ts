import type { Opener, Sealer } from '../crypto/seal.js';
import { FrameType } from '../wire/frame.js';
import type { FramedSocket } from '../wire/framed-socket.js';
import { type ControlMessage, controlMessage, TOKEN_MESSAGES } from './messages.js';

export class ProtocolError extends Error {
  override name = 'ProtocolError';
}

const frameTypeOf = (message: ControlMessage): FrameType =>
  TOKEN_MESSAGES.has(message.t) ? FrameType.Token : FrameType.Control;

/**
 * Seals a control message under the migration keys and sends it. `epoch` goes into the (authenticated)
 * header; ATTACH uses it to name the generation of the connection it opens.
 */
export function sendControl(
  channel: FramedSocket,
  sealer: Sealer,
  message: ControlMessage,
  epoch = 0,
): Promise<void> {
  return channel.send(
    sealer.seal({ type: frameTypeOf(message), epoch }, Buffer.from(JSON.stringify(message))),
  );
}

/** Opens, parses and validates a control message; any other frame here is a protocol violation. */
export function openControl(
  frame: Awaited<ReturnType<FramedSocket['next']>>,
  opener: Opener,
): ControlMessage {
  const { type } = frame.header;
  if (type !== FrameType.Control && type !== FrameType.Token) {
    throw new ProtocolError(`expected a control or token frame, got frame type ${type}`);
  }
  const plaintext = opener.open(frame);
  if (!plaintext) throw new ProtocolError('control frame without payload');
  let json: unknown;
  try {
    json = JSON.parse(plaintext.toString('utf8'));
  } catch {
    throw new ProtocolError('control message is not JSON');
  }
  const parsed = controlMessage.safeParse(json);
  if (!parsed.success)
    throw new ProtocolError(`malformed control message: ${parsed.error.issues[0]?.message}`);
  // The frame type is authenticated with the message, so a mismatch is a peer bug, not an attacker.
  if (frameTypeOf(parsed.data) !== type) {
    throw new ProtocolError(`'${parsed.data.t}' arrived in a frame of type ${FrameType[type]}`);
  }
  return parsed.data;
}

/** With a deadline, a peer that stays silent fails the wait with a ProtocolError naming what was awaited. */
export async function receiveControl(
  channel: FramedSocket,
  opener: Opener,
  deadline?: { ms: number; awaiting: string },
): Promise<ControlMessage> {
  if (!deadline) return openControl(await channel.next(), opener);
  const expired = new AbortController();
  const timer = setTimeout(
    () => expired.abort(new ProtocolError(`no ${deadline.awaiting} within ${deadline.ms} ms`)),
    deadline.ms,
  );
  try {
    return openControl(await channel.next(expired.signal), opener);
  } finally {
    clearTimeout(timer);
  }
}

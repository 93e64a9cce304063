import type { Opener, Sealer } from '../crypto/seal.js';
import { FrameType } from '../wire/frame.js';
import type { FramedSocket } from '../wire/framed-socket.js';
import { type ControlMessage, controlMessage } from './messages.js';

export class ProtocolError extends Error {
  override name = 'ProtocolError';
}

/** Seals a control message under the migration keys and sends it. */
export function sendControl(channel: FramedSocket, sealer: Sealer, message: ControlMessage): Promise<void> {
  return channel.send(sealer.seal({ type: FrameType.Control }, Buffer.from(JSON.stringify(message))));
}

/** Opens, parses and validates a control message; any other frame here is a protocol violation. */
export function openControl(
  frame: Awaited<ReturnType<FramedSocket['next']>>,
  opener: Opener,
): ControlMessage {
  if (frame.header.type !== FrameType.Control) {
    throw new ProtocolError(`expected a control frame, got frame type ${frame.header.type}`);
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
  return parsed.data;
}

export async function receiveControl(channel: FramedSocket, opener: Opener): Promise<ControlMessage> {
  return openControl(await channel.next(), opener);
}

import type net from 'node:net';
import type { SessionKeys } from '../crypto/handshake.js';
import { channelKey } from '../crypto/key-schedule.js';
import { Opener, Sealer } from '../crypto/seal.js';
import { dial } from '../wire/dial.js';
import { FrameType, plainFrame } from '../wire/frame.js';
import { FramedSocket } from '../wire/framed-socket.js';
import { encodePreamble } from '../wire/preamble.js';
import { openControl, ProtocolError, sendControl } from './control-channel.js';

/**
 * The urgent channel of post-copy: a second connection, so that a demanded page never queues behind
 * bulk data in a socket buffer (QEMU's postcopy-preempt lesson). The source opens it through the same
 * peer port and ticket as the first connection; its first frame, ATTACH, is sealed under a key of its
 * own derived from the handshake (channelKey), with the connection's generation in the header, so
 * the destination knows which key opens it and a host cannot splice in anything else.
 */
export interface UrgentChannel {
  channel: FramedSocket;
  sealer: Sealer;
  opener: Opener;
  generation: number;
}

export interface DataTarget {
  host: string;
  port: number;
  ticket: string;
  peerAuth: string;
}

const CONNECT_TIMEOUT_MS = 10_000;
const ATTACH_TIMEOUT_MS = 10_000;

function keysFor(keys: SessionKeys, generation: number): { sealer: Sealer; opener: Opener } {
  const other = keys.role === 'source' ? 'destination' : 'source';
  return {
    sealer: new Sealer(channelKey(keys.channelSecret, 'urgent', keys.role, generation), keys.migrationId),
    opener: new Opener(channelKey(keys.channelSecret, 'urgent', other, generation), keys.migrationId),
  };
}

/** Source: connects, waits for READY, sends ATTACH. */
export async function openUrgentChannel(
  target: DataTarget,
  keys: SessionKeys,
  generation: number,
): Promise<UrgentChannel> {
  const socket = await dial(target.host, target.port, CONNECT_TIMEOUT_MS);
  socket.write(encodePreamble(target.ticket, target.peerAuth));
  const channel = new FramedSocket(socket);
  try {
    const ready = await channel.next(AbortSignal.timeout(ATTACH_TIMEOUT_MS));
    if (ready.header.type !== FrameType.Ready || ready.header.sealed || ready.bodyLength !== 0) {
      throw new ProtocolError(`expected READY on the urgent channel, got frame type ${ready.header.type}`);
    }
  } catch (err) {
    channel.destroy();
    throw err;
  }
  const { sealer, opener } = keysFor(keys, generation);
  await sendControl(channel, sealer, { t: 'attach', channel: 'urgent' }, generation);
  return { channel, sealer, opener, generation };
}

/** Destination: the first frame must be an ATTACH that opens under the urgent key of its generation. */
export async function acceptUrgentChannel(
  socket: net.Socket,
  keys: SessionKeys,
  lastGeneration: number,
): Promise<UrgentChannel> {
  const channel = new FramedSocket(socket);
  try {
    await channel.send(plainFrame(FrameType.Ready, Buffer.alloc(0)));
    const expired = AbortSignal.timeout(ATTACH_TIMEOUT_MS);
    const frame = await channel.next(expired);
    const generation = frame.header.epoch;
    if (!(generation > lastGeneration)) {
      throw new ProtocolError(`connection of generation ${generation} after ${lastGeneration}`);
    }
    const { sealer, opener } = keysFor(keys, generation);
    const attach = openControl(frame, opener);
    if (attach.t !== 'attach') throw new ProtocolError(`expected ATTACH, got '${attach.t}'`);
    return { channel, sealer, opener, generation };
  } catch (err) {
    channel.destroy();
    throw err;
  }
}

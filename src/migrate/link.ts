import type net from 'node:net';
import type { SessionKeys } from '../crypto/handshake.js';
import { channelKey } from '../crypto/key-schedule.js';
import { Opener, Sealer } from '../crypto/seal.js';
import { dial } from '../wire/dial.js';
import { FrameType, plainFrame } from '../wire/frame.js';
import { FramedSocket } from '../wire/framed-socket.js';
import { encodePreamble } from '../wire/preamble.js';
import { openControl, ProtocolError } from './control-channel.js';

/**
 * The connections of one migration after the handshake. The first connection carries the handshake,
 * the control messages and the bulk pages (generation 0, handshake keys). Post-copy adds the urgent
 * channel, so that a demanded page never queues behind bulk data in a socket buffer (QEMU's
 * postcopy-preempt lesson). When the network breaks after START, the source dials both again as a
 * new generation (DESIGN.md §4: both sides keep their keys and resume the same migration).
 *
 * Every connection opened after the handshake starts with READY from the destination enclave (see
 * FrameType.Ready), then ATTACH from the source, sealed under a key of its own derived from the
 * handshake for that channel, direction and generation (channelKey). The generation and the channel
 * travel in the authenticated header (epoch, firstPage), so the destination knows which key opens it;
 * a frame of an earlier connection never opens on a later one, and each generation's frame counter
 * starts at 0 under a key that never sealed anything, so no nonce repeats.
 */
export type ChannelName = 'bulk' | 'urgent';
const CHANNEL_IDS: Record<ChannelName, number> = { bulk: 0, urgent: 1 };

export interface Channel {
  name: ChannelName;
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
/** A source send that cannot drain for this long means the link went dark (see FramedSocket). */
const SEND_STALL_MS = 10_000;
const ATTACH_TIMEOUT_MS = 10_000;

function keysFor(
  keys: SessionKeys,
  name: ChannelName,
  generation: number,
): { sealer: Sealer; opener: Opener } {
  const other = keys.role === 'source' ? 'destination' : 'source';
  return {
    sealer: new Sealer(channelKey(keys.channelSecret, name, keys.role, generation), keys.migrationId),
    opener: new Opener(channelKey(keys.channelSecret, name, other, generation), keys.migrationId),
  };
}

/** Source: a connection to the destination's peer port, the routing preamble written. */
export async function dialData(target: DataTarget): Promise<FramedSocket> {
  const socket = await dial(target.host, target.port, CONNECT_TIMEOUT_MS);
  socket.write(encodePreamble(target.ticket, target.peerAuth));
  return new FramedSocket(socket, { sendStallMs: SEND_STALL_MS });
}

/** Source: connects, waits for READY, sends ATTACH. */
export async function openChannel(
  target: DataTarget,
  keys: SessionKeys,
  name: ChannelName,
  generation: number,
): Promise<Channel> {
  const channel = await dialData(target);
  try {
    const ready = await channel.next(AbortSignal.timeout(ATTACH_TIMEOUT_MS));
    if (ready.header.type !== FrameType.Ready || ready.header.sealed || ready.bodyLength !== 0) {
      throw new ProtocolError(`expected READY on a new connection, got frame type ${ready.header.type}`);
    }
    const { sealer, opener } = keysFor(keys, name, generation);
    await channel.send(
      sealer.seal(
        { type: FrameType.Control, epoch: generation, firstPage: CHANNEL_IDS[name] },
        Buffer.from(JSON.stringify({ t: 'attach', channel: name })),
      ),
    );
    return { name, channel, sealer, opener, generation };
  } catch (err) {
    channel.destroy();
    throw err;
  }
}

/** Destination: the first frame must be an ATTACH that opens under the key its header names. */
export async function acceptChannel(socket: net.Socket, keys: SessionKeys): Promise<Channel> {
  const channel = new FramedSocket(socket);
  try {
    await channel.send(plainFrame(FrameType.Ready, Buffer.alloc(0)));
    const frame = await channel.next(AbortSignal.timeout(ATTACH_TIMEOUT_MS));
    const { epoch: generation, firstPage: id } = frame.header;
    const name = (Object.keys(CHANNEL_IDS) as ChannelName[]).find((n) => CHANNEL_IDS[n] === id);
    if (!name || generation < 1) throw new ProtocolError('ATTACH names no known channel or generation');
    const { sealer, opener } = keysFor(keys, name, generation);
    const attach = openControl(frame, opener);
    if (attach.t !== 'attach' || attach.channel !== name) {
      throw new ProtocolError(`expected ATTACH of the ${name} channel, got '${attach.t}'`);
    }
    return { name, channel, sealer, opener, generation };
  } catch (err) {
    channel.destroy();
    throw err;
  }
}

/** The first connection, once the handshake is done: the bulk channel of generation 0. */
export function firstChannel(channel: FramedSocket, keys: SessionKeys): Channel {
  return {
    name: 'bulk',
    channel,
    sealer: new Sealer(keys.sendKey, keys.migrationId),
    opener: new Opener(keys.recvKey, keys.migrationId),
    generation: 0,
  };
}

import net from 'node:net';
import { PREAMBLE_BYTES } from '../../src/wire/preamble.js';
import { classify, type Direction, type FrameRole } from './frame-roles.js';
import { FrameSplitter, type RawHeader, readRawHeader } from './frame-splitter.js';

/**
 * A malicious relay on the data path (`migrate --data-address`) that understands frames: it forwards
 * the routing preamble untouched, then cuts both directions into complete frames and asks an `attack`
 * what to do with each one. It records every frame it saw and every attack it performed, so that a test
 * can replay recorded frames and prove that its attack actually happened.
 */

/** What to do with one frame. `hold`/`release` reorder; `cut` and `truncate` end the connection. */
export type Action =
  | { do: 'forward' }
  | { do: 'drop' }
  | { do: 'duplicate' }
  /** Send these bytes (zero, one or several frames, or garbage) instead of the frame. */
  | { do: 'replace'; bytes: Buffer }
  | { do: 'inject'; before?: readonly Buffer[]; after?: readonly Buffer[] }
  /** Keep the frame aside (it is not forwarded) until a later `release` in the same direction. */
  | { do: 'hold' }
  /** Forward this frame and every held frame of its direction, in the given order. */
  | { do: 'release'; order: 'held-first' | 'this-first' }
  /** XOR `mask` (default 0x01) into the byte at `offset` from the frame's start (header or body). */
  | { do: 'flip'; offset: number; mask?: number }
  /** Destroy both sides, forwarding this frame first (`after`) or not (`before`). */
  | { do: 'cut'; when: 'before' | 'after' }
  /** Forward the first `keep` bytes of the frame, then end its receiver and destroy the other side. */
  | { do: 'truncate'; keep: number };

export const FORWARD: Action = { do: 'forward' };

export interface RelayedFrame {
  /** Connections are numbered from 0 in the order they were accepted. */
  connection: number;
  direction: Direction;
  /** Position among the frames of its direction on its connection, from 0. */
  index: number;
  role: FrameRole;
  /** Position among the frames of the same role, direction and connection, from 0. */
  ordinal: number;
  header: RawHeader;
  /** A copy of the frame exactly as it arrived, header and body. */
  bytes: Buffer;
}

/** One attack performed: every action other than `forward`, and a cut inside the preamble. */
export interface RelayEvent {
  connection: number;
  action: Action['do'] | 'cut-preamble';
  /** The frame acted on; absent for a cut inside the preamble. */
  frame?: Pick<RelayedFrame, 'direction' | 'index' | 'role' | 'ordinal'>;
}

export type Attack = (frame: RelayedFrame, relay: FrameRelay) => Action;

export interface FrameRelayOptions {
  /** Forward only this many bytes of the preamble, then destroy both sides. */
  cutPreambleAfter?: number;
}

/** How long a peer that was sent a FIN may take to hang up before its connection is destroyed. */
const CUT_FLUSH_MS = 1000;

export class FrameRelay {
  readonly frames: RelayedFrame[] = [];
  readonly events: RelayEvent[] = [];
  /** Exceptions thrown by an attack (or its action): the relay cut that connection and keeps them here. */
  readonly attackErrors: Error[] = [];
  port = 0;
  private readonly server: net.Server;
  private readonly connections: RelayConnection[] = [];

  constructor(
    readonly target: { host: string; port: number },
    readonly attack: Attack = () => FORWARD,
    readonly options: FrameRelayOptions = {},
  ) {
    this.server = net.createServer({ allowHalfOpen: true, noDelay: true }, (source) => {
      const destination = net.connect({ ...this.target, allowHalfOpen: true, noDelay: true });
      this.connections.push(new RelayConnection(this, this.connections.length, source, destination));
    });
  }

  listen(host = '127.0.0.1'): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host, port: 0 }, () => {
        this.server.off('error', reject);
        this.port = (this.server.address() as net.AddressInfo).port;
        resolve(this.port);
      });
    });
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  close(): void {
    for (const connection of this.connections) connection.destroy();
    this.server.close();
  }

  /** The attacks performed with this action (and, if given, on frames of this role). */
  performed(action: RelayEvent['action'], role?: FrameRole): RelayEvent[] {
    return this.events.filter((e) => e.action === action && (role === undefined || e.frame?.role === role));
  }

  framesOf(direction: Direction, role?: FrameRole): RelayedFrame[] {
    return this.frames.filter((f) => f.direction === direction && (role === undefined || f.role === role));
  }
}

/** The state of one direction of one connection. */
class Lane {
  readonly splitter = new FrameSplitter();
  readonly seen: { type: number; role: FrameRole }[] = [];
  readonly held: Buffer[] = [];
  readonly roleCounts = new Map<FrameRole, number>();
  pausedForDrain = false;

  constructor(
    readonly direction: Direction,
    /** Where this direction's bytes come from and go to. */
    readonly input: net.Socket,
    readonly output: net.Socket,
  ) {}
}

class RelayConnection {
  private readonly toDestination: Lane;
  private readonly toSource: Lane;
  private preamble = Buffer.alloc(0);
  private cut = false;

  constructor(
    private readonly relay: FrameRelay,
    private readonly id: number,
    private readonly source: net.Socket,
    private readonly destination: net.Socket,
  ) {
    this.toDestination = new Lane('to-destination', source, destination);
    this.toSource = new Lane('to-source', destination, source);
    source.on('data', (chunk: Buffer) => this.fromSource(chunk));
    destination.on('data', (chunk: Buffer) => this.receive(this.toSource, chunk));
    for (const [socket, peer] of [
      [source, destination],
      [destination, source],
    ] as const) {
      // A FIN travels on as a FIN (after what is queued), a reset as a reset.
      socket.on('end', () => {
        if (!this.cut) peer.end();
      });
      socket.on('error', () => this.cutConnection(undefined));
      socket.on('close', () => {
        if (!this.cut) hangUp(peer);
      });
    }
  }

  destroy(): void {
    this.cut = true;
    this.source.destroy();
    this.destination.destroy();
  }

  private fromSource(chunk: Buffer): void {
    if (this.cut) return;
    const missing = PREAMBLE_BYTES - this.preamble.length;
    if (missing <= 0) return this.receive(this.toDestination, chunk);
    this.preamble = Buffer.concat([this.preamble, chunk.subarray(0, missing)]);
    const limit = this.relay.options.cutPreambleAfter;
    if (limit !== undefined && this.preamble.length > limit) {
      this.send(this.toDestination, this.preamble.subarray(0, limit));
      this.relay.events.push({ connection: this.id, action: 'cut-preamble' });
      return this.cutConnection(this.destination);
    }
    if (this.preamble.length === PREAMBLE_BYTES) this.send(this.toDestination, this.preamble);
    if (chunk.length > missing) this.receive(this.toDestination, chunk.subarray(missing));
  }

  private receive(lane: Lane, chunk: Buffer): void {
    if (this.cut) return;
    for (const bytes of lane.splitter.push(chunk)) {
      this.handle(lane, bytes);
      if (this.cut) return;
    }
  }

  private handle(lane: Lane, bytes: Buffer): void {
    const header = readRawHeader(bytes);
    const role = classify(lane.direction, header.type, lane.seen);
    lane.seen.push({ type: header.type, role });
    const ordinal = lane.roleCounts.get(role) ?? 0;
    lane.roleCounts.set(role, ordinal + 1);
    const frame: RelayedFrame = {
      connection: this.id,
      direction: lane.direction,
      index: lane.seen.length - 1,
      role,
      ordinal,
      header,
      bytes,
    };
    this.relay.frames.push(frame);

    try {
      const action = this.relay.attack(frame, this.relay);
      if (action.do !== 'forward') {
        const { direction, index } = frame;
        const event = { direction, index, role, ordinal };
        this.relay.events.push({ connection: this.id, action: action.do, frame: event });
      }
      this.perform(lane, bytes, action);
    } catch (err) {
      this.relay.attackErrors.push(err instanceof Error ? err : new Error(String(err)));
      this.cutConnection(undefined);
    }
  }

  private perform(lane: Lane, bytes: Buffer, action: Action): void {
    switch (action.do) {
      case 'forward':
        return this.send(lane, bytes);
      case 'drop':
        return;
      case 'duplicate':
        return this.send(lane, bytes, bytes);
      case 'replace':
        return this.send(lane, action.bytes);
      case 'inject':
        return this.send(lane, ...(action.before ?? []), bytes, ...(action.after ?? []));
      case 'hold':
        lane.held.push(bytes);
        return;
      case 'release': {
        const held = lane.held.splice(0);
        return action.order === 'held-first'
          ? this.send(lane, ...held, bytes)
          : this.send(lane, bytes, ...held);
      }
      case 'flip': {
        if (action.offset < 0 || action.offset >= bytes.length) {
          throw new RangeError(`flip offset ${action.offset} outside a frame of ${bytes.length} B`);
        }
        const flipped = Buffer.from(bytes);
        flipped[action.offset]! ^= action.mask ?? 0x01;
        return this.send(lane, flipped);
      }
      case 'cut':
        if (action.when === 'after') this.send(lane, bytes);
        return this.cutConnection(action.when === 'after' ? lane.output : undefined);
      case 'truncate':
        this.send(lane, bytes.subarray(0, action.keep));
        return this.cutConnection(lane.output);
    }
  }

  /** Writes to the lane's output; while that socket is saturated, stops reading the lane's input. */
  private send(lane: Lane, ...parts: Buffer[]): void {
    let saturated = false;
    for (const part of parts) saturated = !lane.output.write(part) || saturated;
    if (!saturated || lane.pausedForDrain) return;
    lane.pausedForDrain = true;
    lane.input.pause();
    lane.output.once('drain', () => {
      lane.pausedForDrain = false;
      if (!this.cut) lane.input.resume();
    });
  }

  /**
   * `receiver` (if any) still gets what was written to it, then a FIN; the other side is reset, so that
   * its next write fails at once instead of filling buffers nobody reads. The destination always learns
   * first: when it is the receiver, the source is not read any more and is reset only once the
   * destination hung up, so the destination's verdict on what it got is final (and logged) before the
   * source can give up and have it stopped.
   */
  private cutConnection(receiver: net.Socket | undefined): void {
    this.cut = true;
    if (receiver === this.destination) {
      this.source.pause();
      return hangUp(this.destination, () => reset(this.source));
    }
    reset(this.destination);
    if (receiver === this.source) this.source.end(() => this.source.destroy());
    else reset(this.source);
  }
}

function reset(socket: net.Socket): void {
  if (!socket.destroyed) socket.resetAndDestroy();
}

/**
 * Ends our side after what is queued and destroys the socket once the peer hung up too (or, if it
 * does not, after CUT_FLUSH_MS); then calls `then`.
 */
function hangUp(socket: net.Socket, then: () => void = () => {}): void {
  if (socket.destroyed) return then();
  let done = false;
  const finish = (): void => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    socket.destroy();
    then();
  };
  const timer = setTimeout(finish, CUT_FLUSH_MS);
  timer.unref();
  socket.once('end', finish);
  socket.once('close', finish);
  socket.end();
}

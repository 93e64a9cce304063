import net from 'node:net';
import type pino from 'pino';
import { decodePreamble, PREAMBLE_BYTES } from '../wire/preamble.js';
import { peerAuthMatches } from './peer-auth.js';

const PREAMBLE_TIMEOUT_MS = 10_000;

export interface PeerServerOptions {
  /** The cluster's control token: source hosts MAC the ticket with it (peer-auth.ts). */
  token: string;
  /** Hands the socket to the incoming enclave holding the ticket; false if none does. */
  route: (ticket: string, socket: net.Socket) => boolean;
  log: pino.Logger;
}

/**
 * The host's peer port: source enclaves open their data connections here. The host reads only the
 * routing preamble, checks the source host's peer auth, and hands the socket itself to the incoming
 * enclave, which runs the handshake; the host never sees a key and never relays page data through its
 * own code. A connection that fails any check is closed before any enclave sees it.
 */
export class PeerServer {
  private readonly server: net.Server;

  constructor(private readonly options: PeerServerOptions) {
    this.server = net.createServer({ pauseOnConnect: false, noDelay: true }, (socket) => this.accept(socket));
  }

  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host, port }, () => {
        this.server.off('error', reject);
        resolve((this.server.address() as net.AddressInfo).port);
      });
    });
  }

  close(): void {
    this.server.close();
  }

  private accept(socket: net.Socket): void {
    const remote = `${socket.remoteAddress}:${socket.remotePort}`;
    const refuse = (reason: string) => {
      this.options.log.warn({ remote, reason }, 'peer connection refused');
      socket.destroy();
    };
    socket.setTimeout(PREAMBLE_TIMEOUT_MS, () => refuse('no preamble in time'));
    socket.on('error', () => socket.destroy());
    const onReadable = () => {
      const bytes = socket.read(PREAMBLE_BYTES) as Buffer | null;
      if (!bytes) return;
      socket.off('readable', onReadable);
      socket.setTimeout(0);
      socket.pause();
      stopReading(socket);
      // The source sends nothing more until the enclave speaks: bytes here would be lost in the handover.
      if (socket.readableLength > 0) return refuse('bytes after the preamble before the enclave spoke');
      const preamble = decodePreamble(bytes);
      if (!preamble) return refuse('not a constmig data preamble');
      // Before routing, so a connection without the cluster's token never reaches an enclave.
      if (!peerAuthMatches(this.options.token, preamble.ticket, preamble.peerAuth)) {
        return refuse('wrong peer authentication');
      }
      if (!this.options.route(preamble.ticket, socket)) refuse('no incoming enclave holds this ticket');
    };
    socket.on('readable', onReadable);
  }
}

/**
 * Stops this process reading the socket, before it is handed to an enclave. pause() alone does not:
 * Node's net keeps reading into the stream's buffer until it is full, and after child.send() the
 * host's copy of the socket drops what it reads until the child's ACK closes it. Bytes the source
 * sent the enclave in that window were lost (handshakes and ATTACHes timed out now and then on a
 * loaded machine; test/host/peer-server.test.ts). Node has no public call for this; the handle's
 * readStop() is what net itself calls under back-pressure.
 */
function stopReading(socket: net.Socket): void {
  const handle = (socket as unknown as { _handle?: { reading?: boolean; readStop?: () => number } })._handle;
  if (!handle?.readStop) return;
  handle.reading = false;
  handle.readStop();
}

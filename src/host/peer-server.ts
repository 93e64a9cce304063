import net from 'node:net';
import { decodePreamble, PREAMBLE_BYTES } from '../wire/preamble.js';

const PREAMBLE_TIMEOUT_MS = 10_000;

/**
 * The host's peer port: source enclaves open their data connections here. The host reads only the
 * routing preamble and hands the socket itself to the incoming enclave, which runs the handshake; the
 * host never sees a key and never relays page data through its own code.
 */
export class PeerServer {
  private readonly server: net.Server;

  constructor(private readonly route: (ticket: string, socket: net.Socket) => boolean) {
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
    socket.setTimeout(PREAMBLE_TIMEOUT_MS, () => socket.destroy());
    socket.on('error', () => socket.destroy());
    const onReadable = () => {
      const preamble = socket.read(PREAMBLE_BYTES) as Buffer | null;
      if (!preamble) return;
      socket.off('readable', onReadable);
      socket.setTimeout(0);
      socket.pause();
      const ticket = decodePreamble(preamble);
      if (!ticket || !this.route(ticket, socket)) socket.destroy();
    };
    socket.on('readable', onReadable);
  }
}

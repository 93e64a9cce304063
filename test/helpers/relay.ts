import net from 'node:net';

/**
 * A TCP relay that sits on the data path (`migrate --data-address`), as a NAT, a proxy or an attacker
 * would. `tamper` sees every chunk flowing from the source to the destination and may change it.
 */
export class Relay {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  bytesForwarded = 0;
  port = 0;

  constructor(
    private readonly target: { host: string; port: number },
    private readonly tamper: (chunk: Buffer, offset: number) => Buffer = (c) => c,
  ) {
    this.server = net.createServer((inbound) => {
      const outbound = net.connect(this.target);
      let offset = 0;
      for (const s of [inbound, outbound]) {
        this.sockets.add(s);
        s.on('error', () => {
          inbound.destroy();
          outbound.destroy();
        });
        s.on('close', () => {
          inbound.destroy();
          outbound.destroy();
        });
      }
      inbound.on('data', (chunk: Buffer) => {
        const out = this.tamper(chunk, offset);
        offset += chunk.length;
        this.bytesForwarded += chunk.length;
        outbound.write(out);
      });
      outbound.pipe(inbound);
    });
  }

  listen(host = '127.0.0.1'): Promise<number> {
    return new Promise((resolve) => {
      this.server.listen({ host, port: 0 }, () => {
        this.port = (this.server.address() as net.AddressInfo).port;
        resolve(this.port);
      });
    });
  }

  close(): void {
    for (const s of this.sockets) s.destroy();
    this.server.close();
  }
}

import net from 'node:net';

/** A port nothing listens on (bound once, then released), for "connection refused" cases. */
export function unusedPort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.listen({ host, port: 0 }, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

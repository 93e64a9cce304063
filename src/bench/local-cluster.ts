import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { HostClient } from '../host/client.js';
import { HostDaemon } from '../host/daemon.js';
import { UserError } from '../util/errors.js';

export const SOURCE_BIND = '127.0.0.1';
export const DESTINATION_BIND = '127.0.0.2';

/**
 * Two host daemons on this machine, one on 127.0.0.1 and one on 127.0.0.2 (every loopback address
 * works on Linux), each with its own state directory and log file, sharing one control token and one
 * sim root. Used by
 * the demo, the benchmark and the end-to-end tests.
 */
export class LocalCluster {
  readonly token = randomBytes(32).toString('hex');
  readonly source: HostDaemon;
  readonly destination: HostDaemon;

  private constructor(readonly dir: string) {
    const host = (bind: string) =>
      new HostDaemon({
        listen: { host: bind, port: 0 },
        bind,
        peerPort: null,
        stateDir: path.join(dir, bind),
        token: this.token,
        logFile: path.join(dir, bind, 'host.log'),
        simRootKeyFile: path.join(dir, 'sim-root-key.pem'),
      });
    this.source = host(SOURCE_BIND);
    this.destination = host(DESTINATION_BIND);
  }

  static async start(prefix = 'constmig-'): Promise<LocalCluster> {
    const cluster = new LocalCluster(fs.mkdtempSync(path.join(os.tmpdir(), prefix)));
    await Promise.all([cluster.source.start(), cluster.destination.start()]);
    return cluster;
  }

  client(host: HostDaemon): HostClient {
    return new HostClient(host.controlUrl, this.token);
  }

  /** Stops both hosts and their enclaves; removes the state directory unless asked to keep the logs. */
  async close(keepLogs = false): Promise<void> {
    await Promise.all([this.source.close(), this.destination.close()]);
    if (!keepLogs) fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A port free on both loopback addresses, so that an application can keep it when it moves. */
export async function freePortOnBoth(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await listenOnce(SOURCE_BIND, 0);
    if (port !== null && (await listenOnce(DESTINATION_BIND, port)) !== null) return port;
  }
  throw new UserError(`could not find a port free on both ${SOURCE_BIND} and ${DESTINATION_BIND}`);
}

function listenOnce(host: string, port: number): Promise<number | null> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(null));
    server.listen({ host, port }, () => {
      const bound = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(bound));
    });
  });
}

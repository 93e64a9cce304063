import net from 'node:net';
import type { AppContext } from './app.js';
import type { CommandOutcome } from './kv/commands.js';
import { ClientConnection, type ConnectionHost } from './kv/connection.js';
import type { ReplyWriter } from './kv/resp.js';

/** Runs one parsed request and writes its reply; throws only for a fault of the server. */
export type RespExecutor = (args: Buffer[], out: ReplyWriter) => CommandOutcome;

/** `holding`: connections are accepted and their input kept, but nothing runs (before serve, or paused). */
type Phase = 'holding' | 'serving' | 'closed';

/**
 * The network side every application shares: a Redis-protocol listener whose connections are held
 * (input kept, nothing executed) until serve(), and again after pause(), which is what makes a pause
 * quiescent and lets a destination accept clients before its heap has arrived.
 */
export class RespServer implements ConnectionHost {
  private phase: Phase = 'holding';
  private server: net.Server | null = null;
  private readonly connections = new Set<ClientConnection>();
  private connectionsAccepted = 0;
  private commandsRun = 0;

  constructor(
    private readonly ctx: AppContext,
    private readonly name: string,
    private readonly executor: RespExecutor,
  ) {}

  get serving(): boolean {
    return this.phase === 'serving';
  }

  get boundPort(): number {
    const address = this.server?.address();
    return address && typeof address === 'object' ? address.port : this.ctx.port;
  }

  get connectedClients(): number {
    return this.connections.size;
  }

  get totalConnections(): number {
    return this.connectionsAccepted;
  }

  /** Commands executed since this process started (an application adds what it carried over). */
  get totalCommands(): number {
    return this.commandsRun;
  }

  listen(): Promise<void> {
    if (this.server) return Promise.reject(new Error(`${this.name}: already listening`));
    const { bindAddress, port } = this.ctx;
    const server = net.createServer((socket) => this.accept(socket));
    return new Promise((resolve, reject) => {
      const failed = (err: NodeJS.ErrnoException): void => {
        server.close();
        reject(listenError(err, bindAddress, port));
      };
      server.once('error', failed);
      server.listen({ host: bindAddress, port }, () => {
        server.off('error', failed);
        server.on('error', (err) => this.ctx.log(`${this.name} listener error`, { err: err.message }));
        this.server = server;
        this.ctx.log(`${this.name} listening`, { address: bindAddress, port: this.boundPort });
        resolve();
      });
    });
  }

  /**
   * Serves from now on. Requests that arrived while holding run on the next turn of the event loop,
   * before anything that arrives later: the application serves from this instant (where a migration's
   * downtime ends), and a first request slowed by post-copy faults shows in the clients' gap, not
   * hidden inside serve().
   */
  serve(): void {
    if (this.phase === 'closed') throw new Error(`${this.name}: serve() after close()`);
    this.phase = 'serving';
    setImmediate(() => {
      for (const connection of this.connections) connection.process();
    });
  }

  pause(): void {
    if (this.phase === 'serving') this.phase = 'holding';
  }

  async disconnect(): Promise<void> {
    for (const connection of this.connections) connection.destroy();
    this.connections.clear();
    const server = this.server;
    this.server = null;
    if (!server) return;
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  async close(): Promise<void> {
    this.phase = 'closed';
    await this.disconnect();
  }

  execute(args: Buffer[], out: ReplyWriter): CommandOutcome {
    this.commandsRun++;
    try {
      return this.executor(args, out);
    } catch (err) {
      // A fault of the server, not of the request: the client gets an error, the server goes on.
      const message = err instanceof Error ? err.message : String(err);
      this.ctx.log(`${this.name} command failed`, { err: message });
      out.error(`ERR internal error: ${message}`);
      return 'continue';
    }
  }

  closed(connection: ClientConnection): void {
    this.connections.delete(connection);
  }

  private accept(socket: net.Socket): void {
    if (this.phase === 'closed') {
      socket.destroy();
      return;
    }
    this.connectionsAccepted++;
    this.connections.add(new ClientConnection(socket, this));
  }
}

function listenError(err: NodeJS.ErrnoException, host: string, port: number): Error {
  const address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  if (err.code === 'EADDRINUSE') return new Error(`port ${address} is already in use`);
  if (err.code === 'EADDRNOTAVAIL') return new Error(`address ${host} is not available on this host`);
  return new Error(`cannot listen on ${address}: ${err.message}`);
}

import { type ChildProcess, execFile, spawn, type SpawnOptions, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { HostApiError, HostClient } from '../host/client.js';
import { loadOrCreateToken } from '../host/token.js';
import { generateEd25519Pem } from '../tee/sim-root.js';
import { errorMessage, UserError } from '../util/errors.js';

/** dist/src/bench → the checkout, which holds scripts/. */
export const NETNS_SH = fileURLToPath(new URL('../../../scripts/netns.sh', import.meta.url));
const CLI_MAIN = fileURLToPath(new URL('../cli/main.js', import.meta.url));

/** Each host has a namespace of its own, so both use the CLI's usual port (peer port: 7402). */
export const CONTROL_PORT = 7401;
const READY_TIMEOUT_MS = 20_000;
const STOP_GRACE_MS = 5_000;

export type Side = 'a' | 'b';

export interface NetnsHost {
  readonly side: Side;
  /** `${name}-a` or `${name}-b`. */
  readonly namespace: string;
  /** The host's address on the link and its daemon's --bind: control, peer and application ports. */
  readonly address: string;
  /** Reachable from the other namespace (what a migration's `to` needs); this process uses client(). */
  readonly controlUrl: string;
}

export interface NetnsClusterOptions {
  /** netns.sh NAME (1-14 of a-z 0-9 -); default: a fresh `cmig-` name, so concurrent runs never meet. */
  name?: string;
  /** tbf rate on both ends of the link, e.g. '1gbit' or '10gbit'. */
  rate?: string;
  /** netem delay on both ends of the link, e.g. '1ms'. */
  delay?: string;
  /** More arguments for both `constmig host` processes, e.g. ['--policy', file]. */
  hostArgs?: string[];
}

const execFileAsync = promisify(execFile);

/** Runs netns.sh; its own one-line message (it never prints a stack) becomes the error. */
async function netns(args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileAsync(NETNS_SH, args, { encoding: 'utf8' });
    return stdout.trim();
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new UserError(stderr || `${NETNS_SH} ${args.join(' ')}: ${errorMessage(err)}`);
  }
}

/**
 * Two host daemons in two network namespaces joined by a veth pair (scripts/netns.sh), optionally
 * shaped: source in `${name}-a`, destination in `${name}-b`. Unlike LocalCluster, each daemon is a
 * separate `constmig host` process, and migration data crosses a real link that can be throttled and
 * cut. The hosts share one control token file and one sim root key file in `dir`.
 *
 * Every listener of a host, its applications' ports included, is on the link and so unreachable
 * from this process's namespace. The control API is relayed (see client()); anything else that talks
 * to an application, such as a load generator, must run inside a namespace: spawnNode().
 */
export class NetnsCluster {
  readonly source: NetnsHost;
  readonly destination: NetnsHost;
  readonly token: string;
  private readonly relays = new Map<Side, { server: net.Server; url: string; sockets: Set<net.Socket> }>();
  private closing: Promise<void> | null = null;

  private constructor(
    readonly name: string,
    readonly dir: string,
    addresses: Record<Side, string>,
    /** Processes whose group close() ends: the daemons (with their enclaves) and the relays. */
    private readonly groups: ChildProcess[],
  ) {
    const host = (side: Side): NetnsHost => ({
      side,
      namespace: `${name}-${side}`,
      address: addresses[side],
      controlUrl: `http://${addresses[side]}:${CONTROL_PORT}`,
    });
    this.source = host('a');
    this.destination = host('b');
    this.token = loadOrCreateToken(this.tokenFile);
    // Written before either daemon starts, so that they never race to create it.
    fs.writeFileSync(this.simRootKeyFile, generateEd25519Pem().privateKeyPem, { mode: 0o600, flag: 'wx' });
  }

  /**
   * Whether this machine can run a NetnsCluster (root, iproute2, namespaces and veth allowed), and
   * shape its link to `rate` if given (the kernel has tbf).
   */
  static available(rate?: string): { ok: true } | { ok: false; reason: string } {
    if (process.platform !== 'linux') return { ok: false, reason: 'network namespaces exist on Linux only' };
    const probe = `cmig-p${process.pid.toString(36)}`;
    const up = spawnSync(NETNS_SH, ['up', probe, ...(rate ? ['--rate', rate] : [])], { encoding: 'utf8' });
    spawnSync(NETNS_SH, ['down', probe], { stdio: 'ignore' });
    if (up.error) return { ok: false, reason: `cannot run ${NETNS_SH}: ${up.error.message}` };
    if (up.status !== 0) return { ok: false, reason: up.stderr.trim() || `netns.sh up exited ${up.status}` };
    return { ok: true };
  }

  /**
   * Creates the namespaces and the link, starts both daemons and waits until their control APIs
   * answer. On any failure everything created so far is removed before the error is thrown.
   */
  static async start(options: NetnsClusterOptions = {}): Promise<NetnsCluster> {
    const name = options.name ?? `cmig-${randomBytes(3).toString('hex')}`;
    const shaping = [
      ...(options.rate ? ['--rate', options.rate] : []),
      ...(options.delay ? ['--delay', options.delay] : []),
    ];
    await netns(['up', name, ...shaping]);
    const groups: ChildProcess[] = [];
    removeOnExit(name, groups);
    let dir: string | undefined;
    let cluster: NetnsCluster | undefined;
    try {
      const [a, b] = await Promise.all([netns(['addr', name, 'a']), netns(['addr', name, 'b'])]);
      dir = fs.mkdtempSync(path.join(os.tmpdir(), `constmig-${name}-`));
      cluster = new NetnsCluster(name, dir, { a, b }, groups);
      // Both launches settle before any cleanup, so that none spawns or listens after close().
      const launched = await Promise.allSettled([
        cluster.launch(cluster.source, options),
        cluster.launch(cluster.destination, options),
      ]);
      for (const result of launched) if (result.status === 'rejected') throw result.reason;
      return cluster;
    } catch (err) {
      if (cluster) await cluster.close();
      else {
        await netns(['down', name]);
        openSetups.delete(name);
        if (dir) fs.rmSync(dir, { recursive: true, force: true });
      }
      throw err;
    }
  }

  private get tokenFile(): string {
    return path.join(this.dir, 'control-token');
  }

  private get simRootKeyFile(): string {
    return path.join(this.dir, 'sim-root-key.pem');
  }

  /** A client of the host's control API, through the relay into its namespace. */
  client(host: NetnsHost): HostClient {
    const relay = this.relays.get(host.side);
    if (!relay) throw new Error(`no control relay for side ${host.side}: the cluster is closed`);
    return new HostClient(relay.url, this.token);
  }

  /** Takes both ends of the link down: the hosts can no longer reach each other. */
  async linkDown(): Promise<void> {
    await netns(['link', this.name, 'down']);
  }

  async linkUp(): Promise<void> {
    await netns(['link', this.name, 'up']);
  }

  /**
   * Runs `node ...args` inside the host's namespace, e.g. a client of an application there (from
   * the other side's namespace, the client's traffic crosses the link). close() ends it at the latest.
   */
  spawnNode(host: NetnsHost, args: string[], options: SpawnOptions = {}): ChildProcess {
    return spawn('ip', ['netns', 'exec', host.namespace, process.execPath, ...args], options);
  }

  /**
   * Stops both daemons (SIGTERM, so that they stop their enclaves; then SIGKILL to the process group
   * after a grace period), removes the namespaces with everything still running in them, and the
   * state directory unless asked to keep the logs. Safe to call more than once.
   */
  close(keepLogs = false): Promise<void> {
    this.closing ??= this.shutDown(keepLogs);
    return this.closing;
  }

  private async shutDown(keepLogs: boolean): Promise<void> {
    for (const relay of this.relays.values()) {
      relay.server.close();
      for (const socket of relay.sockets) socket.destroy();
    }
    this.relays.clear();
    await Promise.all(this.groups.map((child) => stopGroup(child)));
    await netns(['down', this.name]);
    openSetups.delete(this.name);
    if (!keepLogs) fs.rmSync(this.dir, { recursive: true, force: true });
  }

  private async launch(host: NetnsHost, options: NetnsClusterOptions): Promise<void> {
    const stateDir = path.join(this.dir, host.side);
    fs.mkdirSync(stateDir, { mode: 0o700 });
    const logFile = path.join(stateDir, 'host.log');
    const log = fs.openSync(logFile, 'a', 0o600);
    const inNamespace = (args: string[]) =>
      // Its own process group (detached): close() can signal the daemon and its enclaves at once.
      this.track(
        spawn('ip', ['netns', 'exec', host.namespace, process.execPath, ...args], {
          detached: true,
          stdio: ['ignore', log, log],
        }),
      );
    const daemon = inNamespace([
      CLI_MAIN,
      'host',
      ...['--listen', `${host.address}:${CONTROL_PORT}`, '--bind', host.address],
      ...['--token-file', this.tokenFile, '--sim-root-key', this.simRootKeyFile, '--state-dir', stateDir],
      ...(options.hostArgs ?? []),
    ]);
    // A unix socket is the one door between namespaces that needs no interface outside them: the
    // relay listens on it inside the namespace, and a TCP listener here forwards to it.
    const socketPath = path.join(this.dir, `control-${host.side}.sock`);
    const relayMain = `import(${JSON.stringify(import.meta.url)}).then((m) => m.relayControl(...process.argv.slice(1)))`;
    inNamespace(['--input-type=module', '-e', relayMain, socketPath, host.address, String(CONTROL_PORT)]);
    fs.closeSync(log);
    await this.listenRelay(host.side, socketPath);
    await this.waitReady(host, daemon, logFile);
  }

  private track(child: ChildProcess): ChildProcess {
    // Reported by waitReady through the exit code; without a listener it would crash the process.
    child.on('error', () => {});
    this.groups.push(child);
    return child;
  }

  private async listenRelay(side: Side, socketPath: string): Promise<void> {
    const sockets = new Set<net.Socket>();
    const server = net.createServer((client) => {
      const upstream = net.connect(socketPath);
      for (const socket of [client, upstream]) {
        sockets.add(socket);
        socket.once('close', () => sockets.delete(socket));
      }
      relay(client, upstream, `the relay in ${this.name}-${side}`);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: '127.0.0.1', port: 0 }, resolve);
    });
    const { port } = server.address() as net.AddressInfo;
    this.relays.set(side, { server, url: `http://127.0.0.1:${port}`, sockets });
  }

  private async waitReady(host: NetnsHost, daemon: ChildProcess, logFile: string): Promise<void> {
    const client = this.client(host);
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (daemon.exitCode !== null || daemon.signalCode !== null) {
        const how = daemon.exitCode !== null ? `with code ${daemon.exitCode}` : `on ${daemon.signalCode}`;
        throw new UserError(`host in ${host.namespace} exited ${how} before it was ready${logTail(logFile)}`);
      }
      try {
        await client.call('GET', '/v1/info');
        return;
      } catch (err) {
        // 502 comes from a relay that cannot reach it yet; any other answer, even a refusal, means
        // it is up and something else is wrong.
        if (err instanceof HostApiError && err.status !== 502) throw err;
      }
      if (Date.now() > deadline) {
        throw new UserError(
          `host in ${host.namespace} did not answer on ${host.controlUrl} within ${READY_TIMEOUT_MS / 1000} s${logTail(logFile)}`,
        );
      }
      await sleep(100);
    }
  }
}

/**
 * Runs inside a namespace (NetnsCluster.launch): accepts connections on a unix socket and forwards
 * each to the control API on the namespace's link address.
 */
export function relayControl(socketPath: string, host: string, port: string): void {
  net
    .createServer((client) => relay(client, net.connect({ host, port: Number(port) }), `${host}:${port}`))
    .listen(socketPath);
}

/**
 * Pipes a control connection to `upstream` once that connects. If it cannot, answers 502 itself:
 * Node 20's fetch waits forever on a connection closed before it sent its request.
 */
function relay(client: net.Socket, upstream: net.Socket, target: string): void {
  const end = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', end);
  client.on('close', end);
  let connected = false;
  upstream.once('connect', () => {
    connected = true;
    client.pipe(upstream).pipe(client);
    upstream.on('close', end);
  });
  upstream.on('error', (err: NodeJS.ErrnoException) => {
    if (connected) return end();
    const body = JSON.stringify({
      error: `control relay: cannot reach ${target} (${err.code ?? err.message})`,
    });
    // Reads on, so that the unread request never turns the close into a reset that hides the answer.
    client.resume();
    client.end(
      `HTTP/1.1 502 Bad Gateway\r\ncontent-type: application/json\r\nconnection: close\r\n` +
        `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  });
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // ESRCH: the whole group is gone already
  }
}

async function stopGroup(child: ChildProcess): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    await Promise.race([exited, sleep(STOP_GRACE_MS)]);
  }
  // Enclaves are in the daemon's group and may outlive it.
  killGroup(child, 'SIGKILL');
}

function logTail(file: string, lines = 5): string {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
  const tail = text.trim().split('\n').filter(Boolean).slice(-lines);
  return tail.length ? `; last lines of ${file}:\n  ${tail.join('\n  ')}` : `; ${file} is empty`;
}

/**
 * A test run that is aborted (or a script that never calls close()) must not leave namespaces and
 * daemons behind: on exit, and on a signal that would end the process without an 'exit' event,
 * every setup not yet closed is killed and removed, synchronously. Name → its process groups.
 */
const openSetups = new Map<string, ChildProcess[]>();
let exitHooksInstalled = false;

function removeOnExit(name: string, groups: ChildProcess[]): void {
  openSetups.set(name, groups);
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  const killAll = () => {
    for (const [setup, children] of openSetups) {
      for (const child of children) killGroup(child, 'SIGKILL');
      spawnSync(NETNS_SH, ['down', setup], { stdio: 'ignore' });
    }
    openSetups.clear();
  };
  process.on('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    // Stays installed while killAll runs: a second signal (a test runner sends its own) must not
    // end the process half-way through `netns.sh down`.
    const onSignal = () => {
      killAll();
      // If nobody else handles it, the default action (ending the process) applies again.
      if (process.listenerCount(signal) === 1) {
        process.off(signal, onSignal);
        process.kill(process.pid, signal);
      }
    };
    process.on(signal, onSignal);
  }
}

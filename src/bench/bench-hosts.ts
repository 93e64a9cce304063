import type { HostClient } from '../host/client.js';
import { UserError } from '../util/errors.js';
import { linkRateBitsPerSec } from './bench-options.js';
import { type LoadParams, type RunningLoad, startLoad } from './load/bench-load.js';
import { startLoadProcess } from './load/load-process-client.js';
import { freePortOnBoth, LocalCluster } from './local-cluster.js';
import { NetnsCluster, type NetnsHost } from './netns-cluster.js';

/**
 * The two hosts the benchmark migrates between, wherever they run: on loopback in this process
 * (LocalCluster) or in two network namespaces joined by a shaped link (NetnsCluster). The harness
 * (modes-bench.ts) sees only this.
 */
export interface BenchHosts {
  readonly source: BenchHost;
  readonly destination: BenchHost;
  /** The hosts' state directories and logs. */
  readonly dir: string;
  /** A client of the host's control API, from this process. */
  client(host: BenchHost): HostClient;
  /** A port an application can listen on at either host, so that it keeps it when it moves. */
  applicationPort(): Promise<number>;
  /** Starts a client load where it reaches the applications: next to `host`. */
  startLoad(host: BenchHost, params: LoadParams): Promise<RunningLoad>;
  /** Stops both hosts and their enclaves; removes `dir` unless asked to keep the logs. */
  close(keepLogs: boolean): Promise<void>;
}

export interface BenchHost {
  /** Where its applications listen (and what the progress lines call it). */
  readonly address: string;
  /** Its control API as the other host reaches it: a migration's `to`. */
  readonly controlUrl: string;
}

/** The results JSON's `link`. */
export type BenchLink =
  | { kind: 'loopback'; rate: null; rateBytesPerSec: null }
  | { kind: 'netns'; rate: string; rateBytesPerSec: number };

export function benchLink(rate: string | null): BenchLink {
  return rate === null
    ? { kind: 'loopback', rate: null, rateBytesPerSec: null }
    : { kind: 'netns', rate, rateBytesPerSec: linkRateBitsPerSec(rate) / 8 };
}

/** For the summary: `loopback` or `link 1gbit (125 MB/s) between two network namespaces`. */
export function describeLink(link: BenchLink): string {
  return link.kind === 'loopback'
    ? 'loopback'
    : `link ${link.rate} (${(link.rateBytesPerSec / 1e6).toFixed(0)} MB/s) between two network namespaces`;
}

/** Throws a one-line UserError if the link cannot be had on this machine (before anything runs). */
export function checkLinkAvailable(link: BenchLink): void {
  if (link.kind === 'loopback') return;
  const availability = NetnsCluster.available(link.rate);
  if (!availability.ok)
    throw new UserError(
      `--link ${link.rate} needs two network namespaces, which this machine cannot set up: ${availability.reason.split('\n')[0]}`,
    );
}

export function startBenchHosts(link: BenchLink, prefix: string): Promise<BenchHosts> {
  return link.kind === 'loopback' ? LoopbackHosts.start(prefix) : NetnsHosts.start(link.rate);
}

/** Both hosts in this process, on 127.0.0.1 and 127.0.0.2; so is the load (no process to start). */
class LoopbackHosts implements BenchHosts {
  readonly source: BenchHost;
  readonly destination: BenchHost;
  private readonly clients: Map<BenchHost, HostClient>;

  private constructor(private readonly cluster: LocalCluster) {
    const host = (daemon: LocalCluster['source']) => ({
      address: daemon.options.bind,
      controlUrl: daemon.controlUrl,
    });
    this.source = host(cluster.source);
    this.destination = host(cluster.destination);
    this.clients = new Map([
      [this.source, cluster.client(cluster.source)],
      [this.destination, cluster.client(cluster.destination)],
    ]);
  }

  static async start(prefix: string): Promise<LoopbackHosts> {
    return new LoopbackHosts(await LocalCluster.start(prefix));
  }

  get dir(): string {
    return this.cluster.dir;
  }

  client(host: BenchHost): HostClient {
    return this.clients.get(host)!;
  }

  applicationPort(): Promise<number> {
    return freePortOnBoth();
  }

  startLoad(_host: BenchHost, params: LoadParams): Promise<RunningLoad> {
    return Promise.resolve(startLoad(params));
  }

  close(keepLogs: boolean): Promise<void> {
    return this.cluster.close(keepLogs);
  }
}

/**
 * Each host in a network namespace of its own, the two joined by a veth pair shaped to the link's
 * rate. Applications are reachable only inside the namespaces, so the load runs in a process in the
 * source's namespace: a client in the source's data centre, which reaches the destination over the link.
 */
class NetnsHosts implements BenchHosts {
  /** Each namespace is fresh, so any port is free in both. */
  private static readonly APPLICATION_PORT = 6379;

  private constructor(private readonly cluster: NetnsCluster) {}

  static async start(rate: string): Promise<NetnsHosts> {
    return new NetnsHosts(await NetnsCluster.start({ rate }));
  }

  get source(): NetnsHost {
    return this.cluster.source;
  }

  get destination(): NetnsHost {
    return this.cluster.destination;
  }

  get dir(): string {
    return this.cluster.dir;
  }

  client(host: BenchHost): HostClient {
    return this.cluster.client(this.side(host));
  }

  applicationPort(): Promise<number> {
    return Promise.resolve(NetnsHosts.APPLICATION_PORT);
  }

  startLoad(host: BenchHost, params: LoadParams): Promise<RunningLoad> {
    return startLoadProcess(
      (args, options) => this.cluster.spawnNode(this.side(host), args, options),
      params,
    );
  }

  close(keepLogs: boolean): Promise<void> {
    return this.cluster.close(keepLogs);
  }

  private side(host: BenchHost): NetnsHost {
    for (const side of [this.cluster.source, this.cluster.destination]) if (host === side) return side;
    throw new Error(`${host.address} is not a host of ${this.cluster.name}`);
  }
}

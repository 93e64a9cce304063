import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import path from 'node:path';
import pino from 'pino';
import type { EnclaveToHost, HostToEnclave, SimPlatformIdentity } from '../enclave/ipc.js';
import { AttestationPolicy } from '../tee/policy.js';
import { formatHostPort, type HostPort } from '../util/address.js';
import { VERSION } from '../version.js';
import {
  type EnclaveInfo,
  enclaveIdParam,
  type HostInfo,
  type IncomingOutcome,
  type IncomingReply,
  incomingRequest,
  migrateRequest,
  resumeRequest,
  runRequest,
} from './api-schema.js';
import { EnclaveProcess } from './enclave-process.js';
import { describeRecord, type EnclaveRecord } from './enclave-record.js';
import { HttpError, readJsonObject, sendError, sendJson, validate } from './http-util.js';
import { brokerMigration, resumeInDoubt } from './migration-broker.js';
import { PeerServer } from './peer-server.js';
import { SpareEnclave } from './spare-enclave.js';
import { dispatch, type Route } from './router.js';
import { loadSimPlatform } from './sim-platform.js';
import { TokenVerifier } from './token.js';

export interface HostOptions {
  listen: HostPort;
  /** Address of every listener this host opens: control, peer port, and its enclaves' application ports. */
  bind: string;
  /** Peer port; null means the control port + 1, or an ephemeral port when the control port is 0. */
  peerPort: number | null;
  stateDir: string;
  /** Where the daemon logs; stderr by default. */
  logFile?: string;
  /** The cluster's shared control token: required on every control call and MACs peer connections. */
  token: string;
  /** The sim root's private key (created if absent); hosts that should trust each other share it. */
  simRootKeyFile: string;
  /** Attestation policy file; default: the same image only, on platforms of this host's sim root. */
  policyFile?: string;
  /** Keep an enclave process started ahead of the next incoming migration (SpareEnclave); default on. */
  spareEnclave?: boolean;
}

/**
 * How failed incoming migrations ended, kept for an hour: the reason (the source may not have heard
 * it, e.g. when the handshake was refused) and the ABORT token that can release an in-doubt source.
 */
const INCOMING_OUTCOME_TTL_MS = 60 * 60 * 1000;

const UNAUTHORIZED = new HttpError(401, 'missing or wrong control token', {
  'www-authenticate': 'Bearer realm="constmig"',
});

type Ready = Extract<EnclaveToHost, { type: 'ready' }>;
const isReady = (m: EnclaveToHost): m is Ready | Extract<EnclaveToHost, { type: 'fatal' }> =>
  m.type === 'ready' || m.type === 'fatal';

/** `constmig host`: spawns and stops enclaves, serves the control API, brokers migrations. Untrusted. */
export class HostDaemon {
  readonly log: pino.Logger;
  private readonly enclaves = new Map<string, EnclaveRecord>();
  private readonly server = http.createServer((req, res) => void this.serve(req, res));
  private readonly peer: PeerServer;
  private readonly verifier: TokenVerifier;
  private readonly routes: Route[] = [
    { path: /^\/v1\/info$/, methods: { GET: async (_req, res) => sendJson(res, 200, this.info()) } },
    {
      path: /^\/v1\/enclaves$/,
      methods: {
        GET: async (_req, res) => sendJson(res, 200, await this.list()),
        POST: async (req, res) => {
          const body = validate(runRequest, await readJsonObject(req));
          sendJson(res, 201, await this.run(body));
        },
      },
    },
    {
      path: /^\/v1\/enclaves\/([^/]+)$/,
      methods: {
        GET: async (_req, res, [id]) => sendJson(res, 200, await this.describe(this.lookup(id!))),
        DELETE: async (_req, res, [id]) => {
          const record = this.lookup(id!);
          await this.stop(record);
          sendJson(res, 200, { id: record.id, stopped: true });
        },
      },
    },
    {
      path: /^\/v1\/enclaves\/([^/]+)\/migrate$/,
      methods: {
        POST: async (req, res, [id]) => {
          const record = this.lookup(id!);
          const body = validate(migrateRequest, await readJsonObject(req));
          return brokerMigration(this, record, body, res);
        },
      },
    },
    {
      path: /^\/v1\/enclaves\/([^/]+)\/resume$/,
      methods: {
        POST: async (req, res, [id]) => {
          const record = this.lookup(id!);
          const { abortToken } = validate(resumeRequest, await readJsonObject(req));
          sendJson(res, 200, await resumeInDoubt(record, abortToken));
        },
      },
    },
    {
      path: /^\/v1\/incoming\/([^/]+)\/outcome$/,
      methods: { GET: async (_req, res, [id]) => sendJson(res, 200, this.incomingOutcomeOf(id!)) },
    },
    {
      path: /^\/v1\/incoming$/,
      methods: {
        POST: async (req, res) => {
          const body = validate(incomingRequest, await readJsonObject(req));
          sendJson(res, 201, await this.prepareIncoming(body));
        },
      },
    },
  ];
  private sim!: SimPlatformIdentity;
  private policy!: AttestationPolicy;
  private readonly incomingOutcomes = new Map<string, IncomingOutcome & { expiresAt: number }>();
  /** For incoming migrations; null when the host runs without one. */
  readonly spare: SpareEnclave | null;
  /** Incoming migrations that may still receive pages: no spare is started while one does. */
  private readonly migratingIn = new Set<EnclaveRecord>();
  controlUrl = '';
  peerPort = 0;

  constructor(readonly options: HostOptions) {
    const destination = options.logFile
      ? pino.destination({ dest: options.logFile, mkdir: true })
      : pino.destination(2);
    this.log = pino({ base: { role: 'host', bind: options.bind } }, destination);
    this.verifier = new TokenVerifier(options.token);
    this.peer = new PeerServer({
      token: options.token,
      route: (ticket, socket) => this.routeDataConnection(ticket, socket),
      log: this.log,
    });
    this.spare =
      options.spareEnclave === false
        ? null
        : new SpareEnclave(this.logDir(), this.log.child({ spare: true }));
  }

  private logDir(): string {
    return path.join(this.options.stateDir, 'logs');
  }

  async start(): Promise<void> {
    fs.mkdirSync(this.logDir(), { recursive: true, mode: 0o700 });
    this.sim = loadSimPlatform(this.options.stateDir, this.options.simRootKeyFile);
    this.policy = this.options.policyFile
      ? AttestationPolicy.load(this.options.policyFile)
      : AttestationPolicy.sameImageOnSimRoot(this.sim.root);
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host: this.options.bind, port: this.options.listen.port }, () => resolve());
    });
    const port = (this.server.address() as net.AddressInfo).port;
    this.controlUrl = `http://${formatHostPort({ host: this.options.bind, port })}`;
    const { peerPort } = this.options;
    this.peerPort = await this.peer.listen(
      this.options.bind,
      peerPort ?? (this.options.listen.port === 0 ? 0 : port + 1),
    );
    this.log.warn('TEE backend: sim (simulated enclaves: NO hardware protection)');
    this.log.info({ control: this.controlUrl, peerPort: this.peerPort }, 'host listening');
    this.spare?.replenish();
  }

  async close(): Promise<void> {
    this.server.close();
    this.peer.close();
    await Promise.all([...[...this.enclaves.values()].map((r) => r.process.stop()), this.spare?.close()]);
  }

  info(): HostInfo {
    return {
      version: VERSION,
      control: this.controlUrl,
      bind: this.options.bind,
      peerPort: this.peerPort,
      tee: 'sim (simulated enclaves: NO hardware protection)',
    };
  }

  private async serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      // Before routing: a caller without the token learns nothing, not even which paths exist.
      if (!this.verifier.acceptsHeader(req.headers.authorization)) {
        this.log.warn(
          { remote: req.socket.remoteAddress, method: req.method },
          'control call without the token',
        );
        throw UNAUTHORIZED;
      }
      await dispatch(this.routes, req, res);
    } catch (err) {
      const failure =
        err instanceof HttpError ? err : new HttpError(500, 'internal error (see the host log)');
      if (failure.status === 500) this.log.error({ err }, 'control request failed');
      if (res.headersSent) res.end();
      else sendError(req, res, failure);
    }
  }

  lookup(id: string): EnclaveRecord {
    if (!enclaveIdParam.safeParse(id).success)
      throw new HttpError(400, 'malformed enclave id: ids are 8 hex digits');
    const record = this.enclaves.get(id);
    if (!record) throw new HttpError(404, `no enclave with id '${id}' on this host`);
    return record;
  }

  forget(record: EnclaveRecord): void {
    if (this.enclaves.get(record.id) === record) this.enclaves.delete(record.id);
  }

  private async list(): Promise<EnclaveInfo[]> {
    return Promise.all([...this.enclaves.values()].map((r) => this.describe(r)));
  }

  private async describe(record: EnclaveRecord): Promise<EnclaveInfo> {
    const stats = await record.process.query(1000).catch(() => ({}));
    return describeRecord(record, this.options.bind, stats);
  }

  private spawn(
    id: string,
    fields: Pick<EnclaveRecord, 'name' | 'app' | 'heapBytes' | 'port'>,
    role: Extract<HostToEnclave, { type: 'init' }>['role'],
  ): EnclaveRecord {
    const logFile = path.join(this.logDir(), `${id}.log`);
    // Only incoming migrations take the spare: they are what waits for it. A fresh enclave taking it
    // would start the next spare right away, while its application and clients get going.
    const child =
      (role.kind === 'incoming' ? this.spare?.take(logFile) : null) ?? new EnclaveProcess(logFile);
    const record: EnclaveRecord = {
      id,
      ...fields,
      state: role.kind === 'fresh' ? 'starting' : 'incoming',
      process: child,
      measurement: '',
      tee: '',
      teeSecure: false,
      startedAt: new Date().toISOString(),
      ticket: role.kind === 'incoming' ? role.ticket : undefined,
    };
    this.enclaves.set(id, record);
    child.on('exit', (code) => {
      this.forget(record);
      this.migrationInEnded(record);
      this.log.info({ id, code }, 'enclave exited');
    });
    child.on('message', (m) => {
      if (m.type === 'incoming-aborted') {
        const { message: reason, abortToken } = m;
        this.incomingOutcomes.set(id, {
          id,
          reason,
          abortToken,
          expiresAt: Date.now() + INCOMING_OUTCOME_TTL_MS,
        });
      }
      if (m.type === 'fatal' && record.ticket !== undefined) {
        // An incoming enclave that failed after it resumed (the Fault Tracker halts the application
        // when pages are lost for good): its reason, and no ABORT token, for the source that waits.
        this.incomingOutcomes.set(id, {
          id,
          reason: m.message,
          abortToken: null,
          expiresAt: Date.now() + INCOMING_OUTCOME_TTL_MS,
        });
      }
      if (m.type === 'resumed') {
        // The ticket stays: a source whose link broke after START dials again with it.
        record.state = 'running';
        this.log.info({ id }, 'enclave resumed after incoming migration');
      }
      if (m.type === 'migrated-in') this.migrationInEnded(record);
    });
    child.send({
      type: 'init',
      config: {
        app: fields.app,
        heapBytes: fields.heapBytes,
        port: fields.port,
        bindAddress: this.options.bind,
      },
      tee: this.sim,
      policy: this.policy.document,
      role,
    });
    return record;
  }

  private async awaitReady(record: EnclaveRecord): Promise<Ready> {
    const ready = await record.process.waitFor(isReady);
    if (ready.type === 'fatal') {
      record.process.kill();
      this.forget(record);
      throw new HttpError(409, ready.message);
    }
    record.measurement = ready.measurement;
    record.tee = ready.tee;
    record.teeSecure = ready.teeSecure;
    return ready;
  }

  private checkPortFree(port: number): void {
    for (const r of this.enclaves.values()) {
      if (r.port === port)
        throw new HttpError(409, `port ${this.options.bind}:${port} is already used by enclave ${r.id}`);
    }
  }

  private async run(body: ReturnType<typeof runRequest.parse>): Promise<EnclaveInfo> {
    this.checkPortFree(body.port);
    if (body.fillBytes > body.heapBytes) throw new HttpError(400, 'fill size is larger than the heap');
    const id = randomBytes(4).toString('hex');
    const name = body.name ?? `${body.app}-${id}`;
    const record = this.spawn(
      id,
      { name, app: body.app, heapBytes: body.heapBytes, port: body.port },
      {
        kind: 'fresh',
        fillBytes: body.fillBytes,
      },
    );
    await this.awaitReady(record);
    record.state = 'running';
    this.log.info({ id, name, port: body.port }, 'enclave running');
    return this.describe(record);
  }

  /** PREPARE on the destination: an enclave of the same image in incoming mode, application not started. */
  private async prepareIncoming(body: ReturnType<typeof incomingRequest.parse>): Promise<IncomingReply> {
    if (this.enclaves.has(body.id))
      throw new HttpError(409, `an enclave with id '${body.id}' already runs here`);
    this.checkPortFree(body.port);
    const ticket = randomBytes(16).toString('hex');
    const fields = { name: body.name, app: body.app, heapBytes: body.heapBytes, port: body.port };
    const record = this.spawn(body.id, fields, { kind: 'incoming', ticket, tracker: body.tracker });
    this.migratingIn.add(record);
    const { tracker } = await this.awaitReady(record);
    this.log.info({ id: body.id, tracker }, 'incoming enclave prepared');
    return {
      id: body.id,
      ticket,
      dataHost: this.options.bind,
      dataPort: this.peerPort,
      tracker: tracker ?? { kind: null, reason: 'the enclave did not say' },
    };
  }

  /**
   * Starting a spare takes 0.5-1 CPU-second: only once no incoming migration needs the CPU (an
   * enclave that resumed in post-copy still receives pages until it reports 'migrated-in').
   */
  private migrationInEnded(record: EnclaveRecord): void {
    if (!this.migratingIn.delete(record)) return;
    if (this.migratingIn.size === 0) this.spare?.replenish();
  }

  /**
   * How a failed incoming migration ended. Its ABORT token proves only that the enclave never resumed;
   * the in-doubt source judges it. 409 when the enclave resumed here (it holds the application).
   */
  private incomingOutcomeOf(id: string): IncomingOutcome {
    const now = Date.now();
    for (const [key, entry] of this.incomingOutcomes)
      if (entry.expiresAt < now) this.incomingOutcomes.delete(key);
    if (this.enclaves.get(id)?.state === 'running') {
      throw new HttpError(409, `enclave '${id}' resumed on this host: it holds the application`);
    }
    const entry = enclaveIdParam.safeParse(id).success ? this.incomingOutcomes.get(id) : undefined;
    if (!entry) throw new HttpError(404, `no failed incoming migration of enclave '${id}' on this host`);
    return { id: entry.id, reason: entry.reason, abortToken: entry.abortToken };
  }

  private routeDataConnection(ticket: string, socket: net.Socket): boolean {
    for (const record of this.enclaves.values()) {
      // The first connection starts the incoming migration; later ones (post-copy's urgent channel,
      // a source dialling again after a cut) join it. The enclave decides by their keys.
      if (record.ticket === ticket) {
        if (record.state === 'incoming') record.state = 'migrating-in';
        record.process.send({ type: 'data-connection', ticket }, socket);
        return true;
      }
    }
    return false;
  }

  async stop(record: EnclaveRecord): Promise<void> {
    await record.process.stop();
    this.forget(record);
    this.log.info({ id: record.id }, 'enclave stopped');
  }
}

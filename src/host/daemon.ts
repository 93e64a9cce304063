import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import path from 'node:path';
import pino from 'pino';
import type { EnclaveToHost, SimPlatformIdentity } from '../enclave/ipc.js';
import { AttestationPolicy } from '../tee/policy.js';
import { formatHostPort, type HostPort } from '../util/address.js';
import { errorMessage } from '../util/errors.js';
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
import { HttpError, readJson, sendJson, validate } from './http-util.js';
import { brokerMigration, resumeInDoubt } from './migration-broker.js';
import { PeerServer } from './peer-server.js';
import { loadSimPlatform } from './sim-platform.js';
import { bearerMatches } from './token.js';

export interface HostOptions {
  listen: HostPort;
  /** Address of every listener this host opens: control, peer port, and its enclaves' application ports. */
  bind: string;
  /** Peer port; null means the control port + 1, or an ephemeral port when the control port is 0. */
  peerPort: number | null;
  stateDir: string;
  /** Where the daemon logs; stderr by default. */
  logFile?: string;
  token: string | null;
  /** The sim root's private key (created if absent); hosts that should trust each other share it. */
  simRootKeyFile: string;
  /** Attestation policy file; default: the same image only, on platforms of this host's sim root. */
  policyFile?: string;
}

/**
 * How failed incoming migrations ended, kept for an hour: the reason (the source may not have heard
 * it, e.g. when the handshake was refused) and the ABORT token that can release an in-doubt source.
 */
const INCOMING_OUTCOME_TTL_MS = 60 * 60 * 1000;

type Ready = Extract<EnclaveToHost, { type: 'ready' }>;
const isReady = (m: EnclaveToHost): m is Ready | Extract<EnclaveToHost, { type: 'fatal' }> =>
  m.type === 'ready' || m.type === 'fatal';

/** `constmig host`: spawns and stops enclaves, serves the control API, brokers migrations. Untrusted. */
export class HostDaemon {
  readonly log: pino.Logger;
  private readonly enclaves = new Map<string, EnclaveRecord>();
  private readonly server = http.createServer((req, res) => void this.serve(req, res));
  private readonly peer = new PeerServer((ticket, socket) => this.routeDataConnection(ticket, socket));
  private sim!: SimPlatformIdentity;
  private policy!: AttestationPolicy;
  private readonly incomingOutcomes = new Map<string, IncomingOutcome & { expiresAt: number }>();
  controlUrl = '';
  peerPort = 0;

  constructor(readonly options: HostOptions) {
    const destination = options.logFile
      ? pino.destination({ dest: options.logFile, mkdir: true })
      : pino.destination(2);
    this.log = pino({ base: { role: 'host', bind: options.bind } }, destination);
  }

  async start(): Promise<void> {
    fs.mkdirSync(path.join(this.options.stateDir, 'logs'), { recursive: true, mode: 0o700 });
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
  }

  async close(): Promise<void> {
    this.server.close();
    this.peer.close();
    await Promise.all([...this.enclaves.values()].map((r) => r.process.stop()));
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
      if (this.options.token !== null && !bearerMatches(req.headers.authorization, this.options.token)) {
        throw new HttpError(401, 'missing or wrong control token (see --token-file / CONSTMIG_TOKEN)');
      }
      await this.route(req, res);
    } catch (err) {
      const status = err instanceof HttpError ? err.status : 500;
      if (status === 500) this.log.error({ err }, 'control request failed');
      if (!res.headersSent) sendJson(res, status, { error: errorMessage(err) });
      else res.end();
    }
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://host');
    const parts = url.pathname.split('/').filter(Boolean);
    const method = req.method ?? 'GET';
    if (parts[0] !== 'v1') throw new HttpError(404, `no such endpoint: ${url.pathname}`);
    const [, resource, id, action] = parts;
    if (resource === 'info' && !id && method === 'GET') return sendJson(res, 200, this.info());
    if (resource === 'enclaves' && !id && method === 'GET') return sendJson(res, 200, await this.list());
    if (resource === 'enclaves' && !id && method === 'POST') {
      return sendJson(res, 201, await this.run(validate(runRequest, await readJson(req))));
    }
    if (resource === 'incoming' && !id && method === 'POST') {
      return sendJson(res, 201, await this.prepareIncoming(validate(incomingRequest, await readJson(req))));
    }
    if (resource === 'incoming' && id && action === 'outcome' && method === 'GET') {
      return sendJson(res, 200, this.incomingOutcomeOf(id));
    }
    if (resource === 'enclaves' && id) {
      const record = this.lookup(id);
      if (!action && method === 'GET') return sendJson(res, 200, await this.describe(record));
      if (!action && method === 'DELETE') {
        await this.stop(record);
        return sendJson(res, 200, { id: record.id, stopped: true });
      }
      if (action === 'resume' && method === 'POST') {
        const { abortToken } = validate(resumeRequest, await readJson(req));
        return sendJson(res, 200, await resumeInDoubt(record, abortToken));
      }
      if (action === 'migrate' && method === 'POST') {
        const body = validate(migrateRequest, await readJson(req));
        return brokerMigration(this, record, body, res);
      }
    }
    throw new HttpError(404, `no such endpoint: ${method} ${url.pathname}`);
  }

  lookup(id: string): EnclaveRecord {
    const parsed = enclaveIdParam.safeParse(id);
    const record = parsed.success ? this.enclaves.get(id) : undefined;
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
    role: { kind: 'fresh'; fillBytes: number } | { kind: 'incoming'; ticket: string },
  ): EnclaveRecord {
    const child = new EnclaveProcess(path.join(this.options.stateDir, 'logs', `${id}.log`));
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
      if (m.type === 'resumed') {
        record.state = 'running';
        record.ticket = undefined;
        this.log.info({ id }, 'enclave resumed after incoming migration');
      }
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

  private async awaitReady(record: EnclaveRecord): Promise<void> {
    const ready = await record.process.waitFor(isReady);
    if (ready.type === 'fatal') {
      record.process.kill();
      this.forget(record);
      throw new HttpError(409, ready.message);
    }
    record.measurement = ready.measurement;
    record.tee = ready.tee;
    record.teeSecure = ready.teeSecure;
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
    const record = this.spawn(body.id, body, { kind: 'incoming', ticket });
    await this.awaitReady(record);
    this.log.info({ id: body.id }, 'incoming enclave prepared');
    return { id: body.id, ticket, dataHost: this.options.bind, dataPort: this.peerPort };
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
      if (record.ticket === ticket && record.state === 'incoming') {
        record.state = 'migrating-in';
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

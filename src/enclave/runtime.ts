import type net from 'node:net';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { SecureHeap } from '../heap/secure-heap.js';
import { IncomingMigration } from '../migrate/destination.js';
import { AbortRelay, migrateOut } from '../migrate/source.js';
import { TokenError, type TokenVerifier } from '../migrate/tokens.js';
import type { TeeBackend } from '../tee/backend.js';
import type { AttestationPolicy } from '../tee/policy.js';
import { errorMessage } from '../util/errors.js';
import { chooseTracker, missCatcherFor, type TrackerChoice } from '../trackers/choice.js';
import { AppThread } from './app-thread.js';
import { measureAtStart, setUpTee } from './tee-setup.js';
import { type AppConfig, type EnclaveToHost, type HostToEnclave, hostToEnclave } from './ipc.js';

/**
 * The trusted part of an enclave process: it owns the SecureHeap, the application and the migration
 * agent, and treats every command from its host as untrusted input.
 */
type RuntimeState =
  | { kind: 'uninitialised' }
  | { kind: 'serving' }
  | { kind: 'incoming'; ticket: string }
  | { kind: 'migrating-in' }
  | { kind: 'migrating-out' }
  /**
   * START went out and no COMMIT came back: paused, never serving again on its own; only an ABORT
   * token that `tokens` accepts releases it.
   */
  | { kind: 'in-doubt'; tokens: TokenVerifier }
  | { kind: 'gone' };

/** The application bundle the sim backend measures: the compiled sources this process runs from. */
const BUNDLE_DIR = fileURLToPath(new URL('..', import.meta.url));

export class EnclaveRuntime {
  private state: RuntimeState = { kind: 'uninitialised' };
  private heap!: SecureHeap;
  /** Started with the process, so that its code is loaded by the time the host says what to run. */
  private readonly app = AppThread.boot();
  private readonly simMeasurement = measureAtStart(BUNDLE_DIR);
  /**
   * The incoming migration, kept after it resumed: connections with its ticket (a reconnecting
   * source, post-copy's urgent channel) go to it; it decides whether they belong.
   */
  private incoming: { ticket: string; migration: IncomingMigration } | undefined;
  /** ABORT tokens relayed by the host reach the outgoing migration here. */
  private readonly abortRelay = new AbortRelay();
  private tee!: TeeBackend;
  private policy!: AttestationPolicy;
  private config!: AppConfig;
  private readonly log = pino({ base: { role: 'enclave', pid: process.pid } }, pino.destination(2));

  constructor(private readonly send: (message: EnclaveToHost) => Promise<void>) {}

  async handle(raw: unknown, handle?: unknown): Promise<void> {
    const parsed = hostToEnclave.safeParse(raw);
    if (!parsed.success) {
      this.log.warn({ issue: parsed.error.issues[0]?.message }, 'rejected malformed host command');
      return;
    }
    const message = parsed.data;
    switch (message.type) {
      case 'init':
        return this.init(message);
      case 'migrate-out':
        return this.migrateOut(message);
      case 'data-connection':
        return this.acceptDataConnection(message.ticket, handle as net.Socket | undefined);
      case 'resume':
        return this.resume(message.requestId, message.abortToken);
      case 'query':
        return this.send({ type: 'query-result', id: message.id, stats: await this.stats() });
      case 'stop':
        return this.stop();
    }
  }

  private async init(message: Extract<HostToEnclave, { type: 'init' }>): Promise<void> {
    if (this.state.kind !== 'uninitialised') return;
    this.config = message.config;
    try {
      ({ tee: this.tee, policy: this.policy } = setUpTee(message, this.simMeasurement));
      this.log.warn(`TEE backend: ${this.tee.describe()}`);
      let tracker: TrackerChoice | undefined;
      if (message.role.kind === 'incoming') {
        // Nothing may read the heap before its pages arrive and START is verified.
        tracker = chooseTracker(message.role.tracker, this.tee);
        this.log.info({ tracker: tracker.kind, reason: tracker.reason }, 'tracker chosen');
        this.heap = SecureHeap.createIncoming(message.config.heapBytes, missCatcherFor(tracker.kind));
      } else {
        // Started here, no page of it can ever be missing: the accessors need no present test.
        this.heap = SecureHeap.create(message.config.heapBytes, { presentChecks: false });
      }
      await this.app.open(this.heap, {
        kind: message.config.app,
        bindAddress: message.config.bindAddress,
        port: message.config.port,
        logBase: { role: 'enclave-app', pid: process.pid },
      });
      if (message.role.kind === 'fresh') {
        await this.app.startFresh(message.role.fillBytes);
        this.state = { kind: 'serving' };
      } else {
        await this.app.listen();
        this.state = { kind: 'incoming', ticket: message.role.ticket };
      }
      await this.send({
        type: 'ready',
        measurement: this.tee.measurement,
        tee: this.tee.describe(),
        teeSecure: this.tee.secure,
        appPort: message.config.port,
        stats: await this.stats(),
        ...(tracker ? { tracker } : {}),
      });
    } catch (err) {
      await this.fatal(errorMessage(err));
    }
  }

  private async migrateOut(message: Extract<HostToEnclave, { type: 'migrate-out' }>): Promise<void> {
    const { requestId } = message;
    if (this.state.kind !== 'serving') {
      await this.send({
        type: 'migration-failed',
        requestId,
        message: `enclave is ${this.state.kind}`,
        resumed: false,
      });
      return;
    }
    this.state = { kind: 'migrating-out' };
    const outcome = await migrateOut(
      {
        heap: this.heap,
        app: this.app,
        appKind: this.config.app,
        tee: this.tee,
        policy: this.policy,
        abortRelay: this.abortRelay,
        log: (msg) => this.log.warn(msg),
      },
      message,
      (progress) => void this.send({ type: 'progress', requestId, progress }),
    );
    switch (outcome.kind) {
      case 'committed':
        this.state = { kind: 'gone' };
        this.log.info({ migrationId: outcome.report.migrationId }, 'migrated out; self-destroyed');
        await this.send({ type: 'migrated-out', requestId, report: { ...outcome.report } });
        process.exit(0);
        break;
      case 'aborted':
        this.state = { kind: 'serving' };
        this.log.warn(
          { reason: outcome.message },
          'migration aborted (the destination never resumed); serving again',
        );
        await this.send({ type: 'migration-failed', requestId, message: outcome.message, resumed: true });
        break;
      case 'in-doubt':
        this.state = { kind: 'in-doubt', tokens: outcome.tokens };
        this.log.error({ reason: outcome.message }, 'migration outcome in doubt; staying paused');
        await this.send({ type: 'migration-failed', requestId, message: outcome.message, resumed: false });
        break;
    }
  }

  private async acceptDataConnection(ticket: string, socket: net.Socket | undefined): Promise<void> {
    if (!socket) return;
    if (this.incoming?.ticket === ticket) {
      this.incoming.migration.attach(socket);
      return;
    }
    // Single use: one incoming migration per enclave, and only for the ticket it was prepared with.
    if (this.state.kind !== 'incoming' || this.state.ticket !== ticket) {
      socket.destroy();
      return;
    }
    const migration = new IncomingMigration({
      heap: this.heap,
      app: this.app,
      appKind: this.config.app,
      tee: this.tee,
      policy: this.policy,
      log: (msg) => this.log.warn(msg),
      onResumed: () => {
        void this.stats().then((stats) => this.send({ type: 'resumed', stats }));
      },
    });
    this.state = { kind: 'migrating-in' };
    this.incoming = { ticket, migration };
    const outcome = await migration.run(socket);
    if (outcome.kind === 'aborted') {
      this.state = { kind: 'gone' };
      this.log.error({ reason: outcome.message }, 'incoming migration aborted; this enclave never resumed');
      await this.send({
        type: 'incoming-aborted',
        message: outcome.message,
        abortToken: outcome.abortToken,
      }).catch(() => {});
      process.exit(1);
    }
    if (outcome.kind === 'incomplete' && outcome.applicationHalted) {
      return this.fatal(
        `post-copy failed after resume (${outcome.message}); ${outcome.pagesMissing} pages are lost for good and the Fault Tracker halted the application`,
      );
    }
    this.state = { kind: 'serving' };
    if (outcome.kind === 'incomplete') {
      this.log.error(
        { reason: outcome.message, pagesMissing: outcome.pagesMissing },
        'post-copy failed after resume: pages are missing for good; accesses to them fail',
      );
    } else {
      if (!outcome.commitDelivered) this.log.warn('COMMIT could not be delivered; the source stays paused');
      this.log.info({ pages: outcome.pagesInstalled }, 'incoming migration complete');
    }
    await this.send({ type: 'migrated-in' });
  }

  /**
   * An in-doubt source serves again only with an ABORT token of its own migration, minted by the
   * destination enclave before it resumed; whatever else the host sends is refused (fork attempt).
   */
  private async resume(requestId: string, abortToken: string): Promise<void> {
    const reply = (resumed: boolean, message: string) =>
      this.send({ type: 'resume-result', requestId, resumed, message });
    if (this.state.kind === 'migrating-out') {
      // The migration itself checks the token and, if it holds, ends with the application serving.
      const refusal = this.abortRelay.offer(abortToken);
      return refusal === null
        ? reply(true, 'ABORT token verified; the migration ends')
        : reply(false, refusal);
    }
    if (this.state.kind !== 'in-doubt') return reply(false, `enclave is ${this.state.kind}, not in doubt`);
    try {
      this.state.tokens.checkAbort(abortToken);
    } catch (err) {
      const message = err instanceof TokenError ? err.message : errorMessage(err);
      this.log.error({ reason: message }, 'refused to resume: invalid ABORT token');
      return reply(false, message);
    }
    this.state = { kind: 'serving' };
    await this.app.reconnect();
    await this.app.serve();
    this.log.warn('ABORT token verified: the destination never resumed; serving again');
    return reply(true, 'ABORT token verified; the application serves again');
  }

  private async stats(): Promise<Record<string, number>> {
    const base: Record<string, number> = { rssBytes: process.memoryUsage().rss };
    if (this.heap) base.heapBytes = this.heap.byteLength;
    // An incoming enclave's application has nothing to report, and a paused one is not asked.
    if (this.state.kind !== 'serving') return base;
    return { ...base, ...(await this.app.stats().catch(() => ({}))) };
  }

  private async stop(): Promise<void> {
    this.state = { kind: 'gone' };
    this.incoming?.migration.abandon();
    await this.app.close().catch(() => {});
    this.heap?.wipe();
    process.exit(0);
  }

  private async fatal(message: string): Promise<void> {
    this.log.error({ err: message }, 'fatal');
    await this.send({ type: 'fatal', message }).catch(() => {});
    process.exit(1);
  }
}

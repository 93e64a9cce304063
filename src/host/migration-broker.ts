import { randomBytes } from 'node:crypto';
import type http from 'node:http';
import type { EnclaveToHost } from '../enclave/ipc.js';
import { hasPostcopy } from '../migrate/modes.js';
import { parseHostPort } from '../util/address.js';
import { monotonicMs } from '../util/clock.js';
import { errorMessage } from '../util/errors.js';
import {
  type IncomingOutcome,
  type IncomingReply,
  incomingReply,
  type IncomingRequest,
  type MigrateEvent,
  type migrateRequest,
} from './api-schema.js';
import { HostApiError, HostClient } from './client.js';
import type { HostDaemon } from './daemon.js';
import type { EnclaveRecord } from './enclave-record.js';
import { HttpError } from './http-util.js';
import { peerAuth } from './peer-auth.js';

type Outcome = Extract<EnclaveToHost, { type: 'migrated-out' | 'migration-failed' }>;
type ResumeResult = Extract<EnclaveToHost, { type: 'resume-result' }>;

/** How long a source in doubt waits for the destination's ABORT token before it stays paused. */
const ABORT_TOKEN_WAIT_MS = 10_000;
/** How long a failed migration waits to learn the destination's own reason (e.g. a refused handshake). */
const DESTINATION_REASON_WAIT_MS = 3000;
const OUTCOME_POLL_MS = 100;

/**
 * Source-host side of `constmig migrate`: PREPARE on the destination host, tell the source enclave
 * where to connect, and stream its progress and final report back to the caller as NDJSON. The host
 * only brokers; the enclaves authenticate each other and move the pages themselves.
 */
export async function brokerMigration(
  host: HostDaemon,
  record: EnclaveRecord,
  body: ReturnType<typeof migrateRequest.parse>,
  res: http.ServerResponse,
): Promise<void> {
  const requestedAtMs = monotonicMs();
  if (record.state !== 'running')
    throw new HttpError(409, `enclave ${record.id} is ${record.state}, not running`);
  const destination = new HostClient(
    body.to,
    host.options.token,
    'the hosts of a cluster must share one control token',
  );
  if (destination.url === host.controlUrl)
    throw new HttpError(400, 'source and destination are the same host');
  const dataOverride = body.dataAddress ? parseHostPort(body.dataAddress, '--data-address') : null;

  record.state = 'migrating-out';
  let prepared: IncomingReply;
  try {
    const reply = incomingReply.safeParse(
      await destination.call<unknown>('POST', '/v1/incoming', {
        id: record.id,
        name: record.name,
        app: record.app,
        heapBytes: record.heapBytes,
        port: record.port,
        tracker: hasPostcopy(body.mode) ? body.tracker : 'none',
      } satisfies IncomingRequest),
    );
    if (!reply.success) throw new Error('malformed reply');
    prepared = reply.data;
  } catch (err) {
    record.state = 'running';
    throw new HttpError(502, `PREPARE on ${destination.url} failed: ${errorMessage(err)}`);
  }

  res.writeHead(200, { 'content-type': 'application/x-ndjson' });
  const emit = (event: MigrateEvent) => res.write(`${JSON.stringify(event)}\n`);
  const dataHost = dataOverride?.host ?? prepared.dataHost;
  const dataPort = dataOverride?.port ?? prepared.dataPort;
  emit({
    type: 'prepared',
    destinationId: prepared.id,
    dataAddress: `${dataHost}:${dataPort}`,
    tracker: prepared.tracker,
  });

  const requestId = randomBytes(8).toString('hex');
  const onMessage = (m: EnclaveToHost) => {
    if (m.type === 'progress' && m.requestId === requestId) emit({ type: 'progress', ...m.progress });
  };
  record.process.on('message', onMessage);
  const outcome = record.process.waitFor(
    (m): m is Outcome =>
      (m.type === 'migrated-out' || m.type === 'migration-failed') && m.requestId === requestId,
  );
  record.process.send({
    type: 'migrate-out',
    requestId,
    mode: body.mode,
    dataHost,
    dataPort,
    ticket: prepared.ticket,
    peerAuth: peerAuth(host.options.token, prepared.ticket).toString('hex'),
    verify: body.verify,
    requestedAtMs,
    maxDowntimeMs: body.maxDowntimeMs,
    bandwidthBps: body.bandwidthBps ?? null,
    reconnectTimeoutMs: body.reconnectTimeoutMs,
  });
  // A destination that gives up after START cannot reach the source when the link is what failed;
  // its ABORT token, fetched here, reaches the source through the hosts while it still waits.
  const relay = relayAbortToken(record, destination, prepared.id, outcome);

  try {
    const result = await outcome;
    if (result.type === 'migrated-out') {
      host.forget(record);
      host.log.info({ id: record.id, to: destination.url }, 'enclave migrated out');
      emit({
        type: 'report',
        report: {
          ...result.report,
          enclaveId: record.id,
          from: host.controlUrl,
          to: destination.url,
          clientGapMs: null,
          trackerReason: prepared.tracker.kind === null ? null : prepared.tracker.reason,
        },
      });
    } else if (result.resumed) {
      record.state = 'running';
      const outcome = await incomingOutcome(destination, prepared.id, DESTINATION_REASON_WAIT_MS);
      await destination.call('DELETE', `/v1/enclaves/${prepared.id}`).catch(() => {});
      emit({ type: 'error', message: withDestinationReason(result.message, outcome), sourceServing: true });
    } else {
      record.state = 'in-doubt';
      const released = await releaseWithAbortToken(host, record, destination, prepared.id);
      emit({
        type: 'error',
        message: `${result.message}; ${released.message}`,
        sourceServing: released.serving,
      });
    }
  } catch (err) {
    emit({ type: 'error', message: `source enclave failed: ${errorMessage(err)}`, sourceServing: false });
  } finally {
    relay.stop();
    record.process.off('message', onMessage);
    res.end();
  }
}

const RELAY_POLL_MS = 500;

/** Polls the destination for an ABORT token until the migration ends, and hands it to the source. */
function relayAbortToken(
  record: EnclaveRecord,
  destination: HostClient,
  destinationId: string,
  done: Promise<unknown>,
): { stop: () => void } {
  let stopped = false;
  const stop = () => {
    stopped = true;
  };
  done.then(stop, stop);
  void (async () => {
    while (!stopped) {
      await new Promise((resolve) => setTimeout(resolve, RELAY_POLL_MS));
      if (stopped) return;
      const outcome = await destination
        .call<IncomingOutcome>('GET', `/v1/incoming/${destinationId}/outcome`)
        .catch(() => null);
      if (!outcome?.abortToken || stopped) continue;
      record.process.send({
        type: 'resume',
        requestId: randomBytes(8).toString('hex'),
        abortToken: outcome.abortToken,
      });
      return;
    }
  })();
  return { stop };
}

/**
 * Hands an in-doubt source the ABORT token its destination enclave minted, if it did. Only the
 * source enclave can judge the token; a host that forges one gets a refusal and the source stays
 * paused (DESIGN.md §2.4).
 */
export async function resumeInDoubt(
  record: EnclaveRecord,
  abortToken: string,
): Promise<{ id: string; state: 'running'; message: string }> {
  if (record.state !== 'in-doubt')
    throw new HttpError(409, `enclave ${record.id} is ${record.state}, not in doubt`);
  const requestId = randomBytes(8).toString('hex');
  const result = record.process.waitFor(
    (m): m is ResumeResult => m.type === 'resume-result' && m.requestId === requestId,
  );
  record.process.send({ type: 'resume', requestId, abortToken });
  const reply = await result;
  if (!reply.resumed) throw new HttpError(409, `the enclave refused to resume: ${reply.message}`);
  record.state = 'running';
  return { id: record.id, state: 'running', message: reply.message };
}

/**
 * Polls the destination host for how its incoming enclave ended: an outcome (it failed, with its
 * reason and ABORT token), 'resumed' (it holds the application), or null (no answer in time).
 */
async function incomingOutcome(
  destination: HostClient,
  destinationId: string,
  waitMs: number,
): Promise<IncomingOutcome | 'resumed' | null> {
  const deadline = monotonicMs() + waitMs;
  for (;;) {
    try {
      return await destination.call<IncomingOutcome>('GET', `/v1/incoming/${destinationId}/outcome`);
    } catch (err) {
      if (err instanceof HostApiError && err.status === 409) return 'resumed';
    }
    if (monotonicMs() >= deadline) return null;
    await new Promise((resolve) => setTimeout(resolve, OUTCOME_POLL_MS));
  }
}

/** The source's error plus the destination's own reason, when the source could not have heard it. */
function withDestinationReason(message: string, outcome: IncomingOutcome | 'resumed' | null): string {
  if (outcome === null || outcome === 'resumed' || message.includes(outcome.reason)) return message;
  return `${message}; destination: ${outcome.reason}`;
}

/** Waits for the destination's verdict: an ABORT token (the source may serve) or "it resumed". */
async function releaseWithAbortToken(
  host: HostDaemon,
  record: EnclaveRecord,
  destination: HostClient,
  destinationId: string,
): Promise<{ serving: boolean; message: string }> {
  const outcome = await incomingOutcome(destination, destinationId, ABORT_TOKEN_WAIT_MS);
  if (outcome === 'resumed') {
    return {
      serving: false,
      message: 'the destination resumed and holds the application; the source stays paused',
    };
  }
  if (outcome === null) {
    return { serving: false, message: 'no ABORT token came from the destination; the source stays paused' };
  }
  if (outcome.abortToken === null) {
    return {
      serving: false,
      message: `the destination gave no ABORT token (${outcome.reason}); the source stays paused`,
    };
  }
  try {
    const resumed = await resumeInDoubt(record, outcome.abortToken);
    host.log.warn({ id: record.id }, 'in-doubt source released by the destination ABORT token');
    return {
      serving: true,
      message: `the destination never resumed (${outcome.reason}); ${resumed.message}`,
    };
  } catch (err) {
    return { serving: false, message: errorMessage(err) };
  }
}

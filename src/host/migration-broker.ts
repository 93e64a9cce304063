import { randomBytes } from 'node:crypto';
import type http from 'node:http';
import type { EnclaveToHost } from '../enclave/ipc.js';
import { parseHostPort } from '../util/address.js';
import { monotonicMs } from '../util/clock.js';
import { errorMessage } from '../util/errors.js';
import { type IncomingReply, incomingReply, type MigrateEvent, type migrateRequest } from './api-schema.js';
import { HostClient } from './client.js';
import type { HostDaemon } from './daemon.js';
import type { EnclaveRecord } from './enclave-record.js';
import { HttpError } from './http-util.js';
import { peerAuth } from './peer-auth.js';

type Outcome = Extract<EnclaveToHost, { type: 'migrated-out' | 'migration-failed' }>;

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
      }),
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
  emit({ type: 'prepared', destinationId: prepared.id, dataAddress: `${dataHost}:${dataPort}` });

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
  });

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
        },
      });
    } else {
      record.state = result.resumed ? 'running' : 'in-doubt';
      if (result.resumed) await destination.call('DELETE', `/v1/enclaves/${prepared.id}`).catch(() => {});
      emit({ type: 'error', message: result.message, sourceServing: result.resumed });
    }
  } catch (err) {
    emit({ type: 'error', message: `source enclave failed: ${errorMessage(err)}`, sourceServing: false });
  } finally {
    record.process.off('message', onMessage);
    res.end();
  }
}

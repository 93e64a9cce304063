import type { MigrateEvent, MigrateRequest } from '../../host/api-schema.js';
import type { HostClient } from '../../host/client.js';
import { isMigrationMode, MIGRATION_MODES } from '../../migrate/modes.js';
import { TRACKER_REQUESTS, type TrackerRequest } from '../../trackers/choice.js';
import type { MigrationReport } from '../../migrate/report.js';
import { parseHostPort } from '../../util/address.js';
import { UserError } from '../../util/errors.js';
import { type ClientOptions, hostClient, millisecondsOption, printJson, rateOption } from '../context.js';
import { MigrationProgressView } from '../migrate-progress.js';
import { renderReport } from '../render.js';

export interface MigrateOptions extends ClientOptions {
  from: string;
  to: string;
  mode: string;
  dataAddress?: string;
  verify: boolean;
  maxDowntime: string;
  bandwidth?: string;
  reconnectTimeout?: string;
  tracker: string;
  json?: boolean;
}

/** --max-downtime, --bandwidth, --reconnect-timeout and --tracker, as the host API takes them. */
export function liveOptions(options: {
  maxDowntime: string;
  bandwidth?: string;
  reconnectTimeout?: string;
  tracker: string;
}): {
  maxDowntimeMs: number;
  bandwidthBps?: number;
  reconnectTimeoutMs?: number;
  tracker: Exclude<TrackerRequest, 'none'>;
} {
  const tracker = TRACKER_REQUESTS.find((t) => t === options.tracker);
  if (!tracker) {
    throw new UserError(`unknown tracker '${options.tracker}' (available: ${TRACKER_REQUESTS.join(', ')})`);
  }
  const maxDowntimeMs = millisecondsOption(options.maxDowntime, '--max-downtime', 1);
  const bandwidthBps =
    options.bandwidth === undefined ? undefined : rateOption(options.bandwidth, '--bandwidth');
  const reconnectTimeoutMs =
    options.reconnectTimeout === undefined
      ? undefined
      : millisecondsOption(options.reconnectTimeout, '--reconnect-timeout', 0);
  return {
    tracker,
    maxDowntimeMs,
    ...(bandwidthBps === undefined ? {} : { bandwidthBps }),
    ...(reconnectTimeoutMs === undefined ? {} : { reconnectTimeoutMs }),
  };
}

export function checkMode(mode: string): MigrateRequest['mode'] {
  if (!isMigrationMode(mode))
    throw new UserError(`unknown mode '${mode}' (available: ${MIGRATION_MODES.join(', ')})`);
  return mode;
}

/** Asks the source host to migrate, follows the NDJSON event stream, returns the final report. */
export async function requestMigration(
  source: HostClient,
  id: string,
  body: MigrateRequest,
  progress: MigrationProgressView,
): Promise<MigrationReport> {
  try {
    for await (const event of source.stream<MigrateEvent>(
      `/v1/enclaves/${encodeURIComponent(id)}/migrate`,
      body,
    )) {
      progress.update(event);
      if (event.type === 'report') return event.report as unknown as MigrationReport;
      if (event.type === 'error') {
        const state = event.sourceServing ? 'the source serves again' : 'the source stays paused';
        throw new UserError(`migration failed: ${event.message} (${state})`);
      }
    }
  } finally {
    progress.stop();
  }
  throw new UserError('migration failed: the source host closed the stream without a report');
}

export async function migrateCommand(id: string, options: MigrateOptions): Promise<void> {
  const mode = checkMode(options.mode);
  if (options.dataAddress) parseHostPort(options.dataAddress, '--data-address');
  const source = hostClient(options.from, options);
  const destination = hostClient(options.to, options);
  const report = await requestMigration(
    source,
    id,
    {
      to: destination.url,
      mode,
      dataAddress: options.dataAddress,
      verify: options.verify,
      ...liveOptions(options),
    },
    new MigrationProgressView(!options.json),
  );
  if (options.json) printJson(report);
  else process.stdout.write(`${renderReport(report)}\n`);
}

import { APP_KINDS } from '../../apps/registry.js';
import type { EnclaveInfo, RunRequest } from '../../host/api-schema.js';
import { UserError } from '../../util/errors.js';
import { type ClientOptions, hostClient, portOption, printJson, sizeOption } from '../context.js';

export interface RunOptions extends ClientOptions {
  host: string;
  heap: string;
  port: string;
  name?: string;
  fill?: string;
  json?: boolean;
}

export async function runCommand(app: string, options: RunOptions): Promise<void> {
  if (!(APP_KINDS as readonly string[]).includes(app)) {
    throw new UserError(`unknown application '${app}' (available: ${APP_KINDS.join(', ')})`);
  }
  const body: RunRequest = {
    app: app as RunRequest['app'],
    heapBytes: sizeOption(options.heap, '--heap'),
    port: portOption(options.port),
    name: options.name,
    fillBytes: options.fill ? sizeOption(options.fill, '--fill') : 0,
  };
  const info = await hostClient(options.host, options).call<EnclaveInfo>('POST', '/v1/enclaves', body);
  if (options.json) printJson(info);
  else process.stdout.write(`${info.id}\n`);
}

import type { EnclaveInfo } from '../../host/api-schema.js';
import { type ClientOptions, hostClient, printJson } from '../context.js';
import { renderEnclaves } from '../render.js';

export async function psCommand(options: ClientOptions & { host: string; json?: boolean }): Promise<void> {
  const list = await hostClient(options.host, options).call<EnclaveInfo[]>('GET', '/v1/enclaves');
  if (options.json) printJson(list);
  else process.stdout.write(`${renderEnclaves(list)}\n`);
}

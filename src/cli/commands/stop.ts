import { type ClientOptions, hostClient } from '../context.js';

export async function stopCommand(id: string, options: ClientOptions & { host: string }): Promise<void> {
  await hostClient(options.host, options).call('DELETE', `/v1/enclaves/${encodeURIComponent(id)}`);
  process.stdout.write(`stopped ${id}\n`);
}

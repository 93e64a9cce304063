import { HostClient } from '../host/client.js';
import { readToken } from '../host/token.js';
import { UserError } from '../util/errors.js';
import { parseSize, SizeError } from '../util/size.js';

/** Options every command that talks to a host accepts. */
export interface ClientOptions {
  tokenFile?: string;
}

/** The control token comes from --token-file, else $CONSTMIG_TOKEN, else none (a host without one). */
export function hostClient(url: string, options: ClientOptions): HostClient {
  const token = options.tokenFile ? readToken(options.tokenFile) : process.env.CONSTMIG_TOKEN || undefined;
  return new HostClient(url, token);
}

export function sizeOption(text: string, what: string): number {
  try {
    return parseSize(text);
  } catch (err) {
    if (err instanceof SizeError) throw new UserError(`${what}: ${err.message}`);
    throw err;
  }
}

export function portOption(text: string, what = '--port'): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || port < 1 || port > 65535)
    throw new UserError(`${what}: '${text}' is not a port (1-65535)`);
  return port;
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

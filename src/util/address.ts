import { UserError } from './errors.js';

export interface HostPort {
  host: string;
  port: number;
}

/** Parses "127.0.0.1:7401" or "[::1]:7401"; the port must be 0..65535. */
export function parseHostPort(text: string, what = 'address'): HostPort {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text.trim());
  const port = match ? Number(match[3]) : Number.NaN;
  const host = match ? (match[1] ?? match[2]) : undefined;
  if (!host || !Number.isInteger(port) || port > 65535) {
    throw new UserError(`malformed ${what} '${text}': expected HOST:PORT, e.g. 127.0.0.1:7401`);
  }
  return { host, port };
}

export function formatHostPort({ host, port }: HostPort): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

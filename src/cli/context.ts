import { HostClient } from '../host/client.js';
import { checkedToken, readToken } from '../host/token.js';
import { UserError } from '../util/errors.js';
import { parseRate, RateError } from '../util/rate.js';
import { parseSize, SizeError } from '../util/size.js';

/** Options every command that talks to a host accepts. */
export interface ClientOptions {
  tokenFile?: string;
}

/** How to pass a token, for the error when a host refuses a call that came without one. */
const TOKEN_HINT =
  "pass the host's control token with --token-file <file> (the host prints its file on start; " +
  'default <state-dir>/control-token), or set CONSTMIG_TOKEN_FILE=<file> or CONSTMIG_TOKEN=<token>';

interface FoundToken {
  token: string;
  from: string;
}

/** The control token: --token-file, else $CONSTMIG_TOKEN_FILE (a path), else $CONSTMIG_TOKEN (the token). */
function findToken(options: ClientOptions): FoundToken | null {
  if (options.tokenFile)
    return { token: readToken(options.tokenFile), from: `--token-file ${options.tokenFile}` };
  const file = process.env.CONSTMIG_TOKEN_FILE;
  if (file) return { token: readToken(file), from: `CONSTMIG_TOKEN_FILE=${file}` };
  const token = process.env.CONSTMIG_TOKEN;
  if (token) return { token: checkedToken(token, 'CONSTMIG_TOKEN'), from: 'CONSTMIG_TOKEN' };
  return null;
}

export function hostClient(url: string, options: ClientOptions): HostClient {
  const found = findToken(options);
  const hint = found ? `the host refused the token from ${found.from}` : TOKEN_HINT;
  return new HostClient(url, found?.token, hint);
}

export function sizeOption(text: string, what: string): number {
  try {
    return parseSize(text);
  } catch (err) {
    if (err instanceof SizeError) throw new UserError(`${what}: ${err.message}`);
    throw err;
  }
}

/** Bytes per second; see src/util/rate.ts for the grammar. */
export function rateOption(text: string, flag: string): number {
  try {
    return parseRate(text);
  } catch (err) {
    if (err instanceof RateError) throw new UserError(`${flag}: ${err.message}`);
    throw err;
  }
}

/** A whole number of milliseconds from `min` to one hour. */
export function millisecondsOption(text: string, flag: string, min: number): number {
  const ms = Number(text);
  if (!(/^\d+$/.test(text) && ms >= min && ms <= 3_600_000)) {
    throw new UserError(`${flag}: '${text}' is not a whole number of ms (${min} .. 3600000)`);
  }
  return ms;
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

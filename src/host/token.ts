import { randomBytes, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import { UserError } from '../util/errors.js';

/** Reads the control-API token from a file, creating one (32 random bytes, hex, mode 0600) if absent. */
export function loadOrCreateToken(file: string): string {
  try {
    const token = fs.readFileSync(file, 'utf8').trim();
    if (token.length < 16) throw new UserError(`token file ${file} holds fewer than 16 characters`);
    return token;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const token = randomBytes(32).toString('hex');
  fs.writeFileSync(file, `${token}\n`, { mode: 0o600, flag: 'wx' });
  return token;
}

export function readToken(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new UserError(`cannot read token file ${file}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
}

/** Checks an Authorization header against the token in constant time. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const presented = Buffer.from(header?.startsWith('Bearer ') ? header.slice(7) : '');
  const expected = Buffer.from(token);
  return presented.length === expected.length && timingSafeEqual(presented, expected);
}

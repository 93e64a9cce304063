import { randomBytes, timingSafeEqual, createHmac } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { UserError } from '../util/errors.js';

/**
 * The control token: one shared secret per cluster of host daemons. It authenticates callers of the
 * control API (bearer token) and source hosts on the peer port (see peer-auth.ts).
 */

/** RFC 6750 b64token: exactly what may follow "Bearer " in an Authorization header. */
const TOKEN_SYNTAX = /^[A-Za-z0-9\-._~+/]+=*$/;
export const MIN_TOKEN_CHARS = 32;

/** Why a token cannot protect the control API, or null if it can. */
export function tokenProblem(token: string): string | null {
  if (token.length < MIN_TOKEN_CHARS) {
    return `it holds ${token.length} characters, fewer than ${MIN_TOKEN_CHARS}`;
  }
  if (!TOKEN_SYNTAX.test(token)) return 'it holds characters that cannot follow "Bearer " in an HTTP header';
  return null;
}

const errnoCode = (err: unknown) => (err as NodeJS.ErrnoException).code ?? String(err);

/**
 * The host's control token: read from `file`, or, on first start, generated there (32 random bytes as
 * hex, mode 0600, parent folder 0700). Like ssh with a private key, refuses a file that another user
 * owns or that group or others may read or write: the token is the whole of the control API's security.
 */
export function loadOrCreateToken(file: string): string {
  const token = randomBytes(32).toString('hex');
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    // 'wx' fails if the file exists, so two daemons starting at once never overwrite each other's token.
    fs.writeFileSync(file, `${token}\n`, { mode: 0o600, flag: 'wx' });
    return token;
  } catch (err) {
    if (errnoCode(err) !== 'EEXIST')
      throw new UserError(`cannot create token file ${file}: ${errnoCode(err)}`);
  }
  return readPrivateToken(file);
}

function readPrivateToken(file: string): string {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (err) {
    throw new UserError(`cannot read token file ${file}: ${errnoCode(err)}`);
  }
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) throw new UserError(`token file ${file} is not a regular file`);
    const uid = process.getuid?.();
    if (uid !== undefined && stat.uid !== uid) {
      throw new UserError(`token file ${file} belongs to uid ${stat.uid}, not to this user (uid ${uid})`);
    }
    if ((stat.mode & 0o077) !== 0) {
      const mode = (stat.mode & 0o777).toString(8).padStart(4, '0');
      throw new UserError(
        `token file ${file} is accessible by group or others (mode ${mode}); run: chmod 600 ${file}`,
      );
    }
    return checkedToken(fs.readFileSync(fd, 'utf8').trim(), `token file ${file}`);
  } finally {
    fs.closeSync(fd);
  }
}

/** The CLI's side: a token file the operator names (no ownership rules: the host enforces those). */
export function readToken(file: string): string {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new UserError(`cannot read token file ${file}: ${errnoCode(err)}`);
  }
  return checkedToken(text.trim(), `token file ${file}`);
}

/** Returns the token, or throws a one-line UserError naming where it came from and what is wrong. */
export function checkedToken(token: string, where: string): string {
  const problem = tokenProblem(token);
  if (problem) throw new UserError(`${where} cannot be used as a control token: ${problem}`);
  return token;
}

/**
 * Checks presented tokens in constant time. Both sides are HMAC'd under a per-process random key
 * first, so timingSafeEqual always compares 32 bytes: neither the token's bytes nor its length leak
 * through the time a wrong guess takes.
 */
export class TokenVerifier {
  private readonly key = randomBytes(32);
  private readonly expected: Buffer;

  constructor(token: string) {
    this.expected = this.digest(checkedToken(token, 'the host token'));
  }

  /** True only for an Authorization header of exactly `Bearer <token>`. */
  acceptsHeader(header: string | undefined): boolean {
    const presented = header?.startsWith('Bearer ') ? header.slice('Bearer '.length) : '';
    return timingSafeEqual(this.digest(presented), this.expected);
  }

  private digest(text: string): Buffer {
    return createHmac('sha256', this.key).update(text, 'utf8').digest();
  }
}

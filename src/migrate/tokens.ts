import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * The migration tokens, after Intel TDX's migration protocol (DESIGN.md §2.4):
 *
 *   START  minted by the source once the application stopped; the destination may not resume without
 *          it. Binds the migration, the total page count and the digest of the metadata (see
 *          metadata-digest.ts), so it cannot be moved to another migration or another heap.
 *   ABORT  minted by the destination, only while it has not resumed; with it, and only with it, a
 *          source that already sent START may serve again.
 *   COMMIT minted by the destination once it holds every page (count and digest); the source then
 *          wipes its heap and keys and exits.
 *
 * token = HMAC-SHA256(k, "constmig/v1/token/<kind>\0" || migration id || u64be pages || metadata
 * digest || content digest), with the fields a kind does not bind left out; k is the minter's token
 * key from the handshake (migrate keys "token/source" or "token/destination"), so neither side can
 * mint the other's tokens and a token of another migration never verifies. Tokens travel inside
 * sealed frames like every control message; the MAC is what lets a token be checked after it left
 * the channel (an ABORT token relayed by the hosts when the connection broke).
 */

export const TOKEN_BYTES = 32;
const DIGEST_BYTES = 32;

export type TokenKind = 'start' | 'abort' | 'commit';

export interface StartClaims {
  pagesTotal: number;
  metadataDigest: Buffer;
}

export interface CommitClaims {
  pagesInstalled: number;
  metadataDigest: Buffer;
  /** Null when the migration ran without the content digest (--no-verify). */
  contentDigest: Buffer | null;
}

export class TokenError extends Error {
  override name = 'TokenError';
}

function u64(value: number): Buffer {
  const bytes = Buffer.alloc(8);
  bytes.writeBigUInt64BE(BigInt(value));
  return bytes;
}

function digestField(digest: Buffer | null): Buffer {
  if (digest === null) return Buffer.alloc(DIGEST_BYTES + 1);
  if (digest.length !== DIGEST_BYTES) throw new TokenError(`a digest is ${DIGEST_BYTES} bytes`);
  return Buffer.concat([Buffer.from([1]), digest]);
}

function claimsOf(kind: TokenKind, claims: StartClaims | CommitClaims | null): Buffer[] {
  if (kind === 'abort' || claims === null) return [];
  if ('pagesTotal' in claims) return [u64(claims.pagesTotal), digestField(claims.metadataDigest)];
  return [u64(claims.pagesInstalled), digestField(claims.metadataDigest), digestField(claims.contentDigest)];
}

function mac(
  key: Buffer,
  migrationId: Buffer,
  kind: TokenKind,
  claims: StartClaims | CommitClaims | null,
): Buffer {
  const hmac = createHmac('sha256', key).update(`constmig/v1/token/${kind}\0`).update(migrationId);
  for (const part of claimsOf(kind, claims)) hmac.update(part);
  return hmac.digest();
}

/** Mints this side's tokens for one migration. */
export class TokenMinter {
  constructor(
    private readonly key: Buffer,
    private readonly migrationId: Buffer,
  ) {}

  start(claims: StartClaims): string {
    return mac(this.key, this.migrationId, 'start', claims).toString('hex');
  }

  abort(): string {
    return mac(this.key, this.migrationId, 'abort', null).toString('hex');
  }

  commit(claims: CommitClaims): string {
    return mac(this.key, this.migrationId, 'commit', claims).toString('hex');
  }
}

/** Checks the peer's tokens for one migration; every failure is a TokenError naming the kind. */
export class TokenVerifier {
  constructor(
    private readonly key: Buffer,
    readonly migrationId: Buffer,
  ) {}

  checkStart(token: string, claims: StartClaims): void {
    this.check('start', token, claims);
  }

  checkAbort(token: string): void {
    this.check('abort', token, null);
  }

  checkCommit(token: string, claims: CommitClaims): void {
    this.check('commit', token, claims);
  }

  private check(kind: TokenKind, token: string, claims: StartClaims | CommitClaims | null): void {
    const presented = /^[0-9a-f]{64}$/.test(token) ? Buffer.from(token, 'hex') : Buffer.alloc(0);
    const expected = mac(this.key, this.migrationId, kind, claims);
    if (presented.length !== TOKEN_BYTES || !timingSafeEqual(presented, expected)) {
      throw new TokenError(`${kind.toUpperCase()} token is not valid for this migration`);
    }
  }
}

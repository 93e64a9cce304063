import {
  createHash,
  createHmac,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
  randomBytes,
  timingSafeEqual,
} from 'node:crypto';
import { z } from 'zod';
import {
  type Evidence,
  encodeEvidence,
  evidenceSchema,
  type TeeBackend,
  type VerifiedEvidence,
} from '../tee/backend.js';
import { errorMessage } from '../util/errors.js';
import { encodeHeader, type Frame, FrameType } from '../wire/frame.js';
import type { FramedSocket } from '../wire/framed-socket.js';

/**
 * The handshake between the source and the destination enclave (DESIGN.md §4, step 2).
 *
 * Plaintext frames carrying JSON; the destination speaks first (its host hands it the accepted
 * socket, and bytes the source sent early could be lost in that hand-over):
 *
 *   1. D→S Hello      {v:1, pub: pub_D, nonce: nonce_D}
 *   2. S→D HelloReply {v:1, pub: pub_S, nonce: nonce_S, evidence: E_S}
 *   3. D→S Confirm    {v:1, evidence: E_D, mac: mac_D}
 *   4. S→D Confirm    {v:1, mac: mac_S}
 *
 * pub_X are raw 32-byte X25519 ephemeral keys and nonce_X 32 random bytes, both base64. Transcript:
 *
 *   th1 = SHA-256("constmig/v1/th1\0" || pub_D || nonce_D || pub_S || nonce_S)
 *   th2 = SHA-256("constmig/v1/th2\0" || th1 || enc(E_S))
 *   th3 = SHA-256("constmig/v1/th3\0" || th2 || enc(E_D))
 *
 * where enc is encodeEvidence (length-prefixed fields, signature included). Report data, 64 bytes:
 *
 *   E_S.reportData = SHA-256("constmig/v1/report/source\0" || th1)      || 32 zero bytes
 *   E_D.reportData = SHA-256("constmig/v1/report/destination\0" || th2) || 32 zero bytes
 *
 * so each evidence binds both ephemeral keys and both nonces (E_D also binds E_S). Keys come from
 * HKDF-SHA256(ikm = X25519(eph_S, eph_D), salt = th3) with one info label each; the MACs are
 * mac_X = HMAC-SHA256(confirm key of X, th3). A party that relays with its own X25519 keys cannot make
 * the evidence match both sides' transcripts; replayed evidence binds an old transcript.
 */

export class HandshakeError extends Error {
  override name = 'HandshakeError';
}

export type Role = 'source' | 'destination';

export interface SessionKeys {
  role: Role;
  migrationId: Buffer;
  sendKey: Buffer;
  recvKey: Buffer;
  peer: VerifiedEvidence;
}

export interface HandshakeOptions {
  role: Role;
  channel: FramedSocket;
  tee: TeeBackend;
  /** Throws HandshakeError to refuse the peer; by default the peer must run the same measurement. */
  acceptPeer?: (peer: VerifiedEvidence, own: TeeBackend) => void;
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 10_000;
/** Handshake messages are a few hundred bytes; anything much larger is not one. */
const MAX_MESSAGE_BYTES = 8 * 1024;
const VERSION = 1;
const X25519_SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

const base64Bytes = (length: number) =>
  z
    .string()
    .length(Math.ceil(length / 3) * 4)
    .regex(/^[A-Za-z0-9+/]+={0,2}$/)
    .transform((text, ctx) => {
      const bytes = Buffer.from(text, 'base64');
      if (bytes.length !== length || bytes.toString('base64') !== text) {
        ctx.addIssue({ code: 'custom', message: `expected ${length} bytes of canonical base64` });
        return z.NEVER;
      }
      return bytes;
    });

const helloSchema = z.strictObject({ v: z.literal(VERSION), pub: base64Bytes(32), nonce: base64Bytes(32) });
const helloReplySchema = helloSchema.extend({ evidence: evidenceSchema });
const destinationConfirmSchema = z.strictObject({
  v: z.literal(VERSION),
  evidence: evidenceSchema,
  mac: base64Bytes(32),
});
const sourceConfirmSchema = z.strictObject({ v: z.literal(VERSION), mac: base64Bytes(32) });

function sha256(...parts: Uint8Array[]): Buffer {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  return hash.digest();
}

const label = (text: string): Buffer => Buffer.from(`constmig/v1/${text}\0`, 'utf8');

function reportDataFor(role: Role, transcriptHash: Buffer): Buffer {
  return Buffer.concat([sha256(label(`report/${role}`), transcriptHash), Buffer.alloc(32)]);
}

function defaultAcceptPeer(peer: VerifiedEvidence, own: TeeBackend): void {
  if (peer.measurement !== own.measurement) {
    throw new HandshakeError(`peer measurement ${peer.measurement} differs from ours ${own.measurement}`);
  }
}

interface Ephemeral {
  privateKey: KeyObject;
  pub: Buffer;
  nonce: Buffer;
}

function newEphemeral(): Ephemeral {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  const spki = publicKey.export({ format: 'der', type: 'spki' });
  return { privateKey, pub: spki.subarray(X25519_SPKI_PREFIX.length), nonce: randomBytes(32) };
}

function sharedSecret(own: Ephemeral, peerPub: Buffer): Buffer {
  try {
    const publicKey = createPublicKey({
      key: Buffer.concat([X25519_SPKI_PREFIX, peerPub]),
      format: 'der',
      type: 'spki',
    });
    return diffieHellman({ privateKey: own.privateKey, publicKey });
  } catch {
    // OpenSSL refuses low-order points, whose shared secret would be all zeros.
    throw new HandshakeError('peer X25519 public key is unusable');
  }
}

interface DerivedKeys {
  migrationId: Buffer;
  sourceToDestination: Buffer;
  destinationToSource: Buffer;
  sourceConfirm: Buffer;
  destinationConfirm: Buffer;
}

function deriveKeys(secret: Buffer, th3: Buffer): DerivedKeys {
  const expand = (info: string): Buffer =>
    Buffer.from(hkdfSync('sha256', secret, th3, `constmig/v1/${info}`, 32));
  const keys = {
    migrationId: expand('migration-id'),
    sourceToDestination: expand('key/source-to-destination'),
    destinationToSource: expand('key/destination-to-source'),
    sourceConfirm: expand('confirm/source'),
    destinationConfirm: expand('confirm/destination'),
  };
  secret.fill(0);
  return keys;
}

const mac = (key: Buffer, th3: Buffer): Buffer => createHmac('sha256', key).update(th3).digest();

function checkMac(received: Buffer, key: Buffer, th3: Buffer, who: Role): void {
  if (!timingSafeEqual(received, mac(key, th3))) {
    throw new HandshakeError(`${who} key confirmation failed (the peer derived different keys)`);
  }
}

/** Talks to the channel with one deadline for the whole handshake. */
class HandshakeChannel {
  private readonly deadline = new AbortController();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly channel: FramedSocket,
    timeoutMs: number,
  ) {
    this.timer = setTimeout(
      () => this.deadline.abort(new HandshakeError(`handshake timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
    this.timer.unref();
  }

  send(type: FrameType, message: object): Promise<void> {
    const body = Buffer.from(JSON.stringify(message), 'utf8');
    const header = encodeHeader({
      bodyLength: body.length,
      type,
      sealed: false,
      epoch: 0,
      pageCount: 0,
      firstPage: 0,
      seq: 0,
    });
    return this.withDeadline(this.channel.send([header, body]));
  }

  async receive<T>(type: FrameType, schema: z.ZodType<T>): Promise<T> {
    const frame = await this.channel.next(this.deadline.signal);
    return parseMessage(frame, type, schema);
  }

  done(): void {
    clearTimeout(this.timer);
  }

  private withDeadline<T>(work: Promise<T>): Promise<T> {
    const signal = this.deadline.signal;
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      work.then(
        (value) => {
          signal.removeEventListener('abort', onAbort);
          resolve(value);
        },
        (err: unknown) => {
          signal.removeEventListener('abort', onAbort);
          reject(err);
        },
      );
    });
  }
}

function parseMessage<T>(frame: Frame, type: FrameType, schema: z.ZodType<T>): T {
  const name = FrameType[type];
  if (frame.header.type !== type || frame.header.sealed) {
    const got = `${frame.header.sealed ? 'sealed ' : ''}${FrameType[frame.header.type]}`;
    throw new HandshakeError(`expected a plaintext ${name} frame, got ${got}`);
  }
  if (frame.bodyLength > MAX_MESSAGE_BYTES) {
    throw new HandshakeError(`${name} message of ${frame.bodyLength} B exceeds ${MAX_MESSAGE_BYTES} B`);
  }
  let json: unknown;
  try {
    json = JSON.parse(Buffer.concat(frame.body).toString('utf8'));
  } catch {
    throw new HandshakeError(`${name} message is not JSON`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new HandshakeError(
      `malformed ${name} message: ${issue?.path.join('.') || '(root)'}: ${issue?.message}`,
    );
  }
  return parsed.data;
}

function verifyPeer(
  opts: HandshakeOptions,
  evidence: Evidence,
  peerRole: Role,
  transcriptHash: Buffer,
): VerifiedEvidence {
  let peer: VerifiedEvidence;
  try {
    peer = opts.tee.verify(evidence, reportDataFor(peerRole, transcriptHash));
  } catch (err) {
    throw new HandshakeError(`${peerRole} evidence rejected: ${errorMessage(err)}`, { cause: err });
  }
  try {
    (opts.acceptPeer ?? defaultAcceptPeer)(peer, opts.tee);
  } catch (err) {
    if (err instanceof HandshakeError) throw err;
    throw new HandshakeError(`${peerRole} refused by policy: ${errorMessage(err)}`, { cause: err });
  }
  return peer;
}

async function runDestination(opts: HandshakeOptions, io: HandshakeChannel): Promise<SessionKeys> {
  const own = newEphemeral();
  await io.send(FrameType.Hello, {
    v: VERSION,
    pub: own.pub.toString('base64'),
    nonce: own.nonce.toString('base64'),
  });

  const reply = await io.receive(FrameType.HelloReply, helloReplySchema);
  const th1 = sha256(label('th1'), own.pub, own.nonce, reply.pub, reply.nonce);
  const peer = verifyPeer(opts, reply.evidence, 'source', th1);
  const th2 = sha256(label('th2'), th1, encodeEvidence(reply.evidence));
  const evidence = opts.tee.report(reportDataFor('destination', th2));
  const th3 = sha256(label('th3'), th2, encodeEvidence(evidence));
  const keys = deriveKeys(sharedSecret(own, reply.pub), th3);
  await io.send(FrameType.Confirm, {
    v: VERSION,
    evidence,
    mac: mac(keys.destinationConfirm, th3).toString('base64'),
  });

  const confirm = await io.receive(FrameType.Confirm, sourceConfirmSchema);
  checkMac(confirm.mac, keys.sourceConfirm, th3, 'source');
  return {
    role: 'destination',
    migrationId: keys.migrationId,
    sendKey: keys.destinationToSource,
    recvKey: keys.sourceToDestination,
    peer,
  };
}

async function runSource(opts: HandshakeOptions, io: HandshakeChannel): Promise<SessionKeys> {
  const hello = await io.receive(FrameType.Hello, helloSchema);
  const own = newEphemeral();
  const th1 = sha256(label('th1'), hello.pub, hello.nonce, own.pub, own.nonce);
  const evidence = opts.tee.report(reportDataFor('source', th1));
  await io.send(FrameType.HelloReply, {
    v: VERSION,
    pub: own.pub.toString('base64'),
    nonce: own.nonce.toString('base64'),
    evidence,
  });

  const confirm = await io.receive(FrameType.Confirm, destinationConfirmSchema);
  const th2 = sha256(label('th2'), th1, encodeEvidence(evidence));
  const peer = verifyPeer(opts, confirm.evidence, 'destination', th2);
  const th3 = sha256(label('th3'), th2, encodeEvidence(confirm.evidence));
  const keys = deriveKeys(sharedSecret(own, hello.pub), th3);
  checkMac(confirm.mac, keys.destinationConfirm, th3, 'destination');
  await io.send(FrameType.Confirm, { v: VERSION, mac: mac(keys.sourceConfirm, th3).toString('base64') });
  return {
    role: 'source',
    migrationId: keys.migrationId,
    sendKey: keys.sourceToDestination,
    recvKey: keys.destinationToSource,
    peer,
  };
}

/**
 * Runs one side of the handshake. Every failure is a HandshakeError; the channel is left as it is
 * (the caller decides whether to destroy it).
 */
export async function handshake(opts: HandshakeOptions): Promise<SessionKeys> {
  const io = new HandshakeChannel(opts.channel, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  try {
    return await (opts.role === 'source' ? runSource(opts, io) : runDestination(opts, io));
  } catch (err) {
    if (err instanceof HandshakeError) throw err;
    throw new HandshakeError(`handshake failed: ${errorMessage(err)}`, { cause: err });
  } finally {
    io.done();
  }
}

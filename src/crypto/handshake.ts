import type { Evidence, TeeBackend, VerifiedEvidence } from '../tee/backend.js';
import { encodeEvidence, verifyEvidence } from '../tee/evidence.js';
import type { AttestationPolicy } from '../tee/policy.js';
import { errorMessage } from '../util/errors.js';
import { FrameType } from '../wire/frame.js';
import type { FramedSocket } from '../wire/framed-socket.js';
import { HandshakeError } from './handshake-error.js';
import {
  destinationConfirmSchema,
  HandshakeChannel,
  helloReplySchema,
  helloSchema,
  sourceConfirmSchema,
  VERSION,
} from './handshake-messages.js';
import {
  checkConfirmation,
  confirmationMac,
  deriveKeys,
  newEphemeral,
  type Role,
  reportDataFor,
  sharedSecret,
  transcriptHash,
} from './key-schedule.js';

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
 * HKDF-SHA256(ikm = X25519(eph_S, eph_D), salt = th3), 32 bytes for each info label
 * "constmig/v1/migration-id", ".../key/source-to-destination", ".../key/destination-to-source",
 * ".../confirm/source", ".../confirm/destination", ".../token/source" and ".../token/destination"
 * (the MAC keys of the migration tokens, see migrate/tokens.ts); the confirmation MACs are mac_X = HMAC-SHA256(confirm key
 * of X, th3). A party that relays with its own X25519 keys cannot make the evidence match both sides'
 * transcripts; replayed evidence binds an old transcript.
 *
 * Each side verifies the peer's evidence with the verifier of the peer's backend (signatures, chain
 * to a root, report data), then asks the attestation policy whether that platform is trusted and
 * whether the two measurements may be paired in this direction.
 */

export { HandshakeError } from './handshake-error.js';
export type { Role } from './key-schedule.js';

export interface SessionKeys {
  role: Role;
  migrationId: Buffer;
  sendKey: Buffer;
  recvKey: Buffer;
  /** MAC key of the tokens this side mints. */
  ownTokenKey: Buffer;
  /** MAC key of the tokens the peer mints. */
  peerTokenKey: Buffer;
  /** Derives the keys of the connections opened after the handshake (key-schedule.ts channelKey). */
  channelSecret: Buffer;
  peer: VerifiedEvidence;
}

export interface HandshakeOptions {
  role: Role;
  channel: FramedSocket;
  tee: TeeBackend;
  /** Decides which platforms and measurements are acceptable peers. */
  policy: AttestationPolicy;
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 10_000;

function verifyPeer(
  opts: HandshakeOptions,
  evidence: Evidence,
  peerRole: Role,
  transcriptHash: Buffer,
): VerifiedEvidence {
  let peer: VerifiedEvidence;
  try {
    peer = verifyEvidence(evidence, reportDataFor(peerRole, transcriptHash), opts.policy.quoteVerifier);
  } catch (err) {
    throw new HandshakeError(`${peerRole} evidence rejected: ${errorMessage(err)}`, { cause: err });
  }
  try {
    opts.policy.checkPeer(peer, opts.tee.measurement, peerRole);
  } catch (err) {
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
  const secret = sharedSecret(own, reply.pub);
  const th1 = transcriptHash('th1', own.pub, own.nonce, reply.pub, reply.nonce);
  const peer = verifyPeer(opts, reply.evidence, 'source', th1);
  const th2 = transcriptHash('th2', th1, encodeEvidence(reply.evidence));
  const evidence = opts.tee.report(reportDataFor('destination', th2));
  const th3 = transcriptHash('th3', th2, encodeEvidence(evidence));
  const keys = deriveKeys(secret, th3);
  await io.send(FrameType.Confirm, {
    v: VERSION,
    evidence,
    mac: confirmationMac(keys.destinationConfirm, th3).toString('base64'),
  });

  const confirm = await io.receive(FrameType.Confirm, sourceConfirmSchema);
  checkConfirmation(confirm.mac, keys.sourceConfirm, th3, 'source');
  return {
    role: 'destination',
    migrationId: keys.migrationId,
    sendKey: keys.destinationToSource,
    recvKey: keys.sourceToDestination,
    ownTokenKey: keys.destinationToken,
    peerTokenKey: keys.sourceToken,
    channelSecret: keys.channelSecret,
    peer,
  };
}

async function runSource(opts: HandshakeOptions, io: HandshakeChannel): Promise<SessionKeys> {
  const hello = await io.receive(FrameType.Hello, helloSchema);
  const own = newEphemeral();
  const secret = sharedSecret(own, hello.pub);
  const th1 = transcriptHash('th1', hello.pub, hello.nonce, own.pub, own.nonce);
  const evidence = opts.tee.report(reportDataFor('source', th1));
  await io.send(FrameType.HelloReply, {
    v: VERSION,
    pub: own.pub.toString('base64'),
    nonce: own.nonce.toString('base64'),
    evidence,
  });

  const confirm = await io.receive(FrameType.Confirm, destinationConfirmSchema);
  const th2 = transcriptHash('th2', th1, encodeEvidence(evidence));
  const peer = verifyPeer(opts, confirm.evidence, 'destination', th2);
  const th3 = transcriptHash('th3', th2, encodeEvidence(confirm.evidence));
  const keys = deriveKeys(secret, th3);
  checkConfirmation(confirm.mac, keys.destinationConfirm, th3, 'destination');
  await io.send(FrameType.Confirm, {
    v: VERSION,
    mac: confirmationMac(keys.sourceConfirm, th3).toString('base64'),
  });
  return {
    role: 'source',
    migrationId: keys.migrationId,
    sendKey: keys.sourceToDestination,
    recvKey: keys.destinationToSource,
    ownTokenKey: keys.sourceToken,
    peerTokenKey: keys.destinationToken,
    channelSecret: keys.channelSecret,
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

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
import { HandshakeError } from './handshake-error.js';

/** The hashes, report data, key derivation and key confirmation of the handshake (see handshake.ts). */

export type Role = 'source' | 'destination';

const X25519_SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

/** One side's fresh X25519 key pair and nonce; the private key never leaves this object. */
export interface Ephemeral {
  privateKey: KeyObject;
  pub: Buffer;
  nonce: Buffer;
}

export function newEphemeral(): Ephemeral {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  const spki = publicKey.export({ format: 'der', type: 'spki' });
  return { privateKey, pub: spki.subarray(X25519_SPKI_PREFIX.length), nonce: randomBytes(32) };
}

export function sharedSecret(own: Ephemeral, peerPub: Buffer): Buffer {
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

const label = (text: string): Buffer => Buffer.from(`constmig/v1/${text}\0`, 'utf8');

/** SHA-256("constmig/v1/<step>\0" || parts...); every part has a fixed length or is self-delimiting. */
export function transcriptHash(step: 'th1' | 'th2' | 'th3', ...parts: Uint8Array[]): Buffer {
  const hash = createHash('sha256').update(label(step));
  for (const part of parts) hash.update(part);
  return hash.digest();
}

/** SHA-256("constmig/v1/report/<role>\0" || transcript hash) || 32 zero bytes. */
export function reportDataFor(role: Role, transcript: Buffer): Buffer {
  const digest = createHash('sha256')
    .update(label(`report/${role}`))
    .update(transcript)
    .digest();
  return Buffer.concat([digest, Buffer.alloc(32)]);
}

export interface DerivedKeys {
  migrationId: Buffer;
  sourceToDestination: Buffer;
  destinationToSource: Buffer;
  sourceConfirm: Buffer;
  destinationConfirm: Buffer;
  /** MAC keys of the tokens each side mints (START by the source; ABORT and COMMIT by the destination). */
  sourceToken: Buffer;
  destinationToken: Buffer;
  /** Input of the per-channel keys of the connections opened after the handshake (channelKey). */
  channelSecret: Buffer;
}

/** HKDF-SHA256 over the shared secret, salted with the final transcript hash; wipes the secret. */
export function deriveKeys(secret: Buffer, finalTranscript: Buffer): DerivedKeys {
  const expand = (info: string): Buffer =>
    Buffer.from(hkdfSync('sha256', secret, finalTranscript, `constmig/v1/${info}`, 32));
  const keys = {
    migrationId: expand('migration-id'),
    sourceToDestination: expand('key/source-to-destination'),
    destinationToSource: expand('key/destination-to-source'),
    sourceConfirm: expand('confirm/source'),
    destinationConfirm: expand('confirm/destination'),
    sourceToken: expand('token/source'),
    destinationToken: expand('token/destination'),
    channelSecret: expand('channel-secret'),
  };
  secret.fill(0);
  return keys;
}

export function confirmationMac(confirmKey: Buffer, finalTranscript: Buffer): Buffer {
  return createHmac('sha256', confirmKey).update(finalTranscript).digest();
}

export function checkConfirmation(
  received: Buffer,
  confirmKey: Buffer,
  finalTranscript: Buffer,
  who: Role,
): void {
  if (!timingSafeEqual(received, confirmationMac(confirmKey, finalTranscript))) {
    throw new HandshakeError(`${who} key confirmation failed (the peer derived different keys)`);
  }
}

/**
 * The sealing key of one direction of one extra connection (e.g. the urgent channel) in one
 * generation: each reconnection is a new generation, so its frame counter starts at 0 under a key
 * that never sealed anything, and a frame of an earlier connection never opens on a later one.
 */
export function channelKey(channelSecret: Buffer, channel: string, from: Role, generation: number): Buffer {
  return Buffer.from(
    hkdfSync(
      'sha256',
      channelSecret,
      Buffer.alloc(0),
      `constmig/v1/channel/${channel}/${from}/${generation}`,
      32,
    ),
  );
}

import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Authentication of source hosts on the peer port. The source host proves it holds the cluster's
 * control token by a MAC over the routing ticket the destination issued at PREPARE, so a party that
 * can reach the peer port but holds no token is dropped before any enclave sees its connection. The
 * enclaves' own handshake still authenticates the enclaves; this only keeps strangers off the port.
 */
const LABEL = Buffer.from('constmig/v1/peer-auth\0', 'ascii');

/** HMAC-SHA256(key = host token, "constmig/v1/peer-auth\0" || ticket). */
export function peerAuth(token: string, ticketHex: string): Buffer {
  return createHmac('sha256', token).update(LABEL).update(Buffer.from(ticketHex, 'hex')).digest();
}

export function peerAuthMatches(token: string, ticketHex: string, presented: Buffer): boolean {
  const expected = peerAuth(token, ticketHex);
  return presented.length === expected.length && timingSafeEqual(presented, expected);
}

/**
 * The first bytes a source enclave sends on a data connection to the destination host's peer port, so
 * that the (untrusted) host can hand the socket to the right incoming enclave. The ticket is a routing
 * label, not a secret; the peer auth is the source host's MAC over it (src/host/peer-auth.ts), which
 * the enclave carries without being able to check it. Neither protects the enclaves: their handshake
 * does. Version 2 of the magic: the version-1 preamble had no peer auth.
 */
export const PREAMBLE_MAGIC = Buffer.from('CMIGDAT2', 'ascii');
export const TICKET_BYTES = 16;
export const PEER_AUTH_BYTES = 32;
export const PREAMBLE_BYTES = PREAMBLE_MAGIC.length + TICKET_BYTES + PEER_AUTH_BYTES;

export interface Preamble {
  /** hex */
  ticket: string;
  peerAuth: Buffer;
}

function fixedHex(hex: string, bytes: number, what: string): Buffer {
  const buf = Buffer.from(hex, 'hex');
  if (buf.length !== bytes || buf.toString('hex') !== hex.toLowerCase()) {
    throw new Error(`${what} must be ${bytes} bytes of hex`);
  }
  return buf;
}

export function encodePreamble(ticketHex: string, peerAuthHex: string): Buffer {
  return Buffer.concat([
    PREAMBLE_MAGIC,
    fixedHex(ticketHex, TICKET_BYTES, 'ticket'),
    fixedHex(peerAuthHex, PEER_AUTH_BYTES, 'peer auth'),
  ]);
}

/** Returns the ticket (hex) and the peer auth, or null if the bytes are not a preamble. */
export function decodePreamble(bytes: Buffer): Preamble | null {
  if (bytes.length !== PREAMBLE_BYTES || !bytes.subarray(0, PREAMBLE_MAGIC.length).equals(PREAMBLE_MAGIC)) {
    return null;
  }
  const ticketEnd = PREAMBLE_MAGIC.length + TICKET_BYTES;
  return {
    ticket: bytes.subarray(PREAMBLE_MAGIC.length, ticketEnd).toString('hex'),
    peerAuth: Buffer.from(bytes.subarray(ticketEnd)),
  };
}

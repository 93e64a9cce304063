/**
 * The first bytes a source enclave sends on a data connection to the destination host's peer port, so
 * that the (untrusted) host can hand the socket to the right incoming enclave. The ticket is a routing
 * label, not a secret: a host that misroutes or a third party that connects first only makes the
 * handshake fail.
 */
export const PREAMBLE_MAGIC = Buffer.from('CMIGDATA', 'ascii');
export const TICKET_BYTES = 16;
export const PREAMBLE_BYTES = PREAMBLE_MAGIC.length + TICKET_BYTES;

export function encodePreamble(ticketHex: string): Buffer {
  const ticket = Buffer.from(ticketHex, 'hex');
  if (ticket.length !== TICKET_BYTES) throw new Error(`ticket must be ${TICKET_BYTES} bytes of hex`);
  return Buffer.concat([PREAMBLE_MAGIC, ticket]);
}

/** Returns the ticket as hex, or null if the bytes are not a preamble. */
export function decodePreamble(bytes: Buffer): string | null {
  if (bytes.length !== PREAMBLE_BYTES || !bytes.subarray(0, PREAMBLE_MAGIC.length).equals(PREAMBLE_MAGIC)) {
    return null;
  }
  return bytes.subarray(PREAMBLE_MAGIC.length).toString('hex');
}

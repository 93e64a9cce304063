/** Any reason a handshake did not produce session keys; the message says which step failed and why. */
export class HandshakeError extends Error {
  override name = 'HandshakeError';
}

/** A command met a value of the wrong kind; the message is the Redis error reply, code included. */
export class KvValueError extends Error {
  override name = 'KvValueError';
}

/** Root slot 0 of the heap does not hold a kv store this code understands. */
export class KvFormatError extends Error {
  override name = 'KvFormatError';
}

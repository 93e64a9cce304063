export const INT64_MIN = -(2n ** 63n);
export const INT64_MAX = 2n ** 63n - 1n;

const CANONICAL_INTEGER = /^(?:0|-?[1-9][0-9]{0,18})$/;

/**
 * Redis's string2ll: a signed 64-bit integer in canonical form (no sign '+', no leading zeros, no
 * spaces, no "-0"), else null.
 */
export function parseRedisInteger(text: Buffer | string): bigint | null {
  const s = typeof text === 'string' ? text : text.length > 20 ? '' : text.toString('latin1');
  if (!CANONICAL_INTEGER.test(s)) return null;
  const value = BigInt(s);
  return value < INT64_MIN || value > INT64_MAX ? null : value;
}

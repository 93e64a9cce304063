/**
 * Parses and prints transfer rates the way operators write them ("1gbit", "500kbit", "100MB/s").
 *
 * Grammar (units case-insensitive except the final B of a byte unit; whitespace allowed between the
 * number and the unit; "/s" optional):
 *
 *   rate   = number unit ["/s"]            number: digits with an optional fraction, no sign or exponent
 *   bits   = "bit" | "kbit" | "mbit" | "gbit" | "tbit"          decimal, as in tc: 1kbit = 1000 bit/s
 *          | "kibit" | "mibit" | "gibit" | "tibit"              binary, as in tc: 1kibit = 1024 bit/s
 *   bytes  = any unit parseSize reads, spelled with a capital B:  B, KB/MB/GB/TB decimal,
 *            KiB/MiB/GiB/TiB and bare K/M/G/T binary (as in QEMU, curl and rsync): 250M = 250 MiB/s
 *
 * Refused because a slip costs a factor of 8: a bare number (tc reads bits, sizes read bytes), any
 * unit ending in "bps" (bytes in tc, bits to everyone else), and byte units with a lowercase b
 * ("100mb", "100Mb": megabits to most network people, megabytes to parseSize).
 */
import { parseSize } from './size.js';

/** 1 Tbit/s: no link this runs on comes close, so a larger value is a typo (an extra digit, bytes for bits). */
export const MAX_BYTES_PER_SECOND = 1e12 / 8;

const EXAMPLE = 'e.g. 1gbit (bits/s, as in tc) or 100MB/s (bytes/s)';

const BIT_PREFIXES: Record<string, number> = {
  '': 1,
  k: 1e3,
  m: 1e6,
  g: 1e9,
  t: 1e12,
  ki: 2 ** 10,
  mi: 2 ** 20,
  gi: 2 ** 30,
  ti: 2 ** 40,
};

const BYTE_UNIT = /^(?:[kmgt]i?)?B$|^[kmgt]$/i;

export class RateError extends Error {
  override name = 'RateError';
}

/** Bytes per second (not necessarily whole: 1bit is 0.125), in (0, MAX_BYTES_PER_SECOND]. */
export function parseRate(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)(?:\/s)?\s*$/.exec(text);
  if (!match) throw new RateError(`malformed rate '${text}': expected a number and a unit, ${EXAMPLE}`);
  const value = Number(match[1]);
  const unit = match[2] ?? '';
  const bytesPerSecond = value * unitBytes(text, unit);
  if (bytesPerSecond === 0) throw new RateError(`rate '${text}' is zero: give a positive rate, ${EXAMPLE}`);
  if (!(bytesPerSecond <= MAX_BYTES_PER_SECOND)) {
    throw new RateError(`rate '${text}' is above ${formatRate(MAX_BYTES_PER_SECOND)}: ${EXAMPLE}`);
  }
  return bytesPerSecond;
}

/** Bytes per second that one `unit` stands for. */
function unitBytes(text: string, unit: string): number {
  if (unit === '') {
    throw new RateError(`rate '${text}' has no unit: say whether it is bits or bytes, ${EXAMPLE}`);
  }
  const lower = unit.toLowerCase();
  if (lower.endsWith('bps') || unit.endsWith('b')) {
    throw new RateError(
      `ambiguous unit '${unit}' in rate '${text}': write bits as kbit/mbit/gbit and bytes with a capital B, ${EXAMPLE}`,
    );
  }
  if (lower.endsWith('bit')) {
    const prefix = BIT_PREFIXES[lower.slice(0, -'bit'.length)];
    if (prefix !== undefined) return prefix / 8;
  } else if (BYTE_UNIT.test(unit)) {
    // parseSize owns what each byte unit means; BYTE_UNIT only narrows how it may be spelled here.
    return parseSize(`1${unit}`);
  }
  throw new RateError(
    `unknown unit '${unit}' in rate '${text}' (use bit, kbit, mbit, gbit, kibit, ..., or B, KB, MB, GB, KiB, MiB, GiB, ...), ${EXAMPLE}`,
  );
}

const RATE_UNITS = ['bit/s', 'kbit/s', 'Mbit/s', 'Gbit/s', 'Tbit/s'];

/** In bits per second with SI prefixes, as link speeds are quoted: 125e6 is "1.00 Gbit/s". */
export function formatRate(bytesPerSecond: number): string {
  if (bytesPerSecond === Infinity) return 'unlimited';
  let value = bytesPerSecond * 8;
  let unit = 0;
  // 999.95 rather than 1000 so that a value printing as "1000.0" moves up to "1.00" of the next unit.
  while (value >= 999.95 && unit < RATE_UNITS.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 2 : 1)} ${RATE_UNITS[unit]}`;
}

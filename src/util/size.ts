/** Parses and prints byte sizes the way operators write them ("1GiB", "256M", "512 KiB", "4096"). */

const UNITS: Record<string, number> = {
  b: 1,
  k: 2 ** 10,
  kib: 2 ** 10,
  kb: 1e3,
  m: 2 ** 20,
  mib: 2 ** 20,
  mb: 1e6,
  g: 2 ** 30,
  gib: 2 ** 30,
  gb: 1e9,
  t: 2 ** 40,
  tib: 2 ** 40,
  tb: 1e12,
};

export class SizeError extends Error {
  override name = 'SizeError';
}

/** Bare K/M/G are binary (as in `dd` and `qemu`); KB/MB/GB are decimal; KiB/MiB/GiB binary. */
export function parseSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  if (!match)
    throw new SizeError(`malformed size '${text}': expected a number with an optional unit, e.g. 1GiB`);
  const unit = (match[2] ?? '').toLowerCase();
  const factor = unit === '' ? 1 : UNITS[unit];
  if (factor === undefined) {
    throw new SizeError(
      `malformed size '${text}': unknown unit '${match[2]}' (use B, KiB, MiB, GiB, TiB, KB, MB, GB)`,
    );
  }
  const bytes = Math.round(Number(match[1]) * factor);
  if (!Number.isSafeInteger(bytes)) throw new SizeError(`size '${text}' is too large`);
  return bytes;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}

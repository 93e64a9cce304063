/**
 * Splits an inline command line (`SET "a b" c`, as typed into telnet) into arguments the way Redis's
 * sdssplitargs does: double quotes with \n \r \t \b \a and \xHH escapes, single quotes with \', and a
 * closing quote must be followed by a space or the end. Returns null on unbalanced quotes.
 */
export function splitInlineArgs(line: Buffer): Buffer[] | null {
  const args: Buffer[] = [];
  let p = 0;
  for (;;) {
    while (p < line.length && isSpace(line[p]!)) p++;
    if (p >= line.length) return args;
    const start = p;
    let quoted = false;
    while (p < line.length && !isSpace(line[p]!)) {
      const c = line[p]!;
      if (c === DOUBLE_QUOTE || c === SINGLE_QUOTE) {
        quoted = true;
        break;
      }
      p++;
    }
    if (!quoted) {
      // The common case (no quotes): a view, no copy.
      args.push(line.subarray(start, p));
      continue;
    }
    const parsed = parseQuotedArg(line, start);
    if (!parsed) return null;
    args.push(parsed.arg);
    p = parsed.end;
  }
}

const DOUBLE_QUOTE = 0x22;
const SINGLE_QUOTE = 0x27;
const BACKSLASH = 0x5c;

function isSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d);
}

/** One argument that contains quotes, starting at `start`; null if a quote is left open. */
function parseQuotedArg(line: Buffer, start: number): { arg: Buffer; end: number } | null {
  const out: number[] = [];
  let p = start;
  let mode: 'plain' | 'double' | 'single' = 'plain';
  while (p < line.length) {
    const c = line[p]!;
    if (mode === 'plain') {
      if (isSpace(c)) break;
      if (c === DOUBLE_QUOTE) mode = 'double';
      else if (c === SINGLE_QUOTE) mode = 'single';
      else out.push(c);
      p++;
      continue;
    }
    const closing = mode === 'double' ? DOUBLE_QUOTE : SINGLE_QUOTE;
    if (c === closing) {
      const next = line[p + 1];
      if (next !== undefined && !isSpace(next)) return null;
      return { arg: Buffer.from(out), end: p + 1 };
    }
    if (c === BACKSLASH && p + 1 < line.length) {
      const escaped = mode === 'double' ? doubleQuoteEscape(line, p) : singleQuoteEscape(line, p);
      if (escaped) {
        out.push(escaped.byte);
        p += escaped.length;
        continue;
      }
    }
    out.push(c);
    p++;
  }
  if (mode !== 'plain') return null;
  return { arg: Buffer.from(out), end: p };
}

function doubleQuoteEscape(line: Buffer, p: number): { byte: number; length: number } {
  const next = line[p + 1]!;
  if (next === 0x78 /* x */ && p + 3 < line.length) {
    const hex = hexValue(line[p + 2]!) * 16 + hexValue(line[p + 3]!);
    if (hex >= 0) return { byte: hex, length: 4 };
  }
  return { byte: ESCAPES.get(next) ?? next, length: 2 };
}

function singleQuoteEscape(line: Buffer, p: number): { byte: number; length: number } | null {
  return line[p + 1] === SINGLE_QUOTE ? { byte: SINGLE_QUOTE, length: 2 } : null;
}

const ESCAPES = new Map<number, number>([
  [0x6e, 0x0a], // n
  [0x72, 0x0d], // r
  [0x74, 0x09], // t
  [0x62, 0x08], // b
  [0x61, 0x07], // a
]);

/** The value of one hex digit, or a large negative number so that any sum with it stays negative. */
function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1000;
}

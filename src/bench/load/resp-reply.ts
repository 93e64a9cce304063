/** A reply as the benchmark's clients see it: strings for simple, integer and bulk replies. */
export type Reply = string | null | { error: string } | Reply[];

/**
 * Parses one RESP2 reply at the start of `buffer` (decoded text); null while it is incomplete. The
 * loads send and read short ASCII, so text is simpler than bytes and fast enough.
 */
export function parseReply(buffer: string, from = 0): { value: Reply; end: number } | null {
  const lineEnd = buffer.indexOf('\r\n', from);
  if (lineEnd === -1) return null;
  const kind = buffer[from];
  const line = buffer.slice(from + 1, lineEnd);
  const next = lineEnd + 2;
  switch (kind) {
    case '$': {
      const size = Number(line);
      if (size < 0) return { value: null, end: next };
      if (buffer.length < next + size + 2) return null;
      return { value: buffer.slice(next, next + size), end: next + size + 2 };
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return { value: null, end: next };
      const items: Reply[] = [];
      let at = next;
      for (let i = 0; i < count; i++) {
        const item = parseReply(buffer, at);
        if (!item) return null;
        items.push(item.value);
        at = item.end;
      }
      return { value: items, end: at };
    }
    case '-':
      return { value: { error: line }, end: next };
    default:
      return { value: line, end: next };
  }
}

export function encodeCommand(args: readonly string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
}

import type http from 'node:http';
import type { z } from 'zod';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export const MAX_BODY_BYTES = 64 * 1024;

const bodyTooLarge = () => new HttpError(413, `request body larger than ${MAX_BODY_BYTES} bytes`);

const hasBody = (req: http.IncomingMessage) =>
  req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;

/**
 * Reads a JSON object body of at most MAX_BODY_BYTES. A larger body is refused as soon as it is
 * announced (Content-Length) or has streamed past the limit, never buffered; the caller's error
 * response then closes the connection rather than read the rest (see sendError).
 */
export async function readJsonObject(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  if (!hasBody(req)) return {};
  // A body labelled as something else is a client bug; report it instead of guessing.
  const mediaType = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (mediaType !== 'application/json') {
    throw new HttpError(415, `request body must be application/json, not '${mediaType || 'unlabelled'}'`);
  }
  if (Number(req.headers['content-length'] ?? 0) > MAX_BODY_BYTES) throw bodyTooLarge();
  const body = await readBody(req);
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch {
    throw new HttpError(400, 'request body is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new HttpError(400, 'request body must be a JSON object');
  }
  return value as Record<string, unknown>;
}

/**
 * The body, or a 413 as soon as it streams past the limit. Not `for await`: leaving that loop early
 * destroys the request and its socket, and with them the chance to answer.
 */
function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const settle = (outcome: () => void) => {
      req.off('data', onData).off('end', onEnd).off('error', onError);
      outcome();
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
      else
        settle(() => {
          req.pause();
          reject(bodyTooLarge());
        });
    };
    const onEnd = () => settle(() => resolve(Buffer.concat(chunks)));
    const onError = () => settle(() => reject(new HttpError(400, 'the request body was cut off')));
    req.on('data', onData).on('end', onEnd).on('error', onError);
  });
}

export function validate<S extends z.ZodType>(schema: S, value: unknown): z.infer<S> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const where = issue?.path.length ? `${issue.path.join('.')}: ` : '';
  throw new HttpError(400, `invalid request: ${where}${issue?.message ?? 'malformed'}`);
}

export function sendJson(
  res: http.ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

/**
 * Answers a failed request with `{ "error": message }`. If the request body has not been read (it was
 * refused before or while reading), the connection closes once the answer is out: reading and
 * discarding the rest of a 10 GiB upload just to keep the connection alive would be the attack.
 */
export function sendError(req: http.IncomingMessage, res: http.ServerResponse, err: HttpError): void {
  const unread = hasBody(req) && !req.complete;
  sendJson(
    res,
    err.status,
    { error: err.message },
    unread ? { ...err.headers, connection: 'close' } : err.headers,
  );
  const { socket } = req; // detached from req once the response has finished
  if (unread) res.once('finish', () => socket.destroy());
}

import { z } from 'zod';
import { evidenceSchema } from '../tee/evidence.js';
import { type Frame, FrameType, plainFrame } from '../wire/frame.js';
import type { FramedSocket } from '../wire/framed-socket.js';
import { HandshakeError } from './handshake-error.js';

/** The handshake's plaintext JSON messages, their schemas, and a channel with one overall deadline. */

export const VERSION = 1;
/** Handshake messages are a few hundred bytes; anything much larger is not one. */
const MAX_MESSAGE_BYTES = 8 * 1024;

const base64Bytes = (length: number) =>
  z
    .string()
    .length(Math.ceil(length / 3) * 4)
    .regex(/^[A-Za-z0-9+/]+={0,2}$/)
    .transform((text, ctx) => {
      const bytes = Buffer.from(text, 'base64');
      if (bytes.length !== length || bytes.toString('base64') !== text) {
        ctx.addIssue({ code: 'custom', message: `expected ${length} bytes of canonical base64` });
        return z.NEVER;
      }
      return bytes;
    });

export const helloSchema = z.strictObject({
  v: z.literal(VERSION),
  pub: base64Bytes(32),
  nonce: base64Bytes(32),
});
export const helloReplySchema = helloSchema.extend({ evidence: evidenceSchema });
export const destinationConfirmSchema = z.strictObject({
  v: z.literal(VERSION),
  evidence: evidenceSchema,
  mac: base64Bytes(32),
});
export const sourceConfirmSchema = z.strictObject({ v: z.literal(VERSION), mac: base64Bytes(32) });

function parseMessage<T>(frame: Frame, type: FrameType, schema: z.ZodType<T>): T {
  const name = FrameType[type];
  if (frame.header.type !== type || frame.header.sealed) {
    const got = `${frame.header.sealed ? 'sealed ' : ''}${FrameType[frame.header.type]}`;
    throw new HandshakeError(`expected a plaintext ${name} frame, got ${got}`);
  }
  if (frame.bodyLength > MAX_MESSAGE_BYTES) {
    throw new HandshakeError(`${name} message of ${frame.bodyLength} B exceeds ${MAX_MESSAGE_BYTES} B`);
  }
  let json: unknown;
  try {
    json = JSON.parse(Buffer.concat(frame.body).toString('utf8'));
  } catch {
    throw new HandshakeError(`${name} message is not JSON`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new HandshakeError(
      `malformed ${name} message: ${issue?.path.join('.') || '(root)'}: ${issue?.message}`,
    );
  }
  return parsed.data;
}

/**
 * Sends and receives handshake messages under one deadline for the whole handshake. On timeout the
 * pending receive is withdrawn, so the channel stays usable (and unconsumed) for the caller.
 */
export class HandshakeChannel {
  private readonly deadline = new AbortController();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly channel: FramedSocket,
    timeoutMs: number,
  ) {
    this.timer = setTimeout(
      () => this.deadline.abort(new HandshakeError(`handshake timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
    this.timer.unref();
  }

  send(type: FrameType, message: object): Promise<void> {
    const body = Buffer.from(JSON.stringify(message), 'utf8');
    return this.withDeadline(this.channel.send(plainFrame(type, body)));
  }

  async receive<T>(type: FrameType, schema: z.ZodType<T>): Promise<T> {
    const frame = await this.channel.next(this.deadline.signal);
    return parseMessage(frame, type, schema);
  }

  done(): void {
    clearTimeout(this.timer);
  }

  private withDeadline<T>(work: Promise<T>): Promise<T> {
    const signal = this.deadline.signal;
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      work.then(
        (value) => {
          signal.removeEventListener('abort', onAbort);
          resolve(value);
        },
        (err: unknown) => {
          signal.removeEventListener('abort', onAbort);
          reject(err);
        },
      );
    });
  }
}

/**
 * An error caused by the operator's input or environment (bad size, unknown id, unreachable host).
 * The CLI prints its message as one line and exits non-zero, without a stack trace.
 */
export class UserError extends Error {
  override name = 'UserError';
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/**
 * A mistake in what the user gave us (flag, environment variable, subscription). The message is one
 * line naming the bad value and what is accepted; main prints it without a stack trace and exits 2.
 */
export class UserError extends Error {
  override readonly name = "UserError";
  readonly exitCode = 2;
}

export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}

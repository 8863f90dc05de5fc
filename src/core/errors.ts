/**
 * A mistake in what the user gave us (flag, environment variable, subscription). The message is one
 * line naming the bad value and what is accepted; main prints it without a stack trace and exits 2.
 */
export class UserError extends Error {
  override readonly name = "UserError";
  readonly exitCode = 2;

  constructor(message: string) {
    // Messages quote what the user typed, which may hold a newline or another control character: escape
    // those so the message stays one line (and cannot forge log lines).
    super(message.replace(CONTROL_CHARACTERS, escapeControl));
  }
}

const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;
const SHORT_ESCAPES: Readonly<Record<string, string>> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };
const escapeControl = (char: string): string =>
  SHORT_ESCAPES[char] ?? `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`;

export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}

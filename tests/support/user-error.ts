/** The one-line message of the UserError `run` throws (bad input: exit 2); fails the test otherwise. */
import { expect } from "bun:test";
import { UserError } from "../../src/core/errors.ts";

export function userError(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(UserError);
    const message = (error as Error).message;
    expect(message).not.toContain("\n");
    return message;
  }
  throw new Error("expected a UserError");
}

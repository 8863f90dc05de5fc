/**
 * Generic value rules shared by the CLI, the venues and the sinks when they read their settings. Each
 * rule's message is the one line a user sees (`xtrader: error: ...`): it names the setting, quotes the bad
 * value and says what is accepted.
 */
import * as v from "valibot";
import { UserError } from "./errors.ts";

/** Applies a rule; its first issue becomes a one-line UserError. */
export function check<const TSchema extends v.GenericSchema>(schema: TSchema, value: unknown): v.InferOutput<TSchema> {
  const result = v.safeParse(schema, value);
  if (result.success) return result.output;
  throw new UserError(result.issues[0].message);
}

export const BOOLEAN_WORDS = ["true", "false", "1", "0", "yes", "no"] as const;

export const booleanText = (name: string) =>
  v.pipe(
    v.string(),
    v.trim(),
    v.toLowerCase(),
    v.picklist(BOOLEAN_WORDS, (issue) => `invalid ${name} '${String(issue.input)}'; accepted: true or false`),
    v.transform((text) => text === "true" || text === "1" || text === "yes"),
  );

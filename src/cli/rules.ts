/**
 * The valibot rules behind every flag and environment variable. Each rule's message is the one line a
 * user sees (`xtrader: error: ...`): it names the setting, quotes the bad value and says what is accepted.
 */
import * as v from "valibot";

export { BOOLEAN_WORDS, booleanText, check } from "../core/rules.ts";

/** The longest delay a timer takes (2^31-1 ms); above it Bun and Node fire at once. */
export const MAX_TIMER_MS = 2_147_483_647;
export const MAX_TIMER_SECONDS = Math.floor(MAX_TIMER_MS / 1000);

/** Digits only: no sign, exponent, hex, separators or fraction, so a value means what it looks like. */
export const integer = (name: string, min: number, max = Number.MAX_SAFE_INTEGER) => {
  const expected = (issue: { input: unknown }) => `invalid ${name} '${String(issue.input)}'; expected a whole number from ${min} to ${max}`;
  return v.pipe(
    v.string(),
    v.trim(),
    v.regex(/^\d{1,16}$/, expected),
    v.transform(Number),
    v.minValue(min, expected),
    v.maxValue(max, expected),
  );
};

/** Milliseconds a timer waits for: 1 ms up to what a timer can wait. */
export const milliseconds = (name: string) => integer(name, 1, MAX_TIMER_MS);

export const choice = <const T extends readonly string[]>(name: string, options: T) =>
  v.pipe(
    v.string(),
    v.trim(),
    v.toLowerCase(),
    v.picklist(options, (issue) => `invalid ${name} '${String(issue.input)}'; accepted: ${options.join(", ")}`),
  );

/** Seconds > 0 that a timer can wait for. */
export const positiveSeconds = (name: string) => {
  const expected = (issue: { input: unknown }) =>
    `invalid ${name} '${String(issue.input)}'; expected a number of seconds > 0 and at most ${MAX_TIMER_SECONDS}`;
  return v.pipe(
    v.string(),
    v.trim(),
    v.regex(/^\d{1,10}(\.\d{1,6})?$/, expected),
    v.transform(Number),
    v.check((seconds) => seconds > 0 && seconds <= MAX_TIMER_SECONDS, expected),
  );
};

/**
 * An endpoint URL of one of `schemes` (`ws:`/`wss:` or `http:`/`https:`) with a host. Anything else
 * would only fail at connect time, retried forever with nothing but a log line to show for it.
 */
export const endpointUrl = (name: string, schemes: readonly string[]) => {
  const expected = (issue: { input: unknown }) =>
    `invalid ${name} '${String(issue.input)}'; expected a ${schemes.map((scheme) => `${scheme}//`).join(" or ")} URL with a host, e.g. ${schemes[0]}//127.0.0.1:9000`;
  return v.pipe(
    v.string(),
    v.trim(),
    v.check((text) => {
      if (/\s/.test(text) || !URL.canParse(text)) return false;
      const url = new URL(text);
      return schemes.includes(url.protocol) && url.hostname !== "";
    }, expected),
  );
};

/** A credential: printable ASCII without spaces (what the venues issue); anything else is a paste error. */
export const credential = (name: string) =>
  v.pipe(
    v.string(),
    v.trim(),
    v.regex(/^[\x21-\x7e]{1,512}$/, () => `invalid ${name}: expected printable characters without spaces (the value is not shown)`),
  );

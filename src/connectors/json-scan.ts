/**
 * Shared pieces of the JSON-free frame readers (binance-futures-scan.ts, okx-scan.ts, deribit-scan.ts;
 * their book levels through kit/level-scan.ts) and the one strict reader of venue numbers every connector uses (`quoted`, `decimal`, `jsonFinite`).
 *
 * Venue numbers: Binance and OKX send decimal strings (`"65001.5"`, `"-0.0001"`), Deribit JSON numbers.
 * Only that form is a number: no exponent, hex, spaces, sign where none belongs, `Infinity`, empty
 * string or null, and nothing too large to be finite. Number() is far more lenient (`Number(" 5")` is 5,
 * `Number("0x10")` 16, `Number("")` 0, `Number("1e309")` Infinity), so it never sees venue text directly.
 * A scanner accepts only the exact documented shape of its hottest frame and declines anything else,
 * which then goes through JSON.parse and these same readers, so both paths accept the same values.
 */

export const QUOTE = 34; // "
export const COMMA = 44;
export const MINUS = 45;
export const DOT = 46;
export const ZERO = 48;
export const OPEN = 91; // [
export const BACKSLASH = 92;
export const CLOSE = 93; // ]

/** Exact powers of ten: m / 10^k is correctly rounded for m < 2^53 and k <= 22 (one IEEE division). */
export const POW10: readonly number[] = [
  1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
  1e21, 1e22,
];

/** Where the last quoted() or keyedInteger() call ended (-1 when it found nothing). */
export const cursor = { end: -1 };

/**
 * The unsigned venue decimal `digits[.digits]` starting at `at` and ending at its closing quote, whose
 * position goes to `cursor.end`; NaN (and `cursor.end` -1) for any other content. Computed in the same
 * pass that finds the quote.
 */
export function quoted(text: string, at: number): number {
  let mantissa = 0;
  let point = -1;
  let i = at;
  let code = text.charCodeAt(i);
  for (;;) {
    const digit = code - ZERO;
    if (digit >= 0 && digit <= 9) mantissa = mantissa * 10 + digit;
    else if (code === DOT && point < 0) point = i;
    else break;
    code = text.charCodeAt(++i);
  }
  if (code !== QUOTE) {
    cursor.end = -1;
    return Number.NaN;
  }
  cursor.end = i;
  return decimalValue(text, at, i, point, mantissa);
}

/**
 * A venue decimal given as a JSON string: `digits[.digits]`, with a leading `-` only when `signed`
 * (funding rates); NaN for anything else, including a value that is not a string.
 */
export function decimal(value: unknown, signed = false): number {
  if (typeof value !== "string") return Number.NaN;
  let at = 0;
  const negative = signed && value.charCodeAt(0) === MINUS;
  if (negative) at = 1;
  let mantissa = 0;
  let point = -1;
  for (let i = at; i < value.length; i++) {
    const code = value.charCodeAt(i);
    const digit = code - ZERO;
    if (digit >= 0 && digit <= 9) mantissa = mantissa * 10 + digit;
    else if (code === DOT && point < 0) point = i;
    else return Number.NaN;
  }
  const number = decimalValue(value, at, value.length, point, mantissa);
  return negative ? -number : number;
}

/** A venue number given as a JSON number (Deribit): itself when finite, else NaN (null, strings...). */
export function jsonFinite(value: unknown): number {
  return typeof value === "number" && Number.isFinite(value) ? value : Number.NaN;
}

/**
 * One side of a best bid/offer, once read: empty (price and amount 0, how venues mark a side without
 * orders) or a price and an amount both above 0.
 */
export function bboSide(price: number, amount: number): boolean {
  return (price > 0 && amount > 0) || (price === 0 && amount === 0);
}

/**
 * The value of the digits in [at, end) with a decimal point at `point` (-1: none), `mantissa` being
 * their value read as one integer: exact as mantissa / 10^decimals up to 15 digits (one IEEE division),
 * else Number() of the text, which holds only digits and one point. NaN when there is no digit on one
 * side of the point, or when the value is not finite (hundreds of digits).
 */
function decimalValue(text: string, at: number, end: number, point: number, mantissa: number): number {
  const length = end - at;
  if (point < 0) {
    if (length === 0) return Number.NaN;
    if (length <= 15) return mantissa;
  } else {
    if (point === at || point === end - 1) return Number.NaN;
    if (length <= 16) return mantissa / POW10[end - point - 1]!;
  }
  const value = Number(text.substring(at, end));
  return Number.isFinite(value) ? value : Number.NaN;
}

/**
 * The non-negative integer in [at, end) in JSON's form (digits, no leading zero), at most 15 digits so
 * that it is exact; NaN for anything else (the frame then goes through JSON.parse).
 */
export function jsonInteger(text: string, at: number, end: number): number {
  if (end <= at || end - at > 15) return Number.NaN;
  // The first digit read once: 1-9, or a lone 0.
  let value = text.charCodeAt(at) - ZERO;
  if (!(value > 0 && value <= 9)) return value === 0 && end - at === 1 ? 0 : Number.NaN;
  for (let i = at + 1; i < end; i++) {
    const digit = text.charCodeAt(i) - ZERO;
    if (digit < 0 || digit > 9) return Number.NaN;
    value = value * 10 + digit;
  }
  return value;
}

/** jsonInteger() with an optional leading minus (`-0` is -0, as JSON.parse reads it). */
export function signedJsonInteger(text: string, at: number, end: number): number {
  return text.charCodeAt(at) === MINUS ? -jsonInteger(text, at + 1, end) : jsonInteger(text, at, end);
}

/**
 * `key` at `at`, then an integer in JSON's form (jsonInteger, or signedJsonInteger when `signed`) up to
 * the next comma: the integer, with the comma's position in `cursor.end`; NaN and `cursor.end` -1
 * otherwise, also when `at` is -1. A failed read thus passes -1 on, and a frame's `"key":integer` fields
 * chain through `cursor.end` with one check at the end.
 */
export function keyedInteger(text: string, at: number, key: string, signed: boolean): number {
  const start = after(text, at, key);
  const end = start < 0 ? -1 : text.indexOf(",", start);
  const value = end < 0 ? Number.NaN : signed ? signedJsonInteger(text, start, end) : jsonInteger(text, start, end);
  cursor.end = Number.isNaN(value) ? -1 : end;
  return value;
}

/** The position after `key` when it stands at `at`, else -1 (also when `at` is -1: failures pass on). */
export function after(text: string, at: number, key: string): number {
  return at >= 0 && text.startsWith(key, at) ? at + key.length : -1;
}

/** `key` at `at` (which ends in the string's opening quote), then a string: the position of its closing quote, or -1 (also for escapes, and when `at` is -1). */
export function keyedStringEnd(text: string, at: number, key: string): number {
  const start = after(text, at, key);
  return start < 0 ? -1 : stringEnd(text, start);
}

/** Position of the closing quote of a string starting at `at` (after its opening quote); -1 if it has escapes. */
export function stringEnd(text: string, at: number): number {
  const end = text.indexOf('"', at);
  if (end < 0) return -1;
  for (let i = at; i < end; i++) if (text.charCodeAt(i) === BACKSLASH) return -1;
  return end;
}

/**
 * Shared pieces of the JSON-free frame readers (binance-futures-scan.ts, okx-scan.ts, deribit-scan.ts).
 * Each reader accepts only the exact documented shape of its hottest frame and declines anything else,
 * which then goes through JSON.parse; these helpers must therefore give exactly what Number() and
 * JSON.parse give, or a value the caller declines (NaN, -1).
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

/** Where the last quoted() call found the closing quote (-1 when there was none). */
export const cursor = { end: -1 };

/**
 * Number() of the string content starting at `at` up to its closing quote, whose position goes to
 * `cursor.end`. Plain digits with an optional fraction (at most 15 digits, so exact) are computed as
 * digits / 10^decimals in the same pass that finds the quote; anything else by Number().
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
    const end = text.indexOf('"', i);
    cursor.end = end;
    return end < 0 ? Number.NaN : Number(text.substring(at, end));
  }
  cursor.end = i;
  const length = i - at;
  if (point < 0) return length > 0 && length <= 15 ? mantissa : Number(text.substring(at, i));
  if (point === at || point === i - 1 || length > 16) return Number(text.substring(at, i));
  return mantissa / POW10[i - point - 1]!;
}

/** Position of the closing quote of a string starting at `at` (after its opening quote); -1 if it has escapes. */
export function stringEnd(text: string, at: number): number {
  const end = text.indexOf('"', at);
  if (end < 0) return -1;
  for (let i = at; i < end; i++) if (text.charCodeAt(i) === BACKSLASH) return -1;
  return end;
}

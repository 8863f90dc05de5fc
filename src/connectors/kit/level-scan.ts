/**
 * The one level scanner under every venue's fast frame reader (binance-futures-scan.ts, okx-scan.ts,
 * deribit-scan.ts): a JSON array of book levels read from the frame text straight into a flat
 * [price, amount, ...] array, without JSON.parse and without an object, array or string per level.
 *
 * Two level layouts exist among the venues, chosen by the `layout` argument (a constant at each call site,
 * so the one function serves all venues without a closure or a call per level):
 * - DECIMAL_STRING_LEVELS: `[["price","size"(,"more")*],...]`, decimal strings read by json-scan.ts's strict
 *   reader. Binance sends two strings, OKX four (the deprecated liquidated-orders field and the order
 *   count); both JSON paths read the first two and ignore the rest, so the scanner skips further strings
 *   (anything else there is declined).
 * - ACTION_NUMBER_LEVELS: Deribit's `[["new"|"change"|"delete",price,amount],...]` with JSON numbers;
 *   a delete's amount becomes 0, as in deribit-scan.ts's flattenLevels.
 * A level must be what the JSON paths accept (a price above 0, an amount of 0 or more, both finite);
 * anything else returns -1 and the frame goes through JSON.parse, which handles and reports it.
 */
import { CLOSE, COMMA, DOT, MINUS, OPEN, POW10, QUOTE, ZERO, cursor, quoted, stringEnd } from "../json-scan.ts";

/** What every venue's fast reader returns beside its ids: the book levels, flat [price, amount, ...]. */
export interface ScannedLevels {
  readonly bids: number[];
  readonly asks: number[];
}

/** `[["price","size",...],...]` with venue decimal strings (Binance, OKX). */
export const DECIMAL_STRING_LEVELS = 0;
/** `[["new"|"change"|"delete",price,amount],...]` with JSON numbers (Deribit). */
export const ACTION_NUMBER_LEVELS = 1;

const PLUS = 43;
const NINE = 57;
const E_UPPER = 69;
const E_LOWER = 101;

/**
 * Reads the level array starting at `at` into `out` (appending); returns the position after its closing
 * bracket, or -1 when it is not exactly that layout or a level is one the JSON path would refuse (also
 * when `at` is -1, so that a failed read before it passes on).
 */
export function scanLevels(text: string, at: number, out: number[], layout: number): number {
  if (text.charCodeAt(at) !== OPEN) return -1;
  let i = at + 1;
  if (text.charCodeAt(i) === CLOSE) return i + 1;
  for (;;) {
    if (text.charCodeAt(i) !== OPEN || text.charCodeAt(i + 1) !== QUOTE) return -1;
    if (layout === DECIMAL_STRING_LEVELS) {
      // No escape check for price and size: quoted() reads a backslash as NaN, which is declined.
      const price = quoted(text, i + 2);
      const priceEnd = cursor.end;
      if (priceEnd < 0 || text.charCodeAt(priceEnd + 1) !== COMMA || text.charCodeAt(priceEnd + 2) !== QUOTE) return -1;
      const size = quoted(text, priceEnd + 3);
      const sizeEnd = cursor.end;
      // quoted() read both as venue decimals (NaN otherwise); size 0 removes the level.
      if (sizeEnd < 0 || !(price > 0) || !(size >= 0)) return -1;
      out.push(price, size);
      i = sizeEnd + 1;
      while (text.charCodeAt(i) === COMMA) {
        if (text.charCodeAt(i + 1) !== QUOTE) return -1;
        const end = stringEnd(text, i + 2);
        if (end < 0) return -1;
        i = end + 1;
      }
    } else {
      let isDelete = false;
      if (text.startsWith('new",', i + 2)) i += 7;
      else if (text.startsWith('change",', i + 2)) i += 10;
      else if (text.startsWith('delete",', i + 2)) {
        i += 10;
        isDelete = true;
      } else return -1;
      const price = jsonNumber(text, i);
      if (!(price > 0 && price !== Number.POSITIVE_INFINITY) || text.charCodeAt(numberEnd) !== COMMA) return -1;
      const amount = jsonNumber(text, numberEnd + 1);
      // The JSON path reads any amount of a delete as 0 (but a non-number there is a different frame).
      // A non-finite amount (1e309) and a negative one are left to the JSON path, which reports them.
      if (Number.isNaN(amount) || (!isDelete && !(amount >= 0 && amount !== Number.POSITIVE_INFINITY))) return -1;
      out.push(price, isDelete ? 0 : amount);
      i = numberEnd;
    }
    if (text.charCodeAt(i) !== CLOSE) return -1;
    const next = text.charCodeAt(++i);
    if (next === CLOSE) return i + 1;
    if (next !== COMMA) return -1;
    i++;
  }
}

function isDigit(code: number): boolean {
  return code >= ZERO && code <= NINE;
}

/** Where the last jsonNumber() call ended. */
let numberEnd = 0;

/**
 * The JSON number (-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?) at `at`, NaN when there is none; its end goes
 * to `numberEnd`. The value is Number() of its text: computed as digits / 10^decimals when that is exact
 * (at most 15 digits, no exponent), else by Number() itself.
 */
function jsonNumber(text: string, at: number): number {
  let i = at;
  const negative = text.charCodeAt(i) === MINUS;
  if (negative) i++;
  let digits = 0;
  let mantissa = 0;
  let decimals = 0;
  let code = text.charCodeAt(i);
  if (code === ZERO) {
    digits = 1;
    code = text.charCodeAt(++i);
  } else if (isDigit(code)) {
    do {
      mantissa = mantissa * 10 + (code - ZERO);
      digits++;
      code = text.charCodeAt(++i);
    } while (isDigit(code));
  } else return Number.NaN;
  if (code === DOT) {
    code = text.charCodeAt(++i);
    if (!isDigit(code)) return Number.NaN;
    do {
      mantissa = mantissa * 10 + (code - ZERO);
      digits++;
      decimals++;
      code = text.charCodeAt(++i);
    } while (isDigit(code));
  }
  let exponent = false;
  if (code === E_LOWER || code === E_UPPER) {
    exponent = true;
    code = text.charCodeAt(++i);
    if (code === PLUS || code === MINUS) code = text.charCodeAt(++i);
    if (!isDigit(code)) return Number.NaN;
    do code = text.charCodeAt(++i);
    while (isDigit(code));
  }
  numberEnd = i;
  if (exponent || digits > 15) return Number(text.substring(at, i));
  const value = decimals === 0 ? mantissa : mantissa / POW10[decimals]!;
  return negative ? -value : value;
}

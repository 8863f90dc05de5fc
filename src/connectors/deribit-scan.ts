/**
 * A fast reader for the frame that dominates a Deribit L2 feed: a `book.<instrument>.<interval>` change
 * notification (https://docs.deribit.com/subscriptions/orderbook/bookinstrument_nameinterval, notification
 * example; envelope: https://docs.deribit.com/articles/notifications):
 *
 *   {"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.100ms","data":{"type":"change",
 *    "timestamp":1554373911330,"prev_change_id":297217,"instrument_name":"BTC-PERPETUAL","change_id":297218,
 *    "bids":[["delete",5042.34,0],...],"asks":[["new",5042.64,40.0],...]}}}
 *
 * JSON.parse builds an object and an array per level only for the connector to read them; this reads the
 * text once and writes the flat [price, amount, ...] arrays directly. It accepts only that layout, in that
 * field order, with every number in JSON's own syntax and every level as the connector requires
 * (flattenLevels below: `delete` → amount 0). Anything else (the snapshot, another field or
 * order, whitespace, escapes, an odd value) returns undefined and the connector takes its JSON.parse path,
 * which handles and reports it.
 */
import { CLOSE, COMMA, DOT, MINUS, OPEN, POW10, QUOTE, ZERO, jsonFinite, stringEnd } from "./json-scan.ts";

export interface ScannedDeribitBook {
  readonly channel: string;
  readonly timestamp: number;
  readonly prevChangeId: number;
  readonly changeId: number;
  readonly bids: number[];
  readonly asks: number[];
}

const PLUS = 43;
const NINE = 57;
const E_LOWER = 101;
const E_UPPER = 69;

const HEAD = '{"jsonrpc":"2.0","method":"subscription","params":{"channel":"';
const DATA = '","data":{"type":"change","timestamp":';
const PREV = ',"prev_change_id":';
const INSTRUMENT = ',"instrument_name":"';
const CHANGE = '","change_id":';
const BIDS = ',"bids":';
const ASKS = ',"asks":';
const TAIL = "}}}";

/** A non-negative decimal integer in JSON's form (no leading zero) in [at, end), or NaN. */
function integer(text: string, at: number, end: number): number {
  if (end <= at || end - at > 15 || (end - at > 1 && text.charCodeAt(at) === ZERO)) return Number.NaN;
  let value = 0;
  for (let i = at; i < end; i++) {
    const digit = text.charCodeAt(i) - ZERO;
    if (digit < 0 || digit > 9) return Number.NaN;
    value = value * 10 + digit;
  }
  return value;
}

function isDigit(code: number): boolean {
  return code >= ZERO && code <= NINE;
}


/**
 * The JSON number (-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?) at `at`, NaN when there is none; its end goes
 * to `numberEnd`. The value is Number() of its text: computed as digits / 10^decimals when that is exact
 * (at most 15 digits, no exponent), else by Number() itself.
 */
let numberEnd = 0;
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

/** Reads `[["new"|"change"|"delete",price,amount],...]` at `at` into `out`; the position after it, or -1. */
function levels(text: string, at: number, out: number[]): number {
  if (text.charCodeAt(at) !== OPEN) return -1;
  let i = at + 1;
  if (text.charCodeAt(i) === CLOSE) return i + 1;
  for (;;) {
    if (text.charCodeAt(i) !== OPEN || text.charCodeAt(i + 1) !== QUOTE) return -1;
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
    if (Number.isNaN(amount) || text.charCodeAt(numberEnd) !== CLOSE) return -1;
    // As flattenLevels: a finite price above 0 and a finite amount of 0 or more (a non-finite one, 1e309,
    // and anything negative are left to the JSON path, which reports them).
    if (!isDelete && !(amount >= 0 && amount !== Number.POSITIVE_INFINITY)) return -1;
    out.push(price, isDelete ? 0 : amount);
    i = numberEnd + 1;
    const next = text.charCodeAt(i);
    if (next === CLOSE) return i + 1;
    if (next !== COMMA) return -1;
    i++;
  }
}

/** The book change notification in `text`, or undefined when the frame is not exactly that shape. */
export function scanDeribitBookChange(text: string): ScannedDeribitBook | undefined {
  if (!text.startsWith(HEAD)) return undefined;
  const channelEnd = stringEnd(text, HEAD.length);
  if (channelEnd <= HEAD.length || !text.startsWith(DATA, channelEnd)) return undefined;
  let at = channelEnd + DATA.length;
  let end = text.indexOf(",", at);
  if (end < 0) return undefined;
  const timestamp = integer(text, at, end);
  if (Number.isNaN(timestamp) || !text.startsWith(PREV, end)) return undefined;
  at = end + PREV.length;
  end = text.indexOf(",", at);
  if (end < 0) return undefined;
  const prevChangeId = integer(text, at, end);
  if (Number.isNaN(prevChangeId) || !text.startsWith(INSTRUMENT, end)) return undefined;
  const nameEnd = stringEnd(text, end + INSTRUMENT.length);
  if (nameEnd < 0 || !text.startsWith(CHANGE, nameEnd)) return undefined;
  at = nameEnd + CHANGE.length;
  end = text.indexOf(",", at);
  if (end < 0) return undefined;
  const changeId = integer(text, at, end);
  if (Number.isNaN(changeId) || !text.startsWith(BIDS, end)) return undefined;
  const bids: number[] = [];
  at = levels(text, end + BIDS.length, bids);
  if (at < 0 || !text.startsWith(ASKS, at)) return undefined;
  const asks: number[] = [];
  at = levels(text, at + ASKS.length, asks);
  if (at < 0 || at + TAIL.length !== text.length || !text.endsWith(TAIL)) return undefined;
  return { channel: text.substring(HEAD.length, channelEnd), timestamp, prevChangeId, changeId, bids, asks };
}

/**
 * `[action, price, amount]` levels into `[price, amount, ...]`; `delete` becomes amount 0. A price must
 * be a finite JSON number above 0, an amount one of 0 or more (json-scan.ts); false otherwise.
 */
export function flattenLevels(levels: unknown, out: number[]): boolean {
  if (levels === undefined) return true;
  if (!Array.isArray(levels)) return false;
  for (const level of levels) {
    if (!Array.isArray(level) || level.length < 3) return false;
    const action = level[0];
    const price = jsonFinite(level[1]);
    const amount = action === "delete" ? 0 : jsonFinite(level[2]);
    if ((action !== "new" && action !== "change" && action !== "delete") || !(price > 0) || !(amount >= 0)) {
      return false;
    }
    out.push(price, amount);
  }
  return true;
}

/**
 * A fast reader for the frame that dominates a Binance USD-M feed: the combined-stream diff-depth event
 * (https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams/Diff-Book-Depth-Streams):
 *
 *   {"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":..,"T":..,"s":"BTCUSDT","U":..,"u":..,"pu":..,
 *    "b":[["price","qty"],...],"a":[["price","qty"],...]}}
 *
 * JSON.parse builds an object, two arrays per level and two strings per level, only for the connector to
 * turn them into numbers; this reads the text once and writes the flat [price, qty, ...] arrays directly
 * (prices and quantities still go through Number()). It accepts exactly the layout Binance sends, in its
 * documented field order; anything else (a field added or moved, whitespace, another event, a malformed
 * value) returns undefined and the connector takes its JSON.parse path, which handles and reports it.
 */

export interface ScannedDepth {
  readonly stream: string;
  readonly eventTime: number;
  readonly transactionTime: number;
  readonly firstId: number;
  readonly finalId: number;
  readonly previousFinalId: number;
  readonly bids: number[];
  readonly asks: number[];
}

const QUOTE = 34; // "
const COMMA = 44;
const OPEN = 91; // [
const CLOSE = 93; // ]
const ZERO = 48;

const HEAD = '{"stream":"';
const DATA = '","data":{"e":"depthUpdate","E":';

/** Reads a non-negative decimal integer at `at`, ending at `end` (exclusive); NaN unless all digits. */
function integer(text: string, at: number, end: number): number {
  if (end <= at || end - at > 16) return Number.NaN;
  let value = 0;
  for (let i = at; i < end; i++) {
    const digit = text.charCodeAt(i) - ZERO;
    if (digit < 0 || digit > 9) return Number.NaN;
    value = value * 10 + digit;
  }
  return value;
}

/** Position after `"key":<integer>` starting at `at` (expects `key` to include its leading comma). */
let scanned = 0;
function field(text: string, at: number, key: string): number {
  if (!text.startsWith(key, at)) return -1;
  const start = at + key.length;
  const end = text.indexOf(",", start);
  if (end < 0) return -1;
  scanned = integer(text, start, end);
  return Number.isNaN(scanned) ? -1 : end;
}

/** Exact powers of ten: m / 10^k is correctly rounded for m < 2^53 and k <= 22 (one IEEE division). */
const POW10 = [1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22];
const DOT = 46;

/**
 * Number() of the string content starting at `at` up to its closing quote, whose position goes to
 * `quotedEnd` (-1 when there is none). Plain digits with an optional fraction (at most 15 digits, so exact)
 * are computed as digits / 10^decimals in the same pass that finds the quote; anything else by Number().
 */
let quotedEnd = -1;
function quoted(text: string, at: number): number {
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
    quotedEnd = text.indexOf('"', i);
    return quotedEnd < 0 ? Number.NaN : Number(text.substring(at, quotedEnd));
  }
  quotedEnd = i;
  const length = i - at;
  if (point < 0) return length > 0 && length <= 15 ? mantissa : Number(text.substring(at, i));
  if (point === at || point === i - 1 || length > 16) return Number(text.substring(at, i));
  return mantissa / POW10[i - point - 1]!;
}

/**
 * Reads `[["p","q"],...]` at `at` into `out`; returns the position after the closing bracket, or -1.
 * Levels must be a positive price and a non-negative quantity, as the connector requires.
 */
function levels(text: string, at: number, out: number[]): number {
  if (text.charCodeAt(at) !== OPEN) return -1;
  let i = at + 1;
  if (text.charCodeAt(i) === CLOSE) return i + 1;
  for (;;) {
    if (text.charCodeAt(i) !== OPEN || text.charCodeAt(i + 1) !== QUOTE) return -1;
    const priceStart = i + 2;
    const price = quoted(text, priceStart);
    const priceEnd = quotedEnd;
    if (priceEnd < 0 || text.charCodeAt(priceEnd + 1) !== COMMA || text.charCodeAt(priceEnd + 2) !== QUOTE) return -1;
    const amountStart = priceEnd + 3;
    const amount = quoted(text, amountStart);
    const amountEnd = quotedEnd;
    if (amountEnd < 0 || text.charCodeAt(amountEnd + 1) !== CLOSE) return -1;
    // Number("") is 0 and Number(" 1") is 1: both sides must be non-empty and start with a digit.
    const priceFirst = text.charCodeAt(priceStart) - ZERO;
    const amountFirst = text.charCodeAt(amountStart) - ZERO;
    if (priceFirst < 0 || priceFirst > 9 || amountFirst < 0 || amountFirst > 9) return -1;
    if (!(price > 0) || !(amount >= 0) || price === Number.POSITIVE_INFINITY || amount === Number.POSITIVE_INFINITY) return -1;
    out.push(price, amount);
    i = amountEnd + 2;
    const next = text.charCodeAt(i);
    if (next === CLOSE) return i + 1;
    if (next !== COMMA) return -1;
    i++;
  }
}

/** The diff-depth event in `text`, or undefined when the frame is not exactly that shape. */
export function scanDepthFrame(text: string): ScannedDepth | undefined {
  if (!text.startsWith(HEAD)) return undefined;
  const streamEnd = text.indexOf('"', HEAD.length);
  if (streamEnd < 0 || !text.startsWith(DATA, streamEnd)) return undefined;
  let at = streamEnd + DATA.length;
  let end = text.indexOf(",", at);
  if (end < 0) return undefined;
  const eventTime = integer(text, at, end);
  at = field(text, end, ',"T":');
  if (at < 0 || Number.isNaN(eventTime)) return undefined;
  const transactionTime = scanned;
  if (!text.startsWith(',"s":"', at)) return undefined;
  end = text.indexOf('"', at + 6);
  if (end < 0) return undefined;
  at = field(text, end + 1, ',"U":');
  if (at < 0) return undefined;
  const firstId = scanned;
  at = field(text, at, ',"u":');
  if (at < 0) return undefined;
  const finalId = scanned;
  at = field(text, at, ',"pu":');
  if (at < 0) return undefined;
  const previousFinalId = scanned;
  if (!text.startsWith(',"b":', at)) return undefined;
  const bids: number[] = [];
  at = levels(text, at + 5, bids);
  if (at < 0 || !text.startsWith(',"a":', at)) return undefined;
  const asks: number[] = [];
  at = levels(text, at + 5, asks);
  if (at < 0 || at + 2 !== text.length || text.charCodeAt(at) !== 125 || text.charCodeAt(at + 1) !== 125) return undefined;
  if (finalId < firstId) return undefined;
  return { stream: text.substring(HEAD.length, streamEnd), eventTime, transactionTime, firstId, finalId, previousFinalId, bids, asks };
}

/**
 * A fast reader for the frame that dominates a Binance USD-M feed: the combined-stream diff-depth event
 * (https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams/Diff-Book-Depth-Streams):
 *
 *   {"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":..,"T":..,"s":"BTCUSDT","U":..,"u":..,"pu":..,
 *    "b":[["price","qty"],...],"a":[["price","qty"],...]}}
 *
 * JSON.parse builds an object, two arrays per level and two strings per level, only for the connector to
 * turn them into numbers; this reads the text once and writes the flat [price, qty, ...] arrays directly
 * (prices and quantities through json-scan.ts's strict venue-decimal reader). It accepts exactly the layout Binance sends, in its
 * documented field order; anything else (a field added or moved, whitespace, another event, a malformed
 * value) returns undefined and the connector takes its JSON.parse path, which handles and reports it.
 */
import { CLOSE, COMMA, OPEN, QUOTE, ZERO, cursor, quoted } from "./json-scan.ts";

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
    const price = quoted(text, i + 2);
    const priceEnd = cursor.end;
    if (priceEnd < 0 || text.charCodeAt(priceEnd + 1) !== COMMA || text.charCodeAt(priceEnd + 2) !== QUOTE) return -1;
    const amount = quoted(text, priceEnd + 3);
    const amountEnd = cursor.end;
    if (amountEnd < 0 || text.charCodeAt(amountEnd + 1) !== CLOSE) return -1;
    // quoted() read both as venue decimals (NaN otherwise); amount 0 removes the level.
    if (!(price > 0) || !(amount >= 0)) return -1;
    out.push(price, amount);
    i = amountEnd + 2;
    const next = text.charCodeAt(i);
    if (next === CLOSE) return i + 1;
    if (next !== COMMA) return -1;
    i++;
  }
}

/**
 * `{"stream":"<name>` followed by `data` (the event's fixed opening up to its `E` value): the end of the
 * stream name, or -1.
 */
function streamEndBefore(text: string, data: string): number {
  if (!text.startsWith(HEAD)) return -1;
  const streamEnd = text.indexOf('"', HEAD.length);
  return streamEnd >= 0 && text.startsWith(data, streamEnd) ? streamEnd : -1;
}

/** The diff-depth event in `text`, or undefined when the frame is not exactly that shape. */
export function scanDepthFrame(text: string): ScannedDepth | undefined {
  const streamEnd = streamEndBefore(text, DATA);
  if (streamEnd < 0) return undefined;
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

export interface ScannedAggTrade {
  readonly stream: string;
  readonly tradeId: number;
  readonly price: number;
  readonly quantity: number;
  readonly tradeTime: number;
  readonly buyerIsMaker: boolean;
}

const TRADE_DATA = '","data":{"e":"aggTrade","E":';

/**
 * The aggregate-trade event in `text`, in the documented field order
 * (https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams/Aggregate-Trade-Streams):
 *
 *   {"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":..,"s":"BTCUSDT","a":..,"p":"..","q":"..",
 *    "f":..,"l":..,"T":..,"m":true}}
 *
 * or undefined for anything else (a field added or moved, whitespace, a malformed value): the connector's
 * JSON.parse path then handles and reports it.
 */
export function scanAggTradeFrame(text: string): ScannedAggTrade | undefined {
  const streamEnd = streamEndBefore(text, TRADE_DATA);
  if (streamEnd < 0) return undefined;
  let at = streamEnd + TRADE_DATA.length;
  const end = text.indexOf(",", at);
  if (end < 0 || Number.isNaN(integer(text, at, end))) return undefined;
  if (!text.startsWith(',"s":"', end)) return undefined;
  const symbolEnd = text.indexOf('"', end + 6);
  if (symbolEnd < 0) return undefined;
  at = field(text, symbolEnd + 1, ',"a":');
  if (at < 0) return undefined;
  const tradeId = scanned;
  if (!text.startsWith(',"p":"', at)) return undefined;
  const price = quoted(text, at + 6);
  at = cursor.end;
  if (at < 0 || !text.startsWith('","q":"', at)) return undefined;
  const quantity = quoted(text, at + 7);
  at = cursor.end;
  if (at < 0 || text.charCodeAt(at + 1) !== COMMA) return undefined;
  // As normalizeTrade: a positive price and a positive quantity, both venue decimals.
  if (!(price > 0) || !(quantity > 0)) return undefined;
  at = field(text, at + 1, ',"f":');
  if (at < 0) return undefined;
  at = field(text, at, ',"l":');
  if (at < 0) return undefined;
  at = field(text, at, ',"T":');
  if (at < 0) return undefined;
  const tradeTime = scanned;
  let buyerIsMaker: boolean;
  if (text.startsWith(',"m":true}}', at) && at + 11 === text.length) buyerIsMaker = true;
  else if (text.startsWith(',"m":false}}', at) && at + 12 === text.length) buyerIsMaker = false;
  else return undefined;
  return { stream: text.substring(HEAD.length, streamEnd), tradeId, price, quantity, tradeTime, buyerIsMaker };
}

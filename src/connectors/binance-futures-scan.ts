/**
 * A fast reader for the frame that dominates a Binance USD-M feed: the combined-stream diff-depth event
 * (https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams/Diff-Book-Depth-Streams):
 *
 *   {"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":..,"T":..,"s":"BTCUSDT","U":..,"u":..,"pu":..,
 *    "b":[["price","qty"],...],"a":[["price","qty"],...]}}
 *
 * JSON.parse builds an object, two arrays per level and two strings per level, only for the connector to
 * turn them into numbers; this reads the text once and writes the flat [price, qty, ...] arrays directly
 * (the levels through kit/level-scan.ts, the ids through json-scan.ts, both strict). It accepts exactly the
 * layout Binance sends, in its documented field order (a level may carry further strings, which the JSON path
 * ignores too); anything else (a field added or moved, whitespace, another event, a malformed
 * value) returns undefined and the connector takes its JSON.parse path, which handles and reports it.
 */
import { COMMA, cursor, jsonInteger, quoted } from "./json-scan.ts";
import { DECIMAL_STRING_LEVELS, scanLevels } from "./kit/level-scan.ts";

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

/** Position after `"key":<integer>` starting at `at` (expects `key` to include its leading comma). */
let scanned = 0;
function field(text: string, at: number, key: string): number {
  if (!text.startsWith(key, at)) return -1;
  const start = at + key.length;
  const end = text.indexOf(",", start);
  if (end < 0) return -1;
  scanned = jsonInteger(text, start, end);
  return Number.isNaN(scanned) ? -1 : end;
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
  const eventTime = jsonInteger(text, at, end);
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
  at = scanLevels(text, at + 5, bids, DECIMAL_STRING_LEVELS);
  if (at < 0 || !text.startsWith(',"a":', at)) return undefined;
  const asks: number[] = [];
  at = scanLevels(text, at + 5, asks, DECIMAL_STRING_LEVELS);
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
  if (end < 0 || Number.isNaN(jsonInteger(text, at, end))) return undefined;
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

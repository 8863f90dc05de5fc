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
import { after, cursor, jsonInteger, keyedInteger, keyedStringEnd, quoted } from "./json-scan.ts";
import { DECIMAL_STRING_LEVELS, scanLevels, type ScannedLevels } from "./kit/level-scan.ts";

export interface ScannedDepth extends ScannedLevels {
  readonly stream: string;
  readonly eventTime: number;
  readonly transactionTime: number;
  readonly firstId: number;
  readonly finalId: number;
  readonly previousFinalId: number;
}

const HEAD = '{"stream":"';
const DATA = '","data":{"e":"depthUpdate","E":';

/** The diff-depth event in `text`, or undefined when the frame is not exactly that shape. */
export function scanDepthFrame(text: string): ScannedDepth | undefined {
  const nameEnd = keyedStringEnd(text, 0, HEAD);
  // Each field read passes a failure on (cursor.end -1, json-scan.ts), checked once below.
  const eventTime = keyedInteger(text, nameEnd, DATA, false);
  const transactionTime = keyedInteger(text, cursor.end, ',"T":', false);
  const symbolEnd = keyedStringEnd(text, cursor.end, ',"s":"');
  const firstId = keyedInteger(text, symbolEnd < 0 ? -1 : symbolEnd + 1, ',"U":', false);
  const finalId = keyedInteger(text, cursor.end, ',"u":', false);
  const previousFinalId = keyedInteger(text, cursor.end, ',"pu":', false);
  const bids: number[] = [];
  const bidsEnd = scanLevels(text, after(text, cursor.end, ',"b":'), bids, DECIMAL_STRING_LEVELS);
  const asks: number[] = [];
  const asksEnd = scanLevels(text, after(text, bidsEnd, ',"a":'), asks, DECIMAL_STRING_LEVELS);
  if (asksEnd < 0 || asksEnd + 2 !== text.length || !text.endsWith("}}") || finalId < firstId) return undefined;
  return { stream: text.substring(HEAD.length, nameEnd), eventTime, transactionTime, firstId, finalId, previousFinalId, bids, asks };
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
 * The aggTrade fast path keeps its own field reader: on this short frame of six integers the shared
 * chained readers (keyedInteger, keyedStringEnd with its escape scan of both names) measured up to 5 %
 * slower than this one in a same-process A/B; the depth frame, dominated by its levels, reads as fast
 * with them. Position after
 * `"key":<integer>` at `at` (`key` with its leading comma), the integer in `scanned`; -1 when absent.
 */
let scanned = 0;
function field(text: string, at: number, key: string): number {
  if (!text.startsWith(key, at)) return -1;
  const end = text.indexOf(",", at + key.length);
  if (end < 0) return -1;
  scanned = jsonInteger(text, at + key.length, end);
  return Number.isNaN(scanned) ? -1 : end;
}

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
  if (!text.startsWith(HEAD)) return undefined;
  const nameEnd = text.indexOf('"', HEAD.length);
  if (nameEnd < 0 || !text.startsWith(TRADE_DATA, nameEnd)) return undefined;
  const end = text.indexOf(",", nameEnd + TRADE_DATA.length);
  if (end < 0 || Number.isNaN(jsonInteger(text, nameEnd + TRADE_DATA.length, end))) return undefined;
  if (!text.startsWith(',"s":"', end)) return undefined;
  const symbolEnd = text.indexOf('"', end + 6);
  if (symbolEnd < 0) return undefined;
  let at = field(text, symbolEnd + 1, ',"a":');
  if (at < 0) return undefined;
  const tradeId = scanned;
  if (!text.startsWith(',"p":"', at)) return undefined;
  const price = quoted(text, at + 6);
  at = cursor.end;
  if (at < 0 || !text.startsWith('","q":"', at)) return undefined;
  const quantity = quoted(text, at + 7);
  at = cursor.end;
  // As normalizeTrade: a positive price and a positive quantity, both venue decimals.
  if (at < 0 || !(price > 0) || !(quantity > 0)) return undefined;
  at = field(text, at + 1, ',"f":');
  if (at >= 0) at = field(text, at, ',"l":');
  if (at >= 0) at = field(text, at, ',"T":');
  if (at < 0) return undefined;
  const tradeTime = scanned;
  let buyerIsMaker: boolean;
  if (text.startsWith(',"m":true}}', at) && at + 11 === text.length) buyerIsMaker = true;
  else if (text.startsWith(',"m":false}}', at) && at + 12 === text.length) buyerIsMaker = false;
  else return undefined;
  return { stream: text.substring(HEAD.length, nameEnd), tradeId, price, quantity, tradeTime, buyerIsMaker };
}

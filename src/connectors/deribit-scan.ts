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
 * text once and writes the flat [price, amount, ...] arrays directly (the levels through kit/level-scan.ts).
 * It accepts only that layout, in that field order, with every number in JSON's own syntax and every level
 * as the connector requires (flattenLevels below: `delete` → amount 0). Anything else (the snapshot, another
 * field or order, whitespace, escapes, an odd value) returns undefined and the connector takes its JSON.parse path,
 * which handles and reports it.
 */
import { jsonFinite, jsonInteger, stringEnd } from "./json-scan.ts";
import { ACTION_NUMBER_LEVELS, scanLevels } from "./kit/level-scan.ts";

export interface ScannedDeribitBook {
  readonly channel: string;
  readonly timestamp: number;
  readonly prevChangeId: number;
  readonly changeId: number;
  readonly bids: number[];
  readonly asks: number[];
}

const HEAD = '{"jsonrpc":"2.0","method":"subscription","params":{"channel":"';
const DATA = '","data":{"type":"change","timestamp":';
const PREV = ',"prev_change_id":';
const INSTRUMENT = ',"instrument_name":"';
const CHANGE = '","change_id":';
const BIDS = ',"bids":';
const ASKS = ',"asks":';
const TAIL = "}}}";

/** The book change notification in `text`, or undefined when the frame is not exactly that shape. */
export function scanDeribitBookChange(text: string): ScannedDeribitBook | undefined {
  if (!text.startsWith(HEAD)) return undefined;
  const channelEnd = stringEnd(text, HEAD.length);
  if (channelEnd <= HEAD.length || !text.startsWith(DATA, channelEnd)) return undefined;
  let at = channelEnd + DATA.length;
  let end = text.indexOf(",", at);
  if (end < 0) return undefined;
  const timestamp = jsonInteger(text, at, end);
  if (Number.isNaN(timestamp) || !text.startsWith(PREV, end)) return undefined;
  at = end + PREV.length;
  end = text.indexOf(",", at);
  if (end < 0) return undefined;
  const prevChangeId = jsonInteger(text, at, end);
  if (Number.isNaN(prevChangeId) || !text.startsWith(INSTRUMENT, end)) return undefined;
  const nameEnd = stringEnd(text, end + INSTRUMENT.length);
  if (nameEnd < 0 || !text.startsWith(CHANGE, nameEnd)) return undefined;
  at = nameEnd + CHANGE.length;
  end = text.indexOf(",", at);
  if (end < 0) return undefined;
  const changeId = jsonInteger(text, at, end);
  if (Number.isNaN(changeId) || !text.startsWith(BIDS, end)) return undefined;
  const bids: number[] = [];
  at = scanLevels(text, end + BIDS.length, bids, ACTION_NUMBER_LEVELS);
  if (at < 0 || !text.startsWith(ASKS, at)) return undefined;
  const asks: number[] = [];
  at = scanLevels(text, at + ASKS.length, asks, ACTION_NUMBER_LEVELS);
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

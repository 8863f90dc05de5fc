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
import { after, cursor, jsonFinite, keyedInteger, keyedStringEnd } from "./json-scan.ts";
import { ACTION_NUMBER_LEVELS, scanLevels, type ScannedLevels } from "./kit/level-scan.ts";

const HEAD = '{"jsonrpc":"2.0","method":"subscription","params":{"channel":"';
const TAIL = "}}}";

export interface ScannedDeribitBook extends ScannedLevels {
  /** `book.<instrument>.<interval>`: which subscription the change belongs to. */
  readonly channel: string;
  /** Milliseconds. */
  readonly timestamp: number;
  /** The change this one follows, and its own id (kit/sequence/deribit.ts). */
  readonly prevChangeId: number;
  readonly changeId: number;
}

/** The book change notification in `text`, or undefined when the frame is not exactly that shape. */
export function scanDeribitBookChange(text: string): ScannedDeribitBook | undefined {
  const channelEnd = keyedStringEnd(text, 0, HEAD);
  if (channelEnd <= HEAD.length) return undefined;
  // Each read passes a failure before it on (-1, json-scan.ts), checked once at the end.
  const timestamp = keyedInteger(text, channelEnd, '","data":{"type":"change","timestamp":', false);
  const prevChangeId = keyedInteger(text, cursor.end, ',"prev_change_id":', false);
  const nameEnd = keyedStringEnd(text, cursor.end, ',"instrument_name":"');
  const changeId = keyedInteger(text, nameEnd, '","change_id":', false);
  const bids: number[] = [];
  const bidsEnd = scanLevels(text, after(text, cursor.end, ',"bids":'), bids, ACTION_NUMBER_LEVELS);
  const asks: number[] = [];
  const asksEnd = scanLevels(text, after(text, bidsEnd, ',"asks":'), asks, ACTION_NUMBER_LEVELS);
  if (asksEnd < 0 || asksEnd + TAIL.length !== text.length || !text.endsWith(TAIL)) return undefined;
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

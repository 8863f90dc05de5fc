/**
 * A fast reader for the frame that dominates an OKX L2 feed: the `books` incremental update
 * (https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-order-book-channel, push data example):
 *
 *   {"arg":{"channel":"books","instId":"BTC-USDT-SWAP"},"action":"update","data":[{"asks":[["px","sz","0","n"],...],
 *    "bids":[...],"ts":"1597026383085","checksum":0,"prevSeqId":123,"seqId":124}]}
 *
 * JSON.parse builds an object, an array and four strings per level, only for the connector to turn two of
 * the strings into numbers; this reads the text once and writes the flat [price, size, ...] arrays directly
 * (through json-scan.ts's strict venue-decimal reader, as the connector's JSON path reads them). It accepts only that layout, in
 * the documented field order, and only with checksum 0 (absent since OKX's deprecation: a non-zero one needs
 * the level texts, which only the JSON path keeps). Anything else (snapshots, another field or order,
 * whitespace, escapes, a value the connector would refuse) returns undefined and the connector takes its
 * JSON.parse path, which handles and reports it.
 */
import { after, cursor, jsonInteger, keyedInteger, keyedStringEnd, signedJsonInteger, stringEnd } from "./json-scan.ts";
import { DECIMAL_STRING_LEVELS, scanLevels, type ScannedLevels } from "./kit/level-scan.ts";

const HEAD = '{"arg":{"channel":"books","instId":"';
const TAIL = "}]}";

export interface ScannedOkxBook extends ScannedLevels {
  readonly instId: string;
  /** Milliseconds (sent as a string). */
  readonly ts: number;
  /** Only frames without a checksum are read here (see above). */
  readonly checksum: 0;
  /** The update this one follows, and its own id (kit/sequence/okx.ts). */
  readonly prevSeqId: number;
  readonly seqId: number;
}

/** The `books` update in `text`, or undefined when the frame is not exactly that shape (see above). */
export function scanOkxBooksUpdate(text: string): ScannedOkxBook | undefined {
  const idEnd = keyedStringEnd(text, 0, HEAD);
  if (idEnd <= HEAD.length) return undefined;
  // Each read passes a failure before it on (-1, json-scan.ts), checked once at the end.
  const asks: number[] = [];
  const asksEnd = scanLevels(text, after(text, idEnd, '"},"action":"update","data":[{"asks":'), asks, DECIMAL_STRING_LEVELS);
  const bids: number[] = [];
  const bidsEnd = scanLevels(text, after(text, asksEnd, ',"bids":'), bids, DECIMAL_STRING_LEVELS);
  const tsStart = after(text, bidsEnd, ',"ts":"');
  const tsEnd = tsStart < 0 ? -1 : stringEnd(text, tsStart);
  const ts = tsEnd < 0 ? Number.NaN : jsonInteger(text, tsStart, tsEnd);
  const prevSeqId = keyedInteger(text, Number.isNaN(ts) ? -1 : tsEnd, '","checksum":0,"prevSeqId":', true);
  const seqStart = after(text, cursor.end, ',"seqId":');
  const seqEnd = text.length - TAIL.length;
  if (seqStart < 0 || seqEnd <= seqStart || !text.endsWith(TAIL)) return undefined;
  const seqId = signedJsonInteger(text, seqStart, seqEnd);
  if (Number.isNaN(seqId)) return undefined;
  return { instId: text.substring(HEAD.length, idEnd), asks, bids, ts, checksum: 0, prevSeqId, seqId };
}

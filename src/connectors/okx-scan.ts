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
import { jsonInteger, signedJsonInteger, stringEnd } from "./json-scan.ts";
import { DECIMAL_STRING_LEVELS, scanLevels } from "./kit/level-scan.ts";

export interface ScannedOkxBook {
  readonly instId: string;
  readonly asks: number[];
  readonly bids: number[];
  readonly ts: number;
  readonly checksum: 0;
  readonly prevSeqId: number;
  readonly seqId: number;
}

const HEAD = '{"arg":{"channel":"books","instId":"';
const ACTION = '"},"action":"update","data":[{"asks":';
const BIDS = ',"bids":';
const TS = ',"ts":"';
const CHECKSUM = '","checksum":0,"prevSeqId":';
const SEQ = ',"seqId":';
const TAIL = "}]}";

/** The `books` update in `text`, or undefined when the frame is not exactly that shape (see above). */
export function scanOkxBooksUpdate(text: string): ScannedOkxBook | undefined {
  if (!text.startsWith(HEAD)) return undefined;
  const idEnd = stringEnd(text, HEAD.length);
  if (idEnd <= HEAD.length || !text.startsWith(ACTION, idEnd)) return undefined;
  const asks: number[] = [];
  let at = scanLevels(text, idEnd + ACTION.length, asks, DECIMAL_STRING_LEVELS);
  if (at < 0 || !text.startsWith(BIDS, at)) return undefined;
  const bids: number[] = [];
  at = scanLevels(text, at + BIDS.length, bids, DECIMAL_STRING_LEVELS);
  if (at < 0 || !text.startsWith(TS, at)) return undefined;
  at += TS.length;
  let end = text.indexOf('"', at);
  if (end < 0) return undefined;
  const ts = jsonInteger(text, at, end);
  if (Number.isNaN(ts) || !text.startsWith(CHECKSUM, end)) return undefined;
  at = end + CHECKSUM.length;
  end = text.indexOf(",", at);
  if (end < 0) return undefined;
  const prevSeqId = signedJsonInteger(text, at, end);
  if (Number.isNaN(prevSeqId) || !text.startsWith(SEQ, end)) return undefined;
  at = end + SEQ.length;
  end = text.length - TAIL.length;
  if (end <= at || !text.endsWith(TAIL)) return undefined;
  const seqId = signedJsonInteger(text, at, end);
  if (Number.isNaN(seqId)) return undefined;
  return { instId: text.substring(HEAD.length, idEnd), asks, bids, ts, checksum: 0, prevSeqId, seqId };
}

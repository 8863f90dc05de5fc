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
import { CLOSE, COMMA, MINUS, OPEN, QUOTE, ZERO, cursor, quoted, stringEnd } from "./json-scan.ts";

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

/** A decimal integer (optional leading minus, no leading zero: JSON's form) in [at, end), or NaN. */
function integer(text: string, at: number, end: number): number {
  const negative = text.charCodeAt(at) === MINUS;
  if (negative) at++;
  if (end <= at || end - at > 15 || (end - at > 1 && text.charCodeAt(at) === ZERO)) return Number.NaN;
  let value = 0;
  for (let i = at; i < end; i++) {
    const digit = text.charCodeAt(i) - ZERO;
    if (digit < 0 || digit > 9) return Number.NaN;
    value = value * 10 + digit;
  }
  return negative ? -value : value;
}

/**
 * Reads `[["px","sz",...],...]` at `at` into `out`; the position after the closing bracket, or -1.
 * A level is two or more strings; price and size must pass the connector's checks (price > 0, size >= 0).
 */
function levels(text: string, at: number, out: number[]): number {
  if (text.charCodeAt(at) !== OPEN) return -1;
  let i = at + 1;
  if (text.charCodeAt(i) === CLOSE) return i + 1;
  for (;;) {
    if (text.charCodeAt(i) !== OPEN || text.charCodeAt(i + 1) !== QUOTE) return -1;
    // No escape check for price and size: quoted() reads a backslash as NaN, which is declined.
    const price = quoted(text, i + 2);
    const priceEnd = cursor.end;
    if (priceEnd < 0 || text.charCodeAt(priceEnd + 1) !== COMMA || text.charCodeAt(priceEnd + 2) !== QUOTE) return -1;
    const size = quoted(text, priceEnd + 3);
    const sizeEnd = cursor.end;
    if (sizeEnd < 0) return -1;
    if (!(price > 0) || !(size >= 0)) return -1;
    out.push(price, size);
    i = sizeEnd + 1;
    // The deprecated liquidated-orders field, the order count, and whatever strings OKX may add.
    while (text.charCodeAt(i) === COMMA) {
      if (text.charCodeAt(i + 1) !== QUOTE) return -1;
      const end = stringEnd(text, i + 2);
      if (end < 0) return -1;
      i = end + 1;
    }
    if (text.charCodeAt(i) !== CLOSE) return -1;
    i++;
    const next = text.charCodeAt(i);
    if (next === CLOSE) return i + 1;
    if (next !== COMMA) return -1;
    i++;
  }
}

/** The `books` update in `text`, or undefined when the frame is not exactly that shape (see above). */
export function scanOkxBooksUpdate(text: string): ScannedOkxBook | undefined {
  if (!text.startsWith(HEAD)) return undefined;
  const idEnd = stringEnd(text, HEAD.length);
  if (idEnd <= HEAD.length || !text.startsWith(ACTION, idEnd)) return undefined;
  const asks: number[] = [];
  let at = levels(text, idEnd + ACTION.length, asks);
  if (at < 0 || !text.startsWith(BIDS, at)) return undefined;
  const bids: number[] = [];
  at = levels(text, at + BIDS.length, bids);
  if (at < 0 || !text.startsWith(TS, at)) return undefined;
  at += TS.length;
  let end = text.indexOf('"', at);
  if (end < 0 || text.charCodeAt(at) === MINUS) return undefined;
  const ts = integer(text, at, end);
  if (Number.isNaN(ts) || !text.startsWith(CHECKSUM, end)) return undefined;
  at = end + CHECKSUM.length;
  end = text.indexOf(",", at);
  if (end < 0) return undefined;
  const prevSeqId = integer(text, at, end);
  if (Number.isNaN(prevSeqId) || !text.startsWith(SEQ, end)) return undefined;
  at = end + SEQ.length;
  end = text.length - TAIL.length;
  if (end <= at || !text.endsWith(TAIL)) return undefined;
  const seqId = integer(text, at, end);
  if (Number.isNaN(seqId)) return undefined;
  return { instId: text.substring(HEAD.length, idEnd), asks, bids, ts, checksum: 0, prevSeqId, seqId };
}

/**
 * Bybit v5 public-stream normalizers (BYBIT_SPOT, BYBIT_LINEAR, BYBIT_INVERSE): pure functions from one
 * push frame, its receive time and the instrument to normalized events; a malformed item is left out (the
 * connector counts it as a parse error). They run without a connection, so documented or recorded frames
 * replay through them (tests/fixtures/bybit.jsonl).
 *
 * Topics (https://bybit-exchange.github.io/docs/v5/websocket/public/...): `publicTrade.{symbol}` (trade),
 * `orderbook.{depth}.{symbol}` (orderbook; depth 1 is the BBO), `tickers.{symbol}` (ticker),
 * `allLiquidation.{symbol}` (all-liquidation), `orderbook.full.{symbol}` (full-ob, deltas only).
 *
 * Times: every message carries `ts` (when the market-data service produced it); book messages also carry
 * `cts` (the matching engine's time, the one trades' `T` is comparable with), which book rows use when
 * present. All Bybit times are integer milliseconds.
 */
import { msToMicros } from "../core/clock.ts";
import type { BookChange, BookTicker, ExchangeId, Funding, Liquidation, MarketEvent, Sizing, TakerSide, Trade } from "../core/events.ts";
import { bboSide, decimal } from "./json-scan.ts";
import type { InstrumentContext } from "./kit/normalize.ts";
import { bookChange, flatten } from "./okx-normalize.ts";

export interface BybitInstrumentContext extends InstrumentContext {
  /** BYBIT_SPOT, BYBIT_LINEAR or BYBIT_INVERSE: one public endpoint per category. */
  readonly exchange: ExchangeId;
  /** Spot and linear: base quantity (contract value 1); inverse: USD contracts (quote, value 1). */
  readonly sizing: Sizing;
}

type Item = Record<string, unknown>;

/** A push frame as Bybit sends it on the public streams. */
export interface BybitPush {
  readonly topic?: unknown;
  readonly type?: unknown;
  readonly ts?: unknown;
  readonly cts?: unknown;
  readonly data?: unknown;
}

/** A time in integer milliseconds sent as a JSON number (`T`, `ts`, `cts`); NaN for anything else. */
export function bybitTime(value: unknown): number {
  return Number.isSafeInteger(value) ? (value as number) : Number.NaN;
}

/** A time in integer milliseconds sent as a string (`nextFundingTime`); NaN for anything else. */
export function bybitTimeText(value: unknown): number {
  return bybitTime(decimal(value));
}

/** `Buy`/`Sell` as Bybit writes a side. */
function side(value: unknown): TakerSide {
  return value === "Buy" ? "buy" : value === "Sell" ? "sell" : "unknown";
}

/**
 * publicTrade item: `S` is the taker's side, `i` the trade id (a string; a UUID in the documented linear
 * example), `T` the fill time. Block trades (`BT: true`) and RPI fills (`RPI: true`) are real fills and are
 * stored as trades; the trade row has no column for either flag (docs/venues/bybit.md, *Notes*).
 */
export function normalizeTrade(item: Item, receivedAt: number, instrument: BybitInstrumentContext): Trade | undefined {
  const price = decimal(item.p);
  const amount = decimal(item.v);
  const time = bybitTime(item.T);
  const id = item.i;
  if (!(price > 0) || !(amount > 0) || Number.isNaN(time) || typeof id !== "string" || id === "") return undefined;
  return {
    type: "trade",
    exchange: instrument.exchange,
    symbol: instrument.symbol,
    timestamp: msToMicros(time),
    localTimestamp: receivedAt,
    amountUnit: instrument.sizing.amountUnit,
    contractValue: instrument.sizing.contractValue,
    id,
    side: side(item.S),
    price,
    amount,
  };
}

/** The time of a book message: the matching engine's `cts` when sent, else the service's `ts`. */
function bookTime(message: { readonly ts?: unknown; readonly cts?: unknown }): number {
  const cts = bybitTime(message.cts);
  return Number.isNaN(cts) ? bybitTime(message.ts) : cts;
}

/**
 * orderbook.1 (snapshots only): best bid `b[0]` and best ask `a[0]`. An empty side (`[]`, a thin or
 * pre-open book) is NaN, as on OKX: stored as NaN in Parquet, null in QuestDB.
 */
export function normalizeBbo(message: BybitPush, receivedAt: number, instrument: BybitInstrumentContext): BookTicker | undefined {
  const data = message.data as Item | undefined;
  const time = bookTime(message);
  if (data === null || typeof data !== "object" || !Array.isArray(data.b) || !Array.isArray(data.a) || Number.isNaN(time)) return undefined;
  const bid = data.b[0] as readonly unknown[] | undefined;
  const ask = data.a[0] as readonly unknown[] | undefined;
  const bidPrice = bid ? decimal(bid[0]) : Number.NaN;
  const bidAmount = bid ? decimal(bid[1]) : Number.NaN;
  const askPrice = ask ? decimal(ask[0]) : Number.NaN;
  const askAmount = ask ? decimal(ask[1]) : Number.NaN;
  if ((bid && !bboSide(bidPrice, bidAmount)) || (ask && !bboSide(askPrice, askAmount))) return undefined;
  return {
    type: "bbo",
    exchange: instrument.exchange,
    symbol: instrument.symbol,
    timestamp: msToMicros(time),
    localTimestamp: receivedAt,
    bidPrice,
    bidAmount,
    askPrice,
    askAmount,
  };
}

/** One orderbook message, parsed: its update id `u`, cross sequence `seq` and flat levels. */
export interface BybitBookMessage {
  readonly isSnapshot: boolean;
  readonly updateId: number;
  readonly crossSequence: number;
  /** `cts`, or `ts` when absent, in milliseconds. */
  readonly time: number;
  readonly bids: number[];
  readonly asks: number[];
}

/**
 * An `orderbook.{depth}` or `orderbook.full` message (`type` snapshot or delta). Levels `[price, size]`,
 * size 0 = removed, read strictly (json-scan.ts via `flatten`).
 */
export function parseBook(message: BybitPush): BybitBookMessage | undefined {
  if (message.type !== "snapshot" && message.type !== "delta") return undefined;
  return bookFields(message.data, message.type === "snapshot", bookTime(message));
}

/**
 * The `result` of the REST full-depth snapshot (`GET /v5/market/full_orderbook?category=..&symbol=..`,
 * https://bybit-exchange.github.io/docs/v5/market/full-ob): the same `b/a/u/seq` with `ts` and `cts` inside.
 */
export function parseRestSnapshot(result: unknown): BybitBookMessage | undefined {
  const data = result as Item | null;
  if (data === null || typeof data !== "object") return undefined;
  return bookFields(data, true, bookTime(data));
}

function bookFields(value: unknown, isSnapshot: boolean, time: number): BybitBookMessage | undefined {
  const data = value as Item | null;
  if (data === null || typeof data !== "object" || Number.isNaN(time)) return undefined;
  const { u: updateId, seq: crossSequence } = data;
  if (!Number.isSafeInteger(updateId) || !Number.isSafeInteger(crossSequence)) return undefined;
  const bids = flatten(data.b);
  const asks = flatten(data.a);
  if (!bids || !asks) return undefined;
  return { isSnapshot, updateId: updateId as number, crossSequence: crossSequence as number, time, bids, asks };
}

/**
 * The row a parsed book message becomes; `sequence` is the update id `u` (the key the book's rule checks).
 * The context has OKX's shape (symbol, exchange id, sizing), so OKX's row builder serves.
 */
export function bookRow(book: BybitBookMessage, receivedAt: number, instrument: BybitInstrumentContext): BookChange {
  return bookChange(instrument, book.isSnapshot, book.updateId, book.time, receivedAt, book.bids, book.asks);
}

/** Funding fields of a ticker item: absent = not sent (unchanged, in a delta); `""` = the venue has none. */
function optional(value: unknown, read: (value: unknown) => number): number | undefined {
  return value === undefined || value === "" ? undefined : read(value);
}

/**
 * tickers (linear and inverse): `markPrice`, `indexPrice`, `fundingRate`, `nextFundingTime`. The first
 * message is a snapshot, later ones are deltas holding only the fields that changed; this reads one message
 * as it is (a delta's row has only its own fields) and `TickerMerge` completes rows from the snapshot.
 * Dated futures send `fundingRate: ""` and `nextFundingTime: ""`: no funding. A message without any of
 * the four fields (a volume-only delta) is not a funding row.
 */
export function normalizeTicker(message: BybitPush, receivedAt: number, instrument: BybitInstrumentContext): Funding | undefined {
  const data = message.data as Item | undefined;
  const time = bybitTime(message.ts);
  if (data === null || typeof data !== "object" || Number.isNaN(time)) return undefined;
  const fields = ["markPrice", "indexPrice", "fundingRate", "nextFundingTime"] as const;
  if (!fields.some((field) => field in data)) return undefined;
  const markPrice = optional(data.markPrice, decimal);
  const indexPrice = optional(data.indexPrice, decimal);
  const fundingRate = optional(data.fundingRate, (value) => decimal(value, true));
  const nextFunding = optional(data.nextFundingTime, bybitTimeText);
  if ((markPrice !== undefined && !(markPrice > 0)) || (indexPrice !== undefined && !(indexPrice > 0))) return undefined;
  if (Number.isNaN(fundingRate) || Number.isNaN(nextFunding)) return undefined;
  return {
    type: "funding",
    exchange: instrument.exchange,
    symbol: instrument.symbol,
    timestamp: msToMicros(time),
    localTimestamp: receivedAt,
    markPrice,
    indexPrice,
    fundingRate,
    nextFundingTime: nextFunding === undefined ? undefined : msToMicros(nextFunding),
  };
}

/**
 * Completes ticker rows of one subscription: a snapshot row replaces what is known, a delta row keeps
 * the known value of every field it does not carry. A field sent as `""` reads as not sent, so the known
 * value stays; dated futures send funding as `""` from their snapshot on, so theirs stays null. Rows
 * before the first snapshot are held back (undefined): they could not be complete. `reset()` on every
 * (re)subscription, since the venue then sends a new snapshot.
 */
export class TickerMerge {
  private known: Funding | undefined;

  reset(): void {
    this.known = undefined;
  }

  complete(row: Funding, isSnapshot: boolean): Funding | undefined {
    if (isSnapshot) {
      this.known = row;
      return row;
    }
    const known = this.known;
    if (known === undefined) return undefined;
    const merged: Funding = {
      ...row,
      markPrice: row.markPrice ?? known.markPrice,
      indexPrice: row.indexPrice ?? known.indexPrice,
      fundingRate: row.fundingRate ?? known.fundingRate,
      nextFundingTime: row.nextFundingTime ?? known.nextFundingTime,
    };
    this.known = merged;
    return merged;
  }
}

/**
 * allLiquidation item `{T, s, S, v, p}`: `S` is the side of the **position** (`Buy` = a long was
 * liquidated), so the liquidation order's side, our `side`, is the opposite: `Buy` → `sell`. Price is the
 * bankruptcy price `p`, amount the executed size `v`. It carries no id; ours is `T-S-v-p`, stable across
 * reconnects (the same form as OKX's).
 */
export function normalizeLiquidation(item: Item, receivedAt: number, instrument: BybitInstrumentContext): Liquidation | undefined {
  const price = decimal(item.p);
  const amount = decimal(item.v);
  const time = bybitTime(item.T);
  if (!(price > 0) || !(amount > 0) || Number.isNaN(time)) return undefined;
  const positionSide = side(item.S);
  return {
    type: "liquidation",
    exchange: instrument.exchange,
    symbol: instrument.symbol,
    timestamp: msToMicros(time),
    localTimestamp: receivedAt,
    amountUnit: instrument.sizing.amountUnit,
    contractValue: instrument.sizing.contractValue,
    id: `${String(item.T)}-${String(item.S)}-${String(item.v)}-${String(item.p)}`,
    side: positionSide === "buy" ? "sell" : positionSide === "sell" ? "buy" : "unknown",
    price,
    amount,
  };
}

/** The topic family of a push (`publicTrade`, `orderbook.1`, `orderbook`, `orderbook.full`, `tickers`, `allLiquidation`). */
export function topicKind(topic: unknown): string | undefined {
  if (typeof topic !== "string") return undefined;
  const parts = topic.split(".");
  if (parts[0] === "orderbook" && parts.length === 3) return parts[1] === "1" ? "orderbook.1" : parts[1] === "full" ? "orderbook.full" : "orderbook";
  return parts.length === 2 ? parts[0] : undefined;
}

/** Items of a push's `data`: an array for trades and liquidations, a lone object for the others. */
function items(data: unknown): Item[] {
  if (Array.isArray(data)) return data as Item[];
  return data !== null && typeof data === "object" ? [data as Item] : [];
}

/**
 * One push frame to the events it stands for on its own: trades, bbo, a ticker's funding row as sent (not
 * merged), liquidations, and the row an orderbook snapshot or delta becomes (whether it applies is the
 * book's sequence check). Control frames (`op`, `success`) and unknown topics give nothing. The replay and
 * fixture entry point.
 */
export function normalizeFrame(text: string, receivedAt: number, instrument: BybitInstrumentContext): MarketEvent[] {
  const message = JSON.parse(text) as BybitPush;
  const out: MarketEvent[] = [];
  switch (topicKind(message.topic)) {
    case "publicTrade":
      for (const item of items(message.data)) {
        const trade = normalizeTrade(item, receivedAt, instrument);
        if (trade) out.push(trade);
      }
      break;
    case "allLiquidation":
      for (const item of items(message.data)) {
        const liquidation = normalizeLiquidation(item, receivedAt, instrument);
        if (liquidation) out.push(liquidation);
      }
      break;
    case "orderbook.1": {
      const bbo = normalizeBbo(message, receivedAt, instrument);
      if (bbo) out.push(bbo);
      break;
    }
    case "orderbook":
    case "orderbook.full": {
      const book = parseBook(message);
      if (book) out.push(bookRow(book, receivedAt, instrument));
      break;
    }
    case "tickers": {
      const funding = normalizeTicker(message, receivedAt, instrument);
      if (funding) out.push(funding);
      break;
    }
  }
  return out;
}

/** What a control frame on a public connection is: a subscribe/unsubscribe answer, or a pong. */
export type BybitControl =
  | { readonly kind: "subscribe" | "unsubscribe"; readonly success: boolean; readonly requestId: unknown; readonly message: string }
  | { readonly kind: "pong" }
  | { readonly kind: "other" };

/**
 * Classifies a parsed frame without a `topic` (https://bybit-exchange.github.io/docs/v5/ws/connect):
 * answers `{"success":..,"ret_msg":..,"op":"subscribe"|"unsubscribe","req_id"?,"conn_id":..}`; the pong to
 * `{"op":"ping"}` is `{"success":true,"ret_msg":"pong","op":"ping",..}` on spot, linear and inverse (and
 * `{"op":"pong","args":[..]}` on options and private streams, accepted too).
 */
export function classifyControl(message: Item): BybitControl {
  if (message.op === "pong" || (message.op === "ping" && message.ret_msg === "pong")) return { kind: "pong" };
  if ((message.op === "subscribe" || message.op === "unsubscribe") && typeof message.success === "boolean") {
    const text = typeof message.ret_msg === "string" ? message.ret_msg : "";
    return { kind: message.op, success: message.success, requestId: message.req_id, message: text };
  }
  return { kind: "other" };
}

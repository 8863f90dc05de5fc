/**
 * OKX normalizers (OKX_SWAP and OKX_SPOT): pure functions from one item of a push's `data` array, its
 * receive time and the instrument to a normalized event, undefined when the item is malformed (the
 * connector counts it as a parse error). They run without a connection, so documented or recorded frames
 * replay through them (tests/fixtures/okx.jsonl).
 * Channels: https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-trades-channel,
 * #order-book-trading-market-data-ws-order-book-channel (bbo-tbt, books),
 * #public-data-websocket-funding-rate-channel, #public-data-websocket-mark-price-channel,
 * #public-data-websocket-liquidation-orders-channel.
 */
import { msToMicros } from "../core/clock.ts";
import type { BookChange, BookTicker, ExchangeId, Funding, Liquidation, MarketEvent, Sizing, TakerSide, Trade } from "../core/events.ts";
import { bboSide, decimal } from "./json-scan.ts";
import { bboEvent, bookChangeEvent, executionEvent, fundingEvent } from "./kit/event-builders.ts";
import type { InstrumentContext } from "./kit/normalize.ts";

export interface OkxInstrumentContext extends InstrumentContext {
  readonly exchange: ExchangeId;
  /** From the instrument list: swaps in contracts of `ctVal`, spot in base currency. */
  readonly sizing: Sizing;
}

/** A level as received: [price text, size text, ...]. */
export type Level = readonly string[];

type Item = Record<string, unknown>;

/** OKX times are strings of integer milliseconds; NaN for anything else. */
export function okxTime(value: unknown): number {
  const ms = decimal(value);
  return Number.isSafeInteger(ms) ? ms : Number.NaN;
}

function side(value: unknown): TakerSide {
  return value === "buy" || value === "sell" ? value : "unknown";
}

export function normalizeTrade(item: Item, receivedAt: number, instrument: OkxInstrumentContext): Trade | undefined {
  const price = decimal(item.px);
  const amount = decimal(item.sz);
  const ts = okxTime(item.ts);
  if (!(price > 0) || !(amount > 0) || Number.isNaN(ts)) return undefined;
  const id = String(item.tradeId ?? "");
  return executionEvent("trade", instrument.exchange, instrument.symbol, instrument.sizing, msToMicros(ts), receivedAt, id, side(item.side), price, amount);
}

/** bbo-tbt: an empty side (thin market, pre-open) is NaN: stored as NaN in Parquet, null in QuestDB. */
export function normalizeBbo(item: Item, receivedAt: number, instrument: OkxInstrumentContext): BookTicker | undefined {
  const ts = okxTime(item.ts);
  const bid = Array.isArray(item.bids) ? (item.bids[0] as Level | undefined) : undefined;
  const ask = Array.isArray(item.asks) ? (item.asks[0] as Level | undefined) : undefined;
  const bidPrice = bid ? decimal(bid[0]) : Number.NaN;
  const bidAmount = bid ? decimal(bid[1]) : Number.NaN;
  const askPrice = ask ? decimal(ask[0]) : Number.NaN;
  const askAmount = ask ? decimal(ask[1]) : Number.NaN;
  if (
    Number.isNaN(ts) || !Array.isArray(item.bids) || !Array.isArray(item.asks) ||
    (bid && !bboSide(bidPrice, bidAmount)) || (ask && !bboSide(askPrice, askAmount))
  ) {
    return undefined;
  }
  return bboEvent(instrument.exchange, instrument.symbol, msToMicros(ts), receivedAt, bidPrice, bidAmount, askPrice, askAmount);
}

/**
 * funding-rate and mark-price become separate funding rows, each with what its message carries.
 * `nextFundingTime` is OKX's `fundingTime`: the settlement at which `fundingRate` is charged (OKX's own
 * `nextFundingTime` is the settlement after that one).
 */
export function normalizeFunding(channel: string, item: Item, receivedAt: number, instrument: OkxInstrumentContext): Funding | undefined {
  const ts = okxTime(item.ts);
  // Absent or "": not sent; anything else must be in OKX's own form, or the message is refused.
  const optional = (value: unknown, read: (value: unknown) => number): number | undefined =>
    value === undefined || value === "" ? undefined : read(value);
  const markPrice = channel === "mark-price" ? optional(item.markPx, decimal) : undefined;
  const fundingRate = channel === "funding-rate" ? optional(item.fundingRate, (value) => decimal(value, true)) : undefined;
  const fundingTime = channel === "funding-rate" ? optional(item.fundingTime, okxTime) : undefined;
  if (
    Number.isNaN(ts) || (markPrice === undefined && fundingRate === undefined) ||
    (markPrice !== undefined && !(markPrice > 0)) || Number.isNaN(fundingRate) || Number.isNaN(fundingTime)
  ) {
    return undefined;
  }
  const nextFundingTime = fundingTime === undefined ? undefined : msToMicros(fundingTime);
  return fundingEvent(instrument.exchange, instrument.symbol, msToMicros(ts), receivedAt, markPrice, undefined, fundingRate, nextFundingTime, undefined);
}

/**
 * One liquidation detail. It carries no id; ours is `ts-side-sz-bkPx`, stable across reconnects. `side`
 * is the liquidation order's side (sell = a long was liquidated), as in our model.
 */
export function normalizeLiquidation(detail: unknown, receivedAt: number, instrument: OkxInstrumentContext): Liquidation | undefined {
  const d = (typeof detail === "object" && detail !== null ? detail : {}) as Item;
  const price = decimal(d.bkPx);
  const amount = decimal(d.sz);
  const ts = okxTime(d.ts);
  if (!(price > 0) || !(amount > 0) || Number.isNaN(ts)) return undefined;
  let orderSide = side(d.side);
  if (orderSide === "unknown") orderSide = d.posSide === "long" ? "sell" : d.posSide === "short" ? "buy" : "unknown";
  const id = `${String(d.ts)}-${String(d.side ?? d.posSide)}-${String(d.sz)}-${String(d.bkPx)}`;
  return executionEvent("liquidation", instrument.exchange, instrument.symbol, instrument.sizing, msToMicros(ts), receivedAt, id, orderSide, price, amount);
}

/**
 * Flattens OKX levels [[px, sz, "0", n], ...] to [px, sz, ...]; undefined when one is malformed: a price
 * must be an OKX decimal above 0, a size one of 0 or more (json-scan.ts).
 */
export function flatten(levels: unknown): number[] | undefined {
  if (!Array.isArray(levels)) return undefined;
  const out = new Array<number>(levels.length * 2);
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i] as Level;
    const price = decimal(level?.[0]);
    const amount = decimal(level?.[1]);
    if (!(price > 0) || !(amount >= 0)) return undefined;
    out[2 * i] = price;
    out[2 * i + 1] = amount;
  }
  return out;
}

/** A book row of the instrument: `ts` in OKX milliseconds, levels already flattened. */
export function bookChange(
  instrument: OkxInstrumentContext,
  isSnapshot: boolean,
  sequence: number,
  ts: number,
  receivedAt: number,
  bids: number[],
  asks: number[],
): BookChange {
  return bookChangeEvent(instrument.exchange, instrument.symbol, instrument.sizing, isSnapshot, sequence, msToMicros(ts), receivedAt, bids, asks);
}

/**
 * One push frame (`{"arg":{"channel":..},"data":[..]}`) to the events its items stand for on their own:
 * trades, bbo, funding, liquidations, and the row a `books` snapshot or update becomes (whether it
 * applies is the book's sequence check, not the normalizer's). Malformed items are left out. The replay
 * and fixture entry point.
 */
export function normalizeFrame(text: string, receivedAt: number, instrument: OkxInstrumentContext): MarketEvent[] {
  const message = JSON.parse(text) as { arg?: { channel?: unknown }; action?: unknown; data?: unknown };
  const channel = message.arg?.channel;
  if (typeof channel !== "string" || !Array.isArray(message.data)) return [];
  const out: MarketEvent[] = [];
  for (const item of message.data as Item[]) {
    let event: MarketEvent | undefined;
    switch (channel) {
      case "trades":
        event = normalizeTrade(item, receivedAt, instrument);
        break;
      case "bbo-tbt":
        event = normalizeBbo(item, receivedAt, instrument);
        break;
      case "funding-rate":
      case "mark-price":
        event = normalizeFunding(channel, item, receivedAt, instrument);
        break;
      case "liquidation-orders":
        if (Array.isArray(item.details)) for (const detail of item.details) {
          const liquidation = normalizeLiquidation(detail, receivedAt, instrument);
          if (liquidation) out.push(liquidation);
        }
        break;
      case "books": {
        const bids = flatten(item.bids);
        const asks = flatten(item.asks);
        const ts = okxTime(item.ts);
        if (bids && asks && typeof item.seqId === "number" && !Number.isNaN(ts)) {
          event = bookChange(instrument, message.action === "snapshot", item.seqId, ts, receivedAt, bids, asks);
        }
        break;
      }
    }
    if (event) out.push(event);
  }
  return out;
}

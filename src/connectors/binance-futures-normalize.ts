/**
 * Binance USDⓈ-M futures normalizers: pure functions from a payload (the `data` of a combined-stream
 * frame), its receive time and the instrument to normalized events. They run without a connection, so
 * recorded frames replay through them (tests/fixtures/binance-futures.jsonl).
 */
import { msToMicros } from "../core/clock.ts";
import type { BookChange, BookTicker, Funding, Liquidation, MarketEvent, TakerSide, Trade } from "../core/events.ts";
import { bboSide, decimal } from "./json-scan.ts";
import { bboEvent, bookChangeEvent, executionEvent, fundingEvent } from "./kit/event-builders.ts";
import type { InstrumentContext } from "./kit/normalize.ts";

const EXCHANGE = "BINANCE_FUTURES";

/**
 * Every USD-M contract is quoted in base-asset quantity (BTC for BTCUSDT), so `amount` is base and
 * contractValue is 1.
 */
export const SIZING = { amountUnit: "base", contractValue: 1 } as const;

export type Payload = Record<string, unknown>;

// Prices and quantities are Binance decimal strings, read by json-scan.ts's strict reader (NaN for any
// other form: "Infinity", "0x10", " 5", "", "1e309"...). A price must be above 0, a traded quantity too;
// a book level's quantity may be 0 (level removed).

/** aggTrade: `m` true = the buyer was the maker, so the taker sold. */
export function normalizeTrade(data: Payload, receivedAt: number, instrument: InstrumentContext): Trade | undefined {
  const id = data.a;
  const time = data.T;
  const price = decimal(data.p);
  const amount = decimal(data.q);
  const buyerIsMaker = data.m;
  if (typeof id !== "number" || typeof time !== "number" || !(price > 0) || !(amount > 0)) return undefined;
  if (typeof buyerIsMaker !== "boolean") return undefined;
  return tradeEvent(instrument, id, time, price, amount, buyerIsMaker, receivedAt);
}

/** The normalized aggTrade (also built from frames read without JSON.parse, onScannedTrade). */
export function tradeEvent(instrument: InstrumentContext, id: number, timeMs: number, price: number, amount: number, buyerIsMaker: boolean, receivedAt: number): Trade {
  const side = buyerIsMaker ? "sell" : "buy";
  return executionEvent("trade", EXCHANGE, instrument.symbol, SIZING, msToMicros(timeMs), receivedAt, String(id), side, price, amount);
}

export function normalizeBookTicker(data: Payload, receivedAt: number, instrument: InstrumentContext): BookTicker | undefined {
  const updateId = data.u;
  const time = typeof data.T === "number" ? data.T : data.E;
  const bidPrice = decimal(data.b);
  const bidAmount = decimal(data.B);
  const askPrice = decimal(data.a);
  const askAmount = decimal(data.A);
  if (typeof updateId !== "number" || typeof time !== "number") return undefined;
  if (!bboSide(bidPrice, bidAmount) || !bboSide(askPrice, askAmount)) return undefined;
  return bboEvent(EXCHANGE, instrument.symbol, msToMicros(time), receivedAt, bidPrice, bidAmount, askPrice, askAmount);
}

/** markPriceUpdate: delivery contracts send `r: ""` and `T: 0` (no funding); those become undefined. */
export function normalizeMarkPrice(data: Payload, receivedAt: number, instrument: InstrumentContext): Funding | undefined {
  const time = data.E;
  const markPrice = decimal(data.p);
  const indexPrice = decimal(data.i);
  const fundingRate = data.r === "" ? undefined : decimal(data.r, true);
  const nextFunding = data.T === 0 ? undefined : data.T;
  if (typeof time !== "number" || !(markPrice > 0) || !(indexPrice > 0)) return undefined;
  if (fundingRate !== undefined && Number.isNaN(fundingRate)) return undefined;
  if (nextFunding !== undefined && typeof nextFunding !== "number") return undefined;
  const nextFundingTime = nextFunding === undefined ? undefined : msToMicros(nextFunding);
  return fundingEvent(EXCHANGE, instrument.symbol, msToMicros(time), receivedAt, markPrice, indexPrice, fundingRate, nextFundingTime, undefined);
}

/**
 * forceOrder carries no id: the order's trade time `T` is unique per symbol (one push per symbol per
 * second at most) and becomes the id. Price is the average fill price `ap` and amount the filled quantity
 * `z`; the order price `p` and quantity `q` are used when nothing was filled.
 */
export function normalizeForceOrder(data: Payload, receivedAt: number, instrument: InstrumentContext): Liquidation | undefined {
  const order = data.o as Payload | undefined;
  if (order === null || typeof order !== "object") return undefined;
  const tradeTime = order.T;
  const averagePrice = decimal(order.ap);
  const orderPrice = decimal(order.p);
  const filled = decimal(order.z);
  const quantity = decimal(order.q);
  if (Number.isNaN(averagePrice) || Number.isNaN(orderPrice) || Number.isNaN(filled) || Number.isNaN(quantity)) return undefined;
  const price = averagePrice > 0 ? averagePrice : orderPrice;
  const amount = filled > 0 ? filled : quantity;
  if (typeof tradeTime !== "number" || !(price > 0) || !(amount > 0)) return undefined;
  const side: TakerSide = order.S === "SELL" ? "sell" : order.S === "BUY" ? "buy" : "unknown";
  return executionEvent("liquidation", EXCHANGE, instrument.symbol, SIZING, msToMicros(tradeTime), receivedAt, String(tradeTime), side, price, amount);
}

/** The normalizer of each non-book payload, by its event type `e`. */
export const NORMALIZERS: Readonly<Record<string, (data: Payload, receivedAt: number, instrument: InstrumentContext) => MarketEvent | undefined>> = {
  aggTrade: normalizeTrade,
  bookTicker: normalizeBookTicker,
  markPriceUpdate: normalizeMarkPrice,
  forceOrder: normalizeForceOrder,
};

/**
 * The growing key of each non-book payload the normalizer accepted (trade id, update id, event time, trade
 * time), for duplicate suppression (dedup.ts). Read only after the normalizer accepted the payload.
 */
export const EVENT_KEYS: Readonly<Record<string, (data: Payload) => number>> = {
  aggTrade: (data) => data.a as number,
  bookTicker: (data) => data.u as number,
  markPriceUpdate: (data) => data.E as number,
  forceOrder: (data) => (data.o as Payload).T as number,
};

/** One diff-depth event, parsed into flat level arrays. */
export interface DepthUpdate {
  readonly firstId: number;
  readonly finalId: number;
  readonly previousFinalId: number;
  readonly timestamp: number;
  readonly receivedAt: number;
  readonly bids: number[];
  readonly asks: number[];
}

/** [["price","qty"], ...] → [price, qty, ...]; undefined if any level is malformed. */
export function flatLevels(raw: unknown): number[] | undefined {
  if (!Array.isArray(raw)) return undefined;
  const out: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const level = raw[i];
    if (!Array.isArray(level)) return undefined;
    const price = decimal(level[0]);
    const amount = decimal(level[1]);
    if (!(price > 0) || !(amount >= 0)) return undefined;
    out.push(price, amount);
  }
  return out;
}

/** depthUpdate: timestamp is the transaction time `T` (event time `E` if absent). */
export function parseDepth(data: Payload, receivedAt: number): DepthUpdate | undefined {
  const { U: firstId, u: finalId, pu: previousFinalId } = data;
  const time = typeof data.T === "number" ? data.T : data.E;
  if (typeof firstId !== "number" || typeof finalId !== "number" || typeof previousFinalId !== "number") return undefined;
  if (typeof time !== "number" || finalId < firstId) return undefined;
  const bids = flatLevels(data.b);
  const asks = flatLevels(data.a);
  if (!bids || !asks) return undefined;
  return { firstId, finalId, previousFinalId, timestamp: msToMicros(time), receivedAt, bids, asks };
}

export interface DepthSnapshot {
  readonly lastUpdateId: number;
  readonly timestamp: number;
  readonly receivedAt: number;
  readonly bids: number[];
  readonly asks: number[];
}

export function parseSnapshot(body: unknown, receivedAt: number): DepthSnapshot | undefined {
  const data = body as Payload | null;
  if (data === null || typeof data !== "object" || typeof data.lastUpdateId !== "number") return undefined;
  const time = typeof data.T === "number" ? data.T : typeof data.E === "number" ? data.E : undefined;
  const bids = flatLevels(data.bids);
  const asks = flatLevels(data.asks);
  if (!bids || !asks) return undefined;
  return {
    lastUpdateId: data.lastUpdateId,
    timestamp: time === undefined ? receivedAt : msToMicros(time),
    receivedAt,
    bids,
    asks,
  };
}

/** A diff-depth event as the delta row it becomes on a live book. */
export function depthDelta(update: DepthUpdate, instrument: InstrumentContext): BookChange {
  return bookChangeEvent(EXCHANGE, instrument.symbol, SIZING, false, update.finalId, update.timestamp, update.receivedAt, update.bids, update.asks);
}

/**
 * One combined-stream frame (`{"stream":..,"data":..}`) to the events it stands for on its own: a
 * non-book event, or the delta row of a diff-depth event (whether it applies is the book's sequence
 * check, not the normalizer's). Empty for anything else. The replay and fixture entry point.
 */
export function normalizeFrame(text: string, receivedAt: number, instrument: InstrumentContext): MarketEvent[] {
  const data = (JSON.parse(text) as { data?: Payload }).data;
  if (data === null || typeof data !== "object") return [];
  if (data.e === "depthUpdate") {
    const update = parseDepth(data, receivedAt);
    return update ? [depthDelta(update, instrument)] : [];
  }
  const event = NORMALIZERS[String(data.e)]?.(data, receivedAt, instrument);
  return event ? [event] : [];
}

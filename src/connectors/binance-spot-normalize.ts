/**
 * Binance spot normalizers (BINANCE_SPOT): pure functions from a payload (the `data` of a combined-stream
 * frame), its receive time and the instrument to normalized events. They run without a connection, so
 * documented or recorded frames replay through them (tests/fixtures/binance-spot.jsonl).
 *
 * Streams and payloads: https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams
 * (Trade Streams, Individual Symbol Book Ticker Streams, Diff. Depth Stream); the REST snapshot:
 * https://developers.binance.com/docs/binance-spot-api-docs/rest-api/market-data-endpoints (Order book).
 *
 * Differences from USDⓈ-M futures that shape this file: the trade stream is the raw `@trade` (own id `t`,
 * no aggregation); `@bookTicker` carries neither an event type `e` nor any time, so it is recognised by its
 * stream name and stamped with the receive time; `depthUpdate` has no `pu` and no transaction time `T`
 * (event time `E` only); the REST depth body has no time at all.
 */
import { msToMicros } from "../core/clock.ts";
import type { BookChange, BookTicker, MarketEvent, Trade } from "../core/events.ts";
import { flatLevels } from "./binance-futures-normalize.ts";
import { bboSide, decimal } from "./json-scan.ts";
import type { InstrumentContext } from "./kit/normalize.ts";
import { bookChange } from "./okx-normalize.ts";

const EXCHANGE = "BINANCE_SPOT";

/** Spot quantities are base-asset quantities (BTC for BTCUSDT). */
export const SIZING = { amountUnit: "base", contractValue: 1 } as const;

export type Payload = Record<string, unknown>;

/** The combined-stream name suffix of each stream xtrader subscribes (`<symbol>` in lower case before it). */
export const STREAM_SUFFIX = { TRADES: "@trade", L2: "@depth@100ms", BBO: "@bookTicker" } as const;

/**
 * trade: `t` is the trade id, `T` the trade time; `m` true = the buyer was the maker, so the taker sold.
 * Prices and quantities go through json-scan.ts's strict venue-decimal reader; both must be above 0.
 */
export function normalizeTrade(data: Payload, receivedAt: number, instrument: InstrumentContext): Trade | undefined {
  const id = data.t;
  const time = data.T;
  const price = decimal(data.p);
  const amount = decimal(data.q);
  const buyerIsMaker = data.m;
  if (!Number.isSafeInteger(id) || typeof time !== "number" || !(price > 0) || !(amount > 0)) return undefined;
  if (typeof buyerIsMaker !== "boolean") return undefined;
  return {
    type: "trade",
    exchange: EXCHANGE,
    symbol: instrument.symbol,
    timestamp: msToMicros(time),
    localTimestamp: receivedAt,
    id: String(id),
    side: buyerIsMaker ? "sell" : "buy",
    price,
    amount,
    amountUnit: SIZING.amountUnit,
    contractValue: SIZING.contractValue,
  };
}

/**
 * bookTicker `{u, s, b, B, a, A}`: the payload has no time, so the row's exchange time is the receive
 * time (the only honest stamp; `local_timestamp - timestamp` is 0 for these rows). `u` is the order book
 * update id, which only grows (it jumps: it says nothing about missed updates), the key for duplicates.
 */
export function normalizeBookTicker(data: Payload, receivedAt: number, instrument: InstrumentContext): BookTicker | undefined {
  const bidPrice = decimal(data.b);
  const bidAmount = decimal(data.B);
  const askPrice = decimal(data.a);
  const askAmount = decimal(data.A);
  if (!Number.isSafeInteger(data.u)) return undefined;
  if (!bboSide(bidPrice, bidAmount) || !bboSide(askPrice, askAmount)) return undefined;
  return {
    type: "bbo",
    exchange: EXCHANGE,
    symbol: instrument.symbol,
    timestamp: receivedAt,
    localTimestamp: receivedAt,
    bidPrice,
    bidAmount,
    askPrice,
    askAmount,
  };
}

/** One spot diff-depth event: `U`..`u` are the update ids it covers (no `pu` on spot). */
export interface SpotDepthUpdate {
  readonly firstId: number;
  readonly finalId: number;
  /** Event time `E`, milliseconds. */
  readonly time: number;
  readonly receivedAt: number;
  readonly bids: number[];
  readonly asks: number[];
}

/** depthUpdate: timestamp is the event time `E` (spot sends no transaction time). */
export function parseDepth(data: Payload, receivedAt: number): SpotDepthUpdate | undefined {
  const { U: firstId, u: finalId, E: time } = data;
  if (!Number.isSafeInteger(firstId) || !Number.isSafeInteger(finalId) || typeof time !== "number") return undefined;
  if ((finalId as number) < (firstId as number)) return undefined;
  const bids = flatLevels(data.b);
  const asks = flatLevels(data.a);
  if (!bids || !asks) return undefined;
  return { firstId: firstId as number, finalId: finalId as number, time, receivedAt, bids, asks };
}

export interface SpotDepthSnapshot {
  readonly lastUpdateId: number;
  readonly receivedAt: number;
  readonly bids: number[];
  readonly asks: number[];
}

/**
 * GET /api/v3/depth body `{lastUpdateId, bids, asks}`. It carries no time: the book's sync gives the
 * snapshot rows the `E` of the first event applied on top of it (the state at `lastUpdateId` is no later),
 * or the receive time when none has arrived yet; see docs/venues/binance-spot.md, *L2 integrity*.
 */
export function parseSnapshot(body: unknown, receivedAt: number): SpotDepthSnapshot | undefined {
  const data = body as Payload | null;
  if (data === null || typeof data !== "object" || !Number.isSafeInteger(data.lastUpdateId)) return undefined;
  const bids = flatLevels(data.bids);
  const asks = flatLevels(data.asks);
  if (!bids || !asks) return undefined;
  return { lastUpdateId: data.lastUpdateId as number, receivedAt, bids, asks };
}

/**
 * A book row of the instrument: a diff event as a delta, or a snapshot with the time (milliseconds) the
 * sync chose. OKX's row builder serves, given the venue's exchange id and sizing.
 */
export function depthRow(instrument: InstrumentContext, isSnapshot: boolean, sequence: number, timeMs: number, receivedAt: number, bids: number[], asks: number[]): BookChange {
  return bookChange({ symbol: instrument.symbol, exchange: EXCHANGE, sizing: SIZING }, isSnapshot, sequence, timeMs, receivedAt, bids, asks);
}

/**
 * The growing key of each accepted payload, for duplicate suppression (dedup.ts): trade id `t`, book
 * update id `u` (bookTicker and depthUpdate). Read only after the normalizer accepted the payload.
 */
export function eventKey(data: Payload): number {
  return (data.e === "trade" ? data.t : data.u) as number;
}

/** Which of our streams a combined-stream name belongs to, from its suffix; undefined for any other. */
export function streamOfName(name: unknown): keyof typeof STREAM_SUFFIX | undefined {
  if (typeof name !== "string") return undefined;
  if (name.endsWith(STREAM_SUFFIX.TRADES)) return "TRADES";
  if (name.endsWith(STREAM_SUFFIX.L2)) return "L2";
  if (name.endsWith(STREAM_SUFFIX.BBO)) return "BBO";
  return undefined;
}

/**
 * One combined-stream frame (`{"stream":..,"data":..}`) to the events it stands for on its own: a trade,
 * a bbo, or the delta row of a diff-depth event (whether it applies is the book's sequence check, not the
 * normalizer's). Routed by the stream name, since bookTicker payloads have no `e`; a payload whose `e`
 * contradicts its stream is refused. Empty for anything else. The replay and fixture entry point.
 */
export function normalizeFrame(text: string, receivedAt: number, instrument: InstrumentContext): MarketEvent[] {
  const message = JSON.parse(text) as { stream?: unknown; data?: Payload };
  const data = message.data;
  if (data === null || typeof data !== "object") return [];
  let event: MarketEvent | undefined;
  switch (streamOfName(message.stream)) {
    case "TRADES":
      if (data.e === "trade") event = normalizeTrade(data, receivedAt, instrument);
      break;
    case "BBO":
      if (data.e === undefined) event = normalizeBookTicker(data, receivedAt, instrument);
      break;
    case "L2": {
      const update = data.e === "depthUpdate" ? parseDepth(data, receivedAt) : undefined;
      if (update) event = depthRow(instrument, false, update.finalId, update.time, receivedAt, update.bids, update.asks);
      break;
    }
  }
  return event ? [event] : [];
}

/** What a control frame on a spot stream connection is (acks, errors, the shutdown notice). */
export type SpotControl =
  | { readonly kind: "ack"; readonly id: unknown }
  | { readonly kind: "error"; readonly id: unknown; readonly code: unknown; readonly message: string }
  | { readonly kind: "shutdown" }
  | { readonly kind: "other" };

/**
 * Classifies a parsed frame that is not stream data: `{"result":null,"id":N}` acknowledges a
 * SUBSCRIBE/UNSUBSCRIBE (a non-null `result` answers LIST_SUBSCRIPTIONS, also an answer to `id`);
 * `{"code":..,"msg":..,"id":..}` is an error (Error Messages table; some errors carry no `id`). The
 * `serverShutdown` notice is documented for stream connections without a frame layout (the WebSocket API
 * wraps it as `{"event":{"e":"serverShutdown","E":..}}`), so every place its `e` may sit is accepted.
 */
export function classifyControl(message: Payload): SpotControl {
  if ("result" in message && "id" in message) return { kind: "ack", id: message.id };
  if ("code" in message && typeof message.msg === "string") {
    return { kind: "error", id: message.id, code: message.code, message: message.msg };
  }
  const nested = [message, message.data, message.event];
  for (const part of nested) {
    if (part !== null && typeof part === "object" && (part as Payload).e === "serverShutdown") return { kind: "shutdown" };
  }
  return { kind: "other" };
}

/**
 * Normalized market events: one envelope, one readonly discriminated union.
 *
 * Mapping rules every connector follows (see docs/data-model.md):
 * - `timestamp` is the exchange's event time, `localTimestamp` the moment the frame was read from the
 *   socket (taken before parsing). Both are integer microseconds since the Unix epoch.
 * - trade `side` is the taker side: `buy` means the aggressor bought.
 * - book_change levels are flattened `[price, amount, price, amount, ...]`; amount 0 removes the level.
 *   `isSnapshot: true` means "reset the book to exactly these levels".
 * - `amount` is the venue's own quantity; `amountUnit` and `contractValue` say how to get base currency:
 *   base = amount * contractValue, or (amount * contractValue) / price when the unit is the quote currency.
 * - A `gap` event marks data that may be missing (disconnect, sequence break, overflow...). For L2 a
 *   fresh snapshot always follows a gap before any further delta.
 */

import { nowMicros } from "./clock.ts";

export const STREAMS = ["TRADES", "L2", "BBO", "FUNDING", "LIQUIDATIONS"] as const;
export type Stream = (typeof STREAMS)[number];

/**
 * A venue id (e.g. the `EXCHANGE` of a subscription). The venues are listed by the registry
 * (src/connectors/index.ts), not here, so that adding one edits no file in core; an id is checked against
 * the registry when subscriptions are parsed (subscriptions.ts).
 */
export type ExchangeId = string;

/** How `amount` converts to base currency (see module comment). */
export type AmountUnit = "base" | "quote";

export interface Envelope {
  readonly exchange: ExchangeId;
  /** The instrument as written in the subscription, upper-cased (e.g. BTCUSDT or BTC-PERPETUAL). */
  readonly symbol: string;
  /** Exchange event time, integer microseconds since the epoch. */
  readonly timestamp: number;
  /** Receive time at socket read, integer microseconds since the epoch. */
  readonly localTimestamp: number;
}

export interface Sizing {
  readonly amountUnit: AmountUnit;
  readonly contractValue: number;
}

export type TakerSide = "buy" | "sell" | "unknown";

export interface Trade extends Envelope, Sizing {
  readonly type: "trade";
  readonly id: string;
  readonly side: TakerSide;
  readonly price: number;
  readonly amount: number;
}

export interface BookChange extends Envelope, Sizing {
  readonly type: "book_change";
  readonly isSnapshot: boolean;
  /** The exchange's sequence number for this message (update id, seqId, change_id). */
  readonly sequence: number;
  /** Flattened [price, amount, ...] pairs; amount 0 = level removed. */
  readonly bids: readonly number[];
  readonly asks: readonly number[];
}

export interface BookTicker extends Envelope {
  readonly type: "bbo";
  readonly bidPrice: number;
  readonly bidAmount: number;
  readonly askPrice: number;
  readonly askAmount: number;
}

export interface Funding extends Envelope {
  readonly type: "funding";
  /** Fields a venue's message does not carry are undefined (stored as null). */
  readonly markPrice: number | undefined;
  readonly indexPrice: number | undefined;
  readonly fundingRate: number | undefined;
  /** Next funding time, integer microseconds since the epoch. */
  readonly nextFundingTime: number | undefined;
  /**
   * The instantaneous funding rate, for venues that report one beside the period rate (Deribit's
   * `current_funding`, with `funding_8h` in fundingRate); undefined elsewhere.
   */
  readonly currentFundingRate?: number | undefined;
}

export interface Liquidation extends Envelope, Sizing {
  readonly type: "liquidation";
  readonly id: string;
  /** Side of the liquidation order: `sell` = a long position was liquidated, `buy` = a short one. */
  readonly side: TakerSide;
  readonly price: number;
  readonly amount: number;
}

export const GAP_REASONS = [
  "disconnect",
  "stale",
  "sequence",
  "crossed_book",
  "checksum",
  "overflow",
  "snapshot_failed",
  "subscription_error",
  // A venue id went backwards (reset, relisted symbol, an earlier id that was too high, a late event):
  // the event is kept, and this marks that the stream's ids restarted there.
  "id_reset",
  // The previous run died without a clean stop (killed, crashed, power lost): its last rows may be missing.
  "unclean_stop",
  // The sink's files were deleted or moved away while being written (Parquet): rows it had stored are gone.
  "output_lost",
] as const;
export type GapReason = (typeof GAP_REASONS)[number];

export interface Gap extends Envelope {
  readonly type: "gap";
  /** The stream whose data may be incomplete around this time. */
  readonly stream: Stream;
  readonly reason: GapReason;
  readonly detail: string;
}

export type MarketEvent = Trade | BookChange | BookTicker | Funding | Liquidation | Gap;
export type EventType = MarketEvent["type"];

/** Which subscription stream an event belongs to. */
export function streamOf(event: MarketEvent): Stream {
  switch (event.type) {
    case "trade":
      return "TRADES";
    case "book_change":
      return "L2";
    case "bbo":
      return "BBO";
    case "funding":
      return "FUNDING";
    case "liquidation":
      return "LIQUIDATIONS";
    case "gap":
      return event.stream;
  }
}

/** Rows an event becomes in a sink: one per level for books, and one for a snapshot without a level. */
export function rowCount(event: MarketEvent): number {
  if (event.type !== "book_change") return 1;
  const levels = (event.bids.length + event.asks.length) >> 1;
  return levels === 0 && event.isSnapshot ? 1 : levels;
}

/** Base-currency amount of one quantity at one price, per the event's sizing. */
export function baseAmount(sizing: Sizing, price: number, amount: number): number {
  const scaled = amount * sizing.contractValue;
  return sizing.amountUnit === "base" ? scaled : price > 0 ? scaled / price : 0;
}

/**
 * A gap marker for one subscription's (exchange, symbol, stream); its exchange time is the local time
 * at which the gap was noticed (`at`, default now), since the venue did not say.
 */
export function gapEvent(
  target: { readonly exchange: ExchangeId; readonly symbol: string; readonly stream: Stream },
  reason: GapReason,
  detail: string,
  at: number = nowMicros(),
): Gap {
  return {
    type: "gap",
    exchange: target.exchange,
    symbol: target.symbol,
    timestamp: at,
    localTimestamp: at,
    stream: target.stream,
    reason,
    detail,
  };
}

export const BASE_SIZING: Sizing = Object.freeze({ amountUnit: "base", contractValue: 1 });

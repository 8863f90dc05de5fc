/**
 * The normalized event objects every venue's normalizers build, each built in one place: one key order
 * per event type, so every venue's events share one object shape and the pipeline and sinks that read
 * them stay monomorphic. Times are integer microseconds (the caller converts the venue's unit); values
 * are already validated by the venue's normalizer.
 */
import type { BookChange, BookTicker, ExchangeId, Funding, Liquidation, Sizing, TakerSide, Trade } from "../../core/events.ts";

/**
 * A trade (`side` the taker's) or a liquidation (`side` the liquidation order's: sell = a long position
 * was liquidated): the same fields.
 */
export function executionEvent<T extends "trade" | "liquidation">(
  type: T,
  exchange: ExchangeId,
  symbol: string,
  sizing: Sizing,
  timestamp: number,
  receivedAt: number,
  id: string,
  side: TakerSide,
  price: number,
  amount: number,
): Extract<Trade | Liquidation, { type: T }> {
  const event: Trade | Liquidation = {
    type: type as "trade",
    exchange,
    symbol,
    timestamp,
    localTimestamp: receivedAt,
    id,
    side,
    price,
    amount,
    amountUnit: sizing.amountUnit,
    contractValue: sizing.contractValue,
  };
  return event as Extract<Trade | Liquidation, { type: T }>;
}

export function bboEvent(
  exchange: ExchangeId,
  symbol: string,
  timestamp: number,
  receivedAt: number,
  bidPrice: number,
  bidAmount: number,
  askPrice: number,
  askAmount: number,
): BookTicker {
  return { type: "bbo", exchange, symbol, timestamp, localTimestamp: receivedAt, bidPrice, bidAmount, askPrice, askAmount };
}

/** Fields a venue's message does not carry are undefined (stored as null). */
export function fundingEvent(
  exchange: ExchangeId,
  symbol: string,
  timestamp: number,
  receivedAt: number,
  markPrice: number | undefined,
  indexPrice: number | undefined,
  fundingRate: number | undefined,
  nextFundingTime: number | undefined,
  currentFundingRate: number | undefined,
): Funding {
  return {
    type: "funding",
    exchange,
    symbol,
    timestamp,
    localTimestamp: receivedAt,
    markPrice,
    indexPrice,
    fundingRate,
    nextFundingTime,
    currentFundingRate,
  };
}

/** A book row; `bids`/`asks` are flat [price, amount, ...] arrays, which the event takes over. */
export function bookChangeEvent(
  exchange: ExchangeId,
  symbol: string,
  sizing: Sizing,
  isSnapshot: boolean,
  sequence: number,
  timestamp: number,
  receivedAt: number,
  bids: number[],
  asks: number[],
): BookChange {
  return {
    type: "book_change",
    exchange,
    symbol,
    timestamp,
    localTimestamp: receivedAt,
    isSnapshot,
    sequence,
    bids,
    asks,
    amountUnit: sizing.amountUnit,
    contractValue: sizing.contractValue,
  };
}

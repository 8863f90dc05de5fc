/**
 * Deribit normalizers: pure functions from a notification's `data` (or one trade of it), its receive time
 * and the instrument to normalized events, undefined when unreadable (the connector counts a parse
 * error). They run without a connection, so documented or recorded frames replay through them
 * (tests/fixtures/deribit.jsonl). Channels: https://docs.deribit.com/subscriptions/trades/tradesinstrument_nameinterval,
 * .../orderbook/bookinstrument_nameinterval, .../ticker/quoteinstrument_name, .../ticker/tickerinstrument_nameinterval.
 */
import { msToMicros } from "../core/clock.ts";
import type { BookChange, BookTicker, Funding, Liquidation, MarketEvent, Sizing, TakerSide, Trade } from "../core/events.ts";
import { flattenLevels } from "./deribit-scan.ts";
import { bboSide, jsonFinite } from "./json-scan.ts";
import { bboEvent, bookChangeEvent, executionEvent, fundingEvent } from "./kit/event-builders.ts";
import type { InstrumentContext } from "./kit/normalize.ts";

const EXCHANGE = "DERIBIT";

export interface DeribitInstrumentContext extends InstrumentContext {
  /** From the instrument name (deribitSizing): USD for inverse contracts, the base coin otherwise. */
  readonly sizing: Sizing;
}

type Item = Record<string, unknown>;

/** One trade of a `trades` notification. */
export function normalizeTrade(item: Item | null | undefined, receivedAt: number, instrument: DeribitInstrumentContext): Trade | undefined {
  const price = jsonFinite(item?.price);
  const amount = jsonFinite(item?.amount);
  const time = jsonFinite(item?.timestamp);
  const id = item?.trade_id;
  if (!(price > 0) || !(amount > 0) || Number.isNaN(time) || (typeof id !== "string" && typeof id !== "number")) return undefined;
  const side = takerSide(item!.direction);
  return executionEvent("trade", EXCHANGE, instrument.symbol, instrument.sizing, msToMicros(time), receivedAt, String(id), side, price, amount);
}

/**
 * The liquidation orders a trade stands for, from its `liquidation` field: "T" the taker was liquidated
 * (its order side is the trade direction), "M" the maker was (the opposite side), "MT" both, so two
 * liquidation orders; none when the field is absent.
 */
export function liquidationsOf(trade: Trade, liquidation: unknown): Liquidation[] {
  if (typeof liquidation !== "string") return [];
  const out: Liquidation[] = [];
  for (const side of liquidatedSides(liquidation, trade.side)) {
    out.push(executionEvent("liquidation", trade.exchange, trade.symbol, trade, trade.timestamp, trade.localTimestamp, trade.id, side, trade.price, trade.amount));
  }
  return out;
}

/** quote: a side without orders is sent as null, stored as price 0, amount 0. */
export function normalizeQuote(data: unknown, receivedAt: number, instrument: DeribitInstrumentContext): BookTicker | undefined {
  const quote = data as Item | null;
  const time = jsonFinite(quote?.timestamp);
  const bidPrice = quoteSide(quote?.best_bid_price);
  const bidAmount = quoteSide(quote?.best_bid_amount);
  const askPrice = quoteSide(quote?.best_ask_price);
  const askAmount = quoteSide(quote?.best_ask_amount);
  if (Number.isNaN(time) || !bboSide(bidPrice, bidAmount) || !bboSide(askPrice, askAmount)) return undefined;
  return bboEvent(EXCHANGE, instrument.symbol, msToMicros(time), receivedAt, bidPrice, bidAmount, askPrice, askAmount);
}

/**
 * ticker → funding. The 8-hour rate is on the scale other venues report; funding accrues continuously, so
 * there is no next funding time (https://support.deribit.com/hc/en-us/articles/25944756807069-Inverse-perpetual).
 * A field that is there must be a number (a price above 0): a bad one is no null to store.
 */
export function normalizeTicker(data: unknown, receivedAt: number, instrument: DeribitInstrumentContext): Funding | undefined {
  const ticker = data as Item | null;
  const time = jsonFinite(ticker?.timestamp);
  if (Number.isNaN(time)) return undefined;
  const markPrice = optionalNumber(ticker!.mark_price);
  const indexPrice = optionalNumber(ticker!.index_price);
  const fundingRate = optionalNumber(ticker!.funding_8h);
  const currentFundingRate = optionalNumber(ticker!.current_funding);
  if (
    Number.isNaN(markPrice) || Number.isNaN(indexPrice) || Number.isNaN(fundingRate) || Number.isNaN(currentFundingRate) ||
    (markPrice !== undefined && !(markPrice > 0)) || (indexPrice !== undefined && !(indexPrice > 0))
  ) {
    return undefined;
  }
  return fundingEvent(EXCHANGE, instrument.symbol, msToMicros(time), receivedAt, markPrice, indexPrice, fundingRate, undefined, currentFundingRate);
}

/** A book row of the instrument: `time` in Deribit milliseconds, levels already flattened. */
export function bookChange(
  instrument: DeribitInstrumentContext,
  isSnapshot: boolean,
  changeId: number,
  time: number,
  receivedAt: number,
  bids: number[],
  asks: number[],
): BookChange {
  return bookChangeEvent(EXCHANGE, instrument.symbol, instrument.sizing, isSnapshot, changeId, msToMicros(time), receivedAt, bids, asks);
}

/**
 * One subscription notification (`{"method":"subscription","params":{"channel":..,"data":..}}`) to the
 * events it stands for on its own: trades and the liquidations they carry, a quote, a ticker, or the row
 * a book notification becomes (a snapshot when it has no prev_change_id; whether it applies is the book's
 * sequence check). Unreadable parts are left out. The replay and fixture entry point.
 */
export function normalizeFrame(text: string, receivedAt: number, instrument: DeribitInstrumentContext): MarketEvent[] {
  const params = (JSON.parse(text) as { params?: { channel?: unknown; data?: unknown } }).params;
  const channel = params?.channel;
  if (typeof channel !== "string") return [];
  const kind = channel.split(".")[0];
  const data = params!.data;
  const out: MarketEvent[] = [];
  switch (kind) {
    case "trades":
      if (Array.isArray(data)) {
        for (const item of data as Item[]) {
          const trade = normalizeTrade(item, receivedAt, instrument);
          if (trade) out.push(trade, ...liquidationsOf(trade, item.liquidation));
        }
      }
      break;
    case "quote": {
      const event = normalizeQuote(data, receivedAt, instrument);
      if (event) out.push(event);
      break;
    }
    case "ticker": {
      const event = normalizeTicker(data, receivedAt, instrument);
      if (event) out.push(event);
      break;
    }
    case "book": {
      const book = data as { change_id?: unknown; prev_change_id?: unknown; timestamp?: unknown; bids?: unknown; asks?: unknown } | null;
      const bids: number[] = [];
      const asks: number[] = [];
      const time = jsonFinite(book?.timestamp);
      if (typeof book?.change_id === "number" && !Number.isNaN(time) && flattenLevels(book.bids, bids) && flattenLevels(book.asks, asks)) {
        out.push(bookChange(instrument, book.prev_change_id === undefined, book.change_id, time, receivedAt, bids, asks));
      }
      break;
    }
  }
  return out;
}

function takerSide(direction: unknown): TakerSide {
  return direction === "buy" ? "buy" : direction === "sell" ? "sell" : "unknown";
}

const OPPOSITE: Readonly<Record<TakerSide, TakerSide>> = { buy: "sell", sell: "buy", unknown: "unknown" };

function liquidatedSides(liquidation: string, takerSide: TakerSide): TakerSide[] {
  const sides: TakerSide[] = [];
  if (liquidation.includes("T")) sides.push(takerSide);
  if (liquidation.includes("M")) sides.push(OPPOSITE[takerSide]);
  return sides;
}

/**
 * A field Deribit may leave out or send as null: undefined then; NaN when it is there but is not a finite
 * number (the caller refuses the message).
 */
function optionalNumber(value: unknown): number | undefined {
  if (value === undefined || value === null) return undefined;
  return jsonFinite(value);
}

/** One side of a quote: null (no orders) is 0, anything else must be a finite number. */
function quoteSide(value: unknown): number {
  return value === undefined || value === null ? 0 : jsonFinite(value);
}

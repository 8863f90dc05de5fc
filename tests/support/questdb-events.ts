/**
 * Events for the QuestDB sink tests: plain factories for each stream, and a seeded random generator
 * that mixes in hostile strings (ILP separators, quotes, backslashes, newlines, unicode, lone
 * surrogates), non-finite and extreme numbers and edge-case timestamps.
 */
import {
  BASE_SIZING,
  type BookChange,
  type BookTicker,
  type ExchangeId,
  type Funding,
  type Gap,
  type Liquidation,
  type MarketEvent,
  type Trade,
} from "../../src/core/events.ts";
import { seededRandom } from "./random.ts";

export const T0 = 1_700_000_000_000_000; // µs

export function trade(n: number, overrides: Partial<Trade> = {}): Trade {
  return {
    type: "trade",
    exchange: "BINANCE_FUTURES",
    symbol: "BTCUSDT",
    timestamp: T0 + n,
    localTimestamp: T0 + n + 500,
    id: `t${n}`,
    side: n % 2 === 0 ? "buy" : "sell",
    price: 50_000 + n / 10,
    amount: 0.001 * (n + 1),
    ...BASE_SIZING,
    ...overrides,
  };
}

export function book(n: number, overrides: Partial<BookChange> = {}): BookChange {
  return {
    type: "book_change",
    exchange: "OKX_SWAP",
    symbol: "BTC-USDT-SWAP",
    timestamp: T0 + n,
    localTimestamp: T0 + n + 700,
    isSnapshot: false,
    sequence: 1000 + n,
    bids: [100.5, 2, 100.25, 0],
    asks: [101, 3.5],
    amountUnit: "base",
    contractValue: 0.01,
    ...overrides,
  };
}

export function bbo(n: number, overrides: Partial<BookTicker> = {}): BookTicker {
  return {
    type: "bbo",
    exchange: "BINANCE_FUTURES",
    symbol: "ETHUSDT",
    timestamp: T0 + n,
    localTimestamp: T0 + n + 300,
    bidPrice: 3000.1,
    bidAmount: 5,
    askPrice: 3000.2,
    askAmount: 7.25,
    ...overrides,
  };
}

export function funding(n: number, overrides: Partial<Funding> = {}): Funding {
  return {
    type: "funding",
    exchange: "DERIBIT",
    symbol: "BTC-PERPETUAL",
    timestamp: T0 + n,
    localTimestamp: T0 + n + 900,
    markPrice: 50_001.5,
    indexPrice: 50_000.25,
    fundingRate: 0.0001,
    nextFundingTime: T0 + 8 * 3600 * 1_000_000,
    currentFundingRate: 0.0000125,
    ...overrides,
  };
}

export function liquidation(n: number, overrides: Partial<Liquidation> = {}): Liquidation {
  return {
    type: "liquidation",
    exchange: "OKX_SWAP",
    symbol: "ETH-USDT-SWAP",
    timestamp: T0 + n,
    localTimestamp: T0 + n + 400,
    id: "",
    side: "sell",
    price: 3000,
    amount: 12,
    amountUnit: "base",
    contractValue: 0.1,
    ...overrides,
  };
}

export function gap(n: number, overrides: Partial<Gap> = {}): Gap {
  return {
    type: "gap",
    exchange: "OKX_SWAP",
    symbol: "BTC-USDT-SWAP",
    timestamp: T0 + n,
    localTimestamp: T0 + n,
    stream: "L2",
    reason: "disconnect",
    detail: "socket closed (1006)",
    ...overrides,
  };
}

export { seededRandom };

export const HOSTILE_STRINGS: readonly string[] = [
  "",
  " ",
  "a b",
  "a,b",
  "a=b",
  'say "hi"',
  "back\\slash",
  "trailing\\",
  "line\nbreak",
  "carriage\rreturn",
  "\r\n",
  "tab\there",
  "nul\u0000byte",
  "=,\\ \"\n",
  "ünïcödé",
  "日本語",
  "emoji 😀 pair",
  "lone \ud800 high",
  "lone \udc00 low",
  "swapped \udc00\ud800",
  "\u007f del",
  "\ufeffbom",
  "x".repeat(300),
];

const EXCHANGE_IDS: readonly ExchangeId[] = ["BINANCE_FUTURES", "OKX_SWAP", "OKX_SPOT", "DERIBIT"];
const SPECIAL_NUMBERS: readonly number[] = [
  Number.NaN,
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
  0,
  -0,
  1e-7,
  5e-324,
  1.7976931348623157e308,
  1e21,
  123456789012345680000,
  999999999999999.9,
  1e15,
  -1e15,
  0.1 + 0.2,
  -42.5,
  2 ** 53,
];

export class RandomEvents {
  private readonly random: () => number;
  constructor(seed: number) {
    this.random = seededRandom(seed);
  }

  private pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.random() * items.length)]!;
  }

  private chance(p: number): boolean {
    return this.random() < p;
  }

  private text(): string {
    if (this.chance(0.5)) return this.pick(HOSTILE_STRINGS);
    let out = "";
    const length = Math.floor(this.random() * 12);
    for (let i = 0; i < length; i++) {
      const roll = this.random();
      out += roll < 0.7 ? String.fromCharCode(32 + Math.floor(this.random() * 95)) : String.fromCharCode(Math.floor(this.random() * 0xffff));
    }
    return out;
  }

  private symbolText(): string {
    return this.chance(0.7) ? this.pick(["BTCUSDT", "ETH-USDT-SWAP", "BTC-PERPETUAL"]) : this.text();
  }

  private number(): number {
    if (this.chance(0.15)) return this.pick(SPECIAL_NUMBERS);
    if (this.chance(0.3)) return Math.floor(this.random() * 1e6);
    return (this.random() - 0.2) * 10 ** Math.floor(this.random() * 12 - 4);
  }

  private micros(): number {
    if (this.chance(0.05)) return this.pick([0, 1, 999, -1000, 2 ** 53 - 1]);
    return T0 + Math.floor(this.random() * 1e12);
  }

  private sizing(): { amountUnit: "base" | "quote"; contractValue: number } {
    return { amountUnit: this.chance(0.5) ? "base" : "quote", contractValue: this.chance(0.5) ? 1 : this.number() };
  }

  next(): MarketEvent {
    const envelope = {
      exchange: this.pick(EXCHANGE_IDS),
      symbol: this.symbolText(),
      timestamp: this.micros(),
      localTimestamp: this.micros(),
    };
    switch (Math.floor(this.random() * 6)) {
      case 0:
        return { type: "trade", ...envelope, ...this.sizing(), id: this.text(), side: this.pick(["buy", "sell", "unknown"] as const), price: this.number(), amount: this.number() };
      case 1: {
        const bids: number[] = [];
        const asks: number[] = [];
        const levels = Math.floor(this.random() * 6);
        for (let i = 0; i < levels; i++) bids.push(this.number(), this.number());
        for (let i = 0; i < Math.floor(this.random() * 6); i++) asks.push(this.number(), this.number());
        const sequence = this.chance(0.1) ? this.pick([Number.NaN, 1.5, 2 ** 60, -3]) : Math.floor(this.random() * 1e12);
        return { type: "book_change", ...envelope, ...this.sizing(), isSnapshot: this.chance(0.3), sequence, bids, asks };
      }
      case 2:
        return { type: "bbo", ...envelope, bidPrice: this.number(), bidAmount: this.number(), askPrice: this.number(), askAmount: this.number() };
      case 3: {
        const maybe = (): number | undefined => (this.chance(0.2) ? undefined : this.number());
        const next = this.chance(0.2) ? undefined : this.chance(0.1) ? 1.5 : this.micros();
        return { type: "funding", ...envelope, markPrice: maybe(), indexPrice: maybe(), fundingRate: maybe(), nextFundingTime: next, currentFundingRate: maybe() };
      }
      case 4:
        return { type: "liquidation", ...envelope, ...this.sizing(), id: this.text(), side: this.pick(["buy", "sell"] as const), price: this.number(), amount: this.number() };
      default:
        return {
          type: "gap",
          ...envelope,
          stream: this.pick(["TRADES", "L2", "BBO", "FUNDING", "LIQUIDATIONS"] as const),
          reason: this.pick(["disconnect", "stale", "sequence", "overflow"] as const),
          detail: this.text(),
        };
    }
  }
}

/**
 * OKX instruments: the syntactic rule for instruments as written (`BTCUSDT`, `BTC-USDT-SWAP`), and the
 * instrument list (REST, fetched once at start) that resolves common forms to native ids whatever the
 * quote currency and gives swap contract values.
 */
import type { AmountUnit, ExchangeId, Sizing } from "../core/events.ts";
import type { InstrumentResult } from "../core/connector.ts";
import type { Subscription } from "../core/subscriptions.ts";

/** Quote currencies tried, longest first, for the syntactic guess `BTCUSDT` → `BTC-USDT`. */
const COMMON_QUOTES = ["USDT", "USDC", "USDG", "USD", "EUR", "TRY", "BRL", "AUD", "SGD", "AED", "BTC", "ETH", "OKB"];

export type InstType = "SWAP" | "SPOT";

export function nativeInstrument(exchange: ExchangeId, instType: InstType, symbol: string): InstrumentResult {
  const accepted =
    instType === "SWAP"
      ? "expected e.g. BTCUSDT or BTC-USDT-SWAP (a perpetual swap)"
      : "expected e.g. BTCUSDT or BTC-USDT (a spot pair)";
  const parts = symbol.replaceAll("/", "-").split("-");
  if (parts.some((part) => !/^[A-Z0-9]+$/.test(part))) {
    return { error: `invalid ${exchange} instrument '${symbol}'; ${accepted}` };
  }
  if (parts.length === 1) return { native: guessNative(instType, symbol) };
  if (instType === "SWAP" && parts.length === 2) return { native: `${parts[0]}-${parts[1]}-SWAP` };
  if (instType === "SWAP" && parts.length === 3 && parts[2] === "SWAP") return { native: parts.join("-") };
  if (instType === "SPOT" && parts.length === 2) return { native: parts.join("-") };
  return { error: `invalid ${exchange} instrument '${symbol}'; ${accepted}` };
}

/** Best syntactic guess; the instrument list decides at start (any quote currency works there). */
function guessNative(instType: InstType, compact: string): string {
  const quote = COMMON_QUOTES.find((q) => compact.length > q.length && compact.endsWith(q));
  if (!quote) return compact;
  const pair = `${compact.slice(0, -quote.length)}-${quote}`;
  return instType === "SWAP" ? `${pair}-SWAP` : pair;
}

export interface Instrument {
  readonly instId: string;
  readonly state: string;
  readonly sizing: Sizing;
}

export interface RawInstrument {
  instId?: unknown;
  instType?: unknown;
  state?: unknown;
  ctVal?: unknown;
  ctMult?: unknown;
  ctValCcy?: unknown;
  ctType?: unknown;
  baseCcy?: unknown;
}

/**
 * Sizing from the instrument list (https://www.okx.com/docs-v5/en/#public-data-rest-api-get-instruments):
 * spot sizes are base currency; swap sizes are contracts of ctVal × ctMult units of ctValCcy, which is
 * the base currency for linear swaps and the quote (USD) for inverse ones.
 */
export function toInstrument(raw: RawInstrument, instType: InstType): Instrument | undefined {
  if (typeof raw.instId !== "string") return undefined;
  const state = typeof raw.state === "string" ? raw.state : "";
  if (instType === "SPOT") return { instId: raw.instId, state, sizing: { amountUnit: "base", contractValue: 1 } };
  const ctVal = Number(raw.ctVal);
  const ctMult = raw.ctMult === "" || raw.ctMult === undefined ? 1 : Number(raw.ctMult);
  if (!(ctVal > 0) || !(ctMult > 0)) return undefined;
  const base = raw.instId.split("-")[0];
  const valuedInQuote =
    raw.ctType === "inverse" ||
    (raw.ctType !== "linear" && typeof raw.ctValCcy === "string" && raw.ctValCcy !== "" && raw.ctValCcy !== base);
  const amountUnit: AmountUnit = valuedInQuote ? "quote" : "base";
  return { instId: raw.instId, state, sizing: { amountUnit, contractValue: ctVal * ctMult } };
}

export class InstrumentList {
  private readonly byId = new Map<string, Instrument>();
  private readonly byCompact = new Map<string, Instrument[]>();

  constructor(instruments: readonly Instrument[], private readonly instType: InstType) {
    for (const instrument of instruments) {
      this.byId.set(instrument.instId, instrument);
      const key = this.compact(instrument.instId);
      const list = this.byCompact.get(key) ?? [];
      list.push(instrument);
      this.byCompact.set(key, list);
    }
  }

  get size(): number {
    return this.byId.size;
  }

  private compact(instId: string): string {
    return (this.instType === "SWAP" ? instId.replace(/-SWAP$/, "") : instId).replaceAll("-", "");
  }

  resolve(subscription: Subscription): Instrument | string {
    const exact = this.byId.get(subscription.instrument);
    if (exact) return exact;
    const candidates = subscription.symbol.includes("-") || subscription.symbol.includes("/")
      ? []
      : (this.byCompact.get(this.compact(subscription.symbol)) ?? []);
    if (candidates.length === 1) return candidates[0]!;
    if (candidates.length > 1) {
      return `instrument '${subscription.symbol}' is ambiguous on OKX (${candidates.map((c) => c.instId).join(", ")}); give the native id`;
    }
    return `unknown instrument '${subscription.symbol}' (${subscription.instrument}): not in OKX's ${this.instType} instrument list (${this.size} instruments)`;
  }
}


/**
 * What a benchmark run subscribes to and how its traffic is mixed.
 *
 * - `depth`: Binance USD-M diff depth only (about 20 levels per frame) on 50 symbols: the frame the QuestDB
 *   target is stated for.
 * - `mixed`: 200 symbols over three venues, the shape of a real deployment: Binance depth and aggTrade on
 *   80 symbols, OKX swap books on 60, Deribit books on 60. Messages are drawn 40 % Binance depth, 20 %
 *   Binance aggTrade, 20 % OKX books, 20 % Deribit books.
 * - `memory`: 50 subscriptions (Binance 10 depth + 10 trades, OKX 15 books, Deribit 15 books), for the RSS
 *   target.
 * - `wide`: 1,000 subscriptions with the message mix of `mixed` (Binance depth on 80 symbols, aggTrade on
 *   290, OKX books on 315, Deribit books on 315), for the steady cost of a wildcard deployment: at the same
 *   total rate most streams carry one or two messages a second. Binance depth stays at 80 books: each needs
 *   a REST snapshot, and xtrader paces those within Binance's request-weight budget (minutes for 290).
 * Symbol counts shrink proportionally with `scale` (the smoke test uses a tiny one).
 */
import {
  BinanceDepthStream,
  BinanceTradeStream,
  buildPools,
  DeribitBookStream,
  OkxBooksStream,
  type MarketStream,
  type Pools,
  type StreamKind,
} from "./market.ts";

export const WORKLOAD_NAMES = ["depth", "mixed", "memory", "wide"] as const;
export type WorkloadName = (typeof WORKLOAD_NAMES)[number];

export interface Workload {
  readonly name: WorkloadName;
  readonly streams: readonly MarketStream[];
  /** Share of messages per kind (sums to 1). */
  readonly weights: Readonly<Partial<Record<StreamKind, number>>>;
  readonly symbols: number;
  /** The --subscriptions value for xtrader. */
  readonly subscriptions: string;
  readonly pools: Pools;
}

const base = (i: number) => `X${String(i).padStart(3, "0")}`;

export function buildWorkload(name: WorkloadName, scale = 1, seed = 7): Workload {
  const pools = buildPools(seed);
  const n = (count: number) => Math.max(1, Math.round(count * scale));
  const streams: MarketStream[] = [];
  let weights: Partial<Record<StreamKind, number>>;
  let symbols: number;
  switch (name) {
    case "depth": {
      symbols = n(50);
      for (let i = 0; i < symbols; i++) streams.push(new BinanceDepthStream(`${base(i)}USDT`, pools));
      weights = { "binance-depth": 1 };
      break;
    }
    case "mixed":
    case "memory":
    case "wide": {
      const counts = { mixed: [n(80), n(60), n(60), n(80)], memory: [n(10), n(15), n(15), n(10)], wide: [n(80), n(315), n(315), n(290)] };
      const [binance, okx, deribit, trades] = counts[name];
      for (let i = 0; i < binance; i++) streams.push(new BinanceDepthStream(`${base(i)}USDT`, pools));
      for (let i = 0; i < trades; i++) streams.push(new BinanceTradeStream(`${base(i)}USDT`, pools));
      for (let i = 0; i < okx; i++) streams.push(new OkxBooksStream(`${base(i)}-USDT-SWAP`, pools));
      for (let i = 0; i < deribit; i++) streams.push(new DeribitBookStream(`${base(i)}-PERPETUAL`, pools));
      symbols = Math.max(binance, trades) + okx + deribit;
      weights = { "binance-depth": 0.4, "binance-trade": 0.2, "okx-books": 0.2, "deribit-book": 0.2 };
      break;
    }
  }
  return {
    name,
    streams,
    weights,
    symbols,
    subscriptions: streams.map((stream) => stream.subscription).join(","),
    pools,
  };
}

/**
 * Picks streams in a seeded order that follows the weights: each message is a kind drawn by weight, then
 * one of that kind's streams at random.
 */
export function streamPicker(workload: Workload): () => MarketStream {
  const byKind = new Map<StreamKind, MarketStream[]>();
  for (const stream of workload.streams) {
    const list = byKind.get(stream.kind) ?? [];
    list.push(stream);
    byKind.set(stream.kind, list);
  }
  const kinds = [...byKind.keys()];
  const cumulative: number[] = [];
  let total = 0;
  for (const kind of kinds) {
    total += workload.weights[kind] ?? 0;
    cumulative.push(total);
  }
  const random = workload.pools.random;
  return () => {
    const draw = random() * total;
    let k = 0;
    while (k < kinds.length - 1 && draw >= cumulative[k]!) k++;
    const list = byKind.get(kinds[k]!)!;
    return list[(random() * list.length) | 0]!;
  };
}

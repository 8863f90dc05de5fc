/**
 * Realistic, seeded exchange frames for the benchmarks, in each venue's own wire shape:
 * - Binance USD-M diff depth (`<symbol>@depth@100ms`, combined payload, U/u/pu chain, ~20 levels) and
 *   aggTrade (`<symbol>@aggTrade`);
 * - OKX `books` updates (seqId/prevSeqId chain, checksum 0 as OKX now sends it);
 * - Deribit `book.<instrument>.100ms` changes (change_id/prev_change_id chain, [action, price, amount]).
 *
 * Level lists are drawn from pools built once with a seeded generator, so building a frame is a few string
 * concatenations (cheap enough for the load generator to outrun any client). Bids always sit below the
 * mid price and asks above it, so no sequence of updates can cross a book. Every frame knows how many rows
 * it becomes (one per level, one per trade), which lets the harness check that every row was stored.
 */

import { seededRandom } from "../../tests/support/random.ts";

export { seededRandom };

export type StreamKind = "binance-depth" | "binance-trade" | "okx-books" | "deribit-book";

export interface Frame {
  readonly text: string;
  /** Rows the frame becomes in a sink. */
  readonly rows: number;
}

/** Ladder of one venue: integer ticks around the mid price, printed the venue's way. */
interface Ladder {
  readonly midTicks: number;
  readonly tick: number;
  readonly priceDecimals: number;
}

const LADDERS: Readonly<Record<"binance" | "okx" | "deribit", Ladder>> = {
  binance: { midTicks: 650_000, tick: 0.1, priceDecimals: 2 },
  okx: { midTicks: 650_000, tick: 0.1, priceDecimals: 1 },
  deribit: { midTicks: 130_000, tick: 0.5, priceDecimals: 1 },
};

const price = (ladder: Ladder, ticks: number) => (ticks * ladder.tick).toFixed(ladder.priceDecimals);

/** One side's level list as JSON text, and how many levels it holds. */
interface Side {
  readonly json: string;
  readonly count: number;
}

interface LevelPool {
  readonly bids: Side[];
  readonly asks: Side[];
}

const POOL_SIZE = 512;

/** Levels within `depth` ticks of the top; about one in seven removes its level (amount 0). */
function buildPool(random: () => number, depth: number, minLevels: number, maxLevels: number, level: (ticks: number, remove: boolean) => string, ladder: Ladder): LevelPool {
  const side = (direction: -1 | 1): Side => {
    const count = minLevels + Math.floor(random() * (maxLevels - minLevels + 1));
    const parts: string[] = [];
    const used = new Set<number>();
    while (parts.length < count) {
      // Skewed to the top of book, where most updates happen.
      const distance = 1 + Math.floor(random() * random() * depth);
      if (used.has(distance)) continue;
      used.add(distance);
      parts.push(level(ladder.midTicks + direction * distance, random() < 0.14));
    }
    return { json: `[${parts.join(",")}]`, count };
  };
  const bids: Side[] = [];
  const asks: Side[] = [];
  for (let i = 0; i < POOL_SIZE; i++) {
    bids.push(side(-1));
    asks.push(side(1));
  }
  return { bids, asks };
}

export interface Pools {
  readonly binance: LevelPool;
  readonly okx: LevelPool;
  readonly deribit: LevelPool;
  readonly random: () => number;
}

export function buildPools(seed = 7): Pools {
  const random = seededRandom(seed);
  const binance = LADDERS.binance;
  const okx = LADDERS.okx;
  const deribit = LADDERS.deribit;
  return {
    random,
    // Binance futures depth@100ms: about 20 changed levels per event on a liquid symbol.
    binance: buildPool(random, 200, 6, 14, (ticks, remove) => `["${price(binance, ticks)}","${remove ? "0.000" : (0.001 + random() * 9).toFixed(3)}"]`, binance),
    // OKX books: [price, size in contracts, "0" (deprecated), order count].
    okx: buildPool(random, 200, 5, 15, (ticks, remove) => `["${price(okx, ticks)}","${remove ? "0" : 1 + Math.floor(random() * 900)}","0","${remove ? 0 : 1 + Math.floor(random() * 20)}"]`, okx),
    // Deribit book changes: [action, price, amount] as numbers; amounts of inverse perpetuals are USD.
    deribit: buildPool(random, 200, 5, 15, (ticks, remove) => `["${remove ? "delete" : random() < 0.5 ? "change" : "new"}",${price(deribit, ticks)},${remove ? 0 : 10 * (1 + Math.floor(random() * 5000))}]`, deribit),
  };
}

/** Full-book level lists for snapshots: `levels` per side at consecutive ticks from the top. */
function snapshotSide(ladder: Ladder, direction: -1 | 1, levels: number, level: (priceText: string, i: number) => string): string {
  const parts: string[] = [];
  for (let i = 1; i <= levels; i++) parts.push(level(price(ladder, ladder.midTicks + direction * i), i));
  return `[${parts.join(",")}]`;
}

/** One subscribed stream of the fake market: its identity, its sequence counters and its frame builder. */
export abstract class MarketStream {
  /** The key the load server routes by (Binance stream name, OKX `books:instId`, Deribit channel). */
  abstract readonly key: string;
  abstract readonly kind: StreamKind;
  /** The subscription token xtrader is given for it, e.g. `L2:BINANCE_FUTURES@X001USDT`. */
  abstract readonly subscription: string;
  /** Builds the next frame; `nowMs` is the exchange event time it carries. */
  abstract next(nowMs: number): Frame;
  /** For peer comparison: the same event in the form tardis-node's mappers expect (default: the frame). */
  peerText(frame: Frame): string {
    return frame.text;
  }
}

export class BinanceDepthStream extends MarketStream {
  readonly kind = "binance-depth";
  readonly key: string;
  readonly subscription: string;
  private readonly prefix: string;
  /** `U` of the next event. Update ids jump by a few per event, like the venue's. */
  nextFirstId = 1_000_000;
  private lastFinalId = 999_999;

  constructor(
    readonly symbol: string,
    private readonly pools: Pools,
  ) {
    super();
    this.key = `${symbol.toLowerCase()}@depth@100ms`;
    this.subscription = `L2:BINANCE_FUTURES@${symbol}`;
    this.prefix = `{"stream":"${this.key}","data":{"e":"depthUpdate","E":`;
  }

  next(nowMs: number): Frame {
    const { bids, asks } = this.pools.binance;
    const random = this.pools.random;
    const b = bids[(random() * POOL_SIZE) | 0]!;
    const a = asks[(random() * POOL_SIZE) | 0]!;
    const first = this.nextFirstId;
    const final = first + 2 + ((random() * 6) | 0);
    const text = `${this.prefix}${nowMs},"T":${nowMs - 1},"s":"${this.symbol}","U":${first},"u":${final},"pu":${this.lastFinalId},"b":${b.json},"a":${a.json}}}`;
    this.lastFinalId = final;
    this.nextFirstId = final + 1 + ((random() * 3) | 0);
    return { text, rows: b.count + a.count };
  }

  /**
   * REST /fapi/v1/depth body. `lastUpdateId` is the next event's `U`, so that event straddles the snapshot
   * (U <= lastUpdateId <= u) and the book goes live on it, as Binance documents.
   */
  snapshot(levels: number, nowMs: number): { body: string; rows: number } {
    const ladder = LADDERS.binance;
    const level = (priceText: string, i: number) => `["${priceText}","${(0.5 + (i % 17) * 0.25).toFixed(3)}"]`;
    const body = `{"lastUpdateId":${this.nextFirstId},"E":${nowMs},"T":${nowMs - 1},"bids":${snapshotSide(ladder, -1, levels, level)},"asks":${snapshotSide(ladder, 1, levels, level)}}`;
    return { body, rows: 2 * levels };
  }

  /** tardis-node's realtime feed injects the REST snapshot as a `<symbol>@depthSnapshot` message. */
  peerSnapshot(levels: number, nowMs: number): string {
    return `{"stream":"${this.symbol.toLowerCase()}@depthSnapshot","generated":true,"data":${this.snapshot(levels, nowMs).body}}`;
  }
}

export class BinanceTradeStream extends MarketStream {
  readonly kind = "binance-trade";
  readonly key: string;
  readonly subscription: string;
  private nextId = 5_000_000;
  private nextTradeId = 90_000_000;
  private readonly prefix: string;

  constructor(
    readonly symbol: string,
    private readonly pools: Pools,
  ) {
    super();
    this.key = `${symbol.toLowerCase()}@aggTrade`;
    this.subscription = `TRADES:BINANCE_FUTURES@${symbol}`;
    this.prefix = `{"stream":"${this.key}","data":{"e":"aggTrade","E":`;
  }

  next(nowMs: number): Frame {
    const random = this.pools.random;
    const id = this.nextId++;
    const first = this.nextTradeId;
    const last = first + ((random() * 3) | 0);
    this.nextTradeId = last + 1;
    const p = price(LADDERS.binance, LADDERS.binance.midTicks + ((random() * 20) | 0) - 10);
    const q = (0.001 + random() * 2).toFixed(3);
    const m = random() < 0.5;
    // Field order as documented (https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams/Aggregate-Trade-Streams).
    const text = `${this.prefix}${nowMs},"s":"${this.symbol}","a":${id},"p":"${p}","q":"${q}","f":${first},"l":${last},"T":${nowMs - 1},"m":${m}}}`;
    return { text, rows: 1 };
  }

  /** tardis-node maps Binance futures trades from the `@trade` stream: the same trade in that shape. */
  override peerText(frame: Frame): string {
    const data = JSON.parse(frame.text).data as Record<string, unknown>;
    return JSON.stringify({
      stream: `${this.symbol.toLowerCase()}@trade`,
      data: { e: "trade", E: data.E, T: data.T, s: data.s, t: data.a, p: data.p, q: data.q, X: "MARKET", m: data.m },
    });
  }
}

export class OkxBooksStream extends MarketStream {
  readonly kind = "okx-books";
  readonly key: string;
  readonly subscription: string;
  seqId = 10_000;
  private readonly prefix: string;

  constructor(
    readonly instId: string,
    private readonly pools: Pools,
  ) {
    super();
    this.key = `books:${instId}`;
    this.subscription = `L2:OKX_SWAP@${instId}`;
    this.prefix = `{"arg":{"channel":"books","instId":"${instId}"},"action":"update","data":[{"asks":`;
  }

  next(nowMs: number): Frame {
    const { bids, asks } = this.pools.okx;
    const random = this.pools.random;
    const b = bids[(random() * POOL_SIZE) | 0]!;
    const a = asks[(random() * POOL_SIZE) | 0]!;
    const prev = this.seqId;
    this.seqId += 1 + ((random() * 40) | 0);
    const text = `${this.prefix}${a.json},"bids":${b.json},"ts":"${nowMs}","checksum":0,"prevSeqId":${prev},"seqId":${this.seqId}}]}`;
    return { text, rows: b.count + a.count };
  }

  /** The initial WebSocket snapshot (prevSeqId -1), 400 levels per side like OKX's `books`. */
  snapshot(levels: number, nowMs: number): Frame {
    const ladder = LADDERS.okx;
    const level = (priceText: string, i: number) => `["${priceText}","${1 + (i % 37) * 7}","0","${1 + (i % 5)}"]`;
    const text = `{"arg":{"channel":"books","instId":"${this.instId}"},"action":"snapshot","data":[{"asks":${snapshotSide(ladder, 1, levels, level)},"bids":${snapshotSide(ladder, -1, levels, level)},"ts":"${nowMs}","checksum":0,"prevSeqId":-1,"seqId":${this.seqId}}]}`;
    return { text, rows: 2 * levels };
  }
}

export class DeribitBookStream extends MarketStream {
  readonly kind = "deribit-book";
  readonly key: string;
  readonly subscription: string;
  changeId = 70_000_000;
  private readonly prefix: string;

  constructor(
    readonly instrument: string,
    private readonly pools: Pools,
  ) {
    super();
    // Without credentials xtrader uses the public 100 ms book channel.
    this.key = `book.${instrument}.100ms`;
    this.subscription = `L2:DERIBIT@${instrument}`;
    this.prefix = `{"jsonrpc":"2.0","method":"subscription","params":{"channel":"${this.key}","data":{"type":"change","timestamp":`;
  }

  next(nowMs: number): Frame {
    const { bids, asks } = this.pools.deribit;
    const random = this.pools.random;
    const b = bids[(random() * POOL_SIZE) | 0]!;
    const a = asks[(random() * POOL_SIZE) | 0]!;
    const prev = this.changeId;
    this.changeId += 1 + ((random() * 25) | 0);
    const text = `${this.prefix}${nowMs},"prev_change_id":${prev},"instrument_name":"${this.instrument}","change_id":${this.changeId},"bids":${b.json},"asks":${a.json}}}}`;
    return { text, rows: b.count + a.count };
  }

  /** The first notification after subscribing: the full book, without prev_change_id. */
  snapshot(levels: number, nowMs: number): Frame {
    const ladder = LADDERS.deribit;
    const level = (priceText: string, i: number) => `["new",${priceText},${10 * (1 + (i % 41) * 13)}]`;
    const text = `{"jsonrpc":"2.0","method":"subscription","params":{"channel":"${this.key}","data":{"type":"snapshot","timestamp":${nowMs},"instrument_name":"${this.instrument}","change_id":${this.changeId},"bids":${snapshotSide(ladder, -1, levels, level)},"asks":${snapshotSide(ladder, 1, levels, level)}}}}`;
    return { text, rows: 2 * levels };
  }
}

/** Snapshot depths served (per side). */
export const SNAPSHOT_LEVELS = { binance: 200, okx: 400, deribit: 100 } as const;

/**
 * The fake venues of the fault suite, wrapped so that everything they send is also recorded as TRUTH:
 * every trade with how many connections received it, and every order book after every sequence number
 * (update id, seqId, change_id), whether that update was delivered or deliberately lost. The checks in
 * verify.ts compare what xtrader wrote with this record.
 *
 * One `Venues` object runs Binance USD-M (two symbols), Binance spot (one symbol), OKX (two swaps and one
 * spot pair on one fake) and Deribit (two perpetuals), and a seeded market driver that steps every book
 * and sends trades now and then. Fault helpers of the venue fakes are reached through `binance.fake`,
 * `binanceSpot.fake`, `okx.fake`, `deribit.fake`; those
 * that move a book must be followed by `record...()` (the wrappers below do it).
 */
import type { ExchangeId } from "../../src/core/events.ts";
import { FakeBinanceFutures, type BookTickerFrame } from "../support/fake-binance.ts";
import { FakeBinanceSpot } from "../support/fake-binance-spot.ts";
import { FakeDeribit } from "../support/fake-deribit.ts";
import type { FakeConnection, FakeVenue } from "../support/fake-venue.ts";
import { FakeOkx } from "../support/fake-okx.ts";
import { seededRandom } from "../support/random.ts";

export interface SentTrade {
  readonly exchange: ExchangeId;
  readonly symbol: string;
  readonly id: string;
  readonly price: number;
  readonly amount: number;
  /** Connections the trade was written to (0: sent while nobody was subscribed). */
  readonly delivered: number;
  /** Global send order across venues, for cut-offs (trades sent before a barrier). */
  readonly order: number;
}

/** A book as canonical text, best first: comparable between the truth and a replay of the output. */
export function bookKey(bids: ReadonlyArray<readonly [number, number]>, asks: ReadonlyArray<readonly [number, number]>): string {
  return `${bids.map(([p, a]) => `${p}@${a}`).join(",")}|${asks.map(([p, a]) => `${p}@${a}`).join(",")}`;
}

export class Truth {
  readonly trades: SentTrade[] = [];
  /** "EXCHANGE|SYMBOL" → sequence → book after that sequence. */
  readonly books = new Map<string, Map<number, string>>();
  /** Binance bookTicker frames delivered, as "EXCHANGE|T|b|B|a|A" (µs and numbers; spot's carry no time: "-"). */
  readonly binanceTickers = new Set<string>();
  /** Funding messages sent, as the row they must become (fundingKey), with how many connections got them. */
  readonly funding: Array<{ readonly key: string; readonly delivered: number }> = [];
  /** Liquidations sent, as the row they must become (liquidationKey), with how many connections got them. */
  readonly liquidations: Array<{ readonly key: string; readonly delivered: number }> = [];
  private order = 0;

  addTrade(trade: Omit<SentTrade, "order">): void {
    this.trades.push({ ...trade, order: this.order++ });
  }

  /** The send order the next trade will get: trades below it were sent before now. */
  get cutoff(): number {
    return this.order;
  }

  recordBook(exchange: ExchangeId, symbol: string, sequence: number, key: string): void {
    const id = `${exchange}|${symbol}`;
    let bySequence = this.books.get(id);
    if (!bySequence) this.books.set(id, (bySequence = new Map()));
    bySequence.set(sequence, key);
  }
}

/** A funding row as text: what the row of a message must hold (absent fields are null). */
export function fundingKey(row: {
  exchange: unknown;
  symbol: unknown;
  timestamp: unknown;
  mark_price?: unknown;
  index_price?: unknown;
  funding_rate?: unknown;
  next_funding_time?: unknown;
}): string {
  const value = (v: unknown) => (v === undefined || v === null ? "null" : String(Number(v)));
  return [row.exchange, row.symbol, row.timestamp, value(row.mark_price), value(row.index_price), value(row.funding_rate), value(row.next_funding_time)].join("|");
}

/** A liquidation row as text. */
export function liquidationKey(row: { exchange: unknown; symbol: unknown; id: unknown; side: unknown; price: unknown; amount: unknown }): string {
  return [row.exchange, row.symbol, row.id, row.side, Number(row.price), Number(row.amount)].join("|");
}

export const BINANCE_SYMBOLS = ["BTCUSDT", "ETHUSDT"] as const;
export const BINANCE_SPOT_SYMBOLS = ["BTCUSDT"] as const;

/** A bookTicker as its bbo row must read (verify.ts); spot's has no time, so its row's is not checked. */
export function tickerKey(exchange: ExchangeId, frame: BookTickerFrame, timestamp: number | "-" = exchange === "BINANCE_SPOT" ? "-" : frame.T * 1000): string {
  return `${exchange}|${timestamp}|${+frame.b}|${+frame.B}|${+frame.a}|${+frame.A}`;
}

/** The two Binance venues of the suite: which fake, which exchange id, which symbols. */
const BINANCE_FLAVORS = {
  BINANCE_FUTURES: { start: FakeBinanceFutures.start, symbols: BINANCE_SYMBOLS },
  BINANCE_SPOT: { start: FakeBinanceSpot.start, symbols: BINANCE_SPOT_SYMBOLS },
} as const;
export const OKX_SWAPS = ["BTC-USDT-SWAP", "ETH-USDT-SWAP"] as const;
export const OKX_SPOTS = ["BTC-USDT"] as const;
export const DERIBIT_INSTRUMENTS = ["BTC-PERPETUAL", "ETH-PERPETUAL"] as const;

export class BinanceVenue {
  readonly fake: FakeBinanceFutures;

  readonly symbols: readonly string[];

  constructor(
    private readonly truth: Truth,
    seed: number,
    readonly exchange: keyof typeof BINANCE_FLAVORS = "BINANCE_FUTURES",
  ) {
    const flavor = BINANCE_FLAVORS[exchange];
    this.symbols = flavor.symbols;
    this.fake = flavor.start({ symbols: [...flavor.symbols], seed });
    for (const symbol of this.symbols) this.recordBook(symbol);
  }

  get env(): Record<string, string> {
    return this.fake.env;
  }

  recordBook(symbol: string): void {
    const market = this.fake.market(symbol);
    const { bids, asks } = market.trueBook();
    this.truth.recordBook(this.exchange, symbol, market.lastUpdateId, bookKey(bids, asks));
  }

  step(random: () => number, tradeProbability: number): void {
    for (const symbol of this.symbols) {
      const before = this.fake.market(symbol).bookTickers.length;
      this.fake.depthStep(symbol);
      this.recordBook(symbol);
      for (const { frame, delivered } of this.fake.market(symbol).bookTickers.slice(before)) {
        if (delivered > 0) this.truth.binanceTickers.add(tickerKey(this.exchange, frame));
      }
      if (random() < tradeProbability) this.trade(symbol);
    }
  }

  trade(symbol: string): void {
    const frame = this.fake.trade(symbol);
    const delivered = this.fake.market(symbol).trades.at(-1)!.delivered;
    this.truth.addTrade({ exchange: this.exchange, symbol, id: String(frame.a), price: +frame.p, amount: +frame.q, delivered });
  }

  /** Receivers of a /market stream right now. */
  private marketReceivers(stream: string): number {
    return this.fake.silent ? 0 : this.fake.subscriptions("market").filter((entry) => entry.streams.includes(stream)).length;
  }

  funding(symbol: string): void {
    const delivered = this.marketReceivers(`${symbol.toLowerCase()}@markPrice@1s`);
    const f = this.fake.markPrice(symbol);
    this.truth.funding.push({
      key: fundingKey({ exchange: "BINANCE_FUTURES", symbol, timestamp: f.E * 1000, mark_price: f.p, index_price: f.i, funding_rate: f.r, next_funding_time: f.T * 1000 }),
      delivered,
    });
  }

  liquidation(symbol: string, random: () => number): void {
    const delivered = this.marketReceivers(`${symbol.toLowerCase()}@forceOrder`);
    const side = random() < 0.5 ? "SELL" : "BUY";
    const quantity = (1 + Math.floor(random() * 500)) / 1000;
    const { o } = this.fake.forceOrder(symbol, { S: side, q: quantity.toFixed(3), z: quantity.toFixed(3), l: quantity.toFixed(3) });
    this.truth.liquidations.push({
      key: liquidationKey({ exchange: "BINANCE_FUTURES", symbol, id: String(o.T), side: side.toLowerCase(), price: o.ap, amount: o.z }),
      delivered,
    });
  }

  /** Sequence gap: an update that moves the true book is never sent. */
  dropUpdate(symbol: string): void {
    this.fake.dropDepthEvent(symbol);
    this.recordBook(symbol);
  }

  /** The next update is held back and sent after the one following it. */
  reorderNext(symbol: string): void {
    this.fake.reorderNextDepth(symbol);
    this.recordBook(symbol);
  }

  duplicateLast(symbol: string): void {
    this.fake.duplicateLastDepth(symbol);
  }

  /** A well-sequenced update whose bid crosses the ask; the truth does not move. */
  crossed(symbol: string): void {
    this.fake.sendCrossedDepth(symbol);
    this.recordBook(symbol);
  }

  subscribed(stream: string, count = 1): Promise<unknown> {
    return this.fake.waitForSubscribers(stream, count, 15_000);
  }

  stop(): Promise<void> {
    return this.fake.stop();
  }
}

export class OkxVenue {
  readonly fake: FakeOkx;

  constructor(
    private readonly truth: Truth,
    seed: number,
    options: { wsSnapshot?: boolean } = {},
  ) {
    this.fake = FakeOkx.start({
      instruments: [
        { instId: "BTC-USDT-SWAP", mid: 60_000, depth: 20 },
        { instId: "ETH-USDT-SWAP", mid: 3_000, tick: 0.01, priceDecimals: 2, depth: 20 },
        { instId: "BTC-USDT", mid: 60_010, depth: 20 },
      ],
      seed,
      wsSnapshot: options.wsSnapshot ?? true,
    });
    for (const instId of [...OKX_SWAPS, ...OKX_SPOTS]) this.recordBook(instId);
  }

  get env(): Record<string, string> {
    return { ...this.fake.env("OKX_SWAP"), ...this.fake.env("OKX_SPOT") };
  }

  static exchangeOf(instId: string): ExchangeId {
    return instId.endsWith("-SWAP") ? "OKX_SWAP" : "OKX_SPOT";
  }

  recordBook(instId: string): void {
    const market = this.fake.market(instId);
    const { bids, asks } = market.truth();
    this.truth.recordBook(OkxVenue.exchangeOf(instId), instId, market.seqId, bookKey(bids, asks));
  }

  step(random: () => number, tradeProbability: number): void {
    for (const instId of [...OKX_SWAPS, ...OKX_SPOTS]) {
      this.fake.step(instId, 1, 0);
      this.recordBook(instId);
      if (random() < tradeProbability) this.trade(instId);
    }
  }

  trade(instId: string): void {
    const delivered = this.receivers("trades", instId);
    const sent = this.fake.sendTrade(instId, {});
    this.truth.addTrade({ exchange: OkxVenue.exchangeOf(instId), symbol: instId, id: sent.tradeId, price: +sent.px, amount: +sent.sz, delivered });
  }

  private receivers(channel: string, key: string): number {
    return this.fake.exchange.audience(`${channel}|${key}`);
  }

  /** One funding-rate push and one mark-price push (swaps only); each is its own row. */
  funding(instId: string, random: () => number): void {
    const ts = Date.now();
    const fundingTime = Math.ceil(ts / 28_800_000) * 28_800_000;
    const rate = (random() * 0.0004 - 0.0002).toFixed(8);
    let delivered = this.receivers("funding-rate", instId);
    this.fake.sendFundingRate(instId, { fundingRate: rate, fundingTime: String(fundingTime), nextFundingTime: String(fundingTime + 28_800_000), ts: String(ts) });
    this.truth.funding.push({ key: fundingKey({ exchange: "OKX_SWAP", symbol: instId, timestamp: ts * 1000, funding_rate: rate, next_funding_time: fundingTime * 1000 }), delivered });
    const markPx = (this.fake.market(instId).mid * 0.1 + random()).toFixed(2);
    delivered = this.receivers("mark-price", instId);
    this.fake.sendMarkPrice(instId, markPx, String(ts + 1));
    this.truth.funding.push({ key: fundingKey({ exchange: "OKX_SWAP", symbol: instId, timestamp: (ts + 1) * 1000, mark_price: markPx }), delivered });
  }

  liquidation(instId: string, random: () => number): void {
    const delivered = this.receivers("liquidation-orders", "SWAP");
    const detail = {
      side: random() < 0.5 ? "sell" : "buy",
      posSide: "net",
      bkPx: (this.fake.market(instId).mid * 0.1).toFixed(1),
      sz: String(1 + Math.floor(random() * 50)),
      ts: String(Date.now()),
    };
    this.fake.sendLiquidation(instId, [detail]);
    this.truth.liquidations.push({
      key: liquidationKey({ exchange: "OKX_SWAP", symbol: instId, id: `${detail.ts}-${detail.side}-${detail.sz}-${detail.bkPx}`, side: detail.side, price: detail.bkPx, amount: detail.sz }),
      delivered,
    });
  }

  /** The next update (sent by the next step) moves the truth but is never sent. */
  dropNext(instId: string): void {
    this.fake.dropNextUpdate(instId);
  }

  /** The next two updates go out swapped. */
  reorderNextTwo(instId: string): void {
    this.fake.reorderNextTwo(instId);
  }

  duplicateLast(instId: string): void {
    this.fake.duplicateLastUpdate(instId);
  }

  crossed(instId: string): void {
    this.fake.sendCrossedUpdate(instId);
    this.recordBook(instId);
  }

  subscribed(channel: string, key: string): Promise<FakeConnection> {
    return this.fake.waitForSubscriber(channel, key, 15_000);
  }

  stop(): Promise<void> {
    return this.fake.stop();
  }
}

export class DeribitVenue {
  readonly fake: FakeDeribit;

  constructor(
    private readonly truth: Truth,
    seed: number,
  ) {
    this.fake = FakeDeribit.start({ seed, instruments: [...DERIBIT_INSTRUMENTS] });
    for (const instrument of DERIBIT_INSTRUMENTS) this.recordBook(instrument);
  }

  get env(): Record<string, string> {
    return this.fake.env();
  }

  recordBook(instrument: string): void {
    const market = this.fake.market(instrument);
    const { bids, asks } = market.truth();
    this.truth.recordBook("DERIBIT", instrument, market.changeId, bookKey(bids, asks));
  }

  step(random: () => number, tradeProbability: number): void {
    for (const instrument of DERIBIT_INSTRUMENTS) {
      this.fake.bookStep(instrument);
      this.recordBook(instrument);
      if (random() < tradeProbability) this.trade(instrument);
    }
  }

  /** Connections subscribed to any trades channel of the instrument (receivers of the next trade). */
  private tradeReceivers(instrument: string): number {
    return this.fake.exchange.audience((channel) => channel.startsWith(`trades.${instrument}.`));
  }

  trade(instrument: string, liquidation?: "M" | "T" | "MT"): void {
    const delivered = this.tradeReceivers(instrument);
    const [sent] = this.fake.sendTrades(instrument, [liquidation ? { liquidation } : {}]);
    this.truth.addTrade({ exchange: "DERIBIT", symbol: instrument, id: sent!.trade_id, price: sent!.price, amount: sent!.amount, delivered });
    if (!liquidation) return;
    // T: the taker was liquidated (its side); M: the maker (the other side); MT: both, taker first.
    const taker = sent!.direction;
    const sides = [...(liquidation.includes("T") ? [taker] : []), ...(liquidation.includes("M") ? [taker === "buy" ? "sell" : "buy"] : [])];
    for (const side of sides) {
      this.truth.liquidations.push({
        key: liquidationKey({ exchange: "DERIBIT", symbol: instrument, id: sent!.trade_id, side, price: sent!.price, amount: sent!.amount }),
        delivered,
      });
    }
  }

  funding(instrument: string): void {
    const delivered = this.fake.exchange.audience((channel) => channel.startsWith(`ticker.${instrument}.`));
    const ticker = this.fake.sendTicker(instrument) as { timestamp: number; mark_price: number; index_price: number; funding_8h: number };
    this.truth.funding.push({
      key: fundingKey({ exchange: "DERIBIT", symbol: instrument, timestamp: ticker.timestamp * 1000, mark_price: ticker.mark_price, index_price: ticker.index_price, funding_rate: ticker.funding_8h }),
      delivered,
    });
  }

  dropUpdate(instrument: string): void {
    this.fake.skipBookChange(instrument);
    this.recordBook(instrument);
  }

  /** Two changes sent in the wrong order; the truth is known after the second only. */
  reorderTwo(instrument: string): void {
    this.fake.sendReorderedBookChanges(instrument);
    this.recordBook(instrument);
  }

  duplicateLast(instrument: string): void {
    this.fake.resendLastBookChange(instrument);
  }

  crossed(instrument: string): void {
    this.fake.sendCrossingBookChange(instrument);
    this.recordBook(instrument);
  }

  subscribed(channel: string): Promise<FakeConnection> {
    return this.fake.waitForSubscribed(channel, 15_000);
  }

  stop(): Promise<void> {
    return this.fake.stop();
  }
}

export interface VenuesOptions {
  readonly seed: number;
  /** Driver period; every period each book moves once. */
  readonly tickMs?: number;
  readonly tradeProbability?: number;
  readonly okxWsSnapshot?: boolean;
  /** Also send funding and liquidations (every `extrasEvery` ticks) for FUNDING and LIQUIDATIONS subscriptions. */
  readonly extrasEvery?: number;
}

/** The three fakes, the truth and the seeded market driver. */
export class Venues {
  readonly truth = new Truth();
  readonly binance: BinanceVenue;
  readonly binanceSpot: BinanceVenue;
  readonly okx: OkxVenue;
  readonly deribit: DeribitVenue;
  readonly random: () => number;
  private driver: ReturnType<typeof setInterval> | undefined;
  private readonly tickMs: number;
  private readonly tradeProbability: number;
  private readonly extrasEvery: number | undefined;
  /** Driver ticks so far (all venues step once per tick). */
  ticks = 0;

  constructor(options: VenuesOptions) {
    this.random = seededRandom(options.seed);
    this.binance = new BinanceVenue(this.truth, options.seed + 1);
    this.okx = new OkxVenue(this.truth, options.seed + 2, { wsSnapshot: options.okxWsSnapshot });
    this.deribit = new DeribitVenue(this.truth, options.seed + 3);
    this.binanceSpot = new BinanceVenue(this.truth, options.seed + 4, "BINANCE_SPOT");
    this.tickMs = options.tickMs ?? 25;
    this.tradeProbability = options.tradeProbability ?? 0.4;
    this.extrasEvery = options.extrasEvery;
  }

  get env(): Record<string, string> {
    return { ...this.binance.env, ...this.binanceSpot.env, ...this.okx.env, ...this.deribit.env };
  }

  get exchanges(): FakeVenue[] {
    return [this.binance.fake.exchange, this.okx.fake.exchange, this.deribit.fake.exchange, this.binanceSpot.fake.exchange];
  }

  /** The given streams (default TRADES, L2, BBO) of every instrument of every venue that offers them. */
  subscriptions(streams: readonly string[] = ["TRADES", "L2", "BBO"]): string {
    const tokens: string[] = [];
    for (const stream of streams) {
      for (const symbol of BINANCE_SYMBOLS) tokens.push(`${stream}:BINANCE_FUTURES@${symbol}`);
      for (const instId of OKX_SWAPS) tokens.push(`${stream}:OKX_SWAP@${instId}`);
      // Spot markets have no funding or liquidations.
      if (stream === "TRADES" || stream === "L2" || stream === "BBO") {
        for (const symbol of BINANCE_SPOT_SYMBOLS) tokens.push(`${stream}:BINANCE_SPOT@${symbol}`);
        for (const instId of OKX_SPOTS) tokens.push(`${stream}:OKX_SPOT@${instId}`);
      }
      for (const instrument of DERIBIT_INSTRUMENTS) tokens.push(`${stream}:DERIBIT@${instrument}`);
    }
    return tokens.join(",");
  }

  /** One driver step: every book moves once, trades now and then. */
  step(): void {
    this.ticks++;
    this.binance.step(this.random, this.tradeProbability);
    this.binanceSpot.step(this.random, this.tradeProbability);
    this.okx.step(this.random, this.tradeProbability);
    this.deribit.step(this.random, this.tradeProbability);
    if (this.extrasEvery !== undefined && this.ticks % this.extrasEvery === 0) {
      for (const symbol of BINANCE_SYMBOLS) {
        this.binance.funding(symbol);
        this.binance.liquidation(symbol, this.random);
      }
      for (const instId of OKX_SWAPS) {
        this.okx.funding(instId, this.random);
        this.okx.liquidation(instId, this.random);
      }
      for (const instrument of DERIBIT_INSTRUMENTS) {
        this.deribit.funding(instrument);
        this.deribit.trade(instrument, pick3(this.random));
      }
    }
  }

  start(): void {
    this.driver ??= setInterval(() => this.step(), this.tickMs);
  }

  pause(): void {
    clearInterval(this.driver);
    this.driver = undefined;
  }

  /** Runs the market for about `ms` (at least `minTicks` steps, whatever the timer did). */
  async run(ms: number, minTicks = Math.floor(ms / this.tickMs / 2)): Promise<void> {
    const target = this.ticks + minTicks;
    this.start();
    await Bun.sleep(ms);
    while (this.ticks < target) await Bun.sleep(this.tickMs);
  }

  /** Resolves once xtrader is subscribed to every stream of every instrument, as each venue sees it. */
  async subscribed(streams: readonly string[] = ["TRADES", "L2", "BBO"]): Promise<void> {
    const waits: Promise<unknown>[] = [];
    const binanceSuffix: Record<string, string> = { TRADES: "@aggTrade", L2: "@depth@100ms", BBO: "@bookTicker", FUNDING: "@markPrice@1s", LIQUIDATIONS: "@forceOrder" };
    const okxChannel: Record<string, string> = { TRADES: "trades", L2: "books", BBO: "bbo-tbt" };
    const deribitChannel: Record<string, (i: string) => string> = {
      TRADES: (i) => `trades.${i}.100ms`,
      L2: (i) => `book.${i}.100ms`,
      BBO: (i) => `quote.${i}`,
      FUNDING: (i) => `ticker.${i}.100ms`,
      LIQUIDATIONS: (i) => `trades.${i}.100ms`,
    };
    for (const stream of streams) {
      for (const symbol of BINANCE_SYMBOLS) waits.push(this.binance.subscribed(`${symbol.toLowerCase()}${binanceSuffix[stream]}`));
      const spotSuffix = ({ TRADES: "@trade", L2: "@depth@100ms", BBO: "@bookTicker" } as Record<string, string>)[stream];
      if (spotSuffix) for (const symbol of BINANCE_SPOT_SYMBOLS) waits.push(this.binanceSpot.subscribed(`${symbol.toLowerCase()}${spotSuffix}`));
      for (const instId of [...OKX_SWAPS, ...OKX_SPOTS]) if (okxChannel[stream]) waits.push(this.okx.subscribed(okxChannel[stream]!, instId));
      if (stream === "FUNDING") for (const instId of OKX_SWAPS) waits.push(this.okx.subscribed("funding-rate", instId), this.okx.subscribed("mark-price", instId));
      if (stream === "LIQUIDATIONS") waits.push(this.okx.subscribed("liquidation-orders", "SWAP"));
      for (const instrument of DERIBIT_INSTRUMENTS) if (deribitChannel[stream]) waits.push(this.deribit.subscribed(deribitChannel[stream]!(instrument)));
    }
    await Promise.all(waits);
  }

  /** A delivery barrier on every venue: once each client answered a ping, it has read everything sent before. */
  async barrier(timeoutMs = 10_000): Promise<void> {
    await Promise.all(this.exchanges.map((exchange) => exchange.barrier(timeoutMs)));
  }

  /** Stops the driver, then makes sure the client read everything sent. */
  async quiesce(): Promise<void> {
    this.pause();
    await this.barrier();
  }

  async stop(): Promise<void> {
    this.pause();
    await Promise.all([this.binance.stop(), this.binanceSpot.stop(), this.okx.stop(), this.deribit.stop()]);
  }
}

function pick3(random: () => number): "M" | "T" | "MT" {
  const roll = random();
  return roll < 0.4 ? "T" : roll < 0.8 ? "M" : "MT";
}

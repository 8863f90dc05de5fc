/**
 * A fake Binance USDⓈ-M futures venue on the FakeVenue base, with the venue's protocol only
 * (https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams):
 * - routed paths: `/public/...` carries depth and bookTicker, `/market/...` carries aggTrade, markPrice and
 *   forceOrder; a stream on the wrong path (or an unrouted legacy path, for /market streams) is acknowledged
 *   and never delivered, like the real venue. `/stream` = combined payloads, `/ws` = raw.
 * - SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS answered `{"result":..,"id":..}`; errors `{"code":..,"msg":..,"id":..}`;
 *   more than 10 incoming messages in a second closes the connection (1008).
 * - REST `GET /fapi/v1/depth` (snapshot with `lastUpdateId`, weight header, -1121 for unknown symbols) and
 *   `GET /fapi/v1/exchangeInfo`.
 * - A seeded market per symbol keeping the TRUE book (every update id, every depth event sent or not) and
 *   every trade, so tests and the end-to-end fault suite compare output with truth.
 * - Faults: dropped/duplicated/reordered/crossed depth events, malformed frames, REST 429/418/500 queues.
 */
import { TrueBook, nextSequence, type BookSide } from "./fake-market.ts";
import { VenueFake, type FakeConnection, type RecordedRequest } from "./fake-venue.ts";
import { seededRandom } from "./random.ts";

export { seededRandom } from "./random.ts";

export type Level = [string, string];
export interface DepthFrame { e: "depthUpdate"; E: number; T: number; s: string; U: number; u: number; pu: number; b: Level[]; a: Level[] }
export interface AggTradeFrame { e: "aggTrade"; E: number; s: string; a: number; p: string; q: string; f: number; l: number; T: number; m: boolean }
export interface BookTickerFrame { e: "bookTicker"; u: number; E: number; T: number; s: string; b: string; B: string; a: string; A: string }
export interface MarkPriceFrame { e: "markPriceUpdate"; E: number; s: string; p: string; i: string; P: string; r: string; T: number }
type ForceOrder = { s: string; S: "BUY" | "SELL"; o: string; f: string; q: string; p: string; ap: string; X: string; l: string; z: string; T: number };
export interface ForceOrderFrame { e: "forceOrder"; E: number; o: ForceOrder }

/** Prices are kept in integer ticks of 0.1 and quantities in units of 0.001, so book keys are exact. */
const PRICE_SCALE = 10;
const QTY_SCALE = 1000;
const priceText = (ticks: number) => (ticks / PRICE_SCALE).toFixed(1);
const qtyText = (units: number) => (units / QTY_SCALE).toFixed(3);
const wire = (levels: Iterable<[number, number]>): Level[] => [...levels].map(([ticks, units]) => [priceText(ticks), qtyText(units)]);

export class FakeMarket extends TrueBook<number> {
  /** Every depth event generated, in order, whether it was delivered or not. */
  readonly depthEvents: DepthFrame[] = [];
  /** Every trade / bookTicker sent, with how many connections received it. */
  readonly trades: Array<{ frame: AggTradeFrame; delivered: number }> = [];
  readonly bookTickers: Array<{ frame: BookTickerFrame; delivered: number }> = [];
  /** Id of the last elementary book update (what a snapshot reports as lastUpdateId). */
  lastUpdateId = 0;
  /** `u` of the last generated depth event (the next event's `pu`). */
  lastEventFinalId = 0;
  private pending: { first: number; bids: Map<number, number>; asks: Map<number, number> } | undefined;
  private nextTradeId = 1_000;
  private nextTradeSequence = 50_000;

  constructor(
    readonly symbol: string,
    private readonly venue: FakeBinanceFutures,
    midTicks: number,
  ) {
    // Keys are price ticks, sizes quantity units.
    const numbers = (ticks: number, units: number): [number, number] => [ticks / PRICE_SCALE, units / QTY_SCALE];
    super(venue.random, { step: 1, reach: 20, size: (random) => 1 + Math.floor(random() * 5000), numbers });
    this.fill(midTicks, 10);
  }

  get lowerSymbol(): string {
    return this.symbol.toLowerCase();
  }

  /** One elementary update (its own update id; 0 units removes), added to the event being built. */
  setLevel(side: BookSide, ticks: number, units: number): void {
    this.set(side, ticks, units === 0 ? undefined : units);
    this.record(side, ticks, units);
  }

  /** A random uncrossed elementary update (its own update id), added to the event being built. */
  randomUpdate(random = this.random): void {
    const { side, key, size } = this.randomChange(random);
    this.record(side, key, size ?? 0);
  }

  private record(side: BookSide, ticks: number, units: number): void {
    this.lastUpdateId = this.venue.nextUpdateId(this);
    this.pending ??= { first: this.lastUpdateId, bids: new Map(), asks: new Map() };
    (side === "bid" ? this.pending.bids : this.pending.asks).set(ticks, units);
  }

  /** Closes the event being built into a depthUpdate frame (undefined if nothing changed). */
  takeEvent(): DepthFrame | undefined {
    const pending = this.pending;
    if (!pending) return undefined;
    this.pending = undefined;
    return this.depthEvent(pending.first, this.lastUpdateId, wire(pending.bids), wire(pending.asks));
  }

  /** Records a depth event [first, last] chained on the previous one. */
  depthEvent(first: number, last: number, b: Level[], a: Level[]): DepthFrame {
    const now = Date.now();
    const frame: DepthFrame = { e: "depthUpdate", E: now, T: now - 1, s: this.symbol, U: first, u: last, pu: this.lastEventFinalId, b, a };
    this.lastEventFinalId = last;
    this.depthEvents.push(frame);
    return frame;
  }

  snapshot(limit: number): { lastUpdateId: number; E: number; T: number; bids: Level[]; asks: Level[] } {
    const now = Date.now();
    return { lastUpdateId: this.lastUpdateId, E: now, T: now - 2, bids: wire(this.sorted("bid", limit)), asks: wire(this.sorted("ask", limit)) };
  }

  /** The true book as sorted [price, amount] pairs (best first), comparable with OrderBook.sorted(). */
  trueBook(): { bids: Array<[number, number]>; asks: Array<[number, number]> } {
    return this.truth();
  }

  bookTickerFrame(): BookTickerFrame {
    const [bid, ask] = [this.bestBid(), this.bestAsk()];
    const now = Date.now();
    const [b, B] = bid === undefined ? ["0.0", "0.000"] : [priceText(bid), qtyText(this.bids.get(bid)!)];
    const [a, A] = ask === undefined ? ["0.0", "0.000"] : [priceText(ask), qtyText(this.asks.get(ask)!)];
    return { e: "bookTicker", u: this.lastUpdateId, E: now, T: now - 1, s: this.symbol, b, B, a, A };
  }

  tradeFrame(random: () => number, overrides: Partial<AggTradeFrame> = {}): AggTradeFrame {
    const mid = ((this.bestBid() ?? 10_000) + (this.bestAsk() ?? 10_002)) / 2;
    const count = 1 + Math.floor(random() * 3);
    const first = this.nextTradeSequence;
    this.nextTradeSequence += count;
    const now = Date.now();
    const [a, p, q] = [this.nextTradeId++, priceText(Math.round(mid)), qtyText(1 + Math.floor(random() * 900))];
    return { e: "aggTrade", E: now, s: this.symbol, a, p, q, f: first, l: first + count - 1, T: now - 1, m: random() < 0.5, ...overrides };
  }
}

/** Streams delivered on each routed path. */
const PUBLIC_STREAM = /@(depth|bookTicker)/;
const MARKET_STREAM = /@(aggTrade|markPrice|forceOrder)/;

interface Route {
  readonly route: "public" | "market" | "legacy";
  readonly combined: boolean;
}

export interface RestFault {
  readonly status: number;
  readonly retryAfterSeconds?: number;
  readonly body?: unknown;
}

export interface FakeBinanceOptions {
  readonly symbols?: readonly string[];
  readonly seed?: number;
  /** Incoming messages per second per connection before the server disconnects (the venue's 10). */
  readonly incomingMessageLimit?: number;
  /** Listed by exchangeInfo but without a market: the depth snapshot answers -1121 for them. */
  readonly listedWithoutMarket?: readonly string[];
}

/** What a Binance market's fake differs in (futures by default; spot in fake-binance-spot.ts). */
export interface BinanceDialect {
  /** REST paths: `/fapi/v1` (USDⓈ-M) or `/api/v3` (spot). */
  readonly restPrefix: string;
  /** Incoming messages per second per connection before the server disconnects. */
  readonly incomingMessageLimit: number;
  /** Request weight of a depth snapshot of this many levels. */
  readonly depthWeight: (limit: number) => number;
  /** Whether a connection on this route receives this stream. */
  readonly carries: (route: Route["route"], stream: string) => boolean;
}

/** GET /fapi/v1/depth weight by `limit` (https://developers.binance.com/docs/derivatives/usds-margined-futures/market-data/rest-api/Order-Book). */
const FUTURES_DIALECT: BinanceDialect = {
  restPrefix: "/fapi/v1",
  // "WebSocket connections have a limit of 10 incoming messages per second"; over it, disconnected
  // (https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams).
  incomingMessageLimit: 10,
  depthWeight: (limit) => (limit <= 50 ? 2 : limit <= 100 ? 5 : limit <= 500 ? 10 : 20),
  carries: routeCarries,
};

export class FakeBinanceFutures extends VenueFake<Route, FakeMarket> {
  readonly random: () => number;
  /** Every depth snapshot served, with the time it was served. */
  readonly snapshotsServed: Array<{ symbol: string; lastUpdateId: number; at: number }> = [];
  /** Run inside the depth handler before / after the snapshot is taken (e.g. to place it mid-event). */
  beforeSnapshot: ((market: FakeMarket) => void) | undefined;
  afterSnapshot: ((market: FakeMarket) => void) | undefined;
  /** REQUEST_WEIGHT used in the current minute, reported in X-MBX-USED-WEIGHT-1M. */
  usedWeight = 0;
  private weightMinute = Math.floor(Date.now() / 60_000);
  /** The next this-many SUBSCRIBE requests are swallowed: no answer, nothing subscribed (a lost request). */
  swallowSubscribes = 0;
  /** SUBSCRIBE requests naming one of these streams are rejected with this error. */
  readonly rejectedStreams = new Map<string, { code: number; msg: string }>();
  private updateId = 1_000_000;
  private readonly heldDepth = new Map<string, DepthFrame>();

  protected constructor(
    private readonly options: FakeBinanceOptions,
    protected readonly dialect: BinanceDialect = FUTURES_DIALECT,
  ) {
    super();
    this.random = seededRandom(options.seed ?? 1);
    this.exchange.limitIncoming(options.incomingMessageLimit ?? dialect.incomingMessageLimit, 1008, "Too many requests");
    let mid = 650_000;
    for (const symbol of options.symbols ?? ["BTCUSDT"]) {
      this.markets.set(symbol, new FakeMarket(symbol, this, mid));
      mid = Math.round(mid / 3);
    }
    this.exchange.rest("GET", `${dialect.restPrefix}/depth`, (request) => this.depth(request));
    this.exchange.rest("GET", `${dialect.restPrefix}/exchangeInfo`, () => this.exchangeInfo());
  }

  static start(options: FakeBinanceOptions = {}): FakeBinanceFutures {
    return new FakeBinanceFutures(options);
  }

  /** Environment pointing the connector at this fake. */
  get env(): Record<string, string> {
    return { XTRADER_BINANCE_FUTURES_WS_URL: this.exchange.wsUrl(), XTRADER_BINANCE_FUTURES_REST_URL: this.exchange.httpUrl };
  }

  /** Connections closed by the server for exceeding the incoming message limit. */
  get rateLimitCloses(): FakeConnection[] {
    return this.exchange.limitCloses;
  }

  /** Every REST request with its status and arrival time (performance.now()). */
  get restLog(): Array<{ path: string; status: number; at: number }> {
    return this.exchange.restLog;
  }

  /** Queued faults for the next depth requests, not yet consumed. */
  get depthFaults(): readonly unknown[] {
    return this.exchange.pendingReplies(`${this.dialect.restPrefix}/depth`);
  }

  override market(symbol = "BTCUSDT"): FakeMarket {
    return super.market(symbol);
  }

  /** Update ids are global across symbols (they jump), like the venue's. */
  nextUpdateId(_market?: FakeMarket): number {
    return (this.updateId = nextSequence(this.updateId, this.random, 3));
  }

  // ── market data ──
  /** Sends `payload` on `stream` to every connection subscribed on the right path; returns receivers. */
  publish(stream: string, payload: unknown): number {
    return this.exchange.push(stream, (_: string, { state }: FakeConnection<Route>) =>
      this.dialect.carries(state.route, stream) ? (state.combined ? { stream, data: payload } : payload) : undefined,
    );
  }

  /** Generates `updates` random book updates for a symbol and publishes them as one depth event. */
  depthStep(symbol = "BTCUSDT", updates = 1 + Math.floor(this.random() * 4)): DepthFrame | undefined {
    const market = this.market(symbol);
    for (let i = 0; i < updates; i++) market.randomUpdate(this.random);
    return this.flushDepth(symbol);
  }

  /** Publishes the event being built for a symbol (depth, the held one after it if reordering, bookTicker). */
  flushDepth(symbol = "BTCUSDT"): DepthFrame | undefined {
    const market = this.market(symbol);
    const frame = market.takeEvent();
    if (!frame) return undefined;
    this.publish(`${market.lowerSymbol}@depth@100ms`, frame);
    const held = this.heldDepth.get(symbol);
    this.heldDepth.delete(symbol);
    if (held) this.publish(`${market.lowerSymbol}@depth@100ms`, held);
    const ticker = market.bookTickerFrame();
    market.bookTickers.push({ frame: ticker, delivered: this.publish(`${market.lowerSymbol}@bookTicker`, ticker) });
    return frame;
  }

  trade(symbol = "BTCUSDT", overrides: Partial<AggTradeFrame> = {}): AggTradeFrame {
    const market = this.market(symbol);
    const frame = market.tradeFrame(this.random, overrides);
    market.trades.push({ frame, delivered: this.publish(`${market.lowerSymbol}@aggTrade`, frame) });
    return frame;
  }

  markPrice(symbol = "BTCUSDT", overrides: Partial<MarkPriceFrame> = {}): MarkPriceFrame {
    const now = Date.now();
    const T = Math.ceil(now / 28_800_000) * 28_800_000;
    const frame: MarkPriceFrame = { e: "markPriceUpdate", E: now, s: symbol, p: "65001.23456789", i: "64998.76543210", P: "64999.00000000", r: "0.00010000", T, ...overrides };
    this.publish(`${this.market(symbol).lowerSymbol}@markPrice@1s`, frame);
    return frame;
  }

  forceOrder(symbol = "BTCUSDT", overrides: Partial<ForceOrder> = {}): ForceOrderFrame {
    const now = Date.now();
    const o: ForceOrder = { s: symbol, S: "SELL", o: "LIMIT", f: "IOC", q: "0.014", p: "64900.0", ap: "64950.5", X: "FILLED", l: "0.014", z: "0.014", T: now - 1, ...overrides };
    const frame: ForceOrderFrame = { e: "forceOrder", E: now, o };
    this.publish(`${this.market(symbol).lowerSymbol}@forceOrder`, frame);
    return frame;
  }

  /** Drives a seeded random market: depth events on every symbol, trades now and then. */
  randomSteps(steps: number, symbols: readonly string[] = [...this.markets.keys()]): void {
    for (let i = 0; i < steps; i++) {
      for (const symbol of symbols) {
        this.depthStep(symbol);
        if (this.random() < 0.5) this.trade(symbol);
      }
    }
  }

  // ── faults ──

  /** A depth event that is generated (the true book moves) but never sent: a sequence gap. */
  dropDepthEvent(symbol = "BTCUSDT"): DepthFrame | undefined {
    const market = this.market(symbol);
    for (let i = 0; i < 2; i++) market.randomUpdate(this.random);
    return market.takeEvent();
  }

  /** Sends the last generated depth event again. */
  duplicateLastDepth(symbol = "BTCUSDT"): void {
    const market = this.market(symbol);
    const last = market.depthEvents.at(-1);
    if (last) this.publish(`${market.lowerSymbol}@depth@100ms`, last);
  }

  /** The next depth event is held back and sent after the one following it. */
  reorderNextDepth(symbol = "BTCUSDT"): void {
    const frame = this.dropDepthEvent(symbol);
    if (frame) this.heldDepth.set(symbol, frame);
  }

  /** A corrupt depth event in sequence: a bid at the best ask, which the true book never had (ids consumed). */
  sendCrossedDepth(symbol = "BTCUSDT"): DepthFrame {
    const market = this.market(symbol);
    const ask = market.bestAsk()!;
    const id = this.nextUpdateId(market);
    market.lastUpdateId = id;
    const frame = market.depthEvent(id, id, [[priceText(ask), "1.000"]], []);
    this.publish(`${market.lowerSymbol}@depth@100ms`, frame);
    return frame;
  }

  /** Sends a raw text frame to every open connection on a route ("public", "market" or both). */
  override sendRaw(text: string, route: "public" | "market" | "all" = "all"): void {
    for (const connection of this.exchange.openConnections()) if (route === "all" || connection.state.route === route) connection.send(text);
  }

  /** The next depth requests fail like this, in order (weight is still spent, as on the venue). */
  failNextDepth(...faults: RestFault[]): void {
    const reply = (fault: RestFault) => (request: RecordedRequest) => {
      this.spendWeight(this.weightOf(request));
      const headers: Record<string, string> = this.weightHeader();
      if (fault.retryAfterSeconds !== undefined) headers["Retry-After"] = String(fault.retryAfterSeconds);
      return { status: fault.status, headers, body: fault.body ?? { code: fault.status === 429 ? -1003 : -1000, msg: `fake ${fault.status}` } };
    };
    this.exchange.replyNext(`${this.dialect.restPrefix}/depth`, ...faults.map(reply));
  }

  /** Open connections on a route, with the streams they are subscribed to. */
  subscriptions(route?: "public" | "market"): Array<{ connection: FakeConnection; streams: string[] }> {
    return this.exchange
      .openConnections()
      .filter((connection) => route === undefined || connection.state.route === route)
      .map((connection) => ({ connection, streams: [...connection.topics] }));
  }

  // ── protocol ──

  /** Raw /ws/<a>/<b> and combined /stream?streams=<a>/<b> name their streams in the URL. */
  protected connectionState(connection: FakeConnection<Route>): Route {
    const [, first, second] = connection.path.split("/");
    const routed = first === "public" || first === "market";
    const inPath = connection.path.split("/").slice(routed ? 3 : 2).join("/");
    for (const name of [...inPath.split("/"), ...(connection.query.get("streams")?.split("/") ?? [])]) if (name) connection.topics.add(name);
    return { route: routed ? (first as "public" | "market") : "legacy", combined: (routed ? second : first) === "stream" };
  }

  protected onClientFrame(connection: FakeConnection<Route>, text: string): void {
    if (this.silent) return;
    const request = this.parse<{ method?: unknown; params?: unknown; id?: unknown }>(connection, text, { code: 3, msg: "Invalid JSON: expected value at line 1 column 1", id: null });
    if (!request) return;
    const id = request.id;
    if (typeof id !== "number" || id < 0 || !Number.isInteger(id)) {
      connection.send({ code: 2, msg: "Invalid request: request ID must be an unsigned integer", id: null });
      return;
    }
    const params = Array.isArray(request.params) ? (request.params as unknown[]) : [];
    if (request.method === "SUBSCRIBE") {
      if (this.swallowSubscribes > 0) return void this.swallowSubscribes--;
      for (const name of params) {
        const rejection = typeof name === "string" ? this.rejectedStreams.get(name) : undefined;
        if (typeof name !== "string" || rejection) return void connection.send({ ...(rejection ?? { code: 2, msg: "Invalid request: invalid stream name" }), id });
      }
      for (const name of params as string[]) connection.topics.add(name);
      connection.send({ result: null, id });
    } else if (request.method === "UNSUBSCRIBE") {
      for (const name of params) connection.topics.delete(String(name));
      connection.send({ result: null, id });
    } else if (request.method === "LIST_SUBSCRIPTIONS") {
      connection.send({ result: [...connection.topics], id });
    } else {
      connection.send({ code: 2, msg: `Invalid request: unknown method ${String(request.method)}`, id });
    }
  }

  protected depth(request: RecordedRequest): { status?: number; body: unknown; headers: Record<string, string> } {
    this.spendWeight(this.weightOf(request));
    const symbol = request.query.get("symbol") ?? "";
    const market = this.markets.get(symbol);
    if (!market) return { status: 400, body: { code: -1121, msg: "Invalid symbol." }, headers: this.weightHeader() };
    const at = performance.now();
    this.beforeSnapshot?.(market);
    const body = market.snapshot(Number(request.query.get("limit") ?? 500));
    this.afterSnapshot?.(market);
    this.snapshotsServed.push({ symbol, lastUpdateId: body.lastUpdateId, at });
    return { body, headers: this.weightHeader() };
  }

  private exchangeInfo() {
    this.spendWeight(1);
    const symbols = [...this.markets.keys(), ...(this.options.listedWithoutMarket ?? [])].map((symbol) => {
      return { symbol, pair: symbol, contractType: "PERPETUAL", status: "TRADING", baseAsset: symbol.replace(/USDT$/, ""), quoteAsset: "USDT", marginAsset: "USDT" };
    });
    const rateLimits = [{ rateLimitType: "REQUEST_WEIGHT", interval: "MINUTE", intervalNum: 1, limit: 2400 }];
    return { body: { timezone: "UTC", serverTime: Date.now(), rateLimits, symbols }, headers: this.weightHeader() };
  }

  private weightOf(request: RecordedRequest): number {
    return this.dialect.depthWeight(Number(request.query.get("limit") ?? 500));
  }

  private spendWeight(weight: number): void {
    const minute = Math.floor(Date.now() / 60_000);
    if (minute !== this.weightMinute) [this.weightMinute, this.usedWeight] = [minute, 0];
    this.usedWeight += weight;
  }

  private weightHeader(): Record<string, string> {
    return { "X-MBX-USED-WEIGHT-1M": String(this.usedWeight) };
  }
}

function routeCarries(route: Route["route"], stream: string): boolean {
  if (route === "market") return MARKET_STREAM.test(stream);
  // Public and legacy unrouted URLs only receive /public data (https://developers.binance.com/docs/products/caas/market-data-streams).
  return PUBLIC_STREAM.test(stream);
}

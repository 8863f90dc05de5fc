/**
 * A fake Binance USDⓈ-M futures venue on top of FakeExchange, speaking the real protocol shapes:
 * - WebSocket routed paths: `/public/...` carries depth and bookTicker, `/market/...` carries aggTrade,
 *   markPrice and forceOrder; a stream on the wrong path (or an unrouted legacy path, for /market streams)
 *   is acknowledged and never delivered, like the real venue. `/stream` = combined payloads, `/ws` = raw.
 * - SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS with `{"result":..,"id":..}` responses; errors as
 *   `{"code":..,"msg":..,"id":..}`; more than 10 incoming messages in a second closes the connection (1008).
 * - REST `GET /fapi/v1/depth` (snapshot with `lastUpdateId`, weight header, -1121 for unknown symbols) and
 *   `GET /fapi/v1/exchangeInfo`.
 * - A seeded market generator per symbol keeping the TRUE book (every update id, every depth event sent or
 *   not) and a record of every trade, so tests and the end-to-end fault suite can compare output with truth.
 * - Fault helpers: dropped/duplicated/reordered/crossed depth events, malformed frames, closes with codes,
 *   silence (stale), REST 429/418/500 queues.
 */
import { FakeExchange, type FakeConnection, type RecordedRequest } from "./fake-exchange.ts";
import { seededRandom } from "./random.ts";

export { seededRandom } from "./random.ts";

export type Level = [string, string];

export interface DepthFrame {
  e: "depthUpdate";
  E: number;
  T: number;
  s: string;
  U: number;
  u: number;
  pu: number;
  b: Level[];
  a: Level[];
}

export interface AggTradeFrame {
  e: "aggTrade";
  E: number;
  s: string;
  a: number;
  p: string;
  q: string;
  f: number;
  l: number;
  T: number;
  m: boolean;
}

export interface BookTickerFrame {
  e: "bookTicker";
  u: number;
  E: number;
  T: number;
  s: string;
  b: string;
  B: string;
  a: string;
  A: string;
}

export interface MarkPriceFrame {
  e: "markPriceUpdate";
  E: number;
  s: string;
  p: string;
  i: string;
  P: string;
  r: string;
  T: number;
}

export interface ForceOrderFrame {
  e: "forceOrder";
  E: number;
  o: {
    s: string;
    S: "BUY" | "SELL";
    o: string;
    f: string;
    q: string;
    p: string;
    ap: string;
    X: string;
    l: string;
    z: string;
    T: number;
  };
}

export interface SnapshotBody {
  lastUpdateId: number;
  E: number;
  T: number;
  bids: Level[];
  asks: Level[];
}

/** Prices are kept in integer ticks of 0.1 and quantities in units of 0.001, so book keys are exact. */
const PRICE_SCALE = 10;
const QTY_SCALE = 1000;
const priceText = (ticks: number) => (ticks / PRICE_SCALE).toFixed(1);
const qtyText = (units: number) => (units / QTY_SCALE).toFixed(3);

export class FakeMarket {
  /** Price ticks → quantity units. */
  readonly bids = new Map<number, number>();
  readonly asks = new Map<number, number>();
  /** Every depth event generated, in order, whether it was delivered or not. */
  readonly depthEvents: DepthFrame[] = [];
  /** Every trade sent, with how many connections received it. */
  readonly trades: Array<{ frame: AggTradeFrame; delivered: number }> = [];
  /** Every bookTicker sent, with how many connections received it. */
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
    // A starting book: 10 levels per side around the mid price.
    for (let i = 1; i <= 10; i++) {
      this.bids.set(midTicks - i, 1000 + i * 10);
      this.asks.set(midTicks + i, 1000 + i * 15);
    }
  }

  get lowerSymbol(): string {
    return this.symbol.toLowerCase();
  }

  bestBid(): number | undefined {
    let best: number | undefined;
    for (const price of this.bids.keys()) if (best === undefined || price > best) best = price;
    return best;
  }

  bestAsk(): number | undefined {
    let best: number | undefined;
    for (const price of this.asks.keys()) if (best === undefined || price < best) best = price;
    return best;
  }

  /** One elementary update (its own update id), added to the event being built. */
  setLevel(side: "bid" | "ask", ticks: number, units: number): void {
    const id = this.venue.nextUpdateId();
    this.lastUpdateId = id;
    this.pending ??= { first: id, bids: new Map(), asks: new Map() };
    const book = side === "bid" ? this.bids : this.asks;
    if (units === 0) book.delete(ticks);
    else book.set(ticks, units);
    (side === "bid" ? this.pending.bids : this.pending.asks).set(ticks, units);
  }

  /** A random uncrossed update: new levels never reach the other side's best price. */
  randomUpdate(random: () => number): void {
    const side = random() < 0.5 ? "bid" : "ask";
    const book = side === "bid" ? this.bids : this.asks;
    if (book.size > 3 && random() < 0.3) {
      const prices = [...book.keys()];
      this.setLevel(side, prices[Math.floor(random() * prices.length)]!, 0);
      return;
    }
    const units = 1 + Math.floor(random() * 5000);
    if (side === "bid") {
      const ceiling = (this.bestAsk() ?? (this.bestBid() ?? 10_000) + 2) - 1;
      this.setLevel("bid", ceiling - Math.floor(random() * 20), units);
    } else {
      const floor = (this.bestBid() ?? (this.bestAsk() ?? 10_000) - 2) + 1;
      this.setLevel("ask", floor + Math.floor(random() * 20), units);
    }
  }

  /** Closes the event being built: returns the depthUpdate frame (undefined if nothing changed). */
  takeEvent(): DepthFrame | undefined {
    const pending = this.pending;
    if (!pending) return undefined;
    this.pending = undefined;
    const now = Date.now();
    const frame: DepthFrame = {
      e: "depthUpdate",
      E: now,
      T: now - 1,
      s: this.symbol,
      U: pending.first,
      u: this.lastUpdateId,
      pu: this.lastEventFinalId,
      b: [...pending.bids].map(([ticks, units]) => [priceText(ticks), qtyText(units)]),
      a: [...pending.asks].map(([ticks, units]) => [priceText(ticks), qtyText(units)]),
    };
    this.lastEventFinalId = frame.u;
    this.depthEvents.push(frame);
    return frame;
  }

  snapshot(limit: number): SnapshotBody {
    const now = Date.now();
    const sortedBids = [...this.bids].sort((a, b) => b[0] - a[0]).slice(0, limit);
    const sortedAsks = [...this.asks].sort((a, b) => a[0] - b[0]).slice(0, limit);
    return {
      lastUpdateId: this.lastUpdateId,
      E: now,
      T: now - 2,
      bids: sortedBids.map(([ticks, units]) => [priceText(ticks), qtyText(units)]),
      asks: sortedAsks.map(([ticks, units]) => [priceText(ticks), qtyText(units)]),
    };
  }

  /** The true book as sorted [price, amount] pairs (best first), comparable with OrderBook.sorted(). */
  trueBook(): { bids: Array<[number, number]>; asks: Array<[number, number]> } {
    return {
      bids: [...this.bids].sort((a, b) => b[0] - a[0]).map(([t, u]) => [t / PRICE_SCALE, u / QTY_SCALE]),
      asks: [...this.asks].sort((a, b) => a[0] - b[0]).map(([t, u]) => [t / PRICE_SCALE, u / QTY_SCALE]),
    };
  }

  bookTickerFrame(): BookTickerFrame {
    const bid = this.bestBid();
    const ask = this.bestAsk();
    const now = Date.now();
    return {
      e: "bookTicker",
      u: this.lastUpdateId,
      E: now,
      T: now - 1,
      s: this.symbol,
      b: bid === undefined ? "0.0" : priceText(bid),
      B: bid === undefined ? "0.000" : qtyText(this.bids.get(bid)!),
      a: ask === undefined ? "0.0" : priceText(ask),
      A: ask === undefined ? "0.000" : qtyText(this.asks.get(ask)!),
    };
  }

  tradeFrame(random: () => number, overrides: Partial<AggTradeFrame> = {}): AggTradeFrame {
    const mid = ((this.bestBid() ?? 10_000) + (this.bestAsk() ?? 10_002)) / 2;
    const count = 1 + Math.floor(random() * 3);
    const first = this.nextTradeSequence;
    this.nextTradeSequence += count;
    const now = Date.now();
    return {
      e: "aggTrade",
      E: now,
      s: this.symbol,
      a: this.nextTradeId++,
      p: priceText(Math.round(mid)),
      q: qtyText(1 + Math.floor(random() * 900)),
      f: first,
      l: first + count - 1,
      T: now - 1,
      m: random() < 0.5,
      ...overrides,
    };
  }
}

/** Streams delivered on each routed path. */
const PUBLIC_STREAM = /@(depth|bookTicker)/;
const MARKET_STREAM = /@(aggTrade|markPrice|forceOrder)/;

interface ConnectionState {
  readonly route: "public" | "market" | "legacy";
  readonly combined: boolean;
  readonly streams: Set<string>;
  readonly messageTimes: number[];
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

export class FakeBinanceFutures {
  readonly exchange: FakeExchange;
  readonly markets = new Map<string, FakeMarket>();
  readonly random: () => number;
  /** Every depth snapshot served, with the time it was served. */
  readonly snapshotsServed: Array<{ symbol: string; lastUpdateId: number; at: number }> = [];
  /** Every REST request with its arrival time (performance.now()). */
  readonly restLog: Array<{ path: string; status: number; at: number }> = [];
  /** Connections closed by the server for exceeding the incoming message limit. */
  readonly rateLimitCloses: FakeConnection[] = [];
  /** Queued faults for the next depth requests, consumed in order. */
  readonly depthFaults: RestFault[] = [];
  /** Runs inside the depth handler before the snapshot is taken (e.g. to place it mid-event). */
  beforeSnapshot: ((market: FakeMarket) => void) | undefined;
  /** Runs inside the depth handler after the snapshot is taken, before the response is sent. */
  afterSnapshot: ((market: FakeMarket) => void) | undefined;
  /** X-MBX-USED-WEIGHT-1M sent with REST responses (added to by each request's weight, reset each minute). */
  usedWeight = 0;
  private weightMinute = Math.floor(Date.now() / 60_000);
  /** When true the server sends nothing at all (no data, no responses): a stale feed. */
  silent = false;
  /** The next this-many SUBSCRIBE requests are swallowed: no answer, nothing subscribed (a lost request). */
  swallowSubscribes = 0;
  /** SUBSCRIBE requests naming one of these streams are rejected with this error. */
  readonly rejectedStreams = new Map<string, { code: number; msg: string }>();
  private readonly state = new Map<FakeConnection, ConnectionState>();
  private updateId = 1_000_000;
  private readonly heldDepth = new Map<string, DepthFrame>();

  private readonly listedWithoutMarket: readonly string[];

  private constructor(options: FakeBinanceOptions) {
    this.exchange = FakeExchange.start();
    this.listedWithoutMarket = options.listedWithoutMarket ?? [];
    this.random = seededRandom(options.seed ?? 1);
    const limit = options.incomingMessageLimit ?? 10;
    let mid = 650_000;
    for (const symbol of options.symbols ?? ["BTCUSDT"]) {
      this.markets.set(symbol, new FakeMarket(symbol, this, mid));
      mid = Math.round(mid / 3);
    }
    this.exchange.onConnection((connection) => this.onConnection(connection));
    this.exchange.onMessage((connection, text) => this.onMessage(connection, text, limit));
    this.exchange.rest("GET", "/fapi/v1/depth", (request) => this.depth(request));
    this.exchange.rest("GET", "/fapi/v1/exchangeInfo", () => this.exchangeInfo());
  }

  static start(options: FakeBinanceOptions = {}): FakeBinanceFutures {
    return new FakeBinanceFutures(options);
  }

  /** Environment pointing the connector at this fake. */
  get env(): Record<string, string> {
    return {
      XTRADER_BINANCE_FUTURES_WS_URL: this.exchange.wsUrl(),
      XTRADER_BINANCE_FUTURES_REST_URL: this.exchange.httpUrl,
    };
  }

  market(symbol = "BTCUSDT"): FakeMarket {
    const market = this.markets.get(symbol);
    if (!market) throw new Error(`fake Binance has no market ${symbol}`);
    return market;
  }

  /** Update ids are global across symbols (they jump), like the venue's. */
  nextUpdateId(): number {
    this.updateId += 1 + Math.floor(this.random() * 3);
    return this.updateId;
  }

  async stop(): Promise<void> {
    await this.exchange.stop();
  }

  // ── market data ──

  /** Sends `payload` on `stream` to every connection subscribed on the right path; returns receivers. */
  publish(stream: string, payload: unknown): number {
    if (this.silent) return 0;
    let delivered = 0;
    for (const [connection, state] of this.state) {
      if (!connection.open || !state.streams.has(stream) || !routeCarries(state.route, stream)) continue;
      connection.send(state.combined ? { stream, data: payload } : payload);
      delivered++;
    }
    return delivered;
  }

  /** Generates `updates` random book updates for a symbol and publishes them as one depth event. */
  depthStep(symbol = "BTCUSDT", updates = 1 + Math.floor(this.random() * 4)): DepthFrame | undefined {
    const market = this.market(symbol);
    for (let i = 0; i < updates; i++) market.randomUpdate(this.random);
    return this.flushDepth(symbol);
  }

  /** Publishes the event being built for a symbol (depth and bookTicker). */
  flushDepth(symbol = "BTCUSDT"): DepthFrame | undefined {
    const market = this.market(symbol);
    const frame = market.takeEvent();
    if (!frame) return undefined;
    const held = this.heldDepth.get(symbol);
    if (held) {
      // Reordering fault: the held event goes out after this one.
      this.heldDepth.delete(symbol);
      this.publish(`${market.lowerSymbol}@depth@100ms`, frame);
      this.publish(`${market.lowerSymbol}@depth@100ms`, held);
    } else {
      this.publish(`${market.lowerSymbol}@depth@100ms`, frame);
    }
    const ticker = market.bookTickerFrame();
    market.bookTickers.push({ frame: ticker, delivered: this.publish(`${market.lowerSymbol}@bookTicker`, ticker) });
    return frame;
  }

  trade(symbol = "BTCUSDT", overrides: Partial<AggTradeFrame> = {}): AggTradeFrame {
    const market = this.market(symbol);
    const frame = market.tradeFrame(this.random, overrides);
    const delivered = this.publish(`${market.lowerSymbol}@aggTrade`, frame);
    market.trades.push({ frame, delivered });
    return frame;
  }

  markPrice(symbol = "BTCUSDT", overrides: Partial<MarkPriceFrame> = {}): MarkPriceFrame {
    const market = this.market(symbol);
    const now = Date.now();
    const frame: MarkPriceFrame = {
      e: "markPriceUpdate",
      E: now,
      s: symbol,
      p: "65001.23456789",
      i: "64998.76543210",
      P: "64999.00000000",
      r: "0.00010000",
      T: Math.ceil(now / 28_800_000) * 28_800_000,
      ...overrides,
    };
    this.publish(`${market.lowerSymbol}@markPrice@1s`, frame);
    return frame;
  }

  forceOrder(symbol = "BTCUSDT", overrides: Partial<ForceOrderFrame["o"]> = {}): ForceOrderFrame {
    const market = this.market(symbol);
    const now = Date.now();
    const frame: ForceOrderFrame = {
      e: "forceOrder",
      E: now,
      o: {
        s: symbol,
        S: "SELL",
        o: "LIMIT",
        f: "IOC",
        q: "0.014",
        p: "64900.0",
        ap: "64950.5",
        X: "FILLED",
        l: "0.014",
        z: "0.014",
        T: now - 1,
        ...overrides,
      },
    };
    this.publish(`${market.lowerSymbol}@forceOrder`, frame);
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
    const market = this.market(symbol);
    for (let i = 0; i < 2; i++) market.randomUpdate(this.random);
    const frame = market.takeEvent();
    if (frame) this.heldDepth.set(symbol, frame);
  }

  /**
   * A corrupt depth event in sequence: it carries a bid at the best ask, which the true book never had.
   * Its ids are consumed so the sequence itself stays intact.
   */
  sendCrossedDepth(symbol = "BTCUSDT"): DepthFrame {
    const market = this.market(symbol);
    const ask = market.bestAsk()!;
    const id = this.nextUpdateId();
    market.lastUpdateId = id;
    const now = Date.now();
    const frame: DepthFrame = {
      e: "depthUpdate",
      E: now,
      T: now - 1,
      s: symbol,
      U: id,
      u: id,
      pu: market.lastEventFinalId,
      b: [[priceText(ask), "1.000"]],
      a: [],
    };
    market.lastEventFinalId = id;
    market.depthEvents.push(frame);
    this.publish(`${market.lowerSymbol}@depth@100ms`, frame);
    return frame;
  }

  /** Sends a raw text frame to every open connection on a route ("public", "market" or both). */
  sendRaw(text: string, route: "public" | "market" | "all" = "all"): void {
    for (const [connection, state] of this.state) {
      if (connection.open && (route === "all" || state.route === route)) connection.send(text);
    }
  }

  pingAll(): void {
    for (const connection of this.exchange.openConnections()) connection.ping();
  }

  /** Closes every open connection with a close frame (e.g. 1000 at the 24 h mark, 1008 policy). */
  closeAll(code = 1000, reason = ""): void {
    for (const connection of this.exchange.openConnections()) connection.close(code, reason);
  }

  terminateAll(): void {
    this.exchange.terminateAll();
  }

  failNextDepth(...faults: RestFault[]): void {
    this.depthFaults.push(...faults);
  }

  /** Open connections on a route, with the streams they are subscribed to. */
  subscriptions(route?: "public" | "market"): Array<{ connection: FakeConnection; streams: string[] }> {
    const out: Array<{ connection: FakeConnection; streams: string[] }> = [];
    for (const [connection, state] of this.state) {
      if (connection.open && (route === undefined || state.route === route)) {
        out.push({ connection, streams: [...state.streams] });
      }
    }
    return out;
  }

  /** Resolves once `count` open connections are subscribed to `stream`. */
  waitForSubscribers(stream: string, count = 1, timeoutMs = 5000): Promise<true> {
    return this.exchange.waitFor(
      () => this.subscriptions().filter((entry) => entry.streams.includes(stream)).length >= count || undefined,
      timeoutMs,
      `${count} subscriber(s) of ${stream}`,
    );
  }

  // ── protocol ──

  private onConnection(connection: FakeConnection): void {
    const [, first, second] = connection.path.split("/");
    const routed = first === "public" || first === "market";
    const mode = routed ? second : first;
    const streams = new Set<string>();
    // Raw /ws/<a>/<b> and combined /stream?streams=<a>/<b> name streams in the URL.
    const inPath = connection.path.split("/").slice(routed ? 3 : 2).join("/");
    for (const name of [...inPath.split("/"), ...(connection.query.get("streams")?.split("/") ?? [])]) {
      if (name) streams.add(name);
    }
    this.state.set(connection, {
      route: routed ? (first as "public" | "market") : "legacy",
      combined: mode === "stream",
      streams,
      messageTimes: [],
    });
  }

  private onMessage(connection: FakeConnection, text: string, limit: number): void {
    const state = this.state.get(connection);
    if (!state) return;
    const now = performance.now();
    state.messageTimes.push(now);
    while (state.messageTimes.length > 0 && now - state.messageTimes[0]! > 1000) state.messageTimes.shift();
    if (state.messageTimes.length > limit) {
      this.rateLimitCloses.push(connection);
      connection.close(1008, "Too many requests");
      return;
    }
    if (this.silent) return;
    let request: { method?: unknown; params?: unknown; id?: unknown };
    try {
      request = JSON.parse(text);
    } catch {
      connection.send({ code: 3, msg: "Invalid JSON: expected value at line 1 column 1", id: null });
      return;
    }
    const id = request.id;
    if (typeof id !== "number" || id < 0 || !Number.isInteger(id)) {
      connection.send({ code: 2, msg: "Invalid request: request ID must be an unsigned integer", id: null });
      return;
    }
    const params = Array.isArray(request.params) ? (request.params as unknown[]) : [];
    switch (request.method) {
      case "SUBSCRIBE": {
        if (this.swallowSubscribes > 0) {
          this.swallowSubscribes--;
          return;
        }
        for (const name of params) {
          const rejection = typeof name === "string" ? this.rejectedStreams.get(name) : undefined;
          if (typeof name !== "string" || rejection) {
            connection.send({ ...(rejection ?? { code: 2, msg: "Invalid request: invalid stream name" }), id });
            return;
          }
        }
        for (const name of params as string[]) state.streams.add(name);
        connection.send({ result: null, id });
        return;
      }
      case "UNSUBSCRIBE":
        for (const name of params) state.streams.delete(String(name));
        connection.send({ result: null, id });
        return;
      case "LIST_SUBSCRIPTIONS":
        connection.send({ result: [...state.streams], id });
        return;
      default:
        connection.send({ code: 2, msg: `Invalid request: unknown method ${String(request.method)}`, id });
    }
  }

  private depth(request: RecordedRequest): Response {
    const at = performance.now();
    const symbol = request.query.get("symbol") ?? "";
    const limit = Number(request.query.get("limit") ?? 500);
    const weight = limit <= 50 ? 2 : limit <= 100 ? 5 : limit <= 500 ? 10 : 20;
    this.spendWeight(weight);
    const fault = this.depthFaults.shift();
    if (fault) {
      this.restLog.push({ path: request.path, status: fault.status, at });
      const headers: Record<string, string> = { "X-MBX-USED-WEIGHT-1M": String(this.usedWeight) };
      if (fault.retryAfterSeconds !== undefined) headers["Retry-After"] = String(fault.retryAfterSeconds);
      const body = fault.body ?? { code: fault.status === 429 ? -1003 : -1000, msg: `fake ${fault.status}` };
      return Response.json(body, { status: fault.status, headers });
    }
    const market = this.markets.get(symbol);
    if (!market) {
      this.restLog.push({ path: request.path, status: 400, at });
      return Response.json({ code: -1121, msg: "Invalid symbol." }, { status: 400, headers: this.weightHeader() });
    }
    this.beforeSnapshot?.(market);
    const body = market.snapshot(limit);
    this.afterSnapshot?.(market);
    this.snapshotsServed.push({ symbol, lastUpdateId: body.lastUpdateId, at });
    this.restLog.push({ path: request.path, status: 200, at });
    return Response.json(body, { headers: this.weightHeader() });
  }

  private exchangeInfo(): Response {
    this.spendWeight(1);
    this.restLog.push({ path: "/fapi/v1/exchangeInfo", status: 200, at: performance.now() });
    return Response.json(
      {
        timezone: "UTC",
        serverTime: Date.now(),
        rateLimits: [{ rateLimitType: "REQUEST_WEIGHT", interval: "MINUTE", intervalNum: 1, limit: 2400 }],
        symbols: [...this.markets.keys(), ...this.listedWithoutMarket].map((symbol) => ({
          symbol,
          pair: symbol,
          contractType: "PERPETUAL",
          status: "TRADING",
          baseAsset: symbol.replace(/USDT$/, ""),
          quoteAsset: "USDT",
          marginAsset: "USDT",
        })),
      },
      { headers: this.weightHeader() },
    );
  }

  private spendWeight(weight: number): void {
    const minute = Math.floor(Date.now() / 60_000);
    if (minute !== this.weightMinute) {
      this.weightMinute = minute;
      this.usedWeight = 0;
    }
    this.usedWeight += weight;
  }

  private weightHeader(): Record<string, string> {
    return { "X-MBX-USED-WEIGHT-1M": String(this.usedWeight) };
  }
}

function routeCarries(route: ConnectionState["route"], stream: string): boolean {
  if (route === "public") return PUBLIC_STREAM.test(stream);
  if (route === "market") return MARKET_STREAM.test(stream);
  // Legacy unrouted URLs only receive /public data (https://developers.binance.com/docs/products/caas/market-data-streams).
  return PUBLIC_STREAM.test(stream);
}

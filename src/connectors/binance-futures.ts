/**
 * Binance USDⓈ-M futures: trades (aggTrade), L2 (diff depth 100 ms + REST snapshot), BBO (bookTicker),
 * funding (markPrice@1s) and liquidations (forceOrder). Venue notes: docs/venues/binance-futures.md.
 *
 * Shape: a declarative header (endpoints, channels, limits), then the connector. The pure normalizers
 * live in binance-futures-normalize.ts, the book sequence rules in kit/sequence/binance-futures.ts, the
 * depth book on the book-sync engine in binance-futures-book.ts, REST weight handling in binance-futures-rest.ts.
 */
import { msToMicros, nowMicros } from "../core/clock.ts";
import type { GapReason, MarketEvent, Stream } from "../core/events.ts";
import type { Subscription } from "../core/subscriptions.ts";
import type { ConnectorContext, ReadinessWindows } from "../core/connector.ts";
import { DepthBook, type DepthBookPort } from "./binance-futures-book.ts";
import { EVENT_KEYS, NORMALIZERS, parseDepth, tradeEvent, type DepthUpdate, type Payload } from "./binance-futures-normalize.ts";
import { scanAggTradeFrame, scanDepthFrame } from "./binance-futures-scan.ts";
import { RestWeightGate } from "./binance-futures-rest.ts";
import { RecentKeys } from "./dedup.ts";
import { snapshotBodyBytes } from "./http-body.ts";
import type { BookSyncRules } from "./kit/book-sync.ts";
import { positiveFromEnv } from "./kit/env.ts";
import type { HandoverTopic, PoolConnection, PoolLimits, PoolWire, Refusal } from "./kit/pool.ts";
import { defineVenue, type Venue } from "./kit/venue.ts";
import { VenueConnector, type VenueFeed } from "./kit/venue-connector.ts";
import type { OpenInfo } from "./websocket.ts";

// ───────────────────────────────────────── declarative header ─────────────────────────────────────────

const EXCHANGE = "BINANCE_FUTURES";

/** Defaults; XTRADER_BINANCE_FUTURES_WS_URL replaces the WebSocket root, XTRADER_BINANCE_FUTURES_REST_URL the REST root. */
export const DEFAULT_ENDPOINTS = {
  ws: "wss://fstream.binance.com",
  rest: "https://fapi.binance.com",
} as const;

/**
 * Since 2026 (legacy URLs retired 2026-04-23) USD-M market streams are routed by URL path: `/public` for
 * high-frequency data (depth, bookTicker), `/market` for regular data (aggTrade, markPrice, forceOrder).
 * A stream subscribed on the wrong path delivers nothing and reports no error.
 * https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams/Important-WebSocket-Change-Notice
 * We connect in combined mode (`/stream`), so every event arrives as {"stream": name, "data": payload}.
 */
export const ROUTE_PATHS = { public: "/public/stream", market: "/market/stream" } as const;
export type Route = keyof typeof ROUTE_PATHS;

export interface ChannelSpec {
  /** Appended to the lower-cased symbol: `btcusdt@aggTrade`. */
  readonly suffix: string;
  readonly route: Route;
  /** The payload's `e`. */
  readonly event: string;
  /** Longest normal silence of one instrument's stream; undefined = may be quiet for hours. */
  readonly staleAfterMs: number | undefined;
}

export const CHANNELS: Readonly<Record<Stream, ChannelSpec>> = {
  // Aggregated per taker order and price; the only trade stream on /market (Aggregate-Trade-Streams).
  TRADES: { suffix: "@aggTrade", route: "market", event: "aggTrade", staleAfterMs: undefined },
  L2: { suffix: "@depth@100ms", route: "public", event: "depthUpdate", staleAfterMs: 60_000 },
  BBO: { suffix: "@bookTicker", route: "public", event: "bookTicker", staleAfterMs: 60_000 },
  // Pushed every second whatever happens, so a short window is safe.
  FUNDING: { suffix: "@markPrice@1s", route: "market", event: "markPriceUpdate", staleAfterMs: 10_000 },
  // At most one push per symbol per second, and only when a liquidation happens.
  LIQUIDATIONS: { suffix: "@forceOrder", route: "market", event: "forceOrder", staleAfterMs: undefined },
};

/**
 * /readyz windows (seconds): depth and bookTicker tick many times a second on a live instrument (90 s is
 * far past any normal pause); aggTrade of a quiet instrument can go minutes without a trade; markPrice is
 * pushed every second (180 s: the same window as the other venues, kept loose); liquidations may not
 * happen for hours, so silence is no fault.
 */
const READINESS_WINDOWS: ReadinessWindows = { L2: 90, BBO: 90, TRADES: 300, FUNDING: 180, LIQUIDATIONS: undefined };

export const LIMITS = {
  /** "A single connection can listen to a maximum of 1024 streams." (Websocket Market Streams) */
  streamsPerConnection: 1024,
  /** "WebSocket connections have a limit of 10 incoming messages per second"; we use half for requests. */
  requestsPerSecond: 5,
  streamsPerSubscribeRequest: 50,
  /** A SUBSCRIBE that gets no answer in this long means a broken session: reconnect. */
  requestAnswerTimeoutMs: 10_000,
  /** "A single connection is only valid for 24 hours"; we replace connections well before. */
  connectionMaxAgeMs: 23 * 3_600_000,
  /** Spreads rollovers of connections opened together. */
  rolloverStaggerMs: 60_000,
  /** Longest a replaced connection is kept while its successor proves it delivers the same data. */
  handoverGraceMs: 5_000,
  /** LIST_SUBSCRIPTIONS sent after this much silence, so quiet connections still prove they are alive. */
  keepaliveIdleMs: 30_000,
  /** Stale window of a connection whose streams may all be quiet (the keepalive answer resets it). */
  quietConnectionStaleMs: 90_000,
  /** REQUEST_WEIGHT per minute per IP (USD-M general info); we spend at most `restWeightShare` of it. */
  restWeightPerMinute: 2_400,
  restWeightShare: 0.8,
  restTimeoutMs: 10_000,
  /**
   * The deepest snapshot the venue serves (limit 5..1000); a deeper answer is refused.
   * https://developers.binance.com/docs/derivatives/usds-margined-futures/market-data/rest-api/Order-Book
   */
  depthSnapshotLimit: 1_000,
  /** GET /fapi/v1/depth weight for limit=1000 (Order-Book). */
  depthSnapshotWeight: 20,
  exchangeInfoWeight: 1,
  /** Deltas kept while a snapshot is pending (about 8 minutes at 100 ms); the oldest are dropped beyond. */
  depthBufferEvents: 5_000,
  handoverBufferEvents: 5_000,
} as const;

/**
 * L2 on the book-sync engine (kit/book-sync.ts): a delta before the subscription's ack proves it live;
 * deltas are buffered while the REST snapshot is pending; the snapshot waits for the delta that straddles
 * it (How to manage a local order book correctly, see kit/sequence/binance-futures.ts).
 */
const BOOK_RULES: BookSyncRules = {
  idle: "await_subscription",
  bufferLimit: LIMITS.depthBufferEvents,
  whenBufferFull: "drop_oldest",
  snapshotWaitsForStraddle: true,
  snapshotSource: "rest",
  toleratesCrossedSnapshot: false,
};

const DEPTH_PATH = "/fapi/v1/depth";
const EXCHANGE_INFO_PATH = "/fapi/v1/exchangeInfo";
const KEEPALIVE_ID = 0;
const KEEPALIVE_MESSAGE = JSON.stringify({ method: "LIST_SUBSCRIPTIONS", id: KEEPALIVE_ID });

/** Extra environment knobs (tests, the fault suite, unusual deployments). */
export const ENV = {
  connectionMaxAgeMs: "XTRADER_BINANCE_FUTURES_CONNECTION_MAX_AGE_MS",
  streamsPerConnection: "XTRADER_BINANCE_FUTURES_STREAMS_PER_CONNECTION",
  staleAfterMs: "XTRADER_BINANCE_FUTURES_STALE_AFTER_MS",
  requestAnswerTimeoutMs: "XTRADER_BINANCE_FUTURES_REQUEST_TIMEOUT_MS",
} as const;

/** Perpetuals (BTCUSDT, 1000PEPEUSDT) and delivery contracts (BTCUSDT_260626). */
const SYMBOL_RULE = /^[A-Z0-9]{2,32}(_[0-9]{6})?$/;
const symbolError = (symbol: string) =>
  `invalid BINANCE_FUTURES instrument '${symbol}'; expected a USD-M futures symbol such as BTCUSDT (perpetual) or BTCUSDT_260626 (delivery)`;

/** Requests as Binance takes them: `{"method":"SUBSCRIBE","params":[stream...],"id":n}` (Live-Subscribing). */
const WIRE: PoolWire = {
  encode: (method, topics, id) => JSON.stringify({ method: method.toUpperCase(), params: topics, id }),
  label: (method) => method.toUpperCase(),
  describe: (refusal) => `${refusal.code} ${refusal.text}`,
  topicWord: "streams",
  // LIST_SUBSCRIPTIONS after silence, so quiet connections still prove they are alive.
  keepalive: (staleAfterMs) => ({ idleMs: Math.min(LIMITS.keepaliveIdleMs, Math.max(50, Math.floor(staleAfterMs / 3))), message: KEEPALIVE_MESSAGE }),
};

/** The pool's limits; the connector applies the ENV overrides. */
const POOL_LIMITS: PoolLimits = {
  topicsPerConnection: LIMITS.streamsPerConnection,
  topicsPerRequest: LIMITS.streamsPerSubscribeRequest,
  // The venue disconnects above 10 messages per second; requests go evenly at half that.
  requestBurst: 1,
  requestsPerSecond: LIMITS.requestsPerSecond,
  answerTimeoutMs: LIMITS.requestAnswerTimeoutMs,
  connectionMaxAgeMs: LIMITS.connectionMaxAgeMs,
  rolloverReason: "before Binance's 24 h limit",
  rolloverStaggerMs: LIMITS.rolloverStaggerMs,
  handoverGraceMs: LIMITS.handoverGraceMs,
  handoverBufferEvents: LIMITS.handoverBufferEvents,
};

export const binanceFutures = defineVenue({
  id: EXCHANGE,
  streams: ["TRADES", "L2", "BBO", "FUNDING", "LIQUIDATIONS"],
  readinessWindows: READINESS_WINDOWS,
  instrument: (symbol) => (SYMBOL_RULE.test(symbol) ? { native: symbol } : { error: symbolError(symbol) }),
  endpoints: DEFAULT_ENDPOINTS,
  limits: POOL_LIMITS,
  wire: WIRE,
  connector: (venue, context, subscriptions) => new BinanceFuturesConnector(venue, context, subscriptions),
});

// ──────────────────────────────────────────── connector ────────────────────────────────────────────

/** What a rollover successor holds for a feed until the switch: events, or depth updates of a book. */
type HandoverItem = MarketEvent | DepthUpdate;

/** One subscription: a pool topic named by its stream (`btcusdt@aggTrade`); dedup keys per dedup.ts. */
interface Feed extends HandoverTopic<HandoverItem>, VenueFeed {
  readonly subscription: Subscription;
  readonly stream: Stream;
  readonly channel: ChannelSpec;
  readonly book: DepthBook | undefined;
}

export class BinanceFuturesConnector extends VenueConnector<Feed, HandoverItem> {
  private readonly rest: RestWeightGate;
  private readonly staleOverrideMs: number | undefined;

  constructor(venue: Venue, context: ConnectorContext, subscriptions: readonly Subscription[]) {
    super(venue, context, { resyncWithoutBook: "gap", unsubscribeFailed: true });
    const env = context.config.env;
    const tuning = { topicsPerConnection: ENV.streamsPerConnection, connectionMaxAgeMs: ENV.connectionMaxAgeMs, answerTimeoutMs: ENV.requestAnswerTimeoutMs };
    this.pool = this.openPool({ name: EXCHANGE, limits: this.tunedLimits(venue.limits!, tuning), wire: venue.wire! });
    const stale = positiveFromEnv(env, ENV.staleAfterMs);
    this.staleOverrideMs = stale !== undefined && !Number.isNaN(stale) ? stale : undefined;
    this.rest = new RestWeightGate({
      baseUrl: venue.restUrl(env),
      log: this.log,
      name: `${EXCHANGE} REST`,
      weightPerMinute: LIMITS.restWeightPerMinute,
      budgetShare: LIMITS.restWeightShare,
      timeoutMs: LIMITS.restTimeoutMs,
      receivedAt: nowMicros,
    });
    const bookPort: DepthBookPort = {
      log: this.log,
      faults: this.faults,
      depthLimit: LIMITS.depthSnapshotLimit,
      active: (subscription) => !this.stopped && !this.feedOf.get(subscription)!.failed,
      fetchDepth: (symbol) =>
        this.rest.get(DEPTH_PATH, { symbol, limit: String(LIMITS.depthSnapshotLimit) }, LIMITS.depthSnapshotWeight, snapshotBodyBytes(LIMITS.depthSnapshotLimit)),
      emit: (subscription, event) => this.emit(subscription, event),
      fail: (subscription, why) => this.failFeed(this.feedOf.get(subscription)!, why),
    };
    const bookSync = this.bookSettings(BOOK_RULES);
    for (const subscription of subscriptions) {
      const channel = CHANNELS[subscription.stream];
      this.addFeed({
        subscription,
        subscriptions: [subscription],
        stream: subscription.stream,
        topic: `${subscription.instrument.toLowerCase()}${channel.suffix}`,
        channel,
        connection: undefined,
        failed: false,
        keys: new RecentKeys(),
        handoverKeys: [],
        handoverItems: [],
        book: subscription.stream === "L2" ? new DepthBook(bookPort, subscription, bookSync) : undefined,
      });
    }
  }

  protected override stopping(): void {
    this.rest.close();
  }

  /** Startup: the instrument list checked, then the feeds go to the pool. */
  protected async run(): Promise<void> {
    await this.verifyInstruments();
    if (!this.stopped) this.pool.open([...this.feeds.values()], (feed) => feed.channel.route);
  }

  /**
   * Unknown symbols make Binance deliver nothing without an error, so the instrument list is checked once
   * at start. If it cannot be fetched we go on: an unknown L2 symbol is still reported by the snapshot.
   */
  private async verifyInstruments(): Promise<void> {
    const result = await this.rest.get(EXCHANGE_INFO_PATH, {}, LIMITS.exchangeInfoWeight);
    if (this.stopped) return;
    const symbols = (result.body as { symbols?: unknown } | undefined)?.symbols;
    if (!result.ok || !Array.isArray(symbols)) {
      this.log.warn(`${EXCHANGE}: could not fetch the instrument list (${result.message}); subscribing without checking symbols`);
      return;
    }
    const status = new Map<string, string>();
    for (const entry of symbols as Payload[]) {
      if (typeof entry?.symbol === "string") status.set(entry.symbol, String(entry.status ?? ""));
    }
    for (const feed of this.feeds.values()) {
      const native = feed.subscription.instrument;
      const state = status.get(native);
      if (state === undefined) {
        this.failFeed(feed, `instrument '${native}' is not listed by Binance USD-M futures (${EXCHANGE_INFO_PATH})`);
      } else if (state !== "TRADING") {
        this.log.warn(`${feed.subscription.key}: Binance lists '${native}' with status ${state}; data may be sparse`);
      }
    }
  }

  override url(route: string): string {
    return `${this.wsUrl}${ROUTE_PATHS[route as Route]}`;
  }

  /** The shortest window of the connection's streams; quiet streams alone get a long one (keepalive answers reset it). */
  override staleAfterMs(feeds: readonly Feed[]): number {
    const windows = feeds.map((feed) => feed.channel.staleAfterMs).filter((ms) => ms !== undefined);
    return this.staleOverrideMs ?? (windows.length > 0 ? Math.min(...windows) : LIMITS.quietConnectionStaleMs);
  }

  // ── pool events (PoolHooks beyond the base's) ──

  /** Counted from the socket's reconnects (a first connect that failed and was retried counts too). */
  override onOpened(connection: PoolConnection, info: OpenInfo): void {
    if (info.reconnects > 0) this.countReconnects(this.pool.topicsOn(connection));
  }

  onSubscribed(feed: Feed): void {
    if (feed.book && feed.book.sync.phase === "idle") feed.book.sync.start();
  }

  onRefused(feed: Feed, refusal: Refusal): void {
    this.failFeed(feed, `Binance rejected the subscription to ${feed.topic}: ${WIRE.describe(refusal)}`);
  }

  /** The connection carrying a book was lost: it forgets everything until it is subscribed again. */
  override onLost(feed: Feed, reason: GapReason, detail: string): void {
    this.gap(feed, reason, detail);
    if (feed.book) feed.subscription.stats.resyncs++;
    feed.book?.sync.forget();
  }

  // ── frames ──

  onFrame(connection: PoolConnection, text: string, receivedAt: number): void {
    if (this.stopped) return;
    if (this.onScannedDepth(connection, text, receivedAt) || this.onScannedTrade(connection, text, receivedAt)) return;
    const message = this.parseFrame<Payload>(connection, text, "not a JSON object");
    if (!message) return;
    const name = message.stream;
    if (typeof name === "string") {
      const feed = this.feeds.get(name);
      const data = message.data as Payload | null;
      if (!feed || data === null || typeof data !== "object") {
        this.badFrame(connection, `unexpected stream '${name}'`, text);
        return;
      }
      if (feed.failed) return;
      if (data.e !== feed.channel.event) {
        this.parseError(feed, `unexpected event '${String(data.e)}' on ${name}`);
        return;
      }
      if (feed.connection === connection) {
        this.countMessage(feed, receivedAt);
        if (feed.book) this.onDepth(feed, data, receivedAt);
        else this.onEvent(feed, data, receivedAt);
      } else if (feed.connection?.successor === connection) {
        this.offerFromSuccessor(connection, feed, data, receivedAt);
      }
      return;
    }
    if ("id" in message) {
      this.onResponse(connection, message);
      return;
    }
    this.badFrame(connection, "unknown message", text);
  }

  /** A response `{"result":..,"id":..}` or an error `{"error":{"code","msg"},"id":..}`. */
  private onResponse(connection: PoolConnection, message: Payload): void {
    const id = message.id;
    if (id === KEEPALIVE_ID) return;
    // Current docs wrap errors in `error`; older futures docs show `code`/`msg` at the top level.
    const error = (message.error ?? (typeof message.code === "number" ? message : undefined)) as Payload | undefined;
    connection.answer(id as number, error ? { code: String(error.code), text: String(error.msg) } : undefined);
  }

  private onEvent(feed: Feed, data: Payload, receivedAt: number): void {
    const event = NORMALIZERS[feed.channel.event]!(data, receivedAt, feed.subscription);
    if (!event) {
      this.parseError(feed, `malformed ${feed.channel.event} event`);
      return;
    }
    this.emitKeyed(feed, EVENT_KEYS[feed.channel.event]!(data), event, feed.channel.event);
    this.pool.switchIfOverlapping(feed);
  }

  // ── L2 ──

  /**
   * The hot path: a diff-depth frame of a live feed read without JSON.parse (binance-futures-scan.ts).
   * Returns false, having done nothing, for anything else; onFrame's general path then handles it.
   */
  private onScannedDepth(connection: PoolConnection, text: string, receivedAt: number): boolean {
    const scanned = scanDepthFrame(text);
    if (!scanned) return false;
    const feed = this.feeds.get(scanned.stream);
    if (!feed?.book || feed.failed || feed.connection !== connection) return false;
    this.countMessage(feed, receivedAt);
    this.takeDepth(feed, {
      firstId: scanned.firstId,
      finalId: scanned.finalId,
      previousFinalId: scanned.previousFinalId,
      timestamp: msToMicros(scanned.transactionTime),
      receivedAt,
      bids: scanned.bids,
      asks: scanned.asks,
    });
    return true;
  }

  /** As onScannedDepth, for aggTrade frames of a live TRADES feed (the rules of normalizeTrade). */
  private onScannedTrade(connection: PoolConnection, text: string, receivedAt: number): boolean {
    const scanned = scanAggTradeFrame(text);
    if (!scanned) return false;
    const feed = this.feeds.get(scanned.stream);
    if (!feed || feed.stream !== "TRADES" || feed.failed || feed.connection !== connection) return false;
    this.countMessage(feed, receivedAt);
    const { tradeId, tradeTime, price, quantity, buyerIsMaker } = scanned;
    const trade = tradeEvent(feed.subscription, tradeId, tradeTime, price, quantity, buyerIsMaker, receivedAt);
    this.emitKeyed(feed, tradeId, trade, feed.channel.event);
    this.pool.switchIfOverlapping(feed);
    return true;
  }

  private onDepth(feed: Feed, data: Payload, receivedAt: number): void {
    const update = parseDepth(data, receivedAt);
    if (!update) {
      this.parseError(feed, "malformed depthUpdate event");
      // A delta we cannot read is a delta we missed.
      feed.book!.sync.unreadable("unreadable depth update");
      return;
    }
    this.takeDepth(feed, update);
  }

  private takeDepth(feed: Feed, update: DepthUpdate): void {
    feed.keys.take(update.finalId);
    feed.book!.sync.delta(update);
    this.pool.switchIfOverlapping(feed);
  }

  // ── rollover handover (kit/pool.ts switches feeds; the venue reads events and their keys) ──

  private offerFromSuccessor(successor: PoolConnection, feed: Feed, data: Payload, receivedAt: number): void {
    const event = feed.book ? undefined : NORMALIZERS[feed.channel.event]!(data, receivedAt, feed.subscription);
    const item: HandoverItem | undefined = feed.book ? parseDepth(data, receivedAt) : event;
    if (!item) return this.parseError(feed, `malformed ${feed.channel.event} event`);
    this.pool.offer(successor, feed, item, event ? EVENT_KEYS[feed.channel.event]!(data) : (item as DepthUpdate).finalId);
  }

  /** An event the successor held that the old connection did not deliver (PoolHooks.take). */
  take(feed: Feed, item: HandoverItem, key: number): void {
    this.countMessage(feed, (item as { receivedAt?: number }).receivedAt ?? (item as MarketEvent).localTimestamp);
    if (feed.book) {
      feed.keys.take(key);
      feed.book.sync.delta(item as DepthUpdate);
    } else {
      this.emitKeyed(feed, key, item as MarketEvent, feed.channel.event);
    }
  }
}

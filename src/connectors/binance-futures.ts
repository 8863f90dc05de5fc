/**
 * Binance USDⓈ-M futures: trades (aggTrade), L2 (diff depth 100 ms + REST snapshot), BBO (bookTicker),
 * funding (markPrice@1s) and liquidations (forceOrder). Venue notes: docs/venues/binance-futures.md.
 *
 * Shape: a declaration (endpoints, channels, limits) and the profile the connector Binance futures and
 * spot share (binance-streams.ts) runs on. The pure normalizers live in binance-futures-normalize.ts, the
 * book sequence rules in kit/sequence/binance-futures.ts, the depth book on the book-sync engine in
 * binance-futures-book.ts, REST weight handling in binance-futures-rest.ts.
 */
import type { Stream } from "../core/events.ts";
import type { ReadinessWindows } from "../core/connector.ts";
import { DepthBook } from "./binance-futures-book.ts";
import { EVENT_KEYS, NORMALIZERS, parseDepth } from "./binance-futures-normalize.ts";
import { BinanceStreamConnector, type BinanceProfile, type ChannelSpec } from "./binance-streams.ts";
import type { BookSyncRules } from "./kit/book-sync.ts";
import type { PoolLimits, PoolWire } from "./kit/pool.ts";
import { defineVenue } from "./kit/venue.ts";

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

/** A channel whose payload's `e` names its normalizer and key (binance-futures-normalize.ts). */
const channel = (suffix: string, route: Route, event: string, staleAfterMs: number | undefined): ChannelSpec => ({
  suffix,
  route,
  event,
  label: event,
  staleAfterMs,
  normalize: NORMALIZERS[event],
  key: EVENT_KEYS[event],
});

export const CHANNELS: Readonly<Record<Stream, ChannelSpec>> = {
  // Aggregated per taker order and price; the only trade stream on /market (Aggregate-Trade-Streams).
  TRADES: channel("@aggTrade", "market", "aggTrade", undefined),
  L2: channel("@depth@100ms", "public", "depthUpdate", 60_000),
  BBO: channel("@bookTicker", "public", "bookTicker", 60_000),
  // Pushed every second whatever happens, so a short window is safe.
  FUNDING: channel("@markPrice@1s", "market", "markPriceUpdate", 10_000),
  // At most one push per symbol per second, and only when a liquidation happens.
  LIQUIDATIONS: channel("@forceOrder", "market", "forceOrder", undefined),
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

const PROFILE: BinanceProfile = {
  exchange: EXCHANGE,
  venueName: "Binance USD-M futures",
  channels: CHANNELS,
  routePaths: ROUTE_PATHS,
  wire: WIRE,
  keepaliveId: KEEPALIVE_ID,
  depthPath: DEPTH_PATH,
  exchangeInfoPath: EXCHANGE_INFO_PATH,
  limits: LIMITS,
  env: ENV,
  bookRules: BOOK_RULES,
  book: (port, subscription, settings) => new DepthBook(port, subscription, settings),
  parseDepth,
  scanned: true,
};

export const binanceFutures = defineVenue({
  id: EXCHANGE,
  streams: ["TRADES", "L2", "BBO", "FUNDING", "LIQUIDATIONS"],
  readinessWindows: READINESS_WINDOWS,
  instrument: (symbol) => (SYMBOL_RULE.test(symbol) ? { native: symbol } : { error: symbolError(symbol) }),
  endpoints: DEFAULT_ENDPOINTS,
  limits: POOL_LIMITS,
  wire: WIRE,
  connector: (venue, context, subscriptions) => new BinanceStreamConnector(venue, context, subscriptions, PROFILE),
});

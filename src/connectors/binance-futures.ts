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
import { BINANCE_CLIENT_CHOICES, type BinanceLimits, type BinanceTuningNames } from "./binance-declaration.ts";
import { defineBinanceVenue, type BinanceProfile, type ChannelSpec } from "./binance-streams.ts";

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
  ...BINANCE_CLIENT_CHOICES,
  /** "A single connection can listen to a maximum of 1024 streams." (Websocket Market Streams) */
  streamsPerConnection: 1024,
  /** "WebSocket connections have a limit of 10 incoming messages per second"; we use half for requests. */
  requestsPerSecond: 5,
  streamsPerSubscribeRequest: 50,
  /** REQUEST_WEIGHT per minute per IP (USD-M general info); we spend at most `restWeightShare` of it. */
  restWeightPerMinute: 2_400,
  /**
   * The deepest snapshot the venue serves (limit 5..1000); a deeper answer is refused.
   * https://developers.binance.com/docs/derivatives/usds-margined-futures/market-data/rest-api/Order-Book
   */
  depthSnapshotLimit: 1_000,
  /** GET /fapi/v1/depth weight for limit=1000 (Order-Book). */
  depthSnapshotWeight: 20,
  exchangeInfoWeight: 1,
} as const satisfies BinanceLimits;

const DEPTH_PATH = "/fapi/v1/depth";
const EXCHANGE_INFO_PATH = "/fapi/v1/exchangeInfo";

/** Extra environment knobs (tests, the fault suite, unusual deployments). */
export const ENV = {
  connectionMaxAgeMs: "XTRADER_BINANCE_FUTURES_CONNECTION_MAX_AGE_MS",
  streamsPerConnection: "XTRADER_BINANCE_FUTURES_STREAMS_PER_CONNECTION",
  staleAfterMs: "XTRADER_BINANCE_FUTURES_STALE_AFTER_MS",
  requestAnswerTimeoutMs: "XTRADER_BINANCE_FUTURES_REQUEST_TIMEOUT_MS",
} as const satisfies BinanceTuningNames;

/** Perpetuals (BTCUSDT, 1000PEPEUSDT) and delivery contracts (BTCUSDT_260626). */
const SYMBOL_RULE = /^[A-Z0-9]{2,32}(_[0-9]{6})?$/;
const symbolError = (symbol: string) =>
  `invalid BINANCE_FUTURES instrument '${symbol}'; expected a USD-M futures symbol such as BTCUSDT (perpetual) or BTCUSDT_260626 (delivery)`;

const PROFILE: BinanceProfile = {
  exchange: EXCHANGE,
  venueName: "Binance USD-M futures",
  channels: CHANNELS,
  routePaths: ROUTE_PATHS,
  depthPath: DEPTH_PATH,
  exchangeInfoPath: EXCHANGE_INFO_PATH,
  limits: LIMITS,
  env: ENV,
  book: (port, subscription, settings) => new DepthBook(port, subscription, settings),
  parseDepth,
  scanned: true,
};

export const binanceFutures = defineBinanceVenue(PROFILE, {
  streams: ["TRADES", "L2", "BBO", "FUNDING", "LIQUIDATIONS"],
  readinessWindows: READINESS_WINDOWS,
  instrument: (symbol) => (SYMBOL_RULE.test(symbol) ? { native: symbol } : { error: symbolError(symbol) }),
  endpoints: DEFAULT_ENDPOINTS,
});

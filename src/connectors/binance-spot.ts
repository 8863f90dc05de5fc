/**
 * Binance spot: trades (raw `@trade`), L2 (diff depth 100 ms + REST snapshot), BBO (`@bookTicker`); spot
 * has no funding or liquidations. Venue notes: docs/venues/binance-spot.md.
 *
 * A declaration on the kit and a profile of the connector it shares with USDⓈ-M futures
 * (binance-streams.ts: the same SUBSCRIBE wire, combined `{"stream","data"}` frames, REST weight gate,
 * instrument check and 24 h make-before-break rollover). The pure normalizers live in
 * binance-spot-normalize.ts, the U/u rule in kit/sequence/binance-spot.ts, the book host in
 * binance-spot-book.ts.
 */
import type { ReadinessWindows } from "../core/connector.ts";
import { SpotDepthBook } from "./binance-spot-book.ts";
import { classifyControl, eventKey, normalizeBookTicker, normalizeTrade, parseDepth, STREAM_SUFFIX } from "./binance-spot-normalize.ts";
import { BINANCE_CLIENT_CHOICES, type BinanceLimits, type BinanceTuningNames } from "./binance-declaration.ts";
import { defineBinanceVenue, type BinanceProfile, type ChannelSpec } from "./binance-streams.ts";

const EXCHANGE = "BINANCE_SPOT";

/**
 * The market-data-only hosts: the same public streams and endpoints without any account feature, which
 * is all a collector needs (https://developers.binance.com/docs/binance-spot-api-docs/faqs/market_data_only).
 * XTRADER_BINANCE_SPOT_WS_URL / _REST_URL point elsewhere (e.g. wss://stream.binance.com:9443, https://api.binance.com).
 */
export const DEFAULT_ENDPOINTS = {
  ws: "wss://data-stream.binance.vision",
  rest: "https://data-api.binance.vision",
} as const;

/** Combined mode: every event arrives as {"stream": name, "data": payload} (one route on spot). */
const ROUTE_PATHS = { stream: "/stream" } as const;

const CHANNELS: Readonly<Partial<Record<"TRADES" | "L2" | "BBO", ChannelSpec>>> = {
  // Raw trades: every fill with its own id `t` (an aggregate would merge the fills of one taker order).
  TRADES: { suffix: STREAM_SUFFIX.TRADES, route: "stream", event: "trade", label: "trade", staleAfterMs: undefined, normalize: normalizeTrade, key: eventKey },
  L2: { suffix: STREAM_SUFFIX.L2, route: "stream", event: "depthUpdate", label: "depthUpdate", staleAfterMs: 60_000 },
  // bookTicker payloads carry no `e` (Individual Symbol Book Ticker Streams): undefined is what they must hold.
  BBO: { suffix: STREAM_SUFFIX.BBO, route: "stream", event: undefined, label: "bookTicker", staleAfterMs: 60_000, normalize: normalizeBookTicker, key: eventKey },
};

/** /readyz windows (seconds), as on futures: depth and bookTicker tick many times a second, trades may pause for minutes; spot has no funding or liquidations. */
const READINESS_WINDOWS: ReadinessWindows = { L2: 90, BBO: 90, TRADES: 300, FUNDING: undefined, LIQUIDATIONS: undefined };

/** https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams (WebSocket Limits, General WSS information). */
export const LIMITS = {
  ...BINANCE_CLIENT_CHOICES,
  /** "A single connection can listen to a maximum of 1024 streams." */
  streamsPerConnection: 1024,
  /**
   * "5 incoming messages per second", ping, pong and JSON control messages alike (closed beyond, IPs
   * closed repeatedly may be banned): requests go evenly at 3 a second, leaving room for the pong that
   * answers the server's ping every 20 s and for a keepalive.
   */
  requestsPerSecond: 3,
  streamsPerSubscribeRequest: 50,
  /** REQUEST_WEIGHT 6000 per minute per IP (rest-api/limits); we spend at most `restWeightShare` of it. */
  restWeightPerMinute: 6_000,
  /**
   * 1000 levels at weight 50, not 5000 at 250 (Order book: 5 up to 100, 25 up to 500, 50 up to 1000, 250
   * up to 5000; https://developers.binance.com/docs/binance-spot-api-docs/rest-api/market-data-endpoints):
   * resyncing 100 books takes about a minute of the budget instead of five, and levels past 1000 are
   * learnt as soon as they change. The same depth as BINANCE_FUTURES, so basis studies start alike.
   */
  depthSnapshotLimit: 1_000,
  depthSnapshotWeight: 50,
  /** GET /api/v3/exchangeInfo weight (General endpoints, Exchange information). */
  exchangeInfoWeight: 20,
} as const satisfies BinanceLimits;

/** Extra environment knobs (tests, the fault suite, unusual deployments). */
export const ENV = {
  connectionMaxAgeMs: "XTRADER_BINANCE_SPOT_CONNECTION_MAX_AGE_MS",
  streamsPerConnection: "XTRADER_BINANCE_SPOT_STREAMS_PER_CONNECTION",
  staleAfterMs: "XTRADER_BINANCE_SPOT_STALE_AFTER_MS",
  requestAnswerTimeoutMs: "XTRADER_BINANCE_SPOT_REQUEST_TIMEOUT_MS",
} as const satisfies BinanceTuningNames;

const SYMBOL_RULE = /^[A-Z0-9]{2,32}$/;
const symbolError = (symbol: string) => `invalid BINANCE_SPOT instrument '${symbol}'; expected a Binance spot symbol such as BTCUSDT or ETHBTC`;

const PROFILE: BinanceProfile = {
  exchange: EXCHANGE,
  venueName: "Binance spot",
  channels: CHANNELS,
  routePaths: ROUTE_PATHS,
  depthPath: "/api/v3/depth",
  exchangeInfoPath: "/api/v3/exchangeInfo",
  limits: LIMITS,
  env: ENV,
  book: (port, subscription, settings) => new SpotDepthBook(port, subscription, settings),
  parseDepth,
  // The scanned readers know the futures layouts only (`T`, `pu`, aggTrade); spot frames take JSON.parse.
  scanned: false,
  // "A serverShutdown event will be sent when the server is about to shutdown": replace the connection now.
  notice: (message) => (classifyControl(message).kind === "shutdown" ? "rollover" : undefined),
};

export const binanceSpot = defineBinanceVenue(PROFILE, {
  streams: ["TRADES", "L2", "BBO"],
  readinessWindows: READINESS_WINDOWS,
  instrument: (symbol) => (SYMBOL_RULE.test(symbol) ? { native: symbol } : { error: symbolError(symbol) }),
  endpoints: DEFAULT_ENDPOINTS,
});

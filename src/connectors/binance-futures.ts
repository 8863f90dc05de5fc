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
import { gapEvent } from "../core/events.ts";
import { FaultLog } from "../core/fault-log.ts";
import type { Subscription } from "../core/subscriptions.ts";
import { DepthBook, type DepthBookPort } from "./binance-futures-book.ts";
import { EVENT_KEYS, NORMALIZERS, parseDepth, tradeEvent, type DepthUpdate, type Payload } from "./binance-futures-normalize.ts";
import { scanAggTradeFrame, scanDepthFrame } from "./binance-futures-scan.ts";
import { RestWeightGate } from "./binance-futures-rest.ts";
import { RecentKeys } from "./dedup.ts";
import { endpoint } from "./endpoints.ts";
import { closeGap, describeClose } from "./kit/close-gap.ts";
import { positiveFromEnv } from "./kit/env.ts";
import { TokenBucket } from "./kit/rate.ts";
import { PendingRequests } from "./kit/requests.ts";
import { isolateRefusedBatch } from "./kit/refused-batch.ts";
import type { BookSyncRules } from "./kit/book-sync.ts";
import { resyncBrakeFromEnv } from "./kit/resync-brake.ts";
import { snapshotBodyBytes } from "./http-body.ts";
import type { Connector, ConnectorContext, ExchangeSpec, ReadinessWindows } from "../core/connector.ts";
import { backoffFromEnv, ReconnectingSocket, type BackoffOptions, type CloseInfo, type OpenInfo } from "./websocket.ts";

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

export const binanceFutures: ExchangeSpec = {
  id: EXCHANGE,
  streams: ["TRADES", "L2", "BBO", "FUNDING", "LIQUIDATIONS"],
  readinessWindows: READINESS_WINDOWS,
  nativeInstrument: (symbol) =>
    SYMBOL_RULE.test(symbol)
      ? { native: symbol }
      : {
          error: `invalid BINANCE_FUTURES instrument '${symbol}'; expected a USD-M futures symbol such as BTCUSDT (perpetual) or BTCUSDT_260626 (delivery)`,
        },
  create: (context, subscriptions) => new BinanceFuturesConnector(context, subscriptions),
};

// ──────────────────────────────────────────── connector state ────────────────────────────────────────────

/** One subscription as the connector sees it. */
interface Feed {
  readonly subscription: Subscription;
  readonly stream: Stream;
  readonly streamName: string;
  readonly channel: ChannelSpec;
  /** The connection whose events are used (during a rollover, its successor's events wait in `handover`). */
  connection: StreamConnection | undefined;
  failed: boolean;
  /**
   * Keys (trade id, update id, event time) recently taken from the primary connection: repeats of them are
   * dropped, a key below the last that was not taken is a reset (dedup.ts).
   */
  readonly keys: RecentKeys;
  /** Events from the successor connection awaiting the switch (keys and payloads). */
  handoverKeys: number[];
  handoverItems: Array<MarketEvent | DepthUpdate>;
  readonly book: DepthBook | undefined;
}

/** One WebSocket connection on one route, carrying up to LIMITS.streamsPerConnection streams. */
class StreamConnection {
  /** Streams this connection subscribes (on every (re)open). */
  readonly streams = new Set<string>();
  /** Streams the venue acknowledged on the current connection. */
  readonly acked = new Set<string>();
  successor: StreamConnection | undefined;
  predecessor: StreamConnection | undefined;
  readonly socket: ReconnectingSocket;
  /** Requests waiting for their answer; one unanswered for the timeout means a broken session: reconnect. */
  private readonly pending: PendingRequests<number, { method: string; streams: string[] }>;
  private readonly outbox: Array<{ id: number; text: string }> = [];
  private nextRequestId = 1;
  /** The venue disconnects above 10 messages per second; we send at most LIMITS.requestsPerSecond. */
  private readonly rate = new TokenBucket(1, LIMITS.requestsPerSecond);
  private pacer: ReturnType<typeof setTimeout> | undefined;
  private rolloverTimer: ReturnType<typeof setTimeout> | undefined;
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly owner: BinanceFuturesConnector,
    readonly route: Route,
    readonly name: string,
    readonly index: number,
    url: string,
    staleAfterMs: number,
    backoff: BackoffOptions,
  ) {
    this.pending = new PendingRequests(owner.requestAnswerTimeoutMs, (_id, request) => {
      if (!this.socket.isOpen) return;
      this.owner.log.warn(`${this.name}: no answer to ${request.method} within ${this.owner.requestAnswerTimeoutMs / 1000} s`);
      this.socket.reconnect(`${request.method} not answered`);
    });
    this.socket = new ReconnectingSocket({
      name,
      url: () => url,
      log: owner.log,
      staleAfterMs,
      backoff,
      maxFrameBytes: owner.maxFrameBytes,
      keepalive: { idleMs: Math.min(LIMITS.keepaliveIdleMs, Math.max(50, Math.floor(staleAfterMs / 3))), message: KEEPALIVE_MESSAGE },
      onOpen: (info) => this.onOpen(info),
      onMessage: (data, receivedAt) => owner.onFrame(this, data, receivedAt),
      onClose: (info) => this.onClose(info),
    });
  }

  start(): void {
    this.socket.start();
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.clearTimers();
      await this.socket.stop();
    })();
    return this.stopping;
  }

  get isStopping(): boolean {
    return this.stopping !== undefined;
  }

  subscribe(streams: readonly string[]): void {
    for (let i = 0; i < streams.length; i += LIMITS.streamsPerSubscribeRequest) {
      this.request("SUBSCRIBE", streams.slice(i, i + LIMITS.streamsPerSubscribeRequest));
    }
  }

  unsubscribe(streams: readonly string[]): void {
    if (this.socket.isOpen && streams.length > 0) this.request("UNSUBSCRIBE", [...streams]);
  }

  /** Handles a response `{"result":..,"id":..}` or an error `{"error":{"code","msg"},"id":..}`. */
  onResponse(message: Payload): void {
    const id = message.id;
    if (id === KEEPALIVE_ID) return;
    const request = typeof id === "number" ? this.pending.take(id) : undefined;
    if (!request) {
      this.owner.log.debug(`${this.name}: response to unknown request ${String(id)}`);
      return;
    }
    // Current docs wrap errors in `error`; older futures docs show `code`/`msg` at the top level.
    const error = (message.error ?? (typeof message.code === "number" ? message : undefined)) as Payload | undefined;
    if (error) {
      this.owner.onRequestRejected(this, request.method, request.streams, `${String(error.code)} ${String(error.msg)}`);
      return;
    }
    if (request.method === "SUBSCRIBE") {
      for (const stream of request.streams) this.acked.add(stream);
      this.owner.onAcked(this, request.streams);
    }
  }

  private request(method: string, streams: string[]): void {
    const id = this.nextRequestId++;
    this.pending.add(id, { method, streams }, true);
    this.outbox.push({ id, text: JSON.stringify({ method, params: streams, id }) });
    this.pump();
  }

  /** Sends queued requests in order, as fast as the rate allows. */
  private pump(): void {
    if (this.pacer !== undefined || this.outbox.length === 0) return;
    const wait = this.rate.take();
    this.pacer = setTimeout(() => {
      this.pacer = undefined;
      if (wait > 0) return this.pump();
      const next = this.outbox.shift();
      if (next === undefined) return;
      if (!this.socket.send(next.text)) {
        // Closed: everything is resent on reopen.
        this.outbox.length = 0;
        return;
      }
      this.pending.sent(next.id);
      this.pump();
    }, wait);
  }

  private onOpen(info: OpenInfo): void {
    this.acked.clear();
    this.pending.clear();
    this.outbox.length = 0;
    this.subscribe([...this.streams]);
    clearTimeout(this.rolloverTimer);
    const maxAge = this.owner.connectionMaxAgeMs;
    const stagger = Math.min(LIMITS.rolloverStaggerMs * this.index, maxAge / 10);
    this.rolloverTimer = setTimeout(() => this.owner.rollover(this), Math.max(1, maxAge - stagger));
    this.owner.onConnectionOpen(this, info);
  }

  private onClose(info: CloseInfo): void {
    this.clearTimers();
    this.acked.clear();
    this.pending.clear();
    this.outbox.length = 0;
    this.owner.onConnectionClose(this, info);
  }

  private clearTimers(): void {
    this.pending.clear();
    clearTimeout(this.pacer);
    this.pacer = undefined;
    clearTimeout(this.rolloverTimer);
  }
}

// ─────────────────────────────────────────────── connector ───────────────────────────────────────────────

export class BinanceFuturesConnector implements Connector {
  readonly log: ConnectorContext["log"];
  readonly connectionMaxAgeMs: number;
  readonly requestAnswerTimeoutMs: number;
  readonly maxFrameBytes: number;
  private readonly feeds = new Map<string, Feed>();
  private readonly feedOf = new Map<Subscription, Feed>();
  private readonly connections = new Set<StreamConnection>();
  private readonly timers = new Set<ReturnType<typeof setTimeout>>();
  private readonly rest: RestWeightGate;
  private readonly wsRoot: string;
  private readonly backoff: BackoffOptions;
  private readonly streamsPerConnection: number;
  private readonly staleOverrideMs: number | undefined;
  /** Repeating faults (parse errors, resyncs, snapshot failures, id resets), one log line per episode. */
  private readonly faults: FaultLog;
  /** What the depth books need of this connector. */
  private readonly bookPort: DepthBookPort;
  private connectionCount = 0;
  private started = false;
  private stopped = false;

  constructor(
    private readonly context: ConnectorContext,
    subscriptions: readonly Subscription[],
  ) {
    this.log = context.log;
    this.faults = new FaultLog(context.log);
    const env = context.config.env;
    this.maxFrameBytes = context.config.maxFrameBytes;
    this.wsRoot = endpoint(env, EXCHANGE, "WS", DEFAULT_ENDPOINTS.ws);
    this.backoff = backoffFromEnv(env);
    this.connectionMaxAgeMs = this.setting(env, ENV.connectionMaxAgeMs, LIMITS.connectionMaxAgeMs);
    this.requestAnswerTimeoutMs = this.setting(env, ENV.requestAnswerTimeoutMs, LIMITS.requestAnswerTimeoutMs);
    this.streamsPerConnection = Math.min(
      LIMITS.streamsPerConnection,
      Math.floor(this.setting(env, ENV.streamsPerConnection, LIMITS.streamsPerConnection)),
    );
    const stale = positiveFromEnv(env, ENV.staleAfterMs);
    this.staleOverrideMs = stale !== undefined && !Number.isNaN(stale) ? stale : undefined;
    this.rest = new RestWeightGate({
      baseUrl: endpoint(env, EXCHANGE, "REST", DEFAULT_ENDPOINTS.rest),
      log: this.log,
      name: `${EXCHANGE} REST`,
      weightPerMinute: LIMITS.restWeightPerMinute,
      budgetShare: LIMITS.restWeightShare,
      timeoutMs: LIMITS.restTimeoutMs,
      receivedAt: nowMicros,
    });
    this.bookPort = {
      log: this.log,
      faults: this.faults,
      depthLimit: LIMITS.depthSnapshotLimit,
      active: (subscription) => !this.stopped && !this.feedOf.get(subscription)!.failed,
      fetchDepth: (symbol) =>
        this.rest.get(DEPTH_PATH, { symbol, limit: String(LIMITS.depthSnapshotLimit) }, LIMITS.depthSnapshotWeight, snapshotBodyBytes(LIMITS.depthSnapshotLimit)),
      emit: (subscription, event) => this.emit(subscription, event),
      fail: (subscription, why) => this.failFeed(this.feedOf.get(subscription)!, why),
    };
    const bookSync = { rules: BOOK_RULES, brake: resyncBrakeFromEnv(env), retry: this.backoff };
    for (const subscription of subscriptions) {
      const channel = CHANNELS[subscription.stream];
      const feed: Feed = {
        subscription,
        stream: subscription.stream,
        streamName: `${subscription.instrument.toLowerCase()}${channel.suffix}`,
        channel,
        connection: undefined,
        failed: false,
        keys: new RecentKeys(),
        handoverKeys: [],
        handoverItems: [],
        book: subscription.stream === "L2" ? new DepthBook(this.bookPort, subscription, bookSync) : undefined,
      };
      this.feeds.set(feed.streamName, feed);
      this.feedOf.set(subscription, feed);
    }
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    void this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    this.rest.close();
    for (const feed of this.feeds.values()) feed.book?.sync.forget();
    await Promise.all([...this.connections].map((connection) => connection.stop()));
    this.faults.flush();
  }

  resync(subscription: Subscription, reason: GapReason, detail: string): void {
    const feed = this.feedOf.get(subscription);
    if (!feed || feed.failed || this.stopped) return;
    if (!feed.book) {
      // Only books have state to rebuild; other streams just record that data was lost.
      this.gap(feed, reason, detail);
      return;
    }
    // Paced by the pipeline itself (it waits for the queue to drain), so not braked.
    feed.book.sync.restart(reason, detail, false);
  }

  // ── startup ──

  private async run(): Promise<void> {
    await this.verifyInstruments();
    if (this.stopped) return;
    const byRoute = new Map<Route, Feed[]>();
    for (const feed of this.feeds.values()) {
      if (feed.failed) continue;
      const list = byRoute.get(feed.channel.route) ?? [];
      list.push(feed);
      byRoute.set(feed.channel.route, list);
    }
    for (const [route, feeds] of byRoute) {
      for (let i = 0; i < feeds.length; i += this.streamsPerConnection) {
        const group = feeds.slice(i, i + this.streamsPerConnection);
        const connection = this.createConnection(route, group.map((feed) => feed.streamName));
        for (const feed of group) feed.connection = connection;
        connection.start();
      }
    }
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
      this.log.warn(
        `${EXCHANGE}: could not fetch the instrument list (${result.message}); subscribing without checking symbols`,
      );
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

  private createConnection(route: Route, streams: readonly string[]): StreamConnection {
    const index = this.connectionCount++;
    const windows = streams.map((name) => this.feeds.get(name)!.channel.staleAfterMs).filter((ms) => ms !== undefined);
    const staleAfterMs = this.staleOverrideMs ?? (windows.length > 0 ? Math.min(...windows) : LIMITS.quietConnectionStaleMs);
    const connection = new StreamConnection(
      this,
      route,
      `${EXCHANGE} ${route}#${index + 1}`,
      index,
      `${this.wsRoot}${ROUTE_PATHS[route]}`,
      staleAfterMs,
      this.backoff,
    );
    for (const stream of streams) connection.streams.add(stream);
    this.connections.add(connection);
    return connection;
  }

  // ── connection events ──

  onConnectionOpen(connection: StreamConnection, info: OpenInfo): void {
    if (info.reconnects === 0 || this.stopped) return;
    for (const feed of this.feedsOn(connection)) feed.subscription.stats.reconnects++;
  }

  onAcked(connection: StreamConnection, streams: readonly string[]): void {
    if (this.stopped) return;
    for (const name of streams) {
      const feed = this.feeds.get(name);
      if (feed?.book && feed.connection === connection && feed.book.sync.phase === "idle") feed.book.sync.start();
    }
    const predecessor = connection.predecessor;
    const allAcked = [...connection.streams].every((name) => connection.acked.has(name) || this.feeds.get(name)?.failed);
    if (predecessor && allAcked) {
      // Everything after this moment reaches both connections; give in-flight events time to arrive.
      const grace = Math.min(LIMITS.handoverGraceMs, Math.max(50, this.connectionMaxAgeMs / 2));
      this.later(grace, () => this.completeHandover(predecessor, connection));
    }
  }

  onRequestRejected(connection: StreamConnection, method: string, streams: readonly string[], why: string): void {
    if (method !== "SUBSCRIBE") {
      this.log.warn(`${connection.name}: ${method} of ${streams.join(", ")} rejected: ${why}`);
      return;
    }
    const isolated = isolateRefusedBatch(
      { items: streams },
      () => this.log.warn(`${connection.name}: SUBSCRIBE of ${streams.length} streams rejected (${why}); retrying one by one`),
      (stream) => connection.subscribe([stream]),
    );
    if (isolated) return;
    const feed = this.feeds.get(streams[0]!);
    if (feed) this.failFeed(feed, `Binance rejected the subscription to ${streams[0]}: ${why}`);
  }

  onConnectionClose(connection: StreamConnection, info: CloseInfo): void {
    const gap = closeGap(info, this.stopped, (close) => describeClose(close, connection.name));
    if (!gap) return;
    const successor = connection.successor;
    for (const feed of this.feedsOn(connection)) {
      if (successor && successor.acked.has(feed.streamName)) {
        // The successor was subscribed while this one was alive: it has every later event. No gap.
        this.switchFeed(feed, successor);
        continue;
      }
      this.gap(feed, gap.reason, gap.detail);
      if (feed.book) this.forgetBook(feed);
      if (successor) {
        // The successor takes over at once instead of this connection reconnecting.
        feed.subscription.stats.reconnects++;
        this.switchFeed(feed, successor);
      }
    }
    if (connection.predecessor) {
      // A successor lost mid-handover: what it buffered for feeds still on the old connection is stale.
      for (const feed of this.feedsOn(connection.predecessor)) {
        feed.handoverKeys.length = 0;
        feed.handoverItems.length = 0;
      }
    }
    if (successor) this.retire(connection);
  }

  /** Opens the replacement of a connection nearing Binance's 24 h limit; the old one stays until handover. */
  rollover(connection: StreamConnection): void {
    if (this.stopped || connection.successor || connection.isStopping || !connection.socket.isOpen) return;
    const streams = [...connection.streams].filter((name) => !this.feeds.get(name)?.failed);
    if (streams.length === 0) return;
    const successor = this.createConnection(connection.route, streams);
    connection.successor = successor;
    successor.predecessor = connection;
    this.log.info(`${connection.name}: replacing the connection before Binance's 24 h limit (by ${successor.name})`);
    successor.start();
  }

  // ── frames ──

  onFrame(connection: StreamConnection, text: string, receivedAt: number): void {
    if (this.stopped) return;
    if (this.onScannedDepth(connection, text, receivedAt) || this.onScannedTrade(connection, text, receivedAt)) return;
    let message: Payload;
    try {
      message = JSON.parse(text);
    } catch {
      this.badFrame(connection, "malformed JSON", text);
      return;
    }
    if (message === null || typeof message !== "object") {
      this.badFrame(connection, "not a JSON object", text);
      return;
    }
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
        feed.subscription.stats.messages++;
        feed.subscription.stats.lastMessageAt = receivedAt;
        if (feed.book) this.onDepth(feed, data, receivedAt);
        else this.onEvent(feed, data, receivedAt);
      } else if (feed.connection?.successor === connection) {
        this.offerFromSuccessor(connection, feed, data, receivedAt);
      }
      return;
    }
    if ("id" in message) {
      connection.onResponse(message);
      return;
    }
    this.badFrame(connection, "unknown message", text);
  }

  private onEvent(feed: Feed, data: Payload, receivedAt: number): void {
    const event = NORMALIZERS[feed.channel.event]!(data, receivedAt, feed.subscription);
    if (!event) {
      this.parseError(feed, `malformed ${feed.channel.event} event`);
      return;
    }
    this.emitKeyed(feed, EVENT_KEYS[feed.channel.event]!(data), event);
    this.switchIfOverlapping(feed);
  }

  /** The old connection delivered what the successor already buffered: the successor has everything after. */
  private switchIfOverlapping(feed: Feed): void {
    const successor = feed.connection?.successor;
    if (successor && feed.handoverKeys.length > 0 && feed.handoverKeys[0]! <= feed.keys.last) this.switchFeed(feed, successor);
  }

  /**
   * Emits unless the event repeats one taken moments ago (handover overlap, a re-sent frame). A key below
   * the last one that was never taken is a reset (dedup.ts): the event is kept after an `id_reset` gap.
   */
  private emitKeyed(feed: Feed, key: number, event: MarketEvent): void {
    const last = feed.keys.last;
    const verdict = feed.keys.take(key);
    if (verdict === "duplicate") return;
    if (verdict === "reset") {
      const detail = `${feed.channel.event} key ${key} is below the last key ${last} and was not seen before: the venue's ids went back, or the last one was too high`;
      this.faults.report(`reset:${feed.streamName}`, `${feed.subscription.key}: ${detail}; kept, marked by a gap row`);
      this.gap(feed, "id_reset", detail);
    }
    this.emit(feed.subscription, event);
  }

  // ── L2 ──

  /**
   * The hot path: a diff-depth frame of a live feed read without JSON.parse (binance-futures-scan.ts).
   * Returns false, having done nothing, for anything else; onFrame's general path then handles it.
   */
  private onScannedDepth(connection: StreamConnection, text: string, receivedAt: number): boolean {
    const scanned = scanDepthFrame(text);
    if (!scanned) return false;
    const feed = this.feeds.get(scanned.stream);
    if (!feed?.book || feed.failed || feed.connection !== connection) return false;
    feed.subscription.stats.messages++;
    feed.subscription.stats.lastMessageAt = receivedAt;
    const update: DepthUpdate = {
      firstId: scanned.firstId,
      finalId: scanned.finalId,
      previousFinalId: scanned.previousFinalId,
      timestamp: msToMicros(scanned.transactionTime),
      receivedAt,
      bids: scanned.bids,
      asks: scanned.asks,
    };
    feed.keys.take(update.finalId);
    this.consumeDepth(feed, update);
    this.switchIfOverlapping(feed);
    return true;
  }

  /** As onScannedDepth, for aggTrade frames of a live TRADES feed (the rules of normalizeTrade). */
  private onScannedTrade(connection: StreamConnection, text: string, receivedAt: number): boolean {
    const scanned = scanAggTradeFrame(text);
    if (!scanned) return false;
    const feed = this.feeds.get(scanned.stream);
    if (!feed || feed.stream !== "TRADES" || feed.failed || feed.connection !== connection) return false;
    feed.subscription.stats.messages++;
    feed.subscription.stats.lastMessageAt = receivedAt;
    const { tradeId, tradeTime, price, quantity, buyerIsMaker } = scanned;
    this.emitKeyed(feed, tradeId, tradeEvent(feed.subscription, tradeId, tradeTime, price, quantity, buyerIsMaker, receivedAt));
    this.switchIfOverlapping(feed);
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
    feed.keys.take(update.finalId);
    this.consumeDepth(feed, update);
    this.switchIfOverlapping(feed);
  }

  private consumeDepth(feed: Feed, update: DepthUpdate): void {
    feed.book!.sync.delta(update);
  }

  /** The connection carrying this book was lost: forget everything until it is subscribed again. */
  private forgetBook(feed: Feed): void {
    feed.subscription.stats.resyncs++;
    feed.book!.sync.forget();
  }

  // ── rollover handover ──

  private offerFromSuccessor(successor: StreamConnection, feed: Feed, data: Payload, receivedAt: number): void {
    let key: number;
    let item: MarketEvent | DepthUpdate | undefined;
    if (feed.book) {
      item = parseDepth(data, receivedAt);
      key = item?.finalId ?? 0;
    } else {
      item = NORMALIZERS[feed.channel.event]!(data, receivedAt, feed.subscription);
      key = item ? EVENT_KEYS[feed.channel.event]!(data) : 0;
    }
    if (!item) {
      this.parseError(feed, `malformed ${feed.channel.event} event`);
      return;
    }
    if (key <= feed.keys.last || feed.handoverKeys.length >= LIMITS.handoverBufferEvents) {
      // The successor delivered something the old connection already did: from here on it has everything.
      this.switchFeed(feed, successor);
      if (!feed.keys.has(key)) this.takeFromPrimary(feed, item, key);
      return;
    }
    feed.handoverKeys.push(key);
    feed.handoverItems.push(item);
  }

  /** Makes `successor` the feed's connection and replays what it buffered that the old one did not deliver. */
  private switchFeed(feed: Feed, successor: StreamConnection): void {
    const previous = feed.connection;
    if (previous === successor) return;
    feed.connection = successor;
    previous?.streams.delete(feed.streamName);
    const keys = feed.handoverKeys;
    const items = feed.handoverItems;
    feed.handoverKeys = [];
    feed.handoverItems = [];
    for (let i = 0; i < items.length; i++) {
      if (!feed.keys.has(keys[i]!)) this.takeFromPrimary(feed, items[i]!, keys[i]!);
    }
    if (previous && previous.successor === successor && previous.streams.size === 0) this.retire(previous);
  }

  private takeFromPrimary(feed: Feed, item: MarketEvent | DepthUpdate, key: number): void {
    feed.subscription.stats.messages++;
    feed.subscription.stats.lastMessageAt = (item as { receivedAt?: number }).receivedAt ?? (item as MarketEvent).localTimestamp;
    if (feed.book) {
      feed.keys.take(key);
      this.consumeDepth(feed, item as DepthUpdate);
    } else {
      this.emitKeyed(feed, key, item as MarketEvent);
    }
  }

  private completeHandover(predecessor: StreamConnection, successor: StreamConnection): void {
    if (this.stopped || predecessor.successor !== successor || !successor.socket.isOpen) return;
    for (const feed of this.feedsOn(predecessor)) this.switchFeed(feed, successor);
    this.retire(predecessor);
  }

  /** Closes a replaced connection; its feeds have moved to the successor. */
  private retire(connection: StreamConnection): void {
    const successor = connection.successor;
    if (successor?.predecessor === connection) successor.predecessor = undefined;
    connection.successor = undefined;
    this.connections.delete(connection);
    if (!connection.isStopping) this.log.info(`${connection.name}: handed over to ${successor?.name ?? "its successor"}; closing`);
    void connection.stop();
  }

  // ── failures and helpers ──

  private failFeed(feed: Feed, why: string): void {
    if (feed.failed) return;
    feed.failed = true;
    this.log.error(`${feed.subscription.key}: ${why}; this subscription stops, the others continue`);
    this.gap(feed, "subscription_error", why);
    feed.book?.sync.forget();
    const connection = feed.connection;
    if (connection) {
      connection.streams.delete(feed.streamName);
      connection.successor?.streams.delete(feed.streamName);
      connection.unsubscribe([feed.streamName]);
      if (connection.streams.size === 0 && !connection.successor && !connection.predecessor) {
        this.connections.delete(connection);
        void connection.stop();
      }
    }
  }

  private feedsOn(connection: StreamConnection): Feed[] {
    const out: Feed[] = [];
    for (const name of connection.streams) {
      const feed = this.feeds.get(name);
      if (feed && !feed.failed && feed.connection === connection) out.push(feed);
    }
    return out;
  }

  private gap(feed: Feed, reason: GapReason, detail: string): void {
    this.emit(feed.subscription, gapEvent(feed.subscription, reason, detail));
  }

  private emit(subscription: Subscription, event: MarketEvent): void {
    if (!this.stopped) this.context.emit(subscription, event);
  }

  private parseError(feed: Feed, what: string): void {
    feed.subscription.stats.parseErrors++;
    this.faults.report(`parse:${feed.streamName}`, `${feed.subscription.key}: ${what}; skipped (counted as a parse error)`);
  }

  /** A frame that belongs to no subscription counts against every subscription of its connection. */
  private badFrame(connection: StreamConnection, what: string, text: string): void {
    for (const feed of this.feedsOn(connection)) feed.subscription.stats.parseErrors++;
    this.faults.report(`frame:${connection.name}`, `${connection.name}: ${what}: ${text.slice(0, 120)}; skipped (counted as a parse error)`);
  }

  private later(ms: number, action: () => void): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (!this.stopped) action();
    }, ms);
    this.timers.add(timer);
  }

  private setting(env: Readonly<Record<string, string | undefined>>, name: string, fallback: number): number {
    const value = positiveFromEnv(env, name);
    if (value === undefined) return fallback;
    if (Number.isNaN(value)) {
      this.log.warn(`${name}='${env[name]}' is not a positive number; using ${fallback}`);
      return fallback;
    }
    return value;
  }
}

/**
 * Binance USDⓈ-M futures: trades (aggTrade), L2 (diff depth 100 ms + REST snapshot), BBO (bookTicker),
 * funding (markPrice@1s) and liquidations (forceOrder). Venue notes: docs/venues/binance-futures.md.
 *
 * Shape: a declarative header (endpoints, channels, limits), then the connector. The pure normalizers
 * live in binance-futures-normalize.ts, the book sequence rules in kit/sequence/binance-futures.ts, REST
 * weight handling in binance-futures-rest.ts.
 */
import { msToMicros, nowMicros } from "../core/clock.ts";
import { errorMessage } from "../core/errors.ts";
import type { BookChange, GapReason, MarketEvent, Stream } from "../core/events.ts";
import { gapEvent } from "../core/events.ts";
import { FaultLog } from "../core/fault-log.ts";
import { OrderBook } from "../core/order-book.ts";
import type { Subscription } from "../core/subscriptions.ts";
import { DepthSequencer } from "./kit/sequence/binance-futures.ts";
import {
  depthDelta,
  EVENT_KEYS,
  NORMALIZERS,
  parseDepth,
  parseSnapshot,
  SIZING,
  tradeEvent,
  type DepthSnapshot,
  type DepthUpdate,
  type Payload,
} from "./binance-futures-normalize.ts";
import { scanAggTradeFrame, scanDepthFrame } from "./binance-futures-scan.ts";
import { RestWeightGate, type RestResult } from "./binance-futures-rest.ts";
import { RecentKeys } from "./dedup.ts";
import { positiveFromEnv } from "./kit/env.ts";
import {
  ConnectionPool,
  type PoolConnection,
  type PoolHooks,
  type PoolLimits,
  type HandoverTopic,
  type PoolWire,
  type Refusal,
} from "./kit/pool.ts";
import { Timers } from "./kit/timers.ts";
import { defineVenue, type Venue } from "./kit/venue.ts";
import { ResyncBrake, resyncBrakeFromEnv, type ResyncBrakeOptions } from "./kit/resync-brake.ts";
import { snapshotBodyBytes } from "./http-body.ts";
import type { Connector, ConnectorContext, ReadinessWindows } from "../core/connector.ts";
import { backoffDelay, backoffFromEnv, type BackoffOptions, type OpenInfo } from "./websocket.ts";

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

const DEPTH_PATH = "/fapi/v1/depth";
const EXCHANGE_INFO_PATH = "/fapi/v1/exchangeInfo";
/** Binance's "Invalid symbol." error code. */
const INVALID_SYMBOL = -1121;
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
  instrument: (symbol) =>
    SYMBOL_RULE.test(symbol)
      ? { native: symbol }
      : {
          error: `invalid BINANCE_FUTURES instrument '${symbol}'; expected a USD-M futures symbol such as BTCUSDT (perpetual) or BTCUSDT_260626 (delivery)`,
        },
  endpoints: DEFAULT_ENDPOINTS,
  limits: POOL_LIMITS,
  wire: WIRE,
  connector: (venue, context, subscriptions) => new BinanceFuturesConnector(venue, context, subscriptions),
});

// ──────────────────────────────────────────── connector state ────────────────────────────────────────────

type BookPhase = "idle" | "syncing" | "live";

/** Local book and sync state of one L2 subscription. */
interface BookState {
  phase: BookPhase;
  readonly sequencer: DepthSequencer;
  readonly local: OrderBook;
  /** Deltas received while the snapshot is pending or not yet straddled. */
  buffer: DepthUpdate[];
  /** The snapshot waiting for its straddling delta (emitted together with it). */
  held: DepthSnapshot | undefined;
  /** A snapshot request is queued, in flight or waiting to be retried. */
  requesting: boolean;
  /** Bumped whenever pending snapshot results must be ignored (connection lost, stopped). */
  generation: number;
  /** Consecutive failed snapshot requests (a gap is emitted on the first). */
  failures: number;
  /** Spaces out the snapshots of a book that keeps resyncing. */
  readonly brake: ResyncBrake;
}

/** What a rollover successor holds for a feed until the switch: events, or depth updates of a book. */
type HandoverItem = MarketEvent | DepthUpdate;

/**
 * One subscription as the connector sees it: a pool topic (its stream name; its dedup keys are the trade
 * id, update id or event time, dedup.ts).
 */
interface Feed extends HandoverTopic<HandoverItem> {
  readonly subscription: Subscription;
  readonly stream: Stream;
  /** The topic: `btcusdt@aggTrade`. */
  readonly streamName: string;
  readonly channel: ChannelSpec;
  readonly book: BookState | undefined;
}

// ─────────────────────────────────────────────── connector ───────────────────────────────────────────────

export class BinanceFuturesConnector implements Connector, PoolHooks<Feed, HandoverItem> {
  readonly log: ConnectorContext["log"];
  private readonly backoff: BackoffOptions;
  private readonly feeds = new Map<string, Feed>();
  private readonly feedOf = new Map<Subscription, Feed>();
  private readonly pool: ConnectionPool<Feed, HandoverItem>;
  private readonly timers = new Timers();
  private readonly rest: RestWeightGate;
  private readonly wsRoot: string;
  private readonly resyncBrake: ResyncBrakeOptions;
  private readonly staleOverrideMs: number | undefined;
  /** Repeating faults (parse errors, resyncs, snapshot failures, id resets), one log line per episode. */
  private readonly faults: FaultLog;
  private started = false;
  private stopped = false;

  constructor(
    venue: Venue,
    private readonly context: ConnectorContext,
    subscriptions: readonly Subscription[],
  ) {
    this.log = context.log;
    this.faults = new FaultLog(context.log);
    const env = context.config.env;
    this.wsRoot = venue.wsUrl(env);
    this.backoff = backoffFromEnv(env);
    this.resyncBrake = resyncBrakeFromEnv(env);
    const limits = venue.limits!;
    const topicsPerConnection = Math.min(
      limits.topicsPerConnection,
      Math.floor(this.setting(env, ENV.streamsPerConnection, limits.topicsPerConnection)),
    );
    this.pool = new ConnectionPool(this, {
      name: EXCHANGE,
      context,
      limits: {
        ...limits,
        topicsPerConnection,
        connectionMaxAgeMs: this.setting(env, ENV.connectionMaxAgeMs, limits.connectionMaxAgeMs!),
        answerTimeoutMs: this.setting(env, ENV.requestAnswerTimeoutMs, limits.answerTimeoutMs!),
      },
      wire: venue.wire!,
      topics: this.feeds,
    });
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
    for (const subscription of subscriptions) {
      const channel = CHANNELS[subscription.stream];
      const name = `${subscription.instrument.toLowerCase()}${channel.suffix}`;
      const feed: Feed = {
        subscription,
        stream: subscription.stream,
        topic: name,
        streamName: name,
        channel,
        connection: undefined,
        failed: false,
        keys: new RecentKeys(),
        handoverKeys: [],
        handoverItems: [],
        book:
          subscription.stream === "L2"
            ? {
                phase: "idle",
                sequencer: new DepthSequencer(),
                local: new OrderBook(),
                buffer: [],
                held: undefined,
                requesting: false,
                generation: 0,
                failures: 0,
                brake: new ResyncBrake(this.resyncBrake),
              }
            : undefined,
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
    this.timers.clear();
    this.rest.close();
    await this.pool.stop();
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
    this.restartBook(feed, reason, detail, false);
  }

  // ── startup ──

  private async run(): Promise<void> {
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

  url(route: string): string {
    return `${this.wsRoot}${ROUTE_PATHS[route as Route]}`;
  }

  /** The shortest window of the connection's streams; quiet streams alone get a long one (keepalive answers reset it). */
  staleAfterMs(feeds: readonly Feed[]): number {
    const windows = feeds.map((feed) => feed.channel.staleAfterMs).filter((ms) => ms !== undefined);
    return this.staleOverrideMs ?? (windows.length > 0 ? Math.min(...windows) : LIMITS.quietConnectionStaleMs);
  }

  // ── pool events (PoolHooks) ──

  onOpened(connection: PoolConnection, info: OpenInfo): void {
    if (info.reconnects === 0) return;
    for (const feed of this.pool.topicsOn(connection)) feed.subscription.stats.reconnects++;
  }

  onReconnected(feed: Feed): void {
    if (!this.stopped) feed.subscription.stats.reconnects++;
  }

  onSubscribed(feed: Feed): void {
    if (feed.book && feed.book.phase === "idle") this.startSync(feed);
  }

  onRefused(feed: Feed, refusal: Refusal): void {
    this.failFeed(feed, `Binance rejected the subscription to ${feed.streamName}: ${WIRE.describe(refusal)}`);
  }

  onFailed(feed: Feed, why: string): void {
    this.failFeed(feed, why);
  }

  onLost(feed: Feed, reason: GapReason, detail: string): void {
    this.gap(feed, reason, detail);
    if (feed.book) this.forgetBook(feed);
  }

  // ── frames ──

  onFrame(connection: PoolConnection, text: string, receivedAt: number): void {
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
    this.emitKeyed(feed, EVENT_KEYS[feed.channel.event]!(data), event);
    this.pool.switchIfOverlapping(feed);
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
  private onScannedDepth(connection: PoolConnection, text: string, receivedAt: number): boolean {
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
    this.pool.switchIfOverlapping(feed);
    return true;
  }

  /** As onScannedDepth, for aggTrade frames of a live TRADES feed (the rules of normalizeTrade). */
  private onScannedTrade(connection: PoolConnection, text: string, receivedAt: number): boolean {
    const scanned = scanAggTradeFrame(text);
    if (!scanned) return false;
    const feed = this.feeds.get(scanned.stream);
    if (!feed || feed.stream !== "TRADES" || feed.failed || feed.connection !== connection) return false;
    feed.subscription.stats.messages++;
    feed.subscription.stats.lastMessageAt = receivedAt;
    const { tradeId, tradeTime, price, quantity, buyerIsMaker } = scanned;
    this.emitKeyed(feed, tradeId, tradeEvent(feed.subscription, tradeId, tradeTime, price, quantity, buyerIsMaker, receivedAt));
    this.pool.switchIfOverlapping(feed);
    return true;
  }

  private onDepth(feed: Feed, data: Payload, receivedAt: number): void {
    const update = parseDepth(data, receivedAt);
    if (!update) {
      this.parseError(feed, "malformed depthUpdate event");
      // A delta we cannot read is a delta we missed.
      if (feed.book!.phase === "live") this.restartBook(feed, "sequence", "unreadable depth update");
      return;
    }
    feed.keys.take(update.finalId);
    this.consumeDepth(feed, update);
    this.pool.switchIfOverlapping(feed);
  }

  private consumeDepth(feed: Feed, update: DepthUpdate): void {
    const book = feed.book!;
    if (book.phase === "idle") {
      // Data before the acknowledgement (or none came): the subscription is evidently live.
      this.startSync(feed);
    }
    const verdict = book.sequencer.check(update.firstId, update.finalId, update.previousFinalId);
    switch (verdict) {
      case "buffer":
        if (book.buffer.length >= LIMITS.depthBufferEvents) book.buffer.shift();
        book.buffer.push(update);
        return;
      case "stale":
        return;
      case "snapshot_too_old":
        // The snapshot is older than the first delta we hold: fetch a newer one (nothing was emitted).
        const stale = `depth snapshot ${book.sequencer.position} predates the stream (delta U=${update.firstId})`;
        this.log.debug(`${feed.subscription.key}: ${stale}; refetching`);
        book.held = undefined;
        book.sequencer.reset();
        book.buffer.push(update);
        this.requestSnapshot(feed, stale);
        return;
      case "gap": {
        const detail = `depth update pu=${update.previousFinalId} does not follow u=${book.sequencer.position}`;
        this.restartBook(feed, "sequence", detail);
        book.buffer.push(update);
        return;
      }
      case "backwards": {
        const detail = `depth update u=${update.finalId} is below the last applied u=${book.sequencer.position} and was not applied before`;
        this.restartBook(feed, "id_reset", detail);
        book.buffer.push(update);
        return;
      }
      case "covered":
        // Its every update is in the snapshot (u == lastUpdateId): the snapshot alone is that state.
        if (book.phase === "syncing") this.goLive(feed, update);
        return;
      case "apply":
        if (book.phase === "syncing") this.goLive(feed, update);
        if (book.phase === "live") this.applyDelta(feed, update);
    }
  }

  /**
   * Emits the held snapshot; `first` is the delta that straddles it. The snapshot's rows carry the time
   * of the state they hold: the REST body's `T` (or `E`) is the time of the response, which can be
   * later than `first`'s own transaction time (Order Book: "E: Message output time, T: Transaction
   * time", https://developers.binance.com/docs/derivatives/usds-margined-futures/market-data/rest-api/Order-Book),
   * while the state at lastUpdateId is no later than `first`, which ends at or after it. So that
   * ordering rows by (timestamp, sequence) replays the snapshot before `first`, the snapshot gets the
   * earlier of the two.
   */
  private goLive(feed: Feed, first: DepthUpdate): void {
    const book = feed.book!;
    const snapshot = book.held!;
    book.held = undefined;
    book.local.apply(snapshot.bids, snapshot.asks, true);
    if (book.local.isCrossed()) {
      this.restartBook(feed, "crossed_book", `REST snapshot ${snapshot.lastUpdateId} is crossed`);
      return;
    }
    book.phase = "live";
    this.emit(feed.subscription, {
      type: "book_change",
      exchange: EXCHANGE,
      symbol: feed.subscription.symbol,
      timestamp: Math.min(snapshot.timestamp, first.timestamp),
      localTimestamp: snapshot.receivedAt,
      isSnapshot: true,
      sequence: snapshot.lastUpdateId,
      bids: snapshot.bids,
      asks: snapshot.asks,
      amountUnit: SIZING.amountUnit,
      contractValue: SIZING.contractValue,
    } satisfies BookChange);
  }

  private applyDelta(feed: Feed, update: DepthUpdate): void {
    const book = feed.book!;
    book.local.apply(update.bids, update.asks);
    if (book.local.isCrossed()) {
      const detail = `book crossed after u=${update.finalId} (bid ${book.local.bids.best()} >= ask ${book.local.asks.best()})`;
      this.restartBook(feed, "crossed_book", detail);
      return;
    }
    this.emit(feed.subscription, depthDelta(update, feed.subscription));
  }

  /**
   * `braked` is false for the first sync on a (re)subscribed connection: reconnects have their own
   * backoff, and like OKX's and Deribit's resubscriptions they are not counted as resyncs of the book.
   */
  private startSync(feed: Feed, braked = false): void {
    const book = feed.book!;
    book.phase = "syncing";
    book.buffer = [];
    book.held = undefined;
    book.sequencer.reset();
    book.local.clear();
    this.requestSnapshot(feed, undefined, braked);
  }

  /** Integrity break or external request: counted, marked, and rebuilt from a fresh snapshot. */
  private restartBook(feed: Feed, reason: GapReason, detail: string, braked = true): void {
    feed.subscription.stats.resyncs++;
    // One episode per reason across books: an overload resyncs every book at once (each has its gap row).
    this.faults.report(`resync:${reason}`, `${feed.subscription.key}: resync (${reason}: ${detail})`);
    this.gap(feed, reason, detail);
    if (feed.book!.phase === "idle") return; // the connection is down; it resyncs when it is back
    // A snapshot already in flight is kept: the sequencer rejects it if it is older than the new deltas.
    this.startSync(feed, braked);
  }

  /** The connection carrying this book was lost: forget everything until it is subscribed again. */
  private forgetBook(feed: Feed): void {
    const book = feed.book!;
    feed.subscription.stats.resyncs++;
    book.phase = "idle";
    book.generation++;
    book.requesting = false;
    book.buffer = [];
    book.held = undefined;
    book.sequencer.reset();
    book.local.clear();
  }

  /**
   * Fetches a fresh snapshot once the resync brake allows (kit/resync-brake.ts). A held-back fetch writes
   * no gap row of its own: a live book that restarted has written one already, and a book still syncing
   * keeps buffering its deltas, so nothing is missing yet. `why` names the cause in the log line;
   * `braked` is false for the pipeline's own requests, which the pipeline paces.
   */
  private requestSnapshot(feed: Feed, why: string | undefined, braked = true): void {
    const book = feed.book!;
    if (book.requesting || feed.failed || this.stopped) return;
    book.requesting = true;
    const delay = braked ? book.brake.next() : 0;
    if (delay === 0) {
      this.fetchSnapshot(feed);
      return;
    }
    feed.subscription.stats.resyncsDelayed++;
    const wait = `resync ${book.brake.count} in a row: next depth snapshot in ${Math.ceil(delay / 1000)} s`;
    this.faults.report(`brake:${feed.streamName}`, `${feed.subscription.key}: ${why ? `${why}; ` : ""}${wait}`);
    const generation = book.generation;
    this.later(delay, () => {
      if (generation === book.generation && !feed.failed) this.fetchSnapshot(feed);
    });
  }

  private fetchSnapshot(feed: Feed): void {
    const book = feed.book!;
    const generation = book.generation;
    const query = { symbol: feed.subscription.instrument, limit: String(LIMITS.depthSnapshotLimit) };
    void this.rest
      .get(DEPTH_PATH, query, LIMITS.depthSnapshotWeight, snapshotBodyBytes(LIMITS.depthSnapshotLimit))
      .then((result) => this.onSnapshot(feed, generation, result))
      .catch((error: unknown) => this.log.error(`${feed.subscription.key}: snapshot handling failed: ${errorMessage(error)}`));
  }

  private onSnapshot(feed: Feed, generation: number, result: RestResult): void {
    const book = feed.book!;
    if (this.stopped || feed.failed || generation !== book.generation) return;
    const parsed = result.ok ? parseSnapshot(result.body, result.receivedAt) : undefined;
    // The venue answers at most the depth asked for; more is a broken or hostile answer, not a book.
    const levels = parsed ? Math.max(parsed.bids.length, parsed.asks.length) / 2 : 0;
    const snapshot = levels <= LIMITS.depthSnapshotLimit ? parsed : undefined;
    if (!snapshot) {
      if (result.code === INVALID_SYMBOL) {
        this.failFeed(feed, `Binance rejected the depth snapshot for '${feed.subscription.instrument}': ${result.message}`);
        return;
      }
      const why = parsed
        ? `${levels} levels a side, more than the ${LIMITS.depthSnapshotLimit} asked for`
        : result.ok ? "malformed snapshot body" : result.message;
      if (parsed || result.oversized) feed.subscription.stats.parseErrors++;
      book.failures++;
      if (book.failures === 1) this.gap(feed, "snapshot_failed", `depth snapshot failed: ${why}; retrying`);
      const delay = Math.max(result.retryAfterMs ?? 0, backoffDelay(this.backoff, book.failures - 1));
      this.faults.report(`snapshot:${feed.streamName}`, `${feed.subscription.key}: depth snapshot failed (${why}); retry in ${Math.ceil(delay / 1000)} s`);
      this.later(delay, () => {
        if (generation === book.generation && !feed.failed) this.fetchSnapshot(feed);
      });
      return;
    }
    book.requesting = false;
    book.failures = 0;
    if (book.phase !== "syncing") return;
    book.held = snapshot;
    book.sequencer.begin(snapshot.lastUpdateId);
    const buffered = book.buffer;
    book.buffer = [];
    for (const update of buffered) this.consumeDepth(feed, update);
  }

  // ── rollover handover (kit/pool.ts switches feeds; the venue reads events and their keys) ──

  private offerFromSuccessor(successor: PoolConnection, feed: Feed, data: Payload, receivedAt: number): void {
    let key: number;
    let item: HandoverItem | undefined;
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
    this.pool.offer(successor, feed, item, key);
  }

  /** An event the successor held that the old connection did not deliver (PoolHooks.take). */
  take(feed: Feed, item: HandoverItem, key: number): void {
    feed.subscription.stats.messages++;
    feed.subscription.stats.lastMessageAt = (item as { receivedAt?: number }).receivedAt ?? (item as MarketEvent).localTimestamp;
    if (feed.book) {
      feed.keys.take(key);
      this.consumeDepth(feed, item as DepthUpdate);
    } else {
      this.emitKeyed(feed, key, item as MarketEvent);
    }
  }

  // ── failures and helpers ──

  private failFeed(feed: Feed, why: string): void {
    if (feed.failed) return;
    feed.failed = true;
    this.log.error(`${feed.subscription.key}: ${why}; this subscription stops, the others continue`);
    this.gap(feed, "subscription_error", why);
    if (feed.book) {
      feed.book.generation++;
      feed.book.phase = "idle";
      feed.book.buffer = [];
    }
    this.pool.release(feed);
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
  private badFrame(connection: PoolConnection, what: string, text: string): void {
    for (const feed of this.pool.topicsOn(connection)) feed.subscription.stats.parseErrors++;
    this.faults.report(`frame:${connection.name}`, `${connection.name}: ${what}: ${text.slice(0, 120)}; skipped (counted as a parse error)`);
  }

  private later(ms: number, action: () => void): void {
    this.timers.later(ms, () => {
      if (!this.stopped) action();
    });
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

/**
 * OKX public market data: OKX_SWAP (perpetual swaps, `BTC-USDT-SWAP`) and OKX_SPOT (`BTC-USDT`).
 *
 * One public WebSocket per group of at most OKX_LIMITS.argsPerConnection channel arguments, over the
 * shared ReconnectingSocket. The instrument list (REST) is fetched once at start: it resolves common
 * forms (`BTCUSDT`) to native ids whatever the quote currency, and gives swap contract values.
 *
 * L2 (`books`, 400 levels, incremental): seqId/prevSeqId chain and CRC32 checksum (kit/sequence/okx.ts),
 * WebSocket snapshot or REST /api/v5/market/books when none comes, resubscribe on any break: okx-book.ts
 * and docs/venues/okx.md.
 */
import type { ExchangeId, Stream } from "../core/events.ts";
import type { Subscription } from "../core/subscriptions.ts";
import type { ConnectorContext, ReadinessWindows } from "../core/connector.ts";
import type { BookSyncRules } from "./kit/book-sync.ts";
import { describeClose } from "./kit/close-gap.ts";
import { positiveOr } from "./kit/env.ts";
import { groupWithin } from "./kit/grouping.ts";
import { NO_ROLLOVER, type PoolConnection, type PoolLimits, type PoolWire, type Refusal } from "./kit/pool.ts";
import { TokenBucket } from "./kit/rate.ts";
import { OKX_CHECKSUM_DEPTH } from "./kit/sequence/okx.ts";
import { defineVenue, type Venue } from "./kit/venue.ts";
import { VenueConnector, type VenueFeed } from "./kit/venue-connector.ts";
import { normalizeBbo, normalizeFunding, normalizeLiquidation, normalizeTrade, type OkxInstrumentContext } from "./okx-normalize.ts";
import { OkxBook, type BookData, type OkxBookPort } from "./okx-book.ts";
import { nativeInstrument, type InstType, type Instrument } from "./okx-instruments.ts";
import { OkxRest } from "./okx-rest.ts";
import { scanOkxBooksUpdate, type ScannedOkxBook } from "./okx-scan.ts";
import { backoffDelay, type CloseInfo } from "./websocket.ts";

// ─── Declarative header ────────────────────────────────────────────────────────────────────────────

/** Default endpoints. XTRADER_OKX_{SWAP,SPOT}_WS_URL replaces the whole WS URL, _REST_URL the origin. */
export const OKX_ENDPOINTS = {
  ws: "wss://ws.okx.com:8443/ws/v5/public",
  rest: "https://www.okx.com",
  instrumentsPath: "/api/v5/public/instruments",
  booksPath: "/api/v5/market/books",
} as const;

/** OKX channels per stream. FUNDING is two channels; liquidation-orders is per instType, filtered here. */
export const OKX_CHANNELS: Readonly<Record<Stream, readonly string[]>> = {
  TRADES: ["trades"],
  L2: ["books"],
  BBO: ["bbo-tbt"],
  FUNDING: ["funding-rate", "mark-price"],
  LIQUIDATIONS: ["liquidation-orders"],
};

/** Venue limits (https://www.okx.com/docs-v5/en/#overview-websocket) and what we allow ourselves. */
export const OKX_LIMITS = {
  /** New connections: 3 per second per IP; we start ours 400 ms apart. */
  connectSpacingMs: 400,
  /** subscribe/unsubscribe/login requests: 480 per hour per connection; we keep a margin. */
  subscribeOpsPerHour: 400,
  /** OKX recommends fewer than 30 depth channels per connection. */
  argsPerConnection: 25,
  /** REST GET /api/v5/market/books: 40 requests per 2 s per IP; we use half. */
  restBooksSpacingMs: 100,
  /**
   * REST depth per side (the maximum, `sz` of GET /api/v5/market/books; a deeper answer is refused) and
   * the depth the checksum covers. https://www.okx.com/docs-v5/en/#order-book-trading-market-data-get-order-book
   */
  bookDepth: 400,
  checksumDepth: OKX_CHECKSUM_DEPTH,
  /** Updates buffered while a REST snapshot is fetched; beyond this the fetch starts over. */
  bookBufferLimit: 10_000,
  /**
   * After a REST snapshot, updates it already holds (seqId not above its own) are dropped: the buffered
   * ones, and at most this many arriving later (the stream lagging the REST cache by a few pushes).
   * Beyond, the snapshot's seqId is taken as wrong (too high, or the ids went back): resync.
   */
  restOverlapUpdates: 100,
} as const;

/**
 * Timing. The server drops a connection silent for 30 s; we send `ping` after `keepaliveIdleMs` of
 * silence and treat the connection as stale when not even `pong` came back within `staleAfterMs`.
 * Overridable (tests, trials): XTRADER_<EXCHANGE>_KEEPALIVE_MS, _STALE_MS, _SNAPSHOT_WAIT_MS.
 */
export const OKX_TIMING = {
  keepaliveIdleMs: 20_000,
  staleAfterMs: 30_000,
  /** How long after a books subscribe ack we wait for a WebSocket snapshot before using REST. */
  snapshotWaitMs: 3_000,
  /** After a batch subscribe error, how long to wait for the acks of the good arguments. */
  batchErrorSettleMs: 300,
  restTimeoutMs: 10_000,
} as const;

/**
 * L2 on the book-sync engine (kit/book-sync.ts): the snapshot comes on the socket after a (re)subscribe
 * (REST when none comes, see okx-book.ts); updates are ignored while no snapshot is asked for, buffered
 * for a REST snapshot (starting over beyond the limit: the REST alignment needs them all); a crossed
 * snapshot is tolerated until the book uncrosses (OKX: "Best ask price may be lower than the best bid
 * price during the pre-open period", https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-tickers-channel).
 */
const BOOK_RULES: BookSyncRules = {
  idle: "ignore_deltas",
  bufferLimit: OKX_LIMITS.bookBufferLimit,
  whenBufferFull: "start_over",
  snapshotWaitsForStraddle: false,
  snapshotSource: "in_band",
  toleratesCrossedSnapshot: true,
};

/**
 * /readyz windows (seconds). A live connection is proven by pong, not by data: books and bbo-tbt send an
 * unchanged book after ~60 s idle (90 s: one missed minute plus slack); funding-rate is pushed every
 * 30-90 s (180 s: two missed pushes); trades of a quiet instrument can be silent for minutes;
 * liquidations for days, so silence is no fault.
 */
const READINESS_WINDOWS: ReadinessWindows = { L2: 90, BBO: 90, TRADES: 300, FUNDING: 180, LIQUIDATIONS: undefined };

/** Subscribe error codes worth retrying (internal error, too frequent); others fail the subscription. */
const RETRYABLE_SUBSCRIBE_CODES = new Set(["64007", "60014"]);

/** What OKX sends: an event (`subscribe`, `error`, `notice`...) or data of a channel argument, as parsed. */
type OkxArg = { channel?: unknown; instId?: unknown; instType?: unknown };
type OkxMessage = { event?: unknown; id?: unknown; code?: unknown; msg?: unknown; arg?: OkxArg; action?: unknown; data?: unknown };

// ─── Per-subscription state ────────────────────────────────────────────────────────────────────────

/** One subscription: a pool topic named by its key, subscribed as its channel arguments. */
interface SubState extends VenueFeed {
  readonly subscription: Subscription;
  readonly instrument: Instrument;
  readonly args: readonly Record<string, string>[];
  /** The book of an L2 subscription (set right after the state is built: the book refers back to it). */
  book: OkxBook<SubState> | undefined;
  /** Channel arguments not yet acknowledged since the last subscribe. */
  unacked: number;
  subscribeFailures: number;
  /** What the normalizers know of this subscription (built once, not per message). */
  readonly context: OkxInstrumentContext;
}

/** Evenly spaced across every OKX connector of the process (connection and REST limits are per IP). */
const connectPacer = new TokenBucket(1, 1000 / OKX_LIMITS.connectSpacingMs);
const restBooksPacer = new TokenBucket(1, 1000 / OKX_LIMITS.restBooksSpacingMs);
const BOOK_LIMITS = {
  bookDepth: OKX_LIMITS.bookDepth,
  restOverlapUpdates: OKX_LIMITS.restOverlapUpdates,
  checksumDepth: OKX_LIMITS.checksumDepth,
  booksPath: OKX_ENDPOINTS.booksPath,
} as const;

/** Connection limits for the pool (kit/pool.ts). */
const POOL_LIMITS: PoolLimits = {
  // Grouped by OKX's own weights (bootstrap): a subscription is one or two arguments, liquidations share one.
  topicsPerConnection: OKX_LIMITS.argsPerConnection,
  // A connection's subscriptions go out in one request, so errors can be attributed by its id.
  topicsPerRequest: Number.MAX_SAFE_INTEGER,
  // Requests are not paced but budgeted: subscribeOpsPerHour per connection; a spent budget refuses.
  requestBurst: 1_000,
  requestsPerSecond: 1_000,
  requestsPerHour: OKX_LIMITS.subscribeOpsPerHour,
  // OKX acknowledges each argument without the request's id: requests wait for no answer.
  answerTimeoutMs: undefined,
  refusedBatchSettleMs: OKX_TIMING.batchErrorSettleMs,
  ...NO_ROLLOVER,
};

// ─── Connector ─────────────────────────────────────────────────────────────────────────────────────

class OkxConnector extends VenueConnector<SubState> {
  private readonly rest: OkxRest;
  private readonly bookPort: OkxBookPort<SubState>;
  private readonly bookSync = this.bookSettings(BOOK_RULES);
  /** channel → instId (or instType) → subscriptions. */
  private readonly routes = new Map<string, Map<string, SubState[]>>();
  private readonly liquidationsByInstId = new Map<string, SubState>();

  constructor(
    venue: Venue,
    private readonly instType: InstType,
    context: ConnectorContext,
    private readonly subscriptions: readonly Subscription[],
  ) {
    const env = context.config.env;
    const exchange = venue.id;
    const staleAfterMs = positiveOr(env, `XTRADER_${exchange}_STALE_MS`, OKX_TIMING.staleAfterMs);
    super(venue, context, { staleAfterMs, resyncWithoutBook: "ignore", unsubscribeFailed: false });
    this.rest = new OkxRest(venue.restUrl(env), OKX_TIMING.restTimeoutMs);
    const connector = this;
    this.bookPort = {
      log: this.log,
      faults: this.faults,
      get stopped() {
        return connector.stopped;
      },
      snapshotWaitMs: positiveOr(env, `XTRADER_${exchange}_SNAPSHOT_WAIT_MS`, OKX_TIMING.snapshotWaitMs),
      limits: BOOK_LIMITS,
      emit: (sub, event) => this.emit(sub.subscription, event),
      emitGap: (sub, reason, detail) => this.gap(sub, reason, detail),
      parseError: (sub, what) => this.parseError(sub, what),
      resubscribe: (sub) => this.resubscribe(sub),
      reserveRest: () => restBooksPacer.reserve(),
      getJson: (path, maxBytes) => this.rest.getJson(path, maxBytes),
      delay: (ms) => this.rest.delay(ms),
    };
    this.pool = this.openPool({ name: exchange, limits: venue.limits!, wire: okxWire(exchange, this.feeds), connectPacer });
  }

  /** The server's close reason is OKX's own text: the gap names the close, not our connection. */
  describeClose(info: CloseInfo): string {
    return describeClose(info);
  }

  override onOpened(connection: PoolConnection): void {
    super.onOpened(connection);
    for (const sub of this.pool.topicsOn(connection)) {
      sub.unacked = sub.args.length;
      sub.book?.sync.subscribed();
    }
  }

  /** Unsubscribes and subscribes a book again (a fresh snapshot); false when the subscribe budget is spent. */
  private resubscribe(sub: SubState): boolean {
    if (!sub.connection?.resubscribe(sub.topic)) return false;
    sub.unacked = sub.args.length;
    return true;
  }

  /** Only the arguments not yet acknowledged are requested alone after a refused batch. */
  awaitsAck(sub: SubState): boolean {
    return sub.unacked > 0;
  }

  onRefused(sub: SubState, refusal: Refusal, connection: PoolConnection): void {
    const { code, text } = refusal;
    if (!RETRYABLE_SUBSCRIBE_CODES.has(code)) return this.failFeed(sub, `OKX refused the subscription (${code}: ${text})`);
    const delay = backoffDelay(this.backoff, sub.subscribeFailures++);
    this.log.warn(`${sub.subscription.key}: OKX subscribe error ${code} (${text}); retrying in ${delay} ms`);
    this.retryLater(sub, delay, () => {
      if (connection.subscribe([sub.topic])) sub.unacked = sub.args.length;
    });
  }

  protected override failureLine(sub: SubState, why: string): string {
    return `${sub.subscription.key}: ${why}; this subscription is stopped, the others go on`;
  }

  protected override stopping(): void {
    this.rest.close();
  }

  onFrame(connection: PoolConnection, text: string, receivedAt: number): void {
    if (text === "pong") return;
    // The dominant frame, a books update, is read without JSON.parse when it has exactly OKX's layout.
    if (text.charCodeAt(2) === 97 /* {"arg */) {
      const scanned = scanOkxBooksUpdate(text);
      if (scanned !== undefined && this.onScannedBook(scanned, receivedAt)) return;
    }
    const message = this.parseFrame<OkxMessage>(connection, text, "unexpected frame");
    if (!message) return;
    if (message.event !== undefined) this.onEvent(connection, message, text);
    else if (message.arg && Array.isArray(message.data)) this.onData(connection, message, message.data, receivedAt, text);
    else this.badFrame(connection, "unknown message", text);
  }

  /**
   * A scanned books update for a live, untracked book of one subscription: the same steps as onData →
   * onItem → OkxBook.onMessage. false (nothing done) for every other case, which the JSON path handles.
   */
  private onScannedBook(book: ScannedOkxBook, receivedAt: number): boolean {
    const subs = this.routes.get("books")?.get(book.instId);
    if (subs === undefined || subs.length !== 1) return false;
    const sub = subs[0]!, l2 = sub.book;
    if (sub.failed || l2 === undefined || l2.phase !== "live" || l2.tracking) return false;
    this.countMessage(sub, receivedAt);
    l2.onScanned(book, receivedAt);
    return true;
  }

  private routed(arg: OkxArg | undefined): SubState[] | undefined {
    if (!arg || typeof arg.channel !== "string") return undefined;
    const key = typeof arg.instId === "string" ? arg.instId : arg.instType;
    return typeof key === "string" ? this.routes.get(arg.channel)?.get(key) : undefined;
  }

  private onEvent(connection: PoolConnection, message: OkxMessage, text: string): void {
    switch (message.event) {
      case "subscribe":
        for (const sub of this.routed(message.arg) ?? []) {
          if (sub.unacked > 0) sub.unacked--;
          sub.subscribeFailures = 0;
          if (sub.book && message.arg?.channel === "books") sub.book.onAck();
        }
        return;
      case "unsubscribe":
      case "channel-conn-count":
        this.log.debug(`${connection.name}: ${text.slice(0, 200)}`);
        return;
      case "error": {
        const code = String(message.code ?? "");
        const why = String(message.msg ?? "");
        // Our ids are `b<n>` (a connection's batch) or `s<n>` (one subscription): the request's number.
        const id = typeof message.id === "string" ? Number(message.id.slice(1)) : Number.NaN;
        if (!connection.answer(id, { code, text: why })) this.log.warn(`${connection.name}: OKX error ${code}: ${why}`);
        return;
      }
      case "notice":
        // 64008: the server closes this connection within 60 s for an upgrade; move now, at a time we pick.
        this.log.warn(`${connection.name}: OKX notice ${String(message.code)}: ${String(message.msg)}`);
        if (message.code === "64008") connection.socket.reconnect("service upgrade notice 64008");
        return;
      default:
        this.badFrame(connection, `unknown event '${String(message.event)}'`);
    }
  }

  private onData(connection: PoolConnection, message: OkxMessage, data: unknown[], receivedAt: number, text: string): void {
    const channel = message.arg?.channel as string;
    if (channel === "liquidation-orders") return this.onLiquidations(connection, data, receivedAt);
    const subs = this.routed(message.arg);
    if (!subs) return this.badFrame(connection, "data for an argument we did not subscribe", text);
    for (const sub of subs) {
      if (sub.failed) continue;
      this.countMessage(sub, receivedAt);
      for (const item of data) {
        if (typeof item === "object" && item !== null) this.onItem(sub, channel, message.action, item as Record<string, unknown>, receivedAt);
        else this.badFrame(connection, `bad ${channel} item`, undefined, [sub]);
      }
    }
  }

  private onItem(sub: SubState, channel: string, action: unknown, item: Record<string, unknown>, receivedAt: number): void {
    if (channel === "books") return sub.book!.onMessage(action, item as BookData, receivedAt);
    const event =
      channel === "trades" ? normalizeTrade(item, receivedAt, sub.context)
      : channel === "bbo-tbt" ? normalizeBbo(item, receivedAt, sub.context)
      : channel === "funding-rate" || channel === "mark-price" ? normalizeFunding(channel, item, receivedAt, sub.context)
      : null;
    if (event === null) this.parseError(sub, `unexpected channel ${channel}`);
    else if (event) this.emit(sub.subscription, event);
    else this.parseError(sub, `malformed ${channel === "trades" ? "trade" : channel}`);
  }

  private onLiquidations(connection: PoolConnection, data: unknown[], receivedAt: number): void {
    for (const item of data as Array<{ instId?: unknown; details?: unknown }>) {
      const sub = typeof item?.instId === "string" ? this.liquidationsByInstId.get(item.instId) : undefined;
      if (!sub || sub.failed) continue;
      this.countMessage(sub, receivedAt);
      if (!Array.isArray(item.details)) {
        this.badFrame(connection, "liquidation without details", undefined, [sub]);
        continue;
      }
      for (const detail of item.details) {
        const event = normalizeLiquidation(detail, receivedAt, sub.context);
        if (event) this.emit(sub.subscription, event);
        else this.parseError(sub, "malformed liquidation detail");
      }
    }
  }

  // ── start-up ──

  protected async run(): Promise<void> {
    const list = await this.rest.loadInstruments(OKX_ENDPOINTS.instrumentsPath, this.instType, this.exchange, this.log, this.backoff, () => this.stopped);
    if (!list || this.stopped) return;
    const ready: SubState[] = [];
    for (const subscription of this.subscriptions) {
      const resolved = list.resolve(subscription);
      if (typeof resolved === "string") {
        this.log.error(`${subscription.key}: ${resolved}; this subscription is skipped, the others go on`);
        this.gapOf(subscription, "subscription_error", resolved);
        continue;
      }
      if (resolved.state !== "live") this.log.warn(`${subscription.key}: ${resolved.instId} is in state '${resolved.state}' on OKX`);
      const args = OKX_CHANNELS[subscription.stream].map((channel): Record<string, string> =>
        channel === "liquidation-orders" ? { channel, instType: this.instType } : { channel, instId: resolved.instId });
      const sub = this.addFeed({
        topic: subscription.key,
        subscription,
        subscriptions: [subscription],
        instrument: resolved,
        args,
        book: undefined, connection: undefined, failed: false, unacked: 0, subscribeFailures: 0,
        context: { exchange: this.exchange, symbol: subscription.symbol, sizing: resolved.sizing },
      });
      if (subscription.stream === "L2") sub.book = new OkxBook(this.bookPort, sub, this.bookSync);
      this.route(sub);
      ready.push(sub);
      this.log.debug(`${subscription.key}: ${resolved.instId} (${resolved.sizing.amountUnit} × ${resolved.sizing.contractValue})`);
    }
    // Liquidations first so they share one connection (each liquidation-orders argument is a firehose).
    const isLiquidations = (sub: SubState) => sub.subscription.stream === "LIQUIDATIONS";
    ready.sort((a, b) => Number(isLiquidations(b)) - Number(isLiquidations(a)));
    // Every LIQUIDATIONS subscription of a connection shares one liquidation-orders argument.
    const weight = (sub: SubState, group: readonly SubState[]) => (isLiquidations(sub) && group.some(isLiquidations) ? 0 : sub.args.length);
    this.pool.openGroups("public", groupWithin(ready, OKX_LIMITS.argsPerConnection, weight));
  }

  /** Registers where frames of `sub`'s arguments go. */
  private route(sub: SubState): void {
    for (const { channel, instId, instType } of sub.args) {
      const byKey = this.routes.get(channel!) ?? this.routes.set(channel!, new Map()).get(channel!)!;
      byKey.set(instId ?? instType!, [...(byKey.get(instId ?? instType!) ?? []), sub]);
    }
    if (sub.subscription.stream === "LIQUIDATIONS") this.liquidationsByInstId.set(sub.instrument.instId, sub);
  }
}

/**
 * OKX's requests: `{"id","op":"subscribe","args":[...]}` with the arguments of the named subscriptions
 * (one liquidation-orders argument serves every LIQUIDATIONS subscription of a request), and
 * `{"op":"unsubscribe","args":[...]}`; the keepalive is the text `ping` (answered by `pong`).
 * https://www.okx.com/docs-v5/en/#overview-websocket-subscribe
 */
function okxWire(exchange: ExchangeId, subs: ReadonlyMap<string, SubState>): PoolWire {
  return {
    encode: (method, topics, id, batch) => {
      const args: Record<string, string>[] = [];
      const seen = new Set<string>();
      for (const name of topics) {
        for (const arg of subs.get(name)!.args) {
          const key = `${arg.channel}:${arg.instId ?? arg.instType}`;
          if (!seen.has(key)) args.push(arg);
          seen.add(key);
        }
      }
      return method === "subscribe" ? JSON.stringify({ id: `${batch ? "b" : "s"}${id}`, op: method, args }) : JSON.stringify({ op: method, args });
    },
    label: (method) => method,
    describe: (refusal) => `${refusal.code}: ${refusal.text}`,
    topicWord: "subscriptions",
    // OKX's error to a batch may name any of its arguments: a refused connection subscribe is isolated.
    isolates: "batch",
    keepalive: (_staleAfterMs, env) => ({ idleMs: positiveOr(env, `XTRADER_${exchange}_KEEPALIVE_MS`, OKX_TIMING.keepaliveIdleMs), message: "ping" }),
  };
}

// ─── Specs ─────────────────────────────────────────────────────────────────────────────────────────

/** OKX_SWAP and OKX_SPOT: one protocol, two instrument types (spot has no funding or liquidations). */
function okxVenue(id: "OKX_SWAP" | "OKX_SPOT", instType: InstType, streams: readonly Stream[]) {
  return defineVenue({
    id,
    streams,
    readinessWindows: READINESS_WINDOWS,
    instrument: (symbol) => nativeInstrument(id, instType, symbol),
    endpoints: OKX_ENDPOINTS,
    limits: POOL_LIMITS,
    connector: (venue, context, subscriptions) => new OkxConnector(venue, instType, context, subscriptions),
  });
}

export const okxSwap = okxVenue("OKX_SWAP", "SWAP", ["TRADES", "L2", "BBO", "FUNDING", "LIQUIDATIONS"]);
export const okxSpot = okxVenue("OKX_SPOT", "SPOT", ["TRADES", "L2", "BBO"]);

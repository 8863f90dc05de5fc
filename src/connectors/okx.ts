/**
 * OKX public market data: OKX_SWAP (perpetual swaps, `BTC-USDT-SWAP`) and OKX_SPOT (`BTC-USDT`).
 *
 * One public WebSocket per group of at most OKX_LIMITS.argsPerConnection channel arguments, over the
 * shared ReconnectingSocket. The instrument list (REST) is fetched once at start: it resolves common
 * forms (`BTCUSDT`) to native ids whatever the quote currency, and gives swap contract values.
 *
 * L2 (`books`, 400 levels, incremental) integrity, see docs/venues/okx.md:
 * - the snapshot has prevSeqId = -1; every update's prevSeqId must equal the previous seqId (jumps, the
 *   idle heartbeat with seqId == prevSeqId and the downward reset after maintenance all satisfy this);
 * - checksum 0 means absent (deprecated 2026); a non-zero one is verified (CRC32 of the top 25 levels).
 *   The level texts it needs are kept only once a non-zero checksum has been seen (the first one on a book
 *   kept without them restarts that book from a snapshot);
 * - the initial WebSocket snapshot is being removed: when updates arrive without one, or none arrives in
 *   time, the snapshot comes from REST /api/v5/market/books and buffered updates are aligned by seqId;
 * - any break (sequence, checksum, crossed book, pipeline overflow) → gap event, resubscribe, fresh
 *   snapshot before any further delta.
 */
import { nowMicros } from "../core/clock.ts";
import type { ExchangeId, GapReason, MarketEvent, Stream } from "../core/events.ts";
import { gapEvent } from "../core/events.ts";
import { FaultLog } from "../core/fault-log.ts";
import type { Logger } from "../core/log.ts";
import { OrderBook } from "../core/order-book.ts";
import type { Subscription } from "../core/subscriptions.ts";
import { MAX_REST_BODY_BYTES, snapshotBodyBytes } from "./http-body.ts";
import { describeClose } from "./kit/close-gap.ts";
import { positiveOr } from "./kit/env.ts";
import { ConnectionPool, type PoolConnection, type PoolHooks, type PoolLimits, type PoolTopic, type PoolWire, type Refusal } from "./kit/pool.ts";
import { defineVenue, type Venue } from "./kit/venue.ts";
import {
  bookChange,
  flatten,
  normalizeBbo,
  normalizeFunding,
  normalizeLiquidation,
  normalizeTrade,
  okxTime,
  type Level,
  type OkxInstrumentContext,
} from "./okx-normalize.ts";
import { TokenBucket } from "./kit/rate.ts";
import { jsonBody, restGet, retryAfterMs } from "./kit/rest.ts";
import { ResyncBrake, resyncBrakeFromEnv, type ResyncBrakeOptions } from "./kit/resync-brake.ts";
import { OKX_CHECKSUM_DEPTH, okxChecksum, SeqIdChain } from "./kit/sequence/okx.ts";
import { InstrumentList, nativeInstrument, toInstrument, type InstType, type Instrument, type RawInstrument } from "./okx-instruments.ts";
import { scanOkxBooksUpdate, type ScannedOkxBook } from "./okx-scan.ts";
import type { Connector, ConnectorContext, ReadinessWindows } from "../core/connector.ts";
import { backoffDelay, backoffFromEnv, type BackoffOptions, type CloseInfo } from "./websocket.ts";

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
 * /readyz windows (seconds). A live connection is proven by pong, not by data: books and bbo-tbt send an
 * unchanged book after ~60 s idle (90 s: one missed minute plus slack); funding-rate is pushed every
 * 30-90 s (180 s: two missed pushes); trades of a quiet instrument can be silent for minutes;
 * liquidations for days, so silence is no fault.
 */
const READINESS_WINDOWS: ReadinessWindows = { L2: 90, BBO: 90, TRADES: 300, FUNDING: 180, LIQUIDATIONS: undefined };

/** Subscribe error codes worth retrying (internal error, too frequent); others fail the subscription. */
const RETRYABLE_SUBSCRIBE_CODES = new Set(["64007", "60014"]);
interface OkxArg {
  channel?: unknown;
  instId?: unknown;
  instType?: unknown;
}

interface OkxMessage {
  event?: unknown;
  id?: unknown;
  code?: unknown;
  msg?: unknown;
  arg?: OkxArg;
  action?: unknown;
  data?: unknown;
}

interface BookData {
  asks?: unknown;
  bids?: unknown;
  ts?: unknown;
  checksum?: unknown;
  prevSeqId?: unknown;
  seqId?: unknown;
}

interface BufferedUpdate {
  readonly data: BookData;
  readonly receivedAt: number;
}


// ─── Per-subscription state ────────────────────────────────────────────────────────────────────────

type BookPhase = "idle" | "awaiting" | "fetching" | "live";

class L2State {
  phase: BookPhase = "idle";
  readonly chain = new SeqIdChain();
  readonly book = new OrderBook();
  /**
   * The level arrays as received, for the checksum (no copies: references into the parsed frames). Kept
   * only while `tracking`: OKX sends checksum 0 (absent) since its deprecation, and keeping every level's
   * text for nothing would cost a Map update per level.
   */
  readonly rawBids = new Map<number, Level>();
  readonly rawAsks = new Map<number, Level>();
  /** rawBids/rawAsks are kept for this book (decided at each snapshot). */
  tracking = false;
  /** A non-zero checksum was seen on this subscription: every later snapshot is tracked. Survives forget(). */
  checksumsSeen = false;
  buffer: BufferedUpdate[] = [];
  /** Bumped whenever the book is forgotten, so a REST fetch or timer of an older episode does nothing. */
  epoch = 0;
  /** The wait for a WebSocket snapshot, or the resync brake's delay before resubscribing. */
  waitTimer: ReturnType<typeof setTimeout> | undefined;
  restFailures = 0;
  snapshotFailureMarked = false;
  /** The last snapshot itself was crossed (pre-open auction, documented by OKX): tolerate until it uncrosses. */
  crossedTolerated = false;

  /** Spaces out the resyncs of a book that keeps breaking (kit/resync-brake.ts). */
  constructor(readonly brake: ResyncBrake) {}

  forget(): void {
    this.epoch++;
    clearTimeout(this.waitTimer);
    this.waitTimer = undefined;
    this.chain.reset();
    this.book.clear();
    this.rawBids.clear();
    this.rawAsks.clear();
    this.tracking = false;
    this.buffer = [];
    this.crossedTolerated = false;
  }
}

/** One subscription: a pool topic named by its key, subscribed as its channel arguments. */
interface SubState extends PoolTopic {
  readonly subscription: Subscription;
  readonly instrument: Instrument;
  readonly args: readonly Record<string, string>[];
  readonly l2: L2State | undefined;
  /** Channel arguments not yet acknowledged since the last subscribe. */
  unacked: number;
  retryTimer: ReturnType<typeof setTimeout> | undefined;
  subscribeFailures: number;
  /** What the normalizers know of this subscription (built once, not per message). */
  readonly context: OkxInstrumentContext;
}

/** Evenly spaced across every OKX connector of the process (connection and REST limits are per IP). */
const connectPacer = new TokenBucket(1, 1000 / OKX_LIMITS.connectSpacingMs);
const restBooksPacer = new TokenBucket(1, 1000 / OKX_LIMITS.restBooksSpacingMs);

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
  connectionMaxAgeMs: undefined,
  rolloverStaggerMs: 0,
  handoverGraceMs: 0,
  handoverBufferEvents: 0,
};

// ─── Connector ─────────────────────────────────────────────────────────────────────────────────────

class OkxConnector implements Connector, PoolHooks<SubState> {
  stopped = true;
  readonly log: Logger;
  readonly backoff: BackoffOptions;
  readonly wsUrl: string;
  private readonly restUrl: string;
  private readonly staleAfterMsSetting: number;
  private readonly snapshotWaitMs: number;
  private readonly resyncBrake: ResyncBrakeOptions;
  private readonly states = new Map<Subscription, SubState>();
  /** Subscriptions by key: the pool's topics. */
  private readonly topics = new Map<string, SubState>();
  /** channel → instId (or instType) → subscriptions. */
  private readonly routes = new Map<string, Map<string, SubState[]>>();
  private readonly liquidationsByInstId = new Map<string, SubState>();
  private readonly pool: ConnectionPool<SubState>;
  private readonly aborts = new Set<AbortController>();
  private readonly sleepers = new Set<() => void>();
  private started = false;
  /** Repeating faults (unreadable frames and items), one log line per episode. */
  readonly faults: FaultLog;

  readonly exchange: ExchangeId;

  constructor(
    venue: Venue,
    private readonly instType: InstType,
    readonly context: ConnectorContext,
    private readonly subscriptions: readonly Subscription[],
  ) {
    const env = context.config.env;
    const exchange = venue.id;
    this.exchange = exchange;
    this.log = context.log;
    this.faults = new FaultLog(context.log);
    this.backoff = backoffFromEnv(env);
    this.wsUrl = venue.wsUrl(env);
    this.restUrl = venue.restUrl(env);
    this.staleAfterMsSetting = positiveOr(env, `XTRADER_${exchange}_STALE_MS`, OKX_TIMING.staleAfterMs);
    this.snapshotWaitMs = positiveOr(env, `XTRADER_${exchange}_SNAPSHOT_WAIT_MS`, OKX_TIMING.snapshotWaitMs);
    this.resyncBrake = resyncBrakeFromEnv(env);
    this.pool = new ConnectionPool(this, { name: exchange, context, limits: venue.limits!, wire: okxWire(exchange, this.topics), topics: this.topics, connectPacer });
  }

  // ── the pool's hooks (connections, requests) ──

  url(): string {
    return this.wsUrl;
  }

  staleAfterMs(): number {
    return this.staleAfterMsSetting;
  }

  /** The server's close reason is OKX's own text: the gap names the close, not our connection. */
  describeClose(info: CloseInfo): string {
    return describeClose(info);
  }

  onOpened(connection: PoolConnection): void {
    const reopened = connection.opens > 1;
    for (const sub of this.pool.topicsOn(connection)) {
      if (reopened) sub.subscription.stats.reconnects++;
      sub.unacked = sub.args.length;
      if (sub.l2) {
        sub.l2.forget();
        sub.l2.phase = "awaiting";
      }
    }
  }

  /** Only the arguments not yet acknowledged are requested alone after a refused batch. */
  awaitsAck(sub: SubState): boolean {
    return sub.unacked > 0;
  }

  onRefused(sub: SubState, refusal: Refusal, connection: PoolConnection): void {
    const { code, text } = refusal;
    if (!RETRYABLE_SUBSCRIBE_CODES.has(code)) {
      this.failSubscription(sub, `OKX refused the subscription (${code}: ${text})`);
      return;
    }
    const delay = backoffDelay(this.backoff, sub.subscribeFailures++);
    this.log.warn(`${sub.subscription.key}: OKX subscribe error ${code} (${text}); retrying in ${delay} ms`);
    clearTimeout(sub.retryTimer);
    sub.retryTimer = setTimeout(() => {
      if (!sub.failed && connection.subscribe([sub.topic])) sub.unacked = sub.args.length;
    }, delay);
  }

  onFailed(sub: SubState, why: string): void {
    this.failSubscription(sub, why);
  }

  onLost(sub: SubState, reason: GapReason, detail: string): void {
    clearTimeout(sub.retryTimer);
    if (sub.l2) {
      sub.l2.forget();
      sub.l2.phase = "idle";
    }
    this.emitGap(sub, reason, detail);
  }

  // ── frames ──

  onFrame(connection: PoolConnection, text: string, receivedAt: number): void {
    if (text === "pong") return;
    // The dominant frame, a books update, is read without JSON.parse when it has exactly OKX's layout.
    if (text.charCodeAt(2) === 97 /* {"arg */) {
      const scanned = scanOkxBooksUpdate(text);
      if (scanned !== undefined && this.onScannedBook(scanned, receivedAt)) return;
    }
    let message: OkxMessage;
    try {
      message = JSON.parse(text) as OkxMessage;
    } catch {
      this.frameError(connection, `malformed JSON: ${text.slice(0, 120)}`);
      return;
    }
    if (typeof message !== "object" || message === null) {
      this.frameError(connection, `unexpected frame: ${text.slice(0, 120)}`);
    } else if (message.event !== undefined) {
      this.onEvent(connection, message, text);
    } else if (message.arg && Array.isArray(message.data)) {
      this.onData(connection, message, message.data, receivedAt, text);
    } else {
      this.frameError(connection, `unknown message: ${text.slice(0, 120)}`);
    }
  }

  /**
   * A scanned books update for a live, untracked book of one subscription: the same steps as onData →
   * onBook → applyUpdate. false (nothing done) for every other case, which the JSON path handles.
   */
  private onScannedBook(book: ScannedOkxBook, receivedAt: number): boolean {
    const subs = this.routes.get("books")?.get(book.instId);
    if (subs === undefined || subs.length !== 1) return false;
    const sub = subs[0]!;
    const l2 = sub.l2;
    if (sub.failed || l2 === undefined || l2.phase !== "live" || l2.tracking) return false;
    const stats = sub.subscription.stats;
    stats.messages++;
    stats.lastMessageAt = receivedAt;
    this.applyScannedUpdate(sub, book, receivedAt);
    return true;
  }

  /** A frame no subscription can be blamed for: counted on every subscription of its connection. */
  private frameError(connection: PoolConnection, what: string, subs: readonly SubState[] = this.pool.topicsOn(connection)): void {
    for (const sub of subs) sub.subscription.stats.parseErrors++;
    this.faults.report(`parse:${connection.name}`, `${connection.name}: ${what}; skipped (counted as a parse error)`);
  }

  private routed(arg: OkxArg | undefined): SubState[] | undefined {
    if (!arg || typeof arg.channel !== "string") return undefined;
    const key = typeof arg.instId === "string" ? arg.instId : arg.instType;
    return typeof key === "string" ? this.routes.get(arg.channel)?.get(key) : undefined;
  }

  private onEvent(connection: PoolConnection, message: OkxMessage, text: string): void {
    switch (message.event) {
      case "subscribe": {
        for (const sub of this.routed(message.arg) ?? []) {
          if (sub.unacked > 0) sub.unacked--;
          sub.subscribeFailures = 0;
          if (sub.l2 && message.arg?.channel === "books") this.onBookAck(sub);
        }
        return;
      }
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
        this.frameError(connection, `unknown event '${String(message.event)}'`);
    }
  }

  private onData(connection: PoolConnection, message: OkxMessage, data: unknown[], receivedAt: number, text: string): void {
    const channel = message.arg?.channel;
    if (channel === "liquidation-orders") {
      this.onLiquidations(connection, data, receivedAt);
      return;
    }
    const subs = this.routed(message.arg);
    if (!subs) {
      this.frameError(connection, `data for an argument we did not subscribe: ${text.slice(0, 120)}`);
      return;
    }
    for (const sub of subs) {
      if (sub.failed) continue;
      const stats = sub.subscription.stats;
      stats.messages++;
      stats.lastMessageAt = receivedAt;
      for (const item of data) {
        if (typeof item !== "object" || item === null) {
          this.frameError(connection, `bad ${String(channel)} item`, [sub]);
          continue;
        }
        this.onItem(sub, channel as string, message.action, item as Record<string, unknown>, receivedAt);
      }
    }
  }

  private onLiquidations(connection: PoolConnection, data: unknown[], receivedAt: number): void {
    for (const item of data as Array<{ instId?: unknown; details?: unknown }>) {
      const sub = typeof item?.instId === "string" ? this.liquidationsByInstId.get(item.instId) : undefined;
      if (!sub || sub.failed) continue;
      sub.subscription.stats.messages++;
      sub.subscription.stats.lastMessageAt = receivedAt;
      if (!Array.isArray(item.details)) {
        this.frameError(connection, "liquidation without details", [sub]);
        continue;
      }
      for (const detail of item.details) this.onLiquidation(sub, detail, receivedAt);
    }
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    this.stopped = false;
    void this.bootstrap();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const abort of this.aborts) abort.abort();
    for (const wake of [...this.sleepers]) wake();
    for (const state of this.states.values()) {
      clearTimeout(state.retryTimer);
      state.l2?.forget();
    }
    await this.pool.stop();
    this.faults.flush();
  }

  /** The pipeline's request (after an overflow): paced by the pipeline itself, so not braked. */
  resync(subscription: Subscription, reason: GapReason, detail: string): void {
    const sub = this.states.get(subscription);
    if (!sub?.l2 || sub.failed || this.stopped) {
      this.log.debug(`${subscription.key}: resync (${reason}) ignored: no live book`);
      return;
    }
    this.restartBook(sub, reason, detail, false);
  }

  /** Counts, marks and forgets the book, then asks for a fresh snapshot (after the brake's delay when `braked`). */
  private restartBook(sub: SubState, reason: GapReason, detail: string, braked = true): void {
    if (!sub.l2 || sub.failed || this.stopped) return;
    const subscription = sub.subscription;
    subscription.stats.resyncs++;
    // One episode per reason across books: an overload resyncs every book at once (each has its gap row).
    this.faults.report(`resync:${reason}`, `${subscription.key}: resync (${reason}): ${detail}`);
    this.emitGap(sub, reason, detail);
    const l2 = sub.l2;
    l2.forget();
    const connection = sub.connection;
    if (!connection?.isOpen) {
      l2.phase = "idle";
      return;
    }
    const delay = braked ? l2.brake.next() : 0;
    if (delay > 0) {
      // The book keeps breaking: it stays idle (its updates ignored) until the fresh snapshot is asked for.
      l2.phase = "idle";
      subscription.stats.resyncsDelayed++;
      this.faults.report(
        `brake:${subscription.key}`,
        `${subscription.key}: resync ${l2.brake.count} in a row: fresh snapshot in ${Math.ceil(delay / 1000)} s`,
      );
      const epoch = l2.epoch;
      l2.waitTimer = setTimeout(() => {
        l2.waitTimer = undefined;
        if (l2.epoch === epoch && !sub.failed && !this.stopped) this.resubscribeBook(sub);
      }, delay);
      return;
    }
    this.resubscribeBook(sub);
  }

  /** Asks for a fresh snapshot: a resubscription, or REST when the subscribe budget is spent. */
  private resubscribeBook(sub: SubState): void {
    const l2 = sub.l2!;
    const connection = sub.connection;
    if (!connection?.isOpen) return;
    l2.phase = "awaiting";
    if (connection.resubscribe(sub.topic)) {
      sub.unacked = sub.args.length;
    } else {
      // Out of subscribe budget: keep the subscription and take the snapshot from REST instead.
      this.log.warn(`${sub.subscription.key}: subscribe budget spent; resyncing from the REST snapshot`);
      this.fetchSnapshot(sub);
    }
  }

  // ── start-up ──

  private async bootstrap(): Promise<void> {
    const list = await this.loadInstruments();
    if (!list || this.stopped) return;
    const ready: SubState[] = [];
    for (const subscription of this.subscriptions) {
      const resolved = list.resolve(subscription);
      if (typeof resolved === "string") {
        this.log.error(`${subscription.key}: ${resolved}; this subscription is skipped, the others go on`);
        this.emitGapFor(subscription, "subscription_error", resolved);
        continue;
      }
      if (resolved.state !== "live") {
        this.log.warn(`${subscription.key}: ${resolved.instId} is in state '${resolved.state}' on OKX`);
      }
      const channels = OKX_CHANNELS[subscription.stream];
      const args = channels.map(
        (channel): Record<string, string> =>
          channel === "liquidation-orders" ? { channel, instType: this.instType } : { channel, instId: resolved.instId },
      );
      const state: SubState = {
        topic: subscription.key,
        subscription,
        instrument: resolved,
        args,
        l2: subscription.stream === "L2" ? new L2State(new ResyncBrake(this.resyncBrake)) : undefined,
        connection: undefined,
        failed: false,
        unacked: 0,
        retryTimer: undefined,
        subscribeFailures: 0,
        context: { exchange: this.exchange, symbol: subscription.symbol, sizing: resolved.sizing },
      };
      this.states.set(subscription, state);
      this.topics.set(state.topic, state);
      this.route(state);
      ready.push(state);
      this.log.debug(`${subscription.key}: ${resolved.instId} (${resolved.sizing.amountUnit} × ${resolved.sizing.contractValue})`);
    }
    // Liquidations first so they share one connection (each liquidation-orders argument is a firehose).
    ready.sort((a, b) => Number(b.subscription.stream === "LIQUIDATIONS") - Number(a.subscription.stream === "LIQUIDATIONS"));
    const groups: SubState[][] = [];
    let current: SubState[] = [];
    let weight = 0;
    for (const sub of ready) {
      // Every LIQUIDATIONS subscription of a connection shares one liquidation-orders argument.
      const shared = sub.subscription.stream === "LIQUIDATIONS" && current.some((s) => s.subscription.stream === "LIQUIDATIONS");
      const cost = shared ? 0 : sub.args.length;
      if (current.length > 0 && weight + cost > OKX_LIMITS.argsPerConnection) {
        groups.push(current);
        current = [];
        weight = 0;
      }
      current.push(sub);
      weight += cost;
    }
    if (current.length > 0) groups.push(current);
    this.pool.openGroups("public", groups);
  }

  /** Registers where frames of `sub`'s arguments go. */
  private route(sub: SubState): void {
    for (const arg of sub.args) {
      const key = arg.instId ?? arg.instType!;
      const byKey = this.routes.get(arg.channel!) ?? new Map<string, SubState[]>();
      const list = byKey.get(key) ?? [];
      list.push(sub);
      byKey.set(key, list);
      this.routes.set(arg.channel!, byKey);
    }
    if (sub.subscription.stream === "LIQUIDATIONS") this.liquidationsByInstId.set(sub.instrument.instId, sub);
  }

  private async loadInstruments(): Promise<InstrumentList | undefined> {
    for (let attempt = 0; !this.stopped; attempt++) {
      const result = await this.getJson(`${OKX_ENDPOINTS.instrumentsPath}?instType=${this.instType}`);
      if (this.stopped) return undefined;
      if (result.ok && Array.isArray(result.data)) {
        const instruments: Instrument[] = [];
        for (const raw of result.data as RawInstrument[]) {
          const instrument = typeof raw === "object" && raw !== null ? toInstrument(raw, this.instType) : undefined;
          if (instrument) instruments.push(instrument);
        }
        this.log.debug(`${this.exchange}: ${instruments.length} ${this.instType} instruments`);
        return new InstrumentList(instruments, this.instType);
      }
      const delay = result.ok ? backoffDelay(this.backoff, attempt) : (result.retryAfterMs ?? backoffDelay(this.backoff, attempt));
      this.log.warn(
        `${this.exchange}: cannot load the instrument list (${result.ok ? "no data" : result.error}); nothing is collected until it loads; retrying in ${delay} ms`,
      );
      await this.delay(delay);
    }
    return undefined;
  }

  /** A sleep that stop() cuts short, so no retry timer outlives the connector. */
  private delay(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.sleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.sleepers.add(wake);
    });
  }

  // ── REST ──

  /** GET of a JSON answer; a body over `maxBytes` is not read (see http-body.ts). */
  private async getJson(
    path: string,
    maxBytes = MAX_REST_BODY_BYTES,
  ): Promise<{ ok: true; data: unknown } | { ok: false; error: string; retryAfterMs: number | undefined; oversized?: true }> {
    const abort = new AbortController();
    this.aborts.add(abort);
    const timer = setTimeout(() => abort.abort(), OKX_TIMING.restTimeoutMs);
    try {
      const answer = await restGet(`${this.restUrl}${path}`, abort.signal, maxBytes);
      if (answer.kind === "failed") return { ok: false, error: answer.error, retryAfterMs: undefined };
      if (answer.kind === "too_large") return { ok: false, error: `HTTP ${answer.status} ${answer.detail}`, retryAfterMs: undefined, oversized: true };
      const parsed = jsonBody(answer.text) as { code?: unknown; msg?: unknown; data?: unknown } | undefined;
      if (answer.ok && parsed && (parsed.code === "0" || parsed.code === 0)) return { ok: true, data: parsed.data };
      return {
        ok: false,
        error: `HTTP ${answer.status}${parsed?.code !== undefined ? ` code ${String(parsed.code)}` : ""}${parsed?.msg ? ` '${String(parsed.msg)}'` : ""}`,
        retryAfterMs: retryAfterMs(answer.headers),
      };
    } finally {
      clearTimeout(timer);
      this.aborts.delete(abort);
    }
  }

  // ── emission ──

  emit(sub: SubState, event: MarketEvent): void {
    if (!this.stopped) this.context.emit(sub.subscription, event);
  }

  emitGap(sub: SubState, reason: GapReason, detail: string): void {
    this.emitGapFor(sub.subscription, reason, detail);
  }

  private emitGapFor(subscription: Subscription, reason: GapReason, detail: string): void {
    if (this.stopped) return;
    this.context.emit(subscription, gapEvent(subscription, reason, detail));
  }

  failSubscription(sub: SubState, why: string): void {
    if (sub.failed) return;
    sub.failed = true;
    clearTimeout(sub.retryTimer);
    if (sub.l2) {
      sub.l2.forget();
      sub.l2.phase = "idle";
    }
    this.pool.release(sub, false);
    this.log.error(`${sub.subscription.key}: ${why}; this subscription is stopped, the others go on`);
    this.emitGap(sub, "subscription_error", why);
  }

  private parseErrorOf(sub: SubState, what: string): void {
    sub.subscription.stats.parseErrors++;
    this.faults.report(`parse:${sub.subscription.key}`, `${sub.subscription.key}: ${what}; skipped (counted as a parse error)`);
  }

  // ── data ──

  onItem(sub: SubState, channel: string, action: unknown, item: Record<string, unknown>, receivedAt: number): void {
    switch (channel) {
      case "books":
        this.onBook(sub, action, item as BookData, receivedAt);
        return;
      case "trades":
        this.onTrade(sub, item, receivedAt);
        return;
      case "bbo-tbt":
        this.onBbo(sub, item, receivedAt);
        return;
      case "funding-rate":
      case "mark-price":
        this.onFunding(sub, channel, item, receivedAt);
        return;
      default:
        this.parseErrorOf(sub, `unexpected channel ${channel}`);
    }
  }

  private onTrade(sub: SubState, item: Record<string, unknown>, receivedAt: number): void {
    const event = normalizeTrade(item, receivedAt, sub.context);
    if (event) this.emit(sub, event);
    else this.parseErrorOf(sub, "malformed trade");
  }

  private onBbo(sub: SubState, item: Record<string, unknown>, receivedAt: number): void {
    const event = normalizeBbo(item, receivedAt, sub.context);
    if (event) this.emit(sub, event);
    else this.parseErrorOf(sub, "malformed bbo-tbt");
  }

  private onFunding(sub: SubState, channel: string, item: Record<string, unknown>, receivedAt: number): void {
    const event = normalizeFunding(channel, item, receivedAt, sub.context);
    if (event) this.emit(sub, event);
    else this.parseErrorOf(sub, `malformed ${channel}`);
  }

  onLiquidation(sub: SubState, detail: unknown, receivedAt: number): void {
    const event = normalizeLiquidation(detail, receivedAt, sub.context);
    if (event) this.emit(sub, event);
    else this.parseErrorOf(sub, "malformed liquidation detail");
  }

  // ── L2 ──

  onBookAck(sub: SubState): void {
    const l2 = sub.l2!;
    if (l2.phase !== "awaiting" || l2.waitTimer) return;
    const epoch = l2.epoch;
    l2.waitTimer = setTimeout(() => {
      l2.waitTimer = undefined;
      if (l2.epoch === epoch && l2.phase === "awaiting" && !sub.failed) {
        this.log.info(`${sub.subscription.key}: no WebSocket snapshot within ${this.snapshotWaitMs} ms; using REST`);
        this.fetchSnapshot(sub);
      }
    }, this.snapshotWaitMs);
  }

  private onBook(sub: SubState, action: unknown, data: BookData, receivedAt: number): void {
    const l2 = sub.l2!;
    if (typeof data.seqId !== "number" || typeof data.prevSeqId !== "number") {
      this.parseErrorOf(sub, "book message without seqId/prevSeqId");
      if (l2.phase === "live") this.restartBook(sub, "sequence", "book message without seqId/prevSeqId");
      return;
    }
    if (action === "snapshot") {
      this.onWsSnapshot(sub, data, receivedAt);
      return;
    }
    if (action !== "update") {
      this.parseErrorOf(sub, `unknown books action '${String(action)}'`);
      return;
    }
    switch (l2.phase) {
      case "idle":
        return;
      case "awaiting":
        // Updates before the ack belong to the subscription we just dropped; after the ack, an update
        // without a snapshot means none is coming (OKX is removing it): take the snapshot from REST.
        if (sub.unacked > 0) return;
        l2.buffer.push({ data, receivedAt });
        this.fetchSnapshot(sub);
        return;
      case "fetching":
        if (l2.buffer.length >= OKX_LIMITS.bookBufferLimit) {
          this.log.warn(`${sub.subscription.key}: ${l2.buffer.length} updates buffered waiting for a snapshot; starting over`);
          l2.buffer = [];
        }
        l2.buffer.push({ data, receivedAt });
        return;
      case "live":
        this.applyUpdate(sub, data, receivedAt);
        return;
    }
  }

  private onWsSnapshot(sub: SubState, data: BookData, receivedAt: number): void {
    const l2 = sub.l2!;
    if (l2.phase === "idle") return;
    const empty = Array.isArray(data.bids) && Array.isArray(data.asks) && data.bids.length === 0 && data.asks.length === 0;
    // An empty snapshot is what a removed snapshot may look like: REST decides.
    const outcome = empty ? "malformed" : this.installSnapshot(sub, data, receivedAt);
    if (outcome !== "malformed") return;
    if (!empty) this.parseErrorOf(sub, "malformed book snapshot");
    if (l2.phase === "live") this.restartBook(sub, "sequence", "malformed book snapshot");
    else if (l2.phase === "awaiting") this.fetchSnapshot(sub);
  }

  /**
   * Replaces the book with a snapshot (WS or REST) and emits it. "malformed": nothing changed;
   * "refused": its checksum failed and a resync has started. For a REST snapshot, `rest` gives how many
   * buffered updates it may already hold and the time of the first one it does not (see runSnapshotFetch).
   */
  private installSnapshot(
    sub: SubState,
    data: BookData,
    receivedAt: number,
    rest?: { readonly buffered: number; readonly nextUpdateTime: number },
  ): "installed" | "malformed" | "refused" {
    const l2 = sub.l2!;
    const bids = flatten(data.bids);
    const asks = flatten(data.asks);
    const ts = okxTime(data.ts);
    if (!bids || !asks || Number.isNaN(ts)) return "malformed";
    const seqId = data.seqId as number;
    l2.forget();
    l2.phase = "live";
    l2.restFailures = 0;
    l2.snapshotFailureMarked = false;
    l2.chain.start(seqId, rest !== undefined, rest ? rest.buffered + OKX_LIMITS.restOverlapUpdates : 0);
    if (typeof data.checksum === "number" && data.checksum !== 0) l2.checksumsSeen = true;
    l2.tracking = l2.checksumsSeen;
    applyLevels(l2, bids, asks, data);
    if (l2.book.isCrossed()) {
      // OKX: "Best ask price may be lower than the best bid price during the pre-open period."
      l2.crossedTolerated = true;
      this.log.info(`${sub.subscription.key}: the snapshot itself is crossed (pre-open auction?); tolerated until it uncrosses`);
    }
    if (!this.checksumHolds(sub, data.checksum)) return "refused";
    // The snapshot's time is that of the state it holds, which is no later than the first update beyond
    // it: then ordering rows by (timestamp, sequence) never puts that update before the snapshot.
    this.emitBook(sub, true, seqId, rest ? Math.min(ts, rest.nextUpdateTime) : ts, receivedAt, bids, asks);
    return "installed";
  }

  /** A books update read by okx-scan.ts (levels already flattened and checked, checksum 0). */
  applyScannedUpdate(sub: SubState, book: ScannedOkxBook, receivedAt: number): void {
    this.applyUpdate(sub, book, receivedAt, true);
  }

  /** `flat`: data.bids/asks are already flattened numbers and data.ts a number (okx-scan.ts). */
  private applyUpdate(sub: SubState, data: BookData, receivedAt: number, flat = false): void {
    const l2 = sub.l2!;
    const prevSeqId = data.prevSeqId as number;
    const seqId = data.seqId as number;
    const last = l2.chain.seqId;
    const verdict = l2.chain.next(prevSeqId, seqId);
    if (verdict === "duplicate" || verdict === "stale") {
      this.log.debug(`${sub.subscription.key}: ${verdict} update seqId ${seqId} ignored`);
      return;
    }
    if (verdict === "gap") {
      this.restartBook(sub, "sequence", `prevSeqId ${prevSeqId} does not follow seqId ${last} (update seqId ${seqId})`);
      return;
    }
    if (verdict === "backwards") {
      const detail = `update seqId ${seqId} is still not above the REST snapshot's seqId ${last} after ${OKX_LIMITS.restOverlapUpdates} later updates: the snapshot's seqId was wrong or the ids went back`;
      this.restartBook(sub, "id_reset", detail);
      return;
    }
    const bids = flat ? (data.bids as number[]) : flatten(data.bids);
    const asks = flat ? (data.asks as number[]) : flatten(data.asks);
    const ts = flat ? (data.ts as number) : okxTime(data.ts);
    if (!bids || !asks || Number.isNaN(ts)) {
      this.parseErrorOf(sub, "malformed book update");
      this.restartBook(sub, "sequence", `malformed book update seqId ${seqId}`);
      return;
    }
    applyLevels(l2, bids, asks, data);
    if (l2.book.isCrossed()) {
      if (!l2.crossedTolerated) {
        const detail = `best bid ${l2.book.bids.best()} >= best ask ${l2.book.asks.best()} after seqId ${seqId}`;
        this.restartBook(sub, "crossed_book", detail);
        return;
      }
    } else {
      l2.crossedTolerated = false;
    }
    if (!this.checksumHolds(sub, data.checksum)) return;
    // The idle heartbeat (no levels) only proves the chain; nothing to store.
    if (bids.length === 0 && asks.length === 0) return;
    this.emitBook(sub, false, seqId, ts, receivedAt, bids, asks);
  }

  /** checksum 0 (or absent) means "not sent" since OKX deprecated it; a non-zero one must match. */
  private checksumHolds(sub: SubState, checksum: unknown): boolean {
    if (typeof checksum !== "number" || checksum === 0) return true;
    const l2 = sub.l2!;
    if (!l2.tracking) {
      // The first non-zero checksum on a book whose level texts were not kept (all before were 0): verify
      // from a fresh snapshot on, which is tracked from now on.
      l2.checksumsSeen = true;
      this.restartBook(sub, "checksum", `first non-zero checksum ${checksum} at seqId ${l2.chain.seqId}; the book's level texts were not kept, so it restarts from a snapshot to verify`);
      return false;
    }
    const ours = okxChecksum(topLevels(l2.rawBids, true), topLevels(l2.rawAsks, false));
    if (ours === checksum) return true;
    this.restartBook(sub, "checksum", `checksum ${checksum} from OKX, ${ours} from our book at seqId ${l2.chain.seqId}`);
    return false;
  }

  private emitBook(
    sub: SubState,
    isSnapshot: boolean,
    sequence: number,
    ts: number,
    receivedAt: number,
    bids: number[],
    asks: number[],
  ): void {
    this.emit(sub, bookChange(sub.context, isSnapshot, sequence, ts, receivedAt, bids, asks));
  }

  /**
   * REST snapshot, aligned with the buffered updates as OKX describes for the removal of the WS snapshot
   * (https://www.okx.com/docs-v5/log_en, "Delist initial snapshot and checksum field"): a snapshot older
   * than the first buffered update's prevSeqId is fetched again; updates with seqId <= snapshot seqId
   * are dropped; the first one applied must satisfy prevSeqId <= snapshot seqId < seqId.
   */
  fetchSnapshot(sub: SubState): void {
    const l2 = sub.l2!;
    if (l2.phase === "fetching" || l2.phase === "live") return;
    l2.phase = "fetching";
    clearTimeout(l2.waitTimer);
    l2.waitTimer = undefined;
    const epoch = l2.epoch;
    void this.runSnapshotFetch(sub, epoch);
  }

  private async runSnapshotFetch(sub: SubState, epoch: number): Promise<void> {
    const l2 = sub.l2!;
    const key = sub.subscription.key;
    const current = () => !this.stopped && !sub.failed && l2.epoch === epoch && l2.phase === "fetching";
    for (let tooOld = 0; ; ) {
      await restBooksPacer.reserve();
      if (!current()) return;
      const result = await this.getJson(
        `${OKX_ENDPOINTS.booksPath}?instId=${encodeURIComponent(sub.instrument.instId)}&sz=${OKX_LIMITS.bookDepth}`,
        snapshotBodyBytes(OKX_LIMITS.bookDepth),
      );
      if (!current()) return;
      const snapshot = result.ok && Array.isArray(result.data) ? (result.data[0] as BookData | undefined) : undefined;
      // More levels than asked for (and than the venue serves) is a broken or hostile answer, not a book.
      const tooDeep =
        (Array.isArray(snapshot?.bids) && snapshot.bids.length > OKX_LIMITS.bookDepth) ||
        (Array.isArray(snapshot?.asks) && snapshot.asks.length > OKX_LIMITS.bookDepth);
      const valid =
        typeof snapshot === "object" && snapshot !== null && typeof snapshot.seqId === "number" && !tooDeep &&
        flatten(snapshot.bids) !== undefined && flatten(snapshot.asks) !== undefined && !Number.isNaN(okxTime(snapshot.ts));
      if (!valid) {
        const why = tooDeep
          ? `more than the ${OKX_LIMITS.bookDepth} levels a side asked for`
          : result.ok ? "response without a valid book" : result.error;
        if (tooDeep || (!result.ok && result.oversized)) sub.subscription.stats.parseErrors++;
        const delay = (!result.ok && result.retryAfterMs) || backoffDelay(this.backoff, l2.restFailures++);
        this.log.warn(`${key}: REST snapshot failed (${why}); retrying in ${delay} ms`);
        if (!l2.snapshotFailureMarked) {
          l2.snapshotFailureMarked = true;
          this.emitGap(sub, "snapshot_failed", `REST snapshot failed: ${why}`);
        }
        await this.delay(delay);
        if (!current()) return;
        continue;
      }
      const book = snapshot as BookData;
      const first = l2.buffer[0];
      if (first && (book.seqId as number) < (first.data.prevSeqId as number)) {
        // OKX's REST book is cached (~50 ms); it can predate what we buffered. Ask again.
        if (++tooOld % 20 === 0) this.log.warn(`${key}: REST snapshot keeps predating the stream (${tooOld} tries)`);
        await this.delay(Math.min(50 * tooOld, 1000));
        if (!current()) return;
        continue;
      }
      const buffered = l2.buffer;
      const seqId = book.seqId as number;
      const next = buffered.find((update) => typeof update.data.seqId === "number" && update.data.seqId > seqId);
      const nextUpdateTime = next === undefined ? Number.POSITIVE_INFINITY : okxTime(next.data.ts);
      const rest = { buffered: buffered.length, nextUpdateTime: Number.isNaN(nextUpdateTime) ? Number.POSITIVE_INFINITY : nextUpdateTime };
      if (this.installSnapshot(sub, book, nowMicros(), rest) !== "installed") return;
      this.log.debug(`${key}: REST snapshot seqId ${String(book.seqId)}; replaying ${buffered.length} buffered update(s)`);
      const liveEpoch = l2.epoch;
      for (const update of buffered) {
        if (l2.epoch !== liveEpoch || l2.phase !== "live" || this.stopped) return;
        this.applyUpdate(sub, update.data, update.receivedAt);
      }
      return;
    }
  }
}

/** Applies flattened levels to the book and, while the book is tracked, the level texts to the raw maps. */
function applyLevels(l2: L2State, bids: readonly number[], asks: readonly number[], data: BookData): void {
  l2.book.apply(bids, asks);
  if (!l2.tracking) return;
  trackLevels(l2.rawBids, bids, data.bids as Level[]);
  trackLevels(l2.rawAsks, asks, data.asks as Level[]);
}

function trackLevels(raw: Map<number, Level>, flat: readonly number[], levels: readonly Level[]): void {
  for (let i = 0; i < levels.length; i++) {
    const price = flat[2 * i]!;
    if (flat[2 * i + 1] === 0) raw.delete(price);
    else raw.set(price, levels[i]!);
  }
}

function topLevels(raw: Map<number, Level>, descending: boolean): Level[] {
  const prices = [...raw.keys()].sort((a, b) => (descending ? b - a : a - b));
  const depth = Math.min(prices.length, OKX_LIMITS.checksumDepth);
  const out: Level[] = new Array(depth);
  for (let i = 0; i < depth; i++) out[i] = raw.get(prices[i]!)!;
  return out;
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

export const okxSwap = defineVenue({
  id: "OKX_SWAP",
  streams: ["TRADES", "L2", "BBO", "FUNDING", "LIQUIDATIONS"],
  readinessWindows: READINESS_WINDOWS,
  instrument: (symbol) => nativeInstrument("OKX_SWAP", "SWAP", symbol),
  endpoints: OKX_ENDPOINTS,
  limits: POOL_LIMITS,
  connector: (venue, context, subscriptions) => new OkxConnector(venue, "SWAP", context, subscriptions),
});

export const okxSpot = defineVenue({
  id: "OKX_SPOT",
  streams: ["TRADES", "L2", "BBO"],
  readinessWindows: READINESS_WINDOWS,
  instrument: (symbol) => nativeInstrument("OKX_SPOT", "SPOT", symbol),
  endpoints: OKX_ENDPOINTS,
  limits: POOL_LIMITS,
  connector: (venue, context, subscriptions) => new OkxConnector(venue, "SPOT", context, subscriptions),
});

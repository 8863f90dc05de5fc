/**
 * DERIBIT connector: every Deribit subscription over one JSON-RPC 2.0 WebSocket.
 *
 * Protocol (https://docs.deribit.com/articles/notifications):
 * - a request carries an integer `id`; its answer carries the same id with `result` or `error`. Data
 *   arrives as notifications `{method: "subscription", params: {channel, data}}` (no id).
 * - `public/set_heartbeat` makes the server send `heartbeat` messages; each `test_request` must be
 *   answered with `public/test` or the server closes the connection
 *   (https://docs.deribit.com/api-reference/session-management/public-set_heartbeat).
 * - `.raw` channels are only available to authorized connections; we authenticate with
 *   `public/auth` (client_credentials; tokens are tied to the connection) when credentials are set and
 *   use the `.100ms` channels otherwise
 *   (https://docs.deribit.com/subscriptions/trades/tradesinstrument_nameinterval).
 * - `public/subscribe` answers with the list of channels it subscribed; a channel missing from that list
 *   was not subscribed (unknown instrument...), which fails that subscription alone.
 * - book: a snapshot first, then `prev_change_id` = the previous `change_id`; a break resubscribes for a
 *   fresh snapshot (deribit-book.ts).
 */
import type { MarketEvent, Sizing, Stream } from "../core/events.ts";
import type { Subscription } from "../core/subscriptions.ts";
import type { ConnectorContext, ReadinessWindows } from "../core/connector.ts";
import { DeribitAuth } from "./deribit-auth.ts";
import { DeribitBook, type DeribitBookPort } from "./deribit-book.ts";
import { deribitInstrument, deribitSettings, deribitSizing, DERIBIT_WS_URLS, type DeribitCredentials } from "./deribit-instruments.ts";
import { liquidationsOf, normalizeQuote, normalizeTicker, normalizeTrade, type DeribitInstrumentContext } from "./deribit-normalize.ts";
import { scanDeribitBookChange } from "./deribit-scan.ts";
import { jsonFinite } from "./json-scan.ts";
import { positiveOr } from "./kit/env.ts";
import { NOT_SUBSCRIBED, NO_ROLLOVER, type PoolConnection, type PoolLimits, type PoolWire, type Refusal } from "./kit/pool.ts";
import { defineVenue, type Venue } from "./kit/venue.ts";
import { VenueConnector, type VenueFeed } from "./kit/venue-connector.ts";
import type { CloseInfo } from "./websocket.ts";

export { deribitSettings, deribitSizing, deribitWsUrl, DERIBIT_WS_URLS } from "./deribit-instruments.ts";

// ───────────────────────────── declarative header ─────────────────────────────

const EXCHANGE = "DERIBIT" as const;

/**
 * /readyz windows (seconds): book and quote change many times a second on a live instrument (90 s);
 * trades of a quiet instrument can be silent for minutes (300 s); the ticker is pushed at the subscription
 * interval (100 ms or raw), yet its window stays as loose as the other venues' (180 s); liquidations may
 * not happen for hours, so silence is no fault.
 */
const READINESS_WINDOWS: ReadinessWindows = { L2: 90, BBO: 90, TRADES: 300, FUNDING: 180, LIQUIDATIONS: undefined };

/** Notification interval: `raw` needs an authorized connection, `100ms` does not. */
export const INTERVALS = { authenticated: "raw", public: "100ms" } as const;
type Interval = (typeof INTERVALS)[keyof typeof INTERVALS];

type ChannelKind = "trades" | "book" | "quote" | "ticker";

/** The channel that feeds each stream. LIQUIDATIONS are the trades that carry a `liquidation` field. */
export const STREAM_CHANNELS: Readonly<Record<Stream, { kind: ChannelKind; name: (instrument: string, interval: Interval) => string }>> = {
  TRADES: { kind: "trades", name: (instrument, interval) => `trades.${instrument}.${interval}` },
  LIQUIDATIONS: { kind: "trades", name: (instrument, interval) => `trades.${instrument}.${interval}` },
  L2: { kind: "book", name: (instrument, interval) => `book.${instrument}.${interval}` },
  BBO: { kind: "quote", name: (instrument) => `quote.${instrument}` },
  FUNDING: { kind: "ticker", name: (instrument, interval) => `ticker.${instrument}.${interval}` },
};

export const LIMITS = {
  /** public/set_heartbeat interval; Deribit's minimum is 10 s. */
  heartbeatSeconds: 10,
  /** Channels per subscribe request: our own bound (Deribit documents none) to keep frames small. */
  channelsPerRequest: 100,
  /** Subscribe/unsubscribe requests: ~3.3/s sustained, burst 10; exceeding ends the session (10028). */
  subscribeBurst: 10,
  subscribesPerSecond: 3,
  /** An unanswered request after this long means the session is broken: reconnect. */
  requestTimeoutMs: 10_000,
  /** Refresh the access token after this share of its lifetime (never sooner than the floor). */
  tokenRefreshFraction: 0.8,
  tokenRefreshFloorMs: 1000,
} as const;

/**
 * Staleness per stream. All streams share one connection on which the server sends a heartbeat every
 * `heartbeatSeconds`, so silence means a dead connection whatever the stream: one window (3 missed
 * heartbeats) serves all. XTRADER_DERIBIT_STALE_AFTER_MS overrides it (tests).
 */
export const STALE_AFTER_MS: Readonly<Record<Stream, number>> = { TRADES: 30_000, L2: 30_000, BBO: 30_000, FUNDING: 30_000, LIQUIDATIONS: 30_000 };

/** JSON-RPC error codes we act on (https://docs.deribit.com/articles/errors). */
const ERROR = {
  tooManyRequests: 10028,
  /** Worth another attempt later: too_many_requests, retry, temporarily_unavailable, timed_out. */
  transient: new Set([10028, 10040, 13028, 13888]),
  /** The token or the connection's authorization is not (or no longer) valid. */
  unauthorized: new Set([10000, 13009, 13010]),
} as const;

// ───────────────────────────── connector ─────────────────────────────

type Normalizer = (data: unknown, receivedAt: number, context: DeribitInstrumentContext) => MarketEvent | undefined;

/** One channel: a pool topic named by the channel. */
interface Channel extends VenueFeed {
  readonly kind: ChannelKind;
  readonly sizing: Sizing;
  /** Every subscription this channel feeds (TRADES and LIQUIDATIONS share the trades channel). */
  readonly subscriptions: Subscription[];
  /** What the normalizers know of each subscription, in the same order (built once, not per message). */
  readonly contexts: DeribitInstrumentContext[];
  /** The book of a `book` channel (kit/book-sync.ts via deribit-book.ts). */
  readonly book: DeribitBook | undefined;
}

/** A JSON-RPC message as parsed: an answer (`id`, `result` or `error`) or a notification (`method`, `params`). */
type RpcError = { readonly code?: unknown; readonly message?: unknown; readonly data?: { readonly reason?: unknown } | unknown };
type RpcMessage = { method?: unknown; id?: unknown; params?: { channel?: unknown; data?: unknown; type?: unknown }; result?: unknown; error?: RpcError };

/** The pool's limits: every channel on one connection; subscribe requests within Deribit's credits. */
const POOL_LIMITS: PoolLimits = {
  topicsPerConnection: Number.MAX_SAFE_INTEGER,
  topicsPerRequest: LIMITS.channelsPerRequest,
  requestBurst: LIMITS.subscribeBurst,
  requestsPerSecond: LIMITS.subscribesPerSecond,
  answerTimeoutMs: LIMITS.requestTimeoutMs,
  ...NO_ROLLOVER,
};

/**
 * JSON-RPC requests `{"jsonrpc":"2.0","id","method","params"}`; subscriptions go through `public/` or,
 * authenticated, `private/` subscribe, whose answer lists the channels it subscribed.
 */
function deribitWire(scope: "public" | "private"): PoolWire {
  return {
    encode: (method, channels, id) => JSON.stringify({ jsonrpc: "2.0", id, method: `${scope}/${method}`, params: { channels } }),
    label: (method) => `${scope}/${method}`,
    describe: (refusal) => refusal.text,
    topicWord: "channels",
    accepted: (result) => new Set(Array.isArray(result) ? result.map(String) : []),
  };
}

class DeribitConnector extends VenueConnector<Channel> {
  /** The one connection, once open. */
  private connection: PoolConnection | undefined;
  private readonly credentials: DeribitCredentials | undefined;
  private readonly interval: Interval;
  /** Authentication of each connection, when credentials are set. */
  private readonly auth: DeribitAuth | undefined;
  /** True once this connection may subscribe (authenticated when credentials are set). */
  private sessionReady = false;
  private authRejected = false;

  constructor(venue: Venue, context: ConnectorContext, subscriptions: readonly Subscription[]) {
    const env = context.config.env;
    const staleAfterMs = positiveOr(env, "XTRADER_DERIBIT_STALE_AFTER_MS", Math.min(...subscriptions.map((subscription) => STALE_AFTER_MS[subscription.stream])));
    super(venue, context, { staleAfterMs, resyncWithoutBook: "gap", unsubscribeFailed: false });
    const bookPort: DeribitBookPort = {
      log: context.log,
      faults: this.faults,
      mayResubscribe: (name) => this.sessionReady && !this.stopped && this.feeds.get(name)?.failed === false,
      resubscribe: (name) => this.connection?.resubscribe(name),
      emit: (subscription, event) => this.emit(subscription, event),
      emitGap: (subscription, reason, detail) => this.gapOf(subscription, reason, detail),
      parseError: (name, what, text) => this.unreadable(this.feeds.get(name), what, text),
    };
    this.credentials = deribitSettings(env).credentials;
    this.interval = this.credentials ? INTERVALS.authenticated : INTERVALS.public;
    this.auth = this.credentials
      ? new DeribitAuth(
          this.credentials,
          {
            log: context.log,
            call: (params, onAnswer) => this.request("public/auth", params, onAnswer),
            reconnect: (reason) => this.connection?.socket.reconnect(reason),
            ready: () => {
              this.sessionReady = true;
              this.connection?.subscribeAll();
            },
            rejected: (description) => this.rejectCredentials(description),
          },
          { transient: ERROR.transient, refreshFraction: LIMITS.tokenRefreshFraction, refreshFloorMs: LIMITS.tokenRefreshFloorMs },
        )
      : undefined;
    for (const subscription of subscriptions) {
      const spec = STREAM_CHANNELS[subscription.stream];
      const name = spec.name(subscription.instrument, this.interval);
      let channel = this.feeds.get(name);
      if (!channel) {
        const subscriptions: Subscription[] = [];
        const contexts: DeribitInstrumentContext[] = [];
        const book = spec.kind === "book" ? new DeribitBook(bookPort, name, subscriptions, contexts, this.bookSettings(undefined)) : undefined;
        const sizing = deribitSizing(subscription.instrument);
        channel = { topic: name, connection: undefined, failed: false, kind: spec.kind, sizing, subscriptions, contexts, book };
        this.feeds.set(name, channel);
      }
      channel.subscriptions.push(subscription);
      channel.contexts.push({ symbol: subscription.symbol, sizing: channel.sizing });
      this.feedOf.set(subscription, channel);
    }
    const wire = deribitWire(this.credentials ? "private" : "public");
    this.pool = this.openPool({ name: EXCHANGE, limits: venue.limits!, wire });
  }

  protected run(): void {
    this.log.info(
      this.credentials
        ? `${EXCHANGE}: API credentials set: authenticating each connection and using the ${INTERVALS.authenticated} channels`
        : `${EXCHANGE}: no DERIBIT_CLIENT_ID/DERIBIT_CLIENT_SECRET: using the public ${INTERVALS.public} channels (${INTERVALS.authenticated} channels need authentication)`,
    );
    this.pool.openGroups("", [[...this.feeds.values()]]);
  }

  /** Forgets everything tied to the current connection (tokens are connection-scoped too; the books too, by the base). */
  protected override stopping(): void {
    this.auth?.reset();
    this.sessionReady = false;
  }

  // ── connection lifecycle (the pool's hooks) ──

  override onOpened(connection: PoolConnection): void {
    this.connection = connection;
    super.onOpened(connection);
    this.request("public/set_heartbeat", { interval: LIMITS.heartbeatSeconds }, (refusal) => {
      if (refusal) this.log.warn(`${EXCHANGE}: public/set_heartbeat refused: ${refusal.text}`);
    });
    if (this.auth) this.auth.start();
    else this.sessionReady = true;
  }

  /** With credentials, channels are subscribed once the connection is authenticated. */
  holdsSubscribe(): boolean {
    return this.credentials !== undefined;
  }

  onClosed(): void {
    this.stopping();
    for (const channel of this.feeds.values()) channel.book?.sync.forget();
  }

  describeClose(close: CloseInfo): string {
    return close.initiatedBy
      ? `connection closed (${close.initiatedBy})`
      : `connection closed by server (code ${close.code}${close.reason ? ` '${this.redact(close.reason)}'` : ""})`;
  }

  onSubscribed(channel: Channel): void {
    this.log.debug(`${EXCHANGE}: subscribed ${channel.topic}`);
  }

  /** Refusals that concern the session, not a channel: it is rebuilt. */
  onRequestRefused(connection: PoolConnection, refusal: Refusal): boolean {
    const code = Number(refusal.code);
    if (code === ERROR.tooManyRequests) {
      this.log.warn(`${EXCHANGE}: subscribe rate limit hit (${refusal.text}); reconnecting after backoff`);
      connection.socket.reconnect("rate limited");
      return true;
    }
    if (this.credentials && ERROR.unauthorized.has(code)) {
      this.log.warn(`${EXCHANGE}: subscribe refused as unauthorized (${refusal.text}); reconnecting to authenticate again`);
      connection.socket.reconnect("authorization lost");
      return true;
    }
    return false;
  }

  onRefused(channel: Channel, refusal: Refusal): void {
    const reason =
      refusal === NOT_SUBSCRIBED
        ? `Deribit did not subscribe channel ${channel.topic} (unknown or expired instrument '${channel.subscriptions[0]!.instrument}'?)`
        : `subscribe refused by Deribit: ${refusal.text}`;
    this.failFeed(channel, reason);
  }

  /** The subscriptions of one channel fail together: logged, marked by a gap, never resubscribed. */
  protected override failureLine(channel: Channel, why: string): string {
    return `${EXCHANGE}: ${channel.subscriptions.map((subscription) => subscription.key).join(", ")} stopped: ${why}; other subscriptions go on`;
  }

  // ── JSON-RPC ──

  /** A call of Deribit's own (heartbeat, authentication), sent at once; `onAnswer` gets the refusal or the result. */
  private request(method: string, params: Record<string, unknown>, onAnswer: (refusal: Refusal | undefined, result: unknown) => void): void {
    this.connection?.call(method, (id) => JSON.stringify({ jsonrpc: "2.0", id, method, params }), onAnswer);
  }

  private describeError(error: RpcError): string {
    const reason =
      typeof error.data === "object" && error.data !== null && "reason" in error.data ? ` (${String(error.data.reason)})` : "";
    return this.redact(`${String(error.code)} ${String(error.message)}${reason}`);
  }

  /** Never let a credential or token reach a log line, whatever the server echoes. */
  private redact(text: string): string {
    return this.auth ? this.auth.redact(text) : text;
  }

  /** A rejected credential stops Deribit alone: other exchanges and the process go on. */
  private rejectCredentials(description: string): void {
    if (this.authRejected) return;
    this.authRejected = true;
    this.log.error(
      `${EXCHANGE}: authentication rejected by Deribit (${description}); check DERIBIT_CLIENT_ID and DERIBIT_CLIENT_SECRET. Deribit subscriptions are stopped, others go on`,
    );
    for (const channel of this.liveFeeds()) this.failFeed(channel, "authentication rejected", false);
    void this.connection?.stop();
  }

  // ── messages ──

  onFrame(connection: PoolConnection, text: string, receivedAt: number): void {
    if (this.stopped) return;
    // The dominant frame, a book change, is read without JSON.parse when it has exactly Deribit's layout;
    // the same steps as below (channel, stats, onBook) follow. Anything else takes the JSON path.
    if (text.charCodeAt(2) === 106 /* {"jsonrpc */) {
      const scanned = scanDeribitBookChange(text);
      const channel = scanned === undefined ? undefined : this.feeds.get(scanned.channel);
      if (channel !== undefined && channel.kind === "book") {
        if (channel.failed) return;
        this.countMessage(channel, receivedAt);
        const { changeId, prevChangeId, timestamp, bids, asks } = scanned!;
        return channel.book!.onChange(changeId, prevChangeId, timestamp, undefined, bids, asks, receivedAt, text);
      }
    }
    let message: RpcMessage;
    try {
      message = JSON.parse(text);
    } catch {
      const channel = this.feedNamedIn(text, "channel");
      this.unreadable(channel, "malformed JSON", text);
      // A lost book frame leaves the local book behind: start over now rather than at the next change.
      if (channel?.book && !channel.failed) channel.book.sync.unreadable("malformed book frame");
      return;
    }
    if (typeof message !== "object" || message === null) {
      this.unreadable(undefined, "not a JSON-RPC object", text);
      return;
    }
    if (message.method === "subscription") {
      const channel = typeof message.params?.channel === "string" ? this.feeds.get(message.params.channel) : undefined;
      if (!channel) {
        if (typeof message.params?.channel === "string") this.log.debug(`${EXCHANGE}: notification for channel ${message.params.channel} we do not follow`);
        else this.unreadable(undefined, "notification without channel", text);
        return;
      }
      if (channel.failed) return;
      this.countMessage(channel, receivedAt);
      this.onNotification(channel, message.params!.data, receivedAt, text);
      return;
    }
    if (message.method === "heartbeat") {
      // Deribit closes the connection when a test_request goes unanswered.
      if (message.params?.type === "test_request") this.request("public/test", {}, () => {});
      return;
    }
    if (typeof message.id === "number") {
      const error = message.error;
      connection.answer(message.id, error ? { code: String(error.code), text: this.describeError(error) } : undefined, message.result);
      return;
    }
    if (message.error) {
      this.log.warn(`${EXCHANGE}: error without request id: ${this.describeError(message.error)}`);
      return;
    }
    this.unreadable(undefined, "unknown message type", text);
  }

  private onNotification(channel: Channel, data: unknown, receivedAt: number, text: string): void {
    switch (channel.kind) {
      case "trades":
        return this.onTrades(channel, data, receivedAt, text);
      case "book":
        return this.onBook(channel, data, receivedAt, text);
      case "quote":
        return this.onEach(channel, data, receivedAt, text, normalizeQuote, "unreadable quote");
      case "ticker":
        return this.onEach(channel, data, receivedAt, text, normalizeTicker, "unreadable ticker");
    }
  }

  /**
   * Every subscription of the channel gets its own events (its symbol as written); a trade is unreadable
   * for all of them or for none, so it counts as one parse error.
   */
  private onTrades(channel: Channel, data: unknown, receivedAt: number, text: string): void {
    if (!Array.isArray(data)) return this.unreadable(channel, "trades notification without a trade list", text);
    const { subscriptions, contexts } = channel;
    for (const item of data as Array<Record<string, unknown>>) {
      for (let i = 0; i < subscriptions.length; i++) {
        const subscription = subscriptions[i]!;
        const trade = normalizeTrade(item, receivedAt, contexts[i]!);
        if (!trade) {
          this.unreadable(channel, "unreadable trade", text);
          break;
        }
        if (subscription.stream === "TRADES") this.emit(subscription, trade);
        else if (subscription.stream === "LIQUIDATIONS") {
          for (const liquidation of liquidationsOf(trade, item.liquidation)) this.emit(subscription, liquidation);
        }
      }
    }
  }

  private onBook(channel: Channel, data: unknown, receivedAt: number, text: string): void {
    const book = data as { change_id?: unknown; prev_change_id?: unknown; timestamp?: unknown; bids?: unknown; asks?: unknown } | null;
    const changeId = book?.change_id;
    const prevChangeId = book?.prev_change_id;
    const time = jsonFinite(book?.timestamp);
    if (typeof changeId !== "number" || (prevChangeId !== undefined && typeof prevChangeId !== "number") || Number.isNaN(time)) {
      this.unreadable(channel, "unreadable book notification", text);
      channel.book!.sync.unreadable("unreadable book notification");
      return;
    }
    channel.book!.onChange(changeId, prevChangeId as number | undefined, time, book!, undefined, undefined, receivedAt, text);
  }

  /** One event per subscription of the channel (quote, ticker), each with its own symbol. */
  private onEach(channel: Channel, data: unknown, receivedAt: number, text: string, normalize: Normalizer, what: string): void {
    const { subscriptions, contexts } = channel;
    for (let i = 0; i < subscriptions.length; i++) {
      const event = normalize(data, receivedAt, contexts[i]!);
      if (!event) return this.unreadable(channel, what, text);
      this.emit(subscriptions[i]!, event);
    }
  }

  /**
   * Counts an unreadable message on the subscriptions it belongs to (all of them when that cannot be
   * told) and logs it, one line per episode (FaultLog).
   */
  private unreadable(channel: Channel | undefined, what: string, text: string): void {
    const targets = channel ? [channel] : this.liveFeeds();
    for (const target of targets) for (const subscription of target.subscriptions) subscription.stats.parseErrors++;
    // Redacted whole, then cut: a secret cut in two would no longer match. Frames that carry tokens or
    // credentials are never quoted (tokens of a malformed auth answer are not known to redact).
    const redacted = /access_token|refresh_token|client_secret/.test(text) ? "(not shown: it carries credentials)" : this.redact(text);
    const sample = redacted.length > 200 ? `${redacted.slice(0, 200)}...` : redacted;
    const where = channel ? ` on ${channel.topic}` : "";
    this.faults.report(`parse${where}`, `${EXCHANGE}: ${what}${where}, skipped (unreadable messages are counted as parse errors): ${sample}`);
  }
}

export const deribit = defineVenue({
  id: EXCHANGE,
  streams: ["TRADES", "L2", "BBO", "FUNDING", "LIQUIDATIONS"],
  instrument: deribitInstrument,
  readinessWindows: READINESS_WINDOWS,
  // Testnet or production per DERIBIT_USE_TESTNET (checked by checkSettings before anything connects).
  endpoints: { ws: (env) => (deribitSettings(env, false).useTestnet ? DERIBIT_WS_URLS.testnet : DERIBIT_WS_URLS.production) },
  limits: POOL_LIMITS,
  checkSettings: (env, inUse) => void deribitSettings(env, inUse),
  connector: (venue, context, subscriptions) => new DeribitConnector(venue, context, subscriptions),
});

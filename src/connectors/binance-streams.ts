/**
 * The connector of Binance's combined market streams, shared by USDⓈ-M futures (binance-futures.ts) and
 * spot (binance-spot.ts): both speak the same SUBSCRIBE/UNSUBSCRIBE wire, deliver `{"stream","data"}`
 * frames, serve a REST depth snapshot under a request-weight budget, list instruments in exchangeInfo and
 * close connections after 24 h. What differs is a `BinanceProfile`: channels and routes, REST paths and
 * weights, the depth event reader and book host, the scanned fast paths (futures only), the wording.
 * The declaration pieces both venues use (wire, pool limits, book rules) are in binance-declaration.ts.
 */
import { msToMicros, nowMicros } from "../core/clock.ts";
import type { GapReason, MarketEvent, Stream } from "../core/events.ts";
import type { Subscription } from "../core/subscriptions.ts";
import type { ConnectorContext } from "../core/connector.ts";
import type { BinanceDepthUpdate, DepthBookPort } from "./binance-futures-book.ts";
import { tradeEvent, type DepthUpdate, type Payload } from "./binance-futures-normalize.ts";
import { scanAggTradeFrame, scanDepthFrame } from "./binance-futures-scan.ts";
import { RestWeightGate } from "./binance-futures-rest.ts";
import { RecentKeys } from "./dedup.ts";
import { snapshotBodyBytes } from "./http-body.ts";
import { binanceBookRules, binancePoolLimits, binanceWire, KEEPALIVE_ID, refusalText, type BinanceLimits, type BinanceTuningNames } from "./binance-declaration.ts";
import type { BookSync, BookSyncOptions } from "./kit/book-sync.ts";
import { positiveFromEnv } from "./kit/env.ts";
import type { InstrumentContext } from "./kit/normalize.ts";
import type { HandoverTopic, PoolConnection, Refusal } from "./kit/pool.ts";
import { defineVenue, type Venue, type VenueDeclaration } from "./kit/venue.ts";
import { VenueConnector, type VenueFeed } from "./kit/venue-connector.ts";
import type { OpenInfo } from "./websocket.ts";

export interface ChannelSpec {
  /** Appended to the lower-cased symbol: `btcusdt@aggTrade`. */
  readonly suffix: string;
  /** The connection route (a URL path of the profile's `routePaths`). */
  readonly route: string;
  /** The payload's `e`; undefined for a payload that carries none (spot's bookTicker). */
  readonly event: string | undefined;
  /** Names the payload in log lines and parse errors. */
  readonly label: string;
  /** Longest normal silence of one instrument's stream; undefined = may be quiet for hours. */
  readonly staleAfterMs: number | undefined;
  /** Normalizer of a non-book payload (undefined = malformed) and its growing key for duplicates (dedup.ts). */
  readonly normalize?: (data: Payload, receivedAt: number, instrument: InstrumentContext) => MarketEvent | undefined;
  readonly key?: (data: Payload) => number;
}

/** A depth book host of a profile: the sync engine it runs on. */
export interface BinanceBook {
  readonly sync: BookSync<BinanceDepthUpdate, unknown>;
}

export interface BinanceProfile {
  readonly exchange: string;
  /** Names the venue in messages: "Binance USD-M futures". */
  readonly venueName: string;
  readonly channels: Readonly<Partial<Record<Stream, ChannelSpec>>>;
  readonly routePaths: Readonly<Record<string, string>>;
  readonly depthPath: string;
  readonly exchangeInfoPath: string;
  readonly limits: BinanceLimits;
  readonly env: BinanceTuningNames;
  readonly book: (port: DepthBookPort, subscription: Subscription, settings: Omit<BookSyncOptions, "name" | "faults">) => BinanceBook;
  /** A depthUpdate payload read; undefined = malformed. */
  readonly parseDepth: (data: Payload, receivedAt: number) => BinanceDepthUpdate | undefined;
  /** Whether the futures scanned fast paths (depth with `pu`, aggTrade) apply. */
  readonly scanned: boolean;
  /** A frame that is no stream data and no answer, read by the venue (spot's serverShutdown); true = handled. */
  readonly notice?: (message: Payload) => "rollover" | undefined;
}

/** A Binance venue's declaration: its facts, and the pool, wire and connector built from its profile. */
export function defineBinanceVenue(profile: BinanceProfile, facts: Pick<VenueDeclaration, "streams" | "readinessWindows" | "instrument" | "endpoints">) {
  return defineVenue({
    id: profile.exchange,
    ...facts,
    limits: binancePoolLimits(profile.limits),
    wire: binanceWire(profile.limits),
    connector: (venue, context, subscriptions) => new BinanceStreamConnector(venue, context, subscriptions, profile),
  });
}

/** What a rollover successor holds for a feed until the switch: events, or depth updates of a book. */
type HandoverItem = MarketEvent | BinanceDepthUpdate;

/** One subscription: a pool topic named by its stream (`btcusdt@aggTrade`); dedup keys per dedup.ts. */
interface Feed extends HandoverTopic<HandoverItem>, VenueFeed {
  readonly subscription: Subscription;
  readonly stream: Stream;
  readonly channel: ChannelSpec;
  readonly book: BinanceBook | undefined;
}

export class BinanceStreamConnector extends VenueConnector<Feed, HandoverItem> {
  private readonly rest: RestWeightGate;
  private readonly staleOverrideMs: number | undefined;

  constructor(
    venue: Venue,
    context: ConnectorContext,
    subscriptions: readonly Subscription[],
    private readonly profile: BinanceProfile,
  ) {
    super(venue, context, { resyncWithoutBook: "gap", unsubscribeFailed: true });
    const { limits, exchange } = profile;
    const names = profile.env;
    const env = context.config.env;
    const tuning = { topicsPerConnection: names.streamsPerConnection, connectionMaxAgeMs: names.connectionMaxAgeMs, answerTimeoutMs: names.requestAnswerTimeoutMs };
    this.pool = this.openPool({ name: exchange, limits: this.tunedLimits(venue.limits!, tuning), wire: venue.wire! });
    const stale = positiveFromEnv(env, names.staleAfterMs);
    this.staleOverrideMs = stale !== undefined && !Number.isNaN(stale) ? stale : undefined;
    this.rest = new RestWeightGate({
      baseUrl: venue.restUrl(env),
      log: this.log,
      name: `${exchange} REST`,
      weightPerMinute: limits.restWeightPerMinute,
      budgetShare: limits.restWeightShare,
      timeoutMs: limits.restTimeoutMs,
      receivedAt: nowMicros,
    });
    const bookPort: DepthBookPort = {
      log: this.log,
      faults: this.faults,
      depthLimit: limits.depthSnapshotLimit,
      active: (subscription) => !this.stopped && !this.feedOf.get(subscription)!.failed,
      fetchDepth: (symbol) =>
        this.rest.get(profile.depthPath, { symbol, limit: String(limits.depthSnapshotLimit) }, limits.depthSnapshotWeight, snapshotBodyBytes(limits.depthSnapshotLimit)),
      emit: (subscription, event) => this.emit(subscription, event),
      fail: (subscription, why) => this.failFeed(this.feedOf.get(subscription)!, why),
    };
    const bookSync = this.bookSettings(binanceBookRules(limits));
    for (const subscription of subscriptions) {
      const channel = profile.channels[subscription.stream]!;
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
        book: subscription.stream === "L2" ? profile.book(bookPort, subscription, bookSync) : undefined,
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
    const { exchange, exchangeInfoPath, venueName } = this.profile;
    const result = await this.rest.get(exchangeInfoPath, {}, this.profile.limits.exchangeInfoWeight);
    if (this.stopped) return;
    const symbols = (result.body as { symbols?: unknown } | undefined)?.symbols;
    if (!result.ok || !Array.isArray(symbols)) {
      this.log.warn(`${exchange}: could not fetch the instrument list (${result.message}); subscribing without checking symbols`);
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
        this.failFeed(feed, `instrument '${native}' is not listed by ${venueName} (${exchangeInfoPath})`);
      } else if (state !== "TRADING") {
        this.log.warn(`${feed.subscription.key}: Binance lists '${native}' with status ${state}; data may be sparse`);
      }
    }
  }

  override url(route: string): string {
    return `${this.wsUrl}${this.profile.routePaths[route]}`;
  }

  /** The shortest window of the connection's streams; quiet streams alone get a long one (keepalive answers reset it). */
  override staleAfterMs(feeds: readonly Feed[]): number {
    const windows = feeds.map((feed) => feed.channel.staleAfterMs).filter((ms) => ms !== undefined);
    return this.staleOverrideMs ?? (windows.length > 0 ? Math.min(...windows) : this.profile.limits.quietConnectionStaleMs);
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
    this.failFeed(feed, `Binance rejected the subscription to ${feed.topic}: ${refusalText(refusal)}`);
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
    if (this.profile.scanned && (this.onScannedDepth(connection, text, receivedAt) || this.onScannedTrade(connection, text, receivedAt))) return;
    const message = this.parseFrame<Payload>(connection, text, "not a JSON object");
    if (!message) return;
    const name = message.stream;
    if (typeof name === "string") {
      const feed = this.feeds.get(name);
      const data = message.data as Payload | null;
      if (!feed || data === null || typeof data !== "object") {
        if (this.onNotice(connection, message)) return;
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
    if (this.onNotice(connection, message)) return;
    this.badFrame(connection, "unknown message", text);
  }

  /** A venue notice: a announced close (spot's serverShutdown) starts the replacement now, make before break. */
  private onNotice(connection: PoolConnection, message: Payload): boolean {
    if (this.profile.notice?.(message) !== "rollover") return false;
    this.log.info(`${connection.name}: ${this.profile.venueName} announced a shutdown of the connection`);
    this.pool.rollover(connection);
    return true;
  }

  /** A response `{"result":..,"id":..}` or an error `{"error":{"code","msg"},"id":..}`. */
  private onResponse(connection: PoolConnection, message: Payload): void {
    const id = message.id;
    if (id === KEEPALIVE_ID) return;
    // Current futures docs wrap errors in `error`; spot and older futures docs show `code`/`msg` at the top level.
    const error = (message.error ?? (typeof message.code === "number" ? message : undefined)) as Payload | undefined;
    connection.answer(id as number, error ? { code: String(error.code), text: String(error.msg) } : undefined);
  }

  private onEvent(feed: Feed, data: Payload, receivedAt: number): void {
    const channel = feed.channel;
    const event = channel.normalize!(data, receivedAt, feed.subscription);
    if (!event) {
      this.parseError(feed, `malformed ${channel.label} event`);
      return;
    }
    this.emitKeyed(feed, channel.key!(data), event, channel.label);
    this.pool.switchIfOverlapping(feed);
  }

  // ── L2 ──

  /**
   * The hot path: a futures diff-depth frame of a live feed read without JSON.parse (binance-futures-scan.ts).
   * Returns false, having done nothing, for anything else; onFrame's general path then handles it.
   */
  private onScannedDepth(connection: PoolConnection, text: string, receivedAt: number): boolean {
    const scanned = scanDepthFrame(text);
    if (!scanned) return false;
    const feed = this.feeds.get(scanned.stream);
    if (!feed?.book || feed.failed || feed.connection !== connection) return false;
    this.countMessage(feed, receivedAt);
    const update: DepthUpdate = {
      firstId: scanned.firstId,
      finalId: scanned.finalId,
      previousFinalId: scanned.previousFinalId,
      timestamp: msToMicros(scanned.transactionTime),
      receivedAt,
      bids: scanned.bids,
      asks: scanned.asks,
    };
    this.takeDepth(feed, update);
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
    this.emitKeyed(feed, tradeId, trade, feed.channel.label);
    this.pool.switchIfOverlapping(feed);
    return true;
  }

  private onDepth(feed: Feed, data: Payload, receivedAt: number): void {
    const update = this.profile.parseDepth(data, receivedAt);
    if (!update) {
      this.parseError(feed, "malformed depthUpdate event");
      // A delta we cannot read is a delta we missed.
      feed.book!.sync.unreadable("unreadable depth update");
      return;
    }
    this.takeDepth(feed, update);
  }

  private takeDepth(feed: Feed, update: BinanceDepthUpdate): void {
    feed.keys.take(update.finalId);
    feed.book!.sync.delta(update);
    this.pool.switchIfOverlapping(feed);
  }

  // ── rollover handover (kit/pool.ts switches feeds; the venue reads events and their keys) ──

  private offerFromSuccessor(successor: PoolConnection, feed: Feed, data: Payload, receivedAt: number): void {
    const channel = feed.channel;
    const event = feed.book ? undefined : channel.normalize!(data, receivedAt, feed.subscription);
    const item: HandoverItem | undefined = feed.book ? this.profile.parseDepth(data, receivedAt) : event;
    if (!item) return this.parseError(feed, `malformed ${channel.label} event`);
    this.pool.offer(successor, feed, item, event ? channel.key!(data) : (item as BinanceDepthUpdate).finalId);
  }

  /** An event the successor held that the old connection did not deliver (PoolHooks.take). */
  take(feed: Feed, item: HandoverItem, key: number): void {
    this.countMessage(feed, (item as { receivedAt?: number }).receivedAt ?? (item as MarketEvent).localTimestamp);
    if (feed.book) {
      feed.keys.take(key);
      feed.book.sync.delta(item as BinanceDepthUpdate);
    } else {
      this.emitKeyed(feed, key, item as MarketEvent, feed.channel.label);
    }
  }
}

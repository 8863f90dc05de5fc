/**
 * The connector every venue extends: the per-subscription chores, once. A venue's connector supplies its
 * declaration's pool (`openPool`), how a frame reaches its feeds (`onFrame`, scanned fast paths first), its
 * startup (`run`: instrument checks, then the pool opens), its refusals (`onRefused`) and its book host.
 *
 * This base owns:
 * - the feeds: one per pool topic (`feeds`, by topic name) and the one each subscription is carried by
 *   (`feedOf`); a feed carries one subscription or several sharing a channel (Deribit's trades);
 * - stats (`countMessage`, reconnects at a reopen or a rollover), emission (`emit`, `gap`; nothing once
 *   stopped), repeated faults through FaultLog (`parseError`, `badFrame`, an id reset in `emitKeyed`);
 * - failing one subscription alone (`failFeed`: out of its connection, its book forgotten, a log line,
 *   a `subscription_error` gap row), start/stop and the pipeline's `resync`;
 * - the pool hooks whose behaviour is common: a failed topic fails its feed, a lost one leaves a gap row
 *   and forgets its book.
 */
import type { Connector, ConnectorContext } from "../../core/connector.ts";
import { gapEvent, type ExchangeId, type GapReason, type MarketEvent } from "../../core/events.ts";
import { FaultLog } from "../../core/fault-log.ts";
import type { Logger } from "../../core/log.ts";
import type { Subscription } from "../../core/subscriptions.ts";
import type { BookSync } from "./book-sync.ts";
import { backoffFromEnv, type BackoffOptions, type OpenInfo } from "../websocket.ts";
import { resyncBrakeFromEnv, type ResyncBrakeOptions } from "./resync-brake.ts";
import type { Venue } from "./venue.ts";
import { positiveSetting } from "./env.ts";
import { ConnectionPool, type HandoverTopic, type PoolConnection, type PoolHooks, type PoolLimits, type PoolSetup, type PoolTopic, type Refusal } from "./pool.ts";

type TunableLimit = "topicsPerConnection" | "connectionMaxAgeMs" | "answerTimeoutMs";

/** What the base needs of a book: its sync state machine. */
export interface FeedBook {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly sync: BookSync<any, any>;
}

/** One pool topic as a connector sees it: the subscriptions it carries and, for L2, its book. */
export interface VenueFeed extends PoolTopic {
  readonly subscriptions: readonly Subscription[];
  readonly book: FeedBook | undefined;
}

/** How a venue's connector differs in the chores (kept as each venue has always behaved). */
export interface VenueConnectorRules {
  /** The stale window of every connection (a venue whose window depends on its topics overrides `staleAfterMs`). */
  readonly staleAfterMs?: number;
  /** A resync of a feed without a book: a gap row (the data is lost) or ignored (logged at debug). */
  readonly resyncWithoutBook: "gap" | "ignore";
  /** Whether a failed feed is unsubscribed (false: the venue refused it anyway). */
  readonly unsubscribeFailed: boolean;
}

export abstract class VenueConnector<F extends VenueFeed, Item = never> implements Connector, PoolHooks<F, Item> {
  readonly log: Logger;
  /** Repeating faults (unreadable frames, resets, resyncs), one log line per episode. */
  readonly faults: FaultLog;
  /** Feeds by topic name: the pool's topics. */
  protected readonly feeds = new Map<string, F>();
  /** The feed carrying each subscription. */
  protected readonly feedOf = new Map<Subscription, F>();
  protected pool!: ConnectionPool<F, Item>;
  /** The declaration's WebSocket endpoint (a venue with routes appends its path in `url`). */
  protected readonly wsUrl: string;
  readonly backoff: BackoffOptions;
  readonly exchange: ExchangeId;
  stopped = false;
  private started = false;
  /** Per feed, the pending retry of a refused subscribe: cancelled when the feed fails, is lost or stops. */
  private readonly retries = new Map<F, ReturnType<typeof setTimeout>>();

  constructor(
    venue: Venue,
    readonly context: ConnectorContext,
    private readonly rules: VenueConnectorRules,
  ) {
    this.exchange = venue.id;
    this.log = context.log;
    this.faults = new FaultLog(context.log);
    this.wsUrl = venue.wsUrl(context.config.env);
    this.backoff = backoffFromEnv(context.config.env);
  }

  /** What a venue's books share: its sync rules, the resync brake and the retry backoff of the environment. */
  protected bookSettings<R>(rules: R): { readonly rules: R; readonly brake: ResyncBrakeOptions; readonly retry: BackoffOptions } {
    return { rules, brake: resyncBrakeFromEnv(this.context.config.env), retry: this.backoff };
  }

  /** The pool of this connector's feeds (called once by the venue's constructor). */
  protected openPool(setup: Omit<PoolSetup<F>, "context" | "topics">): ConnectionPool<F, Item> {
    return new ConnectionPool<F, Item>(this, { ...setup, context: this.context, topics: this.feeds });
  }

  /**
   * The declaration's pool limits with the venue's tuning variables (names per limit) applied; an
   * unusable value is logged and the default kept; the topics per connection can only be lowered.
   */
  protected tunedLimits(limits: PoolLimits, names: { readonly [K in TunableLimit]?: string }): PoolLimits {
    const env = this.context.config.env;
    const tuned = (key: TunableLimit) => {
      const name = names[key];
      const fallback = limits[key];
      return name === undefined || fallback === undefined ? fallback : positiveSetting(env, name, fallback, this.log);
    };
    return {
      ...limits,
      topicsPerConnection: Math.min(limits.topicsPerConnection, Math.floor(tuned("topicsPerConnection")!)),
      connectionMaxAgeMs: tuned("connectionMaxAgeMs"),
      answerTimeoutMs: tuned("answerTimeoutMs"),
    };
  }

  /** Registers a feed under its topic and each of its subscriptions. */
  protected addFeed(feed: F): F {
    this.feeds.set(feed.topic, feed);
    for (const subscription of feed.subscriptions) this.feedOf.set(subscription, feed);
    return feed;
  }

  // ── lifecycle ──

  start(): void {
    if (this.started) return;
    this.started = true;
    void this.run();
  }

  /** Startup: the venue's checks, then its feeds go to the pool. */
  protected abstract run(): void | Promise<void>;

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopping();
    for (const timer of this.retries.values()) clearTimeout(timer);
    for (const feed of this.feeds.values()) feed.book?.sync.forget();
    await this.pool.stop();
    this.faults.flush();
  }

  /** What the venue releases when stopping (REST clients, timers, a session), before its books are forgotten. */
  protected stopping(): void {}

  /** The pipeline's request (after an overflow): paced by the pipeline itself, so a book's restart is not braked. */
  resync(subscription: Subscription, reason: GapReason, detail: string): void {
    const feed = this.feedOf.get(subscription);
    const ignored = this.rules.resyncWithoutBook === "ignore";
    if (!feed || feed.failed || this.stopped || (ignored && !feed.book)) {
      if (ignored) this.log.debug(`${subscription.key}: resync (${reason}) ignored: no live book`);
      return;
    }
    // Only books have state to rebuild; other streams just record that data was lost.
    if (feed.book) feed.book.sync.restart(reason, detail, false);
    else this.gapOf(subscription, reason, detail);
  }

  // ── the pool's common hooks ──

  url(_route: string): string {
    return this.wsUrl;
  }

  staleAfterMs(_topics: readonly F[]): number {
    return this.rules.staleAfterMs!;
  }

  abstract onFrame(connection: PoolConnection, text: string, receivedAt: number): void;
  abstract onRefused(feed: F, refusal: Refusal, connection: PoolConnection): void;

  /** A reopened connection counts a reconnect on each subscription it carries. */
  onOpened(connection: PoolConnection, _info?: OpenInfo): void {
    if (connection.opens > 1) this.countReconnects(this.pool.topicsOn(connection));
  }

  /** A rollover successor took over after the connection in use was lost. */
  onReconnected(feed: F): void {
    if (!this.stopped) this.countReconnects([feed]);
  }

  onFailed(feed: F, why: string): void {
    this.failFeed(feed, why);
  }

  onLost(feed: F, reason: GapReason, detail: string): void {
    this.cancelRetry(feed);
    this.gap(feed, reason, detail);
    feed.book?.sync.forget();
  }

  protected countReconnects(feeds: readonly F[]): void {
    for (const feed of feeds) for (const subscription of feed.subscriptions) subscription.stats.reconnects++;
  }

  // ── emission and faults ──

  /** A frame of `feed` arrived: its subscriptions' message count and last message time (hot path). */
  protected countMessage(feed: F, receivedAt: number): void {
    const subscriptions = feed.subscriptions;
    for (let i = 0; i < subscriptions.length; i++) {
      const stats = subscriptions[i]!.stats;
      stats.messages++;
      stats.lastMessageAt = receivedAt;
    }
  }

  emit(subscription: Subscription, event: MarketEvent): void {
    if (!this.stopped) this.context.emit(subscription, event);
  }

  /** A `gaps` row in each subscription of `feed`. */
  gap(feed: F, reason: GapReason, detail: string): void {
    for (const subscription of feed.subscriptions) this.gapOf(subscription, reason, detail);
  }

  gapOf(subscription: Subscription, reason: GapReason, detail: string): void {
    if (!this.stopped) this.context.emit(subscription, gapEvent(subscription, reason, detail));
  }

  /**
   * Emits unless the event repeats one taken moments ago (handover overlap, a re-sent frame). A key below
   * the last one that was never taken is a reset (dedup.ts): the event is kept after an `id_reset` gap.
   */
  protected emitKeyed(feed: F & HandoverTopic<Item>, key: number, event: MarketEvent, what: string): void {
    const last = feed.keys.last;
    const verdict = feed.keys.take(key);
    if (verdict === "duplicate") return;
    const subscription = feed.subscriptions[0]!;
    if (verdict === "reset") {
      const detail = `${what} key ${key} is below the last key ${last} and was not seen before: the venue's ids went back, or the last one was too high`;
      this.faults.report(`reset:${feed.topic}`, `${subscription.key}: ${detail}; kept, marked by a gap row`);
      this.gap(feed, "id_reset", detail);
    }
    this.emit(subscription, event);
  }

  /** The feeds that have not failed. */
  protected liveFeeds(): F[] {
    return [...this.feeds.values()].filter((feed) => !feed.failed);
  }

  /** The feed a broken frame was about, when its topic can still be read (`"<field>":"<topic>"`). */
  protected feedNamedIn(text: string, field: string): F | undefined {
    const key = `"${field}":"`;
    const at = text.indexOf(key);
    if (at < 0) return undefined;
    const start = at + key.length;
    const end = text.indexOf('"', start);
    return end > start ? this.feeds.get(text.slice(start, end)) : undefined;
  }

  /** An unreadable message of `feed`: skipped, counted, logged once per episode. */
  parseError(feed: F, what: string): void {
    for (const subscription of feed.subscriptions) subscription.stats.parseErrors++;
    this.faults.report(`parse:${feed.topic}`, `${feed.subscriptions[0]!.key}: ${what}; skipped (counted as a parse error)`);
  }

  /** A frame no feed can be blamed for: counted against every feed of its connection (or `feeds`). */
  protected badFrame(connection: PoolConnection, what: string, text?: string, feeds: readonly F[] = this.pool.topicsOn(connection)): void {
    for (const feed of feeds) for (const subscription of feed.subscriptions) subscription.stats.parseErrors++;
    const sample = text === undefined ? "" : `: ${text.slice(0, 120)}`;
    this.faults.report(`frame:${connection.name}`, `${connection.name}: ${what}${sample}; skipped (counted as a parse error)`);
  }

  /** A frame's JSON object, or undefined once reported as a bad frame (`notObject`: the words for valid JSON that is no object). */
  protected parseFrame<T extends object>(connection: PoolConnection, text: string, notObject: string): T | undefined {
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch {
      this.badFrame(connection, "malformed JSON", text);
      return undefined;
    }
    if (message !== null && typeof message === "object") return message as T;
    this.badFrame(connection, notObject, text);
    return undefined;
  }

  /** Fails one feed alone: out of its connection, its book forgotten, a log line, a `subscription_error` gap row. */
  failFeed(feed: F, why: string, logged = true): void {
    if (feed.failed) return;
    feed.failed = true;
    this.cancelRetry(feed);
    feed.book?.sync.forget();
    this.pool.release(feed, this.rules.unsubscribeFailed);
    if (logged) this.log.error(this.failureLine(feed, why));
    this.gap(feed, "subscription_error", why);
  }

  /** Subscribes `feed` again after `ms` (a refusal worth retrying), unless it fails or is lost first. */
  protected retryLater(feed: F, ms: number, action: () => void): void {
    this.cancelRetry(feed);
    const timer = setTimeout(() => {
      this.retries.delete(feed);
      if (!feed.failed) action();
    }, ms);
    this.retries.set(feed, timer);
  }

  private cancelRetry(feed: F): void {
    clearTimeout(this.retries.get(feed));
    this.retries.delete(feed);
  }

  protected failureLine(feed: F, why: string): string {
    return `${feed.subscriptions[0]!.key}: ${why}; this subscription stops, the others continue`;
  }
}

/**
 * The connection pool every venue runs on: the one place that knows sockets, connection limits, request
 * pacing, answers and rollovers. A venue hands it its topics (the names it subscribes: Binance stream
 * names, OKX subscriptions (each one or two channel arguments), Deribit channel names) and a few hooks;
 * the pool:
 * - groups topics onto connections, per route (URL), within the venue's topics per connection;
 * - paces new connections (connections per window; the venues' limits are per IP, so one pacer per venue
 *   in the process) and requests per connection (kit/rate.ts);
 * - numbers requests, matches answers by id and reconnects when one goes unanswered (kit/requests.ts);
 *   a refused batch is requested again item by item (kit/refused-batch.ts);
 * - keeps quiet connections alive (ReconnectingSocket's keepalive with the venue's ping);
 * - turns a close into a gap for each topic it carried (kit/close-gap.ts);
 * - replaces a connection before the venue's maximum age (or when the venue calls `rollover` on a "going
 *   away" notice) make before break: the successor subscribes while the old one still delivers; per topic its events wait until
 *   they overlap what the old one delivered (the venue's key per event: trade id, update id, event time),
 *   then the topic switches with neither a duplicate nor a gap (handover below).
 *
 * Frames are not touched here: the socket hands each one to the venue's `onFrame` with its connection,
 * and the venue routes it by topic (its scanned fast paths first).
 */
import type { GapReason } from "../../core/events.ts";
import type { Logger } from "../../core/log.ts";
import type { RecentKeys } from "../dedup.ts";
import { closeGap, describeClose } from "./close-gap.ts";
import { TokenBucket } from "./rate.ts";
import { isolateRefusedBatch } from "./refused-batch.ts";
import {
  PoolConnection,
  type ConnectionOwner,
  type PoolLimits,
  type PoolRequest,
  type PoolWire,
  type Refusal,
  type RequestMethod,
} from "./connection.ts";
import { backoffFromEnv, type BackoffOptions, type CloseInfo, type OpenInfo } from "../websocket.ts";
import { Timers } from "./timers.ts";
import type { ConnectorContext } from "../../core/connector.ts";

export { NO_ROLLOVER, PoolConnection, type PoolLimits, type PoolWire, type Refusal, type RequestMethod } from "./connection.ts";

/** The refusal of a topic a subscribe answer left out (Deribit lists what it subscribed). */
export const NOT_SUBSCRIBED: Refusal = { code: "not_subscribed", text: "the venue's answer left it out" };

/** One topic as the pool sees it; the venue's own record (a feed, a subscription) extends it. */
export interface PoolTopic {
  readonly topic: string;
  /** The connection whose events are used (during a rollover, its successor's events wait in `handover`). */
  connection: PoolConnection | undefined;
  failed: boolean;
}

/** A topic of a venue whose connections are replaced make before break: what the handover needs. */
export interface HandoverTopic<Item> extends PoolTopic {
  /** Keys recently taken from the connection in use: repeats are dropped (dedup.ts). */
  readonly keys: RecentKeys;
  /** Events of the successor connection awaiting the switch, and their keys. */
  handoverKeys: number[];
  handoverItems: Item[];
}

/** What a pool is made of: the venue's id, limits and wire format, the connector's context and topics. */
export interface PoolSetup<T> {
  /** The venue id: connections are named `<id> <route>#<n>`, or `<id>` for a venue of one connection. */
  readonly name: string;
  readonly context: ConnectorContext;
  readonly limits: PoolLimits;
  readonly wire: PoolWire;
  /** Every topic by name. */
  readonly topics: ReadonlyMap<string, T>;
  /**
   * Paces the venue's new connections (undefined: not paced). One per venue, shared by every connector
   * of the process: the venues count connections per IP.
   */
  readonly connectPacer?: TokenBucket;
}

/** What the venue does at the pool's events. */
export interface PoolHooks<T extends PoolTopic, Item = never> {
  url(route: string): string;
  /** The stale window of a connection carrying `topics`. */
  staleAfterMs(topics: readonly T[]): number;
  /** Every frame, as received; hot path. */
  onFrame(connection: PoolConnection, text: string, receivedAt: number): void;
  /** `connection` opened (before its subscribe goes out): count reconnects, ready the books. */
  onOpened(connection: PoolConnection, info: OpenInfo): void;
  /** A successor takes over `topic` after its connection in use was lost (counted as a reconnect). */
  onReconnected?(topic: T): void;
  /** The venue acknowledged `topic` on the connection in use (a book starts syncing). */
  onSubscribed?(topic: T): void;
  /** The venue refused `topic` alone: retry or fail it. */
  onRefused(topic: T, refusal: Refusal, connection: PoolConnection): void;
  /** `topic` cannot be subscribed (`why`): the venue fails it. */
  onFailed(topic: T, why: string): void;
  /** Whether `topic` of a refused batch still waits for its ack (default: it was not acknowledged). */
  awaitsAck?(topic: T, connection: PoolConnection): boolean;
  /** Whether a new connection's subscribe waits for the venue (authentication): it calls `subscribeAll`. */
  holdsSubscribe?(connection: PoolConnection): boolean;
  /**
   * A refused subscribe the venue handles itself (rate limited, unauthorized: it reconnects); true when
   * it did, else the pool isolates or refuses its topics.
   */
  onRequestRefused?(connection: PoolConnection, refusal: Refusal): boolean;
  /** `connection` closed, before its gap rows (the venue forgets what it held for the connection). */
  onClosed?(connection: PoolConnection, info: CloseInfo): void;
  /** The detail of a close's gap rows (default: describeClose with the connection's name). */
  describeClose?(info: CloseInfo, connection: PoolConnection): string;
  /** The connection in use closed: data of `topic` was lost (a gap row; a book forgets its state). */
  onLost(topic: T, reason: GapReason, detail: string): void;
  /** A successor event the old connection did not deliver, taken as if from the connection in use. */
  take?(topic: T & HandoverTopic<Item>, item: Item, key: number): void;
}

export class ConnectionPool<T extends PoolTopic, Item = never> implements ConnectionOwner {
  readonly connections = new Set<PoolConnection>();
  private readonly timers = new Timers();
  private connectionCount = 0;
  private stopped = false;

  readonly log: Logger;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly backoff: BackoffOptions;
  readonly maxFrameBytes: number;
  readonly limits: PoolLimits;
  readonly wire: PoolWire;
  private readonly name: string;
  /** Every topic by name (the venue's own map). */
  private readonly topics: ReadonlyMap<string, T>;
  private readonly connectPacer: TokenBucket | undefined;

  constructor(
    readonly hooks: PoolHooks<T, Item>,
    setup: PoolSetup<T>,
  ) {
    const { config } = setup.context;
    this.log = setup.context.log;
    this.env = config.env;
    this.backoff = backoffFromEnv(config.env);
    this.maxFrameBytes = config.maxFrameBytes;
    this.name = setup.name;
    this.limits = setup.limits;
    this.wire = setup.wire;
    this.topics = setup.topics;
    this.connectPacer = setup.connectPacer;
  }

  // ── what a connection needs (ConnectionOwner) ──

  url(route: string): string {
    return this.hooks.url(route);
  }

  get frames(): PoolHooks<T, Item> {
    return this.hooks;
  }

  rolloverDelayMs(index: number): number | undefined {
    const maxAge = this.limits.connectionMaxAgeMs;
    if (maxAge === undefined) return undefined;
    return Math.max(1, maxAge - Math.min(this.limits.rolloverStaggerMs * index, maxAge / 10));
  }

  /** Opens one connection on `route` per group of topics (a venue that weighs its topics groups them). */
  openGroups(route: string, groups: readonly (readonly T[])[]): void {
    for (const group of groups) {
      const connection = this.create(route, group);
      for (const topic of group) topic.connection = connection;
      this.start(connection);
    }
  }

  /** Opens connections for `topics` (the venue's order), grouped by route within the per-connection limit. */
  open(topics: readonly T[], routeOf: (topic: T) => string): void {
    const byRoute = new Map<string, T[]>();
    for (const topic of topics) {
      if (topic.failed) continue;
      const route = routeOf(topic);
      const list = byRoute.get(route) ?? [];
      list.push(topic);
      byRoute.set(route, list);
    }
    for (const [route, list] of byRoute) {
      const groups: T[][] = [];
      for (let i = 0; i < list.length; i += this.limits.topicsPerConnection) groups.push(list.slice(i, i + this.limits.topicsPerConnection));
      this.openGroups(route, groups);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.timers.clear();
    await Promise.all([...this.connections].map((connection) => connection.stop()));
  }

  /** The live topics whose connection in use is `connection`. */
  topicsOn(connection: PoolConnection): T[] {
    const out: T[] = [];
    for (const name of connection.topics) {
      const topic = this.topics.get(name);
      if (topic && !topic.failed && topic.connection === connection) out.push(topic);
    }
    return out;
  }

  /**
   * A failed topic leaves its connection, unsubscribed unless `unsubscribe` is false (the venue refused
   * it anyway); a connection left with nothing closes.
   */
  release(topic: T, unsubscribe = true): void {
    const connection = topic.connection;
    if (!connection) return;
    connection.topics.delete(topic.topic);
    connection.successor?.topics.delete(topic.topic);
    if (!unsubscribe) return;
    connection.unsubscribe([topic.topic]);
    if (connection.topics.size === 0 && !connection.successor && !connection.predecessor) {
      this.connections.delete(connection);
      void connection.stop();
    }
  }

  // ── connection events (from PoolConnection) ──

  opened(connection: PoolConnection, info: OpenInfo): void {
    if (!this.stopped) this.hooks.onOpened(connection, info);
  }

  acknowledged(connection: PoolConnection, names: readonly string[]): void {
    if (this.stopped) return;
    for (const name of names) {
      const topic = this.topics.get(name);
      if (topic && topic.connection === connection) this.hooks.onSubscribed?.(topic);
    }
    const predecessor = connection.predecessor;
    const allAcked = [...connection.topics].every((name) => connection.acked.has(name) || this.topics.get(name)?.failed);
    if (predecessor && allAcked) {
      // Everything after this moment reaches both connections; give in-flight events time to arrive.
      const maxAge = this.limits.connectionMaxAgeMs ?? Number.POSITIVE_INFINITY;
      const grace = Math.min(this.limits.handoverGraceMs, Math.max(50, maxAge / 2));
      this.timers.later(grace, () => this.completeHandover(predecessor, connection));
    }
  }

  /**
   * A refused request: an unsubscribe is only logged; a batch subscribe is requested again topic by topic
   * (after the venue's settle time, only the topics still waiting for their ack), so the next refusal
   * names its topic; a topic refused alone is the venue's to retry or fail.
   */
  refused(connection: PoolConnection, request: PoolRequest, refusal: Refusal): void {
    const label = this.wire.label(request.method as RequestMethod);
    const names = request.topics;
    const why = this.wire.describe(refusal);
    if (request.method !== "subscribe") {
      // Nothing depends on an unsubscribe: the topic is gone from the connection either way.
      this.log.debug(`${connection.name}: ${label} of ${names.join(", ")} rejected: ${why}`);
      return;
    }
    if (this.hooks.onRequestRefused?.(connection, refusal)) return;
    const settleMs = this.limits.refusedBatchSettleMs ?? 0;
    const isolated = isolateRefusedBatch(
      { items: names, batch: this.wire.isolates === "batch" ? request.batch : names.length > 1 },
      () => this.log.warn(`${connection.name}: ${label} of ${names.length} ${this.wire.topicWord} rejected (${why}); retrying one by one`),
      (name) => {
        const topic = this.topics.get(name);
        if (!topic || topic.failed) return;
        if (this.hooks.awaitsAck ? !this.hooks.awaitsAck(topic, connection) : connection.acked.has(name)) return;
        if (!connection.subscribe([name]) && connection.isOpen) this.hooks.onFailed(topic, "subscribe budget exhausted while isolating a refused subscription");
      },
      settleMs > 0 ? (retry) => connection.later(settleMs, retry) : undefined,
    );
    if (isolated) return;
    for (const name of names) {
      const topic = this.topics.get(name);
      if (topic && !topic.failed) this.hooks.onRefused(topic, refusal, connection);
    }
  }

  /** Topics a subscribe answer left out: refused one by one. */
  notSubscribed(connection: PoolConnection, names: readonly string[]): void {
    for (const name of names) {
      const topic = this.topics.get(name);
      if (topic && !topic.failed) this.hooks.onRefused(topic, NOT_SUBSCRIBED, connection);
    }
  }

  holdsSubscribe(connection: PoolConnection): boolean {
    return this.hooks.holdsSubscribe?.(connection) ?? false;
  }

  closed(connection: PoolConnection, info: CloseInfo): void {
    this.hooks.onClosed?.(connection, info);
    const hooks = this.hooks;
    // A connection we shut down ourselves (retired, emptied, credentials refused) owes no gap.
    const gap = closeGap(info, this.stopped || info.initiatedBy === "shutdown", (close) =>
      hooks.describeClose ? hooks.describeClose(close, connection) : describeClose(close, connection.name),
    );
    if (!gap) return;
    const successor = connection.successor;
    for (const topic of this.topicsOn(connection)) {
      if (successor && successor.acked.has(topic.topic)) {
        // The successor was subscribed while this one was alive: it has every later event. No gap.
        this.switchTopic(topic, successor);
        continue;
      }
      this.hooks.onLost(topic, gap.reason, gap.detail);
      if (successor) {
        // The successor takes over at once instead of this connection reconnecting.
        this.hooks.onReconnected?.(topic);
        this.switchTopic(topic, successor);
      }
    }
    if (connection.predecessor) {
      // A successor lost mid-handover: what it buffered for topics still on the old connection is stale.
      for (const topic of this.topicsOn(connection.predecessor) as Array<T & HandoverTopic<Item>>) {
        topic.handoverKeys.length = 0;
        topic.handoverItems.length = 0;
      }
    }
    if (successor) this.retire(connection);
  }

  // ── rollover: make before break ──

  /** Opens the replacement of `connection` (max age, or the venue's notice); the old one stays until handover. */
  rollover(connection: PoolConnection): void {
    if (this.stopped || connection.successor || connection.isStopping || !connection.socket.isOpen) return;
    const topics = [...connection.topics].map((name) => this.topics.get(name)).filter((topic) => topic && !topic.failed) as T[];
    if (topics.length === 0) return;
    const successor = this.create(connection.route, topics);
    connection.successor = successor;
    successor.predecessor = connection;
    this.log.info(`${connection.name}: replacing the connection ${this.limits.rolloverReason ?? "at its maximum age"} (by ${successor.name})`);
    this.start(successor);
  }

  /**
   * An event of `topic` from the successor of its connection, read with its key. Held until the
   * successor delivers something the old connection already did: from then on it has everything.
   */
  offer(successor: PoolConnection, topic: T & HandoverTopic<Item>, item: Item, key: number): void {
    if (key <= topic.keys.last || topic.handoverKeys.length >= this.limits.handoverBufferEvents) {
      this.switchTopic(topic, successor);
      if (!topic.keys.has(key)) this.hooks.take!(topic, item, key);
      return;
    }
    topic.handoverKeys.push(key);
    topic.handoverItems.push(item);
  }

  /** After an event taken from the old connection: switch once it reaches what the successor holds. */
  switchIfOverlapping(topic: T & HandoverTopic<Item>): void {
    const successor = topic.connection?.successor;
    if (successor && topic.handoverKeys.length > 0 && topic.handoverKeys[0]! <= topic.keys.last) this.switchTopic(topic, successor);
  }

  /** Makes `successor` the topic's connection and replays what it held that the old one did not deliver. */
  private switchTopic(topic: T, successor: PoolConnection): void {
    const handover = topic as T & HandoverTopic<Item>;
    const previous = topic.connection;
    if (previous === successor) return;
    topic.connection = successor;
    previous?.topics.delete(topic.topic);
    const keys = handover.handoverKeys;
    const items = handover.handoverItems;
    handover.handoverKeys = [];
    handover.handoverItems = [];
    for (let i = 0; i < items.length; i++) {
      if (!handover.keys.has(keys[i]!)) this.hooks.take!(handover, items[i]!, keys[i]!);
    }
    if (previous && previous.successor === successor && previous.topics.size === 0) this.retire(previous);
  }

  private completeHandover(predecessor: PoolConnection, successor: PoolConnection): void {
    if (this.stopped || predecessor.successor !== successor || !successor.socket.isOpen) return;
    for (const topic of this.topicsOn(predecessor)) this.switchTopic(topic, successor);
    this.retire(predecessor);
  }

  /** Closes a replaced connection; its topics have moved to the successor. */
  private retire(connection: PoolConnection): void {
    const successor = connection.successor;
    if (successor?.predecessor === connection) successor.predecessor = undefined;
    connection.successor = undefined;
    this.connections.delete(connection);
    if (!connection.isStopping) this.log.info(`${connection.name}: handed over to ${successor?.name ?? "its successor"}; closing`);
    void connection.stop();
  }

  // ── helpers ──

  private create(route: string, topics: readonly T[]): PoolConnection {
    const index = this.connectionCount++;
    const connection = new PoolConnection(
      this,
      route,
      // A venue of one connection (route "") names it by the venue alone.
      route === "" ? this.name : `${this.name} ${route}#${index + 1}`,
      index,
      this.hooks.staleAfterMs(topics),
    );
    for (const topic of topics) connection.topics.add(topic.topic);
    this.connections.add(connection);
    return connection;
  }

  /** Starts `connection` at once, or at its turn when the venue paces new connections. */
  private start(connection: PoolConnection): void {
    const pacer = this.connectPacer;
    if (pacer === undefined) return connection.start();
    void pacer.reserve().then(() => {
      if (!this.stopped && !connection.isStopping) connection.start();
    });
  }

}

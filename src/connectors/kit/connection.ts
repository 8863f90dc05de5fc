/**
 * One pooled connection: a ReconnectingSocket, the topics it subscribes on every open, its request outbox
 * paced by the venue's request rate (kit/rate.ts) within its request budget, and its requests waiting
 * for their answer by id (kit/requests.ts): one unanswered past the venue's timeout means a broken
 * session, so it reconnects. The pool (kit/pool.ts) owns the connections and decides what their events
 * mean.
 */
import type { Logger } from "../../core/log.ts";
import { SlidingWindow, TokenBucket } from "./rate.ts";
import { PendingRequests } from "./requests.ts";
import { Timers } from "./timers.ts";
import { ReconnectingSocket, type BackoffOptions, type CloseInfo, type OpenInfo } from "../websocket.ts";

export type RequestMethod = "subscribe" | "unsubscribe";

type Env = Readonly<Record<string, string | undefined>>;

export interface PoolLimits {
  /** Topics one connection may carry. */
  readonly topicsPerConnection: number;
  /** Topics one subscribe request may name. */
  readonly topicsPerRequest: number;
  /** Requests of one connection: `requestBurst` at once, then `requestsPerSecond`. */
  readonly requestBurst: number;
  readonly requestsPerSecond: number;
  /** Requests one connection may make in an hour (undefined: no such budget); a spent budget refuses. */
  readonly requestsPerHour?: number;
  /** An unanswered request after this long means a broken session: reconnect (undefined: never). */
  readonly answerTimeoutMs: number | undefined;
  /** After a refused batch, how long to wait for the acks of its good topics before isolating (0: at once). */
  readonly refusedBatchSettleMs?: number;
  /** Replace a connection after this long (undefined: connections live as long as they can). */
  readonly connectionMaxAgeMs: number | undefined;
  /** Why, in the log line of a rollover ("before Binance's 24 h limit"). */
  readonly rolloverReason?: string;
  /** Spreads rollovers of connections opened together (connection i is replaced i × this earlier). */
  readonly rolloverStaggerMs: number;
  /** Longest a replaced connection is kept once its successor is subscribed. */
  readonly handoverGraceMs: number;
  /** Events of one topic a successor may hold before it takes over regardless. */
  readonly handoverBufferEvents: number;
}

/** The limits of a venue whose connections are never replaced (no maximum age, so no rollover). */
export const NO_ROLLOVER = { connectionMaxAgeMs: undefined, rolloverStaggerMs: 0, handoverGraceMs: 0, handoverBufferEvents: 0 } as const;

/** A venue's refusal of a request, as its error carries it. */
export interface Refusal {
  readonly code: string;
  readonly text: string;
}

/** The venue's wire format of requests. */
export interface PoolWire {
  /** The text of request `id`: `method` of `topics`; `batch` for the subscribe of a whole connection. */
  encode(method: RequestMethod, topics: readonly string[], id: number, batch: boolean): string;
  /** The method as the venue names it, for log lines (Binance: SUBSCRIBE). */
  label(method: RequestMethod): string;
  /** A refusal in log lines and gap details. */
  describe(refusal: Refusal): string;
  /** What the venue calls its topics, for log lines ("streams", "channels"). */
  readonly topicWord: string;
  /**
   * Whether a refused request is isolated item by item: by default when it names several topics; with
   * "batch", whenever it was a connection's subscribe (the venue's error may not say which topic it means).
   */
  readonly isolates?: "several" | "batch";
  /** The topics a successful subscribe's `result` says were subscribed (default: all it named). */
  accepted?(result: unknown): ReadonlySet<string> | undefined;
  /** App-level ping sent after this much silence on a connection whose stale window is `staleAfterMs`. */
  keepalive?(staleAfterMs: number, env: Env): { readonly idleMs: number; readonly message: string };
}

/** What a connection needs of its pool. */
export interface ConnectionOwner {
  readonly log: Logger;
  readonly env: Env;
  readonly backoff: BackoffOptions;
  readonly maxFrameBytes: number;
  readonly wire: PoolWire;
  readonly limits: PoolLimits;
  /** When to replace a connection opened as the pool's `index`-th (undefined: never). */
  rolloverDelayMs(index: number): number | undefined;
  url(route: string): string;
  /** Whoever reads frames (the venue): each frame goes straight to it, the hot path. */
  readonly frames: { onFrame(connection: PoolConnection, text: string, receivedAt: number): void };
  opened(connection: PoolConnection, info: OpenInfo): void;
  acknowledged(connection: PoolConnection, topics: readonly string[]): void;
  /** The venue answered a subscribe without subscribing `topics`. */
  notSubscribed(connection: PoolConnection, topics: readonly string[]): void;
  /** Whether the subscribe of a newly opened connection waits for the venue (authentication). */
  holdsSubscribe(connection: PoolConnection): boolean;
  refused(connection: PoolConnection, request: PoolRequest, refusal: Refusal): void;
  rollover(connection: PoolConnection): void;
  closed(connection: PoolConnection, info: CloseInfo): void;
}

/** Requests waiting for their answer on one connection. */
export interface PoolRequest {
  readonly id: number;
  /** "call": a request of the venue's own (authentication, heartbeat), answered to `onAnswer`. */
  readonly method: RequestMethod | "call";
  readonly topics: readonly string[];
  readonly batch: boolean;
  readonly label?: string;
  readonly onAnswer?: (refusal: Refusal | undefined, result: unknown) => void;
}

/** One socket on one route, carrying up to `topicsPerConnection` topics. */
export class PoolConnection {
  /** Topics this connection subscribes on every (re)open. */
  readonly topics = new Set<string>();
  /** Topics the venue acknowledged on the current connection. */
  readonly acked = new Set<string>();
  successor: PoolConnection | undefined;
  predecessor: PoolConnection | undefined;
  /** How many times the connection has opened. */
  opens = 0;
  readonly socket: ReconnectingSocket;
  private readonly pending: PendingRequests<number, PoolRequest>;
  private readonly outbox: PoolRequest[] = [];
  private nextRequestId = 1;
  private readonly rate: TokenBucket;
  /** Requests of the current connection in the last hour, when the venue limits them. */
  private readonly budget: SlidingWindow | undefined;
  private pacer: ReturnType<typeof setTimeout> | undefined;
  private rolloverTimer: ReturnType<typeof setTimeout> | undefined;
  /** Actions of the current connection (a refused batch's isolation), dropped with it. */
  private readonly timers = new Timers();
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly pool: ConnectionOwner,
    readonly route: string,
    readonly name: string,
    readonly index: number,
    staleAfterMs: number,
  ) {
    const { wire, limits } = pool;
    this.rate = new TokenBucket(limits.requestBurst, limits.requestsPerSecond);
    this.budget = limits.requestsPerHour === undefined ? undefined : new SlidingWindow(limits.requestsPerHour, 3_600_000);
    this.pending = new PendingRequests(limits.answerTimeoutMs, (_id, request) => {
      if (!this.socket.isOpen) return;
      const label = request.label ?? wire.label(request.method as RequestMethod);
      pool.log.warn(`${this.name}: no answer to ${label} within ${limits.answerTimeoutMs! / 1000} s`);
      this.socket.reconnect(`${label} not answered`);
    });
    const url = pool.url(route);
    const frames = pool.frames;
    this.socket = new ReconnectingSocket({
      name,
      url: () => url,
      log: pool.log,
      staleAfterMs,
      backoff: pool.backoff,
      maxFrameBytes: pool.maxFrameBytes,
      keepalive: wire.keepalive?.(staleAfterMs, pool.env),
      onOpen: (info) => this.onOpen(info),
      onMessage: (data, receivedAt) => frames.onFrame(this, data, receivedAt),
      onClose: (info) => this.onClose(info),
    });
  }

  get isOpen(): boolean {
    return this.socket.isOpen;
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

  /**
   * Subscribes `topics` (split by the topics per request); `batch` for the subscribe of the whole
   * connection. False, with nothing sent, when the connection is not open or the request budget is spent.
   */
  subscribe(topics: readonly string[], batch = false): boolean {
    if (!this.isOpen) return false;
    const size = this.pool.limits.topicsPerRequest;
    const requests = Math.ceil(topics.length / size);
    if (this.budget && !this.budget.take(requests)) return false;
    for (let i = 0; i < topics.length; i += size) this.request("subscribe", topics.slice(i, i + size), batch);
    return true;
  }

  unsubscribe(topics: readonly string[]): void {
    if (this.isOpen && topics.length > 0 && (!this.budget || this.budget.take())) this.request("unsubscribe", [...topics], false);
  }

  /** Unsubscribes and subscribes `topic` again (a fresh snapshot); false when not open or out of budget. */
  resubscribe(topic: string): boolean {
    if (!this.isOpen || (this.budget && !this.budget.take(2))) return false;
    this.request("unsubscribe", [topic], false);
    this.request("subscribe", [topic], false);
    return true;
  }

  /** Subscribes every topic of the connection (after the venue's authentication, when it holds it). */
  subscribeAll(): void {
    if (this.topics.size > 0) this.subscribe([...this.topics], true);
  }

  /**
   * Sends a request of the venue's own at once (not paced: authentication, heartbeat answers); `encode`
   * writes it with its id, `onAnswer` gets the answer. Timed out like every request.
   */
  call(label: string, encode: (id: number) => string, onAnswer: PoolRequest["onAnswer"] = () => {}): void {
    const id = this.nextRequestId++;
    this.pending.add(id, { id, method: "call", topics: [], batch: false, label, onAnswer });
    if (!this.socket.send(encode(id))) this.pending.take(id);
  }

  /**
   * The venue's answer to request `id`: `refusal` undefined for success, `result` what it carried. False
   * for an id no request of this connection waits for.
   */
  answer(id: number, refusal?: Refusal, result?: unknown): boolean {
    const request = this.pending.take(id);
    if (!request) {
      this.pool.log.debug(`${this.name}: response to unknown request ${String(id)}`);
      return false;
    }
    if (request.onAnswer) {
      request.onAnswer(refusal, result);
    } else if (refusal !== undefined) {
      this.pool.refused(this, request, refusal);
    } else if (request.method === "subscribe") {
      const accepted = this.pool.wire.accepted?.(result);
      const acked = accepted ? request.topics.filter((topic) => accepted.has(topic)) : request.topics;
      for (const topic of acked) this.acked.add(topic);
      if (acked.length < request.topics.length) this.pool.notSubscribed(this, request.topics.filter((topic) => !accepted!.has(topic)));
      this.pool.acknowledged(this, acked);
    }
    return true;
  }

  /** Runs `action` after `ms` unless the connection closes first. */
  later(ms: number, action: () => void): void {
    this.timers.later(ms, action);
  }

  private request(method: RequestMethod, topics: readonly string[], batch: boolean): void {
    const id = this.nextRequestId++;
    const request = { id, method, topics, batch };
    this.pending.add(id, request, true);
    this.outbox.push(request);
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
      if (!this.socket.send(this.pool.wire.encode(next.method as RequestMethod, next.topics, next.id, next.batch))) {
        // Closed: everything is requested again on reopen.
        this.outbox.length = 0;
        return;
      }
      this.pending.sent(next.id);
      this.pump();
    }, wait);
  }

  private onOpen(info: OpenInfo): void {
    this.opens++;
    this.acked.clear();
    this.pending.clear();
    this.outbox.length = 0;
    this.budget?.clear();
    clearTimeout(this.rolloverTimer);
    const delay = this.pool.rolloverDelayMs(this.index);
    if (delay !== undefined) this.rolloverTimer = setTimeout(() => this.pool.rollover(this), delay);
    // The venue readies its topics (books wait for a snapshot) before their subscribe goes out.
    this.pool.opened(this, info);
    if (!this.pool.holdsSubscribe(this)) this.subscribeAll();
  }

  private onClose(info: CloseInfo): void {
    this.clearTimers();
    this.acked.clear();
    this.outbox.length = 0;
    this.pool.closed(this, info);
  }

  private clearTimers(): void {
    this.pending.clear();
    clearTimeout(this.pacer);
    this.pacer = undefined;
    clearTimeout(this.rolloverTimer);
    this.timers.clear();
  }
}

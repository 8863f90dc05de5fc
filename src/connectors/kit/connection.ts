/**
 * One pooled connection: a ReconnectingSocket, the topics it subscribes on every open, its request outbox
 * paced by the venue's request rate (kit/rate.ts), and its requests waiting for their answer by id
 * (kit/requests.ts): one unanswered past the venue's timeout means a broken session, so it reconnects.
 * The pool (kit/pool.ts) owns the connections and decides what their events mean.
 */
import type { Logger } from "../../core/log.ts";
import { TokenBucket } from "./rate.ts";
import { PendingRequests } from "./requests.ts";
import { ReconnectingSocket, type BackoffOptions, type CloseInfo, type OpenInfo } from "../websocket.ts";

export type RequestMethod = "subscribe" | "unsubscribe";

/** The venue's wire format of requests. */
export interface PoolWire {
  /** The text of request `id`: `method` of `topics`. */
  encode(method: RequestMethod, topics: readonly string[], id: number): string;
  /** The method as the venue names it, for log lines (Binance: SUBSCRIBE). */
  label(method: RequestMethod): string;
  /** What the venue calls its topics, for log lines ("streams", "channels"). */
  readonly topicWord: string;
  /** App-level ping sent after this much silence on a connection whose stale window is `staleAfterMs`. */
  keepalive?(staleAfterMs: number): { readonly idleMs: number; readonly message: string };
}

/** What a connection needs of its pool. */
export interface ConnectionOwner {
  readonly log: Logger;
  readonly backoff: BackoffOptions;
  readonly maxFrameBytes: number;
  readonly wire: PoolWire;
  readonly topicsPerRequest: number;
  readonly requestBurst: number;
  readonly requestsPerSecond: number;
  readonly answerTimeoutMs: number | undefined;
  /** When to replace a connection opened as the pool's `index`-th (undefined: never). */
  rolloverDelayMs(index: number): number | undefined;
  url(route: string): string;
  onFrame(connection: PoolConnection, text: string, receivedAt: number): void;
  opened(connection: PoolConnection, info: OpenInfo): void;
  acknowledged(connection: PoolConnection, topics: readonly string[]): void;
  refused(connection: PoolConnection, request: PoolRequest, why: string): void;
  rollover(connection: PoolConnection): void;
  closed(connection: PoolConnection, info: CloseInfo): void;
}

/** Requests waiting for their answer on one connection. */
export interface PoolRequest {
  readonly id: number;
  readonly method: RequestMethod;
  readonly topics: readonly string[];
}

/** One socket on one route, carrying up to `topicsPerConnection` topics. */
export class PoolConnection {
  /** Topics this connection subscribes on every (re)open. */
  readonly topics = new Set<string>();
  /** Topics the venue acknowledged on the current connection. */
  readonly acked = new Set<string>();
  successor: PoolConnection | undefined;
  predecessor: PoolConnection | undefined;
  readonly socket: ReconnectingSocket;
  private readonly pending: PendingRequests<number, PoolRequest>;
  private readonly outbox: PoolRequest[] = [];
  private nextRequestId = 1;
  private readonly rate: TokenBucket;
  private pacer: ReturnType<typeof setTimeout> | undefined;
  private rolloverTimer: ReturnType<typeof setTimeout> | undefined;
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly pool: ConnectionOwner,
    readonly route: string,
    readonly name: string,
    readonly index: number,
    staleAfterMs: number,
  ) {
    const { wire } = pool;
    this.rate = new TokenBucket(pool.requestBurst, pool.requestsPerSecond);
    this.pending = new PendingRequests(pool.answerTimeoutMs, (_id, request) => {
      if (!this.socket.isOpen) return;
      const label = wire.label(request.method);
      pool.log.warn(`${this.name}: no answer to ${label} within ${pool.answerTimeoutMs! / 1000} s`);
      this.socket.reconnect(`${label} not answered`);
    });
    const url = pool.url(route);
    this.socket = new ReconnectingSocket({
      name,
      url: () => url,
      log: pool.log,
      staleAfterMs,
      backoff: pool.backoff,
      maxFrameBytes: pool.maxFrameBytes,
      keepalive: wire.keepalive?.(staleAfterMs),
      onOpen: (info) => this.onOpen(info),
      onMessage: (data, receivedAt) => pool.onFrame(this, data, receivedAt),
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

  subscribe(topics: readonly string[]): void {
    const size = this.pool.topicsPerRequest;
    for (let i = 0; i < topics.length; i += size) this.request("subscribe", topics.slice(i, i + size));
  }

  unsubscribe(topics: readonly string[]): void {
    if (this.socket.isOpen && topics.length > 0) this.request("unsubscribe", [...topics]);
  }

  /** The venue's answer to request `id`: `error` undefined for success, else the venue's words. */
  answer(id: number, error: string | undefined): void {
    const request = this.pending.take(id);
    if (!request) {
      this.pool.log.debug(`${this.name}: response to unknown request ${String(id)}`);
      return;
    }
    if (error !== undefined) {
      this.pool.refused(this, request, error);
      return;
    }
    if (request.method === "subscribe") {
      for (const topic of request.topics) this.acked.add(topic);
      this.pool.acknowledged(this, request.topics);
    }
  }

  private request(method: RequestMethod, topics: readonly string[]): void {
    const id = this.nextRequestId++;
    const request = { id, method, topics };
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
      if (!this.socket.send(this.pool.wire.encode(next.method, next.topics, next.id))) {
        // Closed: everything is requested again on reopen.
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
    this.subscribe([...this.topics]);
    clearTimeout(this.rolloverTimer);
    const delay = this.pool.rolloverDelayMs(this.index);
    if (delay !== undefined) this.rolloverTimer = setTimeout(() => this.pool.rollover(this), delay);
    this.pool.opened(this, info);
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
  }
}


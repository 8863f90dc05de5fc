/**
 * The base of every fake venue in the tests: Bun.serve on 127.0.0.1 (a free port) serving WebSocket
 * streams on any path and REST routes, with the machinery every venue fake needs and no venue protocol:
 * - a connection registry; every text frame a client sent is recorded on its connection;
 * - server closes with code and reason, abrupt drops without a close frame, protocol pings, idle closes;
 * - pause/resume: a hung venue sends nothing while everything received is still recorded;
 * - a subscription registry by topic on each connection, and `push` to the subscribers of a topic;
 * - REST handlers per path, and scripted next replies (status, headers, body, delay) queued per path;
 * - waiting helpers: for a connection, a subscriber, N received frames, any condition.
 * A venue fake (fake-binance.ts, fake-okx.ts, fake-deribit.ts) adds only its protocol and its market.
 */
import type { Server, ServerWebSocket } from "bun";

export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly headers: Headers;
  readonly body: string;
}

/** A REST answer: `body` as JSON (status 200 unless given), sent after `delayMs`. */
export interface RestReply {
  readonly status?: number;
  readonly headers?: Record<string, string>;
  readonly body?: unknown;
  readonly delayMs?: number;
}

export type RestHandler = (request: RecordedRequest) => Response | RestReply | Promise<Response | RestReply>;

/** Which topics a push or a count is about: one topic, or every topic a predicate accepts. */
export type TopicMatch = string | ((topic: string) => boolean);

interface SocketData<S> {
  connection: FakeConnection<S>;
  readonly path: string;
  readonly query: URLSearchParams;
}

export class FakeConnection<S = unknown> {
  /** Text frames the client sent, in order. */
  readonly received: string[] = [];
  /** Topics this connection is subscribed to (the venue fake adds and removes them as it acks). */
  readonly topics = new Set<string>();
  /** The venue fake's own per-connection state (route, session, ...), made when the connection opens. */
  state!: S;
  pongs = 0;
  open = true;
  closeCode: number | undefined;
  /** performance.now() of the last text frame either way (for idle closes). */
  lastActivity = performance.now();
  /** performance.now() of the frames received in the last second (for the incoming message limit). */
  readonly recentFrames: number[] = [];
  private listeners: Array<() => void> = [];

  constructor(
    readonly id: number,
    readonly path: string,
    readonly query: URLSearchParams,
    private readonly socket: ServerWebSocket<SocketData<S>>,
    private readonly venue: { readonly paused: boolean },
  ) {}

  /** Sends a frame; objects are JSON-encoded. False (nothing sent) once closed or while the venue is paused. */
  send(message: unknown): boolean {
    if (!this.open || this.venue.paused) return false;
    this.socket.send(typeof message === "string" ? message : JSON.stringify(message));
    this.lastActivity = performance.now();
    return true;
  }

  /** Protocol-level ping frame; the client must answer with a pong (counted in `pongs`). */
  ping(): void {
    if (this.open) this.socket.ping();
  }

  /** Orderly close with a code (venues use 1000, 1001, 1008, 4xxx...). */
  close(code = 1000, reason = ""): void {
    if (this.open) this.socket.close(code, reason);
  }

  /** Abrupt TCP close: no close frame. */
  terminate(): void {
    if (this.open) this.socket.terminate();
  }

  /** Parsed JSON of every received frame that is JSON. */
  receivedJson(): unknown[] {
    const out: unknown[] = [];
    for (const text of this.received) {
      try {
        out.push(JSON.parse(text));
      } catch {
        // plain-text frames (e.g. OKX "ping") are not JSON
      }
    }
    return out;
  }

  /** Resolves with the first received frame (current or future) that matches. */
  waitForMessage(match: (text: string) => boolean, timeoutMs = 5000): Promise<string> {
    return waitUntil(() => this.received.find(match), timeoutMs, this, `message on connection ${this.id}`);
  }

  notify(): void {
    for (const listener of this.listeners.splice(0)) listener();
  }

  listen(listener: () => void): void {
    this.listeners.push(listener);
  }
}

export class FakeVenue<S = unknown> {
  readonly connections: FakeConnection<S>[] = [];
  readonly requests: RecordedRequest[] = [];
  /** Every REST answer with its path, status and arrival time (performance.now()). */
  readonly restLog: Array<{ path: string; status: number; at: number }> = [];
  /** When false, WebSocket upgrades are refused with HTTP 503 (venue down). */
  acceptConnections = true;
  /** While true nothing is sent to any client (a hung venue); frames received are still recorded. */
  paused = false;
  /** Connections the server closed for going over the incoming message limit. */
  readonly limitCloses: FakeConnection<S>[] = [];
  private incomingLimit: { perSecond: number; code: number; reason: string } | undefined;
  private readonly routes = new Map<string, RestHandler>();
  private readonly scripted = new Map<string, Array<RestHandler | RestReply>>();
  // Method signatures keep FakeVenue<Route> usable as a FakeVenue (parameters compared bivariantly).
  private readonly handlers: { connection(connection: FakeConnection<S>): void; message(connection: FakeConnection<S>, text: string): void } = {
    connection: () => {},
    message: () => {},
  };
  private waiters: Array<() => void> = [];
  private idleTimer: ReturnType<typeof setInterval> | undefined;
  private readonly server: Server<SocketData<S>>;

  /** `state` makes the venue's per-connection state when a connection opens (it may also add topics). */
  static start<S = unknown>(state?: (connection: FakeConnection<S>) => S): FakeVenue<S> {
    return new FakeVenue<S>(state);
  }

  private constructor(makeState: ((connection: FakeConnection<S>) => S) | undefined) {
    let nextId = 1;
    this.server = Bun.serve<SocketData<S>>({
      hostname: "127.0.0.1",
      port: 0,
      fetch: async (request, server) => {
        const url = new URL(request.url);
        if (request.headers.get("upgrade")?.toLowerCase() === "websocket") {
          if (!this.acceptConnections) return new Response("down", { status: 503 });
          // path/query are set before upgrading: Bun may run `open` inside upgrade() itself.
          const data = { connection: undefined as unknown as FakeConnection<S>, path: url.pathname, query: url.searchParams };
          return server.upgrade(request, { data }) ? undefined : new Response("upgrade failed", { status: 400 });
        }
        return this.answer(request, url);
      },
      websocket: {
        open: (socket) => {
          const connection = new FakeConnection<S>(nextId++, socket.data.path, socket.data.query, socket, this);
          socket.data.connection = connection;
          if (makeState) connection.state = makeState(connection);
          this.connections.push(connection);
          this.handlers.connection(connection);
          this.notify();
        },
        message: (socket, message) => {
          const connection = socket.data.connection;
          const text = typeof message === "string" ? message : new TextDecoder().decode(message);
          connection.received.push(text);
          connection.lastActivity = performance.now();
          if (this.overLimit(connection)) connection.close(this.incomingLimit!.code, this.incomingLimit!.reason);
          else this.handlers.message(connection, text);
          connection.notify();
          this.notify();
        },
        pong: (socket) => {
          socket.data.connection.pongs++;
          socket.data.connection.notify();
          this.notify();
        },
        close: (socket, code) => {
          const connection = socket.data.connection;
          connection.open = false;
          connection.closeCode = code;
          connection.notify();
          this.notify();
        },
      },
    });
  }

  /** Counts a received frame; true (recorded in limitCloses) when the connection went over the incoming limit. */
  private overLimit(connection: FakeConnection<S>): boolean {
    if (!this.incomingLimit) return false;
    const [now, recent] = [performance.now(), connection.recentFrames];
    recent.push(now);
    while (recent.length > 0 && now - recent[0]! > 1000) recent.shift();
    if (recent.length <= this.incomingLimit.perSecond) return false;
    this.limitCloses.push(connection);
    return true;
  }

  private async answer(request: Request, url: URL): Promise<Response> {
    const at = performance.now();
    const recorded: RecordedRequest = {
      method: request.method,
      path: url.pathname,
      query: url.searchParams,
      headers: request.headers,
      body: await request.text(),
    };
    this.requests.push(recorded);
    this.notify();
    const handler = this.scripted.get(url.pathname)?.shift() ?? this.routes.get(`${request.method} ${url.pathname}`);
    const reply = handler === undefined ? { status: 404, body: { error: "not found" } } : typeof handler === "function" ? await handler(recorded) : handler;
    let response: Response;
    if (reply instanceof Response) response = reply;
    else {
      if (reply.delayMs) await Bun.sleep(reply.delayMs);
      response = Response.json(reply.body ?? {}, { status: reply.status ?? 200, headers: reply.headers });
    }
    this.restLog.push({ path: url.pathname, status: response.status, at });
    return response;
  }

  get port(): number {
    return this.server.port!;
  }

  /** Base URL for REST, e.g. http://127.0.0.1:1234 */
  get httpUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** WebSocket URL for a path, e.g. ws://127.0.0.1:1234/ws */
  wsUrl(path = ""): string {
    return `ws://127.0.0.1:${this.port}${path}`;
  }

  /** Registers a REST route, e.g. `rest("GET", "/fapi/v1/depth", handler)`. */
  rest(method: string, path: string, handler: RestHandler): void {
    this.routes.set(`${method} ${path}`, handler);
  }

  /** The next requests of `path` (any method) get these answers, in order, before its route answers again. */
  replyNext(path: string, ...replies: Array<RestHandler | RestReply>): void {
    this.scripted.set(path, [...(this.scripted.get(path) ?? []), ...replies]);
  }

  /** Scripted answers of `path` not yet consumed. */
  pendingReplies(path: string): ReadonlyArray<RestHandler | RestReply> {
    return this.scripted.get(path) ?? [];
  }

  onConnection(handler: (connection: FakeConnection<S>) => void): void {
    this.handlers.connection = handler;
  }

  onMessage(handler: (connection: FakeConnection<S>, text: string) => void): void {
    this.handlers.message = handler;
  }

  openConnections(): FakeConnection<S>[] {
    return this.connections.filter((connection) => connection.open);
  }

  /** Parsed JSON frames received on every connection, in connection order, that `match` accepts. */
  receivedJson<T = unknown>(match: (frame: T) => boolean = () => true): T[] {
    return this.connections.flatMap((connection) => connection.receivedJson() as T[]).filter(match);
  }

  // ── subscriptions by topic ──

  /** Open connections subscribed to a matching topic. */
  subscribers(topic: TopicMatch): FakeConnection<S>[] {
    return this.openConnections().filter((connection) =>
      typeof topic === "string" ? connection.topics.has(topic) : [...connection.topics].some(topic),
    );
  }

  /** How many connections a push to `topic` would reach now (none while paused). */
  audience(topic: TopicMatch): number {
    return this.paused ? 0 : this.subscribers(topic).length;
  }

  /**
   * Sends `frame` to every open connection once per matching topic it is subscribed to; `frame` may be a
   * function of the topic and connection, returning undefined to skip one. Returns the frames sent.
   */
  push(topic: TopicMatch, frame: unknown): number {
    const make = typeof frame === "function" ? (frame as (topic: string, connection: FakeConnection<S>) => unknown) : () => frame;
    let sent = 0;
    for (const connection of this.openConnections()) {
      const topics = typeof topic === "string" ? (connection.topics.has(topic) ? [topic] : []) : [...connection.topics].filter(topic);
      for (const name of topics) {
        const message = make(name, connection);
        if (message !== undefined && connection.send(message)) sent++;
      }
    }
    return sent;
  }

  /** Sends a frame (raw text or JSON) to every open connection. */
  broadcast(frame: unknown): void {
    for (const connection of this.openConnections()) connection.send(frame);
  }

  // ── connection faults ──

  pingAll(): void {
    for (const connection of this.openConnections()) connection.ping();
  }

  /** Closes every open connection with a close frame (e.g. 1000 at a venue's forced reconnect). */
  closeAll(code = 1000, reason = ""): void {
    for (const connection of this.openConnections()) connection.close(code, reason);
  }

  /** Drops every open connection abruptly (no close frame). */
  terminateAll(): void {
    for (const connection of this.openConnections()) connection.terminate();
  }

  /** From now on, closes a connection with `code` when it sends more than `perSecond` frames in a second. */
  limitIncoming(perSecond: number, code: number, reason: string): void {
    this.incomingLimit = { perSecond, code, reason };
  }

  /** From now on, closes connections with `code` after `idleMs` without a text frame either way. */
  closeIdle(idleMs: number, code: number, reason: string): void {
    clearInterval(this.idleTimer);
    this.idleTimer = setInterval(() => {
      for (const connection of this.openConnections()) {
        if (performance.now() - connection.lastActivity > idleMs) connection.close(code, reason);
      }
    }, Math.max(10, idleMs / 10));
  }

  /**
   * A delivery barrier: pings every open connection and waits for the pongs. Frames on a connection arrive
   * in order, so once the client answered, it has read everything sent before.
   */
  async barrier(timeoutMs = 10_000): Promise<void> {
    await Promise.all(
      this.openConnections().map((connection) => {
        const before = connection.pongs;
        connection.ping();
        return this.waitFor(() => connection.pongs > before || !connection.open, timeoutMs, `a pong on connection ${connection.id}`);
      }),
    );
  }

  // ── waiting ──

  /** Resolves with the n-th connection (1-based) once it exists. */
  waitForConnection(n = this.connections.length + 1, timeoutMs = 5000): Promise<FakeConnection<S>> {
    return waitUntil(() => this.connections[n - 1], timeoutMs, this, `connection #${n}`);
  }

  /** Resolves with the subscribers once `count` open connections are subscribed to a matching topic. */
  waitForSubscribers(topic: TopicMatch, count = 1, timeoutMs = 5000): Promise<FakeConnection<S>[]> {
    return this.waitFor(
      () => {
        const found = this.subscribers(topic);
        return found.length >= count ? found : undefined;
      },
      timeoutMs,
      `${count} subscriber(s) of ${typeof topic === "string" ? topic : "a topic"}`,
    );
  }

  /** Resolves with the JSON frames received once `count` of them match. */
  waitForReceived<T = unknown>(match: (frame: T) => boolean, count = 1, timeoutMs = 5000, what = "frames"): Promise<T[]> {
    return this.waitFor(
      () => {
        const found = this.receivedJson(match);
        return found.length >= count ? found : undefined;
      },
      timeoutMs,
      `${count} ${what}`,
    );
  }

  /** Resolves once `check` returns a value other than undefined/false, re-checked on every server event. */
  waitFor<T>(check: () => T | undefined | false, timeoutMs = 5000, what = "condition"): Promise<T> {
    return waitUntil(check, timeoutMs, this, what);
  }

  listen(listener: () => void): void {
    this.waiters.push(listener);
  }

  private notify(): void {
    for (const waiter of this.waiters.splice(0)) waiter();
  }

  async stop(): Promise<void> {
    clearInterval(this.idleTimer);
    this.server.stop(true);
  }
}

/** Polls `check` on every notification from `source` and at least every 20 ms, until it yields a value. */
export function waitUntil<T>(
  check: () => T | undefined | false,
  timeoutMs: number,
  source: { listen(listener: () => void): void } | undefined,
  what: string,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const deadline = setTimeout(() => {
      clearInterval(poll);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    const attempt = (): boolean => {
      const value = check();
      if (value === undefined || value === false) return false;
      clearTimeout(deadline);
      clearInterval(poll);
      resolve(value as T);
      return true;
    };
    const poll = setInterval(attempt, 20);
    const subscribe = () => source?.listen(() => attempt() || subscribe());
    if (!attempt()) subscribe();
  });
}

/**
 * What every venue fake offers on top of its FakeVenue: its markets by symbol, silence, server closes,
 * drops, pings, raw frames and stop. A venue fake extends it with its protocol: the per-connection
 * state, the answers to client frames, its REST routes and its wire shapes.
 */
export abstract class VenueFake<S, M> {
  readonly exchange: FakeVenue<S>;
  readonly markets = new Map<string, M>();

  constructor() {
    this.exchange = FakeVenue.start<S>((connection) => this.connectionState(connection));
    this.exchange.onMessage((connection, text) => this.onClientFrame(connection, text));
  }

  /** The venue's state of a connection that just opened (it may subscribe the topics its URL names). */
  protected abstract connectionState(connection: FakeConnection<S>): S;

  /** The venue's answer to a frame a client sent. */
  protected abstract onClientFrame(connection: FakeConnection<S>, text: string): void;

  /** A client frame as JSON, or undefined after sending `error` (the venue's answer to unreadable JSON). */
  protected parse<T>(connection: FakeConnection<S>, text: string, error: unknown): T | undefined {
    try {
      return JSON.parse(text) as T;
    } catch {
      connection.send(error);
      return undefined;
    }
  }

  market(symbol: string): M {
    const market = this.markets.get(symbol);
    if (!market) throw new Error(`${this.constructor.name} has no market ${symbol}`);
    return market;
  }

  /** Resolves once `count` open connections are subscribed to `topic` (their acks sent). */
  waitForSubscribers(topic: string, count = 1, timeoutMs = 5000): Promise<FakeConnection<S>[]> {
    return this.exchange.waitForSubscribers(topic, count, timeoutMs);
  }

  /** Resolves with the first open connection subscribed to `topic` (its ack sent). */
  async waitForSubscribed(topic: string, timeoutMs = 5000): Promise<FakeConnection<S>> {
    return (await this.waitForSubscribers(topic, 1, timeoutMs))[0]!;
  }

  /** When true the venue sends nothing (no data, no answers, no pongs): a hung venue. */
  get silent(): boolean {
    return this.exchange.paused;
  }

  set silent(value: boolean) {
    this.exchange.paused = value;
  }

  /** Sends raw text (malformed JSON, unknown messages) or a JSON frame to every open connection. */
  sendRaw(frame: unknown): void {
    this.exchange.broadcast(frame);
  }

  pingAll(): void {
    this.exchange.pingAll();
  }

  /** Closes every open connection with a close frame (venue codes: 1000 forced reconnect, 1008, 4004...). */
  closeAll(code = 1000, reason = ""): void {
    this.exchange.closeAll(code, reason);
  }

  /** Abrupt drop of every open connection (no close frame). */
  terminateAll(): void {
    this.exchange.terminateAll();
  }

  stop(): Promise<void> {
    return this.exchange.stop();
  }
}

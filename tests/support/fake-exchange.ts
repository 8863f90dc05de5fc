/**
 * A fake exchange for tests: Bun.serve on 127.0.0.1 with a random port, serving WebSocket streams on
 * any path and REST routes registered by the test. Tests script the server side (messages, pings,
 * malformed frames, sequence gaps, closes, abrupt TCP drops) and read back everything the client sent.
 * Venue-specific fakes (message shapes, subscribe acks) are built on top of this in tests/support/.
 */
import type { Server, ServerWebSocket } from "bun";

export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly headers: Headers;
  readonly body: string;
}

type RestHandler = (request: RecordedRequest) => Response | Promise<Response>;

interface SocketData {
  connection: FakeConnection;
}

export class FakeConnection {
  /** Text frames the client sent, in order. */
  readonly received: string[] = [];
  pongs = 0;
  open = true;
  closeCode: number | undefined;
  private listeners: Array<() => void> = [];

  constructor(
    readonly id: number,
    readonly path: string,
    readonly query: URLSearchParams,
    private readonly socket: ServerWebSocket<SocketData>,
  ) {}

  /** Sends a frame; objects are JSON-encoded. Returns false once the connection is closed. */
  send(message: unknown): boolean {
    if (!this.open) return false;
    this.socket.send(typeof message === "string" ? message : JSON.stringify(message));
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

export class FakeExchange {
  readonly connections: FakeConnection[] = [];
  readonly requests: RecordedRequest[] = [];
  private readonly routes = new Map<string, RestHandler>();
  private connectionHandler: (connection: FakeConnection) => void = () => {};
  private messageHandler: (connection: FakeConnection, text: string) => void = () => {};
  private waiters: Array<() => void> = [];
  /** When false, WebSocket upgrades are refused with HTTP 503 (exchange down). */
  acceptConnections = true;

  private constructor(private readonly server: Server<SocketData>) {}

  static start(): FakeExchange {
    let exchange: FakeExchange | undefined;
    let nextId = 1;
    const server = Bun.serve<SocketData>({
      hostname: "127.0.0.1",
      port: 0,
      fetch: async (request, srv) => {
        const self = exchange!;
        const url = new URL(request.url);
        if (request.headers.get("upgrade")?.toLowerCase() === "websocket") {
          if (!self.acceptConnections) return new Response("down", { status: 503 });
          // path/query are set before upgrading: Bun may run `open` inside upgrade() itself.
          const data = { connection: undefined as unknown as FakeConnection, path: url.pathname, query: url.searchParams };
          const upgraded = srv.upgrade(request, { data });
          if (upgraded) {
            // The connection object is created in `open`, where the ServerWebSocket exists.
            return undefined;
          }
          return new Response("upgrade failed", { status: 400 });
        }
        const recorded: RecordedRequest = {
          method: request.method,
          path: url.pathname,
          query: url.searchParams,
          headers: request.headers,
          body: await request.text(),
        };
        self.requests.push(recorded);
        self.notify();
        const handler = self.routes.get(`${request.method} ${url.pathname}`);
        if (!handler) return new Response(JSON.stringify({ error: "not found" }), { status: 404 });
        return handler(recorded);
      },
      websocket: {
        open(socket) {
          const self = exchange!;
          const meta = socket.data as unknown as { path: string; query: URLSearchParams };
          const connection = new FakeConnection(nextId++, meta.path, meta.query, socket);
          socket.data.connection = connection;
          self.connections.push(connection);
          self.connectionHandler(connection);
          self.notify();
        },
        message(socket, message) {
          const connection = socket.data.connection;
          const text = typeof message === "string" ? message : new TextDecoder().decode(message);
          connection.received.push(text);
          exchange!.messageHandler(connection, text);
          connection.notify();
          exchange!.notify();
        },
        pong(socket) {
          socket.data.connection.pongs++;
          socket.data.connection.notify();
        },
        close(socket, code) {
          const connection = socket.data.connection;
          connection.open = false;
          connection.closeCode = code;
          connection.notify();
          exchange!.notify();
        },
      },
    });
    exchange = new FakeExchange(server);
    return exchange;
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

  onConnection(handler: (connection: FakeConnection) => void): void {
    this.connectionHandler = handler;
  }

  onMessage(handler: (connection: FakeConnection, text: string) => void): void {
    this.messageHandler = handler;
  }

  openConnections(): FakeConnection[] {
    return this.connections.filter((connection) => connection.open);
  }

  /** Resolves with the n-th connection (1-based) once it exists. */
  waitForConnection(n = this.connections.length + 1, timeoutMs = 5000): Promise<FakeConnection> {
    return waitUntil(() => this.connections[n - 1], timeoutMs, this, `connection #${n}`);
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

  /** Drops every open connection abruptly. */
  terminateAll(): void {
    for (const connection of this.openConnections()) connection.terminate();
  }

  async stop(): Promise<void> {
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

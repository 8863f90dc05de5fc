/**
 * The connection pool (kit/pool.ts) against a real WebSocket server on 127.0.0.1: a toy venue whose
 * requests are `{"op","topics","id"}`, whose answers are `{"id"}` or `{"id","error"}` and whose data
 * frames are `{"t": topic, "k": key}` with keys counting up per topic, the same on every connection.
 */
import { afterEach, describe, expect, test } from "bun:test";
import type { Server, ServerWebSocket } from "bun";
import { RecentKeys } from "../../src/connectors/dedup.ts";
import {
  ConnectionPool,
  type PoolConnection,
  type PoolHooks,
  type PoolLimits,
  type HandoverTopic,
  type PoolWire,
  type Refusal,
  NOT_SUBSCRIBED,
} from "../../src/connectors/kit/pool.ts";
import { TokenBucket } from "../../src/connectors/kit/rate.ts";
import type { OpenInfo } from "../../src/connectors/websocket.ts";
import type { ConnectorContext } from "../../src/core/connector.ts";
import type { GapReason } from "../../src/core/events.ts";
import { createLogger } from "../../src/core/log.ts";
import { waitUntil } from "../support/fake-venue.ts";

interface Request {
  readonly op: string;
  readonly topics: string[];
  readonly id: number;
}

interface Socket {
  readonly route: string;
  readonly requests: Array<Request & { at: number }>;
  readonly subscribed: Set<string>;
  lagging: boolean;
  readonly openedAt: number;
  readonly ws: ServerWebSocket<{ route: string }>;
}

/** The toy venue's server: records every connection and request; `answer` decides each reply. */
class ToyServer {
  readonly sockets: Socket[] = [];
  private readonly server: Server<{ route: string }>;
  private readonly keys = new Map<string, number>();
  private ticker: ReturnType<typeof setInterval> | undefined;
  answer: (socket: Socket, request: Request) => string | undefined = (_socket, request) => JSON.stringify({ id: request.id });
  /** Like a venue at its connection age limit: once a newer connection subscribed, older ones are cut soon after. */
  cutReplaced = false;
  /**
   * Once a newer connection subscribed, older ones of its route deliver what follows this much later (a
   * lagging edge server): the successor is ahead of them.
   */
  lagOlderMs = 0;

  constructor() {
    this.server = Bun.serve<{ route: string }>({
      hostname: "127.0.0.1",
      port: 0,
      fetch: (request, server) =>
        server.upgrade(request, { data: { route: new URL(request.url).pathname.slice(1) } }) ? undefined : new Response("no", { status: 400 }),
      websocket: {
        open: (ws) => {
          this.sockets.push({ route: ws.data.route, requests: [], subscribed: new Set(), lagging: false, openedAt: performance.now(), ws });
        },
        message: (ws, message) => {
          const socket = this.sockets.find((entry) => entry.ws === ws)!;
          const request = JSON.parse(String(message)) as Request;
          socket.requests.push({ ...request, at: performance.now() });
          const reply = this.answer(socket, request);
          if (reply === undefined) return;
          if (!reply.includes('"error"')) {
            for (const topic of request.topics) {
              if (request.op === "subscribe") socket.subscribed.add(topic);
              else socket.subscribed.delete(topic);
            }
          }
          ws.send(reply);
          if (request.op !== "subscribe") return;
          for (const older of this.open()) {
            if (older === socket || older.route !== socket.route) continue;
            if (this.lagOlderMs > 0) older.lagging = true;
            if (this.cutReplaced) setTimeout(() => older.ws.close(1000, "replaced"), 10);
          }
        },
      },
    });
  }

  get url(): string {
    return `ws://127.0.0.1:${this.server.port}`;
  }

  open(): Socket[] {
    return this.sockets.filter((socket) => socket.ws.readyState === 1);
  }

  /** Sends the next key of every topic to every connection subscribed to it, every `ms`. */
  stream(topics: readonly string[], ms: number): void {
    this.ticker = setInterval(() => {
      for (const topic of topics) {
        const key = (this.keys.get(topic) ?? 0) + 1;
        this.keys.set(topic, key);
        const open = this.open();
        for (const socket of open) {
          if (!socket.subscribed.has(topic)) continue;
          const frame = JSON.stringify({ t: topic, k: key });
          if (!socket.lagging) socket.ws.send(frame);
          else setTimeout(() => socket.ws.readyState === 1 && socket.ws.send(frame), this.lagOlderMs);
        }
      }
    }, ms);
  }

  stop(): void {
    clearInterval(this.ticker);
    this.server.stop(true);
  }
}

interface Topic extends HandoverTopic<number> {
  readonly route: string;
  readonly taken: number[];
  readonly gaps: Array<{ reason: GapReason; detail: string }>;
  subscribedCount: number;
  refused: string | undefined;
  reconnects: number;
}

const WIRE: PoolWire = {
  encode: (method, topics, id) => JSON.stringify({ op: method, topics, id }),
  label: (method) => method,
  describe: (refusal) => refusal.text,
  topicWord: "topics",
};

const LIMITS: PoolLimits = {
  topicsPerConnection: 100,
  topicsPerRequest: 100,
  requestBurst: 10,
  requestsPerSecond: 100,
  answerTimeoutMs: 2_000,
  connectionMaxAgeMs: undefined,
  rolloverStaggerMs: 0,
  handoverGraceMs: 50,
  handoverBufferEvents: 1_000,
};

/** The toy venue: the pool's hooks, recording what the pool asks of a venue. */
/** What a test changes of the toy venue beyond its limits. */
interface ToyOptions {
  readonly wire?: Partial<PoolWire>;
  readonly connectPacer?: TokenBucket;
  /** Subscribes only when the test calls subscribeAll (a venue that authenticates first). */
  readonly holdsSubscribe?: boolean;
}

class ToyVenue implements PoolHooks<Topic, number> {
  readonly topics = new Map<string, Topic>();
  readonly pool: ConnectionPool<Topic, number>;
  readonly opened: PoolConnection[] = [];

  constructor(
    private readonly serverUrl: string,
    names: ReadonlyArray<readonly [string, string]>,
    limits: Partial<PoolLimits> = {},
    private readonly options: ToyOptions = {},
  ) {
    for (const [name, route] of names) {
      this.topics.set(name, {
        topic: name,
        route,
        connection: undefined,
        failed: false,
        keys: new RecentKeys(),
        handoverKeys: [],
        handoverItems: [],
        taken: [],
        gaps: [],
        subscribedCount: 0,
        refused: undefined,
        reconnects: 0,
      });
    }
    // What the pool reads of a connector's context: its logger, and fast reconnects from the environment.
    const context = {
      log: createLogger("error"),
      config: { env: { XTRADER_RECONNECT_MIN_MS: "20", XTRADER_RECONNECT_MAX_MS: "50" }, maxFrameBytes: 1 << 20 },
    } as unknown as ConnectorContext;
    this.pool = new ConnectionPool(this, {
      name: "TOY",
      context,
      limits: { ...LIMITS, ...limits },
      wire: { ...WIRE, ...options.wire },
      topics: this.topics,
      connectPacer: options.connectPacer,
    });
  }

  open(): void {
    this.pool.open([...this.topics.values()], (topic) => topic.route);
  }

  url(route: string): string {
    return `${this.serverUrl}/${route}`;
  }

  staleAfterMs(): number {
    return 10_000;
  }

  onFrame(connection: PoolConnection, text: string): void {
    const frame = JSON.parse(text) as { id?: number; error?: string; result?: unknown; t?: string; k?: number };
    if (frame.id !== undefined) {
      connection.answer(frame.id, frame.error === undefined ? undefined : { code: "refused", text: frame.error }, frame.result);
      return;
    }
    const topic = this.topics.get(frame.t!)!;
    if (topic.failed) return;
    if (topic.connection === connection) {
      if (topic.keys.take(frame.k!) !== "duplicate") topic.taken.push(frame.k!);
      this.pool.switchIfOverlapping(topic);
    } else if (topic.connection?.successor === connection) {
      this.pool.offer(connection, topic, frame.k!, frame.k!);
    }
  }

  holdsSubscribe(): boolean {
    return this.options.holdsSubscribe ?? false;
  }

  onOpened(connection: PoolConnection, info: OpenInfo): void {
    this.opened.push(connection);
    if (info.reconnects > 0) for (const topic of this.pool.topicsOn(connection)) topic.reconnects++;
  }

  onReconnected(topic: Topic): void {
    topic.reconnects++;
  }

  onFailed(topic: Topic, why: string): void {
    this.onRefused(topic, { code: "failed", text: why });
  }

  onSubscribed(topic: Topic): void {
    topic.subscribedCount++;
  }

  onRefused(topic: Topic, refusal: Refusal): void {
    topic.refused = refusal.text;
    topic.failed = true;
    this.pool.release(topic);
  }

  onLost(topic: Topic, reason: GapReason, detail: string): void {
    topic.gaps.push({ reason, detail });
  }

  take(topic: Topic, _item: number, key: number): void {
    if (topic.keys.take(key) !== "duplicate") topic.taken.push(key);
  }
}

let server: ToyServer;
let venue: ToyVenue | undefined;

afterEach(async () => {
  await venue?.pool.stop();
  venue = undefined;
  server?.stop();
});

const wait = <T>(check: () => T | undefined | false, what: string, ms = 5_000) => waitUntil(check, ms, undefined, what);

describe("ConnectionPool", () => {
  test("groups topics per route within the topics per connection; each connection subscribes its own", async () => {
    server = new ToyServer();
    const names = [
      ["a1", "a"], ["a2", "a"], ["a3", "a"], ["a4", "a"], ["a5", "a"], ["b1", "b"], ["b2", "b"],
    ] as const;
    venue = new ToyVenue(server.url, names, { topicsPerConnection: 2 });
    venue.open();
    await wait(() => [...venue!.topics.values()].every((topic) => topic.subscribedCount === 1), "every topic acknowledged");
    const byRoute = (route: string) => server.sockets.filter((socket) => socket.route === route);
    expect(byRoute("a").length).toBe(3);
    expect(byRoute("b").length).toBe(1);
    const subscribed = server.sockets.map((socket) => socket.requests.flatMap((request) => request.topics).sort());
    expect(subscribed.sort()).toEqual([["a1", "a2"], ["a3", "a4"], ["a5"], ["b1", "b2"]]);
    for (const socket of server.sockets) {
      for (const topic of socket.requests.flatMap((request) => request.topics)) expect(topic[0]).toBe(socket.route);
    }
  });

  test("requests of a connection are split by the topics per request and paced by the request rate", async () => {
    server = new ToyServer();
    const names = Array.from({ length: 5 }, (_, i) => [`t${i}`, "a"] as const);
    venue = new ToyVenue(server.url, names, { topicsPerRequest: 1, requestBurst: 1, requestsPerSecond: 10 });
    venue.open();
    await wait(() => [...venue!.topics.values()].every((topic) => topic.subscribedCount === 1), "every topic acknowledged");
    const requests = server.sockets[0]!.requests;
    expect(requests.map((request) => request.topics)).toEqual([["t0"], ["t1"], ["t2"], ["t3"], ["t4"]]);
    // 10 per second, burst 1: one every 100 ms (a little slack for the timer's rounding).
    for (let i = 1; i < requests.length; i++) expect(requests[i]!.at - requests[i - 1]!.at).toBeGreaterThanOrEqual(90);
  });

  test("a request left unanswered past the timeout reconnects; the close leaves a gap and the topic is subscribed again", async () => {
    server = new ToyServer();
    let answered = false;
    // The first subscribe is never answered; later ones are.
    server.answer = (_socket, request) => {
      if (!answered) {
        answered = true;
        return undefined;
      }
      return JSON.stringify({ id: request.id });
    };
    venue = new ToyVenue(server.url, [["x", "a"]], { answerTimeoutMs: 150 });
    venue.open();
    const topic = venue.topics.get("x")!;
    await wait(() => topic.subscribedCount === 1, "the topic acknowledged on the second connection");
    expect(server.sockets.length).toBe(2);
    expect(server.sockets[0]!.ws.readyState).toBe(3);
    expect(topic.gaps.length).toBe(1);
    expect(topic.gaps[0]!.reason).toBe("disconnect");
    expect(topic.gaps[0]!.detail).toContain("subscribe not answered");
    expect(topic.reconnects).toBe(1);
  });

  test("a refused batch is requested again topic by topic: only the bad topic fails", async () => {
    server = new ToyServer();
    server.answer = (_socket, request) =>
      request.op === "subscribe" && request.topics.includes("bad")
        ? JSON.stringify({ id: request.id, error: "unknown topic" })
        : JSON.stringify({ id: request.id });
    venue = new ToyVenue(server.url, [["good1", "a"], ["bad", "a"], ["good2", "a"]]);
    venue.open();
    const bad = venue.topics.get("bad")!;
    await wait(() => bad.refused !== undefined, "the bad topic refused");
    await wait(() => venue!.topics.get("good2")!.subscribedCount === 1, "the good topics acknowledged");
    expect(bad.refused).toBe("unknown topic");
    expect(venue.topics.get("good1")!.subscribedCount).toBe(1);
    expect(venue.topics.get("good1")!.refused).toBeUndefined();
    const requests = server.sockets[0]!.requests.map((request) => [request.op, request.topics]);
    expect(requests.slice(0, 4)).toEqual([
      ["subscribe", ["good1", "bad", "good2"]],
      ["subscribe", ["good1"]],
      ["subscribe", ["bad"]],
      ["subscribe", ["good2"]],
    ]);
    // The failed topic left its connection unsubscribed; the others stay.
    await wait(() => server.sockets[0]!.requests.some((request) => request.op === "unsubscribe"), "the unsubscribe");
    expect(server.sockets[0]!.requests.at(-1)).toMatchObject({ op: "unsubscribe", topics: ["bad"] });
  });

  test("a connection at its maximum age is replaced make before break: no key lost, none twice, no gap", async () => {
    server = new ToyServer();
    server.stream(["p", "q"], 5);
    // The successor is ahead of the old connection, which is cut before the handover grace ends: what only
    // the successor received waits, and is replayed when the old one catches up or closes.
    server.lagOlderMs = 30;
    server.cutReplaced = true;
    venue = new ToyVenue(server.url, [["p", "a"], ["q", "a"]], { connectionMaxAgeMs: 400, handoverGraceMs: 300 });
    venue.open();
    // Three generations: the first connection and two successors.
    await wait(() => server.sockets.length >= 3 && server.open().length === 1, "two rollovers", 8_000);
    await Bun.sleep(50);
    for (const name of ["p", "q"]) {
      const topic = venue.topics.get(name)!;
      expect(topic.gaps).toEqual([]);
      expect(topic.taken.length).toBeGreaterThan(50);
      // Consecutive keys: every key once, in order.
      const first = topic.taken[0]!;
      expect(topic.taken).toEqual(Array.from({ length: topic.taken.length }, (_, i) => first + i));
      expect(topic.connection).toBe([...venue.pool.connections].find((connection) => connection.topics.has(name)));
    }
    expect(venue.pool.connections.size).toBe(1);
  });

  test("a server close leaves one gap per topic naming the connection and the close frame, then reconnects", async () => {
    server = new ToyServer();
    venue = new ToyVenue(server.url, [["m", "a"], ["n", "a"]]);
    venue.open();
    await wait(() => venue!.topics.get("n")!.subscribedCount === 1, "subscribed");
    server.sockets[0]!.ws.close(1001, "going away");
    await wait(() => venue!.topics.get("n")!.subscribedCount === 2, "subscribed again after the reconnect");
    for (const name of ["m", "n"]) {
      expect(venue.topics.get(name)!.gaps).toEqual([
        { reason: "disconnect", detail: "connection TOY a#1 closed (by server; code 1001 'going away')" },
      ]);
    }
    expect(server.sockets.length).toBe(2);
  });
  test("new connections wait for the venue's connect pacer, shared by every pool of the process", async () => {
    server = new ToyServer();
    // Two connectors of one venue (OKX_SWAP and OKX_SPOT share OKX's per-IP limit): one pacer, 10 a second.
    const pacer = new TokenBucket(1, 10);
    venue = new ToyVenue(server.url, [["a1", "a"], ["a2", "a"]], { topicsPerConnection: 1 }, { connectPacer: pacer });
    const other = new ToyVenue(server.url, [["b1", "b"]], {}, { connectPacer: pacer });
    try {
      venue.open();
      other.open();
      await wait(() => server.sockets.length === 3, "three connections");
      const opened = server.sockets.map((socket) => socket.openedAt).sort((x, y) => x - y);
      // 10 per second, burst 1: one every 100 ms (a little slack for the timer's rounding).
      for (let i = 1; i < opened.length; i++) expect(opened[i]! - opened[i - 1]!).toBeGreaterThanOrEqual(90);
    } finally {
      await other.pool.stop();
    }
  });

  test("a connection's hourly request budget refuses once spent: nothing more is sent", async () => {
    server = new ToyServer();
    venue = new ToyVenue(server.url, [["x", "a"]], { requestsPerHour: 3 });
    venue.open();
    await wait(() => venue!.topics.get("x")!.subscribedCount === 1, "subscribed");
    const connection = venue.opened[0]!;
    // The subscribe took 1 of 3; a resubscribe (unsubscribe + subscribe) takes 2; then nothing is left.
    expect(connection.resubscribe("x")).toBe(true);
    expect(connection.resubscribe("x")).toBe(false);
    expect(connection.subscribe(["x"])).toBe(false);
    await wait(() => venue!.topics.get("x")!.subscribedCount === 2, "subscribed again");
    await Bun.sleep(50);
    expect(server.sockets[0]!.requests.map((request) => request.op)).toEqual(["subscribe", "unsubscribe", "subscribe"]);
  });

  test("a venue that authenticates first holds the subscribe of a new connection until it says so", async () => {
    server = new ToyServer();
    venue = new ToyVenue(server.url, [["x", "a"], ["y", "a"]], {}, { holdsSubscribe: true });
    venue.open();
    await wait(() => venue!.opened.length === 1, "opened");
    await Bun.sleep(100);
    expect(server.sockets[0]!.requests).toEqual([]);
    venue.opened[0]!.subscribeAll();
    await wait(() => venue!.topics.get("y")!.subscribedCount === 1, "subscribed after the venue's go");
    expect(server.sockets[0]!.requests.map((request) => request.topics)).toEqual([["x", "y"]]);
  });

  test("topics a subscribe answer leaves out are refused one by one; the others are acknowledged", async () => {
    server = new ToyServer();
    // Like Deribit: the answer lists the channels it subscribed.
    server.answer = (_socket, request) => JSON.stringify({ id: request.id, result: request.topics.filter((topic) => topic !== "gone") });
    const accepted = (result: unknown) => new Set(Array.isArray(result) ? result.map(String) : []);
    venue = new ToyVenue(server.url, [["here", "a"], ["gone", "a"]], {}, { wire: { accepted } });
    venue.open();
    const gone = venue.topics.get("gone")!;
    await wait(() => gone.refused !== undefined, "the left-out topic refused");
    expect(gone.refused).toBe(NOT_SUBSCRIBED.text);
    expect(gone.subscribedCount).toBe(0);
    expect(venue.topics.get("here")!.subscribedCount).toBe(1);
    expect(venue.topics.get("here")!.refused).toBeUndefined();
  });
});

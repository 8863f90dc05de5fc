/**
 * The load generator: one Bun.serve on 127.0.0.1 speaking just enough of each venue's protocol for
 * xtrader to subscribe and sync its books, then pushing frames over loopback WebSocket.
 *
 * Protocol (the shapes xtrader's connectors and the venue fakes in tests/support/ use):
 * - Binance USD-M under /binance: routed WebSocket paths /public/stream and /market/stream (combined
 *   payloads), SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS answered `{"result":..,"id":..}`; REST
 *   /fapi/v1/exchangeInfo and /fapi/v1/depth (the snapshot whose lastUpdateId the next event straddles).
 * - OKX under /okx: /ws/v5/public with `subscribe` ops acknowledged per argument and the initial `books`
 *   snapshot pushed on subscribe, `ping` → `pong`; REST /api/v5/public/instruments and /api/v5/market/books.
 * - Deribit under /deribit: /ws/api/v2 JSON-RPC (public/set_heartbeat, public/test, public/subscribe
 *   answering the channel list), each book channel starting with a snapshot notification.
 * - /raw/<i>: no protocol at all, for the ceiling clients: streams are dealt to raw connections the way
 *   xtrader's connectors group them onto connections (see `connectionGroup`).
 *
 * Two ways of sending, both after every stream is ready (subscribed, book snapshot delivered):
 * - `burst`: a pre-built list of frames, in order, as fast as the client takes them (a send that reports
 *   backpressure pauses the loop until that socket drains);
 * - `steady`: frames built on the fly at a fixed rate, stamped with the send time (for lag figures).
 */
import { readFileSync } from "node:fs";
import type { Server, ServerWebSocket } from "bun";
import { BinanceDepthStream, DeribitBookStream, OkxBooksStream, SNAPSHOT_LEVELS, type MarketStream } from "./market.ts";
import { streamPicker, type Workload } from "./workloads.ts";

const utf8 = new TextEncoder();
const text = new TextDecoder();

/**
 * A frame as a client gets it: one flat string decoded from bytes. Built by concatenation, it would be a
 * rope, and whoever touched it first (JSON.parse of one side of a comparison) would pay for flattening.
 */
export function flat(value: string): string {
  return text.decode(utf8.encode(value));
}

/** Pause after a warm-up burst: the JIT settles and the sinks' 1 s flush has run before the measured burst. */
export const WARM_UP_PAUSE_MS = 1500;

/** True when any TCP connection from or to `port` (":HHHH", as /proc/net/tcp writes it) has bytes queued. */
function kernelQueued(port: string): boolean {
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    // "sl local_address rem_address st tx_queue:rx_queue ...", addresses and queues in hex.
    for (const line of text.split("\n")) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 5 || !(fields[1]!.endsWith(port) || fields[2]!.endsWith(port))) continue;
      const [tx, rx] = fields[4]!.split(":");
      if (Number.parseInt(tx!, 16) > 0 || Number.parseInt(rx!, 16) > 0) return true;
    }
  }
  return false;
}

/** The sending side of one client connection (a Bun server socket, or the in-process mock's). */
export interface Peer {
  /** Bun's contract: bytes sent, -1 queued under backpressure, 0 dropped. */
  send(text: string): number;
}

interface PeerState {
  peer: Peer;
  readonly venue: "binance" | "okx" | "deribit" | "raw";
  readonly rawIndex: number;
  drained: (() => void) | undefined;
}

export interface Prebuilt {
  readonly frames: string[];
  readonly owners: MarketStream[];
  readonly rows: number;
  readonly bytes: number;
}

/** xtrader's connection grouping, mirrored for raw clients: one connection per route or per 25 OKX books. */
export function connectionGroup(workload: Workload, stream: MarketStream): string {
  switch (stream.kind) {
    case "binance-depth":
      return "binance-public";
    case "binance-trade":
      return "binance-market";
    case "okx-books": {
      const okx = workload.streams.filter((s) => s.kind === "okx-books");
      return `okx-${Math.floor(okx.indexOf(stream) / 25)}`;
    }
    case "deribit-book":
      return "deribit";
  }
}

export function rawConnectionCount(workload: Workload): number {
  return new Set(workload.streams.map((stream) => connectionGroup(workload, stream))).size;
}

export class LoadServer {
  readonly server: Server<PeerState>;
  /** Frames sent after the streams were ready (snapshot frames pushed over WebSocket included). */
  sentFrames = 0;
  /** Rows those frames and the served snapshots become. */
  expectedRows = 0;
  /** Client frames we could not make sense of (should stay 0). */
  unexpected: string[] = [];
  private readonly byKey = new Map<string, MarketStream>();
  private readonly owner = new Map<MarketStream, PeerState>();
  private readonly ready = new Set<MarketStream>();
  private readonly rawGroups: string[];
  private readonly raw: PeerState[] = [];
  /** Snapshots fixed before frames were pre-built, so they match the first frame of each stream. */
  private readonly frozenSnapshots = new Map<MarketStream, { text: string; rows: number }>();
  private readonly peers = new Map<Peer, PeerState>();
  private readonly readyListeners = new Set<() => void>();
  private nextConnId = 1;

  constructor(readonly workload: Workload) {
    for (const stream of workload.streams) this.byKey.set(stream.key, stream);
    this.rawGroups = [...new Set(workload.streams.map((stream) => connectionGroup(workload, stream)))];
    const self = this;
    this.server = Bun.serve<PeerState>({
      hostname: "127.0.0.1",
      port: 0,
      fetch(request, server) {
        const url = new URL(request.url);
        if (request.headers.get("upgrade")?.toLowerCase() === "websocket") {
          const venue = url.pathname.startsWith("/binance/") ? "binance" : url.pathname.startsWith("/okx/") ? "okx" : url.pathname.startsWith("/deribit/") ? "deribit" : "raw";
          const rawIndex = venue === "raw" ? Number(url.pathname.split("/")[2]) : -1;
          const data = { peer: undefined as unknown as Peer, venue, rawIndex, drained: undefined } satisfies PeerState;
          return server.upgrade(request, { data }) ? undefined : new Response("upgrade failed", { status: 400 });
        }
        return self.rest(url);
      },
      websocket: {
        // Frames are small and pre-built; compression would only cost both sides CPU.
        perMessageDeflate: false,
        backpressureLimit: 4 << 20,
        open(socket) {
          socket.data.peer = socket as unknown as Peer;
          self.attach(socket.data);
        },
        message(socket, message) {
          self.onClientText(socket.data, typeof message === "string" ? message : new TextDecoder().decode(message));
        },
        drain(socket) {
          const drained = socket.data.drained;
          socket.data.drained = undefined;
          drained?.();
        },
        close(socket: ServerWebSocket<PeerState>) {
          self.peers.delete(socket.data.peer);
        },
      },
    });
  }

  /**
   * Resolves once the client has read every frame handed to send(): nothing is left in this server's
   * backpressure buffers nor in the kernel queues of any TCP connection to its port (/proc/net/tcp*). The
   * harness uses this instead of polling xtrader's /metrics, which with 280 subscriptions is a ~1 MB page
   * costing xtrader ~17 ms of its event loop per scrape: polled every 20 ms it would slow the very thing
   * being measured. (Frames a client has read are dispatched in the same turn of its event loop, before a
   * signal is handled; the stored-rows check of every run backs this up.)
   */
  async whenDelivered(timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    const port = `:${this.port.toString(16).toUpperCase().padStart(4, "0")}`;
    for (;;) {
      let pending = false;
      for (const peer of this.peers.keys()) {
        if (((peer as { getBufferedAmount?: () => number }).getBufferedAmount?.() ?? 0) > 0) pending = true;
      }
      if (!pending) pending = kernelQueued(port);
      if (!pending) return;
      if (performance.now() > deadline) throw new Error(`load server: frames still unread by the client after ${timeoutMs} ms`);
      await Bun.sleep(2);
    }
  }

  get port(): number {
    return this.server.port!;
  }

  /** Environment pointing xtrader's connectors here. */
  env(): Record<string, string> {
    const http = `http://127.0.0.1:${this.port}`;
    const ws = `ws://127.0.0.1:${this.port}`;
    return {
      XTRADER_BINANCE_FUTURES_WS_URL: `${ws}/binance`,
      XTRADER_BINANCE_FUTURES_REST_URL: `${http}/binance`,
      XTRADER_OKX_SWAP_WS_URL: `${ws}/okx/ws/v5/public`,
      XTRADER_OKX_SWAP_REST_URL: `${http}/okx`,
      XTRADER_DERIBIT_WS_URL: `${ws}/deribit/ws/api/v2`,
    };
  }

  /** URLs of the raw connections a ceiling client opens (one per xtrader connection). */
  rawUrls(): string[] {
    return this.rawGroups.map((_, i) => `ws://127.0.0.1:${this.port}/raw/${i}`);
  }

  /** Registers a peer (also called by the in-process mock socket). */
  attach(state: PeerState): void {
    this.peers.set(state.peer, state);
    if (state.venue === "raw") {
      this.raw[state.rawIndex] = state;
      for (const stream of this.workload.streams) {
        if (this.rawGroups.indexOf(connectionGroup(this.workload, stream)) === state.rawIndex) this.markReady(stream, state);
      }
    }
  }

  attachPeer(peer: Peer, venue: PeerState["venue"]): PeerState {
    const state: PeerState = { peer, venue, rawIndex: -1, drained: undefined };
    this.attach(state);
    return state;
  }

  /** Resolves once every stream of the workload is subscribed and its book snapshot delivered. */
  whenReady(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.ready.size < this.workload.streams.length) return;
        this.readyListeners.delete(check);
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.readyListeners.delete(check);
        const missing = this.workload.streams.filter((stream) => !this.ready.has(stream)).map((stream) => stream.key);
        reject(new Error(`load server: ${missing.length} stream(s) not ready after ${timeoutMs} ms: ${missing.slice(0, 5).join(", ")}`));
      }, timeoutMs);
      this.readyListeners.add(check);
      check();
    });
  }

  /**
   * Builds `count` frames in the workload's seeded order. Book snapshots are fixed by the first call, so
   * the first frame of each stream continues the snapshot it will be served.
   */
  prebuild(count: number, nowMs = Date.now()): Prebuilt {
    for (const stream of this.workload.streams) {
      if (this.frozenSnapshots.has(stream)) continue;
      if (stream instanceof BinanceDepthStream) {
        const { body, rows } = stream.snapshot(SNAPSHOT_LEVELS.binance, nowMs);
        this.frozenSnapshots.set(stream, { text: body, rows });
      } else if (stream instanceof OkxBooksStream) {
        this.frozenSnapshots.set(stream, stream.snapshot(SNAPSHOT_LEVELS.okx, nowMs));
      } else if (stream instanceof DeribitBookStream) {
        this.frozenSnapshots.set(stream, stream.snapshot(SNAPSHOT_LEVELS.deribit, nowMs));
      }
    }
    const pick = streamPicker(this.workload);
    const frames: string[] = new Array(count);
    const owners: MarketStream[] = new Array(count);
    let rows = 0;
    let bytes = 0;
    for (let i = 0; i < count; i++) {
      const stream = pick();
      const frame = stream.next(nowMs + Math.floor(i / 1000));
      frames[i] = flat(frame.text);
      owners[i] = stream;
      rows += frame.rows;
      bytes += frame.text.length;
    }
    return { frames, owners, rows, bytes };
  }

  /** Sends pre-built frames in order, as fast as the sockets take them. Resolves when all are handed over. */
  burst(prebuilt: Prebuilt): Promise<void> {
    const { frames, owners } = prebuilt;
    const peers = owners.map((stream) => this.peerOf(stream));
    this.expectedRows += prebuilt.rows;
    let i = 0;
    return new Promise((resolve, reject) => {
      const pump = () => {
        try {
          let budget = 2048;
          while (i < frames.length) {
            const state = peers[i]!;
            const result = state.peer.send(frames[i]!);
            i++;
            this.sentFrames++;
            if (result === 0) throw new Error("load server: a client connection dropped a frame (closed?)");
            if (result === -1) {
              state.drained = pump;
              return;
            }
            if (--budget === 0) {
              // Let the server answer keepalives and heartbeats between batches.
              setImmediate(pump);
              return;
            }
          }
          resolve();
        } catch (error) {
          reject(error);
        }
      };
      pump();
    });
  }

  /**
   * Sends `perSecond` frames a second for `seconds`, each built at send time and stamped with it.
   * `onSent` sees every frame (the lag measurement keeps the send times).
   */
  async steady(perSecond: number, seconds: number, onSent?: (stream: MarketStream, sentAtMs: number, rows: number) => void): Promise<void> {
    const pick = streamPicker(this.workload);
    const started = performance.now();
    const total = Math.round(perSecond * seconds);
    let sent = 0;
    while (sent < total) {
      const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * perSecond) + 1);
      while (sent < due) {
        const stream = pick();
        const now = Date.now();
        const frame = stream.next(now);
        this.peerOf(stream).peer.send(frame.text);
        this.sentFrames++;
        this.expectedRows += frame.rows;
        onSent?.(stream, now, frame.rows);
        sent++;
      }
      await Bun.sleep(2);
    }
  }

  stop(): void {
    this.server.stop(true);
  }

  // ── protocol ──

  /** The connection that subscribed `stream`. */
  peerOf(stream: MarketStream): PeerState {
    const state = this.owner.get(stream);
    if (!state) throw new Error(`load server: nobody subscribed ${stream.key}`);
    return state;
  }

  private markReady(stream: MarketStream, state: PeerState): void {
    this.owner.set(stream, state);
    this.ready.add(stream);
    for (const listener of [...this.readyListeners]) listener();
  }

  onClientText(state: PeerState, text: string): void {
    switch (state.venue) {
      case "binance":
        return this.binanceMessage(state, text);
      case "okx":
        return this.okxMessage(state, text);
      case "deribit":
        return this.deribitMessage(state, text);
      case "raw":
        return;
    }
  }

  private binanceMessage(state: PeerState, text: string): void {
    const request = JSON.parse(text) as { method?: string; params?: string[]; id?: number };
    if (request.method === "SUBSCRIBE") {
      for (const name of request.params ?? []) {
        const stream = this.byKey.get(name);
        if (!stream) {
          this.unexpected.push(`binance stream ${name}`);
          continue;
        }
        this.owner.set(stream, state);
        // Depth is ready once its snapshot is served; trades at once.
        if (!(stream instanceof BinanceDepthStream)) this.markReady(stream, state);
      }
      state.peer.send(JSON.stringify({ result: null, id: request.id }));
    } else if (request.method === "LIST_SUBSCRIPTIONS") {
      const names = [...this.owner].filter(([, owner]) => owner === state).map(([stream]) => stream.key);
      state.peer.send(JSON.stringify({ result: names, id: request.id }));
    } else if (request.method === "UNSUBSCRIBE") {
      state.peer.send(JSON.stringify({ result: null, id: request.id }));
    } else {
      this.unexpected.push(text.slice(0, 200));
    }
  }

  private okxMessage(state: PeerState, text: string): void {
    if (text === "ping") {
      state.peer.send("pong");
      return;
    }
    const request = JSON.parse(text) as { id?: string; op?: string; args?: Array<{ channel: string; instId?: string }> };
    const connId = `c${this.nextConnId++}`;
    for (const arg of request.args ?? []) {
      const stream = this.byKey.get(`${arg.channel}:${arg.instId}`);
      state.peer.send(JSON.stringify({ ...(request.id ? { id: request.id } : {}), event: request.op, arg, connId }));
      if (request.op !== "subscribe") continue;
      if (!stream) {
        this.unexpected.push(`okx ${arg.channel}:${arg.instId}`);
        continue;
      }
      const snapshot = this.snapshotFrame(stream);
      state.peer.send(snapshot.text);
      this.sentFrames++;
      this.expectedRows += snapshot.rows;
      this.markReady(stream, state);
    }
  }

  private deribitMessage(state: PeerState, text: string): void {
    const request = JSON.parse(text) as { id: number; method?: string; params?: { channels?: string[] } };
    const reply = (result: unknown) => state.peer.send(JSON.stringify({ jsonrpc: "2.0", id: request.id, result, usIn: 0, usOut: 0, usDiff: 0, testnet: false }));
    switch (request.method) {
      case "public/set_heartbeat":
        return void reply("ok");
      case "public/test":
        return void reply({ version: "1.2.26" });
      case "public/subscribe": {
        const channels = request.params?.channels ?? [];
        const accepted = channels.filter((channel) => this.byKey.has(channel));
        for (const channel of channels) if (!this.byKey.has(channel)) this.unexpected.push(`deribit ${channel}`);
        reply(accepted);
        for (const channel of accepted) {
          const stream = this.byKey.get(channel)!;
          const snapshot = this.snapshotFrame(stream);
          state.peer.send(snapshot.text);
          this.sentFrames++;
          this.expectedRows += snapshot.rows;
          this.markReady(stream, state);
        }
        return;
      }
      case "public/unsubscribe":
        return void reply(request.params?.channels ?? []);
      default:
        this.unexpected.push(text.slice(0, 200));
        state.peer.send(JSON.stringify({ jsonrpc: "2.0", id: request.id, error: { code: -32601, message: "Method not found" } }));
    }
  }

  /** The snapshot a stream starts with (fixed by prebuild, else built now). */
  snapshotFrame(stream: MarketStream): { text: string; rows: number } {
    const frozen = this.frozenSnapshots.get(stream);
    if (frozen) return frozen;
    if (stream instanceof OkxBooksStream) return stream.snapshot(SNAPSHOT_LEVELS.okx, Date.now());
    if (stream instanceof DeribitBookStream) return stream.snapshot(SNAPSHOT_LEVELS.deribit, Date.now());
    const { body, rows } = (stream as BinanceDepthStream).snapshot(SNAPSHOT_LEVELS.binance, Date.now());
    return { text: body, rows };
  }

  private rest(url: URL): Response {
    const path = url.pathname;
    if (path === "/binance/fapi/v1/exchangeInfo") {
      const symbols = [...new Set(this.workload.streams.filter((s) => s.kind.startsWith("binance")).map((s) => (s as BinanceDepthStream).symbol))];
      return Response.json({
        timezone: "UTC",
        serverTime: Date.now(),
        symbols: symbols.map((symbol) => ({ symbol, pair: symbol, contractType: "PERPETUAL", status: "TRADING", quoteAsset: "USDT" })),
      });
    }
    if (path === "/binance/fapi/v1/depth") {
      const stream = this.byKey.get(`${(url.searchParams.get("symbol") ?? "").toLowerCase()}@depth@100ms`);
      if (!stream) return Response.json({ code: -1121, msg: "Invalid symbol." }, { status: 400 });
      const snapshot = this.snapshotFrame(stream);
      this.expectedRows += snapshot.rows;
      const state = this.owner.get(stream);
      if (state) this.markReady(stream, state);
      return new Response(snapshot.text, { headers: { "content-type": "application/json" } });
    }
    if (path === "/okx/api/v5/public/instruments") {
      const data = this.workload.streams
        .filter((stream): stream is OkxBooksStream => stream instanceof OkxBooksStream)
        .map((stream) => {
          const [base, quote] = stream.instId.split("-");
          return { instType: "SWAP", instId: stream.instId, instFamily: `${base}-${quote}`, uly: `${base}-${quote}`, settleCcy: quote, ctVal: "0.01", ctMult: "1", ctValCcy: base, ctType: "linear", state: "live", tickSz: "0.1", lotSz: "1" };
        });
      return Response.json({ code: "0", msg: "", data });
    }
    if (path === "/okx/api/v5/market/books") {
      const stream = this.byKey.get(`books:${url.searchParams.get("instId")}`);
      if (!(stream instanceof OkxBooksStream)) return Response.json({ code: "51001", msg: "Instrument ID does not exist", data: [] });
      const frame = JSON.parse(stream.snapshot(SNAPSHOT_LEVELS.okx, Date.now()).text) as { data: Array<Record<string, unknown>> };
      const book = frame.data[0]!;
      this.expectedRows += SNAPSHOT_LEVELS.okx * 2;
      return Response.json({ code: "0", msg: "", data: [{ asks: book.asks, bids: book.bids, ts: book.ts, seqId: book.seqId }] });
    }
    this.unexpected.push(`REST ${path}`);
    return Response.json({ error: "not found" }, { status: 404 });
  }
}

/**
 * Parse + normalize: xtrader's connectors against tardis-node's published normalizers (`tardis-dev`),
 * in one process, on the same pre-built frames, with no network in the timed part.
 *
 *   bun bench/parse-normalize.ts [--workload mixed|depth] [--count 100000] [--rounds 5] [--scale 1]
 *
 * xtrader side: the real connectors (binance-futures.ts, okx.ts, deribit.ts) over the real
 * ReconnectingSocket, with the global WebSocket replaced by an in-process socket wired to the load
 * server's protocol logic, so subscribing and book sync happen exactly as on the wire. Timed: handing each
 * frame to the socket's onmessage, i.e. receive timestamp, JSON.parse, validation, sequence checks, local
 * book upkeep (crossed-book check) and building the normalized events, which are counted.
 *
 * Peer side: tardis-node's mappers for binance-futures, okex-swap and deribit (normalizeBookChanges,
 * normalizeTrades) as its realtime stream drives them: one `new Date()` receive time per message,
 * JSON.parse, canHandle on each mapper, map() drained. Binance trades go to its mapper in the `@trade`
 * shape it subscribes to; its book mapper gets the REST snapshot the way tardis-node injects it.
 *
 * Rounds alternate between the two; the result is the median of the rounds (prints one JSON line).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { normalizeBookChanges, normalizeTrades } from "tardis-dev";
import { buildConfig } from "../src/cli/config.ts";
import { EXCHANGE_REGISTRY } from "../src/connectors/index.ts";
import type { Connector } from "../src/core/connector.ts";
import { rowCount, type ExchangeId, type MarketEvent } from "../src/core/events.ts";
import { createLogger } from "../src/core/log.ts";
import type { Subscription } from "../src/core/subscriptions.ts";
import { flat, LoadServer, type Peer } from "./lib/load-server.ts";
import { BinanceDepthStream, DeribitBookStream, OkxBooksStream, SNAPSHOT_LEVELS, type MarketStream } from "./lib/market.ts";
import { median } from "./lib/proc.ts";
import { buildWorkload, WORKLOAD_NAMES, type WorkloadName } from "./lib/workloads.ts";

export interface ParseNormalizeResult {
  readonly workload: WorkloadName;
  readonly messages: number;
  readonly xtraderMessagesPerSecond: number;
  readonly peerMessagesPerSecond: number;
  readonly ratio: number;
  readonly xtraderEvents: number;
  readonly xtraderRows: number;
  readonly peerEvents: number;
}

// ── an in-process WebSocket for the connectors ──

/** The subset of the browser WebSocket that ReconnectingSocket uses. */
class InProcessSocket {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;
  static server: LoadServer;
  readyState = InProcessSocket.CONNECTING;
  onopen: (() => void) | null = null;
  onmessage: ((event: { data: string }) => void) | null = null;
  onerror: (() => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  private readonly state: ReturnType<LoadServer["attachPeer"]>;

  constructor(url: string) {
    const path = new URL(url).pathname;
    const venue = path.startsWith("/binance/") ? "binance" : path.startsWith("/okx/") ? "okx" : "deribit";
    const peer: Peer = {
      send: (text) => {
        if (this.readyState !== InProcessSocket.OPEN) return 0;
        this.onmessage?.({ data: text });
        return text.length;
      },
    };
    this.state = InProcessSocket.server.attachPeer(peer, venue);
    setTimeout(() => {
      this.readyState = InProcessSocket.OPEN;
      this.onopen?.();
    }, 0);
  }

  send(text: string): void {
    // Answers arrive on a later turn, as they would over a socket.
    queueMicrotask(() => InProcessSocket.server.onClientText(this.state, text));
  }

  close(code = 1000, reason = ""): void {
    if (this.readyState === InProcessSocket.CLOSED) return;
    this.readyState = InProcessSocket.CLOSED;
    setTimeout(() => this.onclose?.({ code, reason }), 0);
  }

  terminate(): void {
    this.close(1006);
  }
}

// ── runs ──

export async function parseNormalize(options: { workload: WorkloadName; count: number; rounds: number; scale: number }): Promise<ParseNormalizeResult> {
  const workload = buildWorkload(options.workload, options.scale);
  const server = new LoadServer(workload);
  InProcessSocket.server = server;
  const realWebSocket = globalThis.WebSocket;
  (globalThis as { WebSocket: unknown }).WebSocket = InProcessSocket;
  const directory = mkdtempSync(join(tmpdir(), "xtrader-bench-parse-"));
  const connectors: Connector[] = [];
  let xtraderEvents = 0;
  let xtraderRows = 0;
  let last: MarketEvent | undefined;
  try {
    // The first frames of every stream, and the snapshots they continue, are fixed before subscribing.
    const rounds: string[][] = [];
    const roundOwners: MarketStream[][] = [];
    const peerRounds: string[][] = [];
    const peerSnapshots: string[] = [];
    const nowMs = Date.now();
    for (let round = 0; round < options.rounds; round++) {
      const prebuilt = server.prebuild(options.count, nowMs);
      if (round === 0) {
        for (const stream of workload.streams) {
          if (stream instanceof BinanceDepthStream) peerSnapshots.push(stream.peerSnapshot(SNAPSHOT_LEVELS.binance, nowMs));
        }
      }
      rounds.push(prebuilt.frames);
      roundOwners.push(prebuilt.owners);
      // The peer gets its own copies, so neither side parses a string the other has already touched.
      peerRounds.push(prebuilt.frames.map((text, i) => flat(prebuilt.owners[i]!.peerText({ text, rows: 0 }))));
    }
    // OKX and Deribit book snapshots, as the load server pushes them on subscribe (captured for the peer).
    for (const stream of workload.streams) {
      if (stream instanceof OkxBooksStream || stream instanceof DeribitBookStream) {
        peerSnapshots.push(server.snapshotFrame(stream).text);
      }
    }

    const { config } = buildConfig(
      { subscriptions: workload.subscriptions, "output-directory": directory },
      { ...server.env(), RUST_LOG: "warn" },
    );
    const log = createLogger("warn");
    const byExchange = new Map<ExchangeId, Subscription[]>();
    for (const subscription of config.subscriptions) {
      byExchange.set(subscription.exchange, [...(byExchange.get(subscription.exchange) ?? []), subscription]);
    }
    const emit = (_subscription: Subscription, event: MarketEvent) => {
      xtraderEvents++;
      xtraderRows += rowCount(event);
      last = event;
    };
    for (const [exchange, subscriptions] of byExchange) {
      const connector = EXCHANGE_REGISTRY[exchange].create({ emit, log, config }, subscriptions);
      connectors.push(connector);
      connector.start();
    }
    await server.whenReady(60_000);
    await Bun.sleep(50);
    if (server.unexpected.length > 0) throw new Error(`unexpected client requests: ${server.unexpected.slice(0, 3).join("; ")}`);

    // tardis-node's mappers, in realtime mode (receive time = now).
    const now = new Date();
    const mappers: Array<ReturnType<typeof normalizeBookChanges> | ReturnType<typeof normalizeTrades>> = [];
    const kinds = new Set(workload.streams.map((stream) => stream.kind));
    if (kinds.has("binance-depth")) mappers.push(normalizeBookChanges("binance-futures", now));
    if (kinds.has("binance-trade")) mappers.push(normalizeTrades("binance-futures", now));
    if (kinds.has("okx-books")) mappers.push(normalizeBookChanges("okex-swap", now));
    if (kinds.has("deribit-book")) mappers.push(normalizeBookChanges("deribit", now));
    let peerEvents = 0;
    let peerLast: unknown;
    const peerMessage = (text: string) => {
      const localTimestamp = new Date();
      const message = JSON.parse(text);
      for (let m = 0; m < mappers.length; m++) {
        const mapper = mappers[m]!;
        if (!mapper.canHandle(message)) continue;
        // A mapper may end without yielding (e.g. an update before its book's snapshot).
        for (const event of mapper.map(message, localTimestamp) ?? []) {
          peerEvents++;
          peerLast = event;
        }
      }
    };
    for (const text of peerSnapshots) peerMessage(text);

    const peers = roundOwners.map((owners) => owners.map((stream) => server.peerOf(stream).peer));
    const xtraderRates: number[] = [];
    const peerRates: number[] = [];
    for (let round = 0; round < options.rounds; round++) {
      const frames = rounds[round]!;
      const targets = peers[round]!;
      const started = performance.now();
      for (let i = 0; i < frames.length; i++) targets[i]!.send(frames[i]!);
      xtraderRates.push(frames.length / ((performance.now() - started) / 1000));

      const peerFrames = peerRounds[round]!;
      const peerStarted = performance.now();
      for (let i = 0; i < peerFrames.length; i++) peerMessage(peerFrames[i]!);
      peerRates.push(peerFrames.length / ((performance.now() - peerStarted) / 1000));
    }
    if (last === undefined || peerLast === undefined) throw new Error("nothing was normalized");
    const xtraderMessagesPerSecond = median(xtraderRates);
    const peerMessagesPerSecond = median(peerRates);
    return {
      workload: options.workload,
      messages: options.count,
      xtraderMessagesPerSecond,
      peerMessagesPerSecond,
      ratio: xtraderMessagesPerSecond / peerMessagesPerSecond,
      xtraderEvents,
      xtraderRows,
      peerEvents,
    };
  } finally {
    await Promise.all(connectors.map((connector) => connector.stop()));
    (globalThis as { WebSocket: unknown }).WebSocket = realWebSocket;
    server.stop();
    rmSync(directory, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      workload: { type: "string", default: "mixed" },
      count: { type: "string", default: "100000" },
      rounds: { type: "string", default: "5" },
      scale: { type: "string", default: "1" },
    },
  });
  const workload = values.workload as WorkloadName;
  if (!WORKLOAD_NAMES.includes(workload)) throw new Error(`unknown workload ${workload}`);
  const result = await parseNormalize({ workload, count: Number(values.count), rounds: Number(values.rounds), scale: Number(values.scale) });
  console.log(JSON.stringify(result));
  process.exit(0);
}

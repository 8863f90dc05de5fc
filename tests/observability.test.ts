/**
 * /metrics, /healthz and /readyz against a running pipeline. The connector here is a small test connector
 * on the real ReconnectingSocket, fed by the fake exchange (trades as JSON frames), so reconnects, gaps,
 * parse errors and silence are real socket events; the sink is a memory sink that keeps SinkStats the way
 * real sinks do. Every scrape is parsed as the Prometheus text format (tests/support/prometheus-text.ts).
 */
import { afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildConfig } from "../src/cli/config.ts";
import { EXCHANGE_REGISTRY } from "../src/connectors/index.ts";
import type { Connector, ConnectorContext, ExchangeRegistry, ExchangeSpec } from "../src/core/connector.ts";
import { ReconnectingSocket } from "../src/connectors/websocket.ts";
import { msToMicros } from "../src/core/clock.ts";
import type { Config } from "../src/core/config.ts";
import { UserError } from "../src/core/errors.ts";
import { BASE_SIZING } from "../src/core/events.ts";
import { createLogger } from "../src/core/log.ts";
import { Pipeline } from "../src/core/pipeline.ts";
import { LAG_BUCKETS_US, SinkStats } from "../src/core/stats.ts";
import type { Subscription } from "../src/core/subscriptions.ts";
import { telemetryLine } from "../src/core/telemetry.ts";
import { startObservability, type Observability } from "../src/observability/index.ts";
import { stalenessWindows } from "../src/observability/readiness.ts";
import { FakeVenue, waitUntil, type FakeConnection } from "./support/fake-venue.ts";
import { MemorySink } from "./support/memory-sink.ts";
import { StatsMemorySink } from "./support/observability-sink.ts";
import { parseExposition, type Exposition } from "./support/prometheus-text.ts";

// Fake servers and reconnects: give each test room on a loaded 2-core machine (bun's default is 5 s).
setDefaultTimeout(20_000);

const log = createLogger("error");

/**
 * Test venue protocol: the client sends {"op":"subscribe","symbols":[...]}, the server acks with
 * {"op":"subscribed"} and pushes trades {"s":symbol,"id":n,"p":"price","q":"qty","T":ms}.
 */
class FeedConnector implements Connector {
  private readonly socket: ReconnectingSocket;
  private readonly bySymbol: Map<string, Subscription>;

  constructor(
    private readonly context: ConnectorContext,
    subscriptions: readonly Subscription[],
    url: string,
    staleAfterMs: number,
  ) {
    this.bySymbol = new Map(subscriptions.map((subscription) => [subscription.symbol, subscription]));
    this.socket = new ReconnectingSocket({
      name: "feed",
      url: () => url,
      log: context.log,
      staleAfterMs,
      backoff: { initialMs: 20, maxMs: 40, factor: 2 },
      onOpen: (info) => {
        for (const subscription of subscriptions) if (info.reconnects > 0) subscription.stats.reconnects++;
        this.socket.send(JSON.stringify({ op: "subscribe", symbols: subscriptions.map((s) => s.symbol) }));
      },
      onMessage: (text, receivedAt) => this.onMessage(text, receivedAt),
      onClose: (info) => {
        if (!info.wasOpen) return;
        for (const subscription of subscriptions) {
          this.context.emit(subscription, {
            type: "gap",
            exchange: subscription.exchange,
            symbol: subscription.symbol,
            timestamp: Date.now() * 1000,
            localTimestamp: Date.now() * 1000,
            stream: subscription.stream,
            reason: info.initiatedBy === "stale" ? "stale" : "disconnect",
            detail: `closed with code ${info.code}`,
          });
        }
      },
    });
  }

  start(): void {
    this.socket.start();
  }

  stop(): Promise<void> {
    return this.socket.stop();
  }

  resync(): void {}

  private onMessage(text: string, receivedAt: number): void {
    const frame = JSON.parse(text) as { op?: string; s?: string; id?: number; p?: string; q?: string; T?: number };
    if (frame.op === "subscribed") return;
    const subscription = this.bySymbol.get(frame.s ?? "");
    if (!subscription) return;
    subscription.stats.messages++;
    subscription.stats.lastMessageAt = receivedAt;
    const price = Number(frame.p);
    const amount = Number(frame.q);
    if (!Number.isFinite(price) || !Number.isFinite(amount) || typeof frame.T !== "number") {
      subscription.stats.parseErrors++;
      return;
    }
    this.context.emit(subscription, {
      type: "trade",
      exchange: subscription.exchange,
      symbol: subscription.symbol,
      timestamp: msToMicros(frame.T),
      localTimestamp: receivedAt,
      id: String(frame.id),
      side: "buy",
      price,
      amount,
      ...BASE_SIZING,
    });
  }
}

interface Run {
  readonly fake: FakeVenue;
  readonly config: Config;
  readonly pipeline: Pipeline;
  readonly sink: StatsMemorySink;
  readonly observability: Observability;
  readonly subscriptions: readonly Subscription[];
  stop(): Promise<void>;
}

const running: Run[] = [];
afterEach(async () => {
  for (const run of running.splice(0)) await run.stop();
});

async function startRun(
  subscriptions: string,
  env: Record<string, string> = {},
  options: { staleAfterMs?: number; eventLoopWindowMs?: number } = {},
): Promise<Run> {
  const fake = FakeVenue.start();
  fake.onMessage((connection, text) => {
    if (text.includes('"subscribe"')) connection.send({ op: "subscribed" });
  });
  const feed = {
    ...EXCHANGE_REGISTRY.BINANCE_FUTURES,
    create: (context: ConnectorContext, subs: readonly Subscription[]) =>
      new FeedConnector(context, subs, fake.wsUrl("/feed"), options.staleAfterMs ?? 60_000),
  };
  const registry: ExchangeRegistry = { ...EXCHANGE_REGISTRY, BINANCE_FUTURES: feed };
  const { config } = buildConfig(
    {
      subscriptions,
      "output-directory": mkdtempSync(join(tmpdir(), "xtrader-observability-")),
      "metrics-addr": "127.0.0.1:0",
    },
    env,
    registry,
  );
  const sinkStats = new SinkStats();
  const sink = new StatsMemorySink(sinkStats);
  const pipeline = new Pipeline({ config, registry, sink, sinkStats, log, shutdownTimeoutMs: 5000 });
  const observability = startObservability(config, pipeline, { eventLoopWindowMs: options.eventLoopWindowMs })!;
  await pipeline.start();
  const run: Run = {
    fake,
    config,
    pipeline,
    sink,
    observability,
    subscriptions: config.subscriptions,
    stop: async () => {
      await pipeline.stop("test");
      await observability.stop();
      await fake.stop();
    },
  };
  running.push(run);
  return run;
}

async function scrape(run: Run): Promise<Exposition> {
  const response = await fetch(`${run.observability.url}/metrics`);
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
  return parseExposition(await response.text());
}

async function probe(run: Run, path: "/readyz" | "/healthz"): Promise<{ status: number; body: any }> {
  const response = await fetch(`${run.observability.url}${path}`);
  expect(response.headers.get("content-type")).toBe("application/json; charset=utf-8");
  return { status: response.status, body: await response.json() };
}

/** Probes until the answer has `status`; returns that answer. */
async function probeUntil(run: Run, path: "/readyz" | "/healthz", status: number, what: string, timeoutMs = 8000) {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const answer = await probe(run, path);
    if (answer.status === status) return answer;
    if (performance.now() > deadline) {
      throw new Error(`timed out waiting for ${what}; last answer ${answer.status} ${JSON.stringify(answer.body)}`);
    }
    await Bun.sleep(25);
  }
}

function sendTrades(connection: FakeConnection, symbol: string, count: number, firstId: number, exchangeTimeMs: number): void {
  for (let i = 0; i < count; i++) {
    connection.send({ s: symbol, id: firstId + i, p: (100 + i).toFixed(1), q: "0.5", T: exchangeTimeMs });
  }
}

const labels = (subscription: Subscription) => ({
  exchange: subscription.exchange,
  stream: subscription.stream,
  symbol: subscription.symbol,
});

describe("/metrics", () => {
  test("per-subscription, sink and process metrics follow the counters during a run", async () => {
    const run = await startRun("TRADES:BINANCE_FUTURES@BTCUSDT,TRADES:BINANCE_FUTURES@ETHUSDT");
    const [btc, eth] = run.subscriptions as [Subscription, Subscription];
    const connection = await run.fake.waitForConnection(1);
    await connection.waitForMessage((text) => text.includes("subscribe"));

    const before = await scrape(run);
    expect(before.value("xtrader_messages_received_total", labels(btc))).toBe(0);
    expect(before.value("xtrader_last_message_timestamp_seconds", labels(btc))).toBe(0);

    // Ten minutes old at the exchange: every lag sample lands above the largest bucket (60 s).
    const oldMs = Date.now() - 600_000;
    sendTrades(connection, "BTCUSDT", 5, 1, oldMs);
    sendTrades(connection, "ETHUSDT", 2, 100, oldMs);
    await waitUntil(() => btc.stats.rowsWritten === 5 && eth.stats.rowsWritten === 2, 5000, undefined, "rows at the sink");

    const first = await scrape(run);
    expect(first.family("xtrader_messages_received_total").type).toBe("counter");
    expect(first.value("xtrader_messages_received_total", labels(btc))).toBe(5);
    expect(first.value("xtrader_messages_received_total", labels(eth))).toBe(2);
    expect(first.value("xtrader_events_received_total", labels(btc))).toBe(5);
    expect(first.value("xtrader_rows_written_total", labels(btc))).toBe(5);
    expect(first.value("xtrader_rows_written_total", labels(eth))).toBe(2);
    expect(first.value("xtrader_parse_errors_total", labels(btc))).toBe(0);
    expect(first.value("xtrader_last_message_timestamp_seconds", labels(btc))).toBe(btc.stats.lastMessageAt / 1e6);
    expect(first.value("xtrader_seconds_since_last_message", labels(btc))).toBeLessThan(EXCHANGE_REGISTRY.BINANCE_FUTURES!.readinessWindows.TRADES!);
    expect(first.value("xtrader_subscription_ready", labels(btc))).toBe(1);
    expect(first.value("xtrader_staleness_window_seconds", labels(btc))).toBe(EXCHANGE_REGISTRY.BINANCE_FUTURES!.readinessWindows.TRADES!);

    // The lag histogram: exactly the LagHistogram counts, in seconds.
    expect(first.family("xtrader_exchange_lag_seconds").type).toBe("histogram");
    const lag = first.buckets("xtrader_exchange_lag_seconds", labels(btc));
    expect([...lag.keys()]).toEqual([...LAG_BUCKETS_US.map((micros) => String(micros / 1e6)), "+Inf"]);
    expect(lag.get("60")).toBe(0);
    expect(lag.get("+Inf")).toBe(5);
    expect(first.value("xtrader_exchange_lag_seconds_count", labels(btc))).toBe(5);
    expect(first.value("xtrader_exchange_lag_seconds_sum", labels(btc))).toBeCloseTo(btc.stats.lag.sumMicros / 1e6, 6);
    expect(first.value("xtrader_exchange_lag_seconds_sum", labels(btc)) / 5).toBeGreaterThan(599);

    // Sink: rows are buffered until the sink flushes.
    expect(first.value("xtrader_sink_buffered_rows", { sink: "parquet" })).toBe(7);
    expect(first.value("xtrader_sink_rows_written_total", { sink: "parquet" })).toBe(0);
    await run.sink.flush();
    // Fresh trades, a frame the connector cannot parse, then a server-side drop: everything moves.
    sendTrades(connection, "BTCUSDT", 3, 6, Date.now());
    connection.send({ s: "BTCUSDT", id: 9, p: "not-a-price", q: "1", T: Date.now() });
    await waitUntil(() => btc.stats.rowsWritten === 8 && btc.stats.parseErrors === 1, 5000, undefined, "second batch");
    connection.terminate();
    const second = await run.fake.waitForConnection(2);
    await waitUntil(() => btc.stats.reconnects === 1 && btc.stats.rowsWritten === 9, 5000, undefined, "reconnect and gap rows");
    await second.waitForMessage((text) => text.includes("subscribe"));

    const after = await scrape(run);
    expect(after.value("xtrader_messages_received_total", labels(btc))).toBe(9);
    expect(after.value("xtrader_messages_received_total", labels(eth))).toBe(2);
    expect(after.value("xtrader_parse_errors_total", labels(btc))).toBe(1);
    expect(after.value("xtrader_reconnects_total", labels(btc))).toBe(1);
    expect(after.value("xtrader_reconnects_total", labels(eth))).toBe(1);
    expect(after.value("xtrader_gaps_total", labels(btc))).toBe(1);
    expect(after.value("xtrader_gaps_total", labels(eth))).toBe(1);
    // 8 trades + 1 gap marker; the unparsable frame produced no event.
    expect(after.value("xtrader_events_received_total", labels(btc))).toBe(9);
    expect(after.value("xtrader_rows_written_total", labels(btc))).toBe(9);
    expect(after.value("xtrader_exchange_lag_seconds_count", labels(btc))).toBe(8);
    expect(after.value("xtrader_sink_rows_written_total", { sink: "parquet" })).toBe(7);
    expect(after.value("xtrader_sink_flushes_total", { sink: "parquet" })).toBe(1);
    expect(after.value("xtrader_sink_flush_seconds_total", { sink: "parquet" })).toBe(0.004);
    expect(after.value("xtrader_sink_buffered_rows", { sink: "parquet" })).toBe(btc.stats.rowsWritten + eth.stats.rowsWritten - 7);
    expect(after.value("xtrader_sink_writable", { sink: "parquet" })).toBe(1);
    expect(after.value("xtrader_queue_capacity_rows")).toBe(run.config.queueCapacityRows);
    expect(after.value("xtrader_queue_high_water_rows")).toBeGreaterThan(0);
    expect(after.value("process_resident_memory_bytes")).toBeGreaterThan(1 << 20);
    expect(after.value("process_start_time_seconds")).toBeLessThanOrEqual(Date.now() / 1000);
    expect(after.family("xtrader_event_loop_lag_seconds").type).toBe("histogram");

    // The --verbose line reads the same counters.
    const line = telemetryLine(btc, { messages: 0, events: 0, at: 0, lag: new Float64Array(LAG_BUCKETS_US.length + 1) }, 1000, 0, 0);
    const field = (name: string) => Number(new RegExp(`\\b${name}=(\\d+)`).exec(line)![1]);
    expect(field("rows")).toBe(after.value("xtrader_rows_written_total", labels(btc)));
    expect(field("reconnects")).toBe(after.value("xtrader_reconnects_total", labels(btc)));
    expect(field("gaps")).toBe(after.value("xtrader_gaps_total", labels(btc)));
    expect(field("parse_errors")).toBe(after.value("xtrader_parse_errors_total", labels(btc)));
    expect(field("dropped")).toBe(after.value("xtrader_events_dropped_total", labels(btc)));
  });

  test("answers HEAD, refuses other methods and unknown paths", async () => {
    const run = await startRun("TRADES:BINANCE_FUTURES@BTCUSDT");
    const head = await fetch(`${run.observability.url}/metrics`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe("");
    expect((await fetch(`${run.observability.url}/metrics`, { method: "POST" })).status).toBe(405);
    const missing = await fetch(`${run.observability.url}/nope`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ error: "not found", endpoints: ["/metrics", "/healthz", "/readyz"] });
  });
});

describe("/readyz", () => {
  test("turns unhealthy when the exchange stops sending and healthy again after the reconnect", async () => {
    // Readiness window 0.4 s; the socket's stale watchdog reconnects after 1.2 s of silence.
    const run = await startRun("TRADES:BINANCE_FUTURES@BTCUSDT", { XTRADER_STALENESS_WINDOWS: "TRADES=0.4" }, { staleAfterMs: 1200 });
    const [btc] = run.subscriptions as [Subscription];

    const waiting = await probe(run, "/readyz");
    expect(waiting.status).toBe(503);
    expect(waiting.body.status).toBe("not_ready");
    expect(waiting.body.problems).toEqual(["TRADES:BINANCE_FUTURES@BTCUSDT: no message received yet (window 0.4 s)"]);
    expect(waiting.body.subscriptions[0]).toMatchObject({ ready: false, secondsSinceLastMessage: null, staleAfterSeconds: 0.4 });

    // The exchange streams trades on the first connection, then falls silent without closing.
    const first = await run.fake.waitForConnection(1);
    let nextId = 1;
    let streaming = setInterval(() => sendTrades(first, "BTCUSDT", 1, nextId++, Date.now()), 50);
    const ready = await probeUntil(run, "/readyz", 200, "ready while trades flow");
    expect(ready.body).toMatchObject({ status: "ready", problems: [], sink: { name: "parquet", writable: true } });
    clearInterval(streaming);

    const stale = await probeUntil(run, "/readyz", 503, "not ready once trades stop");
    expect(stale.body.status).toBe("not_ready");
    expect(stale.body.problems).toHaveLength(1);
    expect(stale.body.problems[0]).toMatch(/^TRADES:BINANCE_FUTURES@BTCUSDT: no message for \d+\.\d s \(window 0\.4 s\)$/);
    expect(stale.body.subscriptions[0].secondsSinceLastMessage).toBeGreaterThan(0.4);
    const staleMetrics = await scrape(run);
    expect(staleMetrics.value("xtrader_subscription_ready", labels(btc))).toBe(0);

    // The watchdog drops the silent connection; the exchange streams again on the new one.
    const second = await run.fake.waitForConnection(2);
    streaming = setInterval(() => sendTrades(second, "BTCUSDT", 1, nextId++, Date.now()), 50);
    try {
      const recovered = await probeUntil(run, "/readyz", 200, "ready again after the reconnect");
      expect(recovered.body.problems).toEqual([]);
      const metrics = await scrape(run);
      expect(metrics.value("xtrader_reconnects_total", labels(btc))).toBe(1);
      expect(metrics.value("xtrader_gaps_total", labels(btc))).toBe(1);
      expect(run.sink.buffered.some((event) => event.type === "gap" && event.reason === "stale")).toBe(true);
    } finally {
      clearInterval(streaming);
    }
  });

  test("the sink is not writable during an outage or after an error until a clean flush", async () => {
    const run = await startRun("LIQUIDATIONS:BINANCE_FUTURES@BTCUSDT");
    const stats = run.pipeline.sinkStats;
    // Liquidations are not checked by default: silence alone keeps the collector ready.
    const quiet = await probe(run, "/readyz");
    expect(quiet.status).toBe(200);
    expect(quiet.body.subscriptions[0]).toMatchObject({ ready: true, staleAfterSeconds: null, secondsSinceLastMessage: null });

    // As a sink does when its destination stops answering.
    stats.outageSince = performance.now();
    await Bun.sleep(20);
    const outage = await probe(run, "/readyz");
    expect(outage.status).toBe(503);
    expect(outage.body.problems).toHaveLength(1);
    expect(outage.body.problems[0]).toMatch(/^sink parquet: destination unreachable for \d+\.\d s \(rows are buffered: 0\)$/);
    expect(outage.body.sink).toMatchObject({ writable: false, name: "parquet" });
    expect(outage.body.sink.outageSeconds).toBeGreaterThan(0);
    expect((await scrape(run)).value("xtrader_sink_outage", { sink: "parquet" })).toBe(1);
    stats.outageSecondsTotal += stats.outageSeconds();
    stats.outageSince = 0;
    expect((await probe(run, "/readyz")).status).toBe(200);

    stats.errors++;
    const failing = await probe(run, "/readyz");
    expect(failing.status).toBe(503);
    expect(failing.body.problems).toEqual(["sink parquet: write/flush errors (1 in total) and no successful flush since"]);
    expect((await scrape(run)).value("xtrader_sink_writable", { sink: "parquet" })).toBe(0);
    // Another failed attempt in the same breath as a flush still counts as failing.
    stats.errors++;
    stats.recordFlush(0.01, 0);
    expect((await probe(run, "/readyz")).status).toBe(503);
    stats.recordFlush(0.01, 0);
    expect((await probe(run, "/readyz")).status).toBe(200);
    const metrics = await scrape(run);
    expect(metrics.value("xtrader_sink_errors_total", { sink: "parquet" })).toBe(2);
    expect(metrics.value("xtrader_sink_outage_seconds_total", { sink: "parquet" })).toBe(stats.outageSecondsTotal);
    expect(stats.outageSecondsTotal).toBeGreaterThan(0);
    expect(metrics.value("xtrader_staleness_window_seconds", labels(run.subscriptions[0]!))).toBe(Number.POSITIVE_INFINITY);
  });
});

describe("/healthz", () => {
  test("reports an event-loop stall, then healthy once it is out of the window", async () => {
    const run = await startRun(
      "TRADES:BINANCE_FUTURES@BTCUSDT",
      { XTRADER_EVENT_LOOP_LAG_LIMIT_SECONDS: "0.15" },
      { eventLoopWindowMs: 400 },
    );
    const healthy = await probeUntil(run, "/healthz", 200, "healthy");
    expect(healthy.body).toMatchObject({ status: "ok", problems: [], eventLoop: { limitSeconds: 0.15, windowSeconds: 0.4 } });

    // Block the loop well past the limit (a synchronous busy wait, as a runaway parse would).
    const blockedUntil = performance.now() + 600;
    while (performance.now() < blockedUntil) {
      // busy
    }
    const stalled = await probe(run, "/healthz");
    expect(stalled.status).toBe(503);
    expect(stalled.body.status).toBe("unhealthy");
    expect(stalled.body.problems[0]).toMatch(/^event loop stalled for \d+\.\d\d s within the last 0\.4 s \(limit 0\.15 s\)$/);
    expect(stalled.body.eventLoop.recentMaxLagSeconds).toBeGreaterThan(0.15);

    await probeUntil(run, "/healthz", 200, "healthy after the window");
    const metrics = await scrape(run);
    const buckets = metrics.buckets("xtrader_event_loop_lag_seconds");
    expect(metrics.value("xtrader_event_loop_lag_seconds_count")).toBe(run.observability.eventLoop.count);
    // The stall itself is one sample above 250 ms.
    expect(buckets.get("+Inf")! - buckets.get("0.25")!).toBeGreaterThanOrEqual(1);
  });
});

describe("settings", () => {
  const subscriptionsOf = (text: string) =>
    buildConfig({ subscriptions: text, "output-directory": mkdtempSync(join(tmpdir(), "xtrader-obs-")) }, {}).config
      .subscriptions;

  test("staleness windows: defaults per stream, stream and subscription overrides, off", () => {
    const subscriptions = subscriptionsOf(
      "L2:BINANCE_FUTURES@BTCUSDT,BBO:BINANCE_FUTURES@BTCUSDT,TRADES:BINANCE_FUTURES@BTCUSDT,TRADES:BINANCE_FUTURES@ETHUSDT,FUNDING:BINANCE_FUTURES@BTCUSDT,LIQUIDATIONS:BINANCE_FUTURES@BTCUSDT",
    );
    const windowsOf = (text: string | undefined) => [...stalenessWindows(subscriptions, text, EXCHANGE_REGISTRY).values()];
    expect(windowsOf(undefined)).toEqual([90, 90, 300, 300, 180, undefined]);
    expect(windowsOf(" trades = 45 , TRADES:BINANCE_FUTURES@ETHUSDT=off, LIQUIDATIONS=3600,L2=2.5")).toEqual([
      2.5, 90, 45, undefined, 180, 3600,
    ]);
  });

  test("staleness windows: each venue's defaults come from its own declaration in the registry", () => {
    const newVenue: ExchangeSpec = {
      ...EXCHANGE_REGISTRY.DERIBIT!,
      id: "NEW_VENUE",
      nativeInstrument: (symbol) => ({ native: symbol }),
      readinessWindows: { L2: 5, BBO: 5, TRADES: 30, FUNDING: undefined, LIQUIDATIONS: 600 },
    };
    const registry: ExchangeRegistry = { ...EXCHANGE_REGISTRY, NEW_VENUE: newVenue };
    const { config } = buildConfig(
      {
        subscriptions: "TRADES:NEW_VENUE@XBTUSD,FUNDING:NEW_VENUE@XBTUSD,LIQUIDATIONS:NEW_VENUE@XBTUSD,TRADES:BINANCE_FUTURES@BTCUSDT",
        "output-directory": mkdtempSync(join(tmpdir(), "xtrader-obs-")),
      },
      {},
      registry,
    );
    expect([...stalenessWindows(config.subscriptions, undefined, registry).values()]).toEqual([30, undefined, 600, 300]);
    // The stream override still applies to every venue.
    expect([...stalenessWindows(config.subscriptions, "TRADES=45", registry).values()]).toEqual([45, undefined, 600, 45]);
  });

  test.each([
    ["TRADES", "missing '='"],
    ["TRADES=0", "'0' is not a number of seconds > 0"],
    ["TRADES=-5", "'-5' is not a number of seconds > 0"],
    ["L3=10", "unknown stream 'L3' (streams: TRADES, L2, BBO, FUNDING, LIQUIDATIONS)"],
    ["TRADES:OKX_SWAP@BTCUSDT=10", "'TRADES:OKX_SWAP@BTCUSDT' is not one of the subscriptions (TRADES:BINANCE_FUTURES@BTCUSDT)"],
  ])("XTRADER_STALENESS_WINDOWS=%p is refused with one line", (text, why) => {
    const subscriptions = subscriptionsOf("TRADES:BINANCE_FUTURES@BTCUSDT");
    let error: unknown;
    try {
      stalenessWindows(subscriptions, text, EXCHANGE_REGISTRY);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(UserError);
    expect((error as UserError).message).toBe(
      `invalid XTRADER_STALENESS_WINDOWS entry '${text}': ${why}; expected STREAM=SECONDS or STREAM:EXCHANGE@INSTRUMENT=SECONDS (seconds > 0, or off), e.g. TRADES=300,LIQUIDATIONS=off`,
    );
  });

  test("metrics off: nothing is served; an address in use is a user error", async () => {
    const base = buildConfig(
      { subscriptions: "TRADES:BINANCE_FUTURES@BTCUSDT", "output-directory": mkdtempSync(join(tmpdir(), "xtrader-obs-")) },
      {},
    ).config;
    const pipeline = new Pipeline({ config: base, registry: EXCHANGE_REGISTRY, sink: new MemorySink(), log });
    expect(base.metrics).toBeUndefined();
    expect(startObservability(base, pipeline)).toBeUndefined();

    const holder = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("taken") });
    try {
      const taken = { ...base, metrics: { host: "127.0.0.1", port: holder.port! } };
      expect(() => startObservability(taken, pipeline)).toThrow(
        new UserError(
          `cannot serve metrics on 127.0.0.1:${holder.port} (EADDRINUSE); give a free local HOST:PORT to --metrics-addr / METRICS_ADDR`,
        ),
      );
      const badLimit = { ...base, metrics: { host: "127.0.0.1", port: 0 }, env: { XTRADER_EVENT_LOOP_LAG_LIMIT_SECONDS: "soon" } };
      expect(() => startObservability(badLimit, pipeline)).toThrow(
        "invalid XTRADER_EVENT_LOOP_LAG_LIMIT_SECONDS 'soon'; expected a number of seconds > 0, e.g. 5",
      );
    } finally {
      holder.stop(true);
    }
  });
});

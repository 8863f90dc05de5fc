/**
 * End to end in-process: the real BINANCE_FUTURES connector and the pipeline against the fake Binance venue
 * (tests/support/fake-binance.ts), with /metrics, /readyz and /healthz served. Scrapes are parsed as the
 * Prometheus text format and compared with what the fake venue actually sent.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildConfig } from "../src/cli/config.ts";
import { EXCHANGE_REGISTRY } from "../src/connectors/index.ts";
import { createLogger } from "../src/core/log.ts";
import { Pipeline } from "../src/core/pipeline.ts";
import { SinkStats } from "../src/core/stats.ts";
import type { Subscription } from "../src/core/subscriptions.ts";
import { startObservability, type Observability } from "../src/observability/index.ts";
import { FakeBinanceFutures } from "./support/fake-binance.ts";
import { waitUntil } from "./support/fake-venue.ts";
import { StatsMemorySink } from "./support/observability-sink.ts";
import { parseExposition, type Exposition } from "./support/prometheus-text.ts";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function scrape(observability: Observability): Promise<Exposition> {
  const response = await fetch(`${observability.url}/metrics`);
  expect(response.status).toBe(200);
  return parseExposition(await response.text());
}

async function probeUntil(observability: Observability, path: string, status: number, what: string, timeoutMs = 10_000) {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const response = await fetch(`${observability.url}${path}`);
    const body = (await response.json()) as { status: string; problems: string[]; subscriptions: unknown[] };
    if (response.status === status) return body;
    if (performance.now() > deadline) {
      throw new Error(`timed out waiting for ${what}; last answer ${response.status} ${JSON.stringify(body)}`);
    }
    await Bun.sleep(25);
  }
}

const labels = (subscription: Subscription) => ({
  exchange: subscription.exchange,
  stream: subscription.stream,
  symbol: subscription.symbol,
});

describe("observability against the fake Binance venue", () => {
  test("counters move with the venue's data; /readyz fails on silence and recovers after the reconnect", async () => {
    const fake = FakeBinanceFutures.start({ symbols: ["BTCUSDT"], seed: 11 });
    cleanups.push(() => fake.stop());
    const { config } = buildConfig(
      {
        subscriptions: "TRADES:BINANCE_FUTURES@BTCUSDT,L2:BINANCE_FUTURES@BTCUSDT",
        "output-directory": mkdtempSync(join(tmpdir(), "xtrader-obs-binance-")),
        "metrics-addr": "127.0.0.1:0",
      },
      {
        ...fake.env,
        XTRADER_RECONNECT_MIN_MS: "50",
        XTRADER_RECONNECT_MAX_MS: "200",
        // /readyz wants data every 0.6 s.
        XTRADER_STALENESS_WINDOWS: "TRADES=0.6,L2=0.6",
      },
    );
    const [trades, l2] = config.subscriptions as [Subscription, Subscription];
    const sinkStats = new SinkStats();
    const pipeline = new Pipeline({
      config,
      registry: EXCHANGE_REGISTRY,
      sink: new StatsMemorySink(sinkStats),
      sinkStats,
      log: createLogger("error"),
      shutdownTimeoutMs: 5000,
    });
    const observability = startObservability(config, pipeline)!;
    cleanups.push(() => observability.stop());
    await pipeline.start();
    cleanups.push(async () => {
      await pipeline.stop("test");
    });
    await fake.waitForSubscribers("btcusdt@aggTrade");
    await fake.waitForSubscribers("btcusdt@depth@100ms");

    // Not ready before any data.
    const waiting = await probeUntil(observability, "/readyz", 503, "not ready before data");
    expect(waiting.problems).toContain("TRADES:BINANCE_FUTURES@BTCUSDT: no message received yet (window 0.6 s)");

    let driver = setInterval(() => {
      fake.depthStep();
      fake.trade();
    }, 40);
    cleanups.push(() => clearInterval(driver));
    await waitUntil(() => l2.stats.rowsWritten > 0 && trades.stats.rowsWritten >= 5, 10_000, undefined, "data flowing");
    await probeUntil(observability, "/readyz", 200, "ready while data flows");

    // Stop the market for a moment so counts can be compared with what the venue sent.
    clearInterval(driver);
    const sent = () => fake.market().trades.filter((trade) => trade.delivered > 0).length;
    await waitUntil(() => trades.stats.rowsWritten === sent(), 5000, undefined, "every trade at the sink");
    fake.sendRaw("{this is not json", "market");
    await waitUntil(() => trades.stats.parseErrors === 1, 5000, undefined, "the bad frame counted");
    const flowing = await scrape(observability);
    expect(flowing.value("xtrader_messages_received_total", labels(trades))).toBe(sent());
    expect(flowing.value("xtrader_events_received_total", labels(trades))).toBe(sent());
    expect(flowing.value("xtrader_rows_written_total", labels(trades))).toBe(sent());
    expect(flowing.value("xtrader_exchange_lag_seconds_count", labels(trades))).toBe(sent());
    expect(flowing.value("xtrader_parse_errors_total", labels(trades))).toBe(1);
    expect(flowing.value("xtrader_parse_errors_total", labels(l2))).toBe(0);
    expect(flowing.value("xtrader_messages_received_total", labels(l2))).toBe(l2.stats.messages);
    expect(l2.stats.messages).toBeGreaterThan(0);
    expect(flowing.value("xtrader_rows_written_total", labels(l2))).toBe(l2.stats.rowsWritten);
    expect(flowing.value("xtrader_reconnects_total", labels(trades))).toBe(0);
    expect(flowing.value("xtrader_gaps_total", labels(trades))).toBe(0);
    expect(flowing.value("xtrader_sink_buffered_rows", { sink: "parquet" })).toBe(sinkStats.bufferedRows);
    expect(sinkStats.bufferedRows).toBe(trades.stats.rowsWritten + l2.stats.rowsWritten);

    // The venue stops sending market data (it still answers requests, so the connection looks alive):
    // /readyz names both subscriptions.
    const silent = await probeUntil(observability, "/readyz", 503, "not ready once the venue stops sending");
    const silentKeys = silent.problems.map((problem) => problem.slice(0, problem.indexOf(": ")));
    expect(silentKeys.sort()).toEqual(["L2:BINANCE_FUTURES@BTCUSDT", "TRADES:BINANCE_FUTURES@BTCUSDT"]);
    for (const problem of silent.problems) expect(problem).toMatch(/: no message for \d+\.\d s \(window 0\.6 s\)$/);
    const stale = await scrape(observability);
    expect(stale.value("xtrader_subscription_ready", labels(trades))).toBe(0);
    expect(stale.value("xtrader_seconds_since_last_message", labels(trades))).toBeGreaterThan(0.6);

    // The venue drops the connections (1001 going away); the connector reconnects and the data resumes.
    const connectionsBefore = fake.exchange.connections.length;
    fake.closeAll(1001, "going away");
    await waitUntil(
      () => trades.stats.reconnects >= 1 && l2.stats.reconnects >= 1 && fake.exchange.connections.length >= connectionsBefore + 2,
      10_000,
      undefined,
      "reconnects",
    );
    await fake.waitForSubscribers("btcusdt@aggTrade");
    await fake.waitForSubscribers("btcusdt@depth@100ms");
    expect((await scrape(observability)).value("xtrader_subscription_ready", labels(trades))).toBe(0);
    driver = setInterval(() => {
      fake.depthStep();
      fake.trade();
    }, 40);
    const recovered = await probeUntil(observability, "/readyz", 200, "ready again after the reconnect");
    expect(recovered.problems).toEqual([]);
    const after = await scrape(observability);
    expect(after.value("xtrader_reconnects_total", labels(trades))).toBeGreaterThanOrEqual(1);
    expect(after.value("xtrader_reconnects_total", labels(l2))).toBeGreaterThanOrEqual(1);
    expect(after.value("xtrader_gaps_total", labels(trades))).toBeGreaterThanOrEqual(1);
    expect(after.value("xtrader_gaps_total", labels(l2))).toBeGreaterThanOrEqual(1);
    expect(after.value("xtrader_messages_received_total", labels(trades))).toBeGreaterThan(
      flowing.value("xtrader_messages_received_total", labels(trades)),
    );
    expect(after.value("xtrader_subscription_ready", labels(trades))).toBe(1);
    expect(after.value("xtrader_subscription_ready", labels(l2))).toBe(1);
    // Every counter in the scrape is the connector's own.
    expect(after.value("xtrader_gaps_total", labels(l2))).toBe(l2.stats.gaps);
    expect(after.value("xtrader_resyncs_total", labels(l2))).toBe(l2.stats.resyncs);
  }, 30_000);
});

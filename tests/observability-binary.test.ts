/**
 * The compiled binary (dist/xtrader) with `--metrics-addr` and `--log-format json`, collecting from the fake
 * Binance venue: prom-client works inside the single-file executable, the counters move as the venue sends,
 * /readyz follows the feed through a silence and a reconnect, and every stdout line is a JSON log object.
 */
import { afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBinary, runBinary } from "./support/binary.ts";
import { FakeBinanceFutures } from "./support/fake-binance.ts";
import { waitUntil } from "./support/fake-venue.ts";
import { parseExposition, type Exposition } from "./support/prometheus-text.ts";

// Fake servers and reconnects: give each test room on a loaded 2-core machine (bun's default is 5 s).
setDefaultTimeout(20_000);

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Collects a stream's text as complete lines. */
function collectLines(stream: ReadableStream<Uint8Array>): { lines: string[]; done: Promise<string> } {
  const lines: string[] = [];
  const decoder = new TextDecoder();
  let rest = "";
  const done = (async () => {
    for await (const chunk of stream) {
      rest += decoder.decode(chunk, { stream: true });
      let newline = rest.indexOf("\n");
      while (newline >= 0) {
        lines.push(rest.slice(0, newline));
        rest = rest.slice(newline + 1);
        newline = rest.indexOf("\n");
      }
    }
    return rest;
  })();
  return { lines, done };
}

async function scrape(url: string): Promise<Exposition> {
  const response = await fetch(`${url}/metrics`);
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
  return parseExposition(await response.text());
}

async function probeUntil(url: string, status: number, what: string, timeoutMs = 10_000, minProblems = 0) {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const response = await fetch(`${url}/readyz`);
    const body = (await response.json()) as { status: string; problems: string[]; sink: { writable: boolean } };
    if (response.status === status && body.problems.length >= minProblems) return body;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}; last ${response.status} ${JSON.stringify(body)}`);
    await Bun.sleep(50);
  }
}

const TRADES = { exchange: "BINANCE_FUTURES", stream: "TRADES", symbol: "BTCUSDT" };
const L2 = { exchange: "BINANCE_FUTURES", stream: "L2", symbol: "BTCUSDT" };

describe("compiled binary with metrics and JSON logs", () => {
  test("scrape during a run against the fake venue; /readyz through silence and reconnect; JSON lines", async () => {
    const fake = FakeBinanceFutures.start({ symbols: ["BTCUSDT"], seed: 5 });
    cleanups.push(() => fake.stop());
    const directory = mkdtempSync(join(tmpdir(), "xtrader-obs-binary-"));
    const child = Bun.spawn(
      [
        ensureBinary(),
        "--subscriptions",
        "TRADES:BINANCE_FUTURES@BTCUSDT,L2:BINANCE_FUTURES@BTCUSDT",
        "--output-directory",
        join(directory, "data"),
        "--metrics-addr",
        "127.0.0.1:0",
        "--log-format",
        "json",
      ],
      {
        cwd: directory,
        env: {
          PATH: process.env.PATH ?? "/usr/bin:/bin",
          ...fake.env,
          XTRADER_RECONNECT_MIN_MS: "50",
          XTRADER_RECONNECT_MAX_MS: "200",
          XTRADER_STALENESS_WINDOWS: "TRADES=1,L2=1",
          RUST_LOG: "info",
        },
        stdout: "pipe",
        stderr: "pipe",
      },
    );
    cleanups.push(() => {
      if (child.exitCode === null) child.kill("SIGKILL");
    });
    const stdout = collectLines(child.stdout);
    const stderr = new Response(child.stderr).text();

    // The address (port 0 = any free port) is in the start-up log line.
    const url = await waitUntil(
      () => {
        for (const line of stdout.lines) {
          const match = /^metrics on (http:\/\/127\.0\.0\.1:\d+) /.exec(JSON.parse(line).message);
          if (match) return match[1];
        }
        return undefined;
      },
      10_000,
      undefined,
      "the metrics address in the log",
    );
    await fake.waitForSubscribers("btcusdt@aggTrade", 1, 10_000);
    await fake.waitForSubscribers("btcusdt@depth@100ms", 1, 10_000);
    const idle = await scrape(url);
    expect(idle.value("xtrader_messages_received_total", TRADES)).toBe(0);

    let driver = setInterval(() => {
      fake.depthStep();
      fake.trade();
    }, 40);
    cleanups.push(() => clearInterval(driver));
    await probeUntil(url, 200, "ready while data flows");
    clearInterval(driver);
    const sent = fake.market().trades.filter((trade) => trade.delivered > 0).length;
    // The counters reach exactly what the venue sent (the binary drains its queue on its own time).
    let flowing = await scrape(url);
    for (let attempt = 0; attempt < 100 && flowing.value("xtrader_rows_written_total", TRADES) !== sent; attempt++) {
      await Bun.sleep(50);
      flowing = await scrape(url);
    }
    expect(flowing.value("xtrader_messages_received_total", TRADES)).toBe(sent);
    expect(flowing.value("xtrader_events_received_total", TRADES)).toBe(sent);
    expect(flowing.value("xtrader_rows_written_total", TRADES)).toBe(sent);
    expect(flowing.value("xtrader_exchange_lag_seconds_count", TRADES)).toBe(sent);
    expect(flowing.value("xtrader_messages_received_total", L2)).toBeGreaterThan(0);
    expect(flowing.value("xtrader_rows_written_total", L2)).toBeGreaterThan(0);
    expect(flowing.value("xtrader_parse_errors_total", TRADES)).toBe(0);
    expect(flowing.value("xtrader_sink_writable", { sink: "parquet" })).toBe(1);
    expect(flowing.value("process_resident_memory_bytes")).toBeGreaterThan(1 << 20);
    expect(flowing.family("xtrader_event_loop_lag_seconds").type).toBe("histogram");

    // Silence: not ready; then the venue drops the connections and the data resumes after the reconnect.
    // Each subscription's window runs from its own last message, so both turn stale within moments.
    const silent = await probeUntil(url, 503, "not ready once the venue stops sending", 10_000, 2);
    expect(silent.problems.length).toBe(2);
    fake.closeAll(1001, "going away");
    await fake.waitForSubscribers("btcusdt@aggTrade", 1, 10_000);
    await fake.waitForSubscribers("btcusdt@depth@100ms", 1, 10_000);
    driver = setInterval(() => {
      fake.depthStep();
      fake.trade();
    }, 40);
    const recovered = await probeUntil(url, 200, "ready again after the reconnect");
    expect(recovered.problems).toEqual([]);
    const after = await scrape(url);
    expect(after.value("xtrader_reconnects_total", TRADES)).toBeGreaterThanOrEqual(1);
    expect(after.value("xtrader_gaps_total", TRADES)).toBeGreaterThanOrEqual(1);
    expect(after.value("xtrader_gaps_total", L2)).toBeGreaterThanOrEqual(1);
    expect(after.value("xtrader_messages_received_total", TRADES)).toBeGreaterThan(sent);
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    clearInterval(driver);

    child.kill("SIGTERM");
    expect(await child.exited).toBe(0);
    const tail = await stdout.done;
    expect(tail).toBe("");
    expect(await stderr).toBe("");
    // Every line of stdout is one JSON log object.
    expect(stdout.lines.length).toBeGreaterThan(3);
    const entries = stdout.lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    for (const entry of entries) {
      expect(typeof entry.time).toBe("string");
      expect(Number.isNaN(Date.parse(entry.time as string))).toBe(false);
      expect(["error", "warn", "info", "debug", "trace"]).toContain(entry.level as string);
      expect(typeof entry.message).toBe("string");
    }
    const messages = entries.map((entry) => entry.message as string);
    expect(messages.some((message) => message.includes("disconnected"))).toBe(true);
    expect(messages.at(-1)).toBe("stopped; all data flushed");
  }, 60_000);

  test.each([
    ["an address in use", "busy", {}, (port: number) => `cannot serve metrics on 127.0.0.1:${port} (EADDRINUSE); give a free local HOST:PORT to --metrics-addr / METRICS_ADDR`],
    [
      "a bad staleness window",
      "free",
      { XTRADER_STALENESS_WINDOWS: "TRADES=soon" },
      () =>
        "invalid XTRADER_STALENESS_WINDOWS entry 'TRADES=soon': 'soon' is not a number of seconds > 0; expected STREAM=SECONDS or STREAM:EXCHANGE@INSTRUMENT=SECONDS (seconds > 0, or off), e.g. TRADES=300,LIQUIDATIONS=off",
    ],
  ] as const)("%s exits 2 with one line and logs nothing", async (_, port, env, expected) => {
    const holder = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("taken") });
    cleanups.push(() => holder.stop(true));
    const directory = mkdtempSync(join(tmpdir(), "xtrader-obs-binary-"));
    const result = await runBinary(
      [
        "--subscriptions",
        "TRADES:BINANCE_FUTURES@BTCUSDT",
        "--output-directory",
        join(directory, "data"),
        "--metrics-addr",
        `127.0.0.1:${port === "busy" ? holder.port : 0}`,
        "--log-format",
        "json",
      ],
      { env: { ...env }, cwd: directory },
    );
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toBe(`xtrader: error: ${expected(holder.port!)}\n`);
    expect(result.stdout).toBe("");
  });
});

/**
 * Reading fresh data: SIGHUP makes the running binary close every open Parquet file at once, so the rows
 * received so far are read back by DuckDB without waiting for the (default hourly) rotation; collection
 * goes on into new files, and the stop closes those.
 */
import { afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBinary } from "./support/binary.ts";
import { FakeBinanceFutures } from "./support/fake-binance.ts";
import { waitUntil } from "./support/fake-venue.ts";
import { listFiles, query } from "./support/parquet-helpers.ts";
import { parseExposition } from "./support/prometheus-text.ts";

setDefaultTimeout(30_000);

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const TRADES = { exchange: "BINANCE_FUTURES", stream: "TRADES", symbol: "BTCUSDT" };

describe("SIGHUP", () => {
  test("closes every open file now: DuckDB reads the rows received so far, and collection goes on", async () => {
    const fake = FakeBinanceFutures.start({ symbols: ["BTCUSDT"], seed: 7 });
    cleanups.push(() => fake.stop());
    const directory = mkdtempSync(join(tmpdir(), "xtrader-sighup-"));
    const data = join(directory, "data");
    const child = Bun.spawn(
      [ensureBinary(), "--subscriptions", "TRADES:BINANCE_FUTURES@BTCUSDT", "--output-directory", data, "--metrics-addr", "127.0.0.1:0"],
      {
        cwd: directory,
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...fake.env, PARQUET_FLUSH_INTERVAL_MS: "50" },
        stdout: "pipe",
        stderr: "pipe",
      },
    );
    cleanups.push(() => {
      if (child.exitCode === null) child.kill("SIGKILL");
    });
    const lines: string[] = [];
    const stdoutDone = (async () => {
      for await (const chunk of child.stdout) lines.push(...new TextDecoder().decode(chunk).split("\n"));
    })();
    const url = await waitUntil(
      () => lines.map((line) => /metrics on (http:\/\/127\.0\.0\.1:\d+) /.exec(line)?.[1]).find(Boolean),
      10_000,
      undefined,
      "the metrics address in the log",
    );
    await fake.waitForSubscribers("btcusdt@aggTrade", 1, 10_000);
    /** Waits until the binary has made `count` trade rows durable (journal or row group). */
    const written = async (count: number) => {
      const deadline = performance.now() + 10_000;
      for (;;) {
        const exposition = parseExposition(await (await fetch(`${url}/metrics`)).text());
        if (exposition.value("xtrader_rows_written_total", TRADES) === count) return;
        if (performance.now() > deadline) throw new Error(`timed out waiting for ${count} trade rows written`);
        await Bun.sleep(20);
      }
    };
    const tradeIds = async () => (await query(`SELECT id FROM read_parquet('${data}/trades/**/*.parquet')`)).map((row) => String(row.id)).sort();
    const sentIds = () => fake.market().trades.filter((trade) => trade.delivered > 0).map((trade) => String(trade.frame.a));

    for (let i = 0; i < 30; i++) fake.trade();
    await written(30);
    // The hour is not over: the file is open, out of the table's tree, so there is nothing to read yet.
    expect(existsSync(join(data, "trades")) ? listFiles(join(data, "trades")) : []).toEqual([]);

    child.kill("SIGHUP");
    await waitUntil(() => lines.some((line) => line.includes("SIGHUP: closed 1 open file(s); new rows start new files")) || undefined, 10_000, undefined, "the SIGHUP log line");
    expect(child.exitCode).toBeNull();
    expect(await tradeIds()).toEqual(sentIds().sort());
    expect(listFiles(join(data, ".inprogress"))).toEqual([]);

    // Collection goes on into a new file; a second SIGHUP finishes that one too.
    for (let i = 0; i < 20; i++) fake.trade();
    await written(50);
    child.kill("SIGHUP");
    await waitUntil(() => lines.filter((line) => line.includes("SIGHUP: closed 1 open file(s)")).length === 2 || undefined, 10_000, undefined, "the second SIGHUP log line");
    expect(listFiles(join(data, "trades"))).toHaveLength(2);
    expect((await tradeIds()).length).toBe(50);

    child.kill("SIGTERM");
    expect(await child.exited).toBe(0);
    await stdoutDone;
    expect(await tradeIds()).toEqual(sentIds().sort());
  });
});

/**
 * Overload: a fake Binance floods the compiled binary faster than its Parquet sink can write (the
 * smallest queue and buffer, one row per row group), and the process's peak RSS (the kernel's VmHWM, so
 * nothing between samples is missed) must stay under the ceiling docs/reliability.md derives from the
 * settings ("Memory under overload"). Before the open-row-group budget, every tiny row group's footer
 * metadata stayed in memory until its file's hourly rotation: RSS grew by ~20 MB/s for as long as the
 * flood lasted, and stayed there afterwards.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBinary } from "./support/binary.ts";
import { FakeBinanceFutures } from "./support/fake-binance.ts";
import { parquetFiles, query } from "./support/parquet-helpers.ts";

const MIB = 1 << 20;

/** The ceiling of docs/reliability.md, "Memory under overload", for the Parquet sink. */
function parquetCeilingBytes(settings: {
  queueRows: number;
  bufferedRows: number;
  openRowGroups: number;
  rowGroupRows: number;
  frameBytes: number;
  connections: number;
}): number {
  return (
    320 * MIB +
    512 * settings.queueRows +
    512 * settings.bufferedRows +
    32 * 1024 * (settings.openRowGroups + settings.bufferedRows / settings.rowGroupRows) +
    3 * settings.frameBytes * settings.connections
  );
}

function status(pid: number, field: "VmRSS" | "VmHWM"): number {
  const match = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(match![1]) * 1024;
}

let cleanup: (() => Promise<void>) | undefined;
afterEach(async () => {
  await cleanup?.();
  cleanup = undefined;
});

describe("memory under overload", () => {
  test("a flood faster than the Parquet sink, with one row per row group: peak RSS under the ceiling the settings give", async () => {
    const symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT"];
    const venue = FakeBinanceFutures.start({ symbols, incomingMessageLimit: 1_000_000 });
    // On tmpfs when there is one: the sink is then bound by its own work, not by fsync, and makes row
    // groups as fast as it can (the worst case for footer memory).
    const root = mkdtempSync(join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "xtrader-overload-"));
    const settings = { queueRows: 1000, bufferedRows: 1000, openRowGroups: 64, rowGroupRows: 1, frameBytes: 65_536 };
    const child = Bun.spawn(
      [
        ensureBinary(),
        "--subscriptions",
        symbols.flatMap((symbol) => ["TRADES", "L2", "BBO"].map((stream) => `${stream}:BINANCE_FUTURES@${symbol}`)).join(","),
        "--output-directory",
        root,
        // Without compression the sink makes row groups faster still.
        "--compression",
        "none",
      ],
      {
        env: {
          PATH: process.env.PATH ?? "/usr/bin:/bin",
          ...venue.env,
          XTRADER_RECONNECT_MIN_MS: "50",
          XTRADER_RECONNECT_MAX_MS: "200",
          XTRADER_QUEUE_CAPACITY: String(settings.queueRows),
          PARQUET_MAX_BUFFERED_ROWS: String(settings.bufferedRows),
          PARQUET_MAX_OPEN_ROW_GROUPS: String(settings.openRowGroups),
          XTRADER_MAX_FRAME_BYTES: String(settings.frameBytes),
          PARQUET_ROW_GROUP_ROWS: String(settings.rowGroupRows),
          PARQUET_FLUSH_INTERVAL_MS: "100",
          RUST_LOG: "warn",
        },
        stdout: "ignore",
        stderr: "pipe",
      },
    );
    const stderr = new Response(child.stderr).text();
    cleanup = async () => {
      child.kill("SIGKILL");
      await child.exited;
      await venue.stop();
      rmSync(root, { recursive: true, force: true });
    };
    for (const symbol of symbols) await venue.waitForSubscribers(`${symbol.toLowerCase()}@depth@100ms`, 1, 10_000);
    await venue.waitForSubscribers(`${symbols[0]!.toLowerCase()}@aggTrade`, 1, 10_000);

    // The flood: depth events of 20 levels, trades and BBO on every symbol, as fast as the fake can build them.
    const floodMs = 10_000;
    const until = performance.now() + floodMs;
    let sent = 0;
    while (performance.now() < until) {
      for (let i = 0; i < 20; i++) {
        for (const symbol of symbols) {
          venue.depthStep(symbol, 20);
          venue.trade(symbol);
          venue.publish(`${symbol.toLowerCase()}@bookTicker`, venue.market(symbol).bookTickerFrame());
          sent += 3;
        }
      }
      await Bun.sleep(0);
    }
    await Bun.sleep(1000);
    const ceiling = parquetCeilingBytes({ ...settings, connections: venue.exchange.openConnections().length });
    const peak = status(child.pid, "VmHWM");
    const after = status(child.pid, "VmRSS");
    child.kill("SIGTERM");
    expect(await child.exited).toBe(0);
    expect(await stderr).not.toMatch(/fatal|uncaught|unhandled/i);

    expect(sent).toBeGreaterThan(10_000);
    expect(peak, `peak RSS ${(peak / MIB).toFixed(0)} MiB over the ceiling ${(ceiling / MIB).toFixed(0)} MiB`).toBeLessThanOrEqual(ceiling);
    expect(after).toBeLessThanOrEqual(ceiling);
    // It was an overload (the queue overflowed, and said so in the data), and what was stored is readable.
    const gaps = await query(`SELECT count(*)::INTEGER AS n FROM read_parquet('${root}/gaps/**/*.parquet') WHERE reason = 'overflow'`);
    expect(gaps[0]!.n as number).toBeGreaterThan(0);
    const trades = await query(`SELECT count(*)::INTEGER AS n FROM read_parquet('${root}/trades/**/*.parquet')`);
    expect(trades[0]!.n as number).toBeGreaterThan(0);
    // The budget closed files early: more files than streams in a run shorter than any rotation.
    expect(parquetFiles(root).length).toBeGreaterThan(3 * symbols.length + 1);
  }, 40_000);
});

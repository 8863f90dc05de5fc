/**
 * Oversized WebSocket messages against the compiled binary: a fake Binance sends 50 MB frames on every
 * connection, three times. Each one is dropped unread, its connection closed and reopened, and the data
 * says so: a `disconnect` gap row per subscription naming the bound, then the stream goes on (books from a
 * fresh snapshot). Before the bound the frames reached the parser (a parse error at debug level, no gap),
 * and the memory they took stayed with the idle process.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBinary } from "./support/binary.ts";
import { FakeBinanceFutures } from "./support/fake-binance.ts";
import { query } from "./support/parquet-helpers.ts";

const MIB = 1 << 20;

let cleanup: (() => Promise<void>) | undefined;
afterEach(async () => {
  await cleanup?.();
  cleanup = undefined;
});

function rss(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) * 1024;
}

describe("oversized messages", () => {
  test("50 MB frames on every connection: dropped unread, a disconnect gap per subscription, the feed resumes, memory given back", async () => {
    const venue = FakeBinanceFutures.start({ incomingMessageLimit: 1_000_000 });
    const root = mkdtempSync(join(tmpdir(), "xtrader-frames-"));
    const child = Bun.spawn(
      [ensureBinary(), "--subscriptions", "TRADES:BINANCE_FUTURES@BTCUSDT,L2:BINANCE_FUTURES@BTCUSDT,BBO:BINANCE_FUTURES@BTCUSDT", "--output-directory", root],
      {
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...venue.env, XTRADER_RECONNECT_MIN_MS: "50", XTRADER_RECONNECT_MAX_MS: "200", RUST_LOG: "warn" },
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
    const subscribed = async (connections: number) => {
      await venue.exchange.waitFor(() => venue.exchange.openConnections().length === 2 && venue.exchange.connections.length >= connections, 10_000, "connections");
      await venue.waitForSubscribers("btcusdt@aggTrade", 1, 10_000);
      await venue.waitForSubscribers("btcusdt@bookTicker", 1, 10_000);
    };
    await subscribed(2);
    const idle = rss(child.pid);
    const huge = `{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","pad":"${"x".repeat(50 * MIB)}"}}`;
    for (let round = 1; round <= 3; round++) {
      for (let step = 0; step < 5; step++) venue.depthStep();
      venue.trade();
      venue.sendRaw(huge);
      await subscribed(2 * (round + 1));
    }
    for (let step = 0; step < 5; step++) venue.depthStep();
    const last = venue.trade();
    // The dead messages are given back by a collection after them, which allocation drives: an idle process
    // may not collect for a long time on a loaded machine. So the feed keeps flowing (as a live one does)
    // while we wait up to 20 s for RSS to come back; memory kept would never come back.
    await Bun.sleep(1500);
    let after = rss(child.pid);
    for (const deadline = Date.now() + 20_000; after - idle >= 64 * MIB && Date.now() < deadline; after = rss(child.pid)) {
      venue.depthStep();
      venue.trade();
      await Bun.sleep(250);
    }
    child.kill("SIGTERM");
    expect(await child.exited).toBe(0);
    expect(await stderr).toContain("over the 4194304-byte limit (XTRADER_MAX_FRAME_BYTES)");

    // Memory: back to the idle process plus what the default bounds allow for frames, not the frames kept.
    expect(after - idle, `RSS ${(idle / MIB).toFixed(0)} MiB before, ${(after / MIB).toFixed(0)} MiB after`).toBeLessThan(64 * MIB);
    const gaps = await query(
      `SELECT stream, count(*)::INTEGER AS n FROM read_parquet('${root}/gaps/**/*.parquet', hive_partitioning = true)
       WHERE reason = 'disconnect' AND detail LIKE '%message of % bytes over the 4194304-byte limit%' GROUP BY stream ORDER BY stream`,
    );
    expect(gaps).toEqual([
      { stream: "BBO", n: 3 },
      { stream: "L2", n: 3 },
      { stream: "TRADES", n: 3 },
    ]);
    const trades = await query(`SELECT id FROM read_parquet('${root}/trades/**/*.parquet', hive_partitioning = true) WHERE id = '${last.a}'`);
    expect(trades).toHaveLength(1);
    const snapshots = await query(`SELECT count(*)::INTEGER AS n FROM read_parquet('${root}/l2/**/*.parquet', hive_partitioning = true) WHERE is_snapshot GROUP BY sequence`);
    expect(snapshots.length).toBe(4);
  }, 60_000);
});

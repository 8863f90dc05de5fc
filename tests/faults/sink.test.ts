/**
 * Sink faults with the Parquet sink, end to end against the compiled binary on every venue at once:
 * a sink slower than the feed, the disk filling up and freeing again, and the output directory deleted
 * under the running collector. The stored rows are compared
 * with what the venues sent (verify.ts); where the design allows a loss (the pipeline's overflow policy)
 * the check allows exactly that, and only where a gap row marks it.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdirSync, rmSync, statfsSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cleanup, expectFaithful, finish, onCleanup, startScenario } from "./scenario.ts";
import { decodePartitionValue } from "../../src/sinks/parquet/layout.ts";
import { STREAM_OF_TABLE } from "../../src/core/tables.ts";
import { gapsOf } from "./verify.ts";
import { listFiles, workDirectory } from "./xtrader.ts";

afterEach(cleanup);

describe("sink faults (Parquet)", () => {
  test(
    "sink slower than the feed: the queue overflows, drops are counted and marked by gaps, books resync, the rest is exact",
    async () => {
      const running = await startScenario({
        seed: 31,
        args: ["--metrics-addr", "127.0.0.1:0", "--max-file-rows", "400"],
        env: {
          // The smallest queue and buffer, and one row group per row: every row costs a write and a sync.
          XTRADER_QUEUE_CAPACITY: "1000",
          PARQUET_MAX_BUFFERED_ROWS: "1000",
          PARQUET_ROW_GROUP_ROWS: "8",
        },
      });
      const { venues, xtrader } = running;
      await venues.run(800);
      // Bursts: the venues send much faster than the sink writes (a row group and a sync every 8 rows). Large
      // enough that the queue overflows however fast the sink has become (120 steps no longer always did).
      for (let burst = 0; burst < 3; burst++) {
        for (let i = 0; i < 400; i++) venues.step();
        await venues.run(400);
      }
      await venues.quiesce();
      expect(await xtrader.metric("xtrader_events_dropped_total")).toBeGreaterThan(0);
      // The books that lost events (which ones depends on timing: a faster sink spares some).
      const droppedBooks = new Set(
        (await xtrader.scrape())
          .samples("xtrader_events_dropped_total", { stream: "L2" })
          .filter((sample) => sample.value > 0)
          .map((sample) => `L2:${sample.labels.exchange}@${sample.labels.symbol}`),
      );
      expect(droppedBooks.size).toBeGreaterThan(0);
      const droppingSubscriptions = (await xtrader.scrape())
        .samples("xtrader_events_dropped_total")
        .filter((sample) => sample.value > 0).length;
      // Once the queue has drained, every book that lost deltas is resynced; then the market goes on.
      await xtrader.waitForMetric("xtrader_resyncs_total", { stream: "L2" }, droppedBooks.size);
      await venues.run(800);
      const output = await finish(running);
      expectFaithful(output, venues);
      // Trades were lost only inside overflow episodes (checked above); every book that lost deltas has an
      // overflow gap and a fresh snapshot after it.
      expect(gapsOf(output, { reason: "overflow" }).size).toBeGreaterThan(0);
      const overflowBooks = gapsOf(output, { reason: "overflow", stream: "L2" });
      // Exactly the books that dropped events carry an overflow gap.
      expect(new Set(overflowBooks.keys())).toEqual(droppedBooks);
      for (const [key, gaps] of overflowBooks) {
        const [exchange, symbol] = key.slice(3).split("@");
        const first = Math.min(...gaps.map((gap) => gap.local_timestamp));
        const resynced = output.l2.some((row) => row.exchange === exchange && row.symbol === symbol && row.is_snapshot && row.local_timestamp > first);
        expect(resynced, `a snapshot after the overflow of ${key}`).toBe(true);
      }
      // One line per overload episode (plus its end), however many subscriptions lost events: a line per
      // subscription buried every other line under real overload.
      const queueFullLines = xtrader.logs.filter((line) => /sink is behind and the queue is full/.test(line.message)).length;
      expect(droppingSubscriptions).toBeGreaterThan(2);
      expect(queueFullLines).toBeGreaterThan(0);
      expect(queueFullLines).toBeLessThanOrEqual(2);
      // Likewise the resyncs the overflow causes (about 20 here): a line at the start and at the end of the episode
      // per venue connector (5: one per exchange id), not one per resync (each has its gap row and
      // xtrader_resyncs_total).
      const connectors = new Set(running.subscriptions.split(",").map((key) => key.split(/[:@]/)[1])).size;
      expect(connectors).toBe(5);
      const resyncLines = xtrader.logs.filter((line) => /resync \(overflow|overflow \(.*resubscribing/.test(line.message)).length;
      expect(resyncLines).toBeGreaterThan(0);
      expect(resyncLines).toBeLessThanOrEqual(2 * connectors);
    },
    60_000,
  );
  test(
    "disk full: writes fail and are retried, rows wait in memory, and once space is freed everything is written",
    async () => {
      const directory = workDirectory();
      const dataDirectory = join(directory, "data");
      mkdirSync(dataDirectory);
      // A small filesystem of its own (tmpfs with size=; needs root). Without root: a file-size limit.
      // XTRADER_FAULTS_NO_MOUNT=1 exercises the fallback where mounting is allowed.
      const mounted = !process.env.XTRADER_FAULTS_NO_MOUNT && Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", dataDirectory]).success;
      if (mounted) onCleanup(() => Bun.spawnSync(["umount", "-l", dataDirectory]));
      const running = await startScenario({
        seed: 32,
        dataDirectory,
        args: ["--compression", "none"],
        // Fallback: `ulimit -f` (SIGXFSZ ignored so writes fail with EFBIG instead of killing the process).
        prefix: mounted ? undefined : ["sh", "-c", `trap '' XFSZ; ulimit -f 4; exec "$0" "$@"`],
      });
      const { venues, xtrader } = running;
      await venues.run(1000);
      if (!mounted) {
        // With only a file-size limit the disk never "frees": check survival and honesty, not completeness.
        await xtrader.waitForLog(/cannot write/, 20_000);
        expect(xtrader.running).toBe(true);
        return;
      }
      // Fill the filesystem, leaving a few KiB.
      const filler = join(dataDirectory, "filler");
      const { bavail, bsize } = statfsSync(dataDirectory);
      writeFileSync(filler, Buffer.alloc(Math.max(0, Number(bavail) * Number(bsize) - 16 * 1024)));
      await xtrader.waitForLog(/cannot write .*\(disk full\)/, 15_000);
      await venues.run(1200);
      expect(xtrader.running).toBe(true);
      unlinkSync(filler);
      await xtrader.waitForLog(/writing again after/, 15_000);
      await venues.run(800);
      const output = await finish(running);
      expectFaithful(output, venues);
      // The outage was the sink's: no data gap was needed.
      expect(output.gaps).toEqual([]);
    },
    60_000,
  );

  test(
    "output directory deleted while running: the loss is found, marked by output_lost gaps, books restart from snapshots, rows after it are stored",
    async () => {
      const running = await startScenario({ seed: 35 });
      const { venues, xtrader } = running;
      await venues.run(600);
      await venues.barrier();
      await Bun.sleep(300); // several flush intervals (100 ms): every stream has a file on disk
      // The streams with a file open (its journal in the work directory) when the directory goes.
      const open = new Set(
        listFiles(join(running.dataDirectory, ".inprogress"))
          .filter((name) => name.endsWith(".journal") && !name.startsWith("gaps/"))
          .map((name) => {
            const [table, exchange, symbol] = name.split("/").map((part) => decodePartitionValue(part.slice(part.indexOf("=") + 1)));
            return `${STREAM_OF_TABLE[table as keyof typeof STREAM_OF_TABLE]}:${exchange}@${symbol}`;
          }),
      );
      expect(open.size).toBeGreaterThan(10);
      const deletedAt = Date.now() * 1000;
      rmSync(running.dataDirectory, { recursive: true });
      const found = await xtrader.waitForLog(/were deleted or moved away while being written/, 10_000);
      expect(found.level).toBe("error");
      await venues.run(800);
      const output = await finish(running);
      // Trades are missing only where an output_lost gap marks them, every book replays to the venue's
      // (so no file starts with deltas whose snapshot was lost), nothing is left for a recovery.
      expectFaithful(output, venues);
      const marked = gapsOf(output, { reason: "output_lost" });
      for (const stream of open) expect(marked.has(stream), stream).toBe(true);
      // Every stored row was received after the deletion: what was before is gone with the directory.
      for (const row of [...output.trades, ...output.l2, ...output.bbo]) expect(row.local_timestamp).toBeGreaterThan(deletedAt - 1_000_000);
      expect(xtrader.logs.some((line) => /next start recovers/.test(line.message))).toBe(false);
    },
    60_000,
  );
});

/**
 * Stopping and killing the process mid-flight, end to end against the compiled binary with the Parquet
 * sink on every venue at once: SIGTERM while rows are being flushed, and SIGKILL followed by a restart
 * on the same directory that recovers the killed run's files. Trades delivered before the signal (the
 * cut-off; for SIGKILL, more than one flush interval before) must be stored exactly once.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { decodePartitionValue } from "../../src/sinks/parquet/layout.ts";
import { STREAM_OF_TABLE } from "../../src/core/tables.ts";
import { cleanup, expectFaithful, finish, startBinary, startScenario } from "./scenario.ts";
import { gapsOf } from "./verify.ts";
import { readParquetOutput } from "./xtrader.ts";

afterEach(cleanup);

describe("stop and kill (Parquet)", () => {
  test(
    "SIGTERM while rows are being flushed: exit 0, every file complete, every trade delivered before the signal stored",
    async () => {
      const running = await startScenario({
        seed: 33,
        tickMs: 10,
        env: { PARQUET_ROW_GROUP_ROWS: "300" },
      });
      const { venues, xtrader } = running;
      await venues.run(2000);
      // The market keeps running through the signal; trades delivered before this point must be stored.
      const cutoff = venues.truth.cutoff;
      await venues.barrier();
      const code = await xtrader.stop();
      venues.pause();
      expect(code, xtrader.tail()).toBe(0);
      expect(xtrader.logs.some((line) => /stopped; all data flushed/.test(line.message))).toBe(true);
      const output = await readParquetOutput(running.dataDirectory);
      expectFaithful(output, venues, { cutoff });
    },
    60_000,
  );

  test(
    "SIGKILL, then a restart on the same directory recovers the killed run's files; nothing journaled is lost",
    async () => {
      const running = await startScenario({
        seed: 34,
        env: { PARQUET_ROW_GROUP_ROWS: "200" },
      });
      const { venues } = running;
      await venues.run(1500);
      const cutoff = venues.truth.cutoff;
      await venues.barrier();
      // Several flush intervals (100 ms): everything before the cut-off is in a journal or a row group.
      await Bun.sleep(500);
      const killedAt = Date.now() * 1000;
      running.xtrader.kill("SIGKILL");
      expect(await running.xtrader.exited).not.toBe(0);
      const afterKill = await readParquetOutput(running.dataDirectory);
      expect(afterKill.leftovers.some((name) => name.endsWith(".journal"))).toBe(true);
      // The journaled rows are in the process's rows log (one for every open file), which recovery reads back.
      expect(afterKill.leftovers.filter((name) => /^rows-\d+-\d+\.log$/.test(name)).length).toBeGreaterThan(0);

      const restarted = startBinary({
        venues,
        directory: running.directory,
        dataDirectory: running.dataDirectory,
        subscriptions: running.subscriptions,
      });
      const recovered = await restarted.waitForLog(/^parquet: recovered \d+ row\(s\) into \d+ file\(s\)/);
      expect(Number(/recovered (\d+) row/.exec(recovered.message)![1])).toBeGreaterThan(0);
      await venues.subscribed();
      await venues.run(1500);
      const output = await finish({ ...running, xtrader: restarted });
      // Trades after the cut-off reached the killed process within its last flush interval and may be lost;
      // every trade before it came back, from row groups or from the rows log. Nothing is left in progress:
      // the killed run's log went once its files were recovered, the restart's at its clean stop.
      expectFaithful(output, venues, { cutoff });
      // Every stream the killed run had a file open for is marked in the data: an unclean_stop gap, written
      // by the new run after the kill (between the killed run's last rows and its own first ones).
      const killedStreams = new Set(
        afterKill.leftovers
          .filter((name) => name.endsWith(".journal") && !name.startsWith("gaps/"))
          .map((name) => {
            const [table, exchange, symbol] = name.split("/").map((part) => decodePartitionValue(part.slice(part.indexOf("=") + 1)));
            return `${STREAM_OF_TABLE[table as keyof typeof STREAM_OF_TABLE]}:${exchange}@${symbol}`;
          }),
      );
      expect(killedStreams.size).toBeGreaterThan(0);
      const marked = gapsOf(output, { reason: "unclean_stop" });
      expect([...marked.keys()].sort()).toEqual([...killedStreams].sort());
      for (const [key, gaps] of marked) {
        expect(gaps.length, key).toBe(1);
        expect(Number(gaps[0]!.local_timestamp)).toBeGreaterThanOrEqual(killedAt);
      }
      // Every file the killed run had open is now a complete file under its own name.
      for (const leftover of afterKill.leftovers.filter((name) => name.endsWith(".tmp"))) {
        const finalName = leftover.replace(/\/\.([^/]+)\.tmp$/, "/$1");
        expect(output.files).toContain(finalName);
      }
    },
    60_000,
  );

  test(
    "SIGKILL, then a restart killed right after its recovery: the next start still writes the unclean_stop markers",
    async () => {
      const running = await startScenario({ seed: 36 });
      const { venues } = running;
      await venues.run(600);
      await venues.barrier();
      await Bun.sleep(300);
      running.xtrader.kill("SIGKILL");
      await running.xtrader.exited;
      const killedStreams = new Set(
        (await readParquetOutput(running.dataDirectory)).leftovers
          .filter((name) => name.endsWith(".journal") && !name.startsWith("gaps/"))
          .map((name) => {
            const [table, exchange, symbol] = name.split("/").map((part) => decodePartitionValue(part.slice(part.indexOf("=") + 1)));
            return `${STREAM_OF_TABLE[table as keyof typeof STREAM_OF_TABLE]}:${exchange}@${symbol}`;
          }),
      );
      expect(killedStreams.size).toBeGreaterThan(0);

      // The restart recovers the files and queues its markers, but its first journal flush is a minute away.
      const restart = { venues, directory: running.directory, dataDirectory: running.dataDirectory, subscriptions: running.subscriptions };
      const second = startBinary({ ...restart, env: { PARQUET_FLUSH_INTERVAL_MS: "60000" } });
      await second.waitForLog(/^the previous run did not stop cleanly: marked \d+ stream/);
      second.kill("SIGKILL");
      await second.exited;
      expect((await readParquetOutput(running.dataDirectory)).leftovers.filter((name) => !name.startsWith("."))).toEqual([]);

      const third = startBinary(restart);
      await venues.subscribed();
      await venues.run(300);
      const output = await finish({ ...running, xtrader: third });
      const marked = gapsOf(output, { reason: "unclean_stop" });
      expect([...marked.keys()].sort()).toEqual([...killedStreams].sort());
      for (const [key, gaps] of marked) expect(gaps.length, key).toBe(1);
      // Once stored, nothing is owed any more.
      expect(output.leftovers).toEqual([]);
    },
    60_000,
  );
});

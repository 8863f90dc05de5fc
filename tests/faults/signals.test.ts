/**
 * Stopping and killing the process mid-flight, end to end against the compiled binary with the Parquet
 * sink on every venue at once: SIGTERM while rows are being flushed, and SIGKILL followed by a restart
 * on the same directory that recovers the killed run's files. Trades delivered before the signal (the
 * cut-off; for SIGKILL, more than one flush interval before) must be stored exactly once.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { cleanup, expectFaithful, finish, startBinary, startScenario } from "./scenario.ts";
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
      running.xtrader.kill("SIGKILL");
      expect(await running.xtrader.exited).not.toBe(0);
      const afterKill = await readParquetOutput(running.dataDirectory);
      expect(afterKill.leftovers.some((name) => name.endsWith(".journal"))).toBe(true);

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
      // Trades after the cut-off reached the killed process within its last flush interval and may be lost.
      expectFaithful(output, venues, { cutoff });
      // Every file the killed run had open is now a complete file under its own name.
      for (const leftover of afterKill.leftovers.filter((name) => name.endsWith(".tmp"))) {
        const finalName = leftover.replace(/\/\.([^/]+)\.tmp$/, "/$1");
        expect(output.files).toContain(finalName);
      }
    },
    60_000,
  );
});

/**
 * The QuestDB sink end to end: the compiled binary on every venue at once, writing ILP to the strict
 * test server (tests/support/ilp-server.ts), which parses every byte. QuestDB is down at start, comes
 * up, is killed mid-run and restarted, and drops the connection with a reset. What the server stored,
 * deduplicated on the DEDUP keys the tables were created with (as QuestDB does: a later row with the
 * same keys replaces the earlier one), must match what the venues sent, funding and liquidations included.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TABLES } from "../../src/core/tables.ts";
import { FakeQuestDbHttp } from "../support/questdb-http.ts";
import { IlpServer } from "../support/ilp-server.ts";
import { cleanup, expectFaithful, onCleanup, startScenario } from "./scenario.ts";
import { Venues } from "./venues.ts";
import { gapsOf } from "./verify.ts";
import { ilpOutput, workDirectory, Xtrader } from "./xtrader.ts";

afterEach(cleanup);

const ALL_STREAMS = ["TRADES", "L2", "BBO", "FUNDING", "LIQUIDATIONS"];

async function questDb(): Promise<{ ilp: IlpServer; http: FakeQuestDbHttp; env: Record<string, string> }> {
  const ilp = await IlpServer.reservePort();
  // One database: the tables the DDL creates over HTTP (with their DEDUP keys) are the ones ILP fills.
  const http = await FakeQuestDbHttp.start(0, undefined, ilp.catalog);
  onCleanup(() => ilp.stop());
  onCleanup(() => http.stop());
  return {
    ilp,
    http,
    env: {
      QUESTDB_HOST: "127.0.0.1",
      QUESTDB_ILP_PORT: String(ilp.port),
      QUESTDB_HTTP_PORT: String(http.port),
      QUESTDB_RECONNECT_MIN_MS: "50",
      QUESTDB_RECONNECT_MAX_MS: "300",
      QUESTDB_FLUSH_INTERVAL_MS: "100",
    },
  };
}

describe("QuestDB outages", () => {
  test(
    "down at start, up, killed mid-run, restarted, connection reset: every row arrives once (after dedup), in order, well formed",
    async () => {
      const { ilp, http, env } = await questDb();
      const running = await startScenario({ seed: 41, args: ["--sink", "questdb"], env, streams: ALL_STREAMS, extrasEvery: 6 });
      const { venues, xtrader } = running;
      await venues.run(1000);
      expect(ilp.countRows()).toBe(0);
      await xtrader.waitForLog(/unreachable/);
      // QuestDB comes up: the tables are created before the first row, then the backlog arrives.
      await ilp.restart();
      await ilp.waitForRows(1, undefined, 15_000);
      expect(http.queries.filter((sql) => sql.startsWith("CREATE TABLE IF NOT EXISTS")).length).toBe(6);
      await venues.run(1000);
      // Killed mid-run (every connection closed, nothing listening), then back on the same port.
      await ilp.stop();
      await venues.run(1000);
      const before = ilp.countRows();
      await ilp.restart();
      await ilp.waitForRows(before + 1, undefined, 15_000);
      await venues.run(700);
      // A reset connection (RST): what was in flight is sent again.
      ilp.dropConnections("reset");
      await venues.run(1000);
      await venues.quiesce();
      const code = await xtrader.stop();
      expect(code, xtrader.tail()).toBe(0);
      ilp.assertNoErrors();
      http.assertNoErrors();
      expect(ilp.abandonedPartialLines).toBe(0);
      const output = ilpOutput(ilp.storedRows());
      expectFaithful(output, venues);
      // Not passed by storing none: Deribit's double liquidations (MT) are two rows, both kept.
      expect(output.funding.length).toBeGreaterThan(0);
      expect(output.liquidations.filter((row) => row.exchange === "DERIBIT").length).toBeGreaterThan(
        new Set(output.liquidations.filter((row) => row.exchange === "DERIBIT").map((row) => row.id)).size,
      );
      // The sink's outages are not data gaps: QuestDB being away lost nothing.
      expect(gapsOf(output, {}).size).toBe(0);
    },
    60_000,
  );

  test(
    "QuestDB away longer than the sink's buffer: the pipeline is held, drops are marked by gaps, books resync when it is back",
    async () => {
      const { ilp, env } = await questDb();
      const running = await startScenario({
        seed: 42,
        args: ["--sink", "questdb", "--metrics-addr", "127.0.0.1:0"],
        env: { ...env, QUESTDB_BUFFER_MAX_BYTES: String(1 << 20), XTRADER_QUEUE_CAPACITY: "2000" },
      });
      const { venues, xtrader } = running;
      await venues.run(500);
      // Bursts while QuestDB is down: more than 1 MiB of lines.
      for (let burst = 0; burst < 4; burst++) {
        for (let i = 0; i < 400; i++) venues.step();
        await venues.run(300);
      }
      await venues.quiesce();
      expect(await xtrader.metric("xtrader_events_dropped_total")).toBeGreaterThan(0);
      expect(xtrader.logs.some((line) => /QuestDB buffer is full .*holding the pipeline/.test(line.message))).toBe(true);
      await ilp.restart();
      const books = running.subscriptions.split(",").filter((key) => key.startsWith("L2:")).length;
      await xtrader.waitForMetric("xtrader_resyncs_total", { stream: "L2" }, books);
      await venues.run(800);
      await venues.quiesce();
      const code = await xtrader.stop();
      expect(code, xtrader.tail()).toBe(0);
      ilp.assertNoErrors();
      const output = ilpOutput(ilp.storedRows());
      expectFaithful(output, venues);
      expect(gapsOf(output, { reason: "overflow", stream: "L2" }).size).toBe(books);
    },
    60_000,
  );

  test(
    "stopped while QuestDB is away and the rows cannot be kept: the stop says how many rows each table lost, exit code 3",
    async () => {
      const { env } = await questDb(); // nothing listens on the ILP port
      const directory = workDirectory();
      const data = join(directory, "data");
      mkdirSync(data, { recursive: true });
      writeFileSync(join(data, "questdb"), "in the way"); // the pending file cannot be written
      const running = await startScenario({ seed: 44, args: ["--sink", "questdb"], env: { ...env, QUESTDB_CLOSE_TIMEOUT_MS: "500" }, dataDirectory: data });
      const { venues, xtrader } = running;
      await venues.run(800);
      await venues.quiesce();
      const code = await xtrader.stop();
      expect(code, xtrader.tail()).toBe(3);
      const stopping = xtrader.logs.find((line) => line.message.startsWith("stopping (SIGTERM)"))!;
      expect(stopping.message).toMatch(/flushing \d+ queued row\(s\) and [1-9]\d* buffered in the sink$/);
      const stopped = xtrader.logs.find((line) => line.message.startsWith("stopped;"))!;
      expect(stopped.level).toBe("error");
      expect(stopped.message).toMatch(/^stopped; \d+ row\(s\) were lost \(.*trades \d+.*\)$/);
      expect(xtrader.logs.some((line) => line.message.includes("all data flushed"))).toBe(false);
    },
    30_000,
  );
});

describe("QuestDB tables that do not match", () => {
  test("a pre-existing table QuestDB cannot store our values in: one line naming table, column and types, exit 2", async () => {
    const { ilp, env } = await questDb();
    const SQL: Record<string, string> = { symbol: "SYMBOL", string: "VARCHAR", double: "DOUBLE", long: "LONG", timestamp: "TIMESTAMP", boolean: "BOOLEAN" };
    ilp.catalog.createTable("trades", Object.fromEntries(TABLES.trades.map((column) => [column.name, column.name === "id" ? "LONG" : SQL[column.kind]!])));
    const venues = new Venues({ seed: 45 });
    onCleanup(() => venues.stop());
    const directory = workDirectory();
    const xtrader = Xtrader.start({
      args: ["--sink", "questdb", "--subscriptions", venues.subscriptions(["TRADES"]), "--output-directory", join(directory, "data")],
      env: { ...venues.env, ...env },
      cwd: directory,
    });
    onCleanup(() => xtrader.kill("SIGKILL"));
    expect(await xtrader.exited).toBe(2);
    await xtrader.stop();
    const errors = xtrader.logs.filter((line) => line.message.startsWith("xtrader: error:"));
    expect(errors).toHaveLength(1);
    expect(errors[0]!.message).toStartWith(
      "xtrader: error: QuestDB table trades does not match what xtrader writes: column id is LONG, expected VARCHAR (or STRING, SYMBOL)",
    );
    expect(ilp.connectionsAccepted).toBe(0);
  }, 20_000);
});

/**
 * Tables whose columns do not match what xtrader writes, against the strict ILP server and the fake HTTP
 * endpoint sharing one QuestDbCatalog (QuestDB's cast rules, and its ILP/TCP answer to a refused line:
 * closing the connection):
 * - at start, over HTTP, such a table stops xtrader with one line naming table, column, expected and
 *   found type; compatible types, extra and missing columns are fine, and DEDUP keys that would merge
 *   different observations (an older xtrader's liquidations key) are widened;
 * - at run time (no HTTP to ask, or a table altered while running) the refused line is found by sending
 *   pieces of the chunk, it and the rest of its table go to refused.ilp, and every other table flows.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UserError } from "../src/core/errors.ts";
import type { MarketEvent } from "../src/core/events.ts";
import { DEDUP_KEYS } from "../src/sinks/questdb/schema.ts";
import { TABLES, type TableName } from "../src/core/tables.ts";
import { IlpServer } from "./support/ilp-server.ts";
import { FakeQuestDbHttp } from "./support/questdb-http.ts";
import { T0, bbo, book, funding, liquidation, trade } from "./support/questdb-events.ts";
import { createTestSink, type TestSink, type TestSinkOptions } from "./support/questdb-harness.ts";

let ilp: IlpServer | undefined;
let http: FakeQuestDbHttp | undefined;
let current: TestSink | undefined;
let directory = "";
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);

beforeEach(() => {
  unhandled.length = 0;
  process.on("unhandledRejection", onUnhandled);
  directory = mkdtempSync(join(tmpdir(), "xtrader-questdb-refused-"));
});

afterEach(async () => {
  await current?.sink.close();
  current = undefined;
  await ilp?.stop();
  await http?.stop();
  ilp?.assertNoErrors();
  http?.assertNoErrors();
  ilp = undefined;
  http = undefined;
  rmSync(directory, { recursive: true, force: true });
  process.off("unhandledRejection", onUnhandled);
  expect(unhandled).toEqual([]);
});

async function startSink(options: TestSinkOptions): Promise<TestSink> {
  current = createTestSink({ directory, ...options });
  await current.sink.start();
  return current;
}

/** QuestDB's ILP server and HTTP endpoint as one database. */
async function questDb(): Promise<{ ilp: IlpServer; http: FakeQuestDbHttp }> {
  ilp = await IlpServer.start();
  http = await FakeQuestDbHttp.start(0, undefined, ilp.catalog);
  return { ilp, http };
}

/** Our columns of `table` with QuestDB's types, some replaced. */
function columnsOf(table: TableName, replaced: Readonly<Record<string, string>> = {}): Record<string, string> {
  const SQL: Record<string, string> = { symbol: "SYMBOL", string: "VARCHAR", double: "DOUBLE", long: "LONG", timestamp: "TIMESTAMP", boolean: "BOOLEAN" };
  return Object.fromEntries(TABLES[table].map((column) => [column.name, replaced[column.name] ?? SQL[column.kind]!]));
}

/** Rows of a table told apart by everything they hold. */
const distinct = (table: string): number => new Set(ilp!.storedRows(table).map((row) => JSON.stringify(row, (_key, value) => (typeof value === "bigint" ? String(value) : value)))).size;

const refusedLines = (): string[] =>
  readFileSync(join(directory, "questdb", "refused.ilp"), "utf8")
    .split("\n")
    .filter(Boolean);

describe("at start", () => {
  test("a table QuestDB cannot store our values in stops the start: one line naming table, column, expected and found type", async () => {
    const { ilp } = await questDb();
    ilp.catalog.createTable("trades", columnsOf("trades", { id: "LONG" }), { dedupKeys: DEDUP_KEYS.trades });
    ilp.catalog.createTable("funding", columnsOf("funding", { mark_price: "BOOLEAN" }), { dedupKeys: DEDUP_KEYS.funding });
    current = createTestSink({ ilpPort: ilp.port, httpPort: http!.port, directory });
    const error = await current.sink.start().then(
      () => undefined,
      (failure: unknown) => failure,
    );
    expect(error).toBeInstanceOf(UserError);
    const message = (error as Error).message;
    expect(message).not.toContain("\n");
    expect(message).toContain("QuestDB table trades does not match what xtrader writes: column id is LONG, expected VARCHAR (or STRING, SYMBOL)");
    expect(message).toContain("QuestDB table funding does not match what xtrader writes: column mark_price is BOOLEAN, expected DOUBLE (or FLOAT, DECIMAL)");
    expect(ilp.countRows()).toBe(0);
  });

  test("compatible types, extra and missing columns are fine; DEDUP keys that merge a trade's two liquidated sides are widened", async () => {
    const { ilp } = await questDb();
    // `id` as SYMBOL (QuestDB casts an ILP string to it), designated timestamp in ns, a column of its own, no `side`.
    ilp.catalog.createTable("trades", { exchange: "SYMBOL", symbol: "SYMBOL", timestamp: "TIMESTAMP_NS", id: "SYMBOL", note: "VARCHAR" }, { dedupKeys: DEDUP_KEYS.trades });
    // As an older xtrader created it: one Deribit trade liquidating maker and taker kept one row of two.
    ilp.catalog.createTable("liquidations", columnsOf("liquidations"), { dedupKeys: ["timestamp", "exchange", "symbol", "id"] });
    const { sink, logs } = await startSink({ ilpPort: ilp.port, httpPort: http!.port });
    expect(ilp.catalog.tables.get("liquidations")!.dedupKeys).toEqual([...DEDUP_KEYS.liquidations]);
    expect(logs.some((line) => line.startsWith("info:") && line.includes("QuestDB table liquidations: DEDUP UPSERT KEYS set to"))).toBe(true);
    const both: MarketEvent[] = [
      liquidation(1, { exchange: "DERIBIT", symbol: "BTC-PERPETUAL", id: "BTC-4242", side: "buy" }),
      liquidation(1, { exchange: "DERIBIT", symbol: "BTC-PERPETUAL", id: "BTC-4242", side: "sell" }),
    ];
    await sink.write([trade(1), ...both]);
    await sink.flush();
    await ilp.waitForRows(3);
    expect(ilp.storedRows("liquidations").map((row) => row.symbols.side)).toEqual(["buy", "sell"]);
    expect(ilp.storedRows("trades")).toHaveLength(1);
    expect(ilp.refusals).toEqual([]);
  });
});

describe("at run time", () => {
  test("TCP, nothing to ask over HTTP: the refused line is found, its table is set aside in refused.ilp, every other table flows", async () => {
    ilp = await IlpServer.start();
    // Created by someone else: every trades line is refused, and QuestDB closes the connection on it.
    ilp.catalog.createTable("trades", columnsOf("trades", { id: "LONG" }));
    const { sink, stats, logs } = await startSink({
      ilpPort: ilp.port,
      env: { QUESTDB_REFUSAL_PROBE_MS: "150", QUESTDB_FLUSH_ROWS: "40", QUESTDB_FLUSH_INTERVAL_MS: "20" },
    });
    const events: MarketEvent[] = [];
    let trades = 0;
    for (let i = 0; i < 100; i++) {
      events.push(bbo(i), funding(i));
      if (i % 10 === 7) {
        events.push(trade(i));
        trades++;
      }
    }
    await sink.write(events);
    // ILP created these tables without DEDUP keys: re-sent rows are stored twice, so count distinct ones.
    await ilp.waitFor(() => distinct("bbo") === 100 && distinct("funding") === 100, 10_000, "every bbo and funding row");
    // Later rows of the table go straight to the file; the rest is not held up.
    await sink.write([trade(500), bbo(500), book(501)]);
    await ilp.waitFor(() => distinct("l2") === 3 && distinct("bbo") === 101, 5000, "the later rows");
    await sink.flush();
    await ilp.waitFor(() => stats.refusedRows === trades + 1 || undefined, 5000, "every trade set aside");
    expect(ilp.storedRows("trades")).toHaveLength(0);
    expect(ilp.refusals.length).toBeGreaterThan(0);
    expect(ilp.refusals[0]).toContain("cast error from protocol type: STRING to column type: LONG");
    const lines = refusedLines();
    expect(lines).toHaveLength(trades + 1);
    expect(lines.every((line) => line.startsWith("trades,exchange=BINANCE_FUTURES,symbol=BTCUSDT,"))).toBe(true);
    expect(stats.droppedRows).toBe(0);
    const error = logs.find((line) => line.startsWith("error:") && line.includes("refuses the rows of table trades"));
    expect(error).toContain(join(directory, "questdb", "refused.ilp"));
    // Not the false diagnosis of an unreachable QuestDB.
    expect(logs.some((line) => line.includes("closes every connection right after accepting it"))).toBe(false);
    expect(stats.outageSince).toBe(0);
  }, 20_000);

  test("a table altered while xtrader runs: QuestDB's HTTP endpoint names the column; that table is set aside, the others flow", async () => {
    const { ilp } = await questDb();
    const { sink, stats, logs } = await startSink({
      ilpPort: ilp.port,
      httpPort: http!.port,
      env: { QUESTDB_REFUSAL_PROBE_MS: "150", QUESTDB_FLUSH_INTERVAL_MS: "20" },
    });
    await sink.write([funding(1), bbo(1)]);
    await ilp.waitForRows(2);
    ilp.catalog.tables.get("funding")!.columns.set("mark_price", "BOOLEAN"); // someone's ALTER TABLE
    for (let i = 2; i < 6; i++) {
      await sink.write([funding(i), bbo(i)]);
      await Bun.sleep(30);
    }
    await ilp.waitFor(() => ilp!.storedRows("bbo").length === 5, 15_000, "every bbo row");
    await ilp.waitFor(() => stats.refusedRows >= 4 || undefined, 5000, "the funding rows set aside");
    expect(ilp.storedRows("funding")).toHaveLength(1);
    const error = logs.find((line) => line.startsWith("error:") && line.includes("refuses the rows of table funding"));
    expect(error).toContain("column mark_price is BOOLEAN, expected DOUBLE");
    // Every refused row is in the file; funding(1) may be there too: sent again from the resend window
    // (ILP/TCP cannot tell whether it arrived), which replaying the file with DEDUP keys makes harmless.
    const lines = refusedLines();
    expect(lines.length).toBe(stats.refusedRows);
    expect(lines.length).toBeLessThanOrEqual(5);
    const times = new Set(lines.map((line) => line.split(" ").at(-1)));
    for (let i = 2; i < 6; i++) expect(times.has(`${(T0 + i) * 1000}`)).toBe(true);
  }, 20_000);
});

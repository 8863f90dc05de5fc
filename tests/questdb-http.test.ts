/**
 * QuestDbSink and QuestDB's HTTP endpoint: the DDL sent at start (to a fake /exec), the fallback to ILP
 * auto-creation when HTTP is unreachable, and QDB_CLIENT_CONF selecting ILP over HTTP (stdlib_http set
 * for Bun, authentication, outage and rejected batches), with no secret ever logged.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { UserError } from "../src/core/errors.ts";
import { DEDUP_KEYS } from "../src/sinks/questdb/schema.ts";
import { TABLES, TABLE_NAMES } from "../src/sinks/tables.ts";
import { IlpServer } from "./support/ilp-server.ts";
import { FakeQuestDbHttp } from "./support/questdb-http.ts";
import { bbo, book, trade } from "./support/questdb-events.ts";
import { createTestSink, type TestSink, type TestSinkOptions } from "./support/questdb-harness.ts";

let ilp: IlpServer | undefined;
let http: FakeQuestDbHttp | undefined;
let current: TestSink | undefined;
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);

beforeEach(() => {
  unhandled.length = 0;
  process.on("unhandledRejection", onUnhandled);
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
  process.off("unhandledRejection", onUnhandled);
  expect(unhandled).toEqual([]);
});

async function startSink(options: TestSinkOptions): Promise<TestSink> {
  current = createTestSink(options);
  await current.sink.start();
  return current;
}

/** Splits `CREATE TABLE IF NOT EXISTS name (cols) TIMESTAMP(ts) PARTITION BY DAY WAL DEDUP UPSERT KEYS(keys)`. */
function parseCreateTable(sql: string) {
  const match = /^CREATE TABLE IF NOT EXISTS (\w+) \((.*)\) TIMESTAMP\((\w+)\) PARTITION BY DAY WAL DEDUP UPSERT KEYS\((.*)\)$/.exec(sql);
  if (!match) throw new Error(`unexpected DDL: ${sql}`);
  return {
    table: match[1]!,
    columns: match[2]!.split(", ").map((column) => column.split(" ") as [string, string]),
    designated: match[3]!,
    keys: match[4]!.split(", "),
  };
}

describe("tables created over HTTP at start", () => {
  test("one CREATE TABLE IF NOT EXISTS per table, partitioned by day, WAL, DEDUP keys, before the first row", async () => {
    ilp = await IlpServer.start();
    http = await FakeQuestDbHttp.start();
    let queriesWhenFirstRowArrived = -1;
    const { sink, logs } = await startSink({ ilpPort: ilp.port, httpPort: http.port });
    await sink.write([trade(1), book(2)]);
    await sink.flush();
    await ilp.waitFor(() => {
      if (ilp!.rows.length > 0 && queriesWhenFirstRowArrived < 0) queriesWhenFirstRowArrived = http!.queries.length;
      return ilp!.rows.length >= 4 || undefined;
    }, 5000, "rows");
    expect(queriesWhenFirstRowArrived).toBe(TABLE_NAMES.length);

    const created = http.queries.map(parseCreateTable);
    expect(created.map((ddl) => ddl.table)).toEqual([...TABLE_NAMES]);
    const SQL: Record<string, string> = { symbol: "SYMBOL", string: "VARCHAR", double: "DOUBLE", long: "LONG", timestamp: "TIMESTAMP", boolean: "BOOLEAN" };
    for (const ddl of created) {
      const table = ddl.table as keyof typeof TABLES;
      expect(ddl.columns).toEqual(TABLES[table].map((column) => [column.name, SQL[column.kind]!]));
      expect(ddl.designated).toBe("timestamp");
      expect(ddl.keys).toEqual([...DEDUP_KEYS[table]]);
      expect(ddl.keys[0]).toBe("timestamp"); // QuestDB requires the designated timestamp among the keys
      for (const key of ddl.keys) expect(ddl.columns.map(([name]) => name)).toContain(key);
    }
    expect(created.find((ddl) => ddl.table === "trades")!.keys).toEqual(["timestamp", "exchange", "symbol", "id"]);
    expect(logs.some((line) => line.includes("tables ready"))).toBe(true);
  });

  test("a table QuestDB refuses to create is reported; rows still flow over ILP", async () => {
    ilp = await IlpServer.start();
    http = await FakeQuestDbHttp.start();
    http.onExec = (sql) =>
      sql.includes(" l2 ") ? { status: 400, body: { query: sql, error: "dedup key columns must be ...", position: 12 } } : undefined;
    const { sink, stats, logs } = await startSink({ ilpPort: ilp.port, httpPort: http.port });
    await sink.write([book(1)]);
    await sink.flush();
    await ilp.waitForRows(3, "l2");
    expect(http.queries).toHaveLength(TABLE_NAMES.length);
    expect(logs.some((line) => line.startsWith("warn:") && line.includes("could not create table l2") && line.includes("dedup key columns"))).toBe(true);
    expect(stats.errors).toBe(1);
  });

  test("HTTP unreachable: falls back to ILP auto-creation and says so", async () => {
    ilp = await IlpServer.start();
    const closedHttp = await IlpServer.reservePort(); // nothing listens there
    const { sink, stats, logs } = await startSink({ ilpPort: ilp.port, httpPort: closedHttp.port });
    await sink.write([trade(1)]);
    await sink.flush();
    await ilp.waitForRows(1, "trades");
    const warning = logs.find((line) => line.includes("HTTP endpoint"));
    expect(warning).toContain(`http://127.0.0.1:${closedHttp.port} is unreachable`);
    expect(warning).toContain("auto-creates them");
    expect(warning).toContain("without DEDUP keys");
    expect(stats.outageSince).toBe(0);
  });

  test("QuestDB down at start: tables are created when it comes up, before any row", async () => {
    ilp = await IlpServer.reservePort();
    http = await FakeQuestDbHttp.start();
    await http.stop();
    const { sink, stats } = await startSink({ ilpPort: ilp.port, httpPort: http.port, env: { QUESTDB_FLUSH_INTERVAL_MS: "30" } });
    await sink.write([trade(1)]);
    await ilp.waitFor(() => stats.outageSince > 0, 3000, "the outage");
    await http.restart();
    await ilp.restart();
    let queriesAtFirstRow = -1;
    await ilp.waitFor(() => {
      if (ilp!.rows.length > 0 && queriesAtFirstRow < 0) queriesAtFirstRow = http!.queries.length;
      return ilp!.rows.length > 0 || undefined;
    }, 5000, "the row");
    expect(queriesAtFirstRow).toBe(TABLE_NAMES.length);
  });
});

describe("QDB_CLIENT_CONF", () => {
  test("http:: sends ILP over HTTP with stdlib_http, authenticates, and never logs the password", async () => {
    http = await FakeQuestDbHttp.start();
    const password = "s3cr3t-Pa55";
    const { sink, stats, logs } = await startSink({
      clientConf: `http::addr=127.0.0.1:${http.port};username=ingest;password=${password};auto_flush_rows=2;`,
      env: { QUESTDB_CREATE_TABLES: "true" },
    });
    expect(sink.settings.kind).toBe("http");
    expect(sink.settings.senderOptions.stdlib_http).toBe(true);
    expect(sink.settings.flushRows).toBe(2); // auto_flush_rows of the configuration string
    await sink.write([trade(1), trade(2), bbo(3)]);
    await sink.flush();
    expect(http.rows.map((row) => row.table)).toEqual(["trades", "trades", "bbo"]);
    expect(http.writeRequests).toBe(2);
    expect(stats.rowsWritten).toBe(3);
    const expectedAuth = `Basic ${Buffer.from(`ingest:${password}`).toString("base64")}`;
    const writes = http.requests.filter((request) => request.path === "/write");
    expect(writes.every((request) => request.headers.get("authorization") === expectedAuth)).toBe(true);
    expect(writes.every((request) => request.query.get("precision") === "n")).toBe(true);
    // DDL goes to the same endpoint with the same credentials, before the first write.
    const exec = http.requests.filter((request) => request.path === "/exec");
    expect(exec).toHaveLength(TABLE_NAMES.length);
    expect(exec.every((request) => request.headers.get("authorization") === expectedAuth)).toBe(true);
    expect(http.requests.findIndex((request) => request.path === "/write")).toBe(TABLE_NAMES.length);
    await sink.close();
    current = undefined;
    expect(logs.join("\n")).not.toContain(password);
    expect(logs.join("\n")).not.toContain(Buffer.from(`ingest:${password}`).toString("base64"));
  });

  test.each([
    ["the server's CA from tls_ca", `tls_ca=${join(import.meta.dir, "support", "tls", "localhost-cert.pem")};`],
    ["tls_verify=unsafe_off", "tls_verify=unsafe_off;"],
  ])("https:: with %s: tables created and rows sent over TLS", async (_name, confTls) => {
    const tlsDir = join(import.meta.dir, "support", "tls");
    http = await FakeQuestDbHttp.start(0, {
      cert: readFileSync(join(tlsDir, "localhost-cert.pem"), "utf8"),
      key: readFileSync(join(tlsDir, "localhost-key.pem"), "utf8"),
    });
    const { sink, stats } = await startSink({
      clientConf: `https::addr=127.0.0.1:${http.port};${confTls}auto_flush_rows=2;`,
      env: { QUESTDB_CREATE_TABLES: "true" },
    });
    await sink.write([trade(1), trade(2), bbo(3)]);
    await sink.flush();
    expect(http.queries).toHaveLength(TABLE_NAMES.length);
    expect(http.rows.map((row) => row.table)).toEqual(["trades", "trades", "bbo"]);
    expect(stats.errors).toBe(0);
  });

  test("http:: QuestDB down, then up: the batch is retried after the outage", async () => {
    const reserved = await IlpServer.reservePort();
    const { sink, stats, logs } = await startSink({
      clientConf: `http::addr=127.0.0.1:${reserved.port};retry_timeout=0;`,
      env: { QUESTDB_FLUSH_INTERVAL_MS: "30" },
    });
    await sink.write([trade(1), trade(2)]);
    await reserved.waitFor(() => stats.outageSince > 0, 3000, "the outage");
    expect(stats.bufferedRows).toBe(2);
    http = await FakeQuestDbHttp.start(reserved.port);
    await reserved.waitFor(() => http!.rows.length === 2 || undefined, 5000, "the rows over HTTP");
    await reserved.waitFor(() => stats.outageSince === 0, 3000, "the outage to end");
    expect(stats.rowsWritten).toBe(2);
    expect(stats.outageSecondsTotal).toBeGreaterThan(0);
    expect(logs.some((line) => line.includes("reachable again"))).toBe(true);
  });

  test("http:: a batch QuestDB rejects (400) is dropped and reported; later batches are delivered", async () => {
    http = await FakeQuestDbHttp.start();
    let calls = 0;
    http.onWrite = () => (++calls === 1 ? { status: 400, body: '{"code":"invalid","message":"cast error"}' } : undefined);
    const { sink, stats, logs } = await startSink({ clientConf: `http::addr=127.0.0.1:${http.port};retry_timeout=0;` });
    await sink.write([trade(1), trade(2)]);
    await sink.flush();
    await sink.write([trade(3)]);
    await sink.flush();
    expect(http.rows.map((row) => (row.fields.id as { value: string }).value)).toEqual(["t3"]);
    expect(stats.droppedRows).toBe(2);
    expect(stats.rowsWritten).toBe(1);
    expect(stats.outageSince).toBe(0);
    expect(logs.some((line) => line.startsWith("error:") && line.includes("rejected 2 row(s)") && line.includes("statusCode=400"))).toBe(true);
  });

  test("tcp:: with its own address is used instead of QUESTDB_HOST/QUESTDB_ILP_PORT", async () => {
    ilp = await IlpServer.start();
    const { sink } = await startSink({ ilpPort: 1, clientConf: `tcp::addr=127.0.0.1:${ilp.port};` });
    expect(sink.settings.kind).toBe("tcp");
    await sink.write([trade(1)]);
    await sink.flush();
    await ilp.waitForRows(1, "trades");
  });

  test("an invalid configuration string is a user error that does not echo secrets", () => {
    const attempt = (conf: string) => () => createTestSink({ clientConf: conf });
    expect(attempt("nonsense")).toThrow(UserError);
    expect(attempt("udp::addr=x")).toThrow(/invalid QDB_CLIENT_CONF/);
    try {
      createTestSink({ clientConf: "http::addr=h:9000;password=top\u0001secret;" });
      throw new Error("expected a UserError");
    } catch (error) {
      expect(error).toBeInstanceOf(UserError);
      expect((error as Error).message).not.toContain("top\u0001secret");
    }
    expect(() => createTestSink({ clientConf: "tcp::addr=h:9009;username=u;" })).toThrow(UserError);
  });

  test("sink settings from the environment are validated", () => {
    expect(() => createTestSink({ env: { QUESTDB_FLUSH_ROWS: "0" } })).toThrow("invalid QUESTDB_FLUSH_ROWS '0'");
    expect(() => createTestSink({ env: { QUESTDB_FLUSH_INTERVAL_MS: "soon" } })).toThrow(UserError);
    expect(() => createTestSink({ env: { QUESTDB_CREATE_TABLES: "maybe" } })).toThrow("accepted: true or false");
    const { sink } = createTestSink({ env: { QUESTDB_FLUSH_ROWS: "123", QUESTDB_RESEND_WINDOW_MS: "0" } });
    expect(sink.settings.flushRows).toBe(123);
    expect(sink.settings.resendWindowMs).toBe(0);
  });
});

/**
 * QuestDbSink and QuestDB's HTTP endpoint: the DDL sent at start (to a fake /exec), rows held until it
 * has run when HTTP answers late (retried with backoff), and QDB_CLIENT_CONF selecting ILP over HTTP
 * (stdlib_http set for Bun, authentication, outage and refused lines), with no secret ever logged.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UserError } from "../src/core/errors.ts";
import { DEDUP_KEYS } from "../src/sinks/questdb/schema.ts";
import { TABLES, TABLE_NAMES } from "../src/core/tables.ts";
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
    // Each table: created, then its columns checked; all of it before the first row.
    expect(queriesWhenFirstRowArrived).toBe(2 * TABLE_NAMES.length);
    expect(http.queries.filter((sql) => sql.startsWith("SELECT * FROM table_columns("))).toHaveLength(TABLE_NAMES.length);

    const created = http.queries.filter((sql) => sql.startsWith("CREATE")).map(parseCreateTable);
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
    expect(http.queries.filter((sql) => sql.startsWith("CREATE"))).toHaveLength(TABLE_NAMES.length);
    expect(logs.some((line) => line.startsWith("warn:") && line.includes("could not create table l2") && line.includes("dedup key columns"))).toBe(true);
    expect(stats.errors).toBe(1);
  });

  test("HTTP not answering yet (QuestDB starting): no row is sent until the DDL ran, which is retried; the tables get their DEDUP keys", async () => {
    ilp = await IlpServer.start();
    const reserved = await IlpServer.reservePort(); // QuestDB's HTTP port, not up yet
    const { sink, stats, logs } = await startSink({ ilpPort: ilp.port, httpPort: reserved.port, env: { QUESTDB_FLUSH_INTERVAL_MS: "20" } });
    await sink.write([trade(1), bbo(2)]);
    await sink.flush(); // returns: rows are held
    await Bun.sleep(150);
    // ILP is up, but a row now would make QuestDB create the table without DEDUP keys, for good.
    expect(ilp.countRows()).toBe(0);
    expect(stats.bufferedRows).toBe(2);
    expect(stats.outageSince).toBeGreaterThan(0);
    const warning = logs.find((line) => line.includes(`http://127.0.0.1:${reserved.port} does not answer`));
    expect(warning).toContain("no row is sent until they are");
    expect(warning).toContain("QUESTDB_CREATE_TABLES=false");
    http = await FakeQuestDbHttp.start(reserved.port, undefined, ilp.catalog);
    await ilp.waitForRows(2);
    expect(ilp.catalog.tables.get("trades")!.dedupKeys).toEqual([...DEDUP_KEYS.trades]);
    expect(ilp.catalog.tables.get("bbo")!.dedupKeys).toEqual([...DEDUP_KEYS.bbo]);
    await ilp.waitFor(() => stats.outageSince === 0, 3000, "the outage to end");
    expect(stats.droppedRows).toBe(0);
  });

  test("QUESTDB_CREATE_TABLES=false: no SQL at all, rows go at once (ILP creates the tables)", async () => {
    ilp = await IlpServer.start();
    http = await FakeQuestDbHttp.start(0, undefined, ilp.catalog);
    const { sink } = await startSink({ ilpPort: ilp.port, httpPort: http.port, env: { QUESTDB_CREATE_TABLES: "false" } });
    await sink.write([trade(1)]);
    await sink.flush();
    await ilp.waitForRows(1, "trades");
    expect(http.queries).toEqual([]);
    expect(ilp.catalog.tables.get("trades")!.dedupKeys).toBeUndefined();
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
    expect(queriesAtFirstRow).toBe(2 * TABLE_NAMES.length);
  });
});

describe("docker-compose.yml", () => {
  const compose = Bun.YAML.parse(readFileSync(join(import.meta.dir, "..", "docker-compose.yml"), "utf8")) as {
    services: Record<string, { image?: string; environment?: Record<string, string>; depends_on?: Record<string, { condition: string }>; healthcheck?: { test: string[] } }>;
  };
  const [questdbName, questdb] = Object.entries(compose.services).find(([, service]) => service.image?.startsWith("questdb/questdb:"))!;

  test("collectors writing to QuestDB start once it is healthy, and healthy means its REST port answers SQL", async () => {
    for (const service of Object.values(compose.services)) {
      if (service.environment?.SINK === "questdb") expect(service.depends_on?.[questdbName]?.condition).toBe("service_healthy");
    }
    const [kind, ...command] = questdb.healthcheck!.test;
    expect(kind).toBe("CMD");
    http = await FakeQuestDbHttp.start();
    // The same command, pointed at the fake's port (compose passes it as is: no $ to interpolate).
    // (Not spawnSync: the fake answers on this process's event loop.)
    const check = (port: number) =>
      Bun.spawn(command.map((part) => part.replace("/127.0.0.1/9000", `/127.0.0.1/${port}`)), { stderr: "ignore" }).exited;
    http.onExec = (sql) => (sql === "SELECT 1" ? { status: 200, body: { query: sql, columns: [], dataset: [[1]], count: 1 } } : undefined);
    expect(await check(http.port)).toBe(0);
    expect(http.queries).toContain("SELECT 1");
    http.onExec = () => ({ status: 500, body: { error: "starting" } });
    expect(await check(http.port)).not.toBe(0);
    const closed = await IlpServer.reservePort();
    expect(await check(closed.port)).not.toBe(0);
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
    expect(exec).toHaveLength(2 * TABLE_NAMES.length);
    expect(exec.every((request) => request.headers.get("authorization") === expectedAuth)).toBe(true);
    expect(http.requests.findIndex((request) => request.path === "/write")).toBe(2 * TABLE_NAMES.length);
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
    expect(http.queries).toHaveLength(2 * TABLE_NAMES.length);
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

  test("http:: a table whose column QuestDB cannot cast to: its rows are set aside in refused.ilp, every other row is stored", async () => {
    http = await FakeQuestDbHttp.start();
    // Created by someone else with `id` as LONG: QuestDB answers 400 "cast error" to any batch holding a trade.
    http.catalog.createTable("trades", { exchange: "SYMBOL", symbol: "SYMBOL", timestamp: "TIMESTAMP", id: "LONG" });
    const directory = mkdtempSync(join(tmpdir(), "xtrader-questdb-"));
    try {
      const { sink, stats, logs } = await startSink({ clientConf: `http::addr=127.0.0.1:${http.port};retry_timeout=0;`, directory });
      await sink.write([bbo(1), trade(2), book(3), trade(4), bbo(5)]);
      await sink.flush();
      await sink.write([trade(6), bbo(7)]);
      await sink.flush();
      expect(http.catalog.stored("bbo")).toHaveLength(3);
      expect(http.catalog.stored("l2")).toHaveLength(3);
      expect(http.catalog.stored("trades")).toHaveLength(0);
      expect(stats.refusedRows).toBe(3);
      expect(stats.droppedRows).toBe(0); // kept in the file, not lost
      const refused = readFileSync(join(directory, "questdb", "refused.ilp"), "utf8");
      expect(refused.split("\n").filter(Boolean).map((line) => line.split(",")[0])).toEqual(["trades", "trades", "trades"]);
      const error = logs.find((line) => line.startsWith("error:") && line.includes("refuses the rows of table trades"));
      // The client drops QuestDB's message; its HTTP endpoint, when the DDL is on, names the column (questdb-refused.test.ts).
      expect(error).toContain("statusCode=400");
      expect(error).toContain("(2 so far;"); // the third came later, straight to the file
      expect(error).toContain(join(directory, "questdb", "refused.ilp"));
      expect(stats.outageSince).toBe(0);
    } finally {
      await current?.sink.close();
      current = undefined;
      rmSync(directory, { recursive: true, force: true });
    }
  });

  test("http:: a proxy that refuses large requests (413): every row is stored in smaller pieces, none set aside", async () => {
    http = await FakeQuestDbHttp.start();
    // nginx's client_max_body_size in front of QuestDB: the refusal is about the request's size, not a line.
    http.maxWriteBytes = 1500;
    const directory = mkdtempSync(join(tmpdir(), "xtrader-questdb-"));
    try {
      const { sink, stats } = await startSink({ clientConf: `http::addr=127.0.0.1:${http.port};retry_timeout=0;`, directory });
      await sink.write(Array.from({ length: 40 }, (_, i) => trade(i)));
      await sink.flush();
      expect(http.catalog.stored("trades")).toHaveLength(40);
      expect(stats.refusedRows).toBe(0);
      expect(stats.droppedRows).toBe(0);
      expect(() => readFileSync(join(directory, "questdb", "refused.ilp"))).toThrow();
    } finally {
      await current?.sink.close();
      current = undefined;
      rmSync(directory, { recursive: true, force: true });
    }
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

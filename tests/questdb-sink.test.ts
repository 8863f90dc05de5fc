/**
 * QuestDbSink over ILP/TCP against the strict local ILP server: the rows of each stream, flushing by
 * row count, by timer and on shutdown, escaping, and the outage behaviour (down at start, connection
 * dropped mid-run, restart, buffer bound, shutdown while down) with the stats it reports.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { generateKeyPairSync } from "node:crypto";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { UserError } from "../src/core/errors.ts";
import type { MarketEvent, Trade } from "../src/core/events.ts";
import { Outbox } from "../src/sinks/questdb/outbox.ts";
import { IlpServer, type IlpRow } from "./support/ilp-server.ts";
import { HOSTILE_STRINGS, T0, bbo, book, funding, gap, liquidation, trade } from "./support/questdb-events.ts";
import { resolveSettings } from "../src/sinks/questdb/settings.ts";
import { createTestSink, memoryLogger, type TestSink, type TestSinkOptions } from "./support/questdb-harness.ts";
import { StalledServer } from "./support/questdb-stalled-server.ts";
import { waitUntil } from "./support/fake-venue.ts";

let server: IlpServer | undefined;
let current: TestSink | undefined;
/** Set by the one scenario in which the sink legitimately gives a connection up in the middle of a line. */
let allowAbandonedLines = false;
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);

beforeEach(() => {
  allowAbandonedLines = false;
  unhandled.length = 0;
  process.on("unhandledRejection", onUnhandled);
});

afterEach(async () => {
  await current?.sink.close();
  current = undefined;
  await server?.stop();
  server?.assertNoErrors();
  if (!allowAbandonedLines) expect(server?.abandonedPartialLines ?? 0).toBe(0);
  server = undefined;
  process.off("unhandledRejection", onUnhandled);
  // The process must never see a failure of the sink as an unhandled rejection.
  expect(unhandled).toEqual([]);
});

async function startSink(options: TestSinkOptions): Promise<TestSink> {
  current = createTestSink(options);
  await current.sink.start();
  return current;
}

function ids(rows: readonly IlpRow[]): string[] {
  return rows.map((row) => (row.fields.id as { value: string }).value);
}

/** Sockets this process has open (file descriptors that are sockets). */
function openSockets(): number {
  return readdirSync("/proc/self/fd").filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`).startsWith("socket:");
    } catch {
      return false; // closed meanwhile
    }
  }).length;
}

const trades = (from: number, count: number): Trade[] => Array.from({ length: count }, (_, i) => trade(from + i));

describe("rows of each stream", () => {
  test("every stream lands in its table with its symbols, fields and timestamps", async () => {
    server = await IlpServer.start();
    const { sink, stats } = await startSink({ ilpPort: server.port });
    const events: MarketEvent[] = [
      trade(1, { id: "884412", side: "buy", price: 50_000.5, amount: 0.25 }),
      book(2, { isSnapshot: true, sequence: 77, bids: [100.5, 2], asks: [101, 3.5, 102, 0] }),
      bbo(3),
      funding(4, { indexPrice: undefined }),
      liquidation(5, { id: "", side: "sell", price: 3000, amount: 12, amountUnit: "quote", contractValue: 10 }),
      gap(6, { stream: "L2", reason: "sequence", detail: "expected 5, got 7" }),
    ];
    await sink.write(events);
    await sink.flush();
    await server.waitForRows(8);
    expect(server.countsByTable()).toEqual({ trades: 1, l2: 3, bbo: 1, funding: 1, liquidations: 1, gaps: 1 });

    const [tradeRow] = server.rowsIn("trades");
    expect(tradeRow!.symbols).toEqual({ exchange: "BINANCE_FUTURES", symbol: "BTCUSDT", side: "buy" });
    expect(tradeRow!.fields).toEqual({
      local_timestamp: { kind: "timestamp", value: BigInt(T0 + 1 + 500) },
      id: { kind: "string", value: "884412" },
      price: { kind: "double", value: 50_000.5 },
      amount: { kind: "double", value: 0.25 },
      base_amount: { kind: "double", value: 0.25 },
    });
    expect(tradeRow!.timestamp).toBe(BigInt(T0 + 1) * 1000n);

    const l2 = server.rowsIn("l2");
    expect(l2.map((row) => [row.symbols.side, (row.fields.price as { value: number }).value])).toEqual([
      ["bid", 100.5],
      ["ask", 101],
      ["ask", 102],
    ]);
    for (const row of l2) {
      expect(row.symbols.symbol).toBe("BTC-USDT-SWAP");
      expect(row.fields.is_snapshot).toEqual({ kind: "boolean", value: true });
      expect(row.fields.sequence).toEqual({ kind: "long", value: 77n });
      expect(row.timestamp).toBe(BigInt(T0 + 2) * 1000n);
    }
    expect(l2[0]!.fields.base_amount).toEqual({ kind: "double", value: 2 * 0.01 });

    const [bboRow] = server.rowsIn("bbo");
    expect(bboRow!.symbols).toEqual({ exchange: "BINANCE_FUTURES", symbol: "ETHUSDT" });
    expect(bboRow!.fields.ask_amount).toEqual({ kind: "double", value: 7.25 });

    const [fundingRow] = server.rowsIn("funding");
    expect(fundingRow!.fields.index_price).toBeUndefined(); // a venue that does not send it: NULL
    expect(fundingRow!.fields.funding_rate).toEqual({ kind: "double", value: 0.0001 });
    expect(fundingRow!.fields.next_funding_time).toEqual({ kind: "timestamp", value: BigInt(T0 + 8 * 3600 * 1_000_000) });

    const [liquidationRow] = server.rowsIn("liquidations");
    expect(liquidationRow!.fields.id).toEqual({ kind: "string", value: "" });
    expect(liquidationRow!.fields.base_amount).toEqual({ kind: "double", value: (12 * 10) / 3000 });

    const [gapRow] = server.rowsIn("gaps");
    expect(gapRow!.symbols).toEqual({ exchange: "OKX_SWAP", symbol: "BTC-USDT-SWAP", stream: "L2", reason: "sequence" });
    expect(gapRow!.fields.detail).toEqual({ kind: "string", value: "expected 5, got 7" });

    expect(stats.rowsWritten).toBe(8);
    expect(stats.bufferedRows).toBe(0);
    expect(stats.flushes).toBe(1);
    expect(stats.errors).toBe(0);
  });

  test("hostile strings reach the server intact; NaN and Infinity become NULL", async () => {
    server = await IlpServer.start();
    const { sink } = await startSink({ ilpPort: server.port });
    const events = HOSTILE_STRINGS.filter((text) => text !== "" && !/[\ud800-\udfff]/.test(text)).map((text, i) =>
      trade(i, { id: text, symbol: text, price: i % 2 === 0 ? Number.NaN : Number.POSITIVE_INFINITY }),
    );
    await sink.write(events);
    await sink.write([gap(99, { detail: '"quoted", \\ back\nslash = ' })]);
    await sink.flush();
    const rows = await server.waitForRows(events.length, "trades");
    expect(rows.map((row) => row.symbols.symbol)).toEqual(events.map((event) => event.symbol));
    expect(ids(rows)).toEqual(events.map((event) => event.id));
    for (const row of rows) {
      expect(row.fields.price).toBeUndefined();
      expect(row.fields.amount).toEqual(row.fields.base_amount!); // base sizing: base = amount
    }
    expect(sink.nullifiedValues).toBe(events.length);
    const [gapRow] = await server.waitForRows(1, "gaps");
    expect(gapRow!.fields.detail).toEqual({ kind: "string", value: '"quoted", \\ back\nslash = ' });
  });

  test("an event ILP cannot carry is dropped whole, counted and logged; the rest is delivered", async () => {
    server = await IlpServer.start();
    const { sink, stats, logs } = await startSink({ ilpPort: server.port });
    await sink.write([trade(1), trade(2, { timestamp: 1.5 }), book(3, { localTimestamp: Number.NaN }), trade(4)]);
    await sink.flush();
    expect(ids(await server.waitForRows(2, "trades"))).toEqual(["t1", "t4"]);
    expect(sink.rejectedEvents).toBe(2);
    expect(stats.droppedRows).toBe(1 + 3);
    expect(stats.errors).toBe(2);
    expect(logs.some((line) => line.startsWith("warn:") && line.includes("cannot carry"))).toBe(true);
  });
});

describe("flushing", () => {
  test("by row count, without a flush call", async () => {
    server = await IlpServer.start();
    const { sink } = await startSink({ ilpPort: server.port, env: { QUESTDB_FLUSH_ROWS: "5", QUESTDB_FLUSH_INTERVAL_MS: "3600000" } });
    await sink.write(trades(0, 4));
    await sink.write(trades(4, 1));
    expect(ids(await server.waitForRows(5, "trades"))).toEqual(["t0", "t1", "t2", "t3", "t4"]);
  });

  test("on the timer for a quiet stream that never reaches the row count", async () => {
    server = await IlpServer.start();
    const { sink, stats } = await startSink({ ilpPort: server.port, env: { QUESTDB_FLUSH_ROWS: "100000", QUESTDB_FLUSH_INTERVAL_MS: "50" } });
    await sink.write([bbo(1)]);
    expect(stats.bufferedRows).toBe(1);
    await server.waitForRows(1, "bbo");
    await sink.write([bbo(2)]);
    await server.waitForRows(2, "bbo");
    expect(stats.rowsWritten).toBe(2);
    expect(stats.flushes).toBe(2);
  });

  test("on shutdown, whatever the thresholds", async () => {
    server = await IlpServer.start();
    const { sink, stats } = await startSink({ ilpPort: server.port, env: { QUESTDB_FLUSH_ROWS: "100000", QUESTDB_FLUSH_INTERVAL_MS: "3600000" } });
    await sink.write(trades(0, 3));
    await sink.close();
    current = undefined;
    expect(ids(await server.waitForRows(3, "trades"))).toEqual(["t0", "t1", "t2"]);
    expect(stats.rowsWritten).toBe(3);
    expect(stats.droppedRows).toBe(0);
  });
});

describe("QuestDB away", () => {
  test("down at start: rows are buffered, the outage is reported, and all arrive once it is up", async () => {
    server = await IlpServer.reservePort();
    const { sink, stats, logs } = await startSink({ ilpPort: server.port, env: { QUESTDB_FLUSH_INTERVAL_MS: "50" } });
    await sink.write(trades(0, 50));
    await sink.flush(); // returns: QuestDB is unreachable, rows stay buffered
    await server.waitFor(() => stats.outageSince > 0, 3000, "the outage to be noticed");
    expect(stats.bufferedRows).toBe(50);
    expect(stats.rowsWritten).toBe(0);
    await sink.write(trades(50, 25));
    await Bun.sleep(100);
    expect(stats.errors).toBeGreaterThan(0);
    expect(stats.outageSeconds()).toBeGreaterThan(0);
    expect(logs.filter((line) => line.includes("is unreachable"))).toHaveLength(1);

    await server.restart();
    const rows = await server.waitForRows(75, "trades");
    expect(ids(rows)).toEqual(trades(0, 75).map((event) => event.id)); // in order, each once
    await server.waitFor(() => stats.outageSince === 0, 3000, "the outage to end");
    expect(stats.outageSecondsTotal).toBeGreaterThan(0);
    expect(stats.rowsWritten).toBe(75);
    expect(stats.bufferedRows).toBe(0);
    expect(stats.droppedRows).toBe(0);
    expect(logs.some((line) => line.includes("reachable again"))).toBe(true);
  });

  // Plain TCP goes through Bun's own socket; QUESTDB_TCP_NATIVE=false (and TLS or authentication) through
  // the client's node:net socket. Both must survive the same faults.
  for (const [mode, socket] of [["close", "native"], ["reset", "native"], ["close", "client"], ["reset", "client"]] as const) {
    test(`connection dropped mid-run (${mode}, ${socket} socket): no row is lost, re-sent rows are only those of the resend window`, async () => {
      server = await IlpServer.start();
      const { sink, stats, logs } = await startSink({
        ilpPort: server.port,
        env: { QUESTDB_FLUSH_ROWS: "20", QUESTDB_TCP_NATIVE: String(socket === "native") },
      });
      let next = 0;
      for (let round = 0; round < 10; round++) {
        await sink.write(trades(next, 30));
        next += 30;
        if (round === 4) {
          await server.waitForRows(100, "trades");
          expect(server.dropConnections(mode)).toBe(1);
        }
        await Bun.sleep(5);
      }
      await sink.flush();
      await server.waitFor(() => new Set(ids(server!.rowsIn("trades"))).size === next || undefined, 5000, "every row");
      const received = ids(server.rowsIn("trades"));
      expect(new Set(received)).toEqual(new Set(trades(0, next).map((event) => event.id)));
      // Duplicates come only from re-sending what was sent before the drop (DEDUP removes them in QuestDB).
      const duplicates = received.length - next;
      expect(duplicates).toBeGreaterThan(0);
      expect(duplicates).toBeLessThanOrEqual(150);
      expect(stats.rowsWritten).toBe(next); // re-sent rows are not counted twice
      expect(stats.droppedRows).toBe(0);
      expect(server.connectionsAccepted).toBe(2);
      expect(logs.some((line) => line.startsWith("warn:") && line.includes("lost"))).toBe(true);
    });
  }

  test("QuestDB restarting mid-run: rows written while it is down arrive after it is back", async () => {
    server = await IlpServer.start();
    const { sink, stats } = await startSink({ ilpPort: server.port, env: { QUESTDB_FLUSH_INTERVAL_MS: "30" } });
    await sink.write(trades(0, 10));
    await server.waitForRows(10, "trades");
    await server.stop();
    await sink.write(trades(10, 10));
    await server.waitFor(() => stats.outageSince > 0, 3000, "the outage");
    await sink.write(trades(20, 10));
    await server.restart();
    await server.waitFor(() => new Set(ids(server!.rowsIn("trades"))).size === 30 || undefined, 5000, "every row");
    expect(new Set(ids(server.rowsIn("trades")))).toEqual(new Set(trades(0, 30).map((event) => event.id)));
    expect(stats.rowsWritten).toBe(30);
    await server.waitFor(() => stats.outageSince === 0, 3000, "the outage to end");
  });

  test("at the memory bound write() holds the pipeline instead of dropping, and resumes when QuestDB is back", async () => {
    server = await IlpServer.reservePort();
    const bufferMaxBytes = 16 * 1024;
    const { sink, stats, logs } = await startSink({ ilpPort: server.port, bufferMaxBytes, env: { QUESTDB_FLUSH_INTERVAL_MS: "30" } });
    await server.waitFor(() => stats.outageSince > 0, 3000, "the outage");
    const written = trades(0, 400); // ~150 bytes each: about 100 fit
    let sent = 0;
    let held: Promise<void> | undefined;
    while (sent < written.length) {
      const batch = written.slice(sent, sent + 20);
      sent += batch.length;
      const result = sink.write(batch);
      const outcome = await Promise.race([Promise.resolve(result).then(() => "done"), Bun.sleep(300).then(() => "held")]);
      if (outcome === "held") {
        held = Promise.resolve(result);
        break;
      }
    }
    expect(held).toBeDefined();
    expect(sent).toBeLessThan(written.length);
    expect(stats.droppedRows).toBe(0);
    expect(stats.bufferedRows).toBe(sent);
    expect(logs.filter((line) => line.includes("holding the pipeline"))).toHaveLength(1);

    await server.restart();
    await held;
    await sink.write(written.slice(sent));
    await sink.flush();
    const rows = await server.waitForRows(written.length, "trades");
    // Everything arrives, oldest first: nothing was lost while the sink held the pipeline.
    expect(ids(rows).slice(0, written.length)).toEqual(written.map((event) => event.id));
    expect(stats.droppedRows).toBe(0);
    expect(server.rowsIn("gaps")).toHaveLength(0);
  });

  test("shutdown while QuestDB is down ends within the close timeout and reports the undelivered rows", async () => {
    server = await IlpServer.reservePort();
    const { sink, stats, logs } = await startSink({ ilpPort: server.port, env: { QUESTDB_CLOSE_TIMEOUT_MS: "300" } });
    await sink.write(trades(0, 7));
    // No output directory to keep them in: lost, and the report says which table lost how many.
    expect(await sink.close()).toEqual({ lostRows: { trades: 7 }, keptRows: 0, keptWhere: undefined });
    current = undefined;
    expect(stats.droppedRows).toBe(7);
    expect(stats.bufferedRows).toBe(0);
    expect(stats.outageSince).toBe(0);
    expect(stats.outageSecondsTotal).toBeGreaterThan(0);
    expect(logs.some((line) => line.startsWith("error:") && line.includes("7 buffered row(s) were not delivered"))).toBe(true);
  });

  test("a server that closes every connection at once gets backoff, not a reconnect storm; rows wait", async () => {
    server = await IlpServer.start();
    server.closeOnAccept = true;
    const { sink, stats } = await startSink({ ilpPort: server.port, env: { QUESTDB_FLUSH_INTERVAL_MS: "20" } });
    await sink.write(trades(0, 5));
    await Bun.sleep(300);
    // Backoff from 20 ms doubling to 200 ms allows a handful of attempts; a loop would make thousands.
    expect(server.connectionsAccepted).toBeGreaterThan(1);
    expect(server.connectionsAccepted).toBeLessThan(50);
    expect(stats.droppedRows).toBe(0);
    server.closeOnAccept = false;
    await server.waitFor(() => new Set(ids(server!.rowsIn("trades"))).size === 5 || undefined, 5000, "the rows");
    expect(stats.rowsWritten).toBe(5);
  });

  for (const socket of ["native", "client"] as const) test(`a QuestDB that stops reading (${socket} socket): the stalled write times out, the connection is replaced, nothing is lost`, async () => {
    allowAbandonedLines = true; // a connection given up after a stalled write may end mid-line
    const stalled = await StalledServer.start();
    try {
      const { sink, stats, logs } = await startSink({
        ilpPort: stalled.port,
        env: { QUESTDB_SEND_TIMEOUT_MS: "1000", QUESTDB_FLUSH_ROWS: "1000", QUESTDB_TCP_NATIVE: String(socket === "native") },
      });
      const written = trades(0, 30_000); // ~5 MB: more than the kernel buffers of a connection hold
      for (let i = 0; i < written.length; i += 1000) await sink.write(written.slice(i, i + 1000));
      await stalled.waitForLog(logs, "send timed out");
      expect(stats.droppedRows).toBe(0);
      await stalled.stop();
      server = await IlpServer.start({ port: stalled.port });
      await server.waitFor(() => new Set(ids(server!.rowsIn("trades"))).size === written.length || undefined, 10_000, "every row");
      expect(stats.rowsWritten).toBe(written.length);
      expect(stats.droppedRows).toBe(0);
    } finally {
      await stalled.stop();
    }
  });

  for (const socket of ["native", "client"] as const) test(`a QuestDB that keeps stalling (${socket} socket): every connection given up is closed, no socket piles up`, async () => {
    allowAbandonedLines = true;
    const stalled = await StalledServer.start();
    try {
      const before = openSockets();
      const { sink, stats } = await startSink({
        ilpPort: stalled.port,
        env: { QUESTDB_SEND_TIMEOUT_MS: "150", QUESTDB_RECONNECT_MIN_MS: "10", QUESTDB_RECONNECT_MAX_MS: "20", QUESTDB_TCP_NATIVE: String(socket === "native") },
      });
      const written = trades(0, 30_000); // more than the kernel buffers of a connection hold
      for (let i = 0; i < written.length; i += 1000) await sink.write(written.slice(i, i + 1000));
      await stalled.waitFor(() => stalled.connectionsAccepted >= 6, 10_000);
      // The stalled server holds its ends open; ours must be gone except the current one (and the
      // server's accepted ends, which live in this process too: at most one per accepted connection).
      const ours = openSockets() - before - stalled.connectionsAccepted;
      expect(ours).toBeLessThanOrEqual(2);
      expect(stats.droppedRows).toBe(0);
    } finally {
      await stalled.stop();
    }
  });

  test("QuestDB connected but not keeping up: write() waits (backpressure) until the connection gives", async () => {
    const stalled = await StalledServer.start();
    try {
      // Bound 64 MiB: write() holds once 16 MiB wait unsent and lets go below 8 MiB, more than the
      // few MiB the kernel buffers of a stalled connection can absorb.
      const { sink, stats } = await startSink({ ilpPort: stalled.port, bufferMaxBytes: 64 << 20, env: { QUESTDB_FLUSH_ROWS: "1000", QUESTDB_CLOSE_TIMEOUT_MS: "100" } });
      await stalled.waitFor(() => sink.connected);
      let pending: Promise<void> | undefined;
      let next = 0;
      while (pending === undefined && next < 400_000) {
        pending = sink.write(trades(next, 1000)) ?? undefined;
        next += 1000;
      }
      expect(pending).toBeInstanceOf(Promise);
      let released = false;
      void pending!.then(() => (released = true));
      await Bun.sleep(100);
      expect(released).toBe(false);
      await stalled.stop(); // the connection breaks: write() stops waiting, rows stay buffered
      await pending;
      expect(stats.droppedRows).toBe(0);
      expect(stats.bufferedRows).toBeGreaterThan(0);
    } finally {
      await stalled.stop();
    }
  });

  test("an idle connection closed by QuestDB is reopened without an error", async () => {
    server = await IlpServer.start();
    const { sink, stats } = await startSink({ ilpPort: server.port });
    await server.waitFor(() => server!.openConnections === 1 || undefined, 3000, "the connection");
    server.dropConnections("close");
    await server.waitFor(() => server!.connectionsAccepted === 2 || undefined, 3000, "the reconnection");
    await sink.write([trade(1)]);
    await sink.flush();
    await server.waitForRows(1, "trades");
    expect(stats.errors).toBe(0);
    expect(stats.outageSecondsTotal).toBe(0);
  });
});

describe("authenticated ILP/TCP (JWK challenge)", () => {
  /** A fresh P-256 key: `d` is what QDB_CLIENT_CONF's `token` holds, x/y are `token_x`/`token_y`. */
  function newKey() {
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const { d, x, y } = privateKey.export({ format: "jwk" });
    return { d: d!, x: x!, y: y!, publicKey };
  }

  test.each([
    ["username and token (the private key)", false, "true"],
    ["username, token, token_x and token_y", true, "true"],
    ["username and token, over the client's socket", false, "false"],
    ["username, token, token_x and token_y, over the client's socket", true, "false"],
  ])("%s: the challenge is signed and rows arrive", async (_name, withPublicKey, native) => {
    const key = newKey();
    server = await IlpServer.start({ auth: { keyId: "ingest", publicKey: key.publicKey } });
    const conf = `tcp::addr=127.0.0.1:${server.port};username=ingest;token=${key.d};${withPublicKey ? `token_x=${key.x};token_y=${key.y};` : ""}`;
    const { sink, stats, logs } = await startSink({ clientConf: conf, env: { QUESTDB_FLUSH_INTERVAL_MS: "50", QUESTDB_TCP_NATIVE: native } });
    await sink.write(trades(0, 20));
    expect(ids(await server.waitForRows(20, "trades"))).toEqual(trades(0, 20).map((row) => row.id));
    expect(server.authenticated).toBe(1);
    expect(server.authFailures).toEqual([]);
    expect(stats.errors).toBe(0);
    expect(logs.join("\n")).not.toContain(key.d);
  });

  test.each(["true", "false"])("a key the server does not know (native socket: %s): refused, counted, one error naming the key id (not the secret), rows kept", async (native) => {
    const key = newKey();
    server = await IlpServer.start({ auth: { keyId: "ingest", publicKey: newKey().publicKey } });
    const { sink, stats, logs } = await startSink({
      clientConf: `tcp::addr=127.0.0.1:${server.port};username=ingest;token=${key.d};`,
      env: { QUESTDB_FLUSH_INTERVAL_MS: "50", QUESTDB_TCP_NATIVE: native },
    });
    await sink.write(trades(0, 5));
    await server.waitFor(() => server!.authFailures.length >= 3 || undefined, 5000, "repeated refusals");
    await waitUntil(() => stats.errors >= 1, 5000, undefined, "the refusal counted");
    expect(server.rows).toEqual([]);
    expect(server.authFailures[0]).toContain("signature does not verify");
    // QuestDB disconnects after a bad signature, and sends nothing either way: refusals in a row are an
    // outage, logged once as an error naming the key id (never the secret).
    await waitUntil(() => stats.outageSince > 0, 5000, undefined, "the outage");
    expect(logs.filter((line) => line.startsWith("error") && line.includes("does not accept key id 'ingest'"))).toHaveLength(1);
    expect(stats.droppedRows).toBe(0);
    // The key is added on QuestDB's side: the rows kept meanwhile arrive, once each, and the outage ends.
    server.auth = { keyId: "ingest", publicKey: key.publicKey };
    expect(ids(await server.waitForRows(5, "trades"))).toEqual(["t0", "t1", "t2", "t3", "t4"]);
    await waitUntil(() => stats.outageSince === 0, 5000, undefined, "the end of the outage");
    expect(logs.join("\n")).not.toContain(key.d);
  });

  test("a key id the server does not know: refused after the signature, reported like a key it does not accept", async () => {
    const key = newKey();
    server = await IlpServer.start({ auth: { keyId: "someone-else", publicKey: key.publicKey } });
    const { sink, stats, logs } = await startSink({
      clientConf: `tcp::addr=127.0.0.1:${server.port};username=ingest;token=${key.d};`,
      env: { QUESTDB_FLUSH_INTERVAL_MS: "50" },
    });
    await sink.write(trades(0, 3));
    await waitUntil(() => stats.outageSince > 0, 5000, undefined, "the outage");
    expect(logs.filter((line) => line.startsWith("error") && line.includes("does not accept key id 'ingest'"))).toHaveLength(1);
    expect(server.authFailures[0]).toContain("unknown key id 'ingest'");
    expect(server.rows).toEqual([]);
    expect(stats.droppedRows).toBe(0);
  });

  test("authentication over TLS: rows arrive", async () => {
    const key = newKey();
    const tlsDir = join(import.meta.dir, "support", "tls");
    server = await IlpServer.start({
      auth: { keyId: "ingest", publicKey: key.publicKey },
      tls: { cert: readFileSync(join(tlsDir, "localhost-cert.pem"), "utf8"), key: readFileSync(join(tlsDir, "localhost-key.pem"), "utf8") },
    });
    const { sink, stats } = await startSink({
      clientConf: `tcps::addr=127.0.0.1:${server.port};tls_ca=${join(tlsDir, "localhost-cert.pem")};username=ingest;token=${key.d};`,
      env: { QUESTDB_FLUSH_INTERVAL_MS: "50" },
    });
    await sink.write(trades(0, 10));
    expect(ids(await server.waitForRows(10, "trades"))).toEqual(trades(0, 10).map((row) => row.id));
    expect(server.authenticated).toBe(1);
    expect(stats.errors).toBe(0);
  });

  test.each([
    ["a TLS server that never finishes the handshake", "tcps::addr=127.0.0.1:PORT;tls_verify=unsafe_off;"],
    ["an authenticated connection whose server never sends the challenge", "tcp::addr=127.0.0.1:PORT;username=ingest;token=TOKEN;"],
  ])("%s: the open times out and no socket is left behind", async (_name, confTemplate) => {
    // A listener that accepts and then says nothing.
    const silent = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {}, open() {} } });
    try {
      const before = openSockets();
      const { sink, stats } = await startSink({
        clientConf: confTemplate.replace("PORT", String(silent.port)).replace("TOKEN", newKey().d),
        env: { QUESTDB_FLUSH_INTERVAL_MS: "50", QUESTDB_CONNECT_TIMEOUT_MS: "100", QUESTDB_RECONNECT_MAX_MS: "50" },
      });
      await sink.write(trades(0, 2));
      await waitUntil(() => stats.errors >= 4, 10_000, undefined, "several timed-out opens");
      // Each attempt's socket is closed: this process holds no more than the one being tried.
      expect(openSockets() - before).toBeLessThanOrEqual(2);
      expect(stats.droppedRows).toBe(0);
    } finally {
      silent.stop(true);
    }
  });

  test("a token that is no P-256 private key, or token_x/token_y of another key: one line at start", () => {
    const key = newKey();
    const other = newKey();
    const resolve = (conf: string) => () =>
      resolveSettings({ host: "127.0.0.1", ilpPort: 9009, httpPort: 9000, clientConf: conf, bufferMaxBytes: 1 << 20 }, {}, memoryLogger().log);
    expect(resolve("tcp::addr=db:9009;username=ingest;token=not-a-key;")).toThrow(UserError);
    expect(resolve("tcp::addr=db:9009;username=ingest;token=not-a-key;")).toThrow("token is not a P-256 private key");
    expect(resolve(`tcp::addr=db:9009;username=ingest;token=${key.d};token_x=${other.x};token_y=${other.y};`)).toThrow(
      "token_x/token_y are not the public key of token",
    );
    try {
      resolve(`tcp::addr=db:9009;username=ingest;token=${key.d};token_x=${other.x};token_y=${other.y};`)();
    } catch (error) {
      expect((error as Error).message).not.toContain(key.d);
    }
  });
});

describe("ILP over TLS (tcps)", () => {
  const TLS_DIR = join(import.meta.dir, "support", "tls");
  const tls = { cert: readFileSync(join(TLS_DIR, "localhost-cert.pem"), "utf8"), key: readFileSync(join(TLS_DIR, "localhost-key.pem"), "utf8") };

  test.each([
    ["the server's CA from tls_ca", `tls_ca=${join(TLS_DIR, "localhost-cert.pem")};`],
    ["tls_verify=unsafe_off", "tls_verify=unsafe_off;"],
  ])("%s: rows arrive over TLS", async (_name, confTls) => {
    server = await IlpServer.start({ tls });
    const { sink, stats } = await startSink({ clientConf: `tcps::addr=127.0.0.1:${server.port};${confTls}`, env: { QUESTDB_FLUSH_INTERVAL_MS: "50" } });
    await sink.write(trades(0, 20));
    expect(ids(await server.waitForRows(20, "trades"))).toEqual(trades(0, 20).map((row) => row.id));
    expect(stats.errors).toBe(0);
  });

  test("a certificate that does not verify: no row leaves, the outage names TLS, rows are kept", async () => {
    server = await IlpServer.start({ tls });
    const { sink, stats, logs } = await startSink({ clientConf: `tcps::addr=127.0.0.1:${server.port};`, env: { QUESTDB_FLUSH_INTERVAL_MS: "50" } });
    await sink.write(trades(0, 5));
    await waitUntil(() => stats.outageSince > 0, 5000, undefined, "the outage");
    expect(logs.some((line) => line.startsWith("warn") && line.includes("unreachable") && line.includes("TLS"))).toBe(true);
    expect(server.rows).toEqual([]);
    expect(stats.droppedRows).toBe(0);
    expect(stats.bufferedRows).toBe(5);
  });
});

describe("which socket carries ILP/TCP", () => {
  const resolve = (clientConf: string | undefined, env: Record<string, string> = {}) =>
    resolveSettings({ host: "::1", ilpPort: 9011, httpPort: 9000, clientConf, bufferMaxBytes: 1 << 20 }, env, memoryLogger().log).nativeTcp;

  test("plain TCP: Bun's own socket, at QUESTDB_HOST/QUESTDB_ILP_PORT or the configuration's addr", () => {
    expect(resolve(undefined)).toEqual({ host: "::1", port: 9011 });
    expect(resolve("tcp::addr=db.internal:9012;")).toEqual({ host: "db.internal", port: 9012 });
  });

  test("TLS and authentication: Bun's own socket too; HTTP and QUESTDB_TCP_NATIVE=false: the client's transport", () => {
    expect(resolve("tcps::addr=db.internal:9009;")).toEqual({ host: "db.internal", port: 9009, tls: { ca: undefined, verify: true } });
    expect(resolve("tcps::addr=db.internal:9009;tls_verify=unsafe_off;")).toEqual({ host: "db.internal", port: 9009, tls: { ca: undefined, verify: false } });
    const { d, x, y } = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ format: "jwk" });
    expect(resolve(`tcp::addr=db.internal:9009;username=admin;token=${d};token_x=${x};token_y=${y};`)?.auth?.keyId).toBe("admin");
    expect(resolve(`tcp::addr=db.internal:9009;username=admin;token=${d};`, { QUESTDB_TCP_NATIVE: "false" })).toBeUndefined();
    expect(resolve("http::addr=db.internal:9000;")).toBeUndefined();
    expect(resolve(undefined, { QUESTDB_TCP_NATIVE: "false" })).toBeUndefined();
  });
});

describe("QuestDB outbox memory", () => {
  test("counts the memory a chunk holds and hands only sent, released chunks back for reuse", () => {
    const released: Uint8Array[] = [];
    const outbox = new Outbox((bytes) => released.push(bytes));
    const chunk = (length: number, capacity: number) => new Uint8Array(new ArrayBuffer(capacity), 0, length);
    const a = chunk(100, 160);
    const b = chunk(50, 50);
    const c = chunk(10, 64);
    const d = chunk(20, 20);
    for (const bytes of [a, b, c, d]) outbox.push(bytes, 1);
    expect(outbox.bytes).toBe(160 + 50 + 64 + 20);
    expect(outbox.unsentBytes).toBe(outbox.bytes);

    const first = outbox.takeNext()!;
    expect(outbox.unsentBytes).toBe(50 + 64 + 20);
    outbox.sent(first, 1, true); // kept in the resend window: not released
    expect(released).toEqual([]);
    outbox.sent(outbox.takeNext()!, 2, false); // no window: released at once
    expect(released).toEqual([b]);
    outbox.expire(1); // the window's chunk from t=1
    expect(released).toEqual([b, a]);
    outbox.sent(outbox.takeNext()!, 3, true);
    expect(outbox.releaseOldestSent()).toBe(true);
    expect(released).toEqual([b, a, c]);
    expect(outbox.bytes).toBe(20);

    // Given up without a completed send: never handed back (a transport may still hold it).
    outbox.takeNext();
    outbox.discardInFlight();
    outbox.push(chunk(5, 5), 2);
    outbox.takeNext();
    expect(outbox.abandonPending()).toEqual({ rows: 2, neverSentRows: 2 });
    expect(released).toEqual([b, a, c]);
    expect(outbox.bytes).toBe(0);
  });
});

/**
 * Stopping while QuestDB is away, through the pipeline with the real QuestDB sink: the stop line counts
 * what is queued and what the sink holds; "all data flushed" only when it is true; rows that could not be
 * delivered are kept in a pending file (exit 0, said so) and sent first by the next start, or, when they
 * cannot be kept, reported lost per table with exit code 3.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildConfig } from "../src/cli/config.ts";
import { EXCHANGE_REGISTRY } from "../src/connectors/index.ts";
import type { ExchangeRegistry, ExchangeSpec } from "../src/core/connector.ts";
import { EXIT_ROWS_LOST, Pipeline } from "../src/core/pipeline.ts";
import { IlpServer } from "./support/ilp-server.ts";
import { trade } from "./support/questdb-events.ts";
import { createTestSink, memoryLogger, type TestSink } from "./support/questdb-harness.ts";

const cleanups: Array<() => unknown> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function temporaryDirectory(): string {
  const directory = mkdtempSync(join(tmpdir(), "xtrader-questdb-stop-"));
  cleanups.push(() => rmSync(directory, { recursive: true, force: true }));
  return directory;
}

/** A pipeline whose one connector emits `count` trades at start and that stops itself after 0.3 s. */
function pipelineFor({ sink, stats }: TestSink, count: number) {
  const scripted: ExchangeSpec = {
    ...EXCHANGE_REGISTRY.BINANCE_FUTURES,
    create: (context, subscriptions) => ({
      start: () => {
        for (let i = 0; i < count; i++) context.emit(subscriptions[0]!, trade(i));
      },
      stop: async () => {},
      resync: () => {},
    }),
  };
  const registry: ExchangeRegistry = { ...EXCHANGE_REGISTRY, BINANCE_FUTURES: scripted };
  const { config } = buildConfig({ subscriptions: "TRADES:BINANCE_FUTURES@BTCUSDT", "shutdown-after": "0.3" }, {}, registry);
  const { log, lines } = memoryLogger();
  const pipeline = new Pipeline({ config, registry, sink, sinkStats: stats, log, shutdownTimeoutMs: 10_000, drainTimeoutMs: 500 });
  return { pipeline, lines };
}

const ENV = { QUESTDB_CLOSE_TIMEOUT_MS: "300", QUESTDB_FLUSH_INTERVAL_MS: "20" };

describe("stopping while QuestDB is away", () => {
  test("rows that cannot be kept: one line with the rows lost per table, never 'all data flushed', exit code 3", async () => {
    const down = await IlpServer.reservePort();
    const directory = temporaryDirectory();
    writeFileSync(join(directory, "questdb"), "in the way"); // the pending file cannot be written
    const sink = createTestSink({ ilpPort: down.port, directory, env: ENV });
    const { pipeline, lines } = pipelineFor(sink, 20);
    expect(await pipeline.run()).toBe(EXIT_ROWS_LOST);
    expect(lines).toContain("info: stopping (--shutdown-after 0.3): closing connections, then flushing 0 queued row(s) and 20 buffered in the sink");
    expect(lines).toContain("error: stopped; 20 row(s) were lost (trades 20)");
    expect(lines.some((line) => line.includes("all data flushed"))).toBe(false);
    expect(sink.stats.droppedRows).toBe(20);
  });

  test("rows kept in a pending file: said so (exit 0, not 'all data flushed'); the next start sends them first and deletes the file", async () => {
    const server = await IlpServer.reservePort();
    cleanups.push(() => server.stop());
    const directory = temporaryDirectory();
    const first = createTestSink({ ilpPort: server.port, directory, env: ENV });
    const { pipeline, lines } = pipelineFor(first, 20);
    expect(await pipeline.run()).toBe(0);
    const pending = readdirSync(join(directory, "questdb")).filter((name) => name.endsWith(".ilp"));
    expect(pending).toHaveLength(1);
    const path = join(directory, "questdb", pending[0]!);
    expect(readFileSync(path, "utf8").split("\n").filter(Boolean)).toHaveLength(20);
    expect(lines).toContain(`warn: stopped; 20 row(s) not delivered are kept in ${path} for the next start`);
    expect(lines.some((line) => line.includes("all data flushed"))).toBe(false);
    expect(first.stats.droppedRows).toBe(0);

    await server.restart();
    // The file goes once its rows have left the resend window (sent again after a drop until then).
    const second = createTestSink({ ilpPort: server.port, directory, env: { ...ENV, QUESTDB_RESEND_WINDOW_MS: "2000" } });
    cleanups.push(() => second.sink.close());
    await second.sink.start();
    await second.sink.write([trade(20)]);
    const rows = await server.waitForRows(21, "trades");
    expect(rows.map((row) => (row.fields.id as { value: string }).value)).toEqual(Array.from({ length: 21 }, (_, i) => `t${i}`));
    expect(existsSync(path)).toBe(true);
    await server.waitFor(() => !existsSync(path) || undefined, 6000, "the pending file to be deleted");
    expect(await second.sink.close()).toEqual({ lostRows: {}, keptRows: 0, keptWhere: undefined });
  });

  test("a stop that delivered everything says 'all data flushed' and exits 0", async () => {
    const server = await IlpServer.start();
    cleanups.push(() => server.stop());
    const directory = temporaryDirectory();
    const { pipeline, lines } = pipelineFor(createTestSink({ ilpPort: server.port, directory, env: ENV }), 20);
    expect(await pipeline.run()).toBe(0);
    expect(lines).toContain("info: stopped; all data flushed");
    expect(server.countRows("trades")).toBe(20);
    expect(existsSync(join(directory, "questdb"))).toBe(false);
    mkdirSync(join(directory, "unused")); // the directory stays usable
  });
});

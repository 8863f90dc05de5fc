/**
 * Helpers for the Parquet sink tests: deterministic events, a sink with a controllable clock and
 * captured logs, and readers (DuckDB and hyparquet) that return plain values.
 */
import { DuckDBInstance, type DuckDBConnection } from "@duckdb/node-api";
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from "hyparquet";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import type { ParquetSettings } from "../../src/sinks/parquet/settings.ts";
import {
  BASE_SIZING,
  gapEvent,
  type BookChange,
  type BookTicker,
  type ExchangeId,
  type Funding,
  type Gap,
  type Liquidation,
  type Trade,
} from "../../src/core/events.ts";
import { createLogger, type Logger } from "../../src/core/log.ts";
import { SinkStats } from "../../src/core/stats.ts";
import { ParquetSink, type ParquetTuning } from "../../src/sinks/parquet/index.ts";
import { EXCHANGE_IDS } from "../../src/connectors/index.ts";

/** 2026-01-05T12:00:00Z in µs. */
export const BASE_TIME = Date.UTC(2026, 0, 5, 12, 0, 0) * 1000;

const created: string[] = [];

export function tempDirectory(prefix = "xtrader-parquet-"): string {
  const directory = mkdtempSync(join(tmpdir(), prefix));
  created.push(directory);
  return directory;
}

/** Removes every directory tempDirectory() made (call from afterAll). */
export function removeTempDirectories(): void {
  for (const directory of created.splice(0)) rmSync(directory, { recursive: true, force: true });
}

export { seededRandom } from "./random.ts";

/** The i-th trade of a deterministic stream: every field is a function of i. */
export function tradeAt(i: number, symbol = "BTCUSDT", exchange: Trade["exchange"] = "BINANCE_FUTURES"): Trade {
  const timestamp = BASE_TIME + i * 1000;
  return {
    type: "trade",
    exchange,
    symbol,
    timestamp,
    localTimestamp: timestamp + 250 + (i % 7),
    id: `t${i}`,
    side: i % 3 === 0 ? "buy" : "sell",
    price: 50_000 + (i % 1000) * 0.5,
    amount: ((i * 7919) % 1000) / 1000 + 0.001,
    ...BASE_SIZING,
  };
}

/** The i-th L2 message of a deterministic stream: a snapshot every 50 messages, `levels` per side. */
export function bookAt(i: number, symbol = "BTC-USD-SWAP", levels = 3): BookChange {
  const timestamp = BASE_TIME + i * 1000;
  const bids: number[] = [];
  const asks: number[] = [];
  for (let level = 0; level < levels; level++) {
    bids.push(100 - level - (i % 5) * 0.1, i % 4 === 0 && level === 0 ? 0 : level + 1 + i);
    asks.push(101 + level + (i % 5) * 0.1, level + 2 + i);
  }
  return {
    type: "book_change",
    exchange: "OKX_SWAP",
    symbol,
    timestamp,
    localTimestamp: timestamp + 100,
    isSnapshot: i % 50 === 0,
    sequence: 9_000_000_000 + i,
    bids,
    asks,
    amountUnit: "quote",
    contractValue: 100,
  };
}

export function bboAt(i: number, symbol = "BTC-PERPETUAL"): BookTicker {
  const timestamp = BASE_TIME + i * 1000;
  return {
    type: "bbo",
    exchange: "DERIBIT",
    symbol,
    timestamp,
    localTimestamp: timestamp + 50,
    bidPrice: 60_000 + i,
    bidAmount: 10 + i,
    askPrice: 60_000.5 + i,
    askAmount: 20 + i,
  };
}

export function fundingAt(i: number, symbol = "BTC-USDT-SWAP"): Funding {
  const timestamp = BASE_TIME + i * 1000;
  return {
    type: "funding",
    exchange: "OKX_SWAP",
    symbol,
    timestamp,
    localTimestamp: timestamp + 10,
    markPrice: i % 2 === 0 ? 60_000 + i : undefined,
    indexPrice: i % 3 === 0 ? 59_999 + i : undefined,
    fundingRate: i % 2 === 1 ? 0.0001 * i : undefined,
    nextFundingTime: i % 2 === 1 ? BASE_TIME + 8 * 3600 * 1_000_000 : undefined,
    currentFundingRate: i % 4 === 1 ? 0.00001 * i : undefined,
  };
}

export function liquidationAt(i: number, symbol = "BTCUSDT"): Liquidation {
  const timestamp = BASE_TIME + i * 1000;
  return {
    type: "liquidation",
    exchange: "BINANCE_FUTURES",
    symbol,
    timestamp,
    localTimestamp: timestamp + 5,
    id: `l${i}`,
    side: i % 2 === 0 ? "sell" : "buy",
    price: 59_000 + i,
    amount: 0.25 * (i + 1),
    ...BASE_SIZING,
  };
}

export function gapAt(i: number, symbol = "BTC-USD-SWAP"): Gap {
  const timestamp = BASE_TIME + i * 1000;
  return {
    type: "gap",
    exchange: "OKX_SWAP",
    symbol,
    timestamp,
    localTimestamp: timestamp,
    stream: "L2",
    reason: "sequence",
    detail: `expected ${i} got ${i + 2}`,
  };
}

export const DEFAULT_SETTINGS: ParquetSettings = {
  rotateIntervalSeconds: 3600,
  maxFileRows: 5_000_000,
  maxFileBytes: 512 * 1024 * 1024,
  compression: "zstd",
};

export interface SinkUnderTest {
  readonly sink: ParquetSink;
  readonly stats: SinkStats;
  readonly logs: string[];
  readonly clock: { now: number };
}

/** A sink whose clock the test sets, logs captured. Flush timer is fast so tests do not wait. */
export function makeSink(
  directory: string,
  options: {
    settings?: Partial<ParquetSettings>;
    tuning?: Partial<ParquetTuning>;
    now?: number;
    closeTimeoutMs?: number;
    journalReplaceBytes?: number;
    rowsLogSegmentBytes?: number;
    exchanges?: readonly string[];
  } = {},
): SinkUnderTest {
  const logs: string[] = [];
  const log: Logger = createLogger("debug");
  log.setReporters([{ log: (entry) => logs.push(`${entry.type}: ${entry.args.map((arg) => String(arg)).join(" ")}`) }]);
  const stats = new SinkStats();
  const clock = { now: options.now ?? BASE_TIME };
  const sink = new ParquetSink({
    directory,
    exchanges: options.exchanges ?? EXCHANGE_IDS,
    settings: { ...DEFAULT_SETTINGS, ...options.settings },
    log,
    stats,
    now: () => clock.now,
    tuning: { flushIntervalMs: 20, ...options.tuning },
    closeTimeoutMs: options.closeTimeoutMs,
    journalReplaceBytes: options.journalReplaceBytes,
    rowsLogSegmentBytes: options.rowsLogSegmentBytes,
  });
  return { sink, stats, logs, clock };
}

/** What the pipeline does once the sink has started: one `unclean_stop` gap row per interrupted stream. */
export async function markInterrupted(sink: ParquetSink, at = BASE_TIME): Promise<Gap[]> {
  const gaps = sink
    .interruptedStreams()
    .map((stream) => gapEvent({ ...stream, exchange: stream.exchange as ExchangeId }, "unclean_stop", "the previous run stopped without a clean shutdown", at));
  await sink.write(gaps);
  return gaps;
}

/** Paths (relative to `root`) of every file under it, hidden ones included, sorted. */
export function listFiles(root: string): string[] {
  const out: string[] = [];
  const walk = (directory: string) => {
    for (const entry of readdirSync(directory, { withFileTypes: true })) {
      const path = join(directory, entry.name);
      if (entry.isDirectory()) walk(path);
      else out.push(relative(root, path));
    }
  };
  walk(root);
  return out.sort();
}

export const parquetFiles = (root: string): string[] => listFiles(root).filter((path) => path.endsWith(".parquet"));

export const fileSize = (path: string): number => statSync(path).size;

export async function pollUntil<T>(check: () => T | undefined | false, timeoutMs = 5000, what = "condition"): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined && value !== false) return value;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(5);
  }
}

let duck: Promise<DuckDBConnection> | undefined;

/** One in-memory DuckDB per test process. */
export function duckdb(): Promise<DuckDBConnection> {
  duck ??= DuckDBInstance.create(":memory:").then((instance) => instance.connect());
  return duck;
}

/** Rows of a query as plain JS values (bigints stay bigints; convert timestamps in SQL with epoch_us). */
export async function query(sql: string): Promise<Record<string, unknown>[]> {
  const connection = await duckdb();
  const reader = await connection.runAndReadAll(sql);
  return reader.getRowObjectsJS() as Record<string, unknown>[];
}

/** Every row of a file as hyparquet decodes it; timestamps as integer µs numbers. */
export async function readWithHyparquet(path: string): Promise<Record<string, unknown>[]> {
  const file = await asyncBufferFromFile(path);
  return (await parquetReadObjects({
    file,
    compressors: { ZSTD: (input: Uint8Array) => new Uint8Array(Bun.zstdDecompressSync(input)) },
    parsers: { timestampFromMicroseconds: (micros: bigint | number) => Number(micros) } as never,
  })) as Record<string, unknown>[];
}

export async function hyparquetMetadata(path: string) {
  return parquetMetadataAsync(await asyncBufferFromFile(path));
}

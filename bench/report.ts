/**
 * Coverage report benchmark: a month of hourly files written by the real ParquetSink (simulated clock),
 * then `xtrader report` over them, timed. docs/report.md records the figure.
 *
 *   bun bench/report.ts [--hours 720] [--runs 3] [--directory DIR] [--binary dist/xtrader]
 *
 * 14 streams (4 L2, 4 trades, 3 BBO, 2 funding, 1 liquidations) rotate every hour: 720 hours make 10,080
 * data files, plus the `gaps` table's files (two disconnects per stream and day). Row groups are small
 * (64 rows) so that footers are as long as those of busy streams: an L2 file has 40 row groups, ~30 KiB of
 * footer. `--directory` keeps the generated files there and reuses them on the next run.
 *
 * Each run times the report in this process (scan + build + text) and, when the binary exists, the
 * compiled `xtrader report DIR` end to end (start-up included). Exits 1 when the report's row or file
 * counts differ from what was written.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { BASE_SIZING, gapEvent, type MarketEvent } from "../src/core/events.ts";
import { createLogger } from "../src/core/log.ts";
import { SinkStats } from "../src/core/stats.ts";
import { buildReport } from "../src/report/coverage.ts";
import { scanDirectory } from "../src/report/scan.ts";
import { renderText } from "../src/report/text.ts";
import { ParquetSink } from "../src/sinks/parquet/index.ts";
import { EXCHANGE_IDS } from "../src/connectors/index.ts";

const { values: args } = parseArgs({
  options: {
    hours: { type: "string", default: "720" },
    runs: { type: "string", default: "3" },
    directory: { type: "string" },
    binary: { type: "string", default: join(import.meta.dir, "..", "dist", "xtrader") },
  },
});
const hours = Number(args.hours);
const runs = Number(args.runs);
const HOUR = 3_600_000_000;
const START = Date.UTC(2026, 0, 1) * 1000;
const ROW_GROUP_ROWS = 64;

interface StreamPlan {
  readonly exchange: "BINANCE_FUTURES" | "OKX_SWAP" | "DERIBIT";
  readonly symbol: string;
  readonly kind: "l2" | "trade" | "bbo" | "funding" | "liquidation";
  /** Rows per hour (L2: 4 levels per message). */
  readonly rows: number;
}

const PLAN: readonly StreamPlan[] = [
  ...["BTC-USDT-SWAP", "ETH-USDT-SWAP", "SOL-USDT-SWAP", "XRP-USDT-SWAP"].map((symbol) => ({ exchange: "OKX_SWAP" as const, symbol, kind: "l2" as const, rows: 40 * ROW_GROUP_ROWS })),
  ...["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"].map((symbol) => ({ exchange: "BINANCE_FUTURES" as const, symbol, kind: "trade" as const, rows: 10 * ROW_GROUP_ROWS })),
  ...["BTC-PERPETUAL", "ETH-PERPETUAL", "SOL_USDC-PERPETUAL"].map((symbol) => ({ exchange: "DERIBIT" as const, symbol, kind: "bbo" as const, rows: 20 * ROW_GROUP_ROWS })),
  ...["BTCUSDT", "ETHUSDT"].map((symbol) => ({ exchange: "BINANCE_FUTURES" as const, symbol, kind: "funding" as const, rows: 60 })),
  { exchange: "BINANCE_FUTURES", symbol: "BTCUSDT", kind: "liquidation", rows: 5 },
];

function eventAt(plan: StreamPlan, hour: number, index: number, count: number): MarketEvent {
  const localTimestamp = START + hour * HOUR + Math.floor((index * HOUR) / count);
  const timestamp = localTimestamp - 200;
  const price = 50_000 + (index % 500) * 0.5;
  const { exchange, symbol } = plan;
  switch (plan.kind) {
    case "l2":
      return { type: "book_change", exchange, symbol, timestamp, localTimestamp, isSnapshot: index === 0, sequence: hour * 1_000_000 + index, bids: [price - 0.5, 3, price - 1, 4], asks: [price + 0.5, 2, price + 1, 5], amountUnit: "base", contractValue: 0.01 };
    case "trade":
      return { type: "trade", exchange, symbol, timestamp, localTimestamp, id: `${hour}-${index}`, side: index % 2 ? "buy" : "sell", price, amount: 0.01 + (index % 7) / 100, ...BASE_SIZING };
    case "bbo":
      return { type: "bbo", exchange, symbol, timestamp, localTimestamp, bidPrice: price - 0.5, bidAmount: 10, askPrice: price + 0.5, askAmount: 12 };
    case "funding":
      return { type: "funding", exchange, symbol, timestamp, localTimestamp, markPrice: price, indexPrice: price - 1, fundingRate: 0.0001, nextFundingTime: START + (hour + 8) * HOUR, currentFundingRate: undefined };
    case "liquidation":
      return { type: "liquidation", exchange, symbol, timestamp, localTimestamp, id: `${hour}-${index}`, side: "sell", price, amount: 0.5, ...BASE_SIZING };
  }
}

interface Generated {
  readonly hours: number;
  readonly dataFiles: number;
  readonly rows: number;
  readonly gapRows: number;
}

async function generate(directory: string): Promise<Generated> {
  let clock = START;
  const stats = new SinkStats();
  const sink = new ParquetSink({
    directory,
    exchanges: EXCHANGE_IDS,
    settings: { rotateIntervalSeconds: 3600, maxFileRows: 5_000_000, maxFileBytes: 512 * 1024 * 1024, compression: "zstd" },
    log: createLogger("warn"),
    stats,
    now: () => clock,
    // The explicit flush below makes each hour durable; the timer has nothing to do in between.
    tuning: { rowGroupRows: ROW_GROUP_ROWS, flushIntervalMs: 60_000 },
  });
  await sink.start();
  let rows = 0;
  let gapRows = 0;
  const batch: MarketEvent[] = [];
  for (let hour = 0; hour < hours; hour++) {
    clock = START + hour * HOUR;
    batch.length = 0;
    for (const plan of PLAN) {
      const count = plan.kind === "l2" ? plan.rows / 4 : plan.rows;
      for (let index = 0; index < count; index++) batch.push(eventAt(plan, hour, index, count));
      rows += plan.rows;
      // Two disconnects a day per stream, at different minutes for each stream.
      if (hour % 12 === PLAN.indexOf(plan) % 12) {
        const stream = plan.kind === "l2" ? "L2" : plan.kind === "trade" ? "TRADES" : plan.kind === "bbo" ? "BBO" : plan.kind === "funding" ? "FUNDING" : "LIQUIDATIONS";
        batch.push(gapEvent({ exchange: plan.exchange, symbol: plan.symbol, stream }, "disconnect", "websocket closed (code 1006)", START + hour * HOUR + 1_800_000_000 + PLAN.indexOf(plan)));
        gapRows++;
      }
    }
    await sink.write(batch);
    // Each hour durable before the next (the rotated files' closes included), as a live collector keeps up.
    await sink.flush();
    if (hour % 24 === 23) process.stderr.write(`generated ${hour + 1} of ${hours} hours\n`);
  }
  await sink.close();
  if (stats.errors > 0 || stats.droppedRows > 0) throw new Error(`the sink reported ${stats.errors} error(s), ${stats.droppedRows} dropped row(s)`);
  return { hours, dataFiles: hours * PLAN.length, rows, gapRows };
}

const keep = args.directory !== undefined;
const directory = keep ? resolve(args.directory!) : mkdtempSync(join(tmpdir(), "xtrader-report-bench-"));
const marker = join(directory, ".bench-report.json");
let generated: Generated;
if (keep && existsSync(marker) && (JSON.parse(readFileSync(marker, "utf8")) as Generated).hours === hours) {
  generated = JSON.parse(readFileSync(marker, "utf8")) as Generated;
  console.log(`reusing ${directory}`);
} else {
  if (keep) rmSync(directory, { recursive: true, force: true });
  mkdirSync(directory, { recursive: true });
  const started = performance.now();
  generated = await generate(directory);
  writeFileSync(marker, JSON.stringify(generated));
  console.log(`generated in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}
console.log(`${generated.dataFiles} data files, ${generated.rows} rows, ${generated.gapRows} gap rows, ${hours} hours, row groups of ${ROW_GROUP_ROWS} rows`);

let failed = false;
for (let run = 1; run <= runs; run++) {
  const started = performance.now();
  const report = await buildReport(await scanDirectory(directory));
  renderText(report);
  const inProcess = performance.now() - started;
  const rows = report.streams.reduce((sum, stream) => sum + stream.rows, 0);
  const dataFiles = report.streams.reduce((sum, stream) => sum + stream.files, 0);
  const gaps = report.streams.reduce((sum, stream) => sum + stream.gaps.length, 0);
  if (rows !== generated.rows || dataFiles !== generated.dataFiles || gaps !== generated.gapRows || report.unreadable.length > 0) {
    console.log(`FAIL: the report counted ${rows} rows in ${dataFiles} data files and ${gaps} gaps, ${report.unreadable.length} unreadable`);
    failed = true;
  }
  let binary = "";
  if (existsSync(args.binary!)) {
    const spawned = performance.now();
    const child = Bun.spawnSync([args.binary!, "report", directory], { stdout: "ignore", stderr: "inherit" });
    binary = `, binary ${((performance.now() - spawned) / 1000).toFixed(2)} s (exit ${child.exitCode})`;
    if (child.exitCode !== 0) failed = true;
  }
  console.log(`run ${run}: ${report.files} files read, in process ${(inProcess / 1000).toFixed(2)} s${binary}`);
}
if (!keep) rmSync(directory, { recursive: true, force: true });
process.exit(failed ? 1 : 0);

/**
 * Parquet sink memory benchmark: pushes many rows through ParquetSink (trades, L2, BBO on several
 * symbols) with a simulated clock so that files rotate many times, and samples memory as it goes.
 * Memory must stay flat: the last samples may not exceed the early ones by more than the tolerance.
 * Also reports throughput and the longest event-loop stall (row-group encoding runs on the loop).
 *
 *   bun bench/parquet-memory.ts [--seconds 60] [--rate 100000] [--speedup 10] [--row-group-rows 16384]
 *                               [--compression zstd] [--tolerance 0.15] [--keep]
 *
 * `--rate` rows per second of wall time are produced; the sink's clock runs `--speedup` times faster
 * than wall time and rotates every simulated minute, so a 60 s run closes hundreds of files.
 *
 * Exits 1 when memory grew beyond the tolerance (default 15 %, --tolerance 0.15).
 */
import { parseArgs } from "node:util";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BASE_SIZING, type MarketEvent } from "../src/core/events.ts";
import { createLogger } from "../src/core/log.ts";
import { SinkStats } from "../src/core/stats.ts";
import { ParquetSink } from "../src/sinks/parquet/index.ts";
import { EXCHANGE_IDS } from "../src/connectors/index.ts";

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "60" },
    rate: { type: "string", default: "100000" },
    speedup: { type: "string", default: "10" },
    "row-group-rows": { type: "string", default: "16384" },
    compression: { type: "string", default: "zstd" },
    tolerance: { type: "string", default: "0.15" },
    keep: { type: "boolean", default: false },
  },
});
const seconds = Number(args.seconds);
const rate = Number(args.rate);
const speedup = Number(args.speedup);
const tolerance = Number(args.tolerance);
const directory = mkdtempSync(join(tmpdir(), "xtrader-parquet-bench-"));

let clock = Date.UTC(2026, 0, 5, 0, 0, 0) * 1000;
const stats = new SinkStats();
const sink = new ParquetSink({
  directory,
  exchanges: EXCHANGE_IDS,
  settings: { rotateIntervalSeconds: 60, maxFileRows: 5_000_000, maxFileBytes: 512 * 1024 * 1024, compression: args.compression as "zstd" },
  log: createLogger("warn"),
  stats,
  now: () => clock,
  tuning: { rowGroupRows: Number(args["row-group-rows"]) },
});
await sink.start();

// Event-loop stall monitor: the largest gap between 10 ms ticks beyond 10 ms (forced GCs excluded).
let lastBeat = performance.now();
let worstStallMs = 0;
const monitor = setInterval(() => {
  const now = performance.now();
  worstStallMs = Math.max(worstStallMs, now - lastBeat - 10);
  lastBeat = now;
}, 10);

const symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"];
const batch: MarketEvent[] = [];
let produced = 0;
let sequence = 0;
const samples: { second: number; rssMiB: number; heapMiB: number; files: number; buffered: number }[] = [];
const started = performance.now();

function makeBatch(): void {
  batch.length = 0;
  for (let k = 0; k < 1000; k++) {
    sequence++;
    const symbol = symbols[Math.floor(sequence / 4) % symbols.length]!;
    const timestamp = clock + k;
    const price = 50_000 + (sequence % 2000) * 0.5;
    switch (sequence % 4) {
      case 0:
      case 1:
        batch.push({ type: "trade", exchange: "BINANCE_FUTURES", symbol, timestamp, localTimestamp: timestamp + 300, id: String(sequence), side: sequence % 3 ? "buy" : "sell", price, amount: (sequence % 97) / 100 + 0.01, ...BASE_SIZING });
        produced += 1;
        break;
      case 2:
        batch.push({ type: "book_change", exchange: "OKX_SWAP", symbol: `${symbol.slice(0, 3)}-USDT-SWAP`, timestamp, localTimestamp: timestamp + 200, isSnapshot: sequence % 1000 === 2, sequence, bids: [price - 0.5, 3, price - 1, 0, price - 1.5, 7], asks: [price + 0.5, 2, price + 1, 5], amountUnit: "base", contractValue: 0.01 });
        produced += 5;
        break;
      default:
        batch.push({ type: "bbo", exchange: "DERIBIT", symbol: `${symbol.slice(0, 3)}-PERPETUAL`, timestamp, localTimestamp: timestamp + 100, bidPrice: price - 0.5, bidAmount: 10, askPrice: price + 0.5, askAmount: 12 });
        produced += 1;
    }
  }
}

// Produce at `rate` rows/s of wall time; simulated time runs `speedup` times faster, so files rotate often.
let nextSample = 1;
for (;;) {
  const elapsed = (performance.now() - started) / 1000;
  if (elapsed >= seconds) break;
  // One batch per turn of the event loop, as the pipeline hands them over: timers and disk steps run between.
  while (produced < rate * elapsed) {
    makeBatch();
    await sink.write(batch);
    await new Promise((resolve) => setImmediate(resolve));
  }
  clock = Date.UTC(2026, 0, 5, 0, 0, 0) * 1000 + Math.floor(elapsed * speedup * 1_000_000);
  if (elapsed >= nextSample) {
    nextSample++;
    Bun.gc(true);
    const memory = process.memoryUsage();
    samples.push({ second: Math.round(elapsed), rssMiB: memory.rss / 2 ** 20, heapMiB: memory.heapUsed / 2 ** 20, files: stats.filesClosed, buffered: stats.bufferedRows });
    lastBeat = performance.now();
  }
  await Bun.sleep(10);
}
await sink.close();
clearInterval(monitor);
const wall = (performance.now() - started) / 1000;

console.log(`rows: ${produced}, files: ${stats.filesClosed}, wall seconds (with close): ${wall.toFixed(1)}, rows/s sustained: ${Math.round(produced / seconds)} of ${rate} asked`);
console.log(`worst event-loop stall: ${worstStallMs.toFixed(0)} ms (row groups of ${args["row-group-rows"]} rows, ${args.compression})`);
console.log("second   rss MiB   heap MiB   files closed   rows not yet durable");
for (const sample of samples) {
  console.log(`${String(sample.second).padEnd(6)}${sample.rssMiB.toFixed(1).padStart(10)}${sample.heapMiB.toFixed(1).padStart(11)}${String(sample.files).padStart(15)}${String(sample.buffered).padStart(23)}`);
}
if (!args.keep) rmSync(directory, { recursive: true, force: true });
else console.log(`files kept in ${directory}`);

// Flat: the peak of the last third of samples against the peak of the middle third (after warm-up).
const third = Math.max(1, Math.floor(samples.length / 3));
const early = Math.max(...samples.slice(third, 2 * third).map((sample) => sample.heapMiB));
const late = Math.max(...samples.slice(-third).map((sample) => sample.heapMiB));
const growth = late / early - 1;
console.log(`heap peak, middle third: ${early.toFixed(1)} MiB; last third: ${late.toFixed(1)} MiB; growth ${(growth * 100).toFixed(1)} % (tolerance ${(tolerance * 100).toFixed(0)} %)`);
if (stats.droppedRows > 0 || stats.errors > 0) {
  console.log(`FAIL: ${stats.droppedRows} dropped row(s), ${stats.errors} error(s)`);
  process.exit(1);
}
if (!(growth <= tolerance)) {
  console.log("FAIL: memory is not flat");
  process.exit(1);
}
console.log("OK: memory is flat");

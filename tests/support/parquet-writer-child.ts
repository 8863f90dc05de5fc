/**
 * A child process for the SIGKILL test: writes rows through ParquetSink steadily until it is killed.
 *
 *   bun tests/support/parquet-writer-child.ts DIR [FLUSH_INTERVAL_MS] [ROW_GROUP_ROWS]
 *
 * Streams (each a deterministic sequence, see parquet-helpers.ts): trades of BTCUSDT and ETHUSDT, L2 of
 * BTC-USD-SWAP (6 rows per message). Prints `durable N` on stdout whenever the sink's count of rows on
 * disk (SinkStats.rowsWritten) grows, so the parent knows what must survive a SIGKILL.
 */
import { createLogger } from "../../src/core/log.ts";
import type { MarketEvent } from "../../src/core/events.ts";
import { SinkStats } from "../../src/core/stats.ts";
import { ParquetSink } from "../../src/sinks/parquet/index.ts";
import { DEFAULT_SETTINGS, bookAt, tradeAt } from "./parquet-helpers.ts";
import { EXCHANGE_IDS } from "../../src/connectors/index.ts";

const [directory, flushMs = "100", rowGroupRows = "500"] = process.argv.slice(2);
if (!directory) throw new Error("usage: parquet-writer-child.ts DIR [FLUSH_INTERVAL_MS] [ROW_GROUP_ROWS]");

const stats = new SinkStats();
const sink = new ParquetSink({
  directory,
  exchanges: EXCHANGE_IDS,
  settings: DEFAULT_SETTINGS,
  log: createLogger("warn"),
  stats,
  tuning: { flushIntervalMs: Number(flushMs), rowGroupRows: Number(rowGroupRows) },
});
await sink.start();

const batch: MarketEvent[] = [];
let next = 0;
let reported = 0;
for (;;) {
  // The pipeline reuses its batch array; so does this.
  batch.length = 0;
  for (let k = 0; k < 10; k++, next++) {
    batch.push(tradeAt(next, "BTCUSDT"), tradeAt(next, "ETHUSDT"), bookAt(next, "BTC-USD-SWAP", 3));
  }
  await sink.write(batch);
  if (stats.rowsWritten > reported) {
    reported = stats.rowsWritten;
    process.stdout.write(`durable ${reported}\n`);
  }
  await Bun.sleep(2);
}

/**
 * A child process for the "killed right after recovery" test: starts ParquetSink on DIR (which recovers
 * what a killed run left), hands it the `unclean_stop` gap rows as the pipeline does, prints
 * `marked N`, and idles until it is killed. Its flush interval is a minute, so nothing it was given
 * reaches a journal before the kill.
 *
 *   bun tests/support/parquet-restart-child.ts DIR
 */
import { createLogger } from "../../src/core/log.ts";
import { SinkStats } from "../../src/core/stats.ts";
import { ParquetSink } from "../../src/sinks/parquet/index.ts";
import { DEFAULT_SETTINGS, markInterrupted } from "./parquet-helpers.ts";
import { EXCHANGE_IDS } from "../../src/connectors/index.ts";

const [directory] = process.argv.slice(2);
if (!directory) throw new Error("usage: parquet-restart-child.ts DIR");

const sink = new ParquetSink({
  directory,
  exchanges: EXCHANGE_IDS,
  settings: DEFAULT_SETTINGS,
  log: createLogger("warn"),
  stats: new SinkStats(),
  tuning: { flushIntervalMs: 60_000 },
});
await sink.start();
const marked = await markInterrupted(sink);
process.stdout.write(`marked ${marked.length}\n`);
setInterval(() => undefined, 60_000);

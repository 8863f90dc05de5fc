/** Sink selection: `--sink parquet|questdb`. */
import type { Config } from "../core/config.ts";
import type { Logger } from "../core/log.ts";
import type { SinkStats } from "../core/stats.ts";
import { ParquetSink, parquetTuningFromEnv } from "./parquet/index.ts";
import { QuestDbSink } from "./questdb/index.ts";
import type { Sink } from "../core/sink.ts";

/** `exchanges`: the venue ids of the registry (the sinks know no venue themselves). */
export function createSink(config: Config, log: Logger, stats: SinkStats, exchanges: readonly string[]): Sink {
  switch (config.sink) {
    case "parquet":
      return new ParquetSink({
        directory: config.outputDirectory,
        settings: config.parquet,
        exchanges,
        tuning: parquetTuningFromEnv(config.env),
        log,
        stats,
      });
    case "questdb":
      return new QuestDbSink({ settings: config.questdb, env: config.env, log, stats, directory: config.outputDirectory });
  }
}

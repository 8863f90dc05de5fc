/** Sink selection: `--sink parquet|questdb`, and the settings each sink takes from the CLI. */
import type { Config } from "../core/config.ts";
import type { Logger } from "../core/log.ts";
import type { SinkStats } from "../core/stats.ts";
import { ParquetSink, parquetTuningFromEnv } from "./parquet/index.ts";
import type { ParquetSettings } from "./parquet/settings.ts";
import { QuestDbSink } from "./questdb/index.ts";
import type { QuestDbSettings } from "./questdb/settings.ts";
import type { Sink } from "../core/sink.ts";

export const SINKS = ["parquet", "questdb"] as const;
export type SinkName = (typeof SINKS)[number];

/** What the sinks need beyond the shared Config (built by the CLI from flags and environment). */
export interface SinkSettings {
  readonly sink: SinkName;
  readonly parquet: ParquetSettings;
  readonly questdb: QuestDbSettings;
}

/**
 * `exchanges`: the venue ids of the registry (the sinks know no venue themselves). `onFileClosed`: told
 * the final path of every file a file-writing sink completes (upload to object storage listens there).
 */
export function createSink(
  config: Config & SinkSettings,
  log: Logger,
  stats: SinkStats,
  exchanges: readonly string[],
  onFileClosed?: (path: string) => void,
): Sink {
  switch (config.sink) {
    case "parquet":
      return new ParquetSink({
        directory: config.outputDirectory,
        settings: config.parquet,
        exchanges,
        tuning: parquetTuningFromEnv(config.env),
        log,
        stats,
        onFileClosed,
      });
    case "questdb":
      return new QuestDbSink({ settings: config.questdb, env: config.env, log, stats, directory: config.outputDirectory });
  }
}

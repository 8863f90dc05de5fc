/**
 * Builds a QuestDbSink for tests: settings pointing at local fakes, fast reconnects, and a logger that
 * records every line (so tests can check what was said, and that no secret was).
 */
import { createConsola } from "consola";
import type { QuestDbSettings } from "../../src/sinks/questdb/settings.ts";
import type { Logger } from "../../src/core/log.ts";
import { SinkStats } from "../../src/core/stats.ts";
import { QuestDbSink } from "../../src/sinks/questdb/index.ts";

export interface MemoryLogger {
  readonly log: Logger;
  readonly lines: string[];
}

export function memoryLogger(): MemoryLogger {
  const lines: string[] = [];
  const log = createConsola({
    level: 5,
    reporters: [{ log: (entry) => lines.push(`${entry.type}: ${entry.args.map((arg) => (arg instanceof Error ? arg.message : String(arg))).join(" ")}`) }],
  });
  return { log, lines };
}

export interface TestSinkOptions {
  readonly ilpPort?: number;
  readonly httpPort?: number;
  readonly clientConf?: string;
  readonly bufferMaxBytes?: number;
  readonly env?: Readonly<Record<string, string>>;
  /** Output directory (the sink keeps pending and refused rows in its questdb/ subdirectory). */
  readonly directory?: string;
}

export interface TestSink {
  readonly sink: QuestDbSink;
  readonly stats: SinkStats;
  readonly logs: string[];
}

export function createTestSink(options: TestSinkOptions): TestSink {
  const settings: QuestDbSettings = {
    host: "127.0.0.1",
    ilpPort: options.ilpPort ?? 9009,
    httpPort: options.httpPort ?? 9000,
    clientConf: options.clientConf,
    bufferMaxBytes: options.bufferMaxBytes ?? 256 << 20,
  };
  const env = {
    QUESTDB_RECONNECT_MIN_MS: "20",
    QUESTDB_RECONNECT_MAX_MS: "200",
    QUESTDB_CONNECT_TIMEOUT_MS: "2000",
    QUESTDB_CLOSE_TIMEOUT_MS: "2000",
    ...(options.httpPort === undefined ? { QUESTDB_CREATE_TABLES: "false" } : {}),
    ...options.env,
  };
  const { log, lines } = memoryLogger();
  const stats = new SinkStats();
  const sink = new QuestDbSink({ settings, env, log, stats, directory: options.directory });
  return { sink, stats, logs: lines };
}

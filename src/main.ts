#!/usr/bin/env bun
/**
 * xtrader entry point: command line → Config → pipeline (connectors → channel → sink) until stopped.
 * Exit codes: 0 clean stop, 1 runtime failure, 2 bad user input (one line, no stack trace), 130 forced.
 */
import { buildConfig, parseCommandLine, usage } from "./cli/config.ts";
import { loadEnvironment } from "./cli/dotenv.ts";
import { VERSION_LINE } from "./cli/version.ts";
import { EXCHANGE_REGISTRY } from "./connectors/index.ts";
import { errorMessage, UserError } from "./core/errors.ts";
import { rootLogger, setLogLevel } from "./core/log.ts";
import { Pipeline } from "./core/pipeline.ts";
import { SinkStats } from "./core/stats.ts";
import { startTelemetry } from "./core/telemetry.ts";
import { createSink } from "./sinks/index.ts";

async function main(argv: readonly string[]): Promise<number> {
  const commandLine = parseCommandLine(argv);
  if (commandLine.kind === "help") {
    process.stdout.write(`${await usage()}\n`);
    return 0;
  }
  if (commandLine.kind === "version") {
    process.stdout.write(`${VERSION_LINE}\n`);
    return 0;
  }
  const env = loadEnvironment();
  const { config, warnings } = buildConfig(commandLine.args, env, EXCHANGE_REGISTRY);
  setLogLevel(config.logLevel);
  const log = rootLogger;
  for (const warning of warnings) log.warn(warning);
  log.info(
    `${VERSION_LINE} starting: ${config.subscriptions.length} subscription(s), sink ${config.sink}${
      config.sink === "parquet" ? ` → ${config.outputDirectory}` : ` → ${config.questdb.host}:${config.questdb.ilpPort}`
    }`,
  );

  process.on("unhandledRejection", (reason) => log.error(`unhandled rejection: ${errorMessage(reason)}`));
  process.on("uncaughtException", (error) => log.error(`uncaught exception: ${error.stack ?? error.message}`));

  const sinkStats = new SinkStats();
  const sink = createSink(config, log.withTag(config.sink), sinkStats);
  const pipeline = new Pipeline({ config, registry: EXCHANGE_REGISTRY, sink, sinkStats, log });
  const intervalSeconds = Number(env.XTRADER_TELEMETRY_INTERVAL_SECONDS) || 10;
  const stopTelemetry = config.verbose
    ? startTelemetry(config.subscriptions, pipeline.channel, sinkStats, log, intervalSeconds * 1000)
    : () => {};
  const code = await pipeline.run();
  stopTelemetry();
  return code;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof UserError) {
      process.stderr.write(`xtrader: error: ${error.message}\n`);
      process.exit(error.exitCode);
    }
    process.stderr.write(`xtrader: fatal: ${errorMessage(error)}\n`);
    if (process.env.RUST_LOG?.includes("debug") || process.env.RUST_LOG?.includes("trace")) {
      process.stderr.write(`${(error as Error)?.stack ?? ""}\n`);
    }
    process.exit(1);
  },
);

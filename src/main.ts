#!/usr/bin/env bun
/**
 * xtrader entry point: command line → Config → pipeline (connectors → channel → sink) until stopped.
 * Exit codes: 0 clean stop (rows kept for the next start included), 1 runtime failure or a stop that timed
 * out, 2 bad user input (one line, no stack trace), 3 stopped but rows were lost (the stop's log line says
 * how many per table), 130 forced.
 */
import { buildConfig, parseCommandLine, usage } from "./cli/config.ts";
import { loadEnvironment } from "./cli/dotenv.ts";
import { runHealthcheck } from "./cli/healthcheck.ts";
import { planText } from "./cli/shard.ts";
import { VERSION_LINE } from "./core/version.ts";
import { EXCHANGE_IDS, EXCHANGE_REGISTRY } from "./connectors/index.ts";
import { errorMessage, UserError } from "./core/errors.ts";
import { rootLogger, setLogLevel } from "./core/log.ts";
import { Pipeline } from "./core/pipeline.ts";
import { SinkStats } from "./core/stats.ts";
import { startTelemetry } from "./core/telemetry.ts";
import { startObservability } from "./observability/index.ts";
import { runReport } from "./report/index.ts";
import { configureLogging, secretsOf } from "./observability/logging.ts";
import { createSink } from "./sinks/index.ts";
import { withUpload } from "./upload/index.ts";

/** Set once logs are JSON, so that a fatal error is a JSON line too. */
let jsonLogs = false;

async function main(argv: readonly string[]): Promise<number> {
  if (argv[0] === "report") return runReport(argv.slice(1));
  if (argv[0] === "healthcheck") return runHealthcheck(argv.slice(1));
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
  const { config, warnings, debug } = buildConfig(commandLine.args, env, EXCHANGE_REGISTRY);
  if (config.printPlan) {
    process.stdout.write(`${planText(config)}\n`);
    return 0;
  }
  setLogLevel(config.logLevel);
  // Before any child logger exists: children copy the reporters of the logger they derive from.
  configureLogging(rootLogger, { format: config.logFormat, secrets: secretsOf(config) });
  jsonLogs = config.logFormat === "json";
  const log = rootLogger;
  const sinkStats = new SinkStats();
  const uploadTarget = config.upload.target;
  const upload = uploadTarget
    ? await withUpload({
        root: config.outputDirectory,
        settings: { ...config.upload, target: uploadTarget },
        env: config.env,
        log: log.withTag("upload"),
        makeSink: (onFileClosed) => createSink(config, log.withTag(config.sink), sinkStats, EXCHANGE_IDS, onFileClosed),
      })
    : undefined;
  const sink = upload?.sink ?? createSink(config, log.withTag(config.sink), sinkStats, EXCHANGE_IDS);
  const pipeline = new Pipeline({ config, registry: EXCHANGE_REGISTRY, sink, sinkStats, log });
  // Before anything is logged (a bad setting or a busy address is a one-line exit 2), and before the
  // pipeline starts, so probes answer (not ready yet) while connections open.
  const observability = startObservability(config, pipeline, { extensions: upload ? [upload.observability] : [] });
  for (const warning of warnings) log.warn(warning);
  for (const line of debug) log.debug(line);
  log.info(
    `${VERSION_LINE} starting: ${config.subscriptions.length} subscription(s), sink ${config.sink}${
      config.sink === "parquet" ? ` → ${config.outputDirectory}` : config.questdb.clientConf
          ? " → QuestDB per QDB_CLIENT_CONF" // never echoed: it may hold credentials
          : ` → ${config.questdb.host}:${config.questdb.ilpPort}`
    }`,
  );
  if (upload) {
    const { target, instanceId, keepLocal } = upload.settings;
    log.info(`uploading closed files to s3://${target.bucket}/${target.prefix} as instance ${instanceId}${keepLocal ? ", keeping local copies" : ""}`);
  }
  if (observability) log.info(`metrics on ${observability.url} (/metrics, /healthz, /readyz)`);

  // SIGHUP (`systemctl reload`): close every open file now, so what was received is readable without
  // waiting for the rotation (docs/sinks/parquet.md, "Reading fresh data").
  process.on("SIGHUP", () => {
    const closing = sink.closeOpenFiles?.().then(({ closed, pending }) =>
      log.info(`SIGHUP: closed ${closed} open file(s)${pending > 0 ? `; ${pending} still closing (retried)` : ""}; new rows start new files`),
    );
    void (closing ?? sink.flush().then(() => log.info("SIGHUP: buffered rows sent"))).catch((error: unknown) =>
      log.error(`SIGHUP: ${errorMessage(error)}`),
    );
  });
  process.on("unhandledRejection", (reason) => log.error(`unhandled rejection: ${errorMessage(reason)}`));
  process.on("uncaughtException", (error) => log.error(`uncaught exception: ${error.stack ?? error.message}`));

  const intervalSeconds = Number(env.XTRADER_TELEMETRY_INTERVAL_SECONDS) || 10;
  const stopTelemetry = config.verbose
    ? startTelemetry(config.subscriptions, pipeline.channel, sinkStats, log, intervalSeconds * 1000)
    : () => {};
  const code = await pipeline.run();
  stopTelemetry();
  await observability?.stop();
  return code;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof UserError) {
      process.stderr.write(`xtrader: error: ${error.message}\n`);
      process.exit(error.exitCode);
    }
    if (jsonLogs) {
      rootLogger.error(`fatal: ${errorMessage(error)}`, ...(error instanceof Error && error.stack ? [{ stack: error.stack }] : []));
      process.exit(1);
    }
    process.stderr.write(`xtrader: fatal: ${errorMessage(error)}\n`);
    if (process.env.RUST_LOG?.includes("debug") || process.env.RUST_LOG?.includes("trace")) {
      process.stderr.write(`${(error as Error)?.stack ?? ""}\n`);
    }
    process.exit(1);
  },
);

/**
 * Command line + environment → validated Config. Every value goes through valibot before anything
 * connects; a bad one becomes a UserError: one line naming the value and what is accepted (exit 2).
 *
 * Precedence for each setting: command-line flag, then the real environment, then `.env`, then default.
 */
import { defineCommand, parseArgs, renderUsage, type ArgsDef } from "citty";
import { existsSync, mkdirSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { stripVTControlCharacters } from "node:util";
import * as v from "valibot";
import { EXCHANGE_REGISTRY, SUBSCRIPTION_EXAMPLE } from "../connectors/index.ts";
import type { Config } from "../core/config.ts";
import { SINKS, type SinkSettings } from "../sinks/index.ts";
import { colourWanted } from "../observability/logging.ts";
import { UserError } from "../core/errors.ts";
import { parseRustLog } from "../core/log.ts";
import type { ExchangeRegistry } from "../core/connector.ts";
import { parseSubscriptions } from "../core/subscriptions.ts";
import { VERSION_LINE } from "../core/version.ts";
import { DEFAULT_MAX_FRAME_BYTES, MAX_FRAME_BYTES_ENV, MAX_FRAME_BYTES_LIMIT, MIN_FRAME_BYTES } from "../connectors/websocket.ts";
import type { Environment } from "./dotenv.ts";
import { resolveEnvironmentReferences } from "./env-reference.ts";
import { checkEnvironment } from "./environment.ts";
import { instrumentKey, parseShard, takeShard, type Shard } from "./shard.ts";
import { uploadSettings, type CliUploadSettings } from "./upload.ts";
import { BOOLEAN_WORDS, check, choice, integer, MAX_TIMER_SECONDS, positiveSeconds } from "./rules.ts";

export const LOG_FORMATS = ["text", "json"] as const;
export const COMPRESSIONS = ["zstd", "snappy", "none"] as const;

/**
 * Every flag, with the environment variable it falls back to. Flags of later features (sinks, metrics)
 * live here too so that the CLI is one table and unknown flags can be rejected.
 */
export const ARGS = {
  subscriptions: {
    type: "string",
    description: `STREAM:EXCHANGE@INSTRUMENT[,...] (env SUBSCRIPTIONS), e.g. ${SUBSCRIPTION_EXAMPLE}`,
    valueHint: "list",
  },
  shard: {
    type: "string",
    description:
      "Take shard K of N of --subscriptions (env SHARD): all of an instrument's subscriptions on one shard; K may be 'ordinal' (StatefulSet pod name xtrader-K)",
    valueHint: "K/N",
  },
  "print-plan": { type: "boolean", description: "Print the subscriptions this instance takes (after --shard) and exit" },
  sink: { type: "string", description: "parquet | questdb (default parquet)", valueHint: "name" },
  "output-directory": {
    type: "string",
    description: "Parquet output directory (default ./data; env OUTPUT_DIRECTORY)",
    valueHint: "dir",
  },
  verbose: { type: "boolean", description: "Telemetry line per subscription every 10 s" },
  "shutdown-after": {
    type: "string",
    description: "Stop cleanly after this many seconds (default: run until SIGINT/SIGTERM)",
    valueHint: "seconds",
  },
  "rotate-interval": {
    type: "string",
    description: "Parquet: start a new file at each boundary of this interval, UTC (default 1h; env ROTATE_INTERVAL)",
    valueHint: "30s|15m|1h",
  },
  "max-file-rows": {
    type: "string",
    description: "Parquet: start a new file after this many rows (default 5000000; env MAX_FILE_ROWS)",
    valueHint: "rows",
  },
  "max-file-bytes": {
    type: "string",
    description: "Parquet: start a new file after about this many bytes (default 512MiB; env MAX_FILE_BYTES)",
    valueHint: "bytes",
  },
  compression: {
    type: "string",
    description: "Parquet: zstd | snappy | none (default zstd; env PARQUET_COMPRESSION)",
    valueHint: "codec",
  },
  "upload-url": {
    type: "string",
    description: "Parquet: upload every closed file to s3://BUCKET/PREFIX, verified, then delete it locally (env UPLOAD_URL)",
    valueHint: "s3://bucket/prefix",
  },
  "keep-local": { type: "boolean", description: "With --upload-url: keep the local copy of uploaded files (env KEEP_LOCAL)" },
  "max-local-bytes": {
    type: "string",
    description: "With --upload-url: bytes of closed files waiting for upload past which the pipeline is held (default 8GiB; env MAX_LOCAL_BYTES)",
    valueHint: "bytes",
  },
  "instance-id": {
    type: "string",
    description: "With --upload-url: this instance's name in object names (default: pod name, ECS task id or host name; env INSTANCE_ID)",
    valueHint: "name",
  },
  "metrics-addr": {
    type: "string",
    description:
      "Serve /metrics, /healthz, /readyz on HOST:PORT (default off; env METRICS_ADDR). :PORT or 0.0.0.0:PORT binds every interface; use 127.0.0.1:PORT or the pod IP to limit who can reach it",
    valueHint: "host:port",
  },
  "log-format": {
    type: "string",
    description: "text | json (default text; env LOG_FORMAT)",
    valueHint: "format",
  },
  help: { type: "boolean", description: "Show this help", alias: "h" },
  version: { type: "boolean", description: "Show the version", alias: "V" },
} as const satisfies ArgsDef;

export const command = defineCommand({
  meta: {
    name: "xtrader",
    description: "Records crypto exchange market data to Parquet files or QuestDB (what the files hold: xtrader report --help; container health checks: xtrader healthcheck --help)",
  },
  args: ARGS,
});

/** The help text; colour codes only for a terminal without NO_COLOR (`--help | less`, `> file` get none). */
export async function usage(colour = colourWanted(process.stdout)): Promise<string> {
  const text = await renderUsage(command);
  return `${colour ? text : stripVTControlCharacters(text)}\n\n${ENVIRONMENT_HELP}`;
}

const ENVIRONMENT_HELP = `Environment (a .env file in the working directory is loaded; real variables win):
  SUBSCRIPTIONS            used when --subscriptions is not given
  SHARD                    used when --shard is not given
  DERIBIT_CLIENT_ID        Deribit API credentials (optional; both or neither)
  DERIBIT_CLIENT_SECRET
  DERIBIT_USE_TESTNET      true (default) or false
  QUESTDB_HOST             QuestDB host for ILP/TCP (default 127.0.0.1)
  QUESTDB_ILP_PORT         QuestDB ILP/TCP port (default 9009)
  QUESTDB_HTTP_PORT        QuestDB HTTP port for table creation (default 9000)
  QDB_CLIENT_CONF          full @questdb/nodejs-client configuration string (overrides host/port)
  RUST_LOG                 error | warn | info | debug | trace, or target=level,... (default info)
  XTRADER_<EXCHANGE>_WS_URL, XTRADER_<EXCHANGE>_REST_URL   endpoint overrides (proxies, tests)
  AWS_REGION, AWS_ENDPOINT_URL_S3   with --upload-url: the bucket's region, an S3-compatible store's endpoint;
                           credentials as the AWS SDKs find them (keys, task role, IRSA, instance profile)

A flag value that is exactly \${NAME}, $NAME or $(NAME) (unexpanded, e.g. from an ECS task definition) is read
from the environment variable NAME. Every variable: README.md.`;

export type ParsedCommandLine =
  | { readonly kind: "help" }
  | { readonly kind: "version" }
  | { readonly kind: "run"; readonly args: Readonly<Record<string, unknown>> };

/** Every spelling of a flag (name and alias) → its name. */
const CANONICAL_FLAG = new Map<string, keyof typeof ARGS>(
  (Object.entries(ARGS) as [keyof typeof ARGS, (typeof ARGS)[keyof typeof ARGS]][]).flatMap(([name, def]) => [
    [name, name] as const,
    ...("alias" in def ? [[def.alias, name] as const] : []),
  ]),
);
const KNOWN_FLAGS = new Set<string>(CANONICAL_FLAG.keys());

/** Parses argv (without the executable and script), rejecting unknown, repeated and malformed flags and stray words. */
export function parseCommandLine(argv: readonly string[]): ParsedCommandLine {
  const seen = new Set<string>();
  for (const token of argv) {
    // Negative numbers are values (`--shutdown-after -1` must reach its own validation message).
    if (!token.startsWith("-") || token === "-" || token === "--" || /^-\d/.test(token)) continue;
    const [written, value] = splitOnce(token.replace(/^--?/, ""), "=");
    const name = written.replace(/^no-/, "");
    if (!KNOWN_FLAGS.has(name)) {
      throw new UserError(`unknown option '${token}'; see --help for the accepted options`);
    }
    const canonical = CANONICAL_FLAG.get(name)!;
    // citty keeps the last of repeated options: the other one would be dropped without a word.
    if (seen.has(canonical)) throw new UserError(`option --${canonical} is given more than once; give it once`);
    seen.add(canonical);
    // citty reads `--verbose=maybe` as true: a boolean flag takes no value, or an explicit true/false.
    if (ARGS[canonical].type === "boolean" && value !== undefined && !(BOOLEAN_WORDS as readonly string[]).includes(value.toLowerCase())) {
      throw new UserError(`invalid ${token}; --${canonical} takes no value (or --${canonical}=true / --${canonical}=false)`);
    }
  }
  const args = parseArgs(argv as string[], ARGS) as Record<string, unknown> & { _: string[] };
  if (args.help) return { kind: "help" };
  if (args.version) return { kind: "version" };
  if (args._.length > 0) {
    throw new UserError(`unexpected argument '${args._[0]}'; options are given as --name value (see --help)`);
  }
  for (const [name, def] of Object.entries(ARGS)) {
    if (def.type === "string" && args[name] === "") {
      throw new UserError(`option --${name} needs a value`);
    }
  }
  return { kind: "run", args };
}

function splitOnce(text: string, separator: string): [string, string | undefined] {
  const at = text.indexOf(separator);
  return at < 0 ? [text, undefined] : [text.slice(0, at), text.slice(at + 1)];
}

const SHUTDOWN_AFTER = v.pipe(
  v.string(),
  v.trim(),
  v.regex(
    /^\d{1,16}(\.\d{1,6})?$/,
    (issue) => `invalid --shutdown-after '${issue.input}'; expected a number of seconds >= 0`,
  ),
  v.transform(Number),
  // Longer than a timer can wait (2^31-1 ms): it would fire at once.
  v.maxValue(MAX_TIMER_SECONDS, (issue) => `invalid --shutdown-after '${issue.input}'; expected at most ${MAX_TIMER_SECONDS} seconds`),
);

const DURATION_UNITS: Record<string, number> = { "": 1, s: 1, m: 60, h: 3600, d: 86_400 };
const duration = (name: string) =>
  v.pipe(
    v.string(),
    v.trim(),
    v.toLowerCase(),
    v.regex(/^[1-9]\d*[smhd]?$/, (issue) => `invalid ${name} '${issue.input}'; expected a duration like 30s, 15m, 1h`),
    v.transform((text) => Number.parseInt(text, 10) * DURATION_UNITS[text.replace(/^\d+/, "")]!),
  );

/** HOST:PORT of the metrics endpoint (`:PORT` = every interface), as the collector and `healthcheck` read it. */
export const HOST_PORT = v.pipe(
  v.string(),
  v.trim(),
  v.regex(
    /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+)?:\d{1,5}$/,
    (issue) => `invalid metrics address '${issue.input}'; expected HOST:PORT, e.g. 127.0.0.1:9464`,
  ),
  v.transform((text) => {
    const colon = text.lastIndexOf(":");
    return { host: text.slice(0, colon).replace(/^\[|\]$/g, "") || "0.0.0.0", port: Number(text.slice(colon + 1)) };
  }),
  v.check(({ port }) => port <= 65_535, "invalid metrics address: port must be at most 65535"),
);

const HOST = v.pipe(
  v.string(),
  v.trim(),
  v.regex(/^[A-Za-z0-9.\-:\[\]]+$/, (issue) => `invalid QUESTDB_HOST '${issue.input}'; expected a host name or IP address`),
);

/** The shared Config plus the sinks' settings (the CLI's flags for them live in this one table). */
export type RunConfig = Config &
  SinkSettings & {
    /** This instance's share of the fleet's subscriptions; undefined = all of them. */
    readonly shard: (Shard & { readonly fleetSubscriptions: number; readonly fleetInstruments: number }) | undefined;
    /** `--print-plan`: print the subscriptions and exit, creating nothing. */
    readonly printPlan: boolean;
    /** Upload of closed files to object storage; on when `upload.target` is set. */
    readonly upload: CliUploadSettings;
  };

/**
 * Builds the Config from parsed flags and the merged environment. Checks the output directory exists
 * (creating it) and is writable when the Parquet sink is selected.
 */
export function buildConfig(
  commandLineArgs: Readonly<Record<string, unknown>>,
  env: Environment,
  registry: ExchangeRegistry = EXCHANGE_REGISTRY,
): { config: RunConfig; warnings: string[]; debug: readonly string[] } {
  const warnings: string[] = [];
  // `--subscriptions ${SUBSCRIPTIONS}` from an ECS task definition arrives unexpanded (env-reference.ts).
  const { args, debug } = resolveEnvironmentReferences(commandLineArgs, env);
  const flag = (name: string): string | undefined => {
    const value = args[name];
    return typeof value === "string" ? value : undefined;
  };
  const setting = (flagName: string | undefined, envName: string): string | undefined => {
    const fromFlag = flagName ? flag(flagName) : undefined;
    if (fromFlag !== undefined) return fromFlag;
    const fromEnv = env[envName];
    return fromEnv !== undefined && fromEnv.trim() !== "" ? fromEnv : undefined;
  };

  const logLevelText = setting(undefined, "RUST_LOG");
  const logLevel = logLevelText === undefined ? "info" : parseRustLog(logLevelText);
  if (typeof logLevel !== "string") throw new UserError(logLevel.error);

  const subscriptionsText = setting("subscriptions", "SUBSCRIPTIONS");
  if (subscriptionsText === undefined) {
    throw new UserError(
      `missing --subscriptions (or SUBSCRIPTIONS in the environment); expected STREAM:EXCHANGE@INSTRUMENT[,...], e.g. ${SUBSCRIPTION_EXAMPLE}`,
    );
  }
  const { subscriptions: fleetSubscriptions, duplicates } = parseSubscriptions(subscriptionsText, registry, SUBSCRIPTION_EXAMPLE);
  for (const duplicate of duplicates) warnings.push(`duplicate subscription '${duplicate}' ignored`);
  const printPlan = args["print-plan"] === true;
  const shardText = setting("shard", "SHARD");
  const shardOfFleet = shardText === undefined ? undefined : parseShard(shardText, env);
  const subscriptions = shardOfFleet ? takeShard(fleetSubscriptions, shardOfFleet) : fleetSubscriptions;
  const shard = shardOfFleet && {
    ...shardOfFleet,
    fleetSubscriptions: fleetSubscriptions.length,
    fleetInstruments: new Set(fleetSubscriptions.map(instrumentKey)).size,
  };
  if (shard && subscriptions.length === 0 && !printPlan) {
    throw new UserError(
      `shard ${shard.index}/${shard.count} takes none of the ${shard.fleetInstruments} instrument(s) of --subscriptions; run fewer shards than instruments (see --print-plan)`,
    );
  }

  const sink = check(choice("sink", SINKS), setting("sink", "SINK") ?? "parquet");
  const shutdownText = flag("shutdown-after");
  const shutdownAfterSeconds =
    shutdownText === undefined ? undefined : check(SHUTDOWN_AFTER, shutdownText);

  const outputDirectory = resolve(setting("output-directory", "OUTPUT_DIRECTORY") ?? "./data");
  if (sink === "parquet" && !printPlan) ensureWritableDirectory(outputDirectory);

  // Each venue's own settings (Deribit's credentials and network), checked by its declaration.
  for (const [exchange, spec] of Object.entries(registry)) {
    spec.checkSettings?.(env, subscriptions.some((subscription) => subscription.exchange === exchange));
  }

  const questdbHost = check(HOST, env.QUESTDB_HOST?.trim() || "127.0.0.1");
  const ilpPort = check(integer("QUESTDB_ILP_PORT", 1, 65_535), env.QUESTDB_ILP_PORT?.trim() || "9009");
  const httpPort = check(integer("QUESTDB_HTTP_PORT", 1, 65_535), env.QUESTDB_HTTP_PORT?.trim() || "9000");
  const bufferMaxBytes = check(
    integer("QUESTDB_BUFFER_MAX_BYTES", 1 << 20),
    env.QUESTDB_BUFFER_MAX_BYTES?.trim() || String(256 << 20),
  );
  const upload = uploadSettings({ setting, env, keepLocalFlag: args["keep-local"], sink });
  const metricsText = setting("metrics-addr", "METRICS_ADDR");
  for (const name of ["XTRADER_SHUTDOWN_TIMEOUT_SECONDS", "XTRADER_TELEMETRY_INTERVAL_SECONDS"]) {
    const text = env[name]?.trim();
    if (text) check(positiveSeconds(name), text);
  }
  warnings.push(...checkEnvironment(env, { exchanges: Object.keys(registry), subscriptions, registry }));
  // Read by Bun itself at process start (threads of its pool for file operations and compression); checked
  // here so that a typo is a one-line error instead of a silently ignored setting.
  const threadPoolText = env.UV_THREADPOOL_SIZE?.trim();
  if (threadPoolText) check(integer("UV_THREADPOOL_SIZE", 1, 1024), threadPoolText);

  const config: RunConfig = {
    subscriptions,
    sink,
    outputDirectory,
    verbose: args.verbose === true,
    shutdownAfterSeconds,
    logLevel,
    logFormat: check(choice("log format", LOG_FORMATS), setting("log-format", "LOG_FORMAT") ?? "text"),
    metrics: metricsText === undefined ? undefined : check(HOST_PORT, metricsText),
    questdb: {
      host: questdbHost,
      ilpPort,
      httpPort,
      clientConf: env.QDB_CLIENT_CONF?.trim() || undefined,
      bufferMaxBytes,
    },
    parquet: {
      rotateIntervalSeconds: check(duration("rotate interval"), setting("rotate-interval", "ROTATE_INTERVAL") ?? "1h"),
      maxFileRows: check(integer("max file rows", 1), setting("max-file-rows", "MAX_FILE_ROWS") ?? "5000000"),
      maxFileBytes: check(
        integer("max file bytes", 1 << 16),
        setting("max-file-bytes", "MAX_FILE_BYTES") ?? String(512 * 1024 * 1024),
      ),
      compression: check(choice("compression", COMPRESSIONS), setting("compression", "PARQUET_COMPRESSION") ?? "zstd"),
    },
    queueCapacityRows: check(
      integer("XTRADER_QUEUE_CAPACITY", 1000),
      env.XTRADER_QUEUE_CAPACITY?.trim() || "500000",
    ),
    maxFrameBytes: check(
      integer(MAX_FRAME_BYTES_ENV, MIN_FRAME_BYTES, MAX_FRAME_BYTES_LIMIT),
      env[MAX_FRAME_BYTES_ENV]?.trim() || String(DEFAULT_MAX_FRAME_BYTES),
    ),
    env,
    shard,
    printPlan,
    upload,
  };
  return { config, warnings, debug };
}

function ensureWritableDirectory(directory: string): void {
  if (existsSync(directory) && !statSync(directory).isDirectory()) {
    throw new UserError(`output directory '${directory}' is not a directory; give a writable --output-directory`);
  }
  try {
    mkdirSync(directory, { recursive: true });
  } catch (error) {
    throw new UserError(
      `cannot create output directory '${directory}': ${(error as NodeJS.ErrnoException).code ?? String(error)}; give a writable --output-directory`,
    );
  }
  // A probe file, not access(2): root passes access checks on read-only mounts and foreign directories.
  const probe = join(directory, `.xtrader-write-probe-${process.pid}`);
  try {
    writeFileSync(probe, "");
    unlinkSync(probe);
  } catch (error) {
    throw new UserError(
      `output directory '${directory}' is not writable (${(error as NodeJS.ErrnoException).code ?? String(error)}); give a writable --output-directory`,
    );
  }
}

export { VERSION_LINE };

/**
 * The defaults that systemd/xtrader.env.example and README.md's environment table show are the code's:
 * uncommenting a line of the example changes no setting, and the README's default column says the same.
 *
 * Every documented flag and environment variable refuses garbage, generated from README.md's two tables,
 * so that a new knob cannot skip validation: a variable read anywhere in src/ must be in the README's
 * table (else this fails), and every name in the tables gets garbage of its kind, which must be refused
 * with a one-line UserError naming the knob or quoting the value, through the same steps main.ts takes
 * before anything connects (command line, configuration, sink creation).
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ARGS, buildConfig, parseCommandLine } from "../src/cli/config.ts";
import { LIMITS as BINANCE_LIMITS } from "../src/connectors/binance-futures.ts";
import { LIMITS as BINANCE_SPOT_LIMITS } from "../src/connectors/binance-spot.ts";
import { deribitSettings } from "../src/connectors/deribit.ts";
import { EXCHANGE_IDS, EXCHANGE_REGISTRY } from "../src/connectors/index.ts";
import { backoffFromEnv } from "../src/connectors/websocket.ts";
import { resyncBrakeFromEnv } from "../src/connectors/kit/resync-brake.ts";
import { UserError } from "../src/core/errors.ts";
import { createLogger } from "../src/core/log.ts";
import { SinkStats } from "../src/core/stats.ts";
import { lagLimitSeconds } from "../src/observability/index.ts";
import { stalenessWindows } from "../src/observability/readiness.ts";
import { createSink } from "../src/sinks/index.ts";
import { parquetTuningFromEnv } from "../src/sinks/parquet/settings.ts";
import { resolveSettings } from "../src/sinks/questdb/settings.ts";
import { ROOT } from "./support/binary.ts";

const README = readFileSync(join(ROOT, "README.md"), "utf8");
const EXCHANGES = Object.keys(EXCHANGE_REGISTRY);
const scratch = mkdtempSync(join(tmpdir(), "xtrader-knobs-"));
const aFile = join(scratch, "a-file");
writeFileSync(aFile, "");
const log = createLogger("error");

/** Backticked tokens of the first cell of each row of the table under `heading`. */
function firstCells(heading: string): string[][] {
  const section = README.slice(README.indexOf(`## ${heading}\n`));
  const body = section.slice(0, section.indexOf("\n## ", 3));
  const rows = body.split("\n").filter((line) => line.startsWith("| ") && !line.startsWith("| ---"));
  return rows.slice(1).map((row) => [...row.split(" | ")[0]!.matchAll(/`([^`]+)`/g)].map((match) => match[1]!));
}

/** The README's flags, by name. */
const documentedFlags = firstCells("Command line")
  .flat()
  .filter((token) => token.startsWith("--"))
  .map((token) => token.slice(2).split(" ")[0]!);

/** The README's variables, `<EXCHANGE>` expanded over the registry. */
const documentedVariables = [
  ...new Set(
    firstCells("Environment")
      .flat()
      .flatMap((name) => (name.includes("<EXCHANGE>") ? EXCHANGES.map((id) => name.replace("<EXCHANGE>", id)) : [name])),
  ),
];

/** Default column of a variable's row (for booleans). */
function defaultOf(name: string): string {
  const row = README.split("\n").find((line) => line.startsWith("| ") && line.split(" | ")[0]!.includes(`\`${name}\``));
  return row?.split(" | ")[1]?.trim() ?? "";
}

function sourceFiles(directory: string): string[] {
  return readdirSync(directory, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sourceFiles(join(directory, entry.name)) : entry.name.endsWith(".ts") ? [join(directory, entry.name)] : [],
  );
}

/**
 * Names of variables read in src/: `env.NAME`, `env["NAME"]`, flag fallbacks `setting(flag, "NAME")`,
 * and string or template literals that are a whole variable name of xtrader's prefixes (a template's
 * `${...}` parts match any name part).
 */
function variablesReadInSource(): { literal: Set<string>; patterns: RegExp[] } {
  const literal = new Set<string>();
  const patterns: RegExp[] = [];
  for (const file of sourceFiles(join(ROOT, "src"))) {
    const text = readFileSync(file, "utf8");
    for (const match of text.matchAll(/\benv\??\.([A-Z][A-Z0-9_]+)\b|\benv\[\s*"([A-Z][A-Z0-9_]+)"\s*\]|\bsetting\([^,()]*,\s*"([A-Z][A-Z0-9_]+)"\)/g)) {
      literal.add((match[1] ?? match[2] ?? match[3])!);
    }
    for (const match of text.matchAll(/(["'`])((?:XTRADER|PARQUET|QUESTDB|QDB|DERIBIT)_[A-Za-z0-9${}][A-Za-z0-9_${}]*)\1/g)) {
      const name = match[2]!;
      if (!name.includes("${")) literal.add(name);
      else patterns.push(new RegExp(`^${name.replace(/\$\{[^}]*\}/g, "[A-Z0-9_]+")}$`));
    }
  }
  return { literal, patterns };
}

const NUMERIC = /_(MS|SECONDS|BYTES|ROWS|GROUPS|PORT|SIZE|CAPACITY|CONNECTION)$/;
const NUMBER_GARBAGE = ["-1", "abc", "1e309", "0x10", "12abc", "Infinity", "1.5e3"];
const TEXT_GARBAGE = ["no such thing!"];

/** Garbage a variable must refuse, by the kind its name and README row give it. */
function garbageFor(name: string): string[] {
  if (name === "NO_COLOR") return []; // any value means "no colour" (https://no-color.org)
  // Names the platform gives the instance: any value is a name (only `--shard ordinal/N` parses one).
  if (name === "POD_NAME" || name === "HOSTNAME") return [];
  // Set by ECS itself; an unusable value only means the host name is used as the instance's name.
  if (name === "ECS_CONTAINER_METADATA_URI_V4") return [];
  if (name === "OUTPUT_DIRECTORY") return [join(aFile, "sub")];
  if (name === "XTRADER_RECONNECT_MIN_MS" || name === "XTRADER_RECONNECT_MAX_MS") return [...NUMBER_GARBAGE, "0"];
  if (NUMERIC.test(name)) return NUMBER_GARBAGE;
  if (name.endsWith("_WS_URL")) return ["notaurl", "http://127.0.0.1:9000", "127.0.0.1:9000", "ws://"];
  if (name.endsWith("_REST_URL")) return ["notaurl", "ws://127.0.0.1:9000", "127.0.0.1:9000", "ftp://127.0.0.1"];
  if (["`true`", "`false`"].includes(defaultOf(name))) return ["maybe", "2"];
  return TEXT_GARBAGE;
}

/** What main.ts does before anything connects: command line, configuration, sink. */
function prepare(argv: readonly string[], env: Record<string, string>): void {
  const parsed = parseCommandLine(argv);
  if (parsed.kind !== "run") throw new Error(`expected a run, got ${parsed.kind}`);
  const { config } = buildConfig(parsed.args, env, EXCHANGE_REGISTRY);
  createSink(config, log, new SinkStats(), EXCHANGE_IDS);
}

/** Arguments and environment that start cleanly, in which `name` is in effect. */
function contextFor(name: string): { argv: string[]; env: Record<string, string> } {
  const env: Record<string, string> = { OUTPUT_DIRECTORY: scratch };
  const argv: string[] = [];
  let subscriptions = "TRADES:BINANCE_FUTURES@BTCUSDT";
  if (name.startsWith("QUESTDB_") || name.startsWith("QDB_")) argv.push("--sink", "questdb");
  if (name.startsWith("DERIBIT_")) subscriptions = "TRADES:DERIBIT@BTC-PERPETUAL";
  // Credentials come in pairs: the garbage replaces one of two good ones.
  if (name === "DERIBIT_CLIENT_ID" || name === "DERIBIT_CLIENT_SECRET") Object.assign(env, { DERIBIT_CLIENT_ID: "client1", DERIBIT_CLIENT_SECRET: "secret1" });
  if (name === "SUBSCRIPTIONS") env.SUBSCRIPTIONS = subscriptions;
  else argv.push("--subscriptions", subscriptions);
  return { argv, env };
}

function refusal(run: () => void): string | undefined {
  try {
    run();
  } catch (error) {
    if (!(error instanceof UserError)) throw error;
    expect(error.message).not.toContain("\n");
    return error.message;
  }
  return undefined;
}

describe("the README's tables are complete", () => {
  test("every variable read in src/ is documented in the README's environment table", () => {
    const { literal, patterns } = variablesReadInSource();
    const undocumented = [...literal].filter((name) => !documentedVariables.includes(name));
    expect(undocumented).toEqual([]);
    for (const pattern of patterns) expect(documentedVariables.some((name) => pattern.test(name)), String(pattern)).toBe(true);
    // The scan finds what it must (a broken scan would pass the check above vacuously).
    expect(literal.has("XTRADER_RECONNECT_MIN_MS")).toBe(true);
    expect(literal.has("PARQUET_ROW_GROUP_ROWS")).toBe(true);
    expect(literal.has("SINK")).toBe(true);
  });

  test("every flag is documented in the README's command-line table, and only those", () => {
    expect([...documentedFlags].sort()).toEqual(Object.keys(ARGS).sort());
  });

  test("the baseline of every variable's test starts cleanly", () => {
    for (const name of documentedVariables) {
      const { argv, env } = contextFor(name);
      expect(refusal(() => prepare(argv, env)), name).toBeUndefined();
    }
  });
});

describe("every documented variable refuses garbage with one line", () => {
  test.each(documentedVariables.flatMap((name) => garbageFor(name).map((value) => [name, value] as const)))(
    "%s=%p",
    (name, value) => {
      const { argv, env } = contextFor(name);
      const message = refusal(() => prepare(argv, { ...env, [name]: value }));
      expect(message, `${name}=${value} was accepted`).toBeDefined();
      expect(message!.includes(name) || message!.includes(value), message).toBe(true);
    },
  );
});

describe("every documented flag refuses garbage with one line", () => {
  const NUMERIC_FLAGS = ["max-file-rows", "max-file-bytes", "shutdown-after"];
  const cases = documentedFlags.flatMap((flag): (readonly [string, readonly string[]])[] => {
    if (flag === "help" || flag === "version") return [];
    if (ARGS[flag as keyof typeof ARGS].type === "boolean") return [[flag, [`--${flag}=maybe`]]];
    if (flag === "output-directory") return [[flag, [`--${flag}`, join(aFile, "sub")]]];
    const values = NUMERIC_FLAGS.includes(flag) ? NUMBER_GARBAGE : TEXT_GARBAGE;
    return values.map((value) => [flag, [`--${flag}`, value]] as const);
  });
  test.each(cases)("--%s %p", (flag, tokens) => {
    const argv = flag === "subscriptions" ? [...tokens] : ["--subscriptions", "TRADES:BINANCE_FUTURES@BTCUSDT", ...tokens];
    const message = refusal(() => prepare(argv, { OUTPUT_DIRECTORY: scratch }));
    expect(message, `${tokens.join(" ")} was accepted`).toBeDefined();
    expect(message!.includes(`--${flag}`) || message!.includes(flag.replaceAll("-", " ")) || message!.includes(tokens.at(-1)!), message).toBe(true);
  });
});

describe("the defaults shown in systemd/xtrader.env.example and the README are the code's", () => {
  const exampleText = readFileSync(join(ROOT, "systemd/xtrader.env.example"), "utf8");
  /** `#NAME=value` lines: the default a commented line shows (an empty value means unset). */
  const shown = new Map([...exampleText.matchAll(/^#([A-Z][A-Z0-9_]*)=(.*)$/gm)].map((match) => [match[1]!, match[2]!] as const));
  const EXAMPLE_SUBSCRIPTIONS = "TRADES:BINANCE_FUTURES@BTCUSDT,TRADES:DERIBIT@BTC-PERPETUAL";
  /** Set by the unit and the image, not by the code: the line shows what runs under the unit. */
  const SET_BY_THE_UNIT = ["UV_THREADPOOL_SIZE"];
  /** Read at run time by code that has no resolver to call: their defaults, as declared there. */
  const DECLARED_ELSEWHERE: Record<string, number> = {
    XTRADER_BINANCE_FUTURES_CONNECTION_MAX_AGE_MS: BINANCE_LIMITS.connectionMaxAgeMs,
    XTRADER_BINANCE_FUTURES_STREAMS_PER_CONNECTION: BINANCE_LIMITS.streamsPerConnection,
    XTRADER_BINANCE_FUTURES_REQUEST_TIMEOUT_MS: BINANCE_LIMITS.requestAnswerTimeoutMs,
    XTRADER_BINANCE_SPOT_CONNECTION_MAX_AGE_MS: BINANCE_SPOT_LIMITS.connectionMaxAgeMs,
    XTRADER_BINANCE_SPOT_STREAMS_PER_CONNECTION: BINANCE_SPOT_LIMITS.streamsPerConnection,
    XTRADER_BINANCE_SPOT_REQUEST_TIMEOUT_MS: BINANCE_SPOT_LIMITS.requestAnswerTimeoutMs,
  };

  /** Every setting the code derives from an environment, the way main.ts and the sinks derive them. */
  function effective(env: Record<string, string>): unknown {
    const previous = process.cwd();
    process.chdir(scratch); // OUTPUT_DIRECTORY=./data is relative to the working directory
    try {
      const { config } = buildConfig({ subscriptions: EXAMPLE_SUBSCRIPTIONS }, env, EXCHANGE_REGISTRY);
      const { env: _merged, ...settings } = config;
      const { senderOptions: _client, ...questdb } = resolveSettings(config.questdb, config.env, log);
      return {
        settings,
        parquet: parquetTuningFromEnv(config.env),
        questdb,
        // Venues read their own settings from the same environment (each venue's declaration).
        deribit: deribitSettings(config.env),
        backoff: backoffFromEnv(config.env),
        resyncBrake: resyncBrakeFromEnv(config.env),
        eventLoopLagLimit: lagLimitSeconds(config.env),
        staleness: [...stalenessWindows(config.subscriptions, config.env.XTRADER_STALENESS_WINDOWS, EXCHANGE_REGISTRY).values()],
      };
    } finally {
      process.chdir(previous);
    }
  }

  /** A different value of the same kind: the code must react to it (a change, or a refusal). */
  function otherValue(value: string): string {
    if (/^\d+$/.test(value)) return String(Number(value) === 1 ? 2 : 1);
    if (value === "true" || value === "false") return value === "true" ? "false" : "true";
    return `${value}x`;
  }

  function reacts(name: string, value: string): boolean {
    try {
      return !Bun.deepEquals(effective({ [name]: value }), effective({}));
    } catch (error) {
      if (error instanceof UserError) return true;
      throw error;
    }
  }

  /**
   * Defaults written inline where they are read (src/core/pipeline.ts, src/main.ts), with nothing to import:
   * compared with the README's default column only.
   */
  const README_ONLY = ["XTRADER_SHUTDOWN_TIMEOUT_SECONDS", "XTRADER_TELEMETRY_INTERVAL_SECONDS"];

  const resolvable = [...shown].filter(
    ([name, value]) => value !== "" && !SET_BY_THE_UNIT.includes(name) && !README_ONLY.includes(name) && !(name in DECLARED_ELSEWHERE),
  );

  test.each(resolvable)("uncommenting #%s=%s changes no setting", (name, value) => {
    expect(effective({ [name]: value })).toEqual(effective({}));
    // And the comparison can see the variable at all (else the line above proves nothing).
    expect(reacts(name, otherValue(value)), `${name} is not seen by the settings compared`).toBe(true);
  });

  test("defaults read by connectors are the ones they declare; the unit's own value is the unit's", () => {
    for (const [name, value] of Object.entries(DECLARED_ELSEWHERE)) expect(shown.get(name), name).toBe(String(value));
    const unit = readFileSync(join(ROOT, "systemd/xtrader@.service"), "utf8");
    for (const name of SET_BY_THE_UNIT) expect(unit).toContain(`Environment=${name}=${shown.get(name)}\n`);
  });

  test("the README's default column agrees with the example", () => {
    const rows = README.split("\n").filter((line) => line.startsWith("| `"));
    let compared = 0;
    for (const row of rows) {
      const [namesCell, defaultCell] = row.slice(2).split(" | ");
      const names = [...namesCell!.matchAll(/`([^`]+)`/g)].map((match) => match[1]!);
      // Numbers (`4194304 (4 MiB)` is 4194304, `256 MiB` is 268435456) or backticked words, one per name.
      const defaults = defaultCell!.split(", ").map((text) => {
        const mebibytes = /^(\d+) MiB$/.exec(text.trim());
        if (mebibytes) return String(Number(mebibytes[1]) * 1024 * 1024);
        return /^`?([\w.-]+)`?/.exec(text.trim())?.[1];
      });
      if (defaults.some((value) => value === undefined || !/^(\d+|true|false|[a-z0-9.-]+)$/.test(value))) continue;
      if (["as", "venue", "per", "Bun"].includes(defaultCell!.trim().split(/[ ']/)[0]!)) continue;
      names.forEach((name, index) => {
        const expected = defaults.length === 1 ? defaults[0] : defaults[index];
        if (!shown.get(name)) return; // not in the example, or shown unset
        expect(`${name}=${shown.get(name)}`).toBe(`${name}=${expected}`);
        compared++;
      });
    }
    expect(compared).toBeGreaterThan(10);
    for (const name of README_ONLY) expect(defaultOf(name), name).toBe(shown.get(name)!);
  });

  test("the README's environment table names SINK, which compose and Kubernetes set", () => {
    expect(documentedVariables).toContain("SINK");
  });
});

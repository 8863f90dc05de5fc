import { describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildConfig, parseCommandLine, usage } from "../src/cli/config.ts";
import { loadEnvironment, parseDotenv } from "../src/cli/dotenv.ts";
import { deribitSettings } from "../src/connectors/deribit.ts";
import { EXCHANGE_REGISTRY } from "../src/connectors/index.ts";
import type { ExchangeSpec } from "../src/core/connector.ts";
import { UserError } from "../src/core/errors.ts";
import { parseRustLog } from "../src/core/log.ts";
import { runBinary } from "./support/binary.ts";
import { userError } from "./support/user-error.ts";

const outputDirectory = mkdtempSync(join(tmpdir(), "xtrader-cli-"));
const base = { subscriptions: "TRADES:BINANCE_FUTURES@BTCUSDT", "output-directory": outputDirectory };

function config(args: Record<string, unknown>, env: Record<string, string> = {}) {
  return buildConfig({ ...base, ...args }, env).config;
}


describe("subscriptions", () => {
  test("parses the grammar, case-insensitive stream and exchange, whitespace-tolerant", () => {
    const { subscriptions } = config({
      subscriptions: " l2 : okx_swap @ btcusdt , TRADES:BINANCE_FUTURES@ethusdt,bbo:DERIBIT@BTC-PERPETUAL ,",
    });
    expect(subscriptions.map((s) => s.key)).toEqual([
      "L2:OKX_SWAP@BTCUSDT",
      "TRADES:BINANCE_FUTURES@ETHUSDT",
      "BBO:DERIBIT@BTC-PERPETUAL",
    ]);
    expect(subscriptions[0]).toMatchObject({ stream: "L2", exchange: "OKX_SWAP", symbol: "BTCUSDT" });
  });

  test("L1 is an alias of BBO", () => {
    expect(config({ subscriptions: "L1:BINANCE_FUTURES@BTCUSDT" }).subscriptions[0]!.stream).toBe("BBO");
  });

  test("exact duplicates are dropped with a warning", () => {
    const { config: built, warnings } = buildConfig(
      { ...base, subscriptions: "TRADES:BINANCE_FUTURES@BTCUSDT, trades:binance_futures@btcusdt" },
      {},
    );
    expect(built.subscriptions).toHaveLength(1);
    expect(warnings).toEqual(["duplicate subscription 'trades:binance_futures@btcusdt' ignored"]);
  });

  test("falls back to SUBSCRIPTIONS from the environment; the flag wins", () => {
    const fromEnv = buildConfig({ "output-directory": outputDirectory }, { SUBSCRIPTIONS: "BBO:BINANCE_FUTURES@ETHUSDT" });
    expect(fromEnv.config.subscriptions[0]!.key).toBe("BBO:BINANCE_FUTURES@ETHUSDT");
    const fromFlag = config({}, { SUBSCRIPTIONS: "BBO:BINANCE_FUTURES@ETHUSDT" });
    expect(fromFlag.subscriptions[0]!.key).toBe("TRADES:BINANCE_FUTURES@BTCUSDT");
  });

  test.each([
    ["L3:OKX_SWAP@BTCUSDT", "unknown stream 'L3' in 'L3:OKX_SWAP@BTCUSDT'; supported: TRADES, L2, BBO, FUNDING, LIQUIDATIONS (L1 = BBO)"],
    ["L2:KRAKEN@BTCUSD", "unknown exchange 'KRAKEN' in 'L2:KRAKEN@BTCUSD'; supported: BINANCE_FUTURES, BINANCE_SPOT, OKX_SWAP, OKX_SPOT, DERIBIT"],
    ["L2-OKX_SWAP-BTCUSDT", "malformed subscription 'L2-OKX_SWAP-BTCUSDT'; expected STREAM:EXCHANGE@INSTRUMENT, e.g. L2:OKX_SWAP@BTCUSDT"],
    ["L2:OKX_SWAP@", "malformed subscription 'L2:OKX_SWAP@'; expected STREAM:EXCHANGE@INSTRUMENT, e.g. L2:OKX_SWAP@BTCUSDT"],
    ["FUNDING:OKX_SPOT@BTCUSDT", "stream 'FUNDING' is not offered by OKX_SPOT in 'FUNDING:OKX_SPOT@BTCUSDT'; OKX_SPOT offers: TRADES, L2, BBO"],
    ["LIQUIDATIONS:BINANCE_SPOT@BTCUSDT", "stream 'LIQUIDATIONS' is not offered by BINANCE_SPOT in 'LIQUIDATIONS:BINANCE_SPOT@BTCUSDT'; BINANCE_SPOT offers: TRADES, L2, BBO"],
    ["TRADES:BINANCE_FUTURES@BTC$USDT", "invalid instrument 'BTC$USDT' in 'TRADES:BINANCE_FUTURES@BTC$USDT'; expected letters, digits and . _ - / (e.g. BTCUSDT)"],
    [" , ", "no subscription in ' , '; expected STREAM:EXCHANGE@INSTRUMENT[,...], e.g. L2:OKX_SWAP@BTCUSDT"],
  ])("rejects %p with one line", (subscriptions, expected) => {
    expect(userError(() => config({ subscriptions }))).toBe(expected);
  });

  test("missing subscriptions names the flag and the variable", () => {
    expect(userError(() => buildConfig({ "output-directory": outputDirectory }, {}))).toStartWith(
      "missing --subscriptions (or SUBSCRIPTIONS in the environment)",
    );
  });
});

describe("flags and environment", () => {
  test("defaults", () => {
    const built = config({});
    expect(built.sink).toBe("parquet");
    expect(built.verbose).toBe(false);
    expect(built.shutdownAfterSeconds).toBeUndefined();
    expect(built.logLevel).toBe("info");
    // Deribit's settings are read by the venue from the config's environment, as its connector does.
    expect(deribitSettings(built.env)).toEqual({ useTestnet: true, credentials: undefined });
    expect(built.questdb).toMatchObject({ host: "127.0.0.1", ilpPort: 9009, httpPort: 9000 });
    expect(built.parquet).toMatchObject({ rotateIntervalSeconds: 3600, compression: "zstd" });
  });

  test("output directory defaults to ./data and is created", () => {
    const cwd = process.cwd();
    const directory = mkdtempSync(join(tmpdir(), "xtrader-cwd-"));
    process.chdir(directory);
    try {
      const built = buildConfig({ subscriptions: base.subscriptions }, {}).config;
      expect(built.outputDirectory).toBe(join(directory, "data"));
      expect(Bun.file(join(directory, "data")).size).toBeGreaterThanOrEqual(0);
    } finally {
      process.chdir(cwd);
    }
  });

  test("values are read: sink, shutdown-after, verbose, environment", () => {
    const built = config(
      { sink: "QuestDB", "shutdown-after": "2.5", verbose: true },
      {
        QUESTDB_HOST: "db.internal",
        QUESTDB_ILP_PORT: "19009",
        DERIBIT_USE_TESTNET: "false",
        DERIBIT_CLIENT_ID: "id",
        DERIBIT_CLIENT_SECRET: "secret",
        RUST_LOG: "warn,xtrader=debug",
      },
    );
    expect(built.sink).toBe("questdb");
    expect(built.shutdownAfterSeconds).toBe(2.5);
    expect(built.verbose).toBe(true);
    expect(built.questdb).toMatchObject({ host: "db.internal", ilpPort: 19009 });
    expect(deribitSettings(built.env)).toEqual({ useTestnet: false, credentials: { clientId: "id", clientSecret: "secret" } });
    expect(built.logLevel).toBe("debug");
  });

  test.each([
    [{ sink: "kafka" }, {}, "invalid sink 'kafka'; accepted: parquet, questdb"],
    [{ "shutdown-after": "-5" }, {}, "invalid --shutdown-after '-5'; expected a number of seconds >= 0"],
    [{ "shutdown-after": "soon" }, {}, "invalid --shutdown-after 'soon'; expected a number of seconds >= 0"],
    [{}, { QUESTDB_ILP_PORT: "nine" }, "invalid QUESTDB_ILP_PORT 'nine'; expected a whole number from 1 to 65535"],
    [{}, { QUESTDB_ILP_PORT: "70000" }, "invalid QUESTDB_ILP_PORT '70000'; expected a whole number from 1 to 65535"],
    [{}, { DERIBIT_USE_TESTNET: "maybe" }, "invalid DERIBIT_USE_TESTNET 'maybe'; accepted: true or false"],
    [{}, { RUST_LOG: "loud" }, "invalid RUST_LOG level 'loud' in 'loud'; accepted: error, warn, info, debug, trace (or target=level,...)"],
    [{ compression: "lz4" }, {}, "invalid compression 'lz4'; accepted: zstd, snappy, none"],
    [{ "rotate-interval": "soon" }, {}, "invalid rotate interval 'soon'; expected a duration like 30s, 15m, 1h"],
    [{ "metrics-addr": "nowhere" }, {}, "invalid metrics address 'nowhere'; expected HOST:PORT, e.g. 127.0.0.1:9464"],
    [{ "log-format": "xml" }, {}, "invalid log format 'xml'; accepted: text, json"],
    [{}, { UV_THREADPOOL_SIZE: "sixteen" }, "invalid UV_THREADPOOL_SIZE 'sixteen'; expected a whole number from 1 to 1024"],
    [{}, { UV_THREADPOOL_SIZE: "0" }, "invalid UV_THREADPOOL_SIZE '0'; expected a whole number from 1 to 1024"],
  ])("rejects %p %p with one line", (args, env, expected) => {
    expect(userError(() => config(args, env as Record<string, string>))).toBe(expected);
  });

  test("reconnect bounds: plain whole milliseconds, the first not above the second", () => {
    for (const value of ["-1", "abc", "1e309", "0"]) {
      expect(userError(() => config({}, { XTRADER_RECONNECT_MIN_MS: value }))).toBe(
        `invalid XTRADER_RECONNECT_MIN_MS '${value}'; expected a whole number from 1 to 2147483647`,
      );
    }
    expect(userError(() => config({}, { XTRADER_RECONNECT_MIN_MS: "5000", XTRADER_RECONNECT_MAX_MS: "1000" }))).toBe(
      "XTRADER_RECONNECT_MIN_MS '5000' is above XTRADER_RECONNECT_MAX_MS '1000'; the first reconnect delay cannot exceed the cap",
    );
    expect(config({}, { XTRADER_RECONNECT_MIN_MS: "50", XTRADER_RECONNECT_MAX_MS: "200" }).subscriptions).toHaveLength(1);
  });

  test("endpoint overrides must be ws(s):// and http(s):// URLs", () => {
    expect(userError(() => config({}, { XTRADER_BINANCE_FUTURES_WS_URL: "notaurl" }))).toBe(
      "invalid XTRADER_BINANCE_FUTURES_WS_URL 'notaurl'; expected a ws:// or wss:// URL with a host, e.g. ws://127.0.0.1:9000",
    );
    expect(userError(() => config({}, { XTRADER_OKX_SPOT_REST_URL: "wss://www.okx.com" }))).toBe(
      "invalid XTRADER_OKX_SPOT_REST_URL 'wss://www.okx.com'; expected a http:// or https:// URL with a host, e.g. http://127.0.0.1:9000",
    );
    expect(config({}, { XTRADER_BINANCE_FUTURES_WS_URL: "wss://fstream.binance.com/", XTRADER_BINANCE_FUTURES_REST_URL: "http://[::1]:8080" }).sink).toBe("parquet");
  });

  test("a credential with spaces or control characters is refused without echoing it", () => {
    const message = userError(() =>
      config({ subscriptions: "TRADES:DERIBIT@BTC-PERPETUAL" }, { DERIBIT_CLIENT_ID: "id", DERIBIT_CLIENT_SECRET: "s3cr et" }),
    );
    expect(message).toBe("invalid DERIBIT_CLIENT_SECRET: expected printable characters without spaces (the value is not shown)");
  });

  test("an XTRADER_ variable that xtrader does not read is reported", () => {
    const { warnings } = buildConfig({ ...base }, { XTRADER_RECONECT_MIN_MS: "50", XTRADER_QUEUE_CAPACITY: "1000" });
    expect(warnings).toEqual(["unknown variable XTRADER_RECONECT_MIN_MS ignored; the variables are listed in README.md"]);
  });

  test("XTRADER_MAX_FRAME_BYTES: default 4 MiB, bounded by Bun's own 128 MiB", () => {
    expect(config({}).maxFrameBytes).toBe(4 << 20);
    expect(config({}, { XTRADER_MAX_FRAME_BYTES: "1048576" }).maxFrameBytes).toBe(1 << 20);
    expect(userError(() => config({}, { XTRADER_MAX_FRAME_BYTES: "134217729" }))).toBe(
      "invalid XTRADER_MAX_FRAME_BYTES '134217729'; expected a whole number from 65536 to 134217728",
    );
  });

  test("the observability variables are checked whether or not metrics are on", () => {
    expect(userError(() => config({}, { XTRADER_EVENT_LOOP_LAG_LIMIT_SECONDS: "0" }))).toBe(
      "invalid XTRADER_EVENT_LOOP_LAG_LIMIT_SECONDS '0'; expected a number of seconds > 0, e.g. 5",
    );
    expect(userError(() => config({}, { XTRADER_STALENESS_WINDOWS: "TRADES" }))).toStartWith(
      "invalid XTRADER_STALENESS_WINDOWS entry 'TRADES': missing '='",
    );
  });

  test("an output directory that cannot be created or written is rejected", () => {
    const file = join(outputDirectory, "a-file");
    writeFileSync(file, "");
    expect(userError(() => config({ "output-directory": join(file, "sub") }))).toStartWith(
      `cannot create output directory '${join(file, "sub")}'`,
    );
    expect(userError(() => config({ "output-directory": file }))).toBe(
      `output directory '${file}' is not a directory; give a writable --output-directory`,
    );
  });

  test("Deribit credentials: one of the two is an error only for Deribit subscriptions", () => {
    expect(
      userError(() => config({ subscriptions: "TRADES:DERIBIT@BTC-PERPETUAL" }, { DERIBIT_CLIENT_ID: "id" })),
    ).toBe(
      "DERIBIT_CLIENT_ID is set but DERIBIT_CLIENT_SECRET is not; set both for authenticated Deribit channels, or neither for public ones",
    );
    expect(deribitSettings(config({}, { DERIBIT_CLIENT_ID: "id" }).env, false).credentials).toBeUndefined();
  });

  test("a venue's own settings are checked by its declaration, before anything connects, knowing whether it is in use", () => {
    const seen: boolean[] = [];
    const newVenue: ExchangeSpec = {
      ...EXCHANGE_REGISTRY.DERIBIT!,
      id: "NEW_VENUE",
      nativeInstrument: (symbol) => ({ native: symbol }),
      checkSettings: (env, inUse) => {
        seen.push(inUse);
        if (inUse && !env.NEW_VENUE_API_KEY) throw new UserError("NEW_VENUE_API_KEY is not set; NEW_VENUE needs an API key");
      },
    };
    const registry = { ...EXCHANGE_REGISTRY, NEW_VENUE: newVenue };
    const build = (subscriptions: string, env: Record<string, string> = {}) =>
      buildConfig({ ...base, subscriptions }, env, registry).config;
    expect(userError(() => build("TRADES:NEW_VENUE@XBTUSD"))).toBe("NEW_VENUE_API_KEY is not set; NEW_VENUE needs an API key");
    expect(build("TRADES:NEW_VENUE@XBTUSD", { NEW_VENUE_API_KEY: "key" }).subscriptions.map((s) => s.key)).toEqual(["TRADES:NEW_VENUE@XBTUSD"]);
    expect(build("TRADES:BINANCE_FUTURES@BTCUSDT").subscriptions).toHaveLength(1);
    expect(seen).toEqual([true, true, false]);
  });

  test("RUST_LOG forms", () => {
    expect(parseRustLog("trace")).toBe("trace");
    expect(parseRustLog("xtrader=debug")).toBe("debug");
    expect(parseRustLog("error,hyper=warn,xtrader=info")).toBe("info");
    expect(parseRustLog("off")).toBe("error");
    expect(parseRustLog("")).toBe("info");
  });
});

describe("command line", () => {
  test("--help says that --metrics-addr :PORT binds every interface and how to limit it", async () => {
    const text = (await usage()).replace(/\s+/g, " ");
    expect(text).toContain(":PORT or 0.0.0.0:PORT binds every interface; use 127.0.0.1:PORT or the pod IP");
  });

  test("help and version", () => {
    expect(parseCommandLine(["--help"]).kind).toBe("help");
    expect(parseCommandLine(["-h"]).kind).toBe("help");
    expect(parseCommandLine(["--version"]).kind).toBe("version");
  });

  test("unknown options and stray words are rejected", () => {
    expect(userError(() => parseCommandLine(["--subscription", "x"]))).toBe(
      "unknown option '--subscription'; see --help for the accepted options",
    );
    expect(userError(() => parseCommandLine(["TRADES:BINANCE_FUTURES@BTCUSDT"]))).toBe(
      "unexpected argument 'TRADES:BINANCE_FUTURES@BTCUSDT'; options are given as --name value (see --help)",
    );
    expect(userError(() => parseCommandLine(["--sink"]))).toBe("option --sink needs a value");
  });

  test("a negative number is a value, not an option, so its own validation names it", () => {
    const parsed = parseCommandLine(["--subscriptions", "TRADES:BINANCE_FUTURES@BTCUSDT", "--shutdown-after", "-1"]);
    expect(parsed).toMatchObject({ kind: "run", args: { "shutdown-after": "-1" } });
    if (parsed.kind !== "run") throw new Error("expected run");
    expect(userError(() => buildConfig({ ...parsed.args, "output-directory": outputDirectory }, {}))).toBe(
      "invalid --shutdown-after '-1'; expected a number of seconds >= 0",
    );
  });

  test("a boolean flag takes no value but true or false: --verbose=maybe is refused", () => {
    expect(userError(() => parseCommandLine(["--verbose=maybe"]))).toBe(
      "invalid --verbose=maybe; --verbose takes no value (or --verbose=true / --verbose=false)",
    );
    expect(userError(() => parseCommandLine(["--help=please"]))).toStartWith("invalid --help=please;");
    expect(parseCommandLine(["--verbose=false"])).toMatchObject({ kind: "run", args: { verbose: false } });
    expect(parseCommandLine(["--verbose=TRUE"])).toMatchObject({ kind: "run", args: { verbose: true } });
  });

  test("an option given twice is refused instead of the last one silently winning", () => {
    expect(userError(() => parseCommandLine(["--sink=questdb", "--sink", "parquet"]))).toBe(
      "option --sink is given more than once; give it once",
    );
    expect(userError(() => parseCommandLine(["-h", "--help"]))).toBe("option --help is given more than once; give it once");
  });

  test("--name=value and --name value both work", () => {
    const parsed = parseCommandLine(["--subscriptions=TRADES:BINANCE_FUTURES@BTCUSDT", "--sink", "questdb", "--verbose"]);
    expect(parsed).toMatchObject({
      kind: "run",
      args: { subscriptions: "TRADES:BINANCE_FUTURES@BTCUSDT", sink: "questdb", verbose: true },
    });
  });
});

describe(".env", () => {
  test("parses comments, export, quotes and escapes", () => {
    expect(
      parseDotenv(
        [
          "# comment",
          "export A=1",
          "B = two words # trailing comment",
          "C='single # kept'",
          'D="line\\nbreak \\"quoted\\""',
          "E=",
        ].join("\n"),
      ),
    ).toEqual({ A: "1", B: "two words", C: "single # kept", D: 'line\nbreak "quoted"', E: "" });
  });

  test("a line that is not KEY=value is a one-line error with its number", () => {
    expect(userError(() => parseDotenv("A=1\nnot a pair\n", ".env"))).toBe(".env line 2 is not KEY=value (it starts with 'not')");
    // A secret typed with ':' instead of '=' is never echoed.
    const message = userError(() => parseDotenv("DERIBIT_CLIENT_SECRET: s3cr3t-value\n", ".env"));
    expect(message).toBe(".env line 1 is not KEY=value (it starts with 'DERIBIT_CLIENT_SECRET')");
    expect(message).not.toContain("s3cr3t");
  });

  test.each([
    ['A="unterminated', '.env line 1: the " quote of A is not closed on its line'],
    ["B='unterminated", ".env line 1: the ' quote of B is not closed on its line"],
    ['C="x\\"', '.env line 1: the " quote of C is not closed on its line'],
    ['D="x" y', ".env line 1: unexpected text after the quoted value of D; only a # comment may follow it"],
  ])("a quote that does not close (or is followed by more than a comment) is refused: %p", (line, expected) => {
    expect(userError(() => parseDotenv(`${line}\n`, ".env"))).toBe(expected);
  });

  test("a quoted value followed by a comment is fine", () => {
    expect(parseDotenv("A=\"x y\" # note\nB='z' \n")).toEqual({ A: "x y", B: "z" });
  });

  test(".env that is a directory, too large, or not text is refused with one line", () => {
    const directory = mkdtempSync(join(tmpdir(), "xtrader-dotenv-"));
    mkdirSync(join(directory, ".env"));
    expect(userError(() => loadEnvironment({}, directory))).toBe(
      `${join(directory, ".env")} is a directory, not a regular file; .env must be a regular file of at most 1048576 bytes`,
    );
    const large = mkdtempSync(join(tmpdir(), "xtrader-dotenv-"));
    writeFileSync(join(large, ".env"), `A=${"x".repeat(1 << 20)}\n`);
    expect(userError(() => loadEnvironment({}, large))).toStartWith(`${join(large, ".env")} is larger than 1048576 bytes`);
    const binary = mkdtempSync(join(tmpdir(), "xtrader-dotenv-"));
    writeFileSync(join(binary, ".env"), "A=1\0\n");
    expect(userError(() => loadEnvironment({}, binary))).toBe(`${join(binary, ".env")} holds NUL bytes; .env must be text`);
    const dangling = mkdtempSync(join(tmpdir(), "xtrader-dotenv-"));
    symlinkSync(join(dangling, "missing"), join(dangling, ".env"));
    expect(userError(() => loadEnvironment({}, dangling))).toBe(`cannot read ${join(dangling, ".env")}: it is a link to nothing`);
  });

  // The binary, killed after 10 s: before the bound, a FIFO blocked the start forever and /dev/zero was
  // read until memory ran out.
  test.each([
    ["a FIFO", (path: string) => Bun.spawnSync(["mkfifo", path]), "is a FIFO, not a regular file"],
    ["a link to /dev/zero", (path: string) => symlinkSync("/dev/zero", path), "is a character device, not a regular file"],
  ])(".env that is %s: exit 2 with one line, at once", async (_, make, expected) => {
    const directory = mkdtempSync(join(tmpdir(), "xtrader-dotenv-"));
    make(join(directory, ".env"));
    const result = await runBinary(["--subscriptions", "TRADES:BINANCE_FUTURES@BTCUSDT"], { cwd: directory, timeoutMs: 10_000 });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toBe(
      `xtrader: error: ${join(directory, ".env")} ${expected}; .env must be a regular file of at most 1048576 bytes\n`,
    );
  }, 15_000);

  test("the real environment wins over .env", () => {
    const directory = mkdtempSync(join(tmpdir(), "xtrader-dotenv-"));
    writeFileSync(join(directory, ".env"), "QUESTDB_HOST=from-file\nQUESTDB_ILP_PORT=1234\n");
    const env = loadEnvironment({ QUESTDB_HOST: "from-env" }, directory);
    expect(env.QUESTDB_HOST).toBe("from-env");
    expect(env.QUESTDB_ILP_PORT).toBe("1234");
  });
});

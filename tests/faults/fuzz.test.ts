/**
 * Bad input fuzzing (seeded, so every run tries the same inputs):
 * - user input: random and mutated subscription strings and environment values. Thousands go through the
 *   configuration code in-process (it may accept or refuse, but only with a one-line UserError); a sample
 *   runs the compiled binary, which must either start and stop cleanly (exit 0) or exit 2 with exactly one
 *   line `xtrader: error: ...` on stderr: never a crash, a stack trace, exit 1 or a hang;
 * - exchange input: mutated and random frames from every venue, mixed into a live market. The process
 *   never crashes or throws out of a handler, counts parse errors, and never writes a crossed book or a
 *   delta before a snapshot.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { buildConfig } from "../../src/cli/config.ts";
import { EXCHANGE_REGISTRY } from "../../src/connectors/index.ts";
import { UserError } from "../../src/core/errors.ts";
import { ensureBinary } from "../support/binary.ts";
import { seededRandom } from "../support/random.ts";
import { cleanup, finish, startScenario } from "./scenario.ts";
import { checkBooks } from "./verify.ts";
import { workDirectory } from "./xtrader.ts";

afterEach(cleanup);

type Random = () => number;
const pick = <T>(random: Random, items: readonly T[]): T => items[Math.floor(random() * items.length)]!;

const VALID_TOKENS = [
  "TRADES:BINANCE_FUTURES@BTCUSDT",
  "L2:OKX_SWAP@BTC-USDT-SWAP",
  "BBO:OKX_SPOT@BTC-USDT",
  "L1:DERIBIT@BTC-PERPETUAL",
  "FUNDING:DERIBIT@ETHUSD",
  "LIQUIDATIONS:BINANCE_FUTURES@1000PEPEUSDT",
  "l2:binance_futures@ethusdt_260626",
];
const JUNK = ["", " ", ",", ":", "@", "::", "@@", "\t", "\n", "é", "€", "🙂", "\u0000", "\u202e", "%", "/", "..", "-", "_", "0", "9".repeat(40), "a".repeat(300), "TRADES", "OKX", "L3", "KRAKEN"];

/** A subscription string: valid tokens, then random edits (insert junk, delete, swap case, duplicate). */
function mutatedSubscriptions(random: Random): string {
  const tokens = Array.from({ length: 1 + Math.floor(random() * 3) }, () => pick(random, VALID_TOKENS));
  let text = tokens.join(pick(random, [",", ", ", " ,", ",,"]));
  const edits = Math.floor(random() * 4);
  for (let i = 0; i < edits; i++) {
    const at = Math.floor(random() * (text.length + 1));
    switch (Math.floor(random() * 5)) {
      case 0:
        text = text.slice(0, at) + pick(random, JUNK) + text.slice(at);
        break;
      case 1:
        text = text.slice(0, at) + text.slice(at + 1 + Math.floor(random() * 4));
        break;
      case 2:
        text = text.slice(0, at) + text.slice(at).toLowerCase();
        break;
      case 3:
        text = text + text.slice(at);
        break;
      default:
        text = text.slice(0, at) + String.fromCharCode(Math.floor(random() * 0x3000)) + text.slice(at);
    }
  }
  return text;
}

const ENV_VALUES = ["", " ", "-1", "0", "1", "abc", "1e309", "NaN", "Infinity", " 12 ", "99999999999999999999", "0x10", "1.5", "true", "off", "１２", "\u0000", "1h", "-5m", "127.0.0.1:", ":99999", "[::1]:9464", "a=b,c", "L2=abc", "debug,xtrader=verbose"];
const ENV_NAMES = [
  "RUST_LOG",
  "LOG_FORMAT",
  "SINK",
  "ROTATE_INTERVAL",
  "MAX_FILE_ROWS",
  "MAX_FILE_BYTES",
  "PARQUET_COMPRESSION",
  "PARQUET_FLUSH_INTERVAL_MS",
  "PARQUET_ROW_GROUP_ROWS",
  "PARQUET_MAX_BUFFERED_ROWS",
  "METRICS_ADDR",
  "XTRADER_QUEUE_CAPACITY",
  "DERIBIT_USE_TESTNET",
  "DERIBIT_CLIENT_ID",
  "QUESTDB_HOST",
  "QUESTDB_ILP_PORT",
  "QUESTDB_HTTP_PORT",
  "QUESTDB_BUFFER_MAX_BYTES",
  "QUESTDB_FLUSH_INTERVAL_MS",
  "QDB_CLIENT_CONF",
  "XTRADER_STALENESS_WINDOWS",
  "XTRADER_EVENT_LOOP_LAG_LIMIT_SECONDS",
  "XTRADER_RECONNECT_MIN_MS",
  "XTRADER_BINANCE_FUTURES_CONNECTION_MAX_AGE_MS",
  "XTRADER_OKX_SWAP_STALE_MS",
  "XTRADER_DERIBIT_STALE_AFTER_MS",
  "XTRADER_SHUTDOWN_TIMEOUT_SECONDS",
  "XTRADER_TELEMETRY_INTERVAL_SECONDS",
];

/** Nothing can be reached: every venue points at a closed local port. */
const OFFLINE = {
  XTRADER_BINANCE_FUTURES_WS_URL: "ws://127.0.0.1:9",
  XTRADER_BINANCE_FUTURES_REST_URL: "http://127.0.0.1:9",
  XTRADER_OKX_SWAP_WS_URL: "ws://127.0.0.1:9/ws/v5/public",
  XTRADER_OKX_SWAP_REST_URL: "http://127.0.0.1:9",
  XTRADER_OKX_SPOT_WS_URL: "ws://127.0.0.1:9/ws/v5/public",
  XTRADER_OKX_SPOT_REST_URL: "http://127.0.0.1:9",
  XTRADER_DERIBIT_WS_URL: "ws://127.0.0.1:9/ws/api/v2",
  QUESTDB_HOST: "127.0.0.1",
  QUESTDB_ILP_PORT: "9",
  QUESTDB_HTTP_PORT: "9",
};

interface Case {
  readonly args: string[];
  readonly env: Record<string, string>;
}

/** Runs the binary once; the outcome every bad or odd input must have (a problem, or undefined). */
async function runCase(directory: string, input: Case, codes: number[]): Promise<string | undefined> {
  // argv and the environment cannot carry NUL (the OS ends strings there); use another control character.
  const noNul = (text: string) => text.replaceAll("\u0000", "\u0001");
  input = { args: input.args.map(noNul), env: Object.fromEntries(Object.entries(input.env).map(([name, value]) => [name, noNul(value)])) };
  // A case that gives its own --shutdown-after must not have it twice (refused as such, not for its value).
  const stop = input.args.includes("--shutdown-after") ? [] : ["--shutdown-after", "0"];
  const child = Bun.spawn([ensureBinary(), ...stop, "--output-directory", join(directory, "data"), ...input.args], {
    cwd: directory,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", XTRADER_SHUTDOWN_TIMEOUT_SECONDS: "5", ...OFFLINE, ...input.env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  clearTimeout(timer);
  codes.push(code);
  const what = JSON.stringify(input);
  if (code === 2) {
    if (stdout !== "" || !/^xtrader: error: [^\n]+\n$/.test(stderr)) return `${what}: exit 2 but output was ${JSON.stringify({ stdout: stdout.slice(0, 300), stderr: stderr.slice(0, 300) })}`;
    return undefined;
  }
  if (code !== 0) return `${what}: exit ${code}${child.signalCode ? ` (${child.signalCode})` : ""}: ${stderr.slice(0, 300)} ${stdout.slice(-300)}`;
  if (/fatal|uncaught|unhandled|Error:|    at /.test(stdout + stderr)) return `${what}: exit 0 but logged ${(stdout + stderr).slice(0, 400)}`;
  return undefined;
}

/** Runs cases `concurrency` at a time; returns the problems and the exit codes. */
async function runCases(cases: readonly Case[], concurrency = 4): Promise<{ problems: string[]; codes: number[] }> {
  const problems: string[] = [];
  const codes: number[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < cases.length) {
        const input = cases[next++]!;
        const problem = await runCase(workDirectory("xtrader-fuzz-"), input, codes);
        if (problem) problems.push(problem);
      }
    }),
  );
  return { problems, codes };
}

describe("bad input fuzzing", () => {
  test("2000 mutated subscription strings and environments: accepted, or refused with one UserError line; nothing else", () => {
    const random = seededRandom(51);
    const output = workDirectory("xtrader-fuzz-");
    const problems: string[] = [];
    let refused = 0;
    for (let i = 0; i < 2000; i++) {
      const subscriptions = mutatedSubscriptions(random);
      const env: Record<string, string> = {};
      if (random() < 0.5) env[pick(random, ENV_NAMES)] = pick(random, ENV_VALUES);
      try {
        buildConfig({ subscriptions, "output-directory": output }, env, EXCHANGE_REGISTRY);
      } catch (error) {
        refused++;
        if (!(error instanceof UserError)) problems.push(`${JSON.stringify({ subscriptions, env })}: ${String(error)}`);
        else if (error.message === "" || error.message.includes("\n")) problems.push(`${JSON.stringify({ subscriptions, env })}: not one line: ${JSON.stringify(error.message)}`);
      }
    }
    expect(problems).toEqual([]);
    // The mutations produce both kinds, so both paths were exercised.
    expect(refused).toBeGreaterThan(500);
    expect(refused).toBeLessThan(2000);
  });

  test(
    "the compiled binary on 48 mutated subscription strings and bad environment values: exit 0, or exit 2 with one line",
    async () => {
      const random = seededRandom(52);
      const cases: Case[] = [];
      for (let i = 0; i < 24; i++) cases.push({ args: ["--subscriptions", mutatedSubscriptions(random)], env: {} });
      for (let i = 0; i < 24; i++) {
        const env: Record<string, string> = { [pick(random, ENV_NAMES)]: pick(random, ENV_VALUES) };
        if (random() < 0.3) env[pick(random, ENV_NAMES)] = pick(random, ENV_VALUES);
        cases.push({ args: ["--subscriptions", pick(random, VALID_TOKENS), ...(random() < 0.3 ? ["--sink", "questdb"] : [])], env });
      }
      const { problems, codes } = await runCases(cases);
      expect(problems).toEqual([]);
      // Values no timer can wait for, or negative ones, are refused rather than firing at once.
      const refused: Case[] = [
        { args: ["--subscriptions", VALID_TOKENS[0]!], env: { XTRADER_SHUTDOWN_TIMEOUT_SECONDS: "-5" } },
        { args: ["--subscriptions", VALID_TOKENS[0]!], env: { XTRADER_TELEMETRY_INTERVAL_SECONDS: "1e12" } },
        { args: ["--subscriptions", VALID_TOKENS[0]!, "--shutdown-after", "99999999999"], env: {} },
      ];
      const explicit = await runCases(refused, 3);
      expect(explicit.problems).toEqual([]);
      expect(explicit.codes).toEqual([2, 2, 2]);
      // Both outcomes happened: some inputs were accepted (started, stopped), others refused.
      expect(codes.filter((code) => code === 0).length).toBeGreaterThan(5);
      expect(codes.filter((code) => code === 2).length).toBeGreaterThan(5);
    },
    90_000,
  );

  test(
    "absurd values of the venue tuning knobs (1e12 ms, 0, -1): refused at start with one line, never ignored",
    async () => {
      const knobs = [
        "XTRADER_BINANCE_FUTURES_CONNECTION_MAX_AGE_MS",
        "XTRADER_BINANCE_FUTURES_STALE_AFTER_MS",
        "XTRADER_BINANCE_FUTURES_REQUEST_TIMEOUT_MS",
        "XTRADER_OKX_SWAP_STALE_MS",
        "XTRADER_OKX_SWAP_KEEPALIVE_MS",
        "XTRADER_OKX_SPOT_SNAPSHOT_WAIT_MS",
        "XTRADER_DERIBIT_STALE_AFTER_MS",
        "XTRADER_RECONNECT_MIN_MS",
        "XTRADER_RECONNECT_MAX_MS",
      ];
      const cases: Case[] = knobs.flatMap((name) =>
        ["1e12", "2147483648", "0", "-1"].map((value) => ({ args: ["--subscriptions", VALID_TOKENS[0]!], env: { [name]: value } })),
      );
      const { problems, codes } = await runCases(cases);
      expect(problems).toEqual([]);
      expect(codes).toEqual(cases.map(() => 2));
    },
    60_000,
  );

  test(
    "mutated and random exchange frames on every venue, mixed into a live market: no crash, parse errors counted, no bad book written",
    async () => {
      const running = await startScenario({ seed: 53, args: ["--metrics-addr", "127.0.0.1:0"] });
      const { venues, xtrader } = running;
      const random = seededRandom(54);
      // Real frames of each venue, captured from what the fakes send, as mutation seeds.
      const samples = { binance: [] as string[], okx: [] as string[], deribit: [] as string[] };
      for (const [name, exchange] of [["binance", venues.binance.fake.exchange], ["okx", venues.okx.fake.exchange], ["deribit", venues.deribit.fake.exchange]] as const) {
        const connection = exchange.openConnections()[0]!;
        const original = connection.send.bind(connection);
        connection.send = (message: unknown) => {
          if (samples[name].length < 200) samples[name].push(typeof message === "string" ? message : JSON.stringify(message));
          return original(message);
        };
      }
      await venues.run(800);
      let sent = 0;
      for (let round = 0; round < 30; round++) {
        venues.step();
        venues.binance.fake.sendRaw(mutateFrame(random, pick(random, samples.binance)));
        venues.okx.fake.sendRaw(mutateFrame(random, pick(random, samples.okx)));
        venues.deribit.fake.sendRaw(mutateFrame(random, pick(random, samples.deribit)));
        sent += 3;
        await Bun.sleep(20);
      }
      await venues.run(1000);
      expect(xtrader.running).toBe(true);
      for (const exchange of ["BINANCE_FUTURES", "OKX_SWAP", "DERIBIT"]) {
        expect(await xtrader.metric("xtrader_parse_errors_total", { exchange }), exchange).toBeGreaterThan(0);
      }
      const output = await finish(running);
      expect(sent).toBe(90);
      expect(xtrader.logs.filter((line) => /handler failed|uncaught|unhandled|fatal/i.test(line.message))).toEqual([]);
      // Mutated frames may carry plausible data, so the truth is not asserted here; structure is.
      const structural = checkBooks(output, venues.truth).problems.filter((problem) => /^(crossed book written|delta before snapshot)/.test(problem));
      expect(structural).toEqual([]);
      expect(output.leftovers).toEqual([]);
    },
    60_000,
  );
});

const ODD_VALUES: unknown[] = [null, true, -1, 0, 1e308, -1e308, "", "NaN", "1e999", "-0", "abc", [], {}, [[["deep"]]], "x".repeat(10_000), "\u0000\ud800", 2 ** 53 + 1];

/** One mutation of a JSON frame: a field removed, retyped or replaced, the text cut or corrupted. */
function mutateFrame(random: Random, text: string): string {
  const roll = random();
  if (roll < 0.15) return text.slice(0, Math.floor(random() * text.length));
  if (roll < 0.25) {
    const at = Math.floor(random() * text.length);
    return text.slice(0, at) + pick(random, ["{", "}", '"', ",", ":", "\\", "]", "\u0000", "💥"]) + text.slice(at + 1);
  }
  if (roll < 0.3) return pick(random, ["", "null", "[]", "{}", "1", '"text"', "pong", "ping", "{".repeat(5000)]);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return text;
  }
  // Walk to a random object inside the frame and change one of its fields.
  let target = value as Record<string, unknown>;
  for (let depth = 0; depth < 4; depth++) {
    const children = Object.values(target).filter((child) => child !== null && typeof child === "object") as Record<string, unknown>[];
    if (children.length === 0 || random() < 0.3) break;
    target = pick(random, children);
  }
  const keys = Object.keys(target);
  if (keys.length > 0) {
    const key = pick(random, keys);
    if (random() < 0.3) delete target[key];
    else target[key] = pick(random, ODD_VALUES);
  }
  return JSON.stringify(value);
}

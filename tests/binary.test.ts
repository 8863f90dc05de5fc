import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import packageJson from "../package.json" with { type: "json" };
import { ensureBinary, runBinary } from "./support/binary.ts";
import { FakeBinanceFutures } from "./support/fake-binance.ts";

const ESC = "\u001b";

/** Runs the binary under a pseudo-terminal (util-linux `script`), as a user at a terminal does. */
async function runOnTerminal(args: string, env: Record<string, string> = {}): Promise<string> {
  const child = Bun.spawn(["script", "-qec", `${ensureBinary()} ${args}`, "/dev/null"], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", TERM: "xterm-256color", ...env },
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout] = await Promise.all([new Response(child.stdout).text(), child.exited]);
  return stdout;
}

/** Bad user input: exit 2 and exactly one line on stderr, no stack trace. */
async function expectUserError(args: string[], env: Record<string, string>, expected: string, cwd?: string) {
  const result = await runBinary(args, { env, cwd });
  expect(result.exitCode).toBe(2);
  expect(result.stderr).toBe(`xtrader: error: ${expected}\n`);
  expect(result.stdout).toBe("");
}

describe("compiled binary", () => {
  test("--version prints the version and the commit", async () => {
    const result = await runBinary(["--version"]);
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`^xtrader ${packageJson.version.replaceAll(".", "\\.")} \\(([0-9a-f]{7,}(-dirty)?|unknown)\\)\\n$`));
  });

  test("--help lists every option and the environment", async () => {
    const result = await runBinary(["--help"]);
    expect(result.exitCode).toBe(0);
    for (const word of ["--subscriptions", "--sink", "--output-directory", "--verbose", "--shutdown-after", "SUBSCRIPTIONS", "DERIBIT_CLIENT_SECRET", "QUESTDB_ILP_PORT", "RUST_LOG"]) {
      expect(result.stdout).toContain(word);
    }
  });

  test("--help has colours on a terminal only, and none with NO_COLOR", async () => {
    const piped = await runBinary(["--help"]);
    expect(piped.stdout).toContain("--subscriptions");
    expect(piped.stdout).not.toContain(ESC);
    const terminal = await runOnTerminal("--help");
    expect(terminal).toContain("--subscriptions");
    expect(terminal).toContain(`${ESC}[`);
    const noColor = await runOnTerminal("--help", { NO_COLOR: "1" });
    expect(noColor).toContain("--subscriptions");
    expect(noColor).not.toContain(ESC);
  });

  test("text logs to a pipe (journald): one line per entry, none blank, no colour", async () => {
    // A venue that is gone: every connection attempt is a warning.
    const fake = FakeBinanceFutures.start({ symbols: ["BTCUSDT"] });
    const env = fake.env;
    await fake.stop();
    const cwd = mkdtempSync(join(tmpdir(), "xtrader-bin-"));
    const result = await runBinary(
      ["--subscriptions", "TRADES:BINANCE_FUTURES@BTCUSDT,TRADES:BINANCE_FUTURES@BTCUSDT", "--output-directory", join(cwd, "data"), "--shutdown-after", "1"],
      { env: { ...env, XTRADER_RECONNECT_MIN_MS: "50", XTRADER_RECONNECT_MAX_MS: "100", RUST_LOG: "debug" }, cwd },
    );
    expect(result.exitCode).toBe(0);
    for (const [name, text] of [["stdout", result.stdout], ["stderr", result.stderr]] as const) {
      expect(text.endsWith("\n"), name).toBe(true);
      const lines = text.slice(0, -1).split("\n");
      expect(lines.filter((line) => !/^\[(info|warn|error|debug)\] \[xtrader(:[A-Z_]+)?\] \S/.test(line)), name).toEqual([]);
      expect(text, name).not.toContain(ESC);
    }
    expect(result.stderr).toContain("[warn] [xtrader] duplicate subscription 'TRADES:BINANCE_FUTURES@BTCUSDT' ignored\n");
    expect(result.stdout).toContain("[info] [xtrader] stopped; all data flushed\n");
  });

  test.each([
    [["--subscriptions", "L3:OKX_SWAP@BTCUSDT"], {}, "unknown stream 'L3' in 'L3:OKX_SWAP@BTCUSDT'; supported: TRADES, L2, BBO, FUNDING, LIQUIDATIONS (L1 = BBO)"],
    [["--subscriptions", "TRADES:BINANCE_FUTURES@BTCUSDT", "--sink", "kafka"], {}, "invalid sink 'kafka'; accepted: parquet, questdb"],
    [["--subscriptions", "TRADES:BINANCE_FUTURES@BTCUSDT", "--shutdown-after", "-1"], {}, "invalid --shutdown-after '-1'; expected a number of seconds >= 0"],
    [["--subscriptions", "TRADES:BINANCE_FUTURES@BTCUSDT", "--sink", "questdb"], { QUESTDB_ILP_PORT: "abc" }, "invalid QUESTDB_ILP_PORT 'abc'; expected a whole number from 1 to 65535"],
    [[], {}, "missing --subscriptions (or SUBSCRIPTIONS in the environment); expected STREAM:EXCHANGE@INSTRUMENT[,...], e.g. L2:OKX_SWAP@BTCUSDT"],
    [["--bogus"], {}, "unknown option '--bogus'; see --help for the accepted options"],
    [["--subscriptions", "FUNDING:OKX_SPOT@BTCUSDT"], {}, "stream 'FUNDING' is not offered by OKX_SPOT in 'FUNDING:OKX_SPOT@BTCUSDT'; OKX_SPOT offers: TRADES, L2, BBO"],
    [["--subscriptions", "FUNDING:BINANCE_SPOT@BTCUSDT"], {}, "stream 'FUNDING' is not offered by BINANCE_SPOT in 'FUNDING:BINANCE_SPOT@BTCUSDT'; BINANCE_SPOT offers: TRADES, L2, BBO"],
  ])("bad input %p %p exits 2 with one line", async (args, env, expected) => {
    const cwd = mkdtempSync(join(tmpdir(), "xtrader-bin-"));
    await expectUserError([...args, "--output-directory", join(cwd, "data")], env as Record<string, string>, expected, cwd);
  });

  test("an unwritable output directory exits 2", async () => {
    const cwd = mkdtempSync(join(tmpdir(), "xtrader-bin-"));
    writeFileSync(join(cwd, "file"), "");
    await expectUserError(
      ["--subscriptions", "TRADES:BINANCE_FUTURES@BTCUSDT", "--output-directory", join(cwd, "file")],
      {},
      `output directory '${join(cwd, "file")}' is not a directory; give a writable --output-directory`,
      cwd,
    );
  });

  test("loads .env from the working directory; the real environment wins", async () => {
    const cwd = mkdtempSync(join(tmpdir(), "xtrader-dotenv-"));
    writeFileSync(join(cwd, ".env"), "# settings\nSUBSCRIPTIONS=TRADES:KRAKEN@XBTUSD\nRUST_LOG=info\n");
    await expectUserError(
      [],
      {},
      "unknown exchange 'KRAKEN' in 'TRADES:KRAKEN@XBTUSD'; supported: BINANCE_FUTURES, BINANCE_SPOT, OKX_SWAP, OKX_SPOT, DERIBIT",
      cwd,
    );
    await expectUserError(
      [],
      { SUBSCRIPTIONS: "TRADES:BITMEX@XBTUSD" },
      "unknown exchange 'BITMEX' in 'TRADES:BITMEX@XBTUSD'; supported: BINANCE_FUTURES, BINANCE_SPOT, OKX_SWAP, OKX_SPOT, DERIBIT",
      cwd,
    );
  });
});

/**
 * `--log-format json`: one JSON object per line (time, level, message, component, fields), parsed line by
 * line; secrets masked in both formats.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildConfig } from "../src/cli/config.ts";
import { deribitSettings } from "../src/connectors/deribit.ts";
import { createLogger } from "../src/core/log.ts";
import { configureLogging, REDACTED, secretsOf } from "../src/observability/logging.ts";
import { createConsola } from "consola";

const SECRET = "s3cr3t-Deribit-Value-42";
const QDB_PASSWORD = "quest-Password-9";

function jsonLogger(level: "info" | "debug" | "trace" = "trace", secrets: readonly string[] = [SECRET]) {
  const lines: string[] = [];
  const logger = createLogger(level);
  configureLogging(logger, { format: "json", secrets, write: (line) => lines.push(line) });
  return { logger, lines, parsed: () => lines.join("").split("\n").filter((line) => line !== "").map((line) => JSON.parse(line)) };
}

describe("JSON logs", () => {
  test("one object per line with time, level, message, component and fields", () => {
    const { logger, lines, parsed } = jsonLogger();
    const before = Date.now();
    logger.info("starting: 2 subscription(s)");
    logger.withTag("OKX_SWAP").warn("gap on book", { subscription: "L2:OKX_SWAP@BTCUSDT", reason: "sequence", sequence: 12 });
    logger.error("sink failed", new Error("disk on fire\nsecond line"));
    logger.debug("connected", { url: "wss://example.invalid/ws", attempt: 3 });
    logger.trace("frame", { bytes: 120 });
    logger.info({ message: "with consola fields", rows: 5 });

    // Every write is exactly one line, and every line parses on its own.
    expect(lines).toHaveLength(6);
    for (const line of lines) {
      expect(line.endsWith("\n")).toBe(true);
      expect(line.slice(0, -1)).not.toContain("\n");
    }
    const entries = parsed();
    for (const entry of entries) {
      expect(Date.parse(entry.time)).toBeGreaterThanOrEqual(before - 1000);
      expect(entry.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    }
    expect(entries.map((entry) => entry.level)).toEqual(["info", "warn", "error", "debug", "trace", "info"]);
    expect(entries[0]).toEqual({ time: entries[0].time, level: "info", message: "starting: 2 subscription(s)", component: "xtrader" });
    expect(entries[1]).toEqual({
      time: entries[1].time,
      level: "warn",
      message: "gap on book",
      component: "xtrader:OKX_SWAP",
      subscription: "L2:OKX_SWAP@BTCUSDT",
      reason: "sequence",
      sequence: 12,
    });
    expect(entries[2]).toMatchObject({ level: "error", message: "sink failed disk on fire\nsecond line", error: "Error" });
    expect(entries[2].stack).toContain("disk on fire");
    expect(entries[3]).toMatchObject({ message: "connected", url: "wss://example.invalid/ws", attempt: 3 });
    expect(entries[5]).toMatchObject({ message: "with consola fields", rows: 5 });
  });

  test("the configured level still filters", () => {
    const { logger, parsed } = jsonLogger("info");
    logger.debug("hidden");
    logger.info("shown");
    expect(parsed().map((entry) => entry.message)).toEqual(["shown"]);
  });

  test("fields cannot overwrite time, level or message", () => {
    const { logger, parsed } = jsonLogger();
    logger.info("real message", { message: "fake", level: "error", time: "yesterday" });
    expect(parsed()[0]).toMatchObject({
      level: "info",
      message: "real message",
      field_message: "fake",
      field_level: "error",
      field_time: "yesterday",
    });
  });

  test("secrets never appear: values masked anywhere, secret-named fields redacted", () => {
    const { logger, lines, parsed } = jsonLogger();
    logger.warn(`auth failed with ${SECRET}`, { request: { client_secret: "anything", nested: `x${SECRET}x` } });
    logger.error(new Error(`bad credentials ${SECRET}`));
    const text = lines.join("");
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain("anything");
    const [first, second] = parsed();
    expect(first.message).toBe(`auth failed with ${REDACTED}`);
    expect(first.request).toEqual({ client_secret: REDACTED, nested: `x${REDACTED}x` });
    expect(second.message).toBe(`bad credentials ${REDACTED}`);
  });

  test("the secrets of a configuration: secret-looking variables and QDB_CLIENT_CONF passwords", () => {
    const { config } = buildConfig(
      { subscriptions: "TRADES:BINANCE_FUTURES@BTCUSDT", "output-directory": mkdtempSync(join(tmpdir(), "xtrader-log-")) },
      {
        DERIBIT_CLIENT_ID: "client-id-1",
        DERIBIT_CLIENT_SECRET: SECRET,
        QDB_CLIENT_CONF: `http::addr=localhost:9000;username=admin;password=${QDB_PASSWORD};`,
        OUTPUT_DIRECTORY: "/data",
      },
    );
    const secrets = secretsOf(config);
    expect(secrets).toContain(SECRET);
    // The secret Deribit reads for itself from the same environment.
    expect(secrets).toContain(deribitSettings(config.env, false).credentials!.clientSecret);
    expect(secrets).toContain(QDB_PASSWORD);
    expect(secrets).not.toContain("client-id-1");
    expect(secrets).not.toContain("admin");
    expect(secrets).not.toContain("/data");
  });

  test("text format stays consola's human-readable output, with secrets masked too", () => {
    const out: string[] = [];
    const stream = { write: (chunk: string) => out.push(String(chunk)) } as unknown as NodeJS.WriteStream;
    const logger = createConsola({ level: 3, defaults: { tag: "xtrader" }, stdout: stream, stderr: stream });
    configureLogging(logger, { format: "text", secrets: [SECRET] });
    logger.info(`login with ${SECRET}`);
    logger.warn(new Error(`rejected ${SECRET}`));
    const text = out.join("");
    expect(text).toContain(`login with ${REDACTED}`);
    expect(text).toContain(`rejected ${REDACTED}`);
    expect(text).not.toContain(SECRET);
    // Human-readable, not JSON.
    expect(() => JSON.parse(out[0]!)).toThrow();
  });

  /** A logger whose stdout and stderr are one captured stream, a terminal or not. */
  function textLogger(isTTY: boolean, env: Record<string, string> = {}) {
    const out: string[] = [];
    const stream = { isTTY, columns: 100, write: (chunk: string) => out.push(String(chunk)) } as unknown as NodeJS.WriteStream;
    const logger = createConsola({ level: 3, defaults: { tag: "xtrader" }, stdout: stream, stderr: stream });
    configureLogging(logger, { format: "text", secrets: [], env });
    const child = logger.withTag("OKX_SWAP");
    child.info("connected");
    child.warn("gap on book", { subscription: "L2:OKX_SWAP@BTCUSDT" });
    child.error("sink failed", new Error("disk on fire\nsecond line"));
    child.info("reconnected");
    return out.join("");
  }

  test("text not on a terminal (journald, a pipe): one line per entry, no blank line, no colour", () => {
    const text = textLogger(false);
    const lines = text.split("\n");
    expect(lines.pop()).toBe("");
    expect(lines).toHaveLength(4);
    expect(text).not.toContain("\u001b");
    expect(lines[0]).toBe("[info] [xtrader:OKX_SWAP] connected");
    expect(lines[1]).toBe("[warn] [xtrader:OKX_SWAP] gap on book { subscription: 'L2:OKX_SWAP@BTCUSDT' }");
    // The error's message and stack on the entry's one line.
    expect(lines[2]).toStartWith("[error] [xtrader:OKX_SWAP] sink failed disk on fire | second line | at ");
    expect(lines[3]).toBe("[info] [xtrader:OKX_SWAP] reconnected");
  });

  test("text on a terminal: consola's decoration, but one line per entry too (no blank lines around warnings)", () => {
    const text = textLogger(true);
    expect(text).toContain("ℹ connected");
    const lines = text.split("\n");
    expect(lines.pop()).toBe("");
    expect(lines).toHaveLength(4);
    expect(lines.filter((line) => line.trim() === "")).toEqual([]);
    expect(lines.filter((line) => line.includes("WARN"))).toHaveLength(1);
  });

  test("text on a terminal with NO_COLOR: the plain lines", () => {
    const withoutStack = (text: string) => text.replace(/ \| at .*/g, "");
    expect(withoutStack(textLogger(true, { NO_COLOR: "1" }))).toBe(withoutStack(textLogger(false)));
  });
});

/**
 * `--shard K/N`: one subscription list for a fleet. Every subscription lands on exactly one shard, an
 * instrument's subscriptions together; the assignment moves nothing when a subscription is added and only
 * towards the new shard when N grows; `--print-plan` shows the concrete share.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildConfig } from "../src/cli/config.ts";
import { instrumentKey, parseShard, shardOf, takeShard } from "../src/cli/shard.ts";
import { runBinary } from "./support/binary.ts";
import { userError } from "./support/user-error.ts";

const outputDirectory = mkdtempSync(join(tmpdir(), "xtrader-shard-"));
const SYMBOLS = Array.from({ length: 60 }, (_, i) => `COIN${i}USDT`);
const FLEET = SYMBOLS.flatMap((symbol) => [`TRADES:BINANCE_FUTURES@${symbol}`, `L2:BINANCE_FUTURES@${symbol}`, `TRADES:OKX_SWAP@${symbol}`]).join(",");

function shardConfig(shard: string, subscriptions = FLEET, env: Record<string, string> = {}) {
  return buildConfig({ subscriptions, shard, "output-directory": outputDirectory }, env).config;
}


describe("--shard K/N", () => {
  test("every subscription on exactly one shard; an instrument's subscriptions together; no shard empty", () => {
    const all = shardConfig("0/1").subscriptions.map((subscription) => subscription.key);
    const owner = new Map<string, number>();
    const instrumentOwner = new Map<string, number>();
    for (let index = 0; index < 4; index++) {
      const taken = shardConfig(`${index}/4`).subscriptions;
      expect(taken.length).toBeGreaterThan(0);
      for (const subscription of taken) {
        expect(owner.has(subscription.key)).toBe(false);
        owner.set(subscription.key, index);
        const instrument = instrumentKey(subscription);
        expect(instrumentOwner.get(instrument) ?? index).toBe(index);
        instrumentOwner.set(instrument, index);
      }
    }
    expect([...owner.keys()].sort()).toEqual([...all].sort());
  });

  test("adding a subscription moves no other one", () => {
    const before = shardConfig("2/5").subscriptions.map((subscription) => subscription.key);
    const after = shardConfig("2/5", `${FLEET},TRADES:DERIBIT@BTC-PERPETUAL`).subscriptions.map((subscription) => subscription.key);
    expect(after.filter((key) => key !== "TRADES:DERIBIT@BTC-PERPETUAL")).toEqual(before);
  });

  test("from N to N+1 shards, an instrument either stays or moves to the new shard", () => {
    const instruments = SYMBOLS.map((symbol) => `BINANCE_FUTURES@${symbol}`);
    let moved = 0;
    for (const instrument of instruments) {
      const before = shardOf(instrument, 4);
      const after = shardOf(instrument, 5);
      if (after !== before) {
        expect(after).toBe(4);
        moved++;
      }
    }
    expect(moved).toBeGreaterThan(0);
    expect(moved).toBeLessThan(instruments.length / 2);
  });

  test("the assignment is fixed: the same on every build and platform", () => {
    // SHA-256 based; a change here would reshuffle every running fleet on upgrade.
    expect([1, 2, 3, 4].map((count) => shardOf("BINANCE_FUTURES@BTCUSDT", count))).toEqual([0, 1, 2, 2]);
    expect(takeShard([{ exchange: "OKX_SWAP", symbol: "BTCUSDT" }, { exchange: "DERIBIT", symbol: "BTC-PERPETUAL" }], { index: 0, count: 1 })).toHaveLength(2);
  });

  test("SHARD from the environment; the flag wins", () => {
    const fromEnv = buildConfig({ subscriptions: FLEET, "output-directory": outputDirectory }, { SHARD: "1/3" }).config;
    expect(fromEnv.shard).toMatchObject({ index: 1, count: 3, fleetSubscriptions: 180, fleetInstruments: 120 });
    expect(fromEnv.subscriptions).toEqual(shardConfig("1/3").subscriptions);
    expect(buildConfig({ subscriptions: FLEET, shard: "0/3", "output-directory": outputDirectory }, { SHARD: "1/3" }).config.shard?.index).toBe(0);
  });

  test("ordinal/N takes K from the StatefulSet pod name (POD_NAME, else HOSTNAME)", () => {
    expect(parseShard("ordinal/4", { POD_NAME: "xtrader-3", HOSTNAME: "xtrader-1" })).toEqual({ index: 3, count: 4 });
    expect(parseShard("ordinal/4", { HOSTNAME: "xtrader-fleet-2" })).toEqual({ index: 2, count: 4 });
    expect(userError(() => parseShard("ordinal/4", { HOSTNAME: "ip-10-0-0-1.ec2.internal" }))).toBe(
      "shard ordinal/N needs a StatefulSet pod name ending in -<number> (e.g. xtrader-3) in POD_NAME or HOSTNAME; HOSTNAME is 'ip-10-0-0-1.ec2.internal'",
    );
    expect(userError(() => parseShard("ordinal/4", { POD_NAME: "xtrader-4" }))).toBe(
      "invalid shard 'ordinal/4': shard 4 does not exist among 4 (K runs from 0 to 3); a StatefulSet's replicas must equal N",
    );
  });

  test("bad values: one line naming the value and what is accepted", () => {
    for (const text of ["1", "a/4", "-1/4", "1/0", "0/1025", "1/2/3", ""]) {
      expect(userError(() => parseShard(text, {}))).toStartWith(`invalid shard '${text}'; expected K/N`);
    }
    expect(userError(() => parseShard("4/4", {}))).toStartWith("invalid shard '4/4': shard 4 does not exist among 4");
  });

  test("a shard that takes nothing is refused at start (fewer instruments than shards)", () => {
    const one = "TRADES:BINANCE_FUTURES@BTCUSDT,L2:BINANCE_FUTURES@BTCUSDT";
    const owner = shardOf("BINANCE_FUTURES@BTCUSDT", 2);
    expect(userError(() => shardConfig(`${1 - owner}/2`, one))).toBe(
      `shard ${1 - owner}/2 takes none of the 1 instrument(s) of --subscriptions; run fewer shards than instruments (see --print-plan)`,
    );
    expect(shardConfig(`${owner}/2`, one).subscriptions).toHaveLength(2);
  });
});

describe("--print-plan (compiled binary)", () => {
  test("prints the header and this shard's subscriptions, exits 0, creates nothing; the shards' plans cover the fleet", async () => {
    const directory = mkdtempSync(join(tmpdir(), "xtrader-plan-"));
    const seen: string[] = [];
    for (let index = 0; index < 3; index++) {
      const result = await runBinary(["--print-plan"], { env: { SUBSCRIPTIONS: FLEET, SHARD: "ordinal/3", POD_NAME: `xtrader-${index}` }, cwd: directory });
      expect(result.exitCode).toBe(0);
      expect(result.stderr).toBe("");
      const [header, ...lines] = result.stdout.trimEnd().split("\n");
      const instruments = new Set(lines.map((line) => line.split(":")[1]));
      expect(header).toBe(`# shard ${index}/3: ${lines.length} of 180 subscription(s), ${instruments.size} of 120 instrument(s)`);
      expect(lines).toEqual(shardConfig(`${index}/3`).subscriptions.map((subscription) => subscription.key));
      seen.push(...lines);
    }
    expect(seen.sort()).toEqual(FLEET.split(",").sort());
    expect(existsSync(join(directory, "data"))).toBe(false);
    const all = await runBinary(["--print-plan", "--subscriptions", "TRADES:OKX_SWAP@BTCUSDT"], { cwd: directory });
    expect(all.stdout).toBe("# no shard: all 1 subscription(s), 1 instrument(s)\nTRADES:OKX_SWAP@BTCUSDT\n");
  });
});

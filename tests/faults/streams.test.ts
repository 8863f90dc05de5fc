/**
 * Every stream on every venue: TRADES, L2, BBO, FUNDING and LIQUIDATIONS on Binance USD-M, OKX (swap; spot
 * has the first three) and Deribit, end to end against the compiled binary with the Parquet sink, across
 * an abrupt drop of every connection. Funding and liquidation rows must be exactly the messages the
 * venues delivered (Deribit's liquidations: its trades marked T, M or MT, one row per liquidated side).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { cleanup, expectFaithful, finish, startScenario } from "./scenario.ts";
import { checkFundingAndLiquidations, countBy, gapsOf } from "./verify.ts";

afterEach(cleanup);

const ALL_STREAMS = ["TRADES", "L2", "BBO", "FUNDING", "LIQUIDATIONS"];

describe("every stream", () => {
  test(
    "five streams on five exchange ids across a dropped connection: funding and liquidations exactly as delivered",
    async () => {
      const running = await startScenario({ seed: 61, streams: ALL_STREAMS, extrasEvery: 8 });
      const { venues } = running;
      await venues.run(1500);
      await venues.quiesce();
      for (const exchange of venues.exchanges) exchange.terminateAll();
      venues.start();
      await venues.subscribed(ALL_STREAMS);
      await venues.run(1500);
      const output = await finish(running);
      expectFaithful(output, venues);
      expect(checkFundingAndLiquidations(output, venues.truth)).toEqual([]);
      const funding = countBy(output.funding);
      const liquidations = countBy(output.liquidations);
      for (const key of running.subscriptions.split(",")) {
        const [stream, rest] = key.split(":") as [string, string];
        const id = rest.replace("@", "|");
        if (stream === "FUNDING") expect(funding.get(id) ?? 0, key).toBeGreaterThan(2);
        if (stream === "LIQUIDATIONS") expect(liquidations.get(id) ?? 0, key).toBeGreaterThan(2);
      }
      const disconnects = gapsOf(output, { reason: "disconnect" });
      for (const key of running.subscriptions.split(",")) expect(disconnects.get(key)?.length ?? 0, key).toBeGreaterThanOrEqual(1);
    },
    40_000,
  );
});

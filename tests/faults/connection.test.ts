/**
 * Connection faults, end to end against the compiled binary with the Parquet sink: every venue at once
 * (Binance USD-M, OKX swap + spot, Deribit), TRADES + L2 + BBO on two instruments each, a seeded market,
 * the fault injected mid-run, then the files compared with what the venues sent (verify.ts).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { cleanup, expectFaithful, finish, startScenario } from "./scenario.ts";
import { gapsOf } from "./verify.ts";

afterEach(cleanup);

/** Every subscription of the run has at least `min` gap rows of `reason`. */
function expectGapsForEvery(subscriptions: string, gaps: ReadonlyMap<string, readonly unknown[]>, min: number, what: string): void {
  for (const key of subscriptions.split(",")) {
    expect(gaps.get(key)?.length ?? 0, `${what} gaps of ${key}`).toBeGreaterThanOrEqual(min);
  }
}

describe("connection faults", () => {
  test(
    "abrupt TCP close of every connection, twice: a disconnect gap per subscription, fresh snapshots, nothing lost",
    async () => {
      const running = await startScenario({ seed: 11 });
      const { venues } = running;
      await venues.run(1500);
      for (let round = 0; round < 2; round++) {
        // Everything sent so far has been read (barrier), then the TCP connections drop without a close frame.
        await venues.quiesce();
        for (const exchange of venues.exchanges) exchange.terminateAll();
        // The market moves on while xtrader is away: those trades were never delivered and are not expected.
        venues.start();
        await venues.subscribed();
        await venues.run(1000);
      }
      const output = await finish(running);
      expectFaithful(output, venues);
      const disconnects = gapsOf(output, { reason: "disconnect" });
      expectGapsForEvery(running.subscriptions, disconnects, 2, "disconnect");
      for (const gaps of disconnects.values()) for (const gap of gaps) expect(String(gap.detail)).toContain("1006");
    },
    40_000,
  );
  test(
    "server close frames with venue codes (Binance 1008/1001, OKX 4004/4006, Deribit rate-limit end and 1001) and OKX's upgrade notice: the code is in every gap",
    async () => {
      const running = await startScenario({ seed: 12 });
      const { venues } = running;
      await venues.run(1200);
      const rounds = [
        { binance: [1008, "Too many requests"], okx: [4004, "No data received in 30s"], deribit: [1000, "too_many_requests"] },
        { binance: [1001, "going away"], okx: [4006, "Abnormal"], deribit: [1001, "going away"] },
      ] as const;
      for (const round of rounds) {
        await venues.quiesce();
        venues.binance.fake.closeAll(round.binance[0], round.binance[1]);
        venues.binanceSpot.fake.closeAll(round.binance[0], round.binance[1]);
        venues.okx.fake.closeAll(round.okx[0], round.okx[1]);
        venues.deribit.fake.closeAll(round.deribit[0], round.deribit[1]);
        venues.start();
        await venues.subscribed();
        await venues.run(1000);
      }
      // OKX's service-upgrade notice (64008): xtrader leaves before it is cut off.
      await venues.quiesce();
      const okxConnections = venues.okx.fake.exchange.connections.length;
      venues.okx.fake.sendUpgradeNotice();
      venues.start();
      await venues.okx.fake.exchange.waitFor(() => venues.okx.fake.exchange.connections.length >= okxConnections + 2, 10_000, "OKX reconnects after the notice");
      await venues.subscribed();
      await venues.run(800);
      const output = await finish(running);
      expectFaithful(output, venues);
      const disconnects = gapsOf(output, { reason: "disconnect" });
      expectGapsForEvery(running.subscriptions, disconnects, 2, "disconnect");
      for (const key of running.subscriptions.split(",").filter((key) => key.includes(":OKX_"))) {
        expect(disconnects.get(key)?.length ?? 0, `disconnect gaps of ${key}`).toBe(3);
      }
      for (const [key, gaps] of disconnects) {
        const details = gaps.map((gap) => String(gap.detail)).join(" / ");
        const venue = key.includes("BINANCE") ? "binance" : key.includes("OKX") ? "okx" : "deribit";
        for (const round of rounds) expect(details, key).toContain(String(round[venue][0]));
      }
    },
    40_000,
  );
  test(
    "a venue that stops answering (no data, no pong, no acks) is detected as stale, reconnected, and resynced",
    async () => {
      const running = await startScenario({
        seed: 13,
        env: {
          XTRADER_BINANCE_FUTURES_STALE_AFTER_MS: "1000",
          // A SUBSCRIBE sent into the silence is never answered: the connection is replaced after this.
          XTRADER_BINANCE_FUTURES_REQUEST_TIMEOUT_MS: "1000",
          XTRADER_BINANCE_SPOT_STALE_AFTER_MS: "1000",
          XTRADER_BINANCE_SPOT_REQUEST_TIMEOUT_MS: "1000",
          XTRADER_OKX_SWAP_STALE_MS: "1000",
          XTRADER_OKX_SPOT_STALE_MS: "1000",
          XTRADER_OKX_SWAP_KEEPALIVE_MS: "400",
          XTRADER_OKX_SPOT_KEEPALIVE_MS: "400",
          XTRADER_DERIBIT_STALE_AFTER_MS: "1000",
        },
      });
      const { venues } = running;
      await venues.run(1500);
      await venues.quiesce();
      // Silence: Binance and OKX still accept TCP but send nothing (not even pong or acks); Deribit's
      // market stops (it pushes nothing unprompted).
      venues.binance.fake.silent = true;
      venues.binanceSpot.fake.silent = true;
      venues.okx.fake.silent = true;
      const before = venues.exchanges.map((exchange) => exchange.connections.length);
      await Promise.all(
        venues.exchanges.map((exchange, i) =>
          exchange.waitFor(() => exchange.connections.length > before[i]! + (i === 2 ? 0 : 1), 15_000, "reconnects after silence"),
        ),
      );
      venues.binance.fake.silent = false;
      venues.binanceSpot.fake.silent = false;
      venues.okx.fake.silent = false;
      venues.start();
      await venues.subscribed();
      await venues.run(1500);
      const output = await finish(running);
      expectFaithful(output, venues);
      expectGapsForEvery(running.subscriptions, gapsOf(output, { reason: "stale" }), 1, "stale");
    },
    40_000,
  );
});

/**
 * Feed faults that keep the connection, end to end against the compiled binary with the Parquet sink on
 * every venue at once: malformed and unknown messages between good ones, and Binance's 24 h connection
 * rollover. The files are compared with what the venues sent (verify.ts).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { cleanup, expectFaithful, finish, startScenario } from "./scenario.ts";
import { gapsOf } from "./verify.ts";

afterEach(cleanup);

describe("feed faults", () => {
  test(
    "malformed JSON and unknown messages between good ones: counted as parse errors, skipped, nothing invented",
    async () => {
      const running = await startScenario({ seed: 14, args: ["--metrics-addr", "127.0.0.1:0"] });
      const { venues } = running;
      const { binance, okx, deribit } = venues;
      const binanceJunk = [
        "not json at all",
        '{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","s":"BTCUSDT"',
        '{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1,"s":"BTCUSDT","a":"x","p":"abc","q":null,"T":"soon","m":"maybe"}}',
        '{"stream":"btcusdt@somethingNew","data":{"e":"somethingNew"}}',
        '{"e":"notAStream","E":1}',
        '{"result":null,"id":987654}',
        '{"stream":"ethusdt@bookTicker","data":{"e":"bookTicker","b":"x"}}',
        "[]",
        "null",
        "42",
      ];
      const okxJunk = [
        "{oops",
        '{"event":"mystery","connId":"1"}',
        '{"arg":{"channel":"trades","instId":"BTC-USDT-SWAP"},"data":[{"instId":"BTC-USDT-SWAP","tradeId":"x","px":"abc","sz":"","side":"up","ts":"later"}]}',
        '{"arg":{"channel":"no-such-channel","instId":"BTC-USDT-SWAP"},"data":[{}]}',
        '{"arg":{"channel":"bbo-tbt","instId":"ETH-USDT-SWAP"},"data":[{"bids":"none"}]}',
        '{"arg":{"channel":"trades","instId":"DOGE-USDT-SWAP"},"data":[]}',
        "pong",
        "[1,2,3]",
      ];
      const deribitJunk = [
        "{{",
        '{"jsonrpc":"2.0","method":"subscription","params":{"channel":"trades.BTC-PERPETUAL.100ms","data":[{"trade_id":5,"price":"high"}]}}',
        '{"jsonrpc":"2.0","method":"subscription","params":{"channel":"nope.BTC-PERPETUAL","data":{}}}',
        '{"jsonrpc":"2.0","id":999999,"result":[]}',
        '{"jsonrpc":"2.0","method":"somethingElse","params":{}}',
        '{"jsonrpc":"2.0","method":"subscription","params":{"channel":"quote.ETH-PERPETUAL","data":{"best_bid_price":"x"}}}',
        '{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"unknown_kind"}}',
      ];
      venues.start();
      for (let round = 0; round < 12; round++) {
        await Bun.sleep(120);
        binance.fake.sendRaw(binanceJunk[round % binanceJunk.length]!);
        okx.fake.sendRaw(okxJunk[round % okxJunk.length]!);
        deribit.fake.sendRaw(deribitJunk[round % deribitJunk.length]!);
      }
      await venues.run(800);
      await venues.quiesce();
      for (const exchange of ["BINANCE_FUTURES", "OKX_SWAP", "DERIBIT"]) {
        expect(await running.xtrader.metric("xtrader_parse_errors_total", { exchange }), `parse errors of ${exchange}`).toBeGreaterThan(0);
      }
      const output = await finish(running);
      expectFaithful(output, venues);
      // Bad frames never cost a connection.
      expect(gapsOf(output, { reason: "disconnect" }).size).toBe(0);
      expect(running.xtrader.logs.filter((line) => /handler failed|uncaught|unhandled/.test(line.message))).toEqual([]);
      // Each venue said so at warn level (rate-limited), not only in its counters.
      for (const venue of ["BINANCE_FUTURES", "OKX_SWAP", "DERIBIT"]) {
        expect(running.xtrader.logs.some((line) => line.level === "warn" && line.message.includes(venue)), `a warning from ${venue}`).toBe(true);
      }
    },
    40_000,
  );

  test(
    "Binance 24 h connection rollover (max age shortened): successors take over with no gap, no duplicate, no new snapshot",
    async () => {
      const running = await startScenario({ seed: 15, env: { XTRADER_BINANCE_FUTURES_CONNECTION_MAX_AGE_MS: "1500" } });
      const { venues } = running;
      const exchange = venues.binance.fake.exchange;
      await venues.run(1000);
      // At least two replacements of both the /public and the /market connection.
      await exchange.waitFor(() => exchange.connections.length >= 6, 20_000, "six Binance connections");
      await venues.run(500);
      const output = await finish(running);
      expectFaithful(output, venues);
      expect(output.gaps.filter((gap) => gap.exchange === "BINANCE_FUTURES")).toEqual([]);
      // One snapshot per book for the whole run: the sequence continued across connections.
      const snapshots = new Set(output.l2.filter((row) => row.exchange === "BINANCE_FUTURES" && row.is_snapshot).map((row) => `${row.symbol}|${row.sequence}`));
      expect(snapshots.size).toBe(2);
      // Replaced connections were closed normally by xtrader.
      const replaced = exchange.connections.filter((connection) => !connection.open);
      expect(replaced.length).toBeGreaterThanOrEqual(4);
      for (const connection of replaced) expect(connection.closeCode).toBe(1000);
    },
    40_000,
  );
});

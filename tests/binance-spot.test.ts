import { describe, expect, test } from "bun:test";
import { buildConfig } from "../src/cli/config.ts";
import { binanceSpot } from "../src/connectors/binance-spot.ts";
import { binanceSession, books, driveRandomMarket, driveUntil, emittedFor, expectBookMatchesTruth, expectSnapshotAfterEveryGap, subscriptionOf } from "./support/binance-checks.ts";
import type { ConnectorHarness } from "./support/connector-harness.ts";
import { FakeBinanceSpot } from "./support/fake-binance-spot.ts";

const start = binanceSession(FakeBinanceSpot.start);
const subscription = subscriptionOf;
const snapshots = (h: ConnectorHarness, symbol = "BTCUSDT") => books(h, symbol).filter((event) => event.isSnapshot);

describe("declaration", () => {
  test("instruments are Binance spot symbols; FUNDING and LIQUIDATIONS are refused in one line", () => {
    expect(binanceSpot.nativeInstrument("ETHBTC")).toEqual({ native: "ETHBTC" });
    const { config } = buildConfig({ subscriptions: "l2:binance_spot@btcusdt", "output-directory": "/tmp" }, {});
    expect(config.subscriptions[0]).toMatchObject({ key: "L2:BINANCE_SPOT@BTCUSDT", instrument: "BTCUSDT" });
    expect(() => buildConfig({ subscriptions: "TRADES:BINANCE_SPOT@BTC-USDT", "output-directory": "/tmp" }, {})).toThrow(
      "invalid BINANCE_SPOT instrument 'BTC-USDT'; expected a Binance spot symbol such as BTCUSDT or ETHBTC",
    );
    for (const stream of ["FUNDING", "LIQUIDATIONS"]) {
      expect(() => buildConfig({ subscriptions: `${stream}:BINANCE_SPOT@BTCUSDT`, "output-directory": "/tmp" }, {})).toThrow(
        `stream '${stream}' is not offered by BINANCE_SPOT in '${stream}:BINANCE_SPOT@BTCUSDT'; BINANCE_SPOT offers: TRADES, L2, BBO`,
      );
    }
  });
});

describe("connections", () => {
  test("every stream on one combined connection at /stream; the server's pings are answered", async () => {
    const { fake, h } = start("TRADES:BINANCE_SPOT@BTCUSDT,L2:BINANCE_SPOT@BTCUSDT,BBO:BINANCE_SPOT@BTCUSDT");
    await fake.waitForSubscribers("btcusdt@trade");
    await fake.waitForSubscribers("btcusdt@bookTicker");
    await fake.waitForSubscribers("btcusdt@depth@100ms");
    expect(fake.exchange.connections.map((connection) => connection.path)).toEqual(["/stream"]);
    expect(fake.subscriptions()[0]!.streams.sort()).toEqual(["btcusdt@bookTicker", "btcusdt@depth@100ms", "btcusdt@trade"]);
    expect(fake.restLog.map((entry) => entry.path)).toContain("/api/v3/exchangeInfo");
    fake.pingAll();
    const [connection] = fake.exchange.openConnections();
    await fake.exchange.waitFor(() => connection!.pongs >= 1, 5000, "pong");
    expect(h.events("gap")).toEqual([]);
  });

  test("a symbol the instrument list lacks fails its subscription alone", async () => {
    const { fake, h } = start("TRADES:BINANCE_SPOT@BTCUSDT,TRADES:BINANCE_SPOT@NOSUCHPAIR");
    await fake.waitForSubscribers("btcusdt@trade");
    const [gap] = await h.waitForEvents("gap", 1);
    expect(gap).toMatchObject({ symbol: "NOSUCHPAIR", reason: "subscription_error" });
    expect(gap!.detail).toContain("not listed by Binance spot (/api/v3/exchangeInfo)");
    const trade = fake.trade();
    await h.waitFor(() => h.events("trade").some((event) => event.id === String(trade.a)));
  });
});

describe("trades and BBO", () => {
  test("trades from @trade: id `t`, taker side from `m`; BBO from bookTicker stamped with the receive time", async () => {
    const { fake, h } = start("TRADES:BINANCE_SPOT@BTCUSDT,BBO:BINANCE_SPOT@BTCUSDT");
    await fake.waitForSubscribers("btcusdt@trade");
    await fake.waitForSubscribers("btcusdt@bookTicker");
    const sent = [fake.trade("BTCUSDT", { m: true, p: "65000.1", q: "0.123" }), fake.trade("BTCUSDT", { m: false })];
    const trades = await h.waitForEvents("trade", 2);
    // `m` true: the buyer was the maker, so the taker sold.
    expect(trades.map((trade) => [trade.side, trade.price, trade.amount])).toEqual([["sell", 65000.1, 0.123], ["buy", Number(sent[1]!.p), Number(sent[1]!.q)]]);
    const base = { type: "trade", exchange: "BINANCE_SPOT", symbol: "BTCUSDT", amountUnit: "base", contractValue: 1 } as const;
    expect(trades).toEqual(
      sent.map((frame, i) => ({ ...base, id: String(frame.a), timestamp: frame.T * 1000, localTimestamp: trades[i]!.localTimestamp, side: trades[i]!.side, price: Number(frame.p), amount: Number(frame.q) })),
    );

    fake.depthStep();
    const ticker = fake.market().bookTickers.at(-1)!.frame;
    const [bbo] = await h.waitForEvents("bbo", 1);
    // bookTicker carries no time: the row's exchange time is its receive time.
    const { timestamp, localTimestamp, ...quote } = bbo!;
    expect(timestamp).toBe(localTimestamp);
    expect(quote).toEqual({ type: "bbo", exchange: "BINANCE_SPOT", symbol: "BTCUSDT", bidPrice: Number(ticker.b), bidAmount: Number(ticker.B), askPrice: Number(ticker.a), askAmount: Number(ticker.A) });
    expect(subscription(h, "TRADES:BINANCE_SPOT@BTCUSDT").stats.messages).toBe(2);
  });
});

describe("L2 book", () => {
  test("a book rebuilt from the emitted rows equals the venue's after a long random sequence", async () => {
    const symbols = ["BTCUSDT", "ETHBTC"];
    const { fake, h } = start("L2:BINANCE_SPOT@BTCUSDT,L2:BINANCE_SPOT@ETHBTC", { symbols, seed: 20_260_102 });
    for (const symbol of symbols) await fake.waitForSubscribers(`${symbol.toLowerCase()}@depth@100ms`);
    await driveRandomMarket(h, fake, symbols, 40);
    for (const symbol of symbols) {
      const emitted = books(h, symbol);
      expect(snapshots(h, symbol)).toHaveLength(1);
      const served = fake.snapshotsServed.find((entry) => entry.symbol === symbol)!;
      expect(emitted[0]).toMatchObject({ isSnapshot: true, sequence: served.lastUpdateId });
      // Every event after the snapshot, in order; the snapshot rows carry the first applied event's E.
      const expected = fake.market(symbol).depthEvents.filter((event) => event.u > served.lastUpdateId);
      const deltas = emitted.slice(1);
      expect(deltas.map((delta) => delta.sequence)).toEqual(expected.map((event) => event.u));
      expect(emitted[0]!.timestamp).toBe(expected[0]!.E * 1000);
      // Field for field: spot rows take the event time `E` (spot sends no transaction time).
      const levels = (side: ReadonlyArray<readonly [string, string]>) => side.flatMap(([price, amount]) => [Number(price), Number(amount)]);
      const row = { type: "book_change", exchange: "BINANCE_SPOT", symbol, isSnapshot: false, amountUnit: "base", contractValue: 1 } as const;
      expect(deltas).toEqual(expected.map((event, i) => ({ ...row, timestamp: event.E * 1000, localTimestamp: deltas[i]!.localTimestamp, sequence: event.u, bids: levels(event.b), asks: levels(event.a) })));
      expect(subscription(h, `L2:BINANCE_SPOT@${symbol}`).stats.resyncs).toBe(0);
    }
    expect(h.events("gap")).toEqual([]);
    // The snapshot is the spot one: weight 50 for 1000 levels.
    expect(fake.restLog.filter((entry) => entry.path === "/api/v3/depth")).toHaveLength(2);
  });

  test("an event whose U does not follow the last u is a sequence gap: gap row, fresh snapshot, book equal again", async () => {
    const { fake, h } = start("L2:BINANCE_SPOT@BTCUSDT");
    await driveUntil(fake, () => books(h).length >= 5);
    const lost = fake.dropDepthEvent()!;
    await driveUntil(fake, () => snapshots(h).length >= 2 && books(h).at(-1)!.sequence > lost.u);
    const gaps = h.events("gap");
    expect(gaps).toHaveLength(1);
    expect(gaps[0]).toMatchObject({ stream: "L2", reason: "sequence" });
    expect(gaps[0]!.detail).toBe(`depth update U=${lost.u + 1} does not follow u=${lost.U - 1}`);
    expect(subscription(h, "L2:BINANCE_SPOT@BTCUSDT").stats.resyncs).toBe(1);
    expect(snapshots(h)[1]!.sequence).toBeGreaterThanOrEqual(lost.u);
    expectSnapshotAfterEveryGap(emittedFor(h, "L2:BINANCE_SPOT@BTCUSDT"));
    await expectBookMatchesTruth(h, fake);
  });

  test("duplicated depth events are dropped without a gap", async () => {
    const { fake, h } = start("L2:BINANCE_SPOT@BTCUSDT");
    await driveUntil(fake, () => books(h).length >= 3);
    // Every fifth event is sent twice (a re-sent frame): the second copy is stale, never a row or a gap.
    for (let i = 0; i < 20; i++) {
      fake.depthStep();
      if (i % 5 === 0) fake.duplicateLastDepth();
    }
    await expectBookMatchesTruth(h, fake);
    expect(h.events("gap")).toEqual([]);
    const sequences = books(h).slice(1).map((event) => event.sequence);
    expect(new Set(sequences).size).toBe(sequences.length);
  });
});

describe("connection faults and rollover", () => {
  test("a server close: a disconnect gap on every subscription, reconnect, resubscribe, fresh snapshot", async () => {
    const { fake, h } = start("L2:BINANCE_SPOT@BTCUSDT,BBO:BINANCE_SPOT@BTCUSDT,TRADES:BINANCE_SPOT@BTCUSDT");
    await fake.waitForSubscribers("btcusdt@trade");
    await driveUntil(fake, () => books(h).length >= 3, { trades: true });
    fake.closeAll(1008, "Too many requests");
    await fake.waitForSubscribers("btcusdt@depth@100ms", 1);
    await driveUntil(fake, () => snapshots(h).length >= 2, { trades: true });
    const gaps = h.events("gap");
    expect(gaps.map((gap) => `${gap.stream}:${gap.reason}`).sort()).toEqual(["BBO:disconnect", "L2:disconnect", "TRADES:disconnect"]);
    expect(gaps.every((gap) => gap.detail.includes("code 1008"))).toBe(true);
    expect(subscription(h, "L2:BINANCE_SPOT@BTCUSDT").stats.reconnects).toBe(1);
    expectSnapshotAfterEveryGap(emittedFor(h, "L2:BINANCE_SPOT@BTCUSDT"));
    await expectBookMatchesTruth(h, fake);
    const trade = fake.trade();
    await h.waitFor(() => h.events("trade").some((event) => event.id === String(trade.a)));
  });

  /** Drives the market across the replacement(s) and checks nothing was lost or repeated. */
  async function expectSeamless(fake: FakeBinanceSpot, h: ConnectorHarness, symbols: readonly string[], drive: () => Promise<void>) {
    for (const symbol of symbols) await fake.waitForSubscribers(`${symbol.toLowerCase()}@trade`);
    const tradesBefore = new Map(symbols.map((symbol) => [symbol, fake.market(symbol).trades.length]));
    await drive();
    for (const symbol of symbols) {
      await expectBookMatchesTruth(h, fake, symbol);
      const sent = fake.market(symbol).trades.slice(tradesBefore.get(symbol));
      expect(sent.every((entry) => entry.delivered >= 1)).toBe(true);
      await h.waitFor(() => h.events("trade", symbol).length >= sent.length, 5000, "all trades");
      expect(h.events("trade", symbol).map((trade) => trade.id)).toEqual(sent.map((entry) => String(entry.frame.a)));
      expect(snapshots(h, symbol)).toHaveLength(1);
      const deltas = books(h, symbol).slice(1).map((event) => event.sequence);
      expect(new Set(deltas).size).toBe(deltas.length);
      expect(deltas).toEqual([...deltas].sort((a, b) => a - b));
      expect(subscription(h, `L2:BINANCE_SPOT@${symbol}`).stats.resyncs).toBe(0);
    }
    expect(h.events("gap")).toEqual([]);
  }

  const keys = (symbols: readonly string[]) => symbols.flatMap((symbol) => [`L2:BINANCE_SPOT@${symbol}`, `TRADES:BINANCE_SPOT@${symbol}`]).join(",");

  test("connections are replaced before the 24 h limit, make before break, without a duplicate or a gap", async () => {
    const symbols = ["BTCUSDT", "ETHBTC"];
    const { fake, h } = start(keys(symbols), { symbols, seed: 11, env: { XTRADER_BINANCE_SPOT_CONNECTION_MAX_AGE_MS: "600" } });
    await expectSeamless(fake, h, symbols, async () => {
      const until = performance.now() + 2500;
      while (performance.now() < until) {
        fake.randomSteps(2, symbols);
        for (const symbol of symbols) fake.trade(symbol);
        await Bun.sleep(4);
      }
    });
    expect(fake.exchange.connections.length).toBeGreaterThanOrEqual(3);
    const closed = fake.exchange.connections.filter((connection) => !connection.open);
    expect(closed.length).toBeGreaterThanOrEqual(2);
    expect(closed.every((connection) => connection.closeCode === 1000)).toBe(true);
    expect(h.logs.some((line) => line.includes("replacing the connection before Binance's 24 h limit"))).toBe(true);
  }, 15_000);

  test("a serverShutdown notice replaces the connection at once, then the venue's close loses nothing", async () => {
    const symbols = ["BTCUSDT"];
    const { fake, h } = start(keys(symbols), { symbols, seed: 12 });
    await expectSeamless(fake, h, symbols, async () => {
      await driveUntil(fake, () => books(h).length >= 3, { trades: true });
      const first = fake.exchange.connections[0]!;
      fake.serverShutdown();
      await driveUntil(fake, () => fake.exchange.openConnections().length === 2 && fake.subscriptions().every((entry) => entry.streams.length === 2), { trades: true });
      for (let i = 0; i < 20; i++) {
        fake.randomSteps(1, symbols);
        await Bun.sleep(5);
      }
      first.close(1000, ""); // the shutdown the notice announced
      for (let i = 0; i < 40; i++) {
        fake.randomSteps(1, symbols);
        await Bun.sleep(5);
      }
    });
    expect(fake.exchange.connections).toHaveLength(2);
    expect(h.logs.some((line) => line.includes("announced a shutdown of the connection"))).toBe(true);
  }, 15_000);
});

import { afterEach, describe, expect, test } from "bun:test";
import { buildConfig } from "../src/cli/config.ts";
import { binanceFutures } from "../src/connectors/binance-futures.ts";
import { DepthSequencer } from "../src/connectors/kit/sequence/binance-futures.ts";
import { RestWeightGate, type GateClock } from "../src/connectors/binance-futures-rest.ts";
import { RecentKeys } from "../src/connectors/dedup.ts";
import type { Trade } from "../src/core/events.ts";
import { createLogger } from "../src/core/log.ts";
import { rebuildBook, startConnector, type ConnectorHarness } from "./support/connector-harness.ts";
import { FakeBinanceFutures, type DepthFrame, type FakeBinanceOptions } from "./support/fake-binance.ts";
import { FakeVenue } from "./support/fake-venue.ts";
import { books, driveRandomMarket, driveUntil, emittedFor, expectBookMatchesTruth, expectSnapshotAfterEveryGap, subscriptionOf } from "./support/binance-checks.ts";

let fake: FakeBinanceFutures | undefined;
let harness: ConnectorHarness | undefined;

afterEach(async () => {
  await harness?.stop();
  await fake?.stop();
  harness = undefined;
  fake = undefined;
});

function start(subscriptions: string, options: FakeBinanceOptions & { env?: Record<string, string> } = {}) {
  const venue = (fake = FakeBinanceFutures.start(options));
  const h = (harness = startConnector(subscriptions, { ...venue.env, ...options.env }));
  return { fake: venue, h };
}

const subscription = subscriptionOf;

describe("instrument rule", () => {
  test("accepts perpetual and delivery symbols, case-insensitively from the command line", () => {
    expect(binanceFutures.nativeInstrument("BTCUSDT")).toEqual({ native: "BTCUSDT" });
    expect(binanceFutures.nativeInstrument("1000PEPEUSDT")).toEqual({ native: "1000PEPEUSDT" });
    expect(binanceFutures.nativeInstrument("BTCUSDT_260626")).toEqual({ native: "BTCUSDT_260626" });
    const { config } = buildConfig(
      { subscriptions: "trades:binance_futures@btcusdt", "output-directory": "/tmp" },
      {},
    );
    expect(config.subscriptions[0]).toMatchObject({ key: "TRADES:BINANCE_FUTURES@BTCUSDT", instrument: "BTCUSDT" });
  });

  test("rejects other forms with one sentence naming the instrument", () => {
    expect(binanceFutures.nativeInstrument("BTC-USDT")).toEqual({
      error:
        "invalid BINANCE_FUTURES instrument 'BTC-USDT'; expected a USD-M futures symbol such as BTCUSDT (perpetual) or BTCUSDT_260626 (delivery)",
    });
    expect(() =>
      buildConfig({ subscriptions: "L2:BINANCE_FUTURES@BTC/USDT", "output-directory": "/tmp" }, {}),
    ).toThrow("invalid BINANCE_FUTURES instrument 'BTC/USDT'");
  });
});

describe("DepthSequencer", () => {
  test("follows the documented sync rules", () => {
    const sequencer = new DepthSequencer();
    expect(sequencer.check(1, 5, 0)).toBe("no_snapshot");
    sequencer.begin(100);
    expect(sequencer.check(90, 99, 80)).toBe("stale"); // u < lastUpdateId
    expect(sequencer.check(101, 110, 99)).toBe("snapshot_too_old"); // U > lastUpdateId
    sequencer.begin(100);
    expect(sequencer.check(100, 104, 95)).toBe("apply"); // U == lastUpdateId
    expect(sequencer.check(105, 108, 104)).toBe("apply"); // pu == previous u
    expect(sequencer.check(105, 108, 104)).toBe("stale"); // duplicate
    expect(sequencer.check(112, 115, 110)).toBe("gap"); // pu skips 108..110
    sequencer.begin(200);
    expect(sequencer.check(190, 200, 185)).toBe("covered"); // u == lastUpdateId: in sync, nothing to apply
    expect(sequencer.position).toBe(200);
    expect(sequencer.check(201, 204, 200)).toBe("apply");
  });

  test("a repeat of an applied event is stale; an unseen u below the last applied one is 'backwards'", () => {
    const sequencer = new DepthSequencer();
    sequencer.begin(100);
    expect(sequencer.check(100, 104, 95)).toBe("apply");
    expect(sequencer.check(105, 9_999_999, 104)).toBe("apply"); // a u far too high, in chain
    expect(sequencer.check(105, 9_999_999, 104)).toBe("stale"); // sent again
    expect(sequencer.check(100, 104, 95)).toBe("stale"); // an older applied one sent again
    expect(sequencer.check(105, 108, 104)).toBe("backwards"); // the real next one: never applied, below the last
  });
});

describe("RestWeightGate", () => {
  test("waits for the next minute when the used-weight header leaves no room, and pauses on Retry-After", async () => {
    const server = FakeVenue.start();
    let weight = 1910;
    let status = 200;
    server.rest("GET", "/fapi/v1/depth", () =>
      Response.json(
        status === 200 ? { lastUpdateId: 1, bids: [], asks: [] } : { code: -1003, msg: "Too many requests." },
        { status, headers: { "X-MBX-USED-WEIGHT-1M": String(weight), "Retry-After": "7" } },
      ),
    );
    let now = 1_800_000_000_000 + 10_000; // 10 s into a minute
    const slept: number[] = [];
    const clock: GateClock = {
      now: () => now,
      sleep: async (ms) => {
        slept.push(ms);
        now += ms;
      },
    };
    const gate = new RestWeightGate({
      baseUrl: server.httpUrl,
      log: createLogger("error"),
      name: "test",
      weightPerMinute: 2400,
      budgetShare: 0.8,
      timeoutMs: 5000,
      receivedAt: () => now * 1000,
      clock,
    });
    try {
      expect(gate.budget).toBe(1920);
      const first = await gate.get("/fapi/v1/depth", { symbol: "BTCUSDT", limit: "1000" }, 20);
      expect(first.ok).toBe(true);
      // 1910 used + 20 > 1920: wait until one second past the minute boundary.
      expect(gate.delayFor(20, now)).toBe(60_000 - 10_000 + 1_000);
      expect(gate.delayFor(20, now + 51_000)).toBe(0);
      weight = 100;
      await gate.get("/fapi/v1/depth", { symbol: "BTCUSDT", limit: "1000" }, 20);
      expect(slept).toEqual([51_000]);
      status = 429;
      const limited = await gate.get("/fapi/v1/depth", { symbol: "BTCUSDT", limit: "1000" }, 20);
      expect(limited).toMatchObject({ ok: false, status: 429, code: -1003, retryAfterMs: 7000 });
      expect(gate.delayFor(1, now)).toBe(7000);
      status = 200;
      await gate.get("/fapi/v1/depth", { symbol: "BTCUSDT", limit: "1000" }, 20);
      expect(slept).toEqual([51_000, 7000]);
    } finally {
      gate.close();
      await server.stop();
    }
  });
});

describe("connections", () => {
  test("routes each stream to its path and shares one connection per path", async () => {
    const { fake, h } = start(
      "TRADES:BINANCE_FUTURES@BTCUSDT,L2:BINANCE_FUTURES@BTCUSDT,BBO:BINANCE_FUTURES@BTCUSDT,FUNDING:BINANCE_FUTURES@BTCUSDT,LIQUIDATIONS:BINANCE_FUTURES@BTCUSDT",
    );
    await fake.waitForSubscribers("btcusdt@forceOrder");
    await fake.waitForSubscribers("btcusdt@bookTicker");
    const byPath = new Map(fake.exchange.connections.map((connection) => [connection.path, connection]));
    expect([...byPath.keys()].sort()).toEqual(["/market/stream", "/public/stream"]);
    const market = fake.subscriptions("market");
    const publicRoute = fake.subscriptions("public");
    expect(market).toHaveLength(1);
    expect(publicRoute).toHaveLength(1);
    expect(market[0]!.streams.sort()).toEqual(["btcusdt@aggTrade", "btcusdt@forceOrder", "btcusdt@markPrice@1s"]);
    expect(publicRoute[0]!.streams.sort()).toEqual(["btcusdt@bookTicker", "btcusdt@depth@100ms"]);
    const request = byPath.get("/market/stream")!.receivedJson()[0] as { method: string; params: string[]; id: number };
    expect(request.method).toBe("SUBSCRIBE");
    expect(Number.isInteger(request.id)).toBe(true);
    expect(h.events("gap")).toEqual([]);
  });

  test("splits streams over connections at the per-connection limit", async () => {
    const symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "BNBUSDT"];
    const { fake, h } = start(symbols.map((symbol) => `TRADES:BINANCE_FUTURES@${symbol}`).join(","), {
      symbols,
      env: { XTRADER_BINANCE_FUTURES_STREAMS_PER_CONNECTION: "2" },
    });
    for (const symbol of symbols) await fake.waitForSubscribers(`${symbol.toLowerCase()}@aggTrade`);
    const connections = fake.subscriptions("market");
    expect(connections.map((entry) => entry.streams.length).sort()).toEqual([1, 2, 2]);
    for (const symbol of symbols) fake.trade(symbol);
    await h.waitForEvents("trade", symbols.length);
    expect(new Set(h.events("trade").map((trade) => trade.symbol))).toEqual(new Set(symbols));
  });

  test("answers the server's ping frames", async () => {
    const { fake } = start("TRADES:BINANCE_FUTURES@BTCUSDT,BBO:BINANCE_FUTURES@BTCUSDT");
    await fake.waitForSubscribers("btcusdt@aggTrade");
    await fake.waitForSubscribers("btcusdt@bookTicker");
    fake.pingAll();
    for (const connection of fake.exchange.openConnections()) {
      await fake.exchange.waitFor(() => connection.pongs >= 1, 5000, "pong");
    }
  });

  test("a SUBSCRIBE that is never answered replaces the connection instead of idling on keepalives", async () => {
    const { fake, h } = start("TRADES:BINANCE_FUTURES@BTCUSDT", {
      env: { XTRADER_BINANCE_FUTURES_REQUEST_TIMEOUT_MS: "300" },
    });
    fake.swallowSubscribes = 1;
    await fake.waitForSubscribers("btcusdt@aggTrade", 1, 5000);
    const sent = fake.trade();
    const [trade] = await h.waitForEvents("trade", 1);
    expect(trade!.id).toBe(String(sent.a));
    expect(subscription(h, "TRADES:BINANCE_FUTURES@BTCUSDT").stats.reconnects).toBe(1);
    expect(h.logs.some((line) => line.includes("no answer to SUBSCRIBE"))).toBe(true);
  });

  test("a rejected stream fails alone; requests stay under the venue's message rate", async () => {
    // One batched SUBSCRIBE, then one request per stream: 12 requests, more than the venue's 10 per second.
    const symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "BNBUSDT", "ADAUSDT", "DOGEUSDT", "TRXUSDT", "LTCUSDT", "DOTUSDT", "AVAXUSDT"];
    const venue = (fake = FakeBinanceFutures.start({ symbols }));
    venue.rejectedStreams.set("ethusdt@aggTrade", { code: 2, msg: "Invalid request: stream not permitted" });
    const h = (harness = startConnector(symbols.map((symbol) => `TRADES:BINANCE_FUTURES@${symbol}`).join(","), venue.env));
    const failed = await h.waitForEvents("gap", 1, 5000);
    expect(failed[0]).toMatchObject({ symbol: "ETHUSDT", stream: "TRADES", reason: "subscription_error" });
    expect(failed[0]!.detail).toContain("ethusdt@aggTrade");
    for (const symbol of symbols.filter((symbol) => symbol !== "ETHUSDT")) {
      await venue.waitForSubscribers(`${symbol.toLowerCase()}@aggTrade`);
      venue.trade(symbol);
    }
    venue.trade("ETHUSDT");
    await h.waitForEvents("trade", symbols.length - 1);
    expect(h.events("trade", "ETHUSDT")).toEqual([]);
    expect(venue.rateLimitCloses).toEqual([]);
    expect(venue.exchange.connections).toHaveLength(1);
    expect(h.logs.some((line) => line.startsWith("error:") && line.includes("TRADES:BINANCE_FUTURES@ETHUSDT"))).toBe(true);
  });
});

describe("normalization", () => {
  test("trades: id, taker side from `m`, price, amount, times", async () => {
    const { fake, h } = start("TRADES:BINANCE_FUTURES@BTCUSDT");
    await fake.waitForSubscribers("btcusdt@aggTrade");
    const takerSold = fake.trade("BTCUSDT", { m: true, p: "65000.1", q: "0.123" });
    const takerBought = fake.trade("BTCUSDT", { m: false });
    const trades = await h.waitForEvents("trade", 2);
    expect(trades[0]).toEqual({
      type: "trade",
      exchange: "BINANCE_FUTURES",
      symbol: "BTCUSDT",
      timestamp: takerSold.T * 1000,
      localTimestamp: trades[0]!.localTimestamp,
      id: String(takerSold.a),
      side: "sell",
      price: 65000.1,
      amount: 0.123,
      amountUnit: "base",
      contractValue: 1,
    });
    expect(trades[1]).toMatchObject({
      id: String(takerBought.a),
      side: "buy",
      price: Number(takerBought.p),
      amount: Number(takerBought.q),
      timestamp: takerBought.T * 1000,
    });
    for (const trade of trades) {
      expect(Number.isInteger(trade.localTimestamp)).toBe(true);
      expect(Math.abs(trade.localTimestamp - Date.now() * 1000)).toBeLessThan(5_000_000);
    }
    expect(subscription(h, "TRADES:BINANCE_FUTURES@BTCUSDT").stats.messages).toBe(2);
  });

  test("BBO from bookTicker", async () => {
    const { fake, h } = start("BBO:BINANCE_FUTURES@BTCUSDT");
    await fake.waitForSubscribers("btcusdt@bookTicker");
    fake.depthStep();
    const sent = fake.market().bookTickers.at(-1)!.frame;
    const [bbo] = await h.waitForEvents("bbo", 1);
    expect(bbo).toEqual({
      type: "bbo",
      exchange: "BINANCE_FUTURES",
      symbol: "BTCUSDT",
      timestamp: sent.T * 1000,
      localTimestamp: bbo!.localTimestamp,
      bidPrice: Number(sent.b),
      bidAmount: Number(sent.B),
      askPrice: Number(sent.a),
      askAmount: Number(sent.A),
    });
  });

  test("funding from markPrice@1s, with delivery contracts' empty rate and zero time as missing", async () => {
    const { fake, h } = start("FUNDING:BINANCE_FUTURES@BTCUSDT");
    await fake.waitForSubscribers("btcusdt@markPrice@1s");
    const perpetual = fake.markPrice("BTCUSDT");
    const delivery = fake.markPrice("BTCUSDT", { r: "", T: 0, E: perpetual.E + 1000 });
    const funding = await h.waitForEvents("funding", 2);
    expect(funding[0]).toEqual({
      type: "funding",
      exchange: "BINANCE_FUTURES",
      symbol: "BTCUSDT",
      timestamp: perpetual.E * 1000,
      localTimestamp: funding[0]!.localTimestamp,
      markPrice: 65001.23456789,
      indexPrice: 64998.7654321,
      fundingRate: 0.0001,
      nextFundingTime: perpetual.T * 1000,
    });
    expect(funding[1]).toMatchObject({
      timestamp: delivery.E * 1000,
      fundingRate: undefined,
      nextFundingTime: undefined,
      markPrice: 65001.23456789,
    });
  });

  test("liquidations from forceOrder: side, average fill price, filled quantity", async () => {
    const { fake, h } = start("LIQUIDATIONS:BINANCE_FUTURES@BTCUSDT");
    await fake.waitForSubscribers("btcusdt@forceOrder");
    const longLiquidated = fake.forceOrder("BTCUSDT");
    fake.publish("btcusdt@forceOrder", longLiquidated); // a repeated push is recorded once
    const shortLiquidated = fake.forceOrder("BTCUSDT", { S: "BUY", ap: "0", z: "0", p: "65100.0", q: "2.500", T: longLiquidated.o.T + 1000 });
    const liquidations = await h.waitForEvents("liquidation", 2);
    expect(liquidations[0]).toEqual({
      type: "liquidation",
      exchange: "BINANCE_FUTURES",
      symbol: "BTCUSDT",
      timestamp: longLiquidated.o.T * 1000,
      localTimestamp: liquidations[0]!.localTimestamp,
      id: String(longLiquidated.o.T),
      side: "sell",
      price: 64950.5,
      amount: 0.014,
      amountUnit: "base",
      contractValue: 1,
    });
    expect(liquidations[1]).toMatchObject({ side: "buy", price: 65100, amount: 2.5, id: String(shortLiquidated.o.T) });
    expect(h.events("liquidation")).toHaveLength(2);
  });

  test("malformed frames and unknown messages are counted and skipped", async () => {
    const { fake, h } = start("TRADES:BINANCE_FUTURES@BTCUSDT");
    await fake.waitForSubscribers("btcusdt@aggTrade");
    fake.sendRaw("{not json", "market");
    fake.sendRaw(JSON.stringify({ stream: "btcusdt@aggTrade", data: { e: "aggTrade", a: "x", p: "1" } }), "market");
    fake.sendRaw(JSON.stringify({ stream: "btcusdt@aggTrade", data: { e: "somethingNew" } }), "market");
    fake.sendRaw(JSON.stringify({ stream: "dogeusdt@aggTrade", data: { e: "aggTrade" } }), "market");
    fake.sendRaw(JSON.stringify({ hello: "world" }), "market");
    const good = fake.trade("BTCUSDT");
    const [trade] = await h.waitForEvents("trade", 1);
    expect(trade!.id).toBe(String(good.a));
    expect(subscription(h, "TRADES:BINANCE_FUTURES@BTCUSDT").stats.parseErrors).toBe(5);
    expect(h.events("trade")).toHaveLength(1);
    expect(h.logs.some((line) => line.startsWith("warn:") && line.includes("malformed JSON"))).toBe(true);
  });

  test("a duplicated trade is emitted once", async () => {
    const { fake, h } = start("TRADES:BINANCE_FUTURES@BTCUSDT");
    await fake.waitForSubscribers("btcusdt@aggTrade");
    const first = fake.trade("BTCUSDT");
    fake.publish("btcusdt@aggTrade", first);
    const second = fake.trade("BTCUSDT");
    await h.waitFor(() => h.events("trade").some((trade) => trade.id === String(second.a)));
    expect(h.events("trade").map((trade) => trade.id)).toEqual([String(first.a), String(second.a)]);
  });
});

describe("L2 book", () => {
  test("a book rebuilt from the emitted rows equals the venue's after a long random sequence", async () => {
    const symbols = ["BTCUSDT", "ETHUSDT"];
    const { fake, h } = start("L2:BINANCE_FUTURES@BTCUSDT,L2:BINANCE_FUTURES@ETHUSDT,TRADES:BINANCE_FUTURES@BTCUSDT", {
      symbols,
      seed: 20_260_101,
    });
    await fake.waitForSubscribers("btcusdt@depth@100ms");
    await fake.waitForSubscribers("ethusdt@depth@100ms");
    await driveRandomMarket(h, fake, symbols, 60);
    for (const symbol of symbols) {
      const emitted = books(h, symbol);
      const snapshots = emitted.filter((event) => event.isSnapshot);
      expect(snapshots).toHaveLength(1);
      expect(emitted[0]!.isSnapshot).toBe(true);
      // The snapshot row set is the REST body, flattened.
      const served = fake.snapshotsServed.find((entry) => entry.symbol === symbol)!;
      expect(emitted[0]!.sequence).toBe(served.lastUpdateId);
      // Deltas are every delivered event after the snapshot, in order, field for field.
      // (The one ending exactly at lastUpdateId is inside the snapshot and is not written again.)
      const deltas = emitted.slice(1);
      const expected = fake.market(symbol).depthEvents.filter((event) => event.u > served.lastUpdateId);
      expect(deltas.map((delta) => delta.sequence)).toEqual(expected.map((event) => event.u));
      const sample = expected[expected.length >> 1]!;
      const delta = deltas[expected.length >> 1]!;
      expect(delta).toEqual({
        type: "book_change",
        exchange: "BINANCE_FUTURES",
        symbol,
        timestamp: sample.T * 1000,
        localTimestamp: delta.localTimestamp,
        isSnapshot: false,
        sequence: sample.u,
        bids: sample.b.flatMap(([price, amount]) => [Number(price), Number(amount)]),
        asks: sample.a.flatMap(([price, amount]) => [Number(price), Number(amount)]),
        amountUnit: "base",
        contractValue: 1,
      });
      expect(subscription(h, `L2:BINANCE_FUTURES@${symbol}`).stats.resyncs).toBe(0);
    }
    expect(h.events("gap")).toEqual([]);
    expect(fake.market("BTCUSDT").depthEvents.length).toBeGreaterThan(3000);
  });

  test("sync when the snapshot's lastUpdateId equals the first delta's U", async () => {
    const venue = (fake = FakeBinanceFutures.start());
    const market = venue.market();
    let straddling: { U: number; u: number } | undefined;
    venue.beforeSnapshot = (m) => {
      venue.beforeSnapshot = undefined;
      m.randomUpdate(venue.random); // the snapshot is taken after the first update of an event...
    };
    venue.afterSnapshot = (m) => {
      venue.afterSnapshot = undefined;
      m.randomUpdate(venue.random); // ...which then completes and is sent
      m.randomUpdate(venue.random);
      straddling = venue.flushDepth();
    };
    const h = (harness = startConnector("L2:BINANCE_FUTURES@BTCUSDT", venue.env));
    const [snapshot, delta] = await h.waitForEvents("book_change", 2);
    expect(straddling!.U).toBe(snapshot!.sequence);
    expect(straddling!.u).toBeGreaterThan(straddling!.U);
    expect(delta).toMatchObject({ isSnapshot: false, sequence: straddling!.u });
    venue.depthStep();
    await expectBookMatchesTruth(h, venue);
    expect(market.depthEvents).toHaveLength(2);
    expect(h.events("gap")).toEqual([]);
  });

  test("sync when the snapshot's lastUpdateId equals the first delta's u: that delta is inside the snapshot", async () => {
    const venue = (fake = FakeBinanceFutures.start());
    let straddling: DepthFrame | undefined;
    venue.beforeSnapshot = (m) => {
      venue.beforeSnapshot = undefined;
      m.randomUpdate(venue.random);
      m.randomUpdate(venue.random);
      straddling = venue.flushDepth(); // sent just before the snapshot is taken
    };
    const h = (harness = startConnector("L2:BINANCE_FUTURES@BTCUSDT", venue.env));
    const [snapshot] = await h.waitForEvents("book_change", 1);
    expect(snapshot).toMatchObject({ isSnapshot: true, sequence: straddling!.u });
    // The snapshot holds the state after that delta, so it is no later than the delta's time (whatever
    // the time of the REST response); the delta itself adds nothing and is not written again.
    expect(snapshot!.timestamp).toBeLessThanOrEqual(straddling!.T * 1000);
    const next = venue.depthStep()!;
    await expectBookMatchesTruth(h, venue);
    expect(books(h).map((event) => event.sequence)).toEqual([straddling!.u, next.u]);
    expect(h.events("gap")).toEqual([]);
  });

  test("a snapshot older than the stream is refetched before anything is emitted", async () => {
    const venue = (fake = FakeBinanceFutures.start());
    // The snapshot is taken mid-event, and that event never reaches the client (as when the snapshot
    // predates the subscription): the first delta it sees starts beyond lastUpdateId.
    venue.beforeSnapshot = (m) => {
      venue.beforeSnapshot = undefined;
      m.randomUpdate(venue.random);
    };
    venue.afterSnapshot = (m) => {
      venue.afterSnapshot = undefined;
      venue.dropDepthEvent(m.symbol);
      venue.depthStep(m.symbol);
    };
    const h = (harness = startConnector("L2:BINANCE_FUTURES@BTCUSDT", venue.env));
    await driveUntil(venue, () => books(h).length >= 2);
    expect(venue.snapshotsServed.length).toBeGreaterThanOrEqual(2);
    expect(books(h).filter((event) => event.isSnapshot)).toHaveLength(1);
    expect(books(h)[0]!.sequence).toBe(venue.snapshotsServed.at(-1)!.lastUpdateId);
    await expectBookMatchesTruth(h, venue);
    expect(h.events("gap")).toEqual([]);
  });

  test("a pu gap leads to a counted resync: gap marker, then fresh snapshot rows", async () => {
    const { fake, h } = start("L2:BINANCE_FUTURES@BTCUSDT");
    await driveUntil(fake, () => books(h).length >= 5);
    const lost = fake.dropDepthEvent()!;
    await driveUntil(fake, () => books(h).filter((event) => event.isSnapshot).length >= 2 && books(h).at(-1)!.sequence > lost.u);
    const gaps = h.events("gap");
    expect(gaps).toHaveLength(1);
    expect(gaps[0]).toMatchObject({ stream: "L2", reason: "sequence" });
    expect(gaps[0]!.detail).toContain(`pu=${lost.u}`);
    expect(subscription(h, "L2:BINANCE_FUTURES@BTCUSDT").stats.resyncs).toBe(1);
    const secondSnapshot = books(h).filter((event) => event.isSnapshot)[1]!;
    expect(secondSnapshot.sequence).toBeGreaterThanOrEqual(lost.u);
    expect(secondSnapshot.bids.length).toBeGreaterThan(0);
    expectSnapshotAfterEveryGap(emittedFor(h, "L2:BINANCE_FUTURES@BTCUSDT"));
    await expectBookMatchesTruth(h, fake);
  });

  test("a duplicated depth event is dropped; a reordered one forces a resync", async () => {
    const { fake, h } = start("L2:BINANCE_FUTURES@BTCUSDT");
    await driveUntil(fake, () => books(h).length >= 3);
    fake.duplicateLastDepth();
    fake.depthStep();
    await expectBookMatchesTruth(h, fake);
    expect(subscription(h, "L2:BINANCE_FUTURES@BTCUSDT").stats.resyncs).toBe(0);
    const deltas = books(h).filter((event) => !event.isSnapshot).map((event) => event.sequence);
    expect(new Set(deltas).size).toBe(deltas.length);

    fake.reorderNextDepth();
    fake.depthStep();
    await driveUntil(fake, () => books(h).filter((event) => event.isSnapshot).length >= 2);
    expect(h.events("gap").map((gap) => gap.reason)).toEqual(["sequence"]);
    expect(subscription(h, "L2:BINANCE_FUTURES@BTCUSDT").stats.resyncs).toBe(1);
    expectSnapshotAfterEveryGap(emittedFor(h, "L2:BINANCE_FUTURES@BTCUSDT"));
    await expectBookMatchesTruth(h, fake);
  });

  test("a crossed book is a gap: resync with fresh snapshot rows, no crossed book emitted", async () => {
    const { fake, h } = start("L2:BINANCE_FUTURES@BTCUSDT");
    await driveUntil(fake, () => books(h).length >= 3);
    const crossing = fake.sendCrossedDepth();
    await driveUntil(fake, () => books(h).filter((event) => event.isSnapshot).length >= 2);
    const gaps = h.events("gap");
    expect(gaps).toHaveLength(1);
    expect(gaps[0]).toMatchObject({ stream: "L2", reason: "crossed_book" });
    expect(subscription(h, "L2:BINANCE_FUTURES@BTCUSDT").stats.resyncs).toBe(1);
    expect(books(h).some((event) => event.sequence === crossing.u && !event.isSnapshot)).toBe(false);
    // Replaying the rows never shows a crossed book.
    const replay = rebuildBook([]);
    for (const event of books(h)) {
      replay.apply(event.bids, event.asks, event.isSnapshot);
      expect(replay.isCrossed()).toBe(false);
    }
    expectSnapshotAfterEveryGap(emittedFor(h, "L2:BINANCE_FUTURES@BTCUSDT"));
    await expectBookMatchesTruth(h, fake);
  });

  test("an unreadable depth event while live forces a resync", async () => {
    const { fake, h } = start("L2:BINANCE_FUTURES@BTCUSDT");
    await driveUntil(fake, () => books(h).length >= 3);
    fake.sendRaw(JSON.stringify({ stream: "btcusdt@depth@100ms", data: { e: "depthUpdate", U: 1, u: "x" } }), "public");
    await driveUntil(fake, () => books(h).filter((event) => event.isSnapshot).length >= 2);
    const l2 = subscription(h, "L2:BINANCE_FUTURES@BTCUSDT");
    expect(l2.stats.parseErrors).toBe(1);
    expect(l2.stats.resyncs).toBe(1);
    expect(h.events("gap")[0]).toMatchObject({ reason: "sequence" });
    await expectBookMatchesTruth(h, fake);
  });

  test("resync() from the pipeline marks a gap and emits a fresh snapshot before further deltas", async () => {
    const { fake, h } = start("L2:BINANCE_FUTURES@BTCUSDT");
    await driveUntil(fake, () => books(h).length >= 3);
    const l2 = subscription(h, "L2:BINANCE_FUTURES@BTCUSDT");
    h.connector.resync(l2, "overflow", "events dropped because the sink was behind");
    await driveUntil(fake, () => books(h).filter((event) => event.isSnapshot).length >= 2);
    expect(h.events("gap")).toMatchObject([{ reason: "overflow", detail: "events dropped because the sink was behind" }]);
    expect(l2.stats.resyncs).toBe(1);
    expectSnapshotAfterEveryGap(emittedFor(h, l2.key));
    await expectBookMatchesTruth(h, fake);
  });
});

describe("hostile numbers", () => {
  /** Texts Number() reads as a number (or 0) that are not Binance decimals, or not a valid price/amount. */
  const HOSTILE = ["Infinity", "1e309", "1e2", "0x10", " 5", "5 ", "", "-1", "NaN", "9".repeat(400)];

  test("a hostile price or amount in any stream is a counted, logged parse error and never a row; a book resyncs", async () => {
    const { fake, h } = start(
      "TRADES:BINANCE_FUTURES@BTCUSDT,BBO:BINANCE_FUTURES@BTCUSDT,FUNDING:BINANCE_FUTURES@BTCUSDT,LIQUIDATIONS:BINANCE_FUTURES@BTCUSDT,L2:BINANCE_FUTURES@BTCUSDT",
    );
    for (const stream of ["aggTrade", "bookTicker", "markPrice@1s", "forceOrder"]) await fake.waitForSubscribers(`btcusdt@${stream}`);
    await driveUntil(fake, () => books(h).length >= 2);
    const market = fake.market();
    const bboBefore = h.events("bbo").length;
    const sent = { trades: 0, bbo: 0, funding: 0, liquidations: 0, l2: 0 };
    for (const value of HOSTILE) {
      for (const field of ["p", "q"] as const) fake.trade("BTCUSDT", { [field]: value }), sent.trades++;
      for (const field of ["b", "B", "a", "A"] as const) fake.publish("btcusdt@bookTicker", { ...market.bookTickerFrame(), [field]: value }), sent.bbo++;
      for (const field of ["p", "i", "r"] as const) {
        if (field === "r" && (value === "-1" || value === "")) continue; // a negative rate is valid; "" means none
        fake.markPrice("BTCUSDT", { [field]: value });
        sent.funding++;
      }
      for (const field of ["ap", "z", "p", "q"] as const) fake.forceOrder("BTCUSDT", { [field]: value }), sent.liquidations++;
      // A depth event in the chain with one hostile level: the book must not take it, and must restart.
      for (const level of [[value, "1.000"], ["65000.0", value]]) {
        const snapshots = books(h).filter((event) => event.isSnapshot).length;
        const now = Date.now();
        fake.publish("btcusdt@depth@100ms", { e: "depthUpdate", E: now, T: now, s: "BTCUSDT", U: market.lastEventFinalId, u: market.lastEventFinalId, pu: market.lastEventFinalId, b: [level], a: [] });
        sent.l2++;
        await driveUntil(fake, () => books(h).filter((event) => event.isSnapshot).length > snapshots);
      }
    }
    const good = fake.trade();
    fake.markPrice();
    fake.forceOrder();
    await h.waitFor(() => h.events("trade").length > 0 && h.events("funding").length > 0 && h.events("liquidation").length > 0, 5000, "the good messages");
    expect(h.events("trade").map((trade) => trade.id)).toEqual([String(good.a)]);
    expect(h.events("funding")).toHaveLength(1);
    expect(h.events("liquidation")).toHaveLength(1);
    // Every BBO written is one of the fake's own frames (the hostile ones are not).
    const sentTickers = new Set(market.bookTickers.map(({ frame }) => `${frame.T * 1000}|${+frame.b}|${+frame.B}|${+frame.a}|${+frame.A}`));
    const written = h.events("bbo").slice(bboBefore);
    expect(written.length).toBeGreaterThan(0);
    for (const bbo of written) expect(sentTickers.has(`${bbo.timestamp}|${bbo.bidPrice}|${bbo.bidAmount}|${bbo.askPrice}|${bbo.askAmount}`)).toBe(true);
    for (const event of h.emitted.map((entry) => entry.event)) {
      if (event.type === "trade" || event.type === "liquidation") expect(event.price > 0 && Number.isFinite(event.price) && event.amount > 0 && Number.isFinite(event.amount)).toBe(true);
    }
    const stats = (stream: string) => subscription(h, `${stream}:BINANCE_FUTURES@BTCUSDT`).stats;
    expect(stats("TRADES").parseErrors).toBe(sent.trades);
    expect(stats("BBO").parseErrors).toBe(sent.bbo);
    expect(stats("FUNDING").parseErrors).toBe(sent.funding);
    expect(stats("LIQUIDATIONS").parseErrors).toBe(sent.liquidations);
    expect(stats("L2").parseErrors).toBe(sent.l2);
    expect(h.events("gap").filter((gap) => gap.stream === "L2").map((gap) => gap.reason)).toEqual(Array(sent.l2).fill("sequence"));
    expectSnapshotAfterEveryGap(emittedFor(h, "L2:BINANCE_FUTURES@BTCUSDT"));
    await expectBookMatchesTruth(h, fake);
    // One warning per fault episode, not one per frame.
    expect(h.logs.filter((line) => line.startsWith("warn:") && line.includes("malformed aggTrade event"))).toHaveLength(1);
  });
});

describe("venue ids that go back", () => {
  test("RecentKeys: repeats of recent keys are duplicates, an unseen key below the last is a reset", () => {
    const keys = new RecentKeys(4);
    expect([10, 11, 11, 10, 9_000, 12, 9_000, 13, 12].map((key) => keys.take(key))).toEqual([
      "new", "new", "duplicate", "duplicate", "new", "reset", "duplicate", "new", "duplicate",
    ]);
    // 9_000 has left the four remembered keys: keys up to it are new again, 10 (forgotten) is a reset.
    expect([14, 15, 10].map((key) => keys.take(key))).toEqual(["new", "new", "reset"]);
    expect(keys.last).toBe(10);
  });

  test("one too-high trade id, then normal ids: the normal trades are kept after an id_reset gap; repeats are still dropped", async () => {
    const { fake, h } = start("TRADES:BINANCE_FUTURES@BTCUSDT");
    await fake.waitForSubscribers("btcusdt@aggTrade");
    const first = fake.trade();
    const tooHigh = fake.trade("BTCUSDT", { a: 9_000_000_000_000 });
    const normal = Array.from({ length: 30 }, () => fake.trade());
    fake.publish("btcusdt@aggTrade", normal[10]); // a repeat, moments later
    fake.publish("btcusdt@aggTrade", tooHigh);
    const last = fake.trade();
    await h.waitFor(() => h.events("trade").some((trade) => trade.id === String(last.a)), 5000, "the last trade");
    const stored = emittedFor(h, "TRADES:BINANCE_FUTURES@BTCUSDT").map((event) => (event.type === "gap" ? `gap:${event.reason}` : (event as Trade).id));
    expect(stored).toEqual([String(first.a), String(tooHigh.a), "gap:id_reset", ...[...normal, last].map((trade) => String(trade.a))]);
    expect(h.events("gap")[0]!.detail).toContain(`key ${normal[0]!.a} is below the last key ${tooHigh.a}`);
    expect(h.logs.some((line) => line.startsWith("warn:") && line.includes(`key ${normal[0]!.a} is below`))).toBe(true);
  });

  test("one too-high bookTicker update id, then normal ones: every BBO after it is kept, after an id_reset gap", async () => {
    const { fake, h } = start("BBO:BINANCE_FUTURES@BTCUSDT");
    await fake.waitForSubscribers("btcusdt@bookTicker");
    fake.depthStep();
    fake.publish("btcusdt@bookTicker", { ...fake.market().bookTickerFrame(), u: 9_000_000_000_000 });
    for (let i = 0; i < 60; i++) fake.depthStep();
    await h.waitFor(() => h.events("bbo").length === 62, 5000, "62 BBO rows");
    expect(h.events("gap").map((gap) => gap.reason)).toEqual(["id_reset"]);
  });

  test("a too-high u in the depth chain restarts the book (id_reset gap, fresh snapshot) instead of ignoring what follows", async () => {
    const { fake, h } = start("L2:BINANCE_FUTURES@BTCUSDT");
    await driveUntil(fake, () => books(h).length >= 3);
    const market = fake.market();
    const now = Date.now();
    fake.publish("btcusdt@depth@100ms", {
      e: "depthUpdate", E: now, T: now, s: "BTCUSDT", U: market.lastEventFinalId + 1, u: 9_000_000_000_000, pu: market.lastEventFinalId, b: [], a: [],
    });
    await driveUntil(fake, () => books(h).filter((event) => event.isSnapshot).length >= 2);
    await expectBookMatchesTruth(h, fake);
    expect(h.events("gap").map((gap) => gap.reason)).toEqual(["id_reset"]);
    expect(h.events("gap")[0]!.detail).toContain("is below the last applied u=9000000000000");
    expectSnapshotAfterEveryGap(emittedFor(h, "L2:BINANCE_FUTURES@BTCUSDT"));
  });
});

describe("faults", () => {
  test("a dropped connection marks a gap on every subscription, reconnects, resubscribes and resyncs the book", async () => {
    const { fake, h } = start("L2:BINANCE_FUTURES@BTCUSDT,BBO:BINANCE_FUTURES@BTCUSDT,TRADES:BINANCE_FUTURES@BTCUSDT");
    await fake.waitForSubscribers("btcusdt@aggTrade");
    await driveUntil(fake, () => books(h).length >= 3, { trades: true });
    fake.terminateAll();
    await fake.waitForSubscribers("btcusdt@depth@100ms", 1);
    await fake.waitForSubscribers("btcusdt@aggTrade", 1);
    await driveUntil(fake, () => books(h).filter((event) => event.isSnapshot).length >= 2, { trades: true });
    const gaps = h.events("gap");
    expect(gaps.map((gap) => `${gap.stream}:${gap.reason}`).sort()).toEqual(["BBO:disconnect", "L2:disconnect", "TRADES:disconnect"]);
    for (const key of ["L2:BINANCE_FUTURES@BTCUSDT", "BBO:BINANCE_FUTURES@BTCUSDT", "TRADES:BINANCE_FUTURES@BTCUSDT"]) {
      expect(subscription(h, key).stats.reconnects).toBe(1);
    }
    expect(subscription(h, "L2:BINANCE_FUTURES@BTCUSDT").stats.resyncs).toBe(1);
    expectSnapshotAfterEveryGap(emittedFor(h, "L2:BINANCE_FUTURES@BTCUSDT"));
    await expectBookMatchesTruth(h, fake);

    // A close frame with a code: the code is in the gap detail.
    fake.closeAll(1008, "Too many requests");
    await driveUntil(fake, () => books(h).filter((event) => event.isSnapshot).length >= 3, { trades: true });
    const closes = h.events("gap").slice(3);
    expect(closes).toHaveLength(3);
    expect(closes.every((gap) => gap.reason === "disconnect" && gap.detail.includes("code 1008"))).toBe(true);
    await expectBookMatchesTruth(h, fake);
    // Trades keep flowing after each reconnect.
    const trade = fake.trade();
    await h.waitFor(() => h.events("trade").some((event) => event.id === String(trade.a)));
  });

  test("a silent server is detected as stale: gap marker, reconnect, fresh snapshot", async () => {
    const { fake, h } = start("L2:BINANCE_FUTURES@BTCUSDT,FUNDING:BINANCE_FUTURES@BTCUSDT", {
      env: { XTRADER_BINANCE_FUTURES_STALE_AFTER_MS: "400" },
    });
    await fake.waitForSubscribers("btcusdt@markPrice@1s");
    await driveUntil(fake, () => books(h).length >= 2);
    fake.silent = true;
    const gaps = await h.waitForEvents("gap", 2, 5000);
    expect(gaps.map((gap) => `${gap.stream}:${gap.reason}`).sort()).toEqual(["FUNDING:stale", "L2:stale"]);
    fake.silent = false;
    await driveUntil(fake, () => books(h).filter((event) => event.isSnapshot).length >= 2);
    await expectBookMatchesTruth(h, fake);
    expect(subscription(h, "L2:BINANCE_FUTURES@BTCUSDT").stats.reconnects).toBeGreaterThanOrEqual(1);
  });

  test("unknown symbols fail their subscription alone, reported by the instrument list or the snapshot", async () => {
    const { fake, h } = start(
      "TRADES:BINANCE_FUTURES@FOOUSDT,L2:BINANCE_FUTURES@GHOSTUSDT,TRADES:BINANCE_FUTURES@BTCUSDT,L2:BINANCE_FUTURES@BTCUSDT",
      { listedWithoutMarket: ["GHOSTUSDT"] },
    );
    const gaps = await h.waitForEvents("gap", 2, 5000);
    const foo = gaps.find((gap) => gap.symbol === "FOOUSDT")!;
    const ghost = gaps.find((gap) => gap.symbol === "GHOSTUSDT")!;
    expect(foo).toMatchObject({ stream: "TRADES", reason: "subscription_error" });
    expect(foo.detail).toContain("'FOOUSDT' is not listed");
    expect(ghost).toMatchObject({ stream: "L2", reason: "subscription_error" });
    expect(ghost.detail).toContain("-1121 Invalid symbol.");
    await fake.waitForSubscribers("btcusdt@aggTrade");
    expect(fake.subscriptions().flatMap((entry) => entry.streams)).not.toContain("foousdt@aggTrade");
    await fake.exchange.waitFor(
      () => !fake.subscriptions().some((entry) => entry.streams.includes("ghostusdt@depth@100ms")),
      5000,
      "ghost unsubscribed",
    );
    const trade = fake.trade();
    await driveUntil(fake, () => books(h).length >= 2 && h.events("trade").length >= 1);
    expect(h.events("trade")[0]!.id).toBe(String(trade.a));
    await expectBookMatchesTruth(h, fake);
    expect(h.events("gap")).toHaveLength(2);
  });

  test("REST 429 with Retry-After: a gap, the whole queue pauses, then both books sync", async () => {
    const symbols = ["BTCUSDT", "ETHUSDT"];
    const venue = (fake = FakeBinanceFutures.start({ symbols }));
    venue.failNextDepth({ status: 429, retryAfterSeconds: 1 });
    const h = (harness = startConnector("L2:BINANCE_FUTURES@BTCUSDT,L2:BINANCE_FUTURES@ETHUSDT", venue.env));
    await driveUntil(venue, () => symbols.every((symbol) => books(h, symbol).length >= 2), { symbols, timeoutMs: 8000 });
    const depthRequests = venue.restLog.filter((entry) => entry.path === "/fapi/v1/depth");
    expect(depthRequests[0]!.status).toBe(429);
    // Nothing was asked of the venue until Retry-After had passed.
    for (const request of depthRequests.slice(1)) expect(request.at - depthRequests[0]!.at).toBeGreaterThanOrEqual(950);
    const gaps = h.events("gap");
    expect(gaps).toHaveLength(1);
    expect(gaps[0]).toMatchObject({ stream: "L2", reason: "snapshot_failed" });
    expect(gaps[0]!.detail).toContain("HTTP 429");
    for (const symbol of symbols) await expectBookMatchesTruth(h, venue, symbol);
    expect(h.logs.some((line) => line.startsWith("warn:") && line.includes("rate limited"))).toBe(true);
  });

  test("REST 418 and 500 are survived: marked, retried, then synced", async () => {
    const venue = (fake = FakeBinanceFutures.start());
    venue.failNextDepth({ status: 500 }, { status: 418, retryAfterSeconds: 1 }, { status: 500 });
    const h = (harness = startConnector("L2:BINANCE_FUTURES@BTCUSDT", venue.env));
    await driveUntil(venue, () => books(h).length >= 2, { timeoutMs: 8000 });
    const statuses = venue.restLog.filter((entry) => entry.path === "/fapi/v1/depth").map((entry) => entry.status);
    expect(statuses).toEqual([500, 418, 500, 200]);
    // One marker per failure episode, not per attempt.
    expect(h.events("gap")).toMatchObject([{ reason: "snapshot_failed" }]);
    expect(h.logs.some((line) => line.includes("IP banned"))).toBe(true);
    await expectBookMatchesTruth(h, venue);
  });

  test("a REST snapshot over the venue's depth is refused, by its size before parsing or by its level count: marked, counted, retried", async () => {
    const venue = (fake = FakeBinanceFutures.start());
    const levels = (count: number, from: number, step: number) =>
      Array.from({ length: count }, (_, i) => [String(from + i * step), "1"]);
    // 150,000 levels a side (~4 MB): refused on its Content-Length. 1,001 short levels fit the byte bound
    // and are refused on their count (the venue serves at most 1,000).
    const hostile = { lastUpdateId: 1, E: Date.now(), T: Date.now(), bids: levels(150_000, 1, 1), asks: levels(150_000, 200_000, 1) };
    const deep = { lastUpdateId: 1, E: Date.now(), T: Date.now(), bids: levels(1001, 1, 1), asks: levels(1001, 9000, 1) };
    venue.failNextDepth({ status: 200, body: hostile }, { status: 200, body: deep });
    const h = (harness = startConnector("L2:BINANCE_FUTURES@BTCUSDT", venue.env));
    await driveUntil(venue, () => books(h).length >= 2, { timeoutMs: 8000 });
    const statuses = venue.restLog.filter((entry) => entry.path === "/fapi/v1/depth").map((entry) => entry.status);
    expect(statuses).toEqual([200, 200, 200]);
    expect(h.events("gap")).toHaveLength(1);
    expect(h.events("gap")[0]).toMatchObject({ stream: "L2", reason: "snapshot_failed" });
    expect(h.events("gap")[0]!.detail).toMatch(/^depth snapshot failed: HTTP 200 body of \d+ bytes \(Content-Length\) over the 272384-byte bound; retrying$/);
    // Both refusals are counted; the second is inside the first one's log interval.
    expect(h.subscriptions[0]!.stats.parseErrors).toBe(2);
    for (const book of books(h)) expect(Math.max(book.bids.length, book.asks.length) / 2).toBeLessThanOrEqual(1000);
    await expectBookMatchesTruth(h, venue);
  });

  test("stop closes every connection and nothing is emitted afterwards", async () => {
    const { fake, h } = start("L2:BINANCE_FUTURES@BTCUSDT,TRADES:BINANCE_FUTURES@BTCUSDT");
    await fake.waitForSubscribers("btcusdt@aggTrade");
    await driveUntil(fake, () => books(h).length >= 2);
    await h.stop();
    const count = h.emitted.length;
    fake.randomSteps(20);
    await Bun.sleep(100);
    expect(h.emitted.length).toBe(count);
    await fake.exchange.waitFor(() => fake.exchange.openConnections().length === 0, 3000, "all closed");
    expect(h.events("gap")).toEqual([]);
  });
});

describe("24 h rollover", () => {
  test("connections are replaced before the limit without losing or duplicating anything", async () => {
    const symbols = ["BTCUSDT", "ETHUSDT"];
    const keys = symbols.flatMap((symbol) => [
      `L2:BINANCE_FUTURES@${symbol}`,
      `TRADES:BINANCE_FUTURES@${symbol}`,
      `BBO:BINANCE_FUTURES@${symbol}`,
    ]);
    const { fake, h } = start(keys.join(","), {
      symbols,
      seed: 7,
      env: { XTRADER_BINANCE_FUTURES_CONNECTION_MAX_AGE_MS: "600" },
    });
    for (const symbol of symbols) {
      await fake.waitForSubscribers(`${symbol.toLowerCase()}@aggTrade`);
      await fake.waitForSubscribers(`${symbol.toLowerCase()}@bookTicker`);
    }
    const tradesBefore = new Map(symbols.map((symbol) => [symbol, fake.market(symbol).trades.length]));
    const tickersBefore = new Map(symbols.map((symbol) => [symbol, fake.market(symbol).bookTickers.length]));
    // Keep the market busy across several rollovers.
    const until = performance.now() + 2500;
    while (performance.now() < until) {
      fake.randomSteps(2, symbols);
      for (const symbol of symbols) fake.trade(symbol);
      await Bun.sleep(4);
    }
    for (const symbol of symbols) await expectBookMatchesTruth(h, fake, symbol);
    // Several connections were opened and the replaced ones closed by us, normally.
    expect(fake.exchange.connections.length).toBeGreaterThanOrEqual(8);
    const closed = fake.exchange.connections.filter((connection) => !connection.open);
    expect(closed.length).toBeGreaterThanOrEqual(4);
    expect(closed.every((connection) => connection.closeCode === 1000)).toBe(true);
    expect(h.events("gap")).toEqual([]);
    for (const symbol of symbols) {
      const market = fake.market(symbol);
      const sentTrades = market.trades.slice(tradesBefore.get(symbol));
      expect(sentTrades.every((entry) => entry.delivered >= 1)).toBe(true);
      await h.waitFor(() => h.events("trade", symbol).length >= sentTrades.length, 5000, "all trades");
      expect(h.events("trade", symbol).map((trade) => trade.id)).toEqual(sentTrades.map((entry) => String(entry.frame.a)));
      const sentTickers = market.bookTickers.slice(tickersBefore.get(symbol)).filter((entry) => entry.delivered >= 1);
      await h.waitFor(() => h.events("bbo", symbol).length >= sentTickers.length, 5000, "all tickers");
      expect(h.events("bbo", symbol).map((bbo) => [bbo.timestamp, bbo.bidPrice, bbo.askAmount])).toEqual(
        sentTickers.map((entry) => [entry.frame.T * 1000, Number(entry.frame.b), Number(entry.frame.A)]),
      );
      expect(books(h, symbol).filter((event) => event.isSnapshot)).toHaveLength(1);
      const l2 = subscription(h, `L2:BINANCE_FUTURES@${symbol}`);
      expect(l2.stats.resyncs).toBe(0);
      expect(l2.stats.reconnects).toBe(0);
    }
    const deltas = books(h, "BTCUSDT").slice(1).map((event) => event.sequence);
    expect(deltas).toEqual([...deltas].sort((a, b) => a - b));
    expect(new Set(deltas).size).toBe(deltas.length);
    expect(h.logs.some((line) => line.includes("replacing the connection before Binance's 24 h limit"))).toBe(true);
  }, 15_000);

  test("the venue cutting the old connection once the successor is subscribed loses nothing", async () => {
    const symbols = ["BTCUSDT", "ETHUSDT"];
    const { fake, h } = start(symbols.map((symbol) => `TRADES:BINANCE_FUTURES@${symbol}`).join(","), {
      symbols,
      env: { XTRADER_BINANCE_FUTURES_CONNECTION_MAX_AGE_MS: "1000" },
    });
    await fake.waitForSubscribers("ethusdt@aggTrade");
    const first = fake.exchange.connections[0]!;
    // Trades flow until the successor has subscribed everything.
    while (fake.subscriptions("market").filter((entry) => entry.streams.length === symbols.length).length < 2) {
      for (const symbol of symbols) fake.trade(symbol);
      await Bun.sleep(5);
    }
    await Bun.sleep(100); // let the client read the acknowledgements
    first.close(1000, ""); // the venue's 24 h cut, mid-handover
    for (let i = 0; i < 40; i++) {
      for (const symbol of symbols) fake.trade(symbol);
      await Bun.sleep(5);
    }
    for (const symbol of symbols) {
      const sent = fake.market(symbol).trades;
      expect(sent.every((entry) => entry.delivered >= 1)).toBe(true);
      await h.waitFor(() => h.events("trade", symbol).length >= sent.length, 5000, "all trades");
      expect(h.events("trade", symbol).map((trade) => trade.id)).toEqual(sent.map((entry) => String(entry.frame.a)));
    }
    expect(h.events("gap")).toEqual([]);
  });
});

import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildConfig } from "../src/cli/config.ts";
import { deribit, deribitSettings, deribitSizing, deribitWsUrl, DERIBIT_WS_URLS } from "../src/connectors/deribit.ts";
import { flattenLevels } from "../src/connectors/deribit-scan.ts";
import { ChangeIdSequence } from "../src/connectors/kit/sequence/deribit.ts";
import { EXCHANGE_REGISTRY } from "../src/connectors/index.ts";
import { UserError } from "../src/core/errors.ts";
import type { BookChange, Gap, MarketEvent } from "../src/core/events.ts";
import { parseSubscriptions } from "../src/core/subscriptions.ts";
import { rebuildBook, startConnector, type ConnectorHarness } from "./support/connector-harness.ts";
import { FakeDeribit, seededRandom, type BookChangeData, type FakeDeribitOptions, type Level } from "./support/fake-deribit.ts";

const CLIENT_ID = "xtrader-test-client";
const CLIENT_SECRET = "s3cr3t-DERIBIT-value-0f9a";
const CREDENTIALS_ENV = { DERIBIT_CLIENT_ID: CLIENT_ID, DERIBIT_CLIENT_SECRET: CLIENT_SECRET };

let fake: FakeDeribit | undefined;
let harness: ConnectorHarness | undefined;

afterEach(async () => {
  await harness?.stop();
  await fake?.stop();
  harness = undefined;
  fake = undefined;
});

function setup(
  subscriptions: string,
  options: { fake?: FakeDeribitOptions; env?: Record<string, string> } = {},
): { fake: FakeDeribit; harness: ConnectorHarness } {
  fake = FakeDeribit.start(options.fake);
  harness = startConnector(subscriptions, fake.env(options.env));
  return { fake, harness };
}

function subscription(h: ConnectorHarness, key: string) {
  const found = h.subscriptions.find((candidate) => candidate.key === key);
  if (!found) throw new Error(`no subscription ${key}`);
  return found;
}

/** Deribit levels as the connector must flatten them: [price, amount], delete = 0. */
function flatten(levels: readonly Level[]): number[] {
  return levels.flatMap(([action, price, amount]) => [price, action === "delete" ? 0 : amount]);
}

function bookEvents(h: ConnectorHarness, symbol: string): BookChange[] {
  return h.events("book_change", symbol);
}

function gaps(h: ConnectorHarness, symbol?: string): Gap[] {
  return h.events("gap", symbol);
}

/** Waits until the last emitted book event of `symbol` carries the fake's current change_id. */
function waitForBookAt(f: FakeDeribit, h: ConnectorHarness, instrument: string, symbol: string, timeoutMs = 8000) {
  return h.waitFor(
    () => {
      const events = bookEvents(h, symbol);
      return events.length > 0 && events.at(-1)!.sequence === f.market(instrument).changeId;
    },
    timeoutMs,
    `${symbol} book at change_id ${f.market(instrument).changeId}`,
  );
}

function expectBookEqualsTruth(f: FakeDeribit, h: ConnectorHarness, instrument: string, symbol: string): void {
  const rebuilt = rebuildBook(h.emitted.map((entry) => entry.event), symbol);
  const truth = f.market(instrument).truth();
  expect(rebuilt.bids.sorted()).toEqual(truth.bids);
  expect(rebuilt.asks.sorted()).toEqual(truth.asks);
}

/** Every snapshot after a gap comes before any further delta of that book. */
function expectSnapshotAfterEveryGap(events: readonly MarketEvent[], symbol: string): void {
  let awaitingSnapshot = false;
  for (const event of events) {
    if (event.symbol !== symbol) continue;
    if (event.type === "gap" && event.stream === "L2") awaitingSnapshot = true;
    if (event.type === "book_change") {
      if (awaitingSnapshot) expect(event.isSnapshot).toBe(true);
      if (event.isSnapshot) awaitingSnapshot = false;
    }
  }
}

describe("instruments and endpoints", () => {
  test("native names pass, perpetual common names map, anything else is refused in one sentence", () => {
    const map = (symbol: string) => deribit.nativeInstrument(symbol);
    expect(map("BTC-PERPETUAL")).toEqual({ native: "BTC-PERPETUAL" });
    expect(map("SOL_USDC-PERPETUAL")).toEqual({ native: "SOL_USDC-PERPETUAL" });
    expect(map("BTC-27JUN26")).toEqual({ native: "BTC-27JUN26" });
    expect(map("BTC-27JUN26-100000-C")).toEqual({ native: "BTC-27JUN26-100000-C" });
    // Subscriptions are upper-cased; Deribit writes decimal strikes with a lower-case d.
    expect(map("XRP_USDC-26JUN26-0D5-P")).toEqual({ native: "XRP_USDC-26JUN26-0d5-P" });
    expect(map("BTC_USDC")).toEqual({ native: "BTC_USDC" });
    expect(map("BTCUSD")).toEqual({ native: "BTC-PERPETUAL" });
    expect(map("ETHUSD")).toEqual({ native: "ETH-PERPETUAL" });
    expect(map("SOLUSDC")).toEqual({ native: "SOL_USDC-PERPETUAL" });
    for (const bad of ["BTCUSDT", "BTC", "BTC-PERP", "BTC-27JUN26-100000-X"]) {
      const result = map(bad);
      expect("error" in result && result.error).toContain(`'${bad}'`);
      expect("error" in result && result.error).toContain("BTC-PERPETUAL");
    }
    expect(() => parseSubscriptions("L2:DERIBIT@BTCUSDT", EXCHANGE_REGISTRY)).toThrow(/invalid DERIBIT instrument 'BTCUSDT'/);
  });

  test("amount units: USD for inverse perpetuals and futures, base coin for options, linear and spot", () => {
    expect(deribitSizing("BTC-PERPETUAL")).toEqual({ amountUnit: "quote", contractValue: 1 });
    expect(deribitSizing("ETH-27JUN26")).toEqual({ amountUnit: "quote", contractValue: 1 });
    expect(deribitSizing("BTC-27JUN26-100000-C")).toEqual({ amountUnit: "base", contractValue: 1 });
    expect(deribitSizing("XRP_USDC-26JUN26-0d5-P")).toEqual({ amountUnit: "base", contractValue: 1 });
    expect(deribitSizing("SOL_USDC-PERPETUAL")).toEqual({ amountUnit: "base", contractValue: 1 });
    expect(deribitSizing("BTC_USDC")).toEqual({ amountUnit: "base", contractValue: 1 });
  });

  test("testnet by default, production when DERIBIT_USE_TESTNET=false, the override replaces either", () => {
    const dir = mkdtempSync(join(tmpdir(), "xtrader-deribit-"));
    const useTestnet = (env: Record<string, string>) =>
      deribitSettings(buildConfig({ subscriptions: "TRADES:DERIBIT@BTCUSD", "output-directory": dir }, env).config.env).useTestnet;
    expect(deribitWsUrl({}, useTestnet({}))).toBe(DERIBIT_WS_URLS.testnet);
    expect(DERIBIT_WS_URLS.testnet).toBe("wss://test.deribit.com/ws/api/v2");
    expect(deribitWsUrl({}, useTestnet({ DERIBIT_USE_TESTNET: "false" }))).toBe("wss://www.deribit.com/ws/api/v2");
    expect(deribitWsUrl({ XTRADER_DERIBIT_WS_URL: "ws://127.0.0.1:9/ws/api/v2/" }, true)).toBe("ws://127.0.0.1:9/ws/api/v2");
    expect(deribitWsUrl({ XTRADER_DERIBIT_WS_URL: "ws://127.0.0.1:9/ws/api/v2" }, false)).toBe("ws://127.0.0.1:9/ws/api/v2");
  });

  test("one credential variable without the other is an error for Deribit subscriptions only, never echoing it", () => {
    const dir = mkdtempSync(join(tmpdir(), "xtrader-deribit-"));
    const build = (subscriptions: string, env: Record<string, string>) =>
      buildConfig({ subscriptions, "output-directory": dir }, env);
    let error: unknown;
    try {
      build("L2:DERIBIT@BTCUSD", { DERIBIT_CLIENT_SECRET: CLIENT_SECRET });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(UserError);
    expect((error as Error).message).toContain("DERIBIT_CLIENT_ID");
    expect((error as Error).message).not.toContain(CLIENT_SECRET);
    expect(() => build("L2:DERIBIT@BTCUSD", { DERIBIT_CLIENT_ID: CLIENT_ID })).toThrow(/DERIBIT_CLIENT_SECRET/);
    expect(deribitSettings(build("TRADES:BINANCE_FUTURES@BTCUSDT", { DERIBIT_CLIENT_SECRET: CLIENT_SECRET }).config.env, false).credentials).toBeUndefined();
  });
});

describe("ChangeIdSequence", () => {
  test("snapshot, chained changes, duplicates, gaps and waiting for a snapshot", () => {
    const sequence = new ChangeIdSequence();
    expect(sequence.check(105, 100)).toBe("no_snapshot");
    expect(sequence.check(100, undefined)).toBe("snapshot");
    expect(sequence.check(104, 100)).toBe("apply");
    expect(sequence.check(111, 104)).toBe("apply");
    expect(sequence.check(111, 104)).toBe("duplicate");
    expect(sequence.check(104, 100)).toBe("duplicate");
    expect(sequence.check(120, 115)).toBe("gap");
    expect(sequence.check(108, 106)).toBe("backwards"); // below the last, never seen
    expect(sequence.lastChangeId).toBe(111);
    sequence.reset();
    expect(sequence.check(130, 111)).toBe("no_snapshot");
  });

  test("levels flatten to [price, amount, ...] with deletes as 0; unreadable levels are refused", () => {
    const out: number[] = [];
    expect(flattenLevels([["new", 60_000.5, 1250], ["change", 59_999, 10], ["delete", 59_998.5, 0]], out)).toBe(true);
    expect(out).toEqual([60_000.5, 1250, 59_999, 10, 59_998.5, 0]);
    expect(flattenLevels(undefined, [])).toBe(true);
    for (const bad of [[["new", "abc", 1]], [["new", 1, -5]], [["add", 1, 1]], [[1, 2]], "levels"]) {
      expect(flattenLevels(bad, [])).toBe(false);
    }
  });
});

describe("session: channels, authentication, heartbeats", () => {
  test("without credentials: set_heartbeat, then public/subscribe of the 100ms channels, said once at start", async () => {
    const { fake, harness } = setup(
      "TRADES:DERIBIT@BTC-PERPETUAL,LIQUIDATIONS:DERIBIT@BTC-PERPETUAL,L2:DERIBIT@BTCUSD,BBO:DERIBIT@ETH-PERPETUAL,FUNDING:DERIBIT@BTC-PERPETUAL",
    );
    const [subscribe] = await fake.waitForRequests("public/subscribe", 1);
    const connection = fake.exchange.connections[0]!;
    const methods = (connection.receivedJson() as Array<{ method: string }>).map((request) => request.method);
    expect(methods).toEqual(["public/set_heartbeat", "public/subscribe"]);
    expect(fake.requests("public/set_heartbeat")[0]!.params).toEqual({ interval: 10 });
    // TRADES and LIQUIDATIONS share the trades channel: it is subscribed once.
    expect(subscribe!.params.channels).toEqual([
      "trades.BTC-PERPETUAL.100ms",
      "book.BTC-PERPETUAL.100ms",
      "quote.ETH-PERPETUAL",
      "ticker.BTC-PERPETUAL.100ms",
    ]);
    expect(fake.authGrants).toEqual([]);
    await fake.waitForSubscribed("ticker.BTC-PERPETUAL.100ms");
    expect(harness.logs.filter((line) => line.includes("public 100ms channels"))).toHaveLength(1);
  });

  test("with credentials: public/auth client_credentials, private/subscribe of raw channels, token refreshed before expiry", async () => {
    const { fake, harness } = setup("TRADES:DERIBIT@BTC-PERPETUAL,L2:DERIBIT@BTC-PERPETUAL", {
      fake: { credentials: { clientId: CLIENT_ID, clientSecret: CLIENT_SECRET }, tokenLifetimeSeconds: 1 },
      env: CREDENTIALS_ENV,
    });
    const [auth] = await fake.waitForRequests("public/auth", 1);
    expect(auth!.params).toEqual({ grant_type: "client_credentials", client_id: CLIENT_ID, client_secret: CLIENT_SECRET });
    const [subscribe] = await fake.waitForRequests("private/subscribe", 1);
    expect(subscribe!.params.channels).toEqual(["trades.BTC-PERPETUAL.raw", "book.BTC-PERPETUAL.raw"]);
    const connection = fake.exchange.connections[0]!;
    const methods = (connection.receivedJson() as Array<{ method: string }>).map((request) => request.method);
    expect(methods.slice(0, 3)).toEqual(["public/set_heartbeat", "public/auth", "private/subscribe"]);
    expect(fake.requests("public/subscribe")).toEqual([]);

    // expires_in 1 s: each refresh uses the refresh token of the previous grant, on the same connection.
    const refreshes = await fake.waitForRequests("public/auth", 3);
    expect(refreshes[1]!.params).toEqual({ grant_type: "refresh_token", refresh_token: fake.issuedTokens[0]!.refresh });
    expect(refreshes[2]!.params).toEqual({ grant_type: "refresh_token", refresh_token: fake.issuedTokens[1]!.refresh });
    expect(fake.exchange.connections).toHaveLength(1);

    await fake.waitForSubscribed("trades.BTC-PERPETUAL.raw");
    const [sent] = fake.sendTrades("BTC-PERPETUAL", [{ direction: "buy", price: 60_000.5, amount: 120 }]);
    const [trade] = await harness.waitForEvents("trade", 1);
    expect(trade!.id).toBe(sent!.trade_id);
    expect(harness.logs.filter((line) => line.includes("authenticating each connection"))).toHaveLength(1);
    expect(gaps(harness)).toEqual([]);
  });

  test("a refused refresh token falls back to client_credentials on the same connection", async () => {
    const { fake, harness } = setup("TRADES:DERIBIT@BTC-PERPETUAL", {
      fake: { credentials: { clientId: CLIENT_ID, clientSecret: CLIENT_SECRET }, tokenLifetimeSeconds: 1 },
      env: CREDENTIALS_ENV,
    });
    await fake.waitForSubscribed("trades.BTC-PERPETUAL.raw");
    fake.rejectRefresh = true;
    await fake.exchange.waitFor(() => fake.authGrants.length >= 3, 5000, "refresh then re-auth");
    expect(fake.authGrants.slice(0, 3)).toEqual(["client_credentials", "refresh_token", "client_credentials"]);
    expect(fake.exchange.connections).toHaveLength(1);
    expect(harness.logs.some((line) => line.startsWith("warn") && line.includes("token refresh refused"))).toBe(true);
    expect(gaps(harness)).toEqual([]);
  });

  test("a rejected credential fails every Deribit subscription clearly and stops, without subscribing", async () => {
    const { fake, harness } = setup("TRADES:DERIBIT@BTC-PERPETUAL,L2:DERIBIT@ETH-PERPETUAL", {
      fake: { credentials: { clientId: CLIENT_ID, clientSecret: "another-secret" } },
      env: CREDENTIALS_ENV,
    });
    const failures = await harness.waitForEvents("gap", 2);
    expect(failures.map((gap) => [gap.symbol, gap.stream, gap.reason])).toEqual([
      ["BTC-PERPETUAL", "TRADES", "subscription_error"],
      ["ETH-PERPETUAL", "L2", "subscription_error"],
    ]);
    const errors = harness.logs.filter((line) => line.startsWith("error"));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain("13004 invalid_credentials");
    expect(errors[0]).toContain("DERIBIT_CLIENT_SECRET");
    await fake.exchange.waitFor(() => fake.exchange.openConnections().length === 0, 5000, "client close");
    expect(fake.requests("private/subscribe")).toEqual([]);
    expect(fake.requests("public/subscribe")).toEqual([]);
  });

  test("the secret and the tokens never reach a log line or an event, at any level", async () => {
    const { fake, harness } = setup("TRADES:DERIBIT@BTC-PERPETUAL,L2:DERIBIT@BTC-PERPETUAL", {
      fake: { credentials: { clientId: CLIENT_ID, clientSecret: CLIENT_SECRET }, tokenLifetimeSeconds: 1 },
      env: CREDENTIALS_ENV,
    });
    await fake.waitForSubscribed("book.BTC-PERPETUAL.raw");
    fake.rejectRefresh = true; // refresh refused → client_credentials again
    await fake.exchange.waitFor(() => fake.authGrants.length >= 3, 5000, "re-auth");
    await fake.exchange.waitFor(() => fake.issuedTokens.length >= 2, 5000, "new tokens");
    const current = fake.issuedTokens.at(-1)!;
    // A bad frame echoing the secret and the live tokens is logged (sampled) with them masked.
    fake.sendRaw(`{"broken": "${CLIENT_SECRET} ${current.access} ${current.refresh}`);
    await harness.waitFor(() => harness.logs.some((line) => line.includes("malformed JSON")), 5000, "parse warning");
    fake.rejectCredentials = true;
    fake.closeAll(1000, "maintenance");
    await harness.waitFor(() => gaps(harness).some((gap) => gap.reason === "subscription_error"), 5000, "rejection");
    const secrets = [CLIENT_SECRET, ...fake.issuedTokens.flatMap((tokens) => [tokens.access, tokens.refresh])];
    expect(secrets.length).toBeGreaterThanOrEqual(5);
    const everything = [...harness.logs, ...harness.emitted.map((entry) => JSON.stringify(entry.event))].join("\n");
    expect(harness.logs.some((line) => line.startsWith("debug"))).toBe(true); // trace level was on
    expect(everything).toContain("***"); // the echoes were there and were masked
    for (const secret of secrets) expect(everything).not.toContain(secret);
  });

  test("every test_request is answered with public/test; heartbeats need no answer", async () => {
    const { fake, harness } = setup("TRADES:DERIBIT@BTC-PERPETUAL");
    const connection = await fake.waitForSubscribed("trades.BTC-PERPETUAL.100ms");
    fake.sendHeartbeat();
    fake.sendTestRequest();
    await fake.waitForRequests("public/test", 1);
    fake.sendTestRequest();
    fake.sendHeartbeat();
    fake.sendTestRequest();
    await fake.waitForRequests("public/test", 3);
    expect(fake.session(connection).unansweredTestRequests).toBe(0);
    expect(fake.session(connection).testAnswers).toBe(3);
    expect(connection.open).toBe(true);
    expect(subscription(harness, "TRADES:DERIBIT@BTC-PERPETUAL").stats.parseErrors).toBe(0);
  });
});

describe("streams normalized field by field", () => {
  test("TRADES: inverse perpetual in USD, option in coin, exchange time in microseconds", async () => {
    const { fake, harness } = setup("TRADES:DERIBIT@BTCUSD,TRADES:DERIBIT@BTC-27JUN26-100000-C");
    await fake.waitForSubscribed("trades.BTC-PERPETUAL.100ms");
    await fake.waitForSubscribed("trades.BTC-27JUN26-100000-C.100ms");
    const perpetual = fake.sendTrades("BTC-PERPETUAL", [
      { direction: "buy", price: 60_010.5, amount: 1250 },
      { direction: "sell", price: 60_009, amount: 10 },
    ]);
    const option = fake.sendTrades("BTC-27JUN26-100000-C", [{ direction: "sell", price: 0.0415, amount: 2.5 }]);
    const events = await harness.waitForEvents("trade", 3);
    const expected = [
      ...perpetual.map((trade) => ({ symbol: "BTCUSD", trade, sizing: { amountUnit: "quote", contractValue: 1 } })),
      ...option.map((trade) => ({ symbol: "BTC-27JUN26-100000-C", trade, sizing: { amountUnit: "base", contractValue: 1 } })),
    ];
    expected.forEach(({ symbol, trade, sizing }, index) => {
      const event = events[index]!;
      expect(Number.isInteger(event.localTimestamp)).toBe(true);
      expect(event).toEqual({
        type: "trade",
        exchange: "DERIBIT",
        symbol,
        timestamp: trade.timestamp * 1000,
        localTimestamp: event.localTimestamp,
        id: trade.trade_id,
        side: trade.direction,
        price: trade.price,
        amount: trade.amount,
        ...(sizing as { amountUnit: "quote" | "base"; contractValue: number }),
      });
    });
    expect(subscription(harness, "TRADES:DERIBIT@BTCUSD").stats.messages).toBe(1);
  });

  test("LIQUIDATIONS: trades with a liquidation field, side of the liquidated order(s)", async () => {
    const { fake, harness } = setup("TRADES:DERIBIT@BTC-PERPETUAL,LIQUIDATIONS:DERIBIT@BTC-PERPETUAL");
    await fake.waitForSubscribed("trades.BTC-PERPETUAL.100ms");
    const sent = fake.sendTrades("BTC-PERPETUAL", [
      { direction: "buy", price: 60_000, amount: 100 },
      { direction: "buy", price: 60_001, amount: 200, liquidation: "T" },
      { direction: "buy", price: 60_002, amount: 300, liquidation: "M" },
      { direction: "sell", price: 59_999, amount: 400, liquidation: "MT" },
    ]);
    const trades = await harness.waitForEvents("trade", 4);
    expect(trades.map((trade) => trade.id)).toEqual(sent.map((trade) => trade.trade_id));
    const liquidations = await harness.waitForEvents("liquidation", 4);
    const expected: Array<[number, "buy" | "sell"]> = [
      [1, "buy"], // taker bought to close a liquidated short
      [2, "sell"], // the maker sold: a liquidated long
      [3, "sell"], // both: the taker's sell...
      [3, "buy"], // ...and the maker's buy
    ];
    expected.forEach(([index, side], i) => {
      const trade = sent[index]!;
      expect(liquidations[i]).toEqual({
        type: "liquidation",
        exchange: "DERIBIT",
        symbol: "BTC-PERPETUAL",
        timestamp: trade.timestamp * 1000,
        localTimestamp: liquidations[i]!.localTimestamp,
        id: trade.trade_id,
        side,
        price: trade.price,
        amount: trade.amount,
        amountUnit: "quote",
        contractValue: 1,
      });
    });
    expect(fake.requests("public/subscribe")[0]!.params.channels).toEqual(["trades.BTC-PERPETUAL.100ms"]);
    const liquidationStats = subscription(harness, "LIQUIDATIONS:DERIBIT@BTC-PERPETUAL").stats;
    expect(liquidationStats.messages).toBe(1);
  });

  test("BBO: quote.{instrument}, an empty side as zeros", async () => {
    const { fake, harness } = setup("BBO:DERIBIT@ETHUSD");
    await fake.waitForSubscribed("quote.ETH-PERPETUAL");
    const full = fake.sendQuote("ETH-PERPETUAL");
    const empty = fake.sendQuote("ETH-PERPETUAL", { best_ask_price: null, best_ask_amount: null });
    const events = await harness.waitForEvents("bbo", 2);
    expect(events[0]).toEqual({
      type: "bbo",
      exchange: "DERIBIT",
      symbol: "ETHUSD",
      timestamp: (full.timestamp as number) * 1000,
      localTimestamp: events[0]!.localTimestamp,
      bidPrice: full.best_bid_price as number,
      bidAmount: full.best_bid_amount as number,
      askPrice: full.best_ask_price as number,
      askAmount: full.best_ask_amount as number,
    });
    expect(events[1]).toMatchObject({
      timestamp: (empty.timestamp as number) * 1000,
      bidPrice: empty.best_bid_price as number,
      bidAmount: empty.best_bid_amount as number,
      askPrice: 0,
      askAmount: 0,
    });
  });

  test("FUNDING: ticker mark, index, 8h and current funding; no next funding time (continuous funding)", async () => {
    const { fake, harness } = setup("FUNDING:DERIBIT@BTC-PERPETUAL,FUNDING:DERIBIT@BTC-27JUN26-100000-C");
    await fake.waitForSubscribed("ticker.BTC-PERPETUAL.100ms");
    await fake.waitForSubscribed("ticker.BTC-27JUN26-100000-C.100ms");
    const perpetual = fake.sendTicker("BTC-PERPETUAL", {
      mark_price: 60_123.45,
      index_price: 60_100.01,
      funding_8h: 0.0000211,
      current_funding: 0.0000032,
    });
    const option = fake.sendTicker("BTC-27JUN26-100000-C", {
      mark_price: 0.0421,
      index_price: 60_100.01,
      funding_8h: undefined,
      current_funding: undefined,
    });
    const [first, second] = await harness.waitForEvents("funding", 2);
    expect(first).toEqual({
      type: "funding",
      exchange: "DERIBIT",
      symbol: "BTC-PERPETUAL",
      timestamp: (perpetual.timestamp as number) * 1000,
      localTimestamp: first!.localTimestamp,
      markPrice: 60_123.45,
      indexPrice: 60_100.01,
      fundingRate: 0.0000211,
      nextFundingTime: undefined,
      currentFundingRate: 0.0000032,
    });
    expect(first!.currentFundingRate).toBe(0.0000032);
    expect(second).toEqual({
      type: "funding",
      exchange: "DERIBIT",
      symbol: "BTC-27JUN26-100000-C",
      timestamp: (option.timestamp as number) * 1000,
      localTimestamp: second!.localTimestamp,
      markPrice: 0.0421,
      indexPrice: 60_100.01,
      fundingRate: undefined,
      nextFundingTime: undefined,
    });
    expect(second!.currentFundingRate).toBeUndefined();
  });

  test("L2: the snapshot, then changes with change_id as sequence and deletes as amount 0", async () => {
    const { fake, harness } = setup("L2:DERIBIT@BTC-PERPETUAL");
    await fake.waitForSubscribed("book.BTC-PERPETUAL.100ms");
    const [snapshot] = await harness.waitForEvents("book_change", 1);
    const market = fake.market("BTC-PERPETUAL");
    const sentSnapshot = fake.snapshotsSent[0]!;
    expect(sentSnapshot.prev_change_id).toBeUndefined();
    expect(snapshot).toEqual({
      type: "book_change",
      exchange: "DERIBIT",
      symbol: "BTC-PERPETUAL",
      timestamp: sentSnapshot.timestamp * 1000,
      localTimestamp: snapshot!.localTimestamp,
      isSnapshot: true,
      sequence: sentSnapshot.change_id,
      bids: flatten(sentSnapshot.bids),
      asks: flatten(sentSnapshot.asks),
      amountUnit: "quote",
      contractValue: 1,
    });
    expect(snapshot!.bids).toEqual(market.truth().bids.flat());
    const bestBid = market.bestBid()!;
    const deletion = fake.nextChange("BTC-PERPETUAL", { bids: [["delete", bestBid, 0]], asks: [["new", market.bestAsk()! + 1000, 70]] });
    market.apply(true, ["delete", bestBid, 0]);
    market.apply(false, deletion.asks[0]!);
    fake.publish("book", "BTC-PERPETUAL", deletion);
    const sent: BookChangeData[] = [deletion];
    for (let i = 0; i < 5; i++) sent.push(fake.bookStep("BTC-PERPETUAL"));
    const events = await harness.waitForEvents("book_change", 7);
    sent.forEach((change, index) => {
      const event = events[index + 1]!;
      expect(event).toEqual({
        type: "book_change",
        exchange: "DERIBIT",
        symbol: "BTC-PERPETUAL",
        timestamp: change.timestamp * 1000,
        localTimestamp: event.localTimestamp,
        isSnapshot: false,
        sequence: change.change_id,
        bids: flatten(change.bids),
        asks: flatten(change.asks),
        amountUnit: "quote",
        contractValue: 1,
      });
    });
    expect(events[1]!.bids).toEqual([bestBid, 0]);
    expectBookEqualsTruth(fake, harness, "BTC-PERPETUAL", "BTC-PERPETUAL");
  });
});

describe("L2 integrity", () => {
  test("a book rebuilt from the emitted events equals the true book after a long random sequence", async () => {
    const { fake, harness } = setup("L2:DERIBIT@BTC-PERPETUAL,L2:DERIBIT@ETHUSD", { fake: { seed: 42 } });
    await fake.waitForSubscribed("book.BTC-PERPETUAL.100ms");
    await fake.waitForSubscribed("book.ETH-PERPETUAL.100ms");
    await harness.waitForEvents("book_change", 2);
    const random = seededRandom(7);
    for (let i = 0; i < 4000; i++) {
      fake.bookStep(random() < 0.6 ? "BTC-PERPETUAL" : "ETH-PERPETUAL");
      if (i % 250 === 0) await Bun.sleep(0);
    }
    await waitForBookAt(fake, harness, "BTC-PERPETUAL", "BTC-PERPETUAL");
    await waitForBookAt(fake, harness, "ETH-PERPETUAL", "ETHUSD");
    expectBookEqualsTruth(fake, harness, "BTC-PERPETUAL", "BTC-PERPETUAL");
    expectBookEqualsTruth(fake, harness, "ETH-PERPETUAL", "ETHUSD");
    expect(bookEvents(harness, "BTC-PERPETUAL").length + bookEvents(harness, "ETHUSD").length).toBe(4002);
    expect(gaps(harness)).toEqual([]);
    for (const sub of harness.subscriptions) expect(sub.stats.resyncs).toBe(0);
  });

  test("a change_id gap is counted, marked, resubscribed and followed by a fresh snapshot", async () => {
    const { fake, harness } = setup("L2:DERIBIT@BTC-PERPETUAL");
    await fake.waitForSubscribed("book.BTC-PERPETUAL.100ms");
    for (let i = 0; i < 20; i++) fake.bookStep("BTC-PERPETUAL");
    await waitForBookAt(fake, harness, "BTC-PERPETUAL", "BTC-PERPETUAL");
    const lastApplied = fake.market("BTC-PERPETUAL").changeId;
    fake.skipBookChange("BTC-PERPETUAL");
    const breaking = fake.bookStep("BTC-PERPETUAL");
    const [gap] = await harness.waitForEvents("gap", 1);
    expect(gap).toMatchObject({ stream: "L2", reason: "sequence", symbol: "BTC-PERPETUAL" });
    expect(gap!.detail).toBe(`prev_change_id ${breaking.prev_change_id} != last change_id ${lastApplied}`);
    await fake.waitForRequests("public/unsubscribe", 1);
    expect(fake.requests("public/unsubscribe")[0]!.params.channels).toEqual(["book.BTC-PERPETUAL.100ms"]);
    await fake.waitForRequests("public/subscribe", 2);
    await harness.waitFor(() => bookEvents(harness, "BTC-PERPETUAL").filter((event) => event.isSnapshot).length === 2);
    for (let i = 0; i < 20; i++) fake.bookStep("BTC-PERPETUAL");
    await waitForBookAt(fake, harness, "BTC-PERPETUAL", "BTC-PERPETUAL");
    const sub = subscription(harness, "L2:DERIBIT@BTC-PERPETUAL");
    expect(sub.stats.resyncs).toBe(1);
    expect(harness.logs.some((line) => line.startsWith("warn") && line.includes("resubscribing for a fresh snapshot"))).toBe(true);
    expectSnapshotAfterEveryGap(harness.emitted.map((entry) => entry.event), "BTC-PERPETUAL");
    expect(bookEvents(harness, "BTC-PERPETUAL").some((event) => !event.isSnapshot && event.sequence === breaking.change_id)).toBe(false);
    expectBookEqualsTruth(fake, harness, "BTC-PERPETUAL", "BTC-PERPETUAL");
  });

  test("a duplicated change is ignored; reordered changes lead to a resync", async () => {
    const { fake, harness } = setup("L2:DERIBIT@BTC-PERPETUAL");
    await fake.waitForSubscribed("book.BTC-PERPETUAL.100ms");
    for (let i = 0; i < 5; i++) fake.bookStep("BTC-PERPETUAL");
    fake.resendLastBookChange("BTC-PERPETUAL");
    fake.bookStep("BTC-PERPETUAL");
    await waitForBookAt(fake, harness, "BTC-PERPETUAL", "BTC-PERPETUAL");
    const sub = subscription(harness, "L2:DERIBIT@BTC-PERPETUAL");
    expect(bookEvents(harness, "BTC-PERPETUAL")).toHaveLength(7);
    expect(sub.stats.resyncs).toBe(0);
    expectBookEqualsTruth(fake, harness, "BTC-PERPETUAL", "BTC-PERPETUAL");

    fake.sendReorderedBookChanges("BTC-PERPETUAL");
    await harness.waitFor(() => sub.stats.resyncs === 1 && bookEvents(harness, "BTC-PERPETUAL").filter((e) => e.isSnapshot).length === 2);
    fake.bookStep("BTC-PERPETUAL");
    await waitForBookAt(fake, harness, "BTC-PERPETUAL", "BTC-PERPETUAL");
    expect(gaps(harness).map((gap) => gap.reason)).toEqual(["sequence"]);
    expectSnapshotAfterEveryGap(harness.emitted.map((entry) => entry.event), "BTC-PERPETUAL");
    expectBookEqualsTruth(fake, harness, "BTC-PERPETUAL", "BTC-PERPETUAL");
  });

  test("a too-high change_id in the chain restarts the book (id_reset gap, fresh snapshot) instead of dropping what follows", async () => {
    const { fake, harness } = setup("L2:DERIBIT@BTC-PERPETUAL");
    await fake.waitForSubscribed("book.BTC-PERPETUAL.100ms");
    for (let i = 0; i < 5; i++) fake.bookStep("BTC-PERPETUAL");
    await waitForBookAt(fake, harness, "BTC-PERPETUAL", "BTC-PERPETUAL");
    // Chained to the last change, but with an id far above the venue's: the next real change is below it.
    const tooHigh = fake.nextChange("BTC-PERPETUAL", { bids: [], asks: [] });
    fake.publish("book", "BTC-PERPETUAL", { ...tooHigh, change_id: 9_000_000_000_000 });
    await harness.waitFor(() => bookEvents(harness, "BTC-PERPETUAL").at(-1)?.sequence === 9_000_000_000_000, 5000, "the too-high change");
    for (let i = 0; i < 5; i++) fake.bookStep("BTC-PERPETUAL");
    await harness.waitFor(() => bookEvents(harness, "BTC-PERPETUAL").filter((event) => event.isSnapshot).length === 2, 5000, "a fresh snapshot");
    for (let i = 0; i < 5; i++) fake.bookStep("BTC-PERPETUAL");
    await waitForBookAt(fake, harness, "BTC-PERPETUAL", "BTC-PERPETUAL");
    expect(gaps(harness).map((gap) => gap.reason)).toEqual(["id_reset"]);
    expect(gaps(harness)[0]!.detail).toContain("below the last change_id 9000000000000");
    expectSnapshotAfterEveryGap(harness.emitted.map((entry) => entry.event), "BTC-PERPETUAL");
    expectBookEqualsTruth(fake, harness, "BTC-PERPETUAL", "BTC-PERPETUAL");
  });

  test("a crossed book is treated as a gap: counted resync and a fresh snapshot", async () => {
    const { fake, harness } = setup("L2:DERIBIT@ETH-PERPETUAL");
    await fake.waitForSubscribed("book.ETH-PERPETUAL.100ms");
    for (let i = 0; i < 5; i++) fake.bookStep("ETH-PERPETUAL");
    const crossing = fake.sendCrossingBookChange("ETH-PERPETUAL");
    const [gap] = await harness.waitForEvents("gap", 1);
    expect(gap).toMatchObject({ stream: "L2", reason: "crossed_book" });
    expect(gap!.detail).toContain(`after change_id ${crossing.change_id}`);
    await harness.waitFor(() => bookEvents(harness, "ETH-PERPETUAL").filter((e) => e.isSnapshot).length === 2);
    for (let i = 0; i < 5; i++) fake.bookStep("ETH-PERPETUAL");
    await waitForBookAt(fake, harness, "ETH-PERPETUAL", "ETH-PERPETUAL");
    expect(subscription(harness, "L2:DERIBIT@ETH-PERPETUAL").stats.resyncs).toBe(1);
    expect(bookEvents(harness, "ETH-PERPETUAL").some((event) => !event.isSnapshot && event.sequence === crossing.change_id)).toBe(false);
    expectSnapshotAfterEveryGap(harness.emitted.map((entry) => entry.event), "ETH-PERPETUAL");
    expectBookEqualsTruth(fake, harness, "ETH-PERPETUAL", "ETH-PERPETUAL");
  });

  test("the pipeline's resync(): counted, marked, fresh snapshot before further deltas", async () => {
    const { fake, harness } = setup("L2:DERIBIT@BTC-PERPETUAL");
    await fake.waitForSubscribed("book.BTC-PERPETUAL.100ms");
    for (let i = 0; i < 5; i++) fake.bookStep("BTC-PERPETUAL");
    await waitForBookAt(fake, harness, "BTC-PERPETUAL", "BTC-PERPETUAL");
    const sub = subscription(harness, "L2:DERIBIT@BTC-PERPETUAL");
    harness.connector.resync(sub, "overflow", "42 events dropped");
    expect(sub.stats.resyncs).toBe(1);
    expect(gaps(harness).at(-1)).toMatchObject({ stream: "L2", reason: "overflow", detail: "42 events dropped" });
    fake.bookStep("BTC-PERPETUAL"); // may arrive before the new snapshot: must not be emitted as a delta
    await harness.waitFor(() => bookEvents(harness, "BTC-PERPETUAL").filter((e) => e.isSnapshot).length === 2);
    for (let i = 0; i < 5; i++) fake.bookStep("BTC-PERPETUAL");
    await waitForBookAt(fake, harness, "BTC-PERPETUAL", "BTC-PERPETUAL");
    expectSnapshotAfterEveryGap(harness.emitted.map((entry) => entry.event), "BTC-PERPETUAL");
    expectBookEqualsTruth(fake, harness, "BTC-PERPETUAL", "BTC-PERPETUAL");
  });

  test("the true book survives a long random sequence with every fault injected", async () => {
    const { fake, harness } = setup("L2:DERIBIT@BTC-PERPETUAL,TRADES:DERIBIT@BTC-PERPETUAL", { fake: { seed: 2026 } });
    await fake.waitForSubscribed("book.BTC-PERPETUAL.100ms");
    const random = seededRandom(99);
    const faults = [
      () => fake.skipBookChange("BTC-PERPETUAL"),
      () => fake.resendLastBookChange("BTC-PERPETUAL"),
      () => fake.sendReorderedBookChanges("BTC-PERPETUAL"),
      () => fake.sendCrossingBookChange("BTC-PERPETUAL"),
      () => fake.sendUnreadableBookChange("BTC-PERPETUAL"),
      () => fake.sendRaw('{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.100ms","data":{'),
      () => fake.closeAll(1000, "maintenance"),
      () => fake.terminateAll(),
    ];
    for (let i = 0; i < 3000; i++) {
      if (i > 0 && i % 150 === 0) {
        faults[Math.floor(random() * faults.length)]!();
        await Bun.sleep(5);
      }
      fake.bookStep("BTC-PERPETUAL");
      if (i % 40 === 0) fake.sendTrades("BTC-PERPETUAL", [{}]);
      if (i % 100 === 0) await Bun.sleep(0);
    }
    await waitForBookAt(fake, harness, "BTC-PERPETUAL", "BTC-PERPETUAL", 15_000);
    expectBookEqualsTruth(fake, harness, "BTC-PERPETUAL", "BTC-PERPETUAL");
    expectSnapshotAfterEveryGap(harness.emitted.map((entry) => entry.event), "BTC-PERPETUAL");
    const l2 = subscription(harness, "L2:DERIBIT@BTC-PERPETUAL");
    expect(l2.stats.resyncs + l2.stats.reconnects).toBeGreaterThan(0);
    // Every trade received was emitted once, in order; trades sent while disconnected are marked by gaps.
    const tradeIds = harness.events("trade").map((trade) => trade.id);
    expect(new Set(tradeIds).size).toBe(tradeIds.length);
    const sentIds = fake.market("BTC-PERPETUAL").trades.map((trade) => trade.trade_id);
    expect(sentIds.filter((id) => tradeIds.includes(id))).toEqual(tradeIds);
  }, 30_000);
});

describe("faults", () => {
  test("malformed frames and unknown messages are counted and skipped; data goes on", async () => {
    const { fake, harness } = setup("TRADES:DERIBIT@BTC-PERPETUAL,L2:DERIBIT@BTC-PERPETUAL");
    await fake.waitForSubscribed("book.BTC-PERPETUAL.100ms");
    fake.sendRaw("{not json");
    fake.sendRaw(JSON.stringify({ jsonrpc: "2.0", method: "mystery", params: {} }));
    fake.sendRaw(JSON.stringify({ jsonrpc: "2.0", method: "subscription", params: { channel: "trades.BTC-PERPETUAL.100ms", data: { price: 1 } } }));
    const trades = harness.subscriptions.find((sub) => sub.stream === "TRADES")!;
    const l2 = harness.subscriptions.find((sub) => sub.stream === "L2")!;
    await harness.waitFor(() => trades.stats.parseErrors === 3);
    expect(l2.stats.parseErrors).toBe(2); // the two frames that name no channel count everywhere
    fake.sendUnreadableBookChange("BTC-PERPETUAL");
    await harness.waitFor(() => l2.stats.resyncs === 1);
    expect(l2.stats.parseErrors).toBe(3);
    expect(gaps(harness).map((gap) => [gap.stream, gap.reason])).toEqual([["L2", "sequence"]]);
    const [sent] = fake.sendTrades("BTC-PERPETUAL", [{ direction: "sell" }]);
    const [trade] = await harness.waitForEvents("trade", 1);
    expect(trade!.id).toBe(sent!.trade_id);
    await harness.waitFor(() => bookEvents(harness, "BTC-PERPETUAL").filter((e) => e.isSnapshot).length === 2);
    expect(harness.logs.some((line) => line.startsWith("warn") && line.includes("malformed JSON"))).toBe(true);
  });

  test("a hostile price or amount in any channel is a counted, logged parse error and never a row; a book resyncs", async () => {
    // JSON values that are not a finite number, or not a valid price or amount (Deribit sends numbers).
    const HOSTILE = ["null", '"5"', "1e309", "-1e309", "-1", "0", '"0x10"', '" 5"', '"Infinity"', "true"];
    const { fake, harness } = setup("TRADES:DERIBIT@BTC-PERPETUAL,BBO:DERIBIT@BTC-PERPETUAL,FUNDING:DERIBIT@BTC-PERPETUAL,L2:DERIBIT@BTC-PERPETUAL");
    await fake.waitForSubscribed("book.BTC-PERPETUAL.100ms");
    await harness.waitForEvents("book_change", 1);
    const market = fake.market("BTC-PERPETUAL");
    /** A notification whose `field` (a placeholder in `data`) is the raw JSON `token`. */
    const raw = (channel: string, data: unknown, token: string) =>
      JSON.stringify({ jsonrpc: "2.0", method: "subscription", params: { channel, data } }).replace('"__hostile__"', token);
    const sent = { trades: 0, bbo: 0, funding: 0, l2: 0 };
    const trade = { trade_seq: 1, trade_id: "BTC-1", timestamp: 1_767_225_600_000, price: 60_000, amount: 10, direction: "buy", instrument_name: "BTC-PERPETUAL" };
    const quote = { timestamp: 1_767_225_600_000, instrument_name: "BTC-PERPETUAL", best_bid_price: 59_999, best_bid_amount: 10, best_ask_price: 60_001, best_ask_amount: 20 };
    for (const token of HOSTILE) {
      for (const field of ["price", "amount"]) fake.sendRaw(raw("trades.BTC-PERPETUAL.100ms", [{ ...trade, [field]: "__hostile__" }], token)), sent.trades++;
      for (const field of ["best_bid_price", "best_ask_amount"]) fake.sendRaw(raw("quote.BTC-PERPETUAL", { ...quote, [field]: "__hostile__" }, token)), sent.bbo++;
      if (token !== "null") {
        // A field Deribit leaves out may be null; one that is there must be a number (a mark price above 0).
        fake.sendRaw(raw("ticker.BTC-PERPETUAL.100ms", { timestamp: 1_767_225_600_000, mark_price: "__hostile__", index_price: 60_000, funding_8h: 0.0001 }, token));
        sent.funding++;
      }
    }
    // Each book resync costs two subscription requests, which Deribit rate-limits (burst 10, then ~3/s).
    const hostileLevels = [
      ["null", ["new", "__hostile__", 10]],
      ['"0x10"', ["change", "__hostile__", 10]],
      ["1e309", ["new", 59_000.5, "__hostile__"]],
      ["-1", ["change", 59_000.5, "__hostile__"]],
    ] as const;
    for (const [token, level] of hostileLevels) {
      const snapshots = bookEvents(harness, "BTC-PERPETUAL").filter((event) => event.isSnapshot).length;
      const change = fake.nextChange("BTC-PERPETUAL", { bids: [level as unknown as Level], asks: [] });
      fake.sendRaw(raw("book.BTC-PERPETUAL.100ms", change, token));
      sent.l2++;
      await harness.waitFor(() => bookEvents(harness, "BTC-PERPETUAL").filter((event) => event.isSnapshot).length > snapshots, 5000, "a fresh snapshot");
    }
    const [good] = fake.sendTrades("BTC-PERPETUAL", [{ direction: "buy" }]);
    fake.sendQuote("BTC-PERPETUAL");
    fake.sendTicker("BTC-PERPETUAL");
    for (let i = 0; i < 3; i++) fake.bookStep("BTC-PERPETUAL");
    await harness.waitFor(() => harness.events("trade").length > 0 && harness.events("bbo").length > 0 && harness.events("funding").length > 0, 5000, "the good messages");
    await waitForBookAt(fake, harness, "BTC-PERPETUAL", "BTC-PERPETUAL");
    expect(harness.events("trade").map((event) => event.id)).toEqual([good!.trade_id]);
    expect(harness.events("bbo")).toHaveLength(1);
    expect(harness.events("funding")).toHaveLength(1);
    const stats = (stream: string) => harness.subscriptions.find((sub) => sub.stream === stream)!.stats;
    expect(stats("TRADES").parseErrors).toBe(sent.trades);
    expect(stats("BBO").parseErrors).toBe(sent.bbo);
    expect(stats("FUNDING").parseErrors).toBe(sent.funding);
    expect(stats("L2").parseErrors).toBe(sent.l2);
    expect(gaps(harness).map((gap) => gap.reason)).toEqual(Array(sent.l2).fill("sequence"));
    expectSnapshotAfterEveryGap(harness.emitted.map((entry) => entry.event), "BTC-PERPETUAL");
    expectBookEqualsTruth(fake, harness, "BTC-PERPETUAL", "BTC-PERPETUAL");
    expect(market.changeId).toBe(bookEvents(harness, "BTC-PERPETUAL").at(-1)!.sequence);
    // One warning per fault episode and channel, not one per message.
    expect(harness.logs.filter((line) => line.startsWith("warn") && line.includes("unreadable trade"))).toHaveLength(1);
  });

  test("an unknown instrument fails its subscription alone", async () => {
    const { fake, harness } = setup("TRADES:DERIBIT@BTC-PERPETUAL,L2:DERIBIT@XRP-PERPETUAL");
    const [gap] = await harness.waitForEvents("gap", 1);
    expect(gap).toMatchObject({ symbol: "XRP-PERPETUAL", stream: "L2", reason: "subscription_error" });
    expect(gap!.detail).toContain("book.XRP-PERPETUAL.100ms");
    expect(harness.logs.filter((line) => line.startsWith("error") && line.includes("L2:DERIBIT@XRP-PERPETUAL"))).toHaveLength(1);
    const [sent] = fake.sendTrades("BTC-PERPETUAL", [{ direction: "buy" }]);
    const [trade] = await harness.waitForEvents("trade", 1);
    expect(trade!.id).toBe(sent!.trade_id);
    // After a reconnect only the live subscription is requested again, and only it is marked.
    fake.closeAll(1000);
    const second = await fake.waitForRequests("public/subscribe", 2);
    expect(second[1]!.params.channels).toEqual(["trades.BTC-PERPETUAL.100ms"]);
    expect(gaps(harness, "XRP-PERPETUAL")).toHaveLength(1);
  });

  test("a refused subscribe request is retried channel by channel; only the bad channel fails", async () => {
    fake = FakeDeribit.start();
    fake.poisonedChannels.set("quote.ETH-PERPETUAL", { code: -32602, message: "Invalid params" });
    harness = startConnector("TRADES:DERIBIT@BTC-PERPETUAL,BBO:DERIBIT@ETH-PERPETUAL", fake.env());
    const [gap] = await harness.waitForEvents("gap", 1);
    expect(gap).toMatchObject({ symbol: "ETH-PERPETUAL", stream: "BBO", reason: "subscription_error" });
    expect(gap!.detail).toContain("-32602 Invalid params (bad channel)");
    const requests = fake.requests("public/subscribe").map((request) => request.params.channels);
    expect(requests).toEqual([
      ["trades.BTC-PERPETUAL.100ms", "quote.ETH-PERPETUAL"],
      ["trades.BTC-PERPETUAL.100ms"],
      ["quote.ETH-PERPETUAL"],
    ]);
    await fake.waitForSubscribed("trades.BTC-PERPETUAL.100ms");
    fake.sendTrades("BTC-PERPETUAL", [{}]);
    await harness.waitForEvents("trade", 1);
  });

  test("a server close marks every subscription, reconnects, counts it and resubscribes from a fresh snapshot", async () => {
    const { fake, harness } = setup("L2:DERIBIT@BTC-PERPETUAL,TRADES:DERIBIT@BTC-PERPETUAL,FUNDING:DERIBIT@BTC-PERPETUAL");
    await fake.waitForSubscribed("book.BTC-PERPETUAL.100ms");
    for (let i = 0; i < 5; i++) fake.bookStep("BTC-PERPETUAL");
    await waitForBookAt(fake, harness, "BTC-PERPETUAL", "BTC-PERPETUAL");
    fake.closeAll(1001, "going away");
    const closeGaps = await harness.waitForEvents("gap", 3);
    expect(closeGaps.map((gap) => [gap.stream, gap.reason, gap.detail])).toEqual([
      ["L2", "disconnect", "connection closed by server (code 1001 'going away')"],
      ["TRADES", "disconnect", "connection closed by server (code 1001 'going away')"],
      ["FUNDING", "disconnect", "connection closed by server (code 1001 'going away')"],
    ]);
    const second = await fake.exchange.waitForConnection(2);
    await fake.waitForSubscribed("book.BTC-PERPETUAL.100ms");
    expect(fake.session(second).channels.size).toBe(3);
    for (let i = 0; i < 5; i++) fake.bookStep("BTC-PERPETUAL");
    await waitForBookAt(fake, harness, "BTC-PERPETUAL", "BTC-PERPETUAL");
    for (const sub of harness.subscriptions) expect(sub.stats.reconnects).toBe(1);
    expect(bookEvents(harness, "BTC-PERPETUAL").filter((event) => event.isSnapshot)).toHaveLength(2);
    expectSnapshotAfterEveryGap(harness.emitted.map((entry) => entry.event), "BTC-PERPETUAL");
    expectBookEqualsTruth(fake, harness, "BTC-PERPETUAL", "BTC-PERPETUAL");
  });

  test("a silent connection is stale: marked 'stale', replaced and resubscribed", async () => {
    const { fake, harness } = setup("TRADES:DERIBIT@ETH-PERPETUAL", { env: { XTRADER_DERIBIT_STALE_AFTER_MS: "300" } });
    await fake.waitForSubscribed("trades.ETH-PERPETUAL.100ms");
    const [gap] = await harness.waitForEvents("gap", 1);
    expect(gap).toMatchObject({ stream: "TRADES", reason: "stale", detail: "connection closed (stale)" });
    await fake.exchange.waitForConnection(2);
    await fake.waitForRequests("public/subscribe", 2);
  });

  test("too_many_requests ends the session; the connector backs off, reconnects and subscribes", async () => {
    fake = FakeDeribit.start();
    fake.rateLimitNextSubscribe = true;
    harness = startConnector("TRADES:DERIBIT@BTC-PERPETUAL", fake.env());
    await fake.exchange.waitForConnection(2);
    await fake.waitForSubscribed("trades.BTC-PERPETUAL.100ms");
    expect(harness.logs.some((line) => line.startsWith("warn") && line.includes("10028 too_many_requests"))).toBe(true);
    const [sent] = fake.sendTrades("BTC-PERPETUAL", [{}]);
    const [trade] = await harness.waitForEvents("trade", 1);
    expect(trade!.id).toBe(sent!.trade_id);
    expect(harness.subscriptions[0]!.stats.reconnects).toBe(1);
  });

  test("the fake closes a connection that leaves a test_request unanswered, as Deribit does", async () => {
    // Guards the fake's own enforcement, which the end-to-end suite relies on: a bare client that
    // never answers is dropped.
    fake = FakeDeribit.start();
    const client = new WebSocket(fake.wsUrl);
    const closed = new Promise<number>((resolve) => (client.onclose = (event) => resolve(event.code)));
    const connection = await fake.exchange.waitForConnection(1);
    fake.sendTestRequest(200);
    expect(await closed).toBe(1000);
    expect(fake.session(connection).testAnswers).toBe(0);
  });
});

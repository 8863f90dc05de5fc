import { afterEach, describe, expect, test } from "bun:test";
import { okxChecksum, SeqIdChain } from "../src/connectors/kit/sequence/okx.ts";
import { OKX_LIMITS, okxSpot, okxSwap } from "../src/connectors/okx.ts";
import type { BookChange, Liquidation, MarketEvent, Trade } from "../src/core/events.ts";
import { parseSubscriptions } from "../src/core/subscriptions.ts";
import { EXCHANGE_REGISTRY } from "../src/connectors/index.ts";
import { rebuildBook, startConnector, type ConnectorHarness } from "./support/connector-harness.ts";
import { FakeOkx, referenceChecksum, type BookUpdateFrame, type FakeMarket, type FakeOkxOptions } from "./support/fake-okx.ts";

const BTC_SWAP = { instId: "BTC-USDT-SWAP", ctVal: "0.01", mid: 50_000, tick: 0.1, priceDecimals: 1, sizeDecimals: 0 };
const ETH_SWAP = { instId: "ETH-USDT-SWAP", ctVal: "0.1", mid: 3_000, tick: 0.01, priceDecimals: 2, sizeDecimals: 0 };
const BTC_USD_SWAP = { instId: "BTC-USD-SWAP", ctVal: "100", ctType: "inverse" as const, mid: 50_000, tick: 0.1, sizeDecimals: 0 };
/** A quote currency no syntactic rule knows: only the instrument list can resolve PEPEUSDE. */
const PEPE_SWAP = { instId: "PEPE-USDE-SWAP", ctVal: "1000000", mid: 0.01, tick: 0.000001, priceDecimals: 6, sizeDecimals: 0 };
const BTC_SPOT = { instId: "BTC-USDT", mid: 50_000, tick: 0.1, priceDecimals: 1, sizeDecimals: 8 };
const ETH_EUR_SPOT = { instId: "ETH-EUR", mid: 2_800, tick: 0.01, priceDecimals: 2, sizeDecimals: 6 };

let fake: FakeOkx | undefined;
let harness: ConnectorHarness | undefined;

afterEach(async () => {
  await harness?.stop();
  await fake?.stop();
  harness = undefined;
  fake = undefined;
});

function startFake(options: Partial<FakeOkxOptions> = {}): FakeOkx {
  fake = FakeOkx.start({ instruments: [BTC_SWAP, ETH_SWAP, BTC_USD_SWAP, PEPE_SWAP, BTC_SPOT, ETH_EUR_SPOT], seed: 42, ...options });
  return fake;
}

function connect(subscriptions: string, exchange: "OKX_SWAP" | "OKX_SPOT" = "OKX_SWAP", env: Record<string, string> = {}) {
  harness = startConnector(subscriptions, {
    ...fake!.env(exchange),
    [`XTRADER_${exchange}_SNAPSHOT_WAIT_MS`]: "200",
    ...env,
  });
  return harness;
}

const pickTop = ({ bidPrice, bidAmount, askPrice, askAmount }: { bidPrice: number; bidAmount: number; askPrice: number; askAmount: number }) => ({ bidPrice, bidAmount, askPrice, askAmount });
const events = (h: ConnectorHarness): MarketEvent[] => h.emitted.map((entry) => entry.event);
const books = (h: ConnectorHarness, symbol: string) => h.events("book_change", symbol);
const gaps = (h: ConnectorHarness, symbol?: string) => h.events("gap", symbol);
const flat = (levels: string[][]) => levels.flatMap(([price, size]) => [Number(price), Number(size)]);
const micros = (ms: string) => Number(ms) * 1000;

/** Waits until the connector has emitted the book up to the market's current seqId. */
async function bookCaughtUp(h: ConnectorHarness, symbol: string, market: FakeMarket, timeoutMs = 5000): Promise<void> {
  await h.waitFor(() => books(h, symbol).at(-1)?.sequence === market.seqId, timeoutMs, `book ${symbol} at seqId ${market.seqId}`);
}

function expectBookIsTruth(h: ConnectorHarness, symbol: string, market: FakeMarket): void {
  const book = rebuildBook(events(h), symbol);
  const truth = market.truth();
  expect(book.bids.sorted()).toEqual(truth.bids);
  expect(book.asks.sorted()).toEqual(truth.asks);
}

/** After a gap, the next book event is a snapshot (no delta on a book with holes). */
function expectSnapshotAfterEveryGap(h: ConnectorHarness, symbol: string): void {
  let awaitingSnapshot = false;
  for (const event of events(h)) {
    if (event.symbol !== symbol) continue;
    if (event.type === "gap" && event.stream === "L2") awaitingSnapshot = true;
    if (event.type === "book_change") {
      if (awaitingSnapshot) expect(event.isSnapshot).toBe(true);
      awaitingSnapshot = false;
    }
  }
}

function expectLocalTime(event: MarketEvent): void {
  expect(Number.isInteger(event.localTimestamp)).toBe(true);
  expect(Math.abs(event.localTimestamp - Date.now() * 1000)).toBeLessThan(60_000_000);
}

describe("instrument mapping (command line, before connecting)", () => {
  test.each([
    [okxSwap, "BTCUSDT", "BTC-USDT-SWAP"],
    [okxSwap, "BTC-USDT-SWAP", "BTC-USDT-SWAP"],
    [okxSwap, "BTC-USDT", "BTC-USDT-SWAP"],
    [okxSwap, "BTCUSD", "BTC-USD-SWAP"],
    [okxSwap, "ETHUSDC", "ETH-USDC-SWAP"],
    [okxSpot, "BTCUSDT", "BTC-USDT"],
    [okxSpot, "BTC-USDT", "BTC-USDT"],
    [okxSpot, "BTC/EUR", "BTC-EUR"],
    [okxSpot, "ETHEUR", "ETH-EUR"],
  ])("%#: %p maps %s to %s", (spec, symbol, native) => {
    expect(spec.nativeInstrument(symbol)).toEqual({ native });
  });

  test.each([
    [okxSpot, "BTC-USDT-SWAP", "invalid OKX_SPOT instrument 'BTC-USDT-SWAP'; expected e.g. BTCUSDT or BTC-USDT (a spot pair)"],
    [okxSwap, "BTC-USDT-250328", "invalid OKX_SWAP instrument 'BTC-USDT-250328'; expected e.g. BTCUSDT or BTC-USDT-SWAP (a perpetual swap)"],
    [okxSwap, "BTC_USDT", "invalid OKX_SWAP instrument 'BTC_USDT'; expected e.g. BTCUSDT or BTC-USDT-SWAP (a perpetual swap)"],
    [okxSpot, "BTC--USDT", "invalid OKX_SPOT instrument 'BTC--USDT'; expected e.g. BTCUSDT or BTC-USDT (a spot pair)"],
  ])("%#: rejects %s", (spec, symbol, error) => {
    expect(spec.nativeInstrument(symbol)).toEqual({ error });
  });

  test("the subscription grammar reports a bad OKX instrument in one sentence", () => {
    expect(() => parseSubscriptions("L2:OKX_SPOT@BTC-USDT-SWAP", EXCHANGE_REGISTRY)).toThrow(
      "invalid OKX_SPOT instrument 'BTC-USDT-SWAP'; expected e.g. BTCUSDT or BTC-USDT (a spot pair) in 'L2:OKX_SPOT@BTC-USDT-SWAP'",
    );
  });
});

describe("SeqIdChain", () => {
  test("OKX's documented sequence: jump, idle heartbeat, reset after maintenance all apply", () => {
    const chain = new SeqIdChain();
    chain.start(10, false);
    expect(chain.next(10, 15)).toBe("apply");
    expect(chain.next(15, 15)).toBe("apply");
    expect(chain.next(15, 3)).toBe("apply");
    expect(chain.next(3, 5)).toBe("apply");
    expect(chain.seqId).toBe(5);
  });

  test("a broken chain is a gap; the last message again is a duplicate; an older one is a gap", () => {
    const chain = new SeqIdChain();
    chain.start(100, false);
    expect(chain.next(100, 104)).toBe("apply");
    expect(chain.next(100, 104)).toBe("duplicate");
    expect(chain.next(104, 106)).toBe("apply");
    expect(chain.next(100, 104)).toBe("gap");
    expect(chain.next(107, 109)).toBe("gap");
    expect(new SeqIdChain().next(1, 2)).toBe("gap");
  });

  test("after a REST snapshot: older updates are stale, the bridging one applies, then the chain is strict", () => {
    const chain = new SeqIdChain();
    chain.start(50, true, 2);
    expect(chain.next(44, 48)).toBe("stale");
    expect(chain.next(48, 50)).toBe("stale");
    expect(chain.next(50 - 2, 53)).toBe("apply");
    expect(chain.next(50, 55)).toBe("gap");
    const other = new SeqIdChain();
    other.start(50, true, 2);
    expect(other.next(51, 53)).toBe("gap");
  });

  test("after a REST snapshot, only the allowed overlap is stale: beyond it, updates below the snapshot are 'backwards'", () => {
    const chain = new SeqIdChain();
    chain.start(9_000_000, true, 3); // a snapshot seqId far above the stream's
    expect(chain.next(10, 11)).toBe("stale");
    expect(chain.next(11, 12)).toBe("stale");
    expect(chain.next(12, 13)).toBe("stale");
    expect(chain.next(13, 14)).toBe("backwards");
  });
});

describe("okxChecksum", () => {
  // Vectors built from our own books; expected values computed independently (Python zlib.crc32, signed).
  test("interleaves bid:size:ask:size from the strings as received, signed 32-bit", () => {
    const bids = [["27105.5", "0.250"], ["27105", "12"], ["27104.90", "3.5"]];
    expect(okxChecksum(bids, [["27106", "1.000"], ["27107.25", "0.3"]])).toBe(-546344525);
    expect(okxChecksum(bids, [["27106", "1.000"], ["27107.25", "0.030"]])).toBe(1742170258);
    // Same numbers, other text: a different checksum, so text must be kept as received.
    expect(okxChecksum(bids, [["27106", "1.000"], ["27107.25", "0.03"]])).toBe(325784869);
  });

  test("covers only the top 25 levels of each side", () => {
    const bids = Array.from({ length: 30 }, (_, i) => [`${30000 - i}.5`, String(i + 1)]);
    const asks = Array.from({ length: 27 }, (_, i) => [String(30001 + i), ((i + 1) / 4).toFixed(2)]);
    expect(okxChecksum(bids, asks)).toBe(-887058046);
    expect(okxChecksum(bids, asks)).toBe(referenceChecksum(bids as [string, string][], asks as [string, string][]));
  });
});

describe("OKX_SWAP against the fake exchange", () => {
  test("every stream is normalized field by field (linear swap: contracts × ctVal in base)", async () => {
    const okx = startFake();
    const h = connect(
      "TRADES:OKX_SWAP@BTCUSDT,BBO:OKX_SWAP@BTCUSDT,FUNDING:OKX_SWAP@BTCUSDT,LIQUIDATIONS:OKX_SWAP@BTCUSDT,L2:OKX_SWAP@BTCUSDT",
    );
    for (const [channel, key] of [["trades", "BTC-USDT-SWAP"], ["bbo-tbt", "BTC-USDT-SWAP"], ["funding-rate", "BTC-USDT-SWAP"], ["mark-price", "BTC-USDT-SWAP"], ["liquidation-orders", "SWAP"], ["books", "BTC-USDT-SWAP"]]) {
      await okx.waitForSubscriber(channel!, key!);
    }
    const market = okx.market("BTC-USDT-SWAP");
    const sizing = { exchange: "OKX_SWAP", symbol: "BTCUSDT", amountUnit: "base", contractValue: 0.01 } as const;

    const [snapshot] = await h.waitForEvents("book_change", 1);
    const snapshotFrame = market.sentBooks[0]!.data[0];
    expect(snapshot).toEqual({
      type: "book_change",
      ...sizing,
      timestamp: micros(snapshotFrame.ts),
      localTimestamp: snapshot!.localTimestamp,
      isSnapshot: true,
      sequence: snapshotFrame.seqId,
      bids: flat(snapshotFrame.bids),
      asks: flat(snapshotFrame.asks),
    } satisfies BookChange);
    expectLocalTime(snapshot!);

    const update = okx.sendBookUpdate("BTC-USDT-SWAP", { bids: [[market.mid - 1, "7"]], asks: [[market.mid + 3, "0"], [market.mid + 2, "11"]] }).data[0];
    const [, delta] = await h.waitForEvents("book_change", 2);
    expect(delta).toEqual({
      type: "book_change",
      ...sizing,
      timestamp: micros(update.ts),
      localTimestamp: delta!.localTimestamp,
      isSnapshot: false,
      sequence: update.seqId,
      bids: flat(update.bids),
      asks: flat(update.asks),
    } satisfies BookChange);

    const trade = okx.sendTrade("BTC-USDT-SWAP", { px: "50001.3", sz: "25", side: "sell", ts: "1767225600123" });
    const [tradeEvent] = await h.waitForEvents("trade", 1);
    expect(tradeEvent).toEqual({
      type: "trade",
      ...sizing,
      timestamp: 1767225600123000,
      localTimestamp: tradeEvent!.localTimestamp,
      id: trade.tradeId,
      side: "sell",
      price: 50001.3,
      amount: 25,
    } satisfies Trade);
    expectLocalTime(tradeEvent!);

    const bboCount = h.events("bbo").length;
    okx.sendBbo("BTC-USDT-SWAP", ["49999.9", "120"], ["50000.1", "3"], "1767225600456");
    const bbo = (await h.waitForEvents("bbo", bboCount + 1)).at(-1);
    expect(bbo).toEqual({
      type: "bbo",
      exchange: "OKX_SWAP",
      symbol: "BTCUSDT",
      timestamp: 1767225600456000,
      localTimestamp: bbo!.localTimestamp,
      bidPrice: 49999.9,
      bidAmount: 120,
      askPrice: 50000.1,
      askAmount: 3,
    });

    okx.sendFundingRate("BTC-USDT-SWAP", { fundingRate: "0.0001875391284828", fundingTime: "1767254400000", nextFundingTime: "1767283200000", ts: "1767252600123" });
    okx.sendMarkPrice("BTC-USDT-SWAP", "50012.7", "1767252600456");
    const [funding, mark] = await h.waitForEvents("funding", 2);
    expect(funding).toEqual({
      type: "funding",
      exchange: "OKX_SWAP",
      symbol: "BTCUSDT",
      timestamp: 1767252600123000,
      localTimestamp: funding!.localTimestamp,
      markPrice: undefined,
      indexPrice: undefined,
      fundingRate: 0.0001875391284828,
      nextFundingTime: 1767254400000000,
    });
    expect(mark).toEqual({
      type: "funding",
      exchange: "OKX_SWAP",
      symbol: "BTCUSDT",
      timestamp: 1767252600456000,
      localTimestamp: mark!.localTimestamp,
      markPrice: 50012.7,
      indexPrice: undefined,
      fundingRate: undefined,
      nextFundingTime: undefined,
    });

    // Another instrument's liquidation first: filtered out (it would arrive first if it were not).
    okx.sendLiquidation("ETH-USDT-SWAP", [{ side: "sell", posSide: "long", bkPx: "2999.5", sz: "40", ts: "1767252601000" }]);
    okx.sendLiquidation("BTC-USDT-SWAP", [
      { side: "sell", posSide: "long", bkPx: "49876.5", sz: "12", ts: "1767252601111" },
      { side: "buy", posSide: "short", bkPx: "50120", sz: "3", ts: "1767252601222" },
    ]);
    const liquidations = await h.waitForEvents("liquidation", 2);
    expect(liquidations).toEqual([
      { type: "liquidation", ...sizing, timestamp: 1767252601111000, localTimestamp: liquidations[0]!.localTimestamp, id: "1767252601111-sell-12-49876.5", side: "sell", price: 49876.5, amount: 12 },
      { type: "liquidation", ...sizing, timestamp: 1767252601222000, localTimestamp: liquidations[1]!.localTimestamp, id: "1767252601222-buy-3-50120", side: "buy", price: 50120, amount: 3 },
    ] satisfies Liquidation[]);

    for (const subscription of h.subscriptions) {
      expect(subscription.stats.messages).toBeGreaterThan(0);
      expect(subscription.stats.lastMessageAt).toBeGreaterThan(0);
      expect(subscription.stats.parseErrors).toBe(0);
    }
    expect(gaps(h)).toEqual([]);
    // Subscribed once, in one batch with ids.
    const subscribes = okx.clientOps("subscribe");
    expect(subscribes).toHaveLength(1);
    expect(subscribes[0]!.id).toBeString();
    expect(subscribes[0]!.args).toContainEqual({ channel: "liquidation-orders", instType: "SWAP" });
  });

  test("inverse swaps are sized in the quote currency; quote currencies of any length resolve from the instrument list", async () => {
    const okx = startFake();
    const h = connect("TRADES:OKX_SWAP@BTCUSD,TRADES:OKX_SWAP@PEPEUSDE");
    await okx.waitForSubscriber("trades", "BTC-USD-SWAP");
    await okx.waitForSubscriber("trades", "PEPE-USDE-SWAP");
    const inverse = okx.sendTrade("BTC-USD-SWAP", { px: "50010.5", sz: "9", side: "buy", ts: "1767225601000" });
    const pepe = okx.sendTrade("PEPE-USDE-SWAP", { px: "0.010203", sz: "4", side: "sell", ts: "1767225602000" });
    const [inverseTrade] = await h.waitForEvents("trade", 1, 5000, "BTCUSD");
    const [pepeTrade] = await h.waitForEvents("trade", 1, 5000, "PEPEUSDE");
    expect(inverseTrade).toMatchObject({ id: inverse.tradeId, amount: 9, price: 50010.5, amountUnit: "quote", contractValue: 100 });
    expect(pepeTrade).toMatchObject({ id: pepe.tradeId, amount: 4, price: 0.010203, amountUnit: "base", contractValue: 1_000_000 });
    expect(okx.exchange.requests.filter((request) => request.path === "/api/v5/public/instruments")).toHaveLength(1);
  });

  test("a long seeded random market: the rebuilt book equals the true book; every trade once, in order", async () => {
    const okx = startFake({ seed: 20260801 });
    const h = connect("L2:OKX_SWAP@BTCUSDT,TRADES:OKX_SWAP@BTCUSDT,BBO:OKX_SWAP@BTCUSDT");
    await okx.waitForSubscriber("books", "BTC-USDT-SWAP");
    await okx.waitForSubscriber("trades", "BTC-USDT-SWAP");
    await okx.waitForSubscriber("bbo-tbt", "BTC-USDT-SWAP");
    await h.waitForEvents("book_change", 1);
    const market = okx.market("BTC-USDT-SWAP");
    for (let batch = 0; batch < 30; batch++) {
      okx.step("BTC-USDT-SWAP", 100);
      await Bun.sleep(1);
    }
    await bookCaughtUp(h, "BTCUSDT", market, 10_000);
    await h.waitFor(() => h.events("trade").length === market.trades.length, 5000, "all trades");
    expectBookIsTruth(h, "BTCUSDT", market);
    expect(books(h, "BTCUSDT")).toHaveLength(market.sentBooks.length);
    expect(h.events("trade").map((trade) => trade.id)).toEqual(market.trades.map((trade) => trade.tradeId));
    // bbo-tbt follows each top-changing update: the last one is the true top of book.
    const top = market.truth();
    const expectedTop = { bidPrice: top.bids[0]![0], bidAmount: top.bids[0]![1], askPrice: top.asks[0]![0], askAmount: top.asks[0]![1] };
    await h.waitFor(() => h.events("bbo").length > 100 && Bun.deepEquals(pickTop(h.events("bbo").at(-1)!), expectedTop), 5000, "last bbo");
    // checksum 0 (OKX since the deprecation) is never taken for a mismatch.
    expect(gaps(h)).toEqual([]);
    expect(h.subscriptions.every((subscription) => subscription.stats.resyncs === 0)).toBe(true);
    expect(market.trades.length).toBeGreaterThan(500);
  });

  test("non-zero checksums are verified: matching ones pass, a wrong one is a gap followed by a fresh snapshot", async () => {
    const okx = startFake({ checksums: true, seed: 9 });
    const h = connect("L2:OKX_SWAP@BTCUSDT");
    await okx.waitForSubscriber("books", "BTC-USDT-SWAP");
    await h.waitForEvents("book_change", 1);
    const market = okx.market("BTC-USDT-SWAP");
    okx.step("BTC-USDT-SWAP", 400);
    await bookCaughtUp(h, "BTCUSDT", market);
    expect(market.sentBooks.every((frame) => frame.data[0].checksum !== 0)).toBe(true);
    expect(gaps(h)).toEqual([]);
    expectBookIsTruth(h, "BTCUSDT", market);

    okx.corruptNextChecksum("BTC-USDT-SWAP");
    okx.step("BTC-USDT-SWAP", 1);
    const [gap] = await h.waitForEvents("gap", 1);
    expect(gap).toMatchObject({ stream: "L2", reason: "checksum", symbol: "BTCUSDT" });
    await okx.exchange.waitFor(() => okx.clientOps("subscribe").length === 2, 5000, "resubscribe");
    expect(okx.clientOps("unsubscribe")).toEqual([{ op: "unsubscribe", args: [{ channel: "books", instId: "BTC-USDT-SWAP" }] }]);
    await h.waitFor(() => books(h, "BTCUSDT").filter((event) => event.isSnapshot).length === 2, 5000, "fresh snapshot");
    okx.step("BTC-USDT-SWAP", 100);
    await bookCaughtUp(h, "BTCUSDT", market);
    expectBookIsTruth(h, "BTCUSDT", market);
    expectSnapshotAfterEveryGap(h, "BTCUSDT");
    expect(h.subscriptions[0]!.stats.resyncs).toBe(1);
  });

  test("checksums that start on a book kept without them: one counted resync, then verified from the fresh snapshot on", async () => {
    const okx = startFake({ seed: 11 });
    const h = connect("L2:OKX_SWAP@BTCUSDT");
    await okx.waitForSubscriber("books", "BTC-USDT-SWAP");
    await h.waitForEvents("book_change", 1);
    const market = okx.market("BTC-USDT-SWAP");
    okx.step("BTC-USDT-SWAP", 100);
    await bookCaughtUp(h, "BTCUSDT", market);
    expect(gaps(h)).toEqual([]);

    // The level texts were not kept while every checksum was 0: the first non-zero one restarts the book.
    okx.checksums = true;
    okx.step("BTC-USDT-SWAP", 1);
    const [gap] = await h.waitForEvents("gap", 1);
    expect(gap).toMatchObject({ stream: "L2", reason: "checksum", symbol: "BTCUSDT" });
    await h.waitFor(() => books(h, "BTCUSDT").filter((event) => event.isSnapshot).length === 2, 5000, "fresh snapshot");
    okx.step("BTC-USDT-SWAP", 200);
    await bookCaughtUp(h, "BTCUSDT", market);
    expectBookIsTruth(h, "BTCUSDT", market);
    expect(gaps(h)).toHaveLength(1);

    // From that snapshot on every checksum is verified: a wrong one is caught.
    okx.corruptNextChecksum("BTC-USDT-SWAP");
    okx.step("BTC-USDT-SWAP", 1);
    await h.waitFor(() => gaps(h).length === 2, 5000, "checksum mismatch");
    expect(gaps(h)[1]).toMatchObject({ stream: "L2", reason: "checksum" });
    await h.waitFor(() => books(h, "BTCUSDT").filter((event) => event.isSnapshot).length === 3, 5000, "second fresh snapshot");
    expectSnapshotAfterEveryGap(h, "BTCUSDT");
    expect(h.subscriptions[0]!.stats.resyncs).toBe(2);
  });

  test("without a WebSocket snapshot the book comes from REST, aligned with the buffered updates by seqId", async () => {
    const okx = startFake({ wsSnapshot: false, seed: 5 });
    const h = connect("L2:OKX_SWAP@BTCUSDT");
    await okx.waitForSubscriber("books", "BTC-USDT-SWAP");
    const market = okx.market("BTC-USDT-SWAP");
    okx.step("BTC-USDT-SWAP", 5);
    await h.waitForEvents("book_change", 1);
    okx.step("BTC-USDT-SWAP", 200);
    await bookCaughtUp(h, "BTCUSDT", market);
    expectBookIsTruth(h, "BTCUSDT", market);
    const emitted = books(h, "BTCUSDT");
    expect(emitted[0]!.isSnapshot).toBe(true);
    expect(emitted.slice(1).every((event) => !event.isSnapshot)).toBe(true);
    // Every update after the snapshot's seqId was emitted, none before it.
    const afterSnapshot = market.sentBooks.filter((frame) => frame.data[0].seqId > emitted[0]!.sequence);
    expect(emitted.slice(1).map((event) => event.sequence)).toEqual(afterSnapshot.map((frame) => frame.data[0].seqId));
    const rest = okx.exchange.requests.filter((request) => request.path === "/api/v5/market/books");
    expect(rest).toHaveLength(1);
    expect(rest[0]!.query.get("instId")).toBe("BTC-USDT-SWAP");
    expect(rest[0]!.query.get("sz")).toBe("400");
    expect(gaps(h)).toEqual([]);
  });

  test("an idle book without a WebSocket snapshot is fetched over REST after the wait; heartbeats keep the chain", async () => {
    const okx = startFake({ wsSnapshot: false, seed: 6 });
    const h = connect("L2:OKX_SWAP@BTCUSDT");
    const market = okx.market("BTC-USDT-SWAP");
    const [snapshot] = await h.waitForEvents("book_change", 1);
    expect(snapshot).toMatchObject({ isSnapshot: true, sequence: market.seqId });
    expectBookIsTruth(h, "BTCUSDT", market);
    okx.heartbeat("BTC-USDT-SWAP");
    okx.heartbeat("BTC-USDT-SWAP");
    okx.step("BTC-USDT-SWAP", 20);
    await bookCaughtUp(h, "BTCUSDT", market);
    expectBookIsTruth(h, "BTCUSDT", market);
    expect(books(h, "BTCUSDT")).toHaveLength(21);
    expect(gaps(h)).toEqual([]);
  });

  test("a REST snapshot older than the buffered stream is fetched again", async () => {
    const okx = startFake({ wsSnapshot: false, seed: 8 });
    okx.serveStaleSnapshotNext("BTC-USDT-SWAP");
    okx.step("BTC-USDT-SWAP", 3);
    const h = connect("L2:OKX_SWAP@BTCUSDT");
    await okx.waitForSubscriber("books", "BTC-USDT-SWAP");
    const market = okx.market("BTC-USDT-SWAP");
    okx.step("BTC-USDT-SWAP", 10);
    await bookCaughtUp(h, "BTCUSDT", market);
    expectBookIsTruth(h, "BTCUSDT", market);
    expect(okx.exchange.requests.filter((request) => request.path === "/api/v5/market/books")).toHaveLength(2);
    expect(gaps(h)).toEqual([]);
  });

  test("a REST snapshot is stamped no later than the first update applied on it (rows ordered by time replay it first)", async () => {
    const okx = startFake({ wsSnapshot: false, seed: 14 });
    const h = connect("L2:OKX_SWAP@BTCUSDT");
    await okx.waitForSubscriber("books", "BTC-USDT-SWAP");
    const market = okx.market("BTC-USDT-SWAP");
    // The REST book is OKX's cache, a little older than the stream: it holds the state before the next
    // update, but its `ts` is the (later) time of the response.
    okx.serveStaleSnapshotNext("BTC-USDT-SWAP");
    okx.failRest("/api/v5/market/books", [500]); // the first fetch fails: the response comes well after the update
    okx.step("BTC-USDT-SWAP", 1, 0);
    const [snapshot, first] = await h.waitForEvents("book_change", 2);
    expect(snapshot).toMatchObject({ isSnapshot: true });
    expect(first).toMatchObject({ isSnapshot: false, sequence: market.seqId });
    expect(snapshot!.sequence).toBeLessThan(first!.sequence);
    expect(snapshot!.timestamp).toBeLessThanOrEqual(first!.timestamp);
    okx.step("BTC-USDT-SWAP", 5, 0);
    await bookCaughtUp(h, "BTCUSDT", market);
    expectBookIsTruth(h, "BTCUSDT", market);
  });

  test("a REST snapshot with a seqId far too high: past the allowed overlap the book restarts (id_reset gap) instead of dropping every update", async () => {
    const okx = startFake({ wsSnapshot: false, seed: 12 });
    const market = okx.market("BTC-USDT-SWAP");
    okx.serveSnapshotWithSeqIdNext("BTC-USDT-SWAP", market.seqId + 1_000_000_000);
    const h = connect("L2:OKX_SWAP@BTCUSDT");
    await okx.waitForSubscriber("books", "BTC-USDT-SWAP");
    await h.waitForEvents("book_change", 1);
    for (let i = 0; i <= OKX_LIMITS.restOverlapUpdates; i++) okx.step("BTC-USDT-SWAP", 1, 0);
    await h.waitFor(() => gaps(h).length > 0, 5000, "the reset");
    okx.step("BTC-USDT-SWAP", 10, 0);
    await bookCaughtUp(h, "BTCUSDT", market);
    expectBookIsTruth(h, "BTCUSDT", market);
    expect(gaps(h).map((gap) => gap.reason)).toEqual(["id_reset"]);
    expectSnapshotAfterEveryGap(h, "BTCUSDT");
  });

  test("REST snapshot failures (429, 418, 500) are marked once and retried until a snapshot arrives", async () => {
    const okx = startFake({ wsSnapshot: false, seed: 10 });
    okx.failRest("/api/v5/market/books", [429, 418, 500]);
    const h = connect("L2:OKX_SWAP@BTCUSDT");
    await okx.waitForSubscriber("books", "BTC-USDT-SWAP");
    const market = okx.market("BTC-USDT-SWAP");
    okx.step("BTC-USDT-SWAP", 3);
    await h.waitForEvents("book_change", 1, 10_000);
    okx.step("BTC-USDT-SWAP", 30);
    await bookCaughtUp(h, "BTCUSDT", market);
    expectBookIsTruth(h, "BTCUSDT", market);
    expect(gaps(h)).toHaveLength(1);
    expect(gaps(h)[0]).toMatchObject({ reason: "snapshot_failed", stream: "L2" });
    expect(gaps(h)[0]!.detail).toContain("HTTP 429");
    expect(okx.exchange.requests.filter((request) => request.path === "/api/v5/market/books")).toHaveLength(4);
    expect(h.logs.some((line) => line.includes("HTTP 418"))).toBe(true);
    expect(h.logs.some((line) => line.includes("HTTP 500"))).toBe(true);
  });

  test("a REST snapshot deeper than the 400 levels asked for is refused, streamed or not: marked, counted, retried", async () => {
    const okx = startFake({ wsSnapshot: false, seed: 12 });
    const level = (price: number) => `["${price}","1","0","1"]`;
    const side = (count: number, from: number) => Array.from({ length: count }, (_, i) => level(from + i)).join(",");
    const book = (count: number) => `{"code":"0","msg":"","data":[{"asks":[${side(count, 60_000)}],"bids":[${side(count, 1)}],"ts":"${Date.now()}","seqId":1}]}`;
    // 150,000 levels a side streamed in chunks without a Content-Length: refused once the count of bytes
    // passes the bound. Then 401 short levels, within the byte bound: refused on their count.
    const streamed = () => {
      const text = book(150_000);
      let offset = 0;
      return new Response(
        new ReadableStream({
          pull(controller) {
            if (offset >= text.length) return controller.close();
            controller.enqueue(new TextEncoder().encode(text.slice(offset, (offset += 64 * 1024))));
          },
        }),
        { headers: { "content-type": "application/json" } },
      );
    };
    okx.serveNextBooks(streamed, () => new Response(book(401), { headers: { "content-type": "application/json" } }));
    const h = connect("L2:OKX_SWAP@BTCUSDT");
    await okx.waitForSubscriber("books", "BTC-USDT-SWAP");
    const market = okx.market("BTC-USDT-SWAP");
    okx.step("BTC-USDT-SWAP", 3);
    await h.waitForEvents("book_change", 1, 10_000);
    okx.step("BTC-USDT-SWAP", 10);
    await bookCaughtUp(h, "BTCUSDT", market);
    expectBookIsTruth(h, "BTCUSDT", market);
    expect(gaps(h)).toHaveLength(1);
    expect(gaps(h)[0]).toMatchObject({ reason: "snapshot_failed", stream: "L2" });
    expect(gaps(h)[0]!.detail).toMatch(/^REST snapshot failed: HTTP 200 body over the 118784-byte bound \(more than \d+ bytes\)$/);
    expect(h.logs.some((line) => line.includes("more than the 400 levels a side asked for"))).toBe(true);
    expect(h.subscriptions[0]!.stats.parseErrors).toBe(2);
    for (const event of books(h, "BTCUSDT")) expect(Math.max(event.bids.length, event.asks.length) / 2).toBeLessThanOrEqual(400);
  });

  test("a seqId gap is counted, marked, resubscribed and followed by a fresh snapshot", async () => {
    const okx = startFake({ seed: 11 });
    const h = connect("L2:OKX_SWAP@BTCUSDT");
    await okx.waitForSubscriber("books", "BTC-USDT-SWAP");
    await h.waitForEvents("book_change", 1);
    const market = okx.market("BTC-USDT-SWAP");
    okx.step("BTC-USDT-SWAP", 10);
    okx.dropNextUpdate("BTC-USDT-SWAP");
    okx.step("BTC-USDT-SWAP", 2);
    const [gap] = await h.waitForEvents("gap", 1);
    expect(gap).toMatchObject({ stream: "L2", reason: "sequence", exchange: "OKX_SWAP", symbol: "BTCUSDT" });
    expect(gap!.detail).toContain("does not follow");
    await h.waitFor(() => books(h, "BTCUSDT").filter((event) => event.isSnapshot).length === 2, 5000, "fresh snapshot");
    okx.step("BTC-USDT-SWAP", 50);
    await bookCaughtUp(h, "BTCUSDT", market);
    expectBookIsTruth(h, "BTCUSDT", market);
    expectSnapshotAfterEveryGap(h, "BTCUSDT");
    expect(h.subscriptions[0]!.stats.resyncs).toBe(1);
    expect(h.logs.some((line) => line.startsWith("warn") && line.includes("resync (sequence)"))).toBe(true);
  });

  test("a seqId reset after maintenance, jumps and idle heartbeats keep the chain: no gap", async () => {
    const okx = startFake({ seed: 12 });
    const h = connect("L2:OKX_SWAP@BTCUSDT");
    await okx.waitForSubscriber("books", "BTC-USDT-SWAP");
    await h.waitForEvents("book_change", 1);
    const market = okx.market("BTC-USDT-SWAP");
    okx.step("BTC-USDT-SWAP", 5);
    okx.heartbeat("BTC-USDT-SWAP");
    const before = market.seqId;
    okx.resetSequence("BTC-USDT-SWAP", 3);
    okx.step("BTC-USDT-SWAP", 1);
    expect(market.seqId).toBe(3);
    expect(market.seqId).toBeLessThan(before);
    okx.step("BTC-USDT-SWAP", 20);
    await bookCaughtUp(h, "BTCUSDT", market);
    expectBookIsTruth(h, "BTCUSDT", market);
    expect(gaps(h)).toEqual([]);
    expect(books(h, "BTCUSDT").map((event) => event.sequence)).toContain(3);
  });

  test("a duplicated update is ignored; reordered updates are a gap and the book recovers", async () => {
    const okx = startFake({ seed: 13 });
    const h = connect("L2:OKX_SWAP@BTCUSDT");
    await okx.waitForSubscriber("books", "BTC-USDT-SWAP");
    await h.waitForEvents("book_change", 1);
    const market = okx.market("BTC-USDT-SWAP");
    okx.step("BTC-USDT-SWAP", 5);
    okx.duplicateLastUpdate("BTC-USDT-SWAP");
    okx.step("BTC-USDT-SWAP", 5);
    await bookCaughtUp(h, "BTCUSDT", market);
    expect(gaps(h)).toEqual([]);
    expectBookIsTruth(h, "BTCUSDT", market);

    okx.reorderNextTwo("BTC-USDT-SWAP");
    okx.step("BTC-USDT-SWAP", 2);
    const [gap] = await h.waitForEvents("gap", 1);
    expect(gap).toMatchObject({ reason: "sequence", stream: "L2" });
    await h.waitFor(() => books(h, "BTCUSDT").filter((event) => event.isSnapshot).length === 2, 5000, "fresh snapshot");
    okx.step("BTC-USDT-SWAP", 20);
    await bookCaughtUp(h, "BTCUSDT", market);
    expectBookIsTruth(h, "BTCUSDT", market);
    expectSnapshotAfterEveryGap(h, "BTCUSDT");
  });

  test("an update that crosses the book is a gap (crossed_book), never emitted, then a fresh snapshot", async () => {
    const okx = startFake({ seed: 14 });
    const h = connect("L2:OKX_SWAP@BTCUSDT");
    await okx.waitForSubscriber("books", "BTC-USDT-SWAP");
    await h.waitForEvents("book_change", 1);
    const market = okx.market("BTC-USDT-SWAP");
    okx.step("BTC-USDT-SWAP", 5);
    const crossed = okx.sendCrossedUpdate("BTC-USDT-SWAP");
    const [gap] = await h.waitForEvents("gap", 1);
    expect(gap).toMatchObject({ reason: "crossed_book", stream: "L2" });
    expect(books(h, "BTCUSDT").some((event) => event.sequence === crossed.data[0].seqId)).toBe(false);
    await h.waitFor(() => books(h, "BTCUSDT").filter((event) => event.isSnapshot).length === 2, 5000, "fresh snapshot");
    okx.step("BTC-USDT-SWAP", 20);
    await bookCaughtUp(h, "BTCUSDT", market);
    expectBookIsTruth(h, "BTCUSDT", market);
    // Replaying what was emitted never shows a crossed book.
    const replay = rebuildBook([]);
    for (const event of books(h, "BTCUSDT")) {
      replay.apply(event.bids, event.asks, event.isSnapshot);
      expect(replay.isCrossed()).toBe(false);
    }
  });

  test("a snapshot that is itself crossed (pre-open auction) is tolerated until the book uncrosses", async () => {
    const okx = startFake({ seed: 18 });
    const h = connect("L2:OKX_SWAP@BTCUSDT");
    await okx.waitForSubscriber("books", "BTC-USDT-SWAP");
    await h.waitForEvents("book_change", 1);
    const frame = (action: "snapshot" | "update", prevSeqId: number, seqId: number, bids: string[][], asks: string[][]) => ({
      arg: { channel: "books", instId: "BTC-USDT-SWAP" },
      action,
      data: [{ bids: bids.map((level) => [...level, "0", "1"]), asks: asks.map((level) => [...level, "0", "1"]), ts: "1767225600000", checksum: 0, prevSeqId, seqId }],
    });
    // OKX: "Best ask price may be lower than the best bid price during the pre-open period."
    okx.sendRaw(frame("snapshot", -1, 500, [["100.5", "1"], ["99", "2"]], [["100.1", "3"], ["101", "4"]]));
    okx.sendRaw(frame("update", 500, 501, [["100.5", "2"]], []));
    await h.waitFor(() => books(h, "BTCUSDT").at(-1)?.sequence === 501, 5000, "crossed update accepted");
    expect(gaps(h)).toEqual([]);
    expect(h.logs.some((line) => line.includes("crossed (pre-open auction?)"))).toBe(true);
    okx.sendRaw(frame("update", 501, 503, [["100.5", "0"]], [])); // uncrossed: 99 < 100.1
    await h.waitFor(() => books(h, "BTCUSDT").at(-1)?.sequence === 503, 5000, "uncrossing update");
    okx.sendRaw(frame("update", 503, 504, [["100.2", "1"]], [])); // crosses again: now an integrity break
    const [gap] = await h.waitForEvents("gap", 1);
    expect(gap).toMatchObject({ reason: "crossed_book" });
    expect(books(h, "BTCUSDT").some((event) => event.sequence === 504)).toBe(false);
  });

  test("the pipeline's resync request: counted, marked with its reason, fresh snapshot", async () => {
    const okx = startFake({ seed: 15 });
    const h = connect("L2:OKX_SWAP@BTCUSDT");
    await okx.waitForSubscriber("books", "BTC-USDT-SWAP");
    await h.waitForEvents("book_change", 1);
    const market = okx.market("BTC-USDT-SWAP");
    h.connector.resync(h.subscriptions[0]!, "overflow", "events dropped because the sink was behind");
    const [gap] = await h.waitForEvents("gap", 1);
    expect(gap).toMatchObject({ reason: "overflow", detail: "events dropped because the sink was behind", stream: "L2" });
    await h.waitFor(() => books(h, "BTCUSDT").filter((event) => event.isSnapshot).length === 2, 5000, "fresh snapshot");
    okx.step("BTC-USDT-SWAP", 20);
    await bookCaughtUp(h, "BTCUSDT", market);
    expectBookIsTruth(h, "BTCUSDT", market);
    expect(h.subscriptions[0]!.stats.resyncs).toBe(1);
  });

  test("with the hourly subscribe budget spent, a resync takes its snapshot from REST and the book stays true", async () => {
    const okx = startFake({ seed: 16 });
    const h = connect("L2:OKX_SWAP@BTCUSDT");
    await okx.waitForSubscriber("books", "BTC-USDT-SWAP");
    await h.waitForEvents("book_change", 1);
    const market = okx.market("BTC-USDT-SWAP");
    // The subscribe took 1 op; each resync (unsubscribe + subscribe) takes 2 of OKX_LIMITS.subscribeOpsPerHour.
    const affordable = Math.floor((OKX_LIMITS.subscribeOpsPerHour - 1) / 2);
    const subscription = h.subscriptions[0]!;
    for (let i = 0; i < affordable; i++) h.connector.resync(subscription, "overflow", `round ${i}`);
    await h.waitFor(() => okx.clientOps("subscribe").length === 1 + affordable, 10_000, "every affordable resubscribe");
    expect(okx.exchange.requests.some((request) => request.path === "/api/v5/market/books")).toBe(false);
    // One more: no op left in this hour, so no unsubscribe/subscribe goes out; the snapshot comes from REST.
    h.connector.resync(subscription, "overflow", "over budget");
    await h.waitFor(
      () => okx.exchange.requests.some((request) => request.path === "/api/v5/market/books"),
      5000,
      "the REST snapshot request",
    );
    expect(h.logs.some((line) => line.startsWith("warn") && line.includes("subscribe budget spent; resyncing from the REST snapshot"))).toBe(true);
    okx.step("BTC-USDT-SWAP", 30);
    await bookCaughtUp(h, "BTCUSDT", market);
    expectBookIsTruth(h, "BTCUSDT", market);
    expectSnapshotAfterEveryGap(h, "BTCUSDT");
    expect(okx.clientOps("subscribe")).toHaveLength(1 + affordable);
    expect(okx.clientOps("unsubscribe")).toHaveLength(affordable);
    expect(subscription.stats.resyncs).toBe(affordable + 1);
  });

  test.each([false, true])("an unknown or refused instrument fails alone (venue refuses whole batch: %p)", async (rejectWholeBatch) => {
    const okx = startFake({ rejectWholeBatch, instruments: [BTC_SWAP, ETH_SWAP, { instId: "AB-CUSDE-SWAP", listedOnly: true }, { instId: "ABC-USDE-SWAP", listedOnly: true }] });
    okx.refused.add("ETH-USDT-SWAP");
    okx.markets.delete("ETH-USDT-SWAP");
    const h = connect("TRADES:OKX_SWAP@BTCUSDT,TRADES:OKX_SWAP@NOPEUSDT,L2:OKX_SWAP@ETHUSDT,BBO:OKX_SWAP@ABCUSDE,L2:OKX_SWAP@BTCUSDT");
    await okx.waitForSubscriber("trades", "BTC-USDT-SWAP");
    await okx.waitForSubscriber("books", "BTC-USDT-SWAP");
    await h.waitFor(() => gaps(h).length === 3, 5000, "three subscription errors");
    const byKey = new Map(h.emitted.filter((entry) => entry.event.type === "gap").map((entry) => [entry.subscription.key, entry.event]));
    expect([...byKey.keys()].sort()).toEqual(["BBO:OKX_SWAP@ABCUSDE", "L2:OKX_SWAP@ETHUSDT", "TRADES:OKX_SWAP@NOPEUSDT"]);
    for (const gap of byKey.values()) expect(gap).toMatchObject({ reason: "subscription_error" });
    expect((byKey.get("TRADES:OKX_SWAP@NOPEUSDT") as { detail: string }).detail).toContain("unknown instrument 'NOPEUSDT'");
    expect((byKey.get("BBO:OKX_SWAP@ABCUSDE") as { detail: string }).detail).toContain("ambiguous");
    expect((byKey.get("L2:OKX_SWAP@ETHUSDT") as { detail: string }).detail).toContain("60018");
    // Never asked the venue for what the instrument list does not have.
    expect(okx.clientOps("subscribe").flatMap((frame) => frame.args).some((arg) => arg.instId?.startsWith("NOPE"))).toBe(false);
    const trade = okx.sendTrade("BTC-USDT-SWAP", { px: "50000.5", sz: "2", side: "buy" });
    const [tradeEvent] = await h.waitForEvents("trade", 1);
    expect(tradeEvent!.id).toBe(trade.tradeId);
    okx.step("BTC-USDT-SWAP", 10);
    await bookCaughtUp(h, "BTCUSDT", okx.market("BTC-USDT-SWAP"));
    expect(h.logs.filter((line) => line.startsWith("error")).length).toBe(3);
  });

  test("subscriptions are spread over connections of at most 25 arguments; liquidations share one argument", async () => {
    const instruments = Array.from({ length: 14 }, (_, i) => ({ instId: `C${i}-USDT-SWAP`, ctVal: "1", mid: 10 + i, tick: 0.01, priceDecimals: 2, sizeDecimals: 0 }));
    const okx = startFake({ instruments });
    const funding = instruments.map((_, i) => `FUNDING:OKX_SWAP@C${i}USDT`);
    const liquidations = instruments.slice(0, 3).map((_, i) => `LIQUIDATIONS:OKX_SWAP@C${i}USDT`);
    const h = connect([...funding, ...liquidations].join(","));
    for (const instrument of instruments) await okx.waitForSubscriber("mark-price", instrument.instId);
    await okx.waitForSubscriber("liquidation-orders", "SWAP");
    const connections = okx.exchange.openConnections();
    expect(connections).toHaveLength(2);
    const argsPerConnection = connections.map((connection) => connection.receivedJson().flatMap((frame) => (frame as { args: unknown[] }).args));
    expect(argsPerConnection.map((args) => args.length).sort((a, b) => a - b)).toEqual([4, 25]);
    expect(okx.subscribers("liquidation-orders", "SWAP")).toHaveLength(1);
    okx.sendLiquidation("C2-USDT-SWAP", [{ side: "buy", posSide: "short", bkPx: "12.5", sz: "7", ts: "1767225600000" }]);
    okx.sendLiquidation("C9-USDT-SWAP", [{ side: "buy", posSide: "short", bkPx: "19.5", sz: "1", ts: "1767225600000" }]);
    okx.sendMarkPrice("C13-USDT-SWAP", "23.01", "1767225600000");
    await h.waitForEvents("funding", 1, 5000, "C13USDT");
    const [liquidation] = await h.waitForEvents("liquidation", 1);
    expect(liquidation).toMatchObject({ symbol: "C2USDT", price: 12.5, amount: 7, contractValue: 1 });
    expect(h.events("liquidation")).toHaveLength(1);
  });

  test("a server close (4004) marks every subscription, reconnects, resubscribes and restarts the book", async () => {
    const okx = startFake({ seed: 16 });
    const h = connect("L2:OKX_SWAP@BTCUSDT,TRADES:OKX_SWAP@BTCUSDT");
    await okx.waitForSubscriber("books", "BTC-USDT-SWAP");
    await h.waitForEvents("book_change", 1);
    const market = okx.market("BTC-USDT-SWAP");
    okx.step("BTC-USDT-SWAP", 10);
    await bookCaughtUp(h, "BTCUSDT", market);
    okx.closeAll(4004, "No data received in 30s");
    await h.waitFor(() => gaps(h).length === 2, 5000, "two gaps");
    for (const gap of gaps(h)) {
      expect(gap).toMatchObject({ reason: "disconnect" });
      expect((gap as { detail: string }).detail).toContain("4004");
    }
    await okx.exchange.waitForConnection(2);
    await h.waitFor(() => books(h, "BTCUSDT").filter((event) => event.isSnapshot).length === 2, 5000, "fresh snapshot");
    okx.step("BTC-USDT-SWAP", 20);
    await bookCaughtUp(h, "BTCUSDT", market);
    expectBookIsTruth(h, "BTCUSDT", market);
    expectSnapshotAfterEveryGap(h, "BTCUSDT");
    for (const subscription of h.subscriptions) expect(subscription.stats.reconnects).toBe(1);
    const trade = okx.sendTrade("BTC-USDT-SWAP", {});
    await h.waitFor(() => h.events("trade").some((event) => event.id === trade.tradeId), 5000, "trade after reconnect");
  });

  test("an exchange that stops answering is detected as stale, then the collector recovers", async () => {
    const okx = startFake({ seed: 17 });
    const h = connect("TRADES:OKX_SWAP@BTCUSDT", "OKX_SWAP", { XTRADER_OKX_SWAP_KEEPALIVE_MS: "100", XTRADER_OKX_SWAP_STALE_MS: "400" });
    const first = await okx.waitForSubscriber("trades", "BTC-USDT-SWAP");
    okx.silent = true;
    const [gap] = await h.waitForEvents("gap", 1, 5000);
    expect(gap).toMatchObject({ reason: "stale", stream: "TRADES" });
    expect(first.received).toContain("ping");
    okx.silent = false;
    await okx.exchange.waitFor(() => okx.subscribers("trades", "BTC-USDT-SWAP").find((connection) => connection !== first), 5000, "resubscribed");
    const trade = okx.sendTrade("BTC-USDT-SWAP", {});
    await h.waitFor(() => h.events("trade").some((event) => event.id === trade.tradeId), 5000, "trade after recovery");
  });

  test("text ping keeps a quiet connection open (OKX closes connections silent for 30 s)", async () => {
    const okx = startFake({ idleCloseMs: 400 });
    connect("TRADES:OKX_SWAP@BTCUSDT", "OKX_SWAP", { XTRADER_OKX_SWAP_KEEPALIVE_MS: "100", XTRADER_OKX_SWAP_STALE_MS: "2000" });
    const connection = await okx.waitForSubscriber("trades", "BTC-USDT-SWAP");
    await Bun.sleep(1200);
    expect(connection.open).toBe(true);
    expect(okx.exchange.connections).toHaveLength(1);
    expect(connection.received.filter((text) => text === "ping").length).toBeGreaterThanOrEqual(3);
  });

  test("the idle close happens without keepalive (the fake enforces OKX's rule)", async () => {
    const okx = startFake({ idleCloseMs: 300 });
    const h = connect("TRADES:OKX_SWAP@BTCUSDT", "OKX_SWAP", { XTRADER_OKX_SWAP_KEEPALIVE_MS: "5000", XTRADER_OKX_SWAP_STALE_MS: "10000" });
    const connection = await okx.waitForSubscriber("trades", "BTC-USDT-SWAP");
    await okx.exchange.waitFor(() => !connection.open, 3000, "idle close");
    expect(connection.closeCode).toBe(4004);
    const [gap] = await h.waitForEvents("gap", 1);
    expect(gap!.detail).toContain("4004");
  });

  test("a service-upgrade notice (64008) moves to a new connection", async () => {
    const okx = startFake();
    const h = connect("TRADES:OKX_SWAP@BTCUSDT");
    const first = await okx.waitForSubscriber("trades", "BTC-USDT-SWAP");
    okx.sendUpgradeNotice();
    await okx.exchange.waitFor(() => okx.subscribers("trades", "BTC-USDT-SWAP").find((connection) => connection !== first), 5000, "new connection");
    expect(first.open).toBe(false);
    expect(gaps(h)).toHaveLength(1);
    expect(h.logs.some((line) => line.includes("64008"))).toBe(true);
  });

  test("malformed JSON and unknown messages are counted and skipped; the feed goes on", async () => {
    const okx = startFake();
    const h = connect("TRADES:OKX_SWAP@BTCUSDT,BBO:OKX_SWAP@BTCUSDT");
    await okx.waitForSubscriber("trades", "BTC-USDT-SWAP");
    await okx.waitForSubscriber("bbo-tbt", "BTC-USDT-SWAP");
    okx.sendRaw("{not json");
    okx.sendRaw({ event: "mystery" });
    okx.sendRaw({ arg: { channel: "trades", instId: "BTC-USDT-SWAP" }, data: [{ instId: "BTC-USDT-SWAP", tradeId: "1", px: "abc", sz: "1", side: "buy", ts: "1" }] });
    const trade = okx.sendTrade("BTC-USDT-SWAP", {});
    await h.waitFor(() => h.events("trade").some((event) => event.id === trade.tradeId), 5000, "trade after garbage");
    expect(h.events("trade")).toHaveLength(1);
    const [trades, bbo] = h.subscriptions;
    expect(trades!.stats.parseErrors).toBe(3);
    expect(bbo!.stats.parseErrors).toBe(2);
    expect(gaps(h)).toEqual([]);
  });

  test("a hostile price or size in any channel is a counted, logged parse error and never a row; a book resyncs", async () => {
    // Texts Number() reads as a number (or 0) that are not OKX decimals, or not a valid price or size.
    const HOSTILE = ["Infinity", "1e309", "1e2", "0x10", " 5", "5 ", "", "-1", "NaN", "9".repeat(400)];
    const okx = startFake();
    const h = connect(
      "TRADES:OKX_SWAP@BTCUSDT,BBO:OKX_SWAP@BTCUSDT,FUNDING:OKX_SWAP@BTCUSDT,LIQUIDATIONS:OKX_SWAP@BTCUSDT,L2:OKX_SWAP@BTCUSDT",
    );
    for (const [channel, key] of [["trades", "BTC-USDT-SWAP"], ["bbo-tbt", "BTC-USDT-SWAP"], ["funding-rate", "BTC-USDT-SWAP"], ["mark-price", "BTC-USDT-SWAP"], ["liquidation-orders", "SWAP"], ["books", "BTC-USDT-SWAP"]]) {
      await okx.waitForSubscriber(channel!, key!);
    }
    const market = okx.market("BTC-USDT-SWAP");
    await h.waitForEvents("book_change", 1);
    const bboBefore = h.events("bbo").length;
    const ts = () => String(Date.now());
    const sent = { trades: 0, bbo: 0, funding: 0, liquidations: 0, l2: 0 };
    for (const value of HOSTILE) {
      okx.sendTrade("BTC-USDT-SWAP", { px: value });
      okx.sendTrade("BTC-USDT-SWAP", { sz: value });
      sent.trades += 2;
      okx.sendBbo("BTC-USDT-SWAP", [value, "1"], ["60000.1", "1"]);
      okx.sendBbo("BTC-USDT-SWAP", ["59999.9", "1"], ["60000.1", value]);
      sent.bbo += 2;
      okx.sendMarkPrice("BTC-USDT-SWAP", value, ts());
      sent.funding++;
      if (value !== "-1" && value !== "") {
        okx.sendFundingRate("BTC-USDT-SWAP", { fundingRate: value, fundingTime: ts(), nextFundingTime: ts(), ts: ts() });
        sent.funding++;
      }
      okx.sendLiquidation("BTC-USDT-SWAP", [{ side: "sell", posSide: "long", bkPx: value, sz: "1", ts: ts() }]);
      okx.sendLiquidation("BTC-USDT-SWAP", [{ side: "sell", posSide: "long", bkPx: "59000.5", sz: value, ts: ts() }]);
      sent.liquidations += 2;
      for (const level of [[value, "1"], ["60000.5", value]] as const) {
        const snapshots = books(h, "BTCUSDT").filter((event) => event.isSnapshot).length;
        okx.sendRawLevelUpdate("BTC-USDT-SWAP", { asks: [[level[0], level[1]]] });
        sent.l2++;
        await h.waitFor(() => books(h, "BTCUSDT").filter((event) => event.isSnapshot).length > snapshots, 5000, "a fresh snapshot");
      }
    }
    const trade = okx.sendTrade("BTC-USDT-SWAP", {});
    okx.sendMarkPrice("BTC-USDT-SWAP", "60000.2", ts());
    okx.sendLiquidation("BTC-USDT-SWAP", [{ side: "sell", posSide: "long", bkPx: "59000.5", sz: "2", ts: ts() }]);
    okx.step("BTC-USDT-SWAP", 5, 0);
    await h.waitFor(() => h.events("liquidation").length > 0 && h.events("funding").length > 0 && h.events("trade").length > 0, 5000, "the good messages");
    await bookCaughtUp(h, "BTCUSDT", market);
    expect(h.events("trade").map((event) => event.id)).toEqual([trade.tradeId]);
    expect(h.events("funding")).toHaveLength(1);
    expect(h.events("liquidation")).toHaveLength(1);
    for (const bbo of h.events("bbo").slice(bboBefore)) expect(bbo.bidPrice > 0 && bbo.askPrice > 0 && Number.isFinite(bbo.bidAmount + bbo.askAmount)).toBe(true);
    const stats = (stream: string) => h.subscriptions.find((sub) => sub.stream === stream)!.stats;
    expect(stats("TRADES").parseErrors).toBe(sent.trades);
    expect(stats("BBO").parseErrors).toBe(sent.bbo);
    expect(stats("FUNDING").parseErrors).toBe(sent.funding);
    expect(stats("LIQUIDATIONS").parseErrors).toBe(sent.liquidations);
    expect(stats("L2").parseErrors).toBe(sent.l2);
    expect(gaps(h).map((gap) => gap.reason)).toEqual(Array(sent.l2).fill("sequence"));
    expectSnapshotAfterEveryGap(h, "BTCUSDT");
    expectBookIsTruth(h, "BTCUSDT", market);
    // One warning per fault episode and subscription, not one per message.
    expect(h.logs.filter((line) => line.startsWith("warn:") && line.includes("malformed trade"))).toHaveLength(1);
  });

  test("the instrument list is retried until it loads", async () => {
    const okx = startFake();
    okx.failRest("/api/v5/public/instruments", [500, 429]);
    const h = connect("TRADES:OKX_SWAP@BTCUSDT");
    await okx.waitForSubscriber("trades", "BTC-USDT-SWAP", 10_000);
    expect(okx.exchange.requests.filter((request) => request.path === "/api/v5/public/instruments")).toHaveLength(3);
    expect(h.logs.some((line) => line.includes("cannot load the instrument list") && line.includes("HTTP 500"))).toBe(true);
  });

  test("nothing is emitted after stop", async () => {
    const okx = startFake();
    const h = connect("TRADES:OKX_SWAP@BTCUSDT,L2:OKX_SWAP@BTCUSDT");
    await okx.waitForSubscriber("books", "BTC-USDT-SWAP");
    await h.waitForEvents("book_change", 1);
    await h.stop();
    const count = h.emitted.length;
    okx.sendTrade("BTC-USDT-SWAP", {});
    okx.step("BTC-USDT-SWAP", 5);
    await Bun.sleep(200);
    expect(h.emitted).toHaveLength(count);
  });
});

describe("OKX_SPOT against the fake exchange", () => {
  test("trades, BBO and L2 are normalized field by field (spot: base currency)", async () => {
    const okx = startFake({ seed: 21 });
    const h = connect("TRADES:OKX_SPOT@ETHEUR,BBO:OKX_SPOT@BTC-USDT,L2:OKX_SPOT@BTCUSDT", "OKX_SPOT");
    await okx.waitForSubscriber("trades", "ETH-EUR");
    await okx.waitForSubscriber("bbo-tbt", "BTC-USDT");
    await okx.waitForSubscriber("books", "BTC-USDT");
    const market = okx.market("BTC-USDT");
    const [snapshot] = await h.waitForEvents("book_change", 1);
    const frame: BookUpdateFrame["data"][0] = market.sentBooks[0]!.data[0];
    expect(snapshot).toEqual({
      type: "book_change",
      exchange: "OKX_SPOT",
      symbol: "BTCUSDT",
      timestamp: micros(frame.ts),
      localTimestamp: snapshot!.localTimestamp,
      amountUnit: "base",
      contractValue: 1,
      isSnapshot: true,
      sequence: frame.seqId,
      bids: flat(frame.bids),
      asks: flat(frame.asks),
    } satisfies BookChange);

    const trade = okx.sendTrade("ETH-EUR", { px: "2801.37", sz: "0.015000", side: "buy", ts: "1767225603000" });
    const [tradeEvent] = await h.waitForEvents("trade", 1);
    expect(tradeEvent).toEqual({
      type: "trade",
      exchange: "OKX_SPOT",
      symbol: "ETHEUR",
      timestamp: 1767225603000000,
      localTimestamp: tradeEvent!.localTimestamp,
      amountUnit: "base",
      contractValue: 1,
      id: trade.tradeId,
      side: "buy",
      price: 2801.37,
      amount: 0.015,
    } satisfies Trade);

    const bboCount = h.events("bbo").length;
    okx.sendBbo("BTC-USDT", ["49999.9", "0.51000000"], undefined, "1767225604000");
    const bbo = (await h.waitForEvents("bbo", bboCount + 1)).at(-1)!;
    expect(bbo).toMatchObject({ exchange: "OKX_SPOT", symbol: "BTC-USDT", timestamp: 1767225604000000, bidPrice: 49999.9, bidAmount: 0.51 });
    expect(bbo.askPrice).toBeNaN();
    expect(bbo.askAmount).toBeNaN();

    okx.step("BTC-USDT", 300);
    await bookCaughtUp(h, "BTCUSDT", market);
    expectBookIsTruth(h, "BTCUSDT", market);
    expect(gaps(h)).toEqual([]);
    expect(okx.exchange.requests.filter((request) => request.path === "/api/v5/public/instruments")[0]!.query.get("instType")).toBe("SPOT");
  });
});

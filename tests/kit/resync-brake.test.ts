import { afterEach, describe, expect, test } from "bun:test";
import { RESYNC_BRAKE, ResyncBrake, resyncBrakeFromEnv } from "../../src/connectors/kit/resync-brake.ts";
import { rebuildBook, startConnector, type ConnectorHarness } from "../support/connector-harness.ts";
import { FakeBinanceFutures } from "../support/fake-binance.ts";
import { FakeDeribit } from "../support/fake-deribit.ts";
import { FakeOkx } from "../support/fake-okx.ts";

describe("ResyncBrake", () => {
  test("the first resyncs of a streak go at once, later ones wait twice as long each time, up to the cap", () => {
    let now = 0;
    const brake = new ResyncBrake(RESYNC_BRAKE, () => now);
    const delays: number[] = [];
    for (let i = 0; i < 12; i++) {
      const delay = brake.next();
      delays.push(delay);
      now += delay + 10; // the next resync follows right after the snapshot it waited for
    }
    expect(delays).toEqual([0, 0, 0, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000]);
    // At most a handful a minute once braked.
    expect(delays.slice(9).every((delay) => delay === RESYNC_BRAKE.maxMs)).toBe(true);
  });

  test("a book that went a calm period without a resync starts a new streak", () => {
    let now = 0;
    const brake = new ResyncBrake(RESYNC_BRAKE, () => now);
    for (let i = 0; i < 5; i++) now += brake.next();
    expect(brake.next()).toBe(4_000);
    now += 4_000 + RESYNC_BRAKE.calmAfterMs;
    expect(brake.next()).toBe(0);
    expect(brake.count).toBe(1);
  });

  test("the environment tunes the delays; unusable values keep the defaults", () => {
    expect(resyncBrakeFromEnv({ XTRADER_RESYNC_BACKOFF_MIN_MS: "100", XTRADER_RESYNC_BACKOFF_MAX_MS: "400" })).toMatchObject({
      initialMs: 100,
      maxMs: 400,
    });
    expect(resyncBrakeFromEnv({ XTRADER_RESYNC_BACKOFF_MIN_MS: "soon", XTRADER_RESYNC_BACKOFF_MAX_MS: "1e99" })).toEqual(RESYNC_BRAKE);
  });
});

let fake: { stop(): Promise<void> } | undefined;
let harness: ConnectorHarness | undefined;

afterEach(async () => {
  await harness?.stop();
  await fake?.stop();
  harness = undefined;
  fake = undefined;
});

describe("a REST snapshot that is stale every time (Binance futures)", () => {
  test("is refetched with growing delays, counted and logged, and the book syncs whole once a snapshot fits", async () => {
    const venue = (fake = FakeBinanceFutures.start());
    // Every snapshot is taken mid-event and that event never reaches the client: the first delta the
    // connector sees always starts after the snapshot (the REST cache lagging the stream).
    const stale = {
      before: () => venue.market().randomUpdate(venue.random),
      after: () => {
        venue.dropDepthEvent();
        venue.depthStep();
      },
    };
    venue.beforeSnapshot = stale.before;
    venue.afterSnapshot = stale.after;
    const h = (harness = startConnector("L2:BINANCE_FUTURES@BTCUSDT", { ...venue.env, XTRADER_RESYNC_BACKOFF_MIN_MS: "100", XTRADER_RESYNC_BACKOFF_MAX_MS: "60000" }));
    const l2 = h.subscriptions[0]!;
    const staleUntil = performance.now() + 1_200;
    while (performance.now() < staleUntil) {
      venue.depthStep();
      await Bun.sleep(5);
    }
    const servedWhileStale = venue.snapshotsServed.length;
    // The first sync, 3 refetches at once, then after 100, 200 and 400 ms (the next one waits 800 ms):
    // without the brake the connector refetched as fast as the venue answered (thousands in seconds).
    expect(servedWhileStale).toBeGreaterThanOrEqual(5);
    expect(servedWhileStale).toBeLessThanOrEqual(8);
    // Nothing is written while the book syncs: its deltas are buffered, so nothing is missing yet.
    expect(h.events("book_change")).toEqual([]);
    expect(h.events("gap")).toEqual([]);
    // Every refetch after the first three was held back; the next one may be waiting.
    expect(l2.stats.resyncsDelayed).toBeGreaterThanOrEqual(servedWhileStale - 4);
    expect(l2.stats.resyncsDelayed).toBeLessThanOrEqual(servedWhileStale - 3);
    expect(h.logs.some((line) => line.includes("predates the stream") && line.includes("resync 4 in a row"))).toBe(true);

    venue.beforeSnapshot = undefined;
    venue.afterSnapshot = undefined;
    const deadline = performance.now() + 5_000;
    while (h.events("book_change").length < 2 && performance.now() < deadline) {
      venue.depthStep();
      await Bun.sleep(5);
    }
    const books = h.events("book_change");
    expect(books[0]!.isSnapshot).toBe(true);
    expect(books[0]!.sequence).toBe(venue.snapshotsServed.at(-1)!.lastUpdateId);
    expect(books.slice(1).every((book) => !book.isSnapshot)).toBe(true);
    const market = venue.market();
    venue.depthStep();
    await h.waitFor(() => h.events("book_change").at(-1)!.sequence === market.lastEventFinalId, 5_000, "caught up");
    const rebuilt = rebuildBook(h.events("book_change"));
    expect({ bids: rebuilt.bids.sorted(), asks: rebuilt.asks.sorted() }).toEqual(market.trueBook());
    expect(h.events("gap")).toEqual([]);
  });
});

/**
 * A book that breaks again as soon as it is live (here: an update crossing it each time): the first
 * resyncs go at once, later ones wait, and each break still writes its gap row before a fresh snapshot.
 */
async function breakRepeatedly(h: ConnectorHarness, symbol: string, breaks: number, breakBook: () => void, step: () => void): Promise<void> {
  for (let i = 0; i < breaks; i++) {
    await h.waitFor(() => h.events("book_change", symbol).filter((book) => book.isSnapshot).length === i + 1, 5_000, `snapshot ${i + 1}`);
    step();
    breakBook();
    await h.waitFor(() => h.events("gap", symbol).length === i + 1, 5_000, `gap ${i + 1}`);
  }
  await h.waitFor(() => h.events("book_change", symbol).filter((book) => book.isSnapshot).length === breaks + 1, 5_000, "the last snapshot");
}

function expectBraked(h: ConnectorHarness, symbol: string, breaks: number, reason: string): void {
  const l2 = h.subscriptions.find((subscription) => subscription.stream === "L2")!;
  const marks = h.events("gap", symbol);
  expect(marks.map((gap) => gap.reason)).toEqual(Array(breaks).fill(reason));
  expect(l2.stats.resyncs).toBe(breaks);
  // Three at once, the other ones after a wait.
  expect(l2.stats.resyncsDelayed).toBe(breaks - 3);
  // One log line for the episode (FaultLog), at its first held-back resync.
  expect(h.logs.filter((line) => line.includes("in a row"))).toHaveLength(1);
  expect(h.logs.some((line) => line.includes("resync 4 in a row"))).toBe(true);
  let awaitingSnapshot = false;
  for (const event of h.emitted.map((entry) => entry.event)) {
    if (event.type === "gap") awaitingSnapshot = true;
    if (event.type === "book_change") {
      if (awaitingSnapshot) expect(event.isSnapshot).toBe(true);
      awaitingSnapshot = false;
    }
  }
}

const BRAKE_ENV = { XTRADER_RESYNC_BACKOFF_MIN_MS: "20", XTRADER_RESYNC_BACKOFF_MAX_MS: "60000" };

describe("a book that keeps breaking", () => {
  test("OKX: resubscribes of the fourth and later resyncs are held back, counted and logged", async () => {
    const okx = FakeOkx.start({ instruments: [{ instId: "BTC-USDT-SWAP", ctVal: "0.01", mid: 50_000, tick: 0.1, priceDecimals: 1, sizeDecimals: 0 }], seed: 7 });
    fake = okx;
    const h = (harness = startConnector("L2:OKX_SWAP@BTCUSDT", { ...okx.env("OKX_SWAP"), XTRADER_OKX_SWAP_SNAPSHOT_WAIT_MS: "200", ...BRAKE_ENV }));
    await breakRepeatedly(h, "BTCUSDT", 6, () => okx.sendCrossedUpdate("BTC-USDT-SWAP"), () => okx.step("BTC-USDT-SWAP", 3));
    expectBraked(h, "BTCUSDT", 6, "crossed_book");
  });

  test("Deribit: resubscribes of the fourth and later resyncs are held back, counted and logged", async () => {
    const deribit = FakeDeribit.start();
    fake = deribit;
    const h = (harness = startConnector("L2:DERIBIT@ETH-PERPETUAL", deribit.env(BRAKE_ENV)));
    await deribit.waitForSubscribed("book.ETH-PERPETUAL.100ms");
    await breakRepeatedly(h, "ETH-PERPETUAL", 6, () => deribit.sendCrossingBookChange("ETH-PERPETUAL"), () => {
      for (let i = 0; i < 3; i++) deribit.bookStep("ETH-PERPETUAL");
    });
    expectBraked(h, "ETH-PERPETUAL", 6, "crossed_book");
  });

  test("Binance futures: snapshots of the fourth and later resyncs are held back, counted and logged", async () => {
    const binance = FakeBinanceFutures.start();
    fake = binance;
    const h = (harness = startConnector("L2:BINANCE_FUTURES@BTCUSDT", { ...binance.env, ...BRAKE_ENV }));
    const driving = setInterval(() => binance.depthStep(), 5);
    try {
      await breakRepeatedly(h, "BTCUSDT", 6, () => binance.sendCrossedDepth(), () => binance.depthStep());
    } finally {
      clearInterval(driving);
    }
    const l2 = h.subscriptions[0]!;
    expect(h.events("gap").map((gap) => gap.reason)).toEqual(Array(6).fill("crossed_book"));
    // (A snapshot that predates the stream is fetched again, also through the brake, so possibly more.)
    expect(l2.stats.resyncsDelayed).toBeGreaterThanOrEqual(3);
    expect(h.logs.filter((line) => line.includes("in a row"))).toHaveLength(1);
  });
});

import { afterEach, describe, expect, test } from "bun:test";
import { RESYNC_BRAKE, ResyncBrake, resyncBrakeFromEnv } from "../../src/connectors/kit/resync-brake.ts";
import { rebuildBook, startConnector, type ConnectorHarness } from "../support/connector-harness.ts";
import { FakeBinanceFutures } from "../support/fake-binance.ts";

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

let fake: FakeBinanceFutures | undefined;
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
    // 3 at once, then after 100, 200 and 400 ms (the next one waits 800 ms): without the brake the
    // connector refetched as fast as the venue answered (thousands in seconds).
    expect(servedWhileStale).toBeGreaterThanOrEqual(4);
    expect(servedWhileStale).toBeLessThanOrEqual(7);
    // Nothing is written while the book syncs: its deltas are buffered, so nothing is missing yet.
    expect(h.events("book_change")).toEqual([]);
    expect(h.events("gap")).toEqual([]);
    // Every fetch after the first three was held back; the next one may be waiting.
    expect(l2.stats.resyncsDelayed).toBeGreaterThanOrEqual(servedWhileStale - 3);
    expect(l2.stats.resyncsDelayed).toBeLessThanOrEqual(servedWhileStale - 2);
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

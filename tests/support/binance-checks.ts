/**
 * What the Binance connector tests (futures and spot, on fake-binance.ts and fake-binance-spot.ts) share:
 * driving the fake market until a condition holds, and comparing a book rebuilt from the emitted rows
 * with the fake's true book.
 */
import { afterEach, expect } from "bun:test";
import type { BookChange, MarketEvent } from "../../src/core/events.ts";
import type { Subscription } from "../../src/core/subscriptions.ts";
import { rebuildBook, startConnector, type ConnectorHarness } from "./connector-harness.ts";
import type { FakeBinanceFutures, FakeBinanceOptions } from "./fake-binance.ts";

/** A fake venue and a connector started against it per test, both stopped after each test. */
export function binanceSession<F extends FakeBinanceFutures>(startFake: (options: FakeBinanceOptions) => F) {
  const running: Array<{ stop(): Promise<void> }> = [];
  afterEach(async () => {
    for (const item of running.splice(0).reverse()) await item.stop();
  });
  return (subscriptions: string, options: FakeBinanceOptions & { env?: Record<string, string> } = {}) => {
    const fake = startFake(options);
    running.push(fake);
    const h = startConnector(subscriptions, { ...fake.env, ...options.env });
    running.push(h);
    return { fake, h };
  };
}

export function subscriptionOf(h: ConnectorHarness, key: string): Subscription {
  const found = h.subscriptions.find((entry) => entry.key === key);
  if (!found) throw new Error(`no subscription ${key}`);
  return found;
}

export function books(h: ConnectorHarness, symbol = "BTCUSDT"): BookChange[] {
  return h.events("book_change", symbol);
}

/** Keeps the fake market moving (depth on every symbol, optionally trades) until `check` yields. */
export async function driveUntil<T>(
  venue: FakeBinanceFutures,
  check: () => T | undefined | false,
  options: { symbols?: readonly string[]; trades?: boolean; timeoutMs?: number } = {},
): Promise<T> {
  const deadline = performance.now() + (options.timeoutMs ?? 5000);
  for (;;) {
    const value = check();
    if (value !== undefined && value !== false) return value;
    if (performance.now() > deadline) throw new Error("timed out while driving the fake market");
    for (const symbol of options.symbols ?? ["BTCUSDT"]) {
      venue.depthStep(symbol);
      if (options.trades) venue.trade(symbol);
    }
    await Bun.sleep(5);
  }
}

/** Waits until every generated depth event of `symbol` has been emitted, then compares with the truth. */
export async function expectBookMatchesTruth(h: ConnectorHarness, venue: FakeBinanceFutures, symbol = "BTCUSDT") {
  const market = venue.market(symbol);
  await h.waitFor(() => (books(h, symbol).at(-1)?.sequence ?? -1) === market.lastEventFinalId, 5000, `${symbol} caught up`);
  const rebuilt = rebuildBook(h.events("book_change"), symbol);
  expect({ bids: rebuilt.bids.sorted(), asks: rebuilt.asks.sorted() }).toEqual(market.trueBook());
  expect(rebuilt.isCrossed()).toBe(false);
}

/** Events of one subscription in emission order. */
export function emittedFor(h: ConnectorHarness, key: string): MarketEvent[] {
  return h.emitted.filter((entry) => entry.subscription.key === key).map((entry) => entry.event);
}

/** After every gap of an L2 subscription, the next book event is a snapshot. */
export function expectSnapshotAfterEveryGap(events: readonly MarketEvent[]) {
  let awaitingSnapshot = false;
  for (const event of events) {
    if (event.type === "gap") awaitingSnapshot = true;
    if (event.type === "book_change") {
      if (awaitingSnapshot) expect(event.isSnapshot).toBe(true);
      awaitingSnapshot = false;
    }
  }
}

/** Books of `symbols` synced, then `batches` × 50 random steps on each; every rebuilt book equals the truth. */
export async function driveRandomMarket(h: ConnectorHarness, venue: FakeBinanceFutures, symbols: readonly string[], batches: number) {
  await driveUntil(venue, () => symbols.every((symbol) => books(h, symbol).length > 0), { symbols });
  for (let batch = 0; batch < batches; batch++) {
    venue.randomSteps(50, symbols);
    await Bun.sleep(1);
  }
  for (const symbol of symbols) await expectBookMatchesTruth(h, venue, symbol);
}

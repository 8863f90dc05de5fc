/**
 * A book side (src/core/order-book.ts: a ladder of amounts over the learned tick grid in front of a hash
 * table) must behave exactly like a Map<price, amount> with amount 0 meaning "remove", whatever the
 * prices: on a tick grid, finer than the learned step, off the grid, spread wide, drifting out of the
 * window, huge, tiny, negative, -0 and NaN. Sizes and best prices are checked every few changes, all
 * levels regularly.
 */
import { expect, test } from "bun:test";
import { BookSide, OrderBook } from "../src/core/order-book.ts";
import { seededRandom } from "./support/random.ts";

function check(side: BookSide, model: Map<number, number>, isBid: boolean): void {
  expect(side.size).toBe(model.size);
  const prices = [...model.keys()].filter((price) => !Number.isNaN(price));
  const best = prices.length === 0 ? (model.has(Number.NaN) ? Number.NaN : undefined) : isBid ? Math.max(...prices) : Math.min(...prices);
  expect(side.best()).toBe(best);
}

function run(seed: number, price: (random: () => number, step: number) => number, operations: number): void {
  const random = seededRandom(seed);
  for (const isBid of [true, false]) {
    const side = new BookSide(isBid);
    const model = new Map<number, number>();
    for (let i = 0; i < operations; i++) {
      const p = price(random, i);
      const amount = random() < 0.3 ? 0 : Math.floor(random() * 1000) / 10;
      side.set(p, amount);
      if (amount === 0) model.delete(p);
      else model.set(p, amount);
      if (i % 7 === 0) check(side, model, isBid);
      if (i % 1_000 === 500) expect(side.levels).toEqual(model);
      if (i % 997 === 996) {
        // A snapshot in between: the table starts over (and learns again).
        side.clear();
        model.clear();
      }
    }
    check(side, model, isBid);
    expect(side.levels).toEqual(model);
  }
}

test("prices on a tick grid near the top, as venues send them", () => {
  run(1, (random) => Number((65_000 - Math.floor(random() * random() * 400) * 0.1).toFixed(1)), 20_000);
  run(2, (random) => 130_000 + Math.floor(random() * 300) * 0.5, 20_000);
  run(3, (random) => Number((0.00001234 + Math.floor(random() * 500) * 1e-8).toFixed(8)), 20_000);
});

test("prices finer than the step learned from the first levels, and grids far wider than the table", () => {
  // The first levels are whole numbers; then come prices with 6 decimals between them.
  run(4, (random, i) => (i < 40 ? 100 + (i % 20) : Number((100 + random() * 20).toFixed(6))), 20_000);
  // A grid spread over millions of steps.
  run(5, (random) => Math.floor(random() * 5_000_000) * 0.01, 20_000);
});

test("a market drifting far beyond the window, both ways, with stray off-grid prices", () => {
  let mid = 650_000;
  run(8, (random, i) => {
    // Up for 8,000 operations, then down: thousands of ticks each way.
    mid += i % 16_000 < 8_000 ? (random() < 0.6 ? 1 : 0) : random() < 0.6 ? -1 : 0;
    const ticks = mid - 40 + Math.floor(random() * random() * 200);
    const price = random() < 0.02 ? Number(((ticks + 0.5) / 10).toFixed(2)) : Number((ticks / 10).toFixed(1));
    return price;
  }, 32_000);
  // A 0.5 tick (not a power of ten), with prices on a finer 0.1 grid now and then.
  run(9, (random) => (random() < 0.05 ? Number((64_990 + Math.floor(random() * 200) * 0.1).toFixed(1)) : 64_950 + Math.floor(random() * 300) * 0.5), 20_000);
  // The first levels are two ticks apart (0.2), the later ones on every tick (0.1).
  run(10, (random, i) => Number((100 + (i < 64 ? 2 * Math.floor(random() * 100) : Math.floor(random() * 200)) * 0.1).toFixed(1)), 20_000);
});

test("removing the best level again and again walks down the book", () => {
  for (const isBid of [true, false]) {
    const side = new BookSide(isBid);
    const model = new Map<number, number>();
    const random = seededRandom(11);
    for (let i = 0; i < 3_000; i++) {
      const price = Number((1_000 + (isBid ? -1 : 1) * Math.floor(random() * 5_000) * 0.01).toFixed(2));
      side.set(price, 1 + i);
      model.set(price, 1 + i);
    }
    while (model.size > 0) {
      const best = side.best()!;
      check(side, model, isBid);
      side.set(best, 0);
      model.delete(best);
      // Now and then a level comes back just behind the best.
      if (model.size % 5 === 0 && model.size > 0) {
        const behind = Number((best + (isBid ? -0.01 : 0.01)).toFixed(2));
        side.set(behind, 7);
        model.set(behind, 7);
      }
    }
    check(side, model, isBid);
    expect(side.best()).toBeUndefined();
  }
});

test("huge, tiny, negative, -0 and NaN prices", () => {
  const odd = [1e300, -1e300, 5e-324, -5e-324, 0, -0, Number.NaN, 1e15 + 0.5, -42.25, 2 ** 53, Number.MAX_VALUE, Number.MIN_VALUE];
  run(6, (random) => odd[Math.floor(random() * odd.length)]!, 5_000);
  run(7, (random) => (random() < 0.5 ? odd[Math.floor(random() * odd.length)]! : 100 + Math.floor(random() * 50)), 20_000);
});

test("the crossed-book check follows the best prices", () => {
  const book = new OrderBook();
  const bids: number[] = [];
  const asks: number[] = [];
  for (let i = 1; i <= 100; i++) bids.push(100 - i * 0.5, 1), asks.push(100 + i * 0.5, 1);
  book.apply(bids, asks, true);
  expect(book.isCrossed()).toBe(false);
  book.apply([100.5, 2], []);
  expect(book.isCrossed()).toBe(true);
  book.apply([100.5, 0], [100.5, 0]);
  expect(book.isCrossed()).toBe(false);
  expect(book.bids.best()).toBe(99.5);
  expect(book.asks.best()).toBe(101);
});

/**
 * The order book's hash table (src/core/order-book.ts) must behave exactly like a Map<price, amount>
 * with amount 0 meaning "remove", whatever the prices: on a tick grid (where it learns the step and keeps
 * neighbouring prices in neighbouring slots), finer than the learned step, spread wide, huge, tiny,
 * negative, -0 and NaN. Best prices are checked after every change.
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

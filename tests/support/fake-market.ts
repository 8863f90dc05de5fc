/**
 * The TRUE order book of one instrument on a fake venue, with the seeded random changes every venue fake
 * sends. Keys are prices in the venue's own unit (ticks, tick indexes or prices); values are the venue's
 * sizes (integers or strings). A venue fake extends it with its wire shapes and sequence numbers; tests and
 * the fault suite compare what the collector rebuilt with this truth.
 */
export type BookSide = "bid" | "ask";

/** One elementary change of a level: `size` undefined removes it; `existed` says whether it was there. */
export interface LevelChange<V> {
  readonly side: BookSide;
  readonly key: number;
  readonly size: V | undefined;
  readonly existed: boolean;
}

export interface TrueBookOptions<V> {
  /** Key distance between neighbouring levels (1 for tick indexes, the price step for price keys). */
  readonly step: number;
  /** A random size of a level. */
  readonly size: (random: () => number) => V;
  /** New levels are placed within this many steps behind the other side's best price. */
  readonly reach: number;
  /** A level as the numbers a collector stores: [price, amount] (default: the key and size themselves). */
  readonly numbers?: (key: number, size: V) => [number, number];
}

export class TrueBook<V> {
  readonly bids = new Map<number, V>();
  readonly asks = new Map<number, V>();
  /** Where new levels go when both sides are empty (the mid of the first fill). */
  protected anchor = 0;

  constructor(
    protected readonly random: () => number,
    private readonly book: TrueBookOptions<V>,
  ) {}

  /** Fills `levels` levels per side around `mid`, each present with probability `density`. */
  protected fill(mid: number, levels: number, density = 1): void {
    this.anchor = mid;
    for (let i = 1; i <= levels; i++) {
      if (this.random() < density) this.bids.set(this.key(mid - i * this.book.step), this.book.size(this.random));
      if (this.random() < density) this.asks.set(this.key(mid + i * this.book.step), this.book.size(this.random));
    }
  }

  /** A random size of a level. */
  randomSize(random = this.random): V {
    return this.book.size(random);
  }

  side(side: BookSide): Map<number, V> {
    return side === "bid" ? this.bids : this.asks;
  }

  bestBid(): number | undefined {
    return this.bids.size === 0 ? undefined : Math.max(...this.bids.keys());
  }

  bestAsk(): number | undefined {
    return this.asks.size === 0 ? undefined : Math.min(...this.asks.keys());
  }

  /** A side's [key, size] entries best first (bids descending, asks ascending), at most `limit`. */
  sorted(side: BookSide, limit = Infinity): Array<[number, V]> {
    return [...this.side(side)].sort((a, b) => (side === "bid" ? b[0] - a[0] : a[0] - b[0])).slice(0, limit);
  }

  /** The true book as [price, amount] numbers, best first: what a rebuilt book must equal. */
  truth(): { bids: Array<[number, number]>; asks: Array<[number, number]> } {
    const numbers = this.book.numbers ?? ((key: number, size: V): [number, number] => [key, Number(size)]);
    return { bids: this.sorted("bid").map(([key, size]) => numbers(key, size)), asks: this.sorted("ask").map(([key, size]) => numbers(key, size)) };
  }

  /** Sets (or, with size undefined, removes) a level of the truth. */
  set(side: BookSide, key: number, size: V | undefined): LevelChange<V> {
    const book = this.side(side);
    const existed = book.has(key);
    if (size === undefined) book.delete(key);
    else book.set(key, size);
    return { side, key, size, existed };
  }

  /** One random change, applied to the truth; it never crosses the book (new levels stay behind the other side's best). */
  randomChange(random = this.random): LevelChange<V> {
    const side: BookSide = random() < 0.5 ? "bid" : "ask";
    const book = this.side(side);
    const roll = random();
    if (book.size > 3 && roll < 0.3) return this.set(side, this.pick(book, random), undefined);
    if (book.size > 0 && roll < 0.65) return this.set(side, this.pick(book, random), this.book.size(random));
    const [bid, ask, step] = [this.bestBid(), this.bestAsk(), this.book.step];
    const steps = 1 + Math.floor(random() * this.book.reach);
    const key = side === "bid" ? (ask ?? (bid ?? this.anchor) + step) - steps * step : (bid ?? (ask ?? this.anchor) - step) + steps * step;
    return this.set(side, this.key(key), this.book.size(random));
  }

  /** 1..4 random changes (or `count`), applied to the truth in order. */
  randomChanges(count = 1 + Math.floor(this.random() * 4)): Array<LevelChange<V>> {
    return Array.from({ length: count }, () => this.randomChange());
  }

  /** Keys that are prices are kept on the decimal grid (no binary drift after steps). */
  private key(value: number): number {
    return Math.round(value * 1e8) / 1e8;
  }

  private pick(book: Map<number, V>, random: () => number): number {
    const index = Math.floor(random() * book.size);
    let i = 0;
    for (const key of book.keys()) if (i++ === index) return key;
    throw new Error("empty side");
  }
}

/** Sequence numbers that grow by random, non-consecutive steps of 1..`maxStep` (as venues' update ids do). */
export function nextSequence(current: number, random: () => number, maxStep: number): number {
  return current + 1 + Math.floor(random() * maxStep);
}

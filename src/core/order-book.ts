/**
 * A price-level book used by connectors to check integrity (a crossed book means a missed update) and
 * by tests to rebuild the book from emitted events. Levels are applied straight from the flattened
 * [price, amount, ...] arrays of a BookChange: no per-level objects.
 *
 * Each side is an open-addressing hash table over two Float64Arrays (price → amount): a JS Map keyed by
 * non-integer doubles costs several times more per update, and books are updated on every delta.
 * The best price per side is cached; only deleting the best level costs a scan.
 */
const HASH_SCRATCH = new Float64Array(1);
const HASH_WORDS = new Uint32Array(HASH_SCRATCH.buffer);
const EMPTY = Number.NaN;

export class BookSide {
  /** Slot keys (EMPTY when free) and amounts; the capacity is a power of two, kept under 50 % full. */
  private prices = new Float64Array(16).fill(EMPTY);
  private amounts = new Float64Array(16);
  private count = 0;
  /** Amount stored under the price NaN (a Map would accept that key too). */
  private nanAmount: number | undefined;
  private bestPrice = Number.NaN;

  constructor(private readonly isBid: boolean) {}

  get size(): number {
    return this.count + (this.nanAmount === undefined ? 0 : 1);
  }

  /** The levels as a Map (a copy; tests and diagnostics, not the hot path). */
  get levels(): Map<number, number> {
    const map = new Map<number, number>();
    for (let i = 0; i < this.prices.length; i++) if (this.prices[i] === this.prices[i]) map.set(this.prices[i]!, this.amounts[i]!);
    if (this.nanAmount !== undefined) map.set(Number.NaN, this.nanAmount);
    return map;
  }

  clear(): void {
    if (this.prices.length > 1024) {
      this.prices = new Float64Array(16);
      this.amounts = new Float64Array(16);
    }
    this.prices.fill(EMPTY);
    this.count = 0;
    this.nanAmount = undefined;
    this.bestPrice = Number.NaN;
  }

  set(price: number, amount: number): void {
    if (price !== price) {
      this.nanAmount = amount === 0 ? undefined : amount;
      return;
    }
    // -0 and 0 are one key, as in a Map.
    const key = price + 0;
    if (amount === 0) {
      if (this.remove(key) && key === this.bestPrice) this.bestPrice = Number.NaN;
      return;
    }
    this.insert(key, amount);
    if (!Number.isNaN(this.bestPrice) && (this.isBid ? key > this.bestPrice : key < this.bestPrice)) {
      this.bestPrice = key;
    } else if (this.count === 1) {
      this.bestPrice = key;
    }
  }

  /** Best price, or undefined for an empty side. */
  best(): number | undefined {
    if (this.count === 0) return this.nanAmount === undefined ? undefined : Number.NaN;
    if (Number.isNaN(this.bestPrice)) {
      let best = this.isBid ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
      const prices = this.prices;
      for (let i = 0; i < prices.length; i++) {
        const price = prices[i]!;
        if (price === price && (this.isBid ? price > best : price < best)) best = price;
      }
      this.bestPrice = best;
    }
    return this.bestPrice;
  }

  /** Levels sorted best first, as [price, amount] pairs (tests and checksums; not for the hot path). */
  sorted(depth = Number.POSITIVE_INFINITY): Array<[number, number]> {
    const entries = [...this.levels.entries()].sort((a, b) => (this.isBid ? b[0] - a[0] : a[0] - b[0]));
    return entries.slice(0, depth);
  }

  private slotOf(key: number, mask: number): number {
    HASH_SCRATCH[0] = key;
    return Math.imul(HASH_WORDS[0]! ^ Math.imul(HASH_WORDS[1]!, 0x85ebca6b), 0x9e3779b1) >>> 0 & mask;
  }

  private insert(key: number, amount: number): void {
    const prices = this.prices;
    const mask = prices.length - 1;
    let slot = this.slotOf(key, mask);
    for (;;) {
      const found = prices[slot]!;
      if (found === key) {
        this.amounts[slot] = amount;
        return;
      }
      if (found !== found) break;
      slot = (slot + 1) & mask;
    }
    prices[slot] = key;
    this.amounts[slot] = amount;
    if (++this.count * 2 > prices.length) this.resize(prices.length * 2);
  }

  /** Linear probing with backward-shift deletion: no tombstones, so lookups stay short. */
  private remove(key: number): boolean {
    const prices = this.prices;
    const amounts = this.amounts;
    const mask = prices.length - 1;
    let slot = this.slotOf(key, mask);
    for (;;) {
      const found = prices[slot]!;
      if (found !== found) return false;
      if (found === key) break;
      slot = (slot + 1) & mask;
    }
    let hole = slot;
    let next = (hole + 1) & mask;
    for (;;) {
      const price = prices[next]!;
      if (price !== price) break;
      const home = this.slotOf(price, mask);
      // Move the entry back unless its home lies cyclically in (hole, next].
      if (((next - home) & mask) >= ((next - hole) & mask)) {
        prices[hole] = price;
        amounts[hole] = amounts[next]!;
        hole = next;
      }
      next = (next + 1) & mask;
    }
    prices[hole] = EMPTY;
    this.count--;
    return true;
  }

  private resize(capacity: number): void {
    const oldPrices = this.prices;
    const oldAmounts = this.amounts;
    this.prices = new Float64Array(capacity).fill(EMPTY);
    this.amounts = new Float64Array(capacity);
    this.count = 0;
    for (let i = 0; i < oldPrices.length; i++) {
      const price = oldPrices[i]!;
      if (price === price) this.insert(price, oldAmounts[i]!);
    }
  }
}

export class OrderBook {
  readonly bids = new BookSide(true);
  readonly asks = new BookSide(false);

  clear(): void {
    this.bids.clear();
    this.asks.clear();
  }

  /** Applies flattened [price, amount, ...] arrays; a snapshot clears first. */
  apply(bids: readonly number[], asks: readonly number[], isSnapshot = false): void {
    if (isSnapshot) this.clear();
    for (let i = 0; i < bids.length; i += 2) this.bids.set(bids[i]!, bids[i + 1]!);
    for (let i = 0; i < asks.length; i += 2) this.asks.set(asks[i]!, asks[i + 1]!);
  }

  /** True when the best bid is at or above the best ask: an update was missed. */
  isCrossed(): boolean {
    const bid = this.bids.best();
    const ask = this.asks.best();
    return bid !== undefined && ask !== undefined && bid >= ask;
  }
}

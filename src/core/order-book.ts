/**
 * A price-level book used by connectors to check integrity (a crossed book means a missed update) and
 * by tests to rebuild the book from emitted events. Levels are applied straight from the flattened
 * [price, amount, ...] arrays of a BookChange: no per-level objects.
 *
 * The best price per side is cached; only deleting the best level costs a scan.
 */
export class BookSide {
  readonly levels = new Map<number, number>();
  private bestPrice = Number.NaN;

  constructor(private readonly isBid: boolean) {}

  get size(): number {
    return this.levels.size;
  }

  clear(): void {
    this.levels.clear();
    this.bestPrice = Number.NaN;
  }

  set(price: number, amount: number): void {
    if (amount === 0) {
      if (this.levels.delete(price) && price === this.bestPrice) this.bestPrice = Number.NaN;
      return;
    }
    this.levels.set(price, amount);
    if (!Number.isNaN(this.bestPrice) && (this.isBid ? price > this.bestPrice : price < this.bestPrice)) {
      this.bestPrice = price;
    } else if (this.levels.size === 1) {
      this.bestPrice = price;
    }
  }

  /** Best price, or undefined for an empty side. */
  best(): number | undefined {
    if (this.levels.size === 0) return undefined;
    if (Number.isNaN(this.bestPrice)) {
      let best = this.isBid ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
      for (const price of this.levels.keys()) if (this.isBid ? price > best : price < best) best = price;
      this.bestPrice = best;
    }
    return this.bestPrice;
  }

  /** Levels sorted best first, as [price, amount] pairs (tests and checksums; not for the hot path). */
  sorted(depth = Number.POSITIVE_INFINITY): Array<[number, number]> {
    const entries = [...this.levels.entries()].sort((a, b) => (this.isBid ? b[0] - a[0] : a[0] - b[0]));
    return entries.slice(0, depth);
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

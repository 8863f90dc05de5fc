/**
 * A price-level book used by connectors to check integrity (a crossed book means a missed update) and
 * by tests to rebuild the book from emitted events. Levels are applied straight from the flattened
 * [price, amount, ...] arrays of a BookChange: no per-level objects.
 *
 * Each side is an open-addressing hash table over one Float64Array of [price, amount] slots: a JS Map keyed by
 * non-integer doubles costs several times more per update, and books are updated on every delta.
 * The best price per side is cached; only deleting the best level costs a scan.
 */
const HASH_SCRATCH = new Float64Array(1);
const HASH_WORDS = new Uint32Array(HASH_SCRATCH.buffer);
const EMPTY = Number.NaN;

export class BookSide {
  /**
   * Slots of [price, amount] side by side (one cache line per probe): price EMPTY when free. The capacity
   * (slots) is a power of two, kept under 50 % full.
   */
  private table = BookSide.emptyTable(16);
  private count = 0;
  /** Amount stored under the price NaN (a Map would accept that key too). */
  private nanAmount: number | undefined;
  private bestPrice = Number.NaN;
  /**
   * 1 / the price step learned from the first levels (0: not learned, or given up): with it, neighbouring
   * prices get neighbouring slots, so the busy top of the book stays in a few cache lines. Any function of
   * the price is a correct hash; this one is dropped for the mixing hash when probes grow long.
   */
  private scale = 0;
  private learned = false;

  constructor(private readonly isBid: boolean) {}

  private static emptyTable(capacity: number): Float64Array {
    const table = new Float64Array(capacity * 2);
    for (let i = 0; i < table.length; i += 2) table[i] = EMPTY;
    return table;
  }

  get size(): number {
    return this.count + (this.nanAmount === undefined ? 0 : 1);
  }

  /** The levels as a Map (a copy; tests and diagnostics, not the hot path). */
  get levels(): Map<number, number> {
    const map = new Map<number, number>();
    const table = this.table;
    for (let i = 0; i < table.length; i += 2) if (table[i] === table[i]) map.set(table[i]!, table[i + 1]!);
    if (this.nanAmount !== undefined) map.set(Number.NaN, this.nanAmount);
    return map;
  }

  clear(): void {
    if (this.table.length > 2048) {
      this.table = BookSide.emptyTable(16);
    } else {
      const table = this.table;
      for (let i = 0; i < table.length; i += 2) table[i] = EMPTY;
    }
    this.count = 0;
    this.nanAmount = undefined;
    this.bestPrice = Number.NaN;
    this.scale = 0;
    this.learned = false;
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
      const table = this.table;
      let best = this.isBid ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
      if (this.isBid) {
        for (let i = 0; i < table.length; i += 2) {
          const price = table[i]!;
          if (price > best) best = price;
        }
      } else {
        for (let i = 0; i < table.length; i += 2) {
          const price = table[i]!;
          if (price < best) best = price;
        }
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

  /** Home slot of a price (`mask` = capacity - 1). */
  private slotOf(key: number, mask: number): number {
    // Two slots per step: a book dense in steps still leaves every other slot free, so probes (and the
    // backward shift of a removal) stop at once.
    if (this.scale !== 0) return (Math.floor(key * this.scale) << 1) & mask;
    HASH_SCRATCH[0] = key;
    // The high bits must reach the slot: prices on coarse ticks (0.5, 1) have all-zero low words, and a
    // product's low bits depend only on the factors' low bits (that clustered them into few slots).
    let h = HASH_WORDS[0]! ^ Math.imul(HASH_WORDS[1]!, 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 16), 0x9e3779b1);
    return (h ^ (h >>> 15)) & mask;
  }

  private insert(key: number, amount: number): void {
    const table = this.table;
    const mask = (table.length >> 1) - 1;
    let slot = this.slotOf(key, mask);
    let probes = 0;
    for (;;) {
      const found = table[slot * 2]!;
      if (found === key) {
        table[slot * 2 + 1] = amount;
        return;
      }
      if (found !== found) break;
      slot = (slot + 1) & mask;
      probes++;
    }
    table[slot * 2] = key;
    table[slot * 2 + 1] = amount;
    if (++this.count * 4 > table.length) this.resize(table.length);
    else if (probes > 24 && this.scale !== 0) {
      // Prices finer than the learned step, or spread too wide for it: back to the mixing hash.
      this.scale = 0;
      this.resize(table.length >> 1);
    } else if (!this.learned && this.count >= 16) this.learnStep();
  }

  /** Learns the price step (smallest gap between the levels so far) for the locality-keeping hash. */
  private learnStep(): void {
    this.learned = true;
    const prices: number[] = [];
    const table = this.table;
    for (let i = 0; i < table.length; i += 2) if (table[i] === table[i]) prices.push(table[i]!);
    prices.sort((a, b) => a - b);
    let step = Number.POSITIVE_INFINITY;
    for (let i = 1; i < prices.length; i++) step = Math.min(step, prices[i]! - prices[i - 1]!);
    const widest = Math.max(Math.abs(prices[0]!), Math.abs(prices[prices.length - 1]!));
    const scale = 1 / step;
    // Only where price × scale stays a well-behaved int32 (ToInt32 of huge values loses the low bits).
    if (!(step > 0) || !Number.isFinite(scale) || !(widest * scale < 2 ** 29)) return;
    this.scale = scale;
    this.resize(table.length >> 1);
  }

  /** Linear probing with backward-shift deletion: no tombstones, so lookups stay short. */
  private remove(key: number): boolean {
    const table = this.table;
    const mask = (table.length >> 1) - 1;
    let slot = this.slotOf(key, mask);
    for (;;) {
      const found = table[slot * 2]!;
      if (found !== found) return false;
      if (found === key) break;
      slot = (slot + 1) & mask;
    }
    let hole = slot;
    let next = (hole + 1) & mask;
    for (;;) {
      const price = table[next * 2]!;
      if (price !== price) break;
      const home = this.slotOf(price, mask);
      // Move the entry back unless its home lies cyclically in (hole, next].
      if (((next - home) & mask) >= ((next - hole) & mask)) {
        table[hole * 2] = price;
        table[hole * 2 + 1] = table[next * 2 + 1]!;
        hole = next;
      }
      next = (next + 1) & mask;
    }
    table[hole * 2] = EMPTY;
    this.count--;
    return true;
  }

  private resize(capacity: number): void {
    const old = this.table;
    this.table = BookSide.emptyTable(capacity);
    this.count = 0;
    for (let i = 0; i < old.length; i += 2) {
      const price = old[i]!;
      if (price === price) this.insert(price, old[i + 1]!);
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

/**
 * A price-level book used by connectors to check integrity (a crossed book means a missed update) and
 * by tests to rebuild the book from emitted events. Levels are applied straight from the flattened
 * [price, amount, ...] arrays of a BookChange: no per-level objects.
 *
 * Each side (BookSide) keeps the levels on its learned tick grid near the top in a ladder: a Float64Array
 * of amounts indexed by price step, 8 bytes per step, so the busy top of a book sits in a few cache lines
 * (with hundreds of books updated in turn, cache misses are what the book costs). Every other level goes to
 * an open-addressing hash table over one Float64Array of [price, amount] slots (HashLevels): a JS Map keyed
 * by non-integer doubles costs several times more per update. Best prices are kept up to date; deleting
 * the best level costs a short scan of the ladder (or a scan of the hash table for levels held there).
 */
const HASH_SCRATCH = new Float64Array(1);
const HASH_WORDS = new Uint32Array(HASH_SCRATCH.buffer);
const EMPTY = Number.NaN;

/**
 * The general store of one side: a Map<price, amount> as an open-addressing hash table (any price,
 * including NaN, -0, huge and off-grid ones), with its best price cached.
 */
class HashLevels {
  /**
   * Slots of [price, amount] side by side (one cache line per probe): price EMPTY when free. The capacity
   * (slots) is a power of two, kept under 50 % full.
   */
  private table = HashLevels.emptyTable(16);
  /** Levels held, not counting the NaN price. */
  count = 0;
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

  /** Appends every level (the NaN price included) to `prices` and `amounts`. */
  collect(prices: number[], amounts: number[]): void {
    const table = this.table;
    for (let i = 0; i < table.length; i += 2) {
      if (table[i] === table[i]) prices.push(table[i]!), amounts.push(table[i + 1]!);
    }
    if (this.nanAmount !== undefined) prices.push(Number.NaN), amounts.push(this.nanAmount);
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
      this.table = HashLevels.emptyTable(16);
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
    this.table = HashLevels.emptyTable(capacity);
    this.count = 0;
    for (let i = 0; i < old.length; i += 2) {
      const price = old[i]!;
      if (price === price) this.insert(price, old[i + 1]!);
    }
  }
}

/** Smallest and largest ladder (prices per side held by direct index): 4 KiB to 64 KiB of amounts. */
const LADDER_MIN = 512;
const LADDER_MAX = 8192;
/** Best levels the grid is learned from (and that must all lie on it). */
const GRID_SAMPLE = 32;
const NO_LADDER = new Float64Array(0);

/**
 * One side of a book: a map price → amount (amount 0 removes the level), with the best price.
 *
 * Venues quote on a tick grid and most updates hit the few dozen steps near the top, from many books in
 * turn, so what costs is cache misses. Once a side holds 16 levels it learns the grid (prices k / `grid`
 * for integers k) and keeps a window of `ladder.length` consecutive steps as a plain array of amounts
 * (0 = no level), indexed by k - `base`: 8 bytes per step, no probing, and the next best after removing
 * the best is a short scan. A price is held there only when it lies exactly on the grid (k / grid === price,
 * so the price is recovered bit for bit) and inside the window; everything else (off-grid, outside the
 * window, NaN) goes to a general hash table. When many updates miss the window (the market moved, the
 * book grew), the grid and window are chosen again around the current best.
 */
export class BookSide {
  private readonly rest: HashLevels;
  /** Amounts by step k - base; 0 = no level. */
  private ladder = NO_LADDER;
  /** Steps per unit of price (0: no ladder); prices held in the ladder are exactly k / grid. */
  private grid = 0;
  private base = 0;
  private ladderCount = 0;
  /** Index of the best level in the ladder (bids: highest, asks: lowest); meaningful while ladderCount > 0. */
  private top = 0;
  /** Levels that went to the hash table since the window was last placed. */
  private misses = 0;
  /** A grid was looked for since the last clear (and none fitted, while grid is 0). */
  private learned = false;

  constructor(private readonly isBid: boolean) {
    this.rest = new HashLevels(isBid);
  }

  get size(): number {
    return this.ladderCount + this.rest.size;
  }

  /** The levels as a Map (a copy; tests and diagnostics, not the hot path). */
  get levels(): Map<number, number> {
    const map = this.rest.levels;
    const ladder = this.ladder;
    for (let i = 0; i < ladder.length; i++) if (ladder[i] !== 0) map.set((this.base + i) / this.grid, ladder[i]!);
    return map;
  }

  clear(): void {
    if (this.ladderCount > 0) this.ladder.fill(0);
    this.ladderCount = 0;
    this.grid = 0;
    this.misses = 0;
    this.learned = false;
    this.rest.clear();
  }

  set(price: number, amount: number): void {
    const grid = this.grid;
    if (grid !== 0) {
      const k = Math.round(price * grid);
      const i = k - this.base;
      // NaN and infinite prices fail the range test; -0 and 0 share a step (one key, as in a Map).
      if (i >= 0 && i < this.ladder.length && k / grid === price) {
        this.setStep(i, amount);
        return;
      }
    }
    this.rest.set(price, amount);
    if (grid !== 0) {
      if (++this.misses > 64 + this.rest.count) this.checkWindow();
    } else if (!this.learned && this.rest.count >= 16) {
      this.learned = true;
      this.rebuild();
    }
  }

  /** Best price, or undefined for an empty side. */
  best(): number | undefined {
    if (this.ladderCount === 0) return this.rest.best();
    const fromLadder = (this.base + this.top) / this.grid;
    if (this.rest.count === 0) return fromLadder;
    const fromRest = this.rest.best()!;
    return this.isBid ? (fromRest > fromLadder ? fromRest : fromLadder) : fromRest < fromLadder ? fromRest : fromLadder;
  }

  /** Levels sorted best first, as [price, amount] pairs (tests and checksums; not for the hot path). */
  sorted(depth = Number.POSITIVE_INFINITY): Array<[number, number]> {
    const entries = [...this.levels.entries()].sort((a, b) => (this.isBid ? b[0] - a[0] : a[0] - b[0]));
    return entries.slice(0, depth);
  }

  private setStep(i: number, amount: number): void {
    const ladder = this.ladder;
    const held = ladder[i]!;
    if (amount === 0) {
      if (held === 0) return;
      ladder[i] = 0;
      if (--this.ladderCount !== 0 && i === this.top) {
        // The best went: the next one is the nearest held step on the far side (there is one).
        let j = i;
        if (this.isBid) while (ladder[--j] === 0);
        else while (ladder[++j] === 0);
        this.top = j;
      }
      return;
    }
    ladder[i] = amount;
    if (held !== 0) return;
    if (this.ladderCount++ === 0 || (this.isBid ? i > this.top : i < this.top)) this.top = i;
  }

  /** Many misses: place the window again if the best is near its edge or the book outgrew it. */
  private checkWindow(): void {
    this.misses = 0;
    const best = this.best();
    const grid = this.grid;
    const width = this.ladder.length;
    const k = best === undefined ? Number.NaN : Math.round(best * grid);
    const i = k - this.base;
    const margin = width >> 3;
    const wanted = ladderWidth(this.size);
    if (!(i >= margin && i < width - margin) || k / grid !== best || wanted > width) this.rebuild();
  }

  /** Learns the grid from the best levels and places a window of steps below (bids) or above (asks) the best. */
  private rebuild(): void {
    this.misses = 0;
    const prices: number[] = [];
    const amounts: number[] = [];
    this.rest.collect(prices, amounts);
    const ladder = this.ladder;
    for (let i = 0; i < ladder.length; i++) {
      if (ladder[i] !== 0) prices.push((this.base + i) / this.grid), amounts.push(ladder[i]!);
    }
    const grid = learnGrid(prices, this.isBid);
    if (grid === 0 && this.grid === 0) return; // nothing moves: everything stays in the hash table
    this.rest.clear();
    if (this.ladderCount > 0) ladder.fill(0);
    this.ladderCount = 0;
    this.grid = grid;
    if (grid !== 0) {
      let best = this.isBid ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
      for (const price of prices) if (this.isBid ? price > best : price < best) best = price;
      const width = ladderWidth(prices.length);
      if (this.ladder.length !== width) this.ladder = new Float64Array(width);
      const top = Math.round(best * grid);
      this.base = this.isBid ? top - width + (width >> 2) : top - (width >> 2);
    } else {
      this.ladder = NO_LADDER;
    }
    for (let n = 0; n < prices.length; n++) {
      const price = prices[n]!;
      const k = Math.round(price * grid);
      const i = k - this.base;
      if (grid !== 0 && i >= 0 && i < this.ladder.length && k / grid === price) this.setStep(i, amounts[n]!);
      else this.rest.set(price, amounts[n]!);
    }
  }
}

function ladderWidth(levels: number): number {
  let width = LADDER_MIN;
  while (width < 2 * levels && width < LADDER_MAX) width *= 2;
  return width;
}

/**
 * Steps per unit of price on which all of the best GRID_SAMPLE levels lie (k / grid === price), or 0.
 * Tried: 1 / the smallest gap between them (a 0.5 tick gives 2), then powers of ten (decimal ticks).
 * Steps must stay exact integers for every held price (|price| × grid well below 2^53).
 */
function learnGrid(prices: readonly number[], isBid: boolean): number {
  const numeric = prices.filter((price) => Number.isFinite(price));
  if (numeric.length < 16) return 0;
  numeric.sort((a, b) => (isBid ? b - a : a - b));
  const sample = numeric.slice(0, GRID_SAMPLE);
  let gap = Number.POSITIVE_INFINITY;
  for (let i = 1; i < sample.length; i++) gap = Math.min(gap, Math.abs(sample[i]! - sample[i - 1]!));
  const widest = Math.max(Math.abs(sample[0]!), Math.abs(sample[sample.length - 1]!));
  const candidates: number[] = [];
  if (gap > 0 && gap < 1) {
    const inverse = Math.round(1 / gap);
    if (Math.abs(inverse * gap - 1) < 1e-6) candidates.push(inverse);
  }
  for (let power = 1; power <= 1e12; power *= 10) candidates.push(power);
  for (const grid of candidates) {
    if (!(widest * grid < 2 ** 50)) continue;
    if (sample.every((price) => Math.round(price * grid) / grid === price)) return grid;
  }
  return 0;
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

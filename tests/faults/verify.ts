/**
 * The checks of the fault suite: what xtrader wrote against what the fake venues sent (venues.ts).
 * Each returns a list of problems (empty = good) so a failing scenario says exactly what is wrong.
 *
 * - trades: every trade delivered before the cut-off is stored exactly once with its price and amount;
 *   none is stored twice and none that was never sent; a trade may be missing only where an `overflow`
 *   gap row of its subscription marks the hole (the pipeline dropped it, loudly), or an `output_lost` one
 *   (its file was deleted under the sink);
 * - L2: replaying the rows per instrument (a snapshot resets, deltas apply) gives the venue's true book at
 *   every stored sequence number, the book is never crossed, no delta comes before the first snapshot,
 *   and after every L2 gap row the next stored message is a snapshot;
 * - timestamps: per instrument, trades' exchange and receive times never go back; within the deltas that
 *   follow one snapshot, neither do the book's;
 * - BBO: never crossed; Binance's rows are exactly bookTicker frames that were sent;
 * - funding and liquidations: every message delivered is stored exactly once as the row it must become
 *   (Deribit's liquidations: one row per liquidated side of a trade).
 */
import { bookKey, fundingKey, liquidationKey, type Truth } from "./venues.ts";
import type { Output, Row } from "./xtrader.ts";

const MAX_REPORTED = 8;

class Problems {
  readonly list: string[] = [];
  private readonly counts = new Map<string, number>();

  /** Adds a problem; at most MAX_REPORTED per kind are spelled out, the rest are counted. */
  add(kind: string, message: string): void {
    const count = (this.counts.get(kind) ?? 0) + 1;
    this.counts.set(kind, count);
    if (count <= MAX_REPORTED) this.list.push(`${kind}: ${message}`);
  }

  finish(): string[] {
    for (const [kind, count] of this.counts) if (count > MAX_REPORTED) this.list.push(`${kind}: ... ${count - MAX_REPORTED} more`);
    return this.list;
  }
}

const keyOf = (row: { exchange: unknown; symbol: unknown }) => `${row.exchange}|${row.symbol}`;

function groupBy<T>(items: readonly T[], key: (item: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    let list = out.get(k);
    if (!list) out.set(k, (list = []));
    list.push(item);
  }
  return out;
}

export interface TradeCheckOptions {
  /** Trades sent at or after this send order may be missing (the run was stopped or killed then). */
  readonly cutoff?: number;
  /** Trades of these exchange|symbol keys are not subscribed and must not appear. */
  readonly ignore?: (exchange: string, symbol: string) => boolean;
}

export function checkTrades(output: Output, truth: Truth, options: TradeCheckOptions = {}): string[] {
  const problems = new Problems();
  const sentById = new Map(truth.trades.map((trade) => [`${trade.exchange}|${trade.symbol}|${trade.id}`, trade]));
  const stored = new Map<string, Row>();
  for (const row of output.trades) {
    const id = `${keyOf(row)}|${row.id}`;
    if (stored.has(id)) problems.add("duplicate trade", id);
    stored.set(id, row);
    const sent = sentById.get(id);
    if (!sent) {
      problems.add("invented trade", `${id} was never sent`);
      continue;
    }
    if (sent.delivered === 0) problems.add("trade never delivered", `${id} was sent while nobody was subscribed`);
    if (row.price !== sent.price || row.amount !== sent.amount) {
      problems.add("trade fields", `${id} stored ${row.price} x ${row.amount}, sent ${sent.price} x ${sent.amount}`);
    }
  }
  // Holes are allowed only where a gap of that subscription saying rows were dropped (overflow) or lost
  // after they were stored (output_lost: the output directory was deleted) sits between the neighbours.
  const overflowGaps = groupBy(
    output.gaps.filter((gap) => gap.stream === "TRADES" && (gap.reason === "overflow" || gap.reason === "output_lost")),
    keyOf,
  );
  const bySubscription = groupBy(truth.trades, (trade) => `${trade.exchange}|${trade.symbol}`);
  for (const [key, trades] of bySubscription) {
    const [exchange, symbol] = key.split("|") as [string, string];
    if (options.ignore?.(exchange, symbol)) continue;
    let previousStored: Row | undefined;
    let missing: string[] = [];
    const flush = (next: Row | undefined) => {
      if (missing.length === 0) return;
      const from = previousStored?.local_timestamp ?? Number.NEGATIVE_INFINITY;
      const to = next?.local_timestamp ?? Number.POSITIVE_INFINITY;
      const marked = (overflowGaps.get(key) ?? []).some((gap) => gap.local_timestamp >= from && gap.local_timestamp <= to);
      if (!marked) problems.add("missing trade", `${key}: ${missing.length} trade(s) delivered but not stored and no overflow/output_lost gap marks them (first ${missing[0]})`);
      missing = [];
    };
    for (const trade of trades) {
      const row = stored.get(`${key}|${trade.id}`);
      if (row) {
        flush(row);
        previousStored = row;
      } else if (trade.delivered > 0 && trade.order < (options.cutoff ?? Number.POSITIVE_INFINITY)) {
        missing.push(trade.id);
      }
    }
    flush(undefined);
  }
  // Per instrument, exchange and receive times never go back.
  for (const [key, rows] of groupBy(output.trades, keyOf)) {
    for (let i = 1; i < rows.length; i++) {
      if (rows[i]!.timestamp < rows[i - 1]!.timestamp) problems.add("trade time went back", `${key} at row ${i}`);
      if (rows[i]!.local_timestamp < rows[i - 1]!.local_timestamp) problems.add("trade receive time went back", `${key} at row ${i}`);
    }
  }
  return problems.finish();
}

/** One stored book message: the consecutive rows of one event. */
export interface BookMessage {
  readonly isSnapshot: boolean;
  readonly sequence: number;
  readonly timestamp: number;
  readonly localTimestamp: number;
  readonly rows: Row[];
}

export function bookMessages(rows: readonly Row[]): BookMessage[] {
  const out: BookMessage[] = [];
  let current: BookMessage | undefined;
  for (const row of rows) {
    const isSnapshot = row.is_snapshot === true;
    const sequence = Number(row.sequence);
    if (
      !current ||
      current.isSnapshot !== isSnapshot ||
      current.sequence !== sequence ||
      current.localTimestamp !== row.local_timestamp ||
      current.timestamp !== row.timestamp
    ) {
      current = { isSnapshot, sequence, timestamp: row.timestamp, localTimestamp: row.local_timestamp, rows: [] };
      out.push(current);
    }
    current.rows.push(row);
  }
  return out;
}

class ReplayBook {
  readonly bids = new Map<number, number>();
  readonly asks = new Map<number, number>();

  apply(row: Row): void {
    // A snapshot without a level is one row without a side (docs/data-model.md): the clear is all it does.
    if (row.side !== "bid" && row.side !== "ask") return;
    const side = row.side === "bid" ? this.bids : this.asks;
    const price = row.price as number;
    const amount = row.amount as number;
    if (amount === 0) side.delete(price);
    else side.set(price, amount);
  }

  key(): string {
    const bids = [...this.bids].sort((a, b) => b[0] - a[0]);
    const asks = [...this.asks].sort((a, b) => a[0] - b[0]);
    return bookKey(bids, asks);
  }

  crossed(): boolean {
    if (this.bids.size === 0 || this.asks.size === 0) return false;
    return Math.max(...this.bids.keys()) >= Math.min(...this.asks.keys());
  }
}

export interface BookCheckSummary {
  readonly problems: string[];
  /** Per instrument: stored messages, snapshots, sequence points compared with the truth. */
  readonly stats: Map<string, { messages: number; snapshots: number; compared: number }>;
}

export function checkBooks(output: Output, truth: Truth): BookCheckSummary {
  const problems = new Problems();
  const stats = new Map<string, { messages: number; snapshots: number; compared: number }>();
  const gapsBySubscription = groupBy(
    output.gaps.filter((gap) => gap.stream === "L2"),
    keyOf,
  );
  for (const [key, rows] of groupBy(output.l2, keyOf)) {
    const truthBySequence = truth.books.get(key);
    const messages = bookMessages(rows);
    const stat = { messages: messages.length, snapshots: 0, compared: 0 };
    stats.set(key, stat);
    if (!truthBySequence) {
      problems.add("unknown book", `${key} was never sent`);
      continue;
    }
    const book = new ReplayBook();
    let synced = false;
    let segmentStart = 0;
    for (let i = 0; i < messages.length; i++) {
      const message = messages[i]!;
      if (message.isSnapshot) {
        stat.snapshots++;
        book.bids.clear();
        book.asks.clear();
        synced = true;
        segmentStart = i;
      } else if (!synced) {
        problems.add("delta before snapshot", `${key} sequence ${message.sequence}`);
        continue;
      } else if (i > segmentStart + 1) {
        const previous = messages[i - 1]!;
        if (message.timestamp < previous.timestamp) problems.add("book time went back", `${key} at sequence ${message.sequence}`);
        if (message.localTimestamp < previous.localTimestamp) problems.add("book receive time went back", `${key} at sequence ${message.sequence}`);
      }
      for (const row of message.rows) book.apply(row);
      if (book.crossed()) problems.add("crossed book written", `${key} at sequence ${message.sequence}`);
      const expected = truthBySequence.get(message.sequence);
      if (expected === undefined) {
        problems.add("unknown sequence", `${key} stored sequence ${message.sequence} that the venue never reached`);
        continue;
      }
      stat.compared++;
      if (book.key() !== expected) {
        problems.add("book differs from the venue", `${key} at sequence ${message.sequence}${message.isSnapshot ? " (snapshot)" : ""}: stored ${book.key().slice(0, 160)} / true ${expected.slice(0, 160)}`);
      }
    }
    // After each gap, the first message received later must be a snapshot.
    for (const gap of gapsBySubscription.get(key) ?? []) {
      const next = messages.find((message) => message.localTimestamp >= gap.local_timestamp);
      if (next && !next.isSnapshot) {
        problems.add("gap not followed by a snapshot", `${key} gap '${gap.reason}' at ${gap.local_timestamp} followed by delta ${next.sequence}`);
      }
    }
  }
  return { problems: problems.finish(), stats };
}

export function checkBbo(output: Output, truth: Truth): string[] {
  const problems = new Problems();
  for (const row of output.bbo) {
    const bid = row.bid_price as number;
    const ask = row.ask_price as number;
    if (bid > 0 && ask > 0 && bid >= ask) problems.add("crossed bbo", `${keyOf(row)} ${bid} >= ${ask}`);
    if (row.exchange === "BINANCE_FUTURES" || row.exchange === "BINANCE_SPOT") {
      // Spot's bookTicker carries no time (its row's timestamp is the receive time): the quote alone is checked.
      const time = row.exchange === "BINANCE_SPOT" ? "-" : row.timestamp;
      const key = `${row.exchange}|${time}|${bid}|${row.bid_amount}|${ask}|${row.ask_amount}`;
      if (!truth.binanceTickers.has(key)) problems.add("invented bbo", `${keyOf(row)} ${key}`);
    }
  }
  for (const [key, rows] of groupBy(output.bbo, keyOf)) {
    for (let i = 1; i < rows.length; i++) {
      if (rows[i]!.local_timestamp < rows[i - 1]!.local_timestamp) problems.add("bbo receive time went back", `${key} at row ${i}`);
    }
  }
  return problems.finish();
}

/**
 * Funding and liquidation rows: every message delivered is stored exactly once as the row it must
 * become (absent fields null), and no row was never sent.
 */
export function checkFundingAndLiquidations(output: Output, truth: Truth): string[] {
  const problems = new Problems();
  const compare = (what: string, rows: readonly Row[], sent: Truth["funding"], keyOf: (row: Row) => string) => {
    const stored = new Map<string, number>();
    for (const row of rows) stored.set(keyOf(row), (stored.get(keyOf(row)) ?? 0) + 1);
    const known = new Map(sent.map((entry) => [entry.key, entry]));
    for (const [key, count] of stored) {
      const entry = known.get(key);
      if (!entry) problems.add(`invented ${what}`, key);
      else if (entry.delivered === 0) problems.add(`${what} never delivered`, key);
      if (count > 1) problems.add(`duplicate ${what}`, `${key} stored ${count} times`);
    }
    for (const entry of sent) if (entry.delivered > 0 && !stored.has(entry.key)) problems.add(`missing ${what}`, entry.key);
  };
  compare("funding", output.funding, truth.funding, (row) => fundingKey(row));
  compare("liquidation", output.liquidations, truth.liquidations, (row) => liquidationKey(row as Row & { id: unknown; side: unknown; price: unknown; amount: unknown }));
  return problems.finish();
}

/** Gap rows of a stream (and reason) per subscription key. */
export function gapsOf(output: Output, filter: { stream?: string; reason?: string; exchange?: string }): Map<string, Row[]> {
  return groupBy(
    output.gaps.filter(
      (gap) =>
        (filter.stream === undefined || gap.stream === filter.stream) &&
        (filter.reason === undefined || gap.reason === filter.reason) &&
        (filter.exchange === undefined || gap.exchange === filter.exchange),
    ),
    (gap) => `${gap.stream}:${gap.exchange}@${gap.symbol}`,
  );
}

/**
 * Every check at once; `cutoff` as in checkTrades. Funding and liquidations are checked whenever the
 * venues sent any (their truth is empty otherwise), on both sinks.
 */
export function verifyAll(output: Output, truth: Truth, options: TradeCheckOptions = {}): string[] {
  return [
    ...checkTrades(output, truth, options),
    ...checkBooks(output, truth).problems,
    ...checkBbo(output, truth),
    ...checkFundingAndLiquidations(output, truth),
  ];
}

/** Rows per subscription key of a table, to make sure a scenario did not pass by writing nothing. */
export function countBy(rows: readonly Row[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const row of rows) out.set(keyOf(row), (out.get(keyOf(row)) ?? 0) + 1);
  return out;
}

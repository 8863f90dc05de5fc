/**
 * The book-sync engine (kit/book-sync.ts) on its own: a small id-chain policy, a fake snapshot source
 * answered by hand, and the events, gaps rows, stats and log lines that come out.
 */
import { describe, expect, test } from "bun:test";
import type { GapReason } from "../../src/core/events.ts";
import { FaultLog } from "../../src/core/fault-log.ts";
import type { Logger } from "../../src/core/log.ts";
import { OrderBook } from "../../src/core/order-book.ts";
import { SubscriptionStats } from "../../src/core/stats.ts";
import type { Subscription } from "../../src/core/subscriptions.ts";
import { BookSync, type BookSyncHost, type BookSyncRules } from "../../src/connectors/kit/book-sync.ts";
import type { SequenceVerdict } from "../../src/connectors/kit/sequence/verdict.ts";

interface Delta {
  readonly id: number;
  readonly bids: number[];
  readonly asks: number[];
  /** An in-band full book. */
  readonly snapshot?: boolean;
}

interface Snapshot {
  readonly id: number;
  readonly bids: number[];
  readonly asks: number[];
}

type Out =
  | { kind: "snapshot"; id: number; bids: number[]; asks: number[]; first?: number }
  | { kind: "delta"; id: number; bids: number[]; asks: number[] }
  | { kind: "gap"; reason: GapReason; detail: string };

/**
 * A consecutive-id policy (Coinbase's sequence_num kind): after a snapshot S the first delta must be S+1
 * (one further on means the snapshot is too old), then each the last + 1; at or below the last is stale.
 */
class TestHost implements BookSyncHost<Delta, Snapshot> {
  readonly subscription: Subscription = {
    key: "L2:TEST@BOOK",
    stream: "L2",
    exchange: "BINANCE_FUTURES",
    symbol: "BOOK",
    instrument: "BOOK",
    stats: new SubscriptionStats(),
  };
  readonly subscriptions = [this.subscription];
  readonly out: Out[] = [];
  readonly requests: number[] = [];
  readonly begun: Array<{ id: number; buffered: number }> = [];
  readonly lines: string[] = [];
  readonly faults: FaultLog;
  last: number | undefined;
  afterSnapshot = false;
  connected = true;

  constructor() {
    const record = (text: string) => this.lines.push(text);
    this.faults = new FaultLog({ warn: record, error: record, info: record, debug: record } as unknown as Logger);
  }

  judge(delta: Delta): SequenceVerdict {
    if (delta.snapshot) {
      this.last = delta.id;
      return "snapshot";
    }
    if (this.last === undefined) return "no_snapshot";
    if (delta.id <= this.last) return "stale";
    if (delta.id === this.last + 1) {
      this.last = delta.id;
      this.afterSnapshot = false;
      return "apply";
    }
    return this.afterSnapshot ? "snapshot_too_old" : "gap";
  }

  begin(snapshot: Snapshot, buffered: number): void {
    this.begun.push({ id: snapshot.id, buffered });
    this.last = snapshot.id;
    this.afterSnapshot = true;
  }

  resetSequence(): void {
    this.last = undefined;
  }

  canRequestSnapshot(): boolean {
    return this.connected;
  }

  acquireSnapshot(epoch: number): void {
    this.requests.push(epoch);
  }

  applySnapshot(book: OrderBook, snapshot: Snapshot): void {
    book.apply(snapshot.bids, snapshot.asks, true);
  }

  applyDelta(book: OrderBook, delta: Delta, isSnapshot: boolean): boolean {
    if (delta.bids.some(Number.isNaN)) return false;
    book.apply(delta.bids, delta.asks, isSnapshot);
    return true;
  }

  emitSnapshot(snapshot: Snapshot, first: Delta | undefined): void {
    this.out.push({ kind: "snapshot", id: snapshot.id, bids: snapshot.bids, asks: snapshot.asks, first: first?.id });
  }

  emitDelta(delta: Delta, isSnapshot: boolean): void {
    this.out.push(isSnapshot ? { kind: "snapshot", id: delta.id, bids: delta.bids, asks: delta.asks } : { kind: "delta", id: delta.id, bids: delta.bids, asks: delta.asks });
  }

  gap(reason: GapReason, detail: string): void {
    this.out.push({ kind: "gap", reason, detail });
  }

  describe(verdict: SequenceVerdict | "unreadable", delta: Delta): string {
    return `${verdict} at ${delta.id} after ${this.last}`;
  }

  crossedDetail(book: OrderBook, item: Delta | Snapshot): string {
    return `crossed at ${item.id}: ${book.bids.best()} >= ${book.asks.best()}`;
  }

  resyncLine(reason: GapReason, detail: string): string {
    return `resync (${reason}: ${detail})`;
  }

  brakeLine(count: number, delayMs: number, why: string | undefined): string {
    return `${why ?? "-"}; resync ${count} in a row: next in ${delayMs} ms`;
  }

  snapshotFailedDetail(why: string): string {
    return `snapshot failed: ${why}`;
  }

  /** The book rebuilt from what was emitted, as a reader of the rows would. */
  rebuilt(): { bids: Array<[number, number]>; asks: Array<[number, number]> } {
    const book = new OrderBook();
    for (const item of this.out) {
      if (item.kind === "snapshot") book.apply(item.bids, item.asks, true);
      else if (item.kind === "delta") book.apply(item.bids, item.asks);
    }
    return { bids: book.bids.sorted(), asks: book.asks.sorted() };
  }
}

const REST: BookSyncRules = {
  idle: "await_subscription",
  bufferLimit: 4,
  whenBufferFull: "drop_oldest",
  snapshotWaitsForStraddle: true,
  snapshotSource: "rest",
  toleratesCrossedSnapshot: false,
};
const IN_BAND: BookSyncRules = { idle: "judge_deltas", bufferLimit: 0, whenBufferFull: "drop_oldest", snapshotWaitsForStraddle: false, snapshotSource: "in_band", toleratesCrossedSnapshot: false };
const NO_BRAKE = { freeResyncs: 100, initialMs: 1, maxMs: 1, calmAfterMs: 60_000 };
const FAST_RETRY = { initialMs: 4, maxMs: 8, factor: 2 };

function setup(rules: BookSyncRules, brake = NO_BRAKE) {
  const host = new TestHost();
  const sync = new BookSync(host, { rules, brake, retry: FAST_RETRY, faults: host.faults, name: host.subscription.key });
  return { host, sync };
}

const delta = (id: number, bids: number[] = [100 - (id % 5), id], asks: number[] = [101 + (id % 5), id]): Delta => ({ id, bids, asks });
const snapshot = (id: number): Snapshot => ({ id, bids: [99, 1, 98, 2], asks: [102, 1, 103, 2] });

describe("BookSync with a REST snapshot", () => {
  test("deltas wait for the snapshot; the first one after it straddles it and they go out in order", () => {
    const { host, sync } = setup(REST);
    sync.delta(delta(9)); // a delta before the ack proves the subscription: the sync starts
    expect(sync.phase).toBe("awaiting");
    for (const id of [10, 11, 12]) sync.delta(delta(id));
    expect(host.out).toEqual([]);
    expect(host.requests).toEqual([0]);
    sync.snapshotArrived(0, snapshot(10));
    expect(host.begun).toEqual([{ id: 10, buffered: 4 }]);
    expect(sync.phase).toBe("live");
    expect(host.out.map((item) => `${item.kind}${"id" in item ? item.id : ""}`)).toEqual(["snapshot10", "delta11", "delta12"]);
    expect(host.out[0]).toMatchObject({ first: 11 });
    sync.delta(delta(13));
    const expected = new OrderBook();
    expected.apply(snapshot(10).bids, snapshot(10).asks, true);
    for (const id of [11, 12, 13]) expected.apply(delta(id).bids, delta(id).asks);
    expect(host.rebuilt()).toEqual({ bids: expected.bids.sorted(), asks: expected.asks.sorted() });
  });

  test("the buffer keeps the newest deltas up to its limit", () => {
    const { host, sync } = setup(REST);
    sync.start();
    for (let id = 1; id <= 10; id++) sync.delta(delta(id));
    sync.snapshotArrived(0, snapshot(6));
    expect(host.begun).toEqual([{ id: 6, buffered: 4 }]);
    expect(host.out.map((item) => item.kind === "delta" && item.id)).toEqual([false, 7, 8, 9, 10]);
  });

  test("a snapshot older than the stream is fetched again before anything is emitted", () => {
    const { host, sync } = setup(REST);
    sync.start();
    sync.delta(delta(20));
    sync.snapshotArrived(0, snapshot(10));
    expect(host.out).toEqual([]);
    expect(host.requests).toEqual([0, 0]);
    sync.delta(delta(21));
    sync.snapshotArrived(0, snapshot(20));
    expect(host.out.map((item) => item.kind)).toEqual(["snapshot", "delta"]);
    expect(host.subscription.stats.resyncs).toBe(0);
  });

  test("a gap writes its gaps row, counts a resync and rebuilds from a fresh snapshot; the delta after it is kept", () => {
    const { host, sync } = setup(REST);
    sync.start();
    sync.snapshotArrived(0, snapshot(10));
    sync.delta(delta(11));
    sync.delta(delta(14));
    expect(host.out.at(-1)).toEqual({ kind: "gap", reason: "sequence", detail: "gap at 14 after 11" });
    expect(host.subscription.stats.resyncs).toBe(1);
    expect(host.lines).toEqual(["resync (sequence: gap at 14 after 11)"]);
    expect(sync.phase).toBe("awaiting");
    expect(host.requests).toEqual([0, 0]);
    sync.delta(delta(15));
    sync.snapshotArrived(0, snapshot(13));
    expect(host.begun.at(-1)).toEqual({ id: 13, buffered: 2 });
    expect(host.out.slice(-3).map((item) => `${item.kind}${"id" in item ? item.id : ""}`)).toEqual(["snapshot13", "delta14", "delta15"]);
  });

  test("a crossed book restarts without emitting the crossing delta; a crossed snapshot is refused", () => {
    const { host, sync } = setup(REST);
    sync.start();
    sync.snapshotArrived(0, snapshot(10));
    sync.delta({ id: 11, bids: [105, 1], asks: [] });
    expect(host.out.map((item) => item.kind)).toEqual(["snapshot", "gap"]);
    expect(host.out[1]).toMatchObject({ reason: "crossed_book", detail: "crossed at 11: 105 >= 102" });
    sync.delta(delta(12));
    sync.snapshotArrived(0, { id: 11, bids: [110, 1], asks: [102, 1] });
    expect(host.out.map((item) => item.kind)).toEqual(["snapshot", "gap", "gap"]);
    expect(host.subscription.stats.resyncs).toBe(2);
  });

  test("a late answer of an older episode does nothing", () => {
    const { host, sync } = setup(REST);
    sync.start();
    sync.delta(delta(11));
    const epoch = sync.epoch;
    sync.forget(); // the connection was lost
    sync.snapshotArrived(epoch, snapshot(10));
    sync.snapshotFailed(epoch, "timeout", undefined);
    expect(host.out).toEqual([]);
    expect(sync.phase).toBe("idle");
    sync.start();
    expect(host.requests).toEqual([epoch, epoch + 1]);
    // Even while the new episode awaits a snapshot, the old answer is not taken for its own.
    sync.delta(delta(11));
    sync.snapshotArrived(epoch, snapshot(10));
    expect(host.out).toEqual([]);
    sync.snapshotArrived(epoch + 1, snapshot(10));
    expect(host.out.map((item) => item.kind)).toEqual(["snapshot", "delta"]);
  });

  test("a failing snapshot is retried with backoff and writes one snapshot_failed row per episode", async () => {
    const { host, sync } = setup(REST);
    sync.start();
    for (let i = 0; i < 3; i++) {
      sync.snapshotFailed(sync.epoch, "HTTP 503", undefined);
      const asked = host.requests.length;
      await waitFor(() => host.requests.length > asked);
    }
    expect(host.out).toEqual([{ kind: "gap", reason: "snapshot_failed", detail: "snapshot failed: HTTP 503" }]);
    sync.delta(delta(11));
    sync.snapshotArrived(sync.epoch, snapshot(10));
    expect(sync.phase).toBe("live");
    // A new episode after a success writes its own row.
    sync.restart("overflow", "queue full", false);
    sync.snapshotFailed(sync.epoch, "HTTP 500", undefined);
    expect(host.out.filter((item) => item.kind === "gap").map((item) => item.kind === "gap" && item.reason)).toEqual([
      "snapshot_failed",
      "overflow",
      "snapshot_failed",
    ]);
    sync.forget();
  });

  test("the brake holds back later resyncs of a streak, counts them and logs the streak once", async () => {
    const { host, sync } = setup(REST, { freeResyncs: 1, initialMs: 5, maxMs: 20, calmAfterMs: 60_000 });
    sync.start();
    let id = 10;
    for (let round = 0; round < 4; round++) {
      sync.snapshotArrived(sync.epoch, snapshot(id));
      sync.delta(delta(id + 1));
      const asked = host.requests.length;
      sync.delta(delta(id + 5)); // a gap
      if (round === 0) expect(host.requests.length).toBe(asked + 1); // the first resync goes at once
      else expect(host.requests.length).toBe(asked); // the later ones wait
      await waitFor(() => host.requests.length > asked);
      id += 10;
    }
    expect(host.subscription.stats.resyncs).toBe(4);
    expect(host.subscription.stats.resyncsDelayed).toBe(3);
    expect(host.out.filter((item) => item.kind === "gap")).toHaveLength(4);
    expect(host.lines.filter((line) => line.includes("in a row"))).toEqual(["-; resync 2 in a row: next in 5 ms"]);
    sync.forget();
  });

  test("a snapshot that is stale every time is refetched through the brake: growing waits, counted, logged once, no rows", async () => {
    const { host, sync } = setup(REST, { freeResyncs: 1, initialMs: 4, maxMs: 16, calmAfterMs: 60_000 });
    sync.start();
    sync.delta(delta(50));
    const waited: boolean[] = [];
    for (let i = 0; i < 5; i++) {
      const asked = host.requests.length;
      sync.snapshotArrived(sync.epoch, snapshot(40)); // the REST cache lags the stream: always before delta 50
      waited.push(host.requests.length === asked);
      await waitFor(() => host.requests.length > asked);
    }
    // The first refetch at once, every later one held back (4, 8, 16, 16 ms): a handful a minute at the cap.
    expect(waited).toEqual([false, true, true, true, true]);
    expect(host.subscription.stats.resyncsDelayed).toBe(4);
    expect(host.subscription.stats.resyncs).toBe(0);
    expect(host.out).toEqual([]);
    expect(host.lines).toEqual(["snapshot_too_old at 50 after 40; resync 2 in a row: next in 4 ms"]);
    sync.snapshotArrived(sync.epoch, snapshot(49));
    expect(host.out.map((item) => item.kind)).toEqual(["snapshot", "delta"]);
  });

  test("a restart while idle only marks the gap: the subscription starts the next sync", () => {
    const { host, sync } = setup(REST);
    sync.restart("overflow", "queue full", false);
    expect(host.out).toEqual([{ kind: "gap", reason: "overflow", detail: "queue full" }]);
    expect(host.requests).toEqual([]);
    expect(sync.phase).toBe("idle");
  });
});

describe("BookSync with an in-band snapshot", () => {
  test("deltas before the snapshot are dropped; a break asks for a fresh one each time", () => {
    const { host, sync } = setup(IN_BAND);
    sync.delta(delta(5));
    expect(host.out).toEqual([]);
    sync.delta({ id: 10, bids: [99, 1], asks: [102, 1], snapshot: true });
    sync.delta(delta(11));
    expect(sync.phase).toBe("live");
    sync.delta(delta(13));
    // Each break voids what was pending (a new epoch) and asks again.
    expect(host.requests).toEqual([1]);
    sync.delta(delta(14)); // no snapshot yet: dropped
    sync.delta({ id: 20, bids: [99, 1], asks: [102, 1], snapshot: true });
    sync.delta(delta(22));
    expect(host.requests).toEqual([1, 2]);
    expect(host.out.map((item) => item.kind)).toEqual(["snapshot", "delta", "gap", "snapshot", "gap"]);
  });

  test("unreadable levels restart the book; a break while disconnected waits for the next subscription", () => {
    const { host, sync } = setup(IN_BAND);
    sync.delta({ id: 10, bids: [99, 1], asks: [102, 1], snapshot: true });
    sync.delta({ id: 11, bids: [Number.NaN, 1], asks: [] });
    expect(host.out.at(-1)).toEqual({ kind: "gap", reason: "sequence", detail: "unreadable at 11 after 11" });
    host.connected = false;
    sync.delta({ id: 30, bids: [99, 1], asks: [102, 1], snapshot: true });
    sync.delta({ id: 31, bids: [103, 1], asks: [] });
    expect(host.requests).toEqual([1]);
    expect(sync.phase).toBe("idle");
  });

  test("a crossed snapshot is tolerated until the book uncrosses when the venue says so", () => {
    const { host, sync } = setup({ ...REST, toleratesCrossedSnapshot: true });
    sync.start();
    sync.snapshotArrived(0, { id: 10, bids: [103, 1], asks: [102, 1] });
    sync.delta({ id: 11, bids: [103, 2], asks: [] }); // still crossed: tolerated
    sync.delta({ id: 12, bids: [103, 0], asks: [] }); // uncrossed
    sync.delta({ id: 13, bids: [104, 1], asks: [] }); // crossed again: a break
    expect(host.out.map((item) => item.kind)).toEqual(["snapshot", "delta", "delta", "gap"]);
  });
});

async function waitFor(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !condition(); i++) await Bun.sleep(2);
  expect(condition()).toBe(true);
}

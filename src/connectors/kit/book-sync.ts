/**
 * The book-sync engine: the one state machine that keeps one L2 subscription's local book in step with
 * the venue, from "a delta or snapshot of this book has been routed here" to "events emitted".
 *
 *   idle ──(subscribed / first delta)──▶ awaiting snapshot ──(snapshot, straddled where needed)──▶ live
 *     ▲                                      ▲                                                   │
 *     └────────── connection lost ───────────┴──── gap, id reset, crossed book, checksum ─────────┘
 *                                                  (gaps row, resync counted, resync brake)
 *
 * What a venue declares (`BookSyncRules`) and supplies (`BookSyncHost`, one object per book, its methods
 * called without a closure per message): its sequence policy (kit/sequence/, one verdict set), how it
 * acquires a snapshot (a REST fetch whose answer comes back here, or a resubscribe after which the
 * snapshot arrives in-band), how levels are applied and events built, and the words of its gap rows and
 * log lines. Where each rule lives:
 * - buffering while awaiting a snapshot, bounded by `bufferLimit` (`no_snapshot` verdicts);
 * - a REST snapshot held until the first delta that straddles it (Binance): `snapshotWaitsForStraddle`;
 * - the crossed-book check after every applied delta and snapshot; a crossed snapshot is tolerated until
 *   the book uncrosses where the venue documents it (OKX's pre-open auction): `toleratesCrossedSnapshot`;
 * - `restart`: a gaps row, `resyncs` counted, one log line per episode (FaultLog), then a fresh snapshot
 *   through the resync brake (kit/resync-brake.ts: the first resyncs at once, later ones with bounded
 *   exponential backoff, `resyncsDelayed` counted);
 * - a failed REST snapshot is retried with backoff; the first failure of an episode writes the one
 *   `snapshot_failed` gaps row;
 * - `forget` (connection lost, subscription failed, connector stopping) bumps the epoch, so a late REST
 *   answer or timer of an older episode does nothing.
 */
import type { GapReason } from "../../core/events.ts";
import type { FaultLog } from "../../core/fault-log.ts";
import { OrderBook } from "../../core/order-book.ts";
import type { Subscription } from "../../core/subscriptions.ts";
import { backoffDelay, type BackoffOptions } from "../websocket.ts";
import { ResyncBrake, type ResyncBrakeOptions } from "./resync-brake.ts";
import type { SequenceVerdict } from "./sequence/verdict.ts";

export type BookPhase = "idle" | "awaiting" | "live";

/** A venue's book rules, declared once for all its books. */
export interface BookSyncRules {
  /**
   * What `idle` means for a delta:
   * - `await_subscription`: idle is "not yet confirmed subscribed"; a delta proves the subscription and
   *   starts the sync, and a restart while idle only marks the gap (the subscription starts it);
   * - `ignore_deltas`: deltas are ignored until the venue asks for a snapshot again;
   * - `judge_deltas`: deltas are judged as always (the venue's snapshot arrives in-band whenever it comes).
   */
  readonly idle: "await_subscription" | "ignore_deltas" | "judge_deltas";
  /** Deltas kept while awaiting a snapshot; 0: none are kept. */
  readonly bufferLimit: number;
  /** At the limit: drop the oldest delta, or start over (the venue's REST alignment needs them all). */
  readonly whenBufferFull: "drop_oldest" | "start_over";
  /** A REST snapshot waits for the first delta that straddles it, and is emitted with it. */
  readonly snapshotWaitsForStraddle: boolean;
  /**
   * `rest`: the venue fetches the snapshot and hands the answer to `snapshotArrived`/`snapshotFailed`;
   * one request at a time, and one in flight survives a restart (the policy refuses it if it is older
   * than the deltas that follow). `in_band`: asking is a resubscribe, after which the snapshot arrives
   * on the socket (a `snapshot` verdict, or `snapshotInBand`); a restart voids whatever was pending, and
   * while the brake holds the request back the book is idle (the old subscription's deltas are of no use).
   */
  readonly snapshotSource: "rest" | "in_band";
  /** A snapshot that is itself crossed is kept until the book uncrosses (documented pre-open auction). */
  readonly toleratesCrossedSnapshot: boolean;
}

/** Everything venue-specific about one book: its ids, its levels, its events, its words. */
export interface BookSyncHost<Delta, Snapshot> {
  /** The subscriptions this book feeds (Deribit: several may share one channel): stats are counted on each. */
  readonly subscriptions: readonly Subscription[];
  /** The sequence policy's verdict on one delta (kit/sequence/). */
  judge(delta: Delta): SequenceVerdict;
  /** Starts the sequence policy from a fetched snapshot; `buffered`: deltas held when it arrived. */
  begin(snapshot: Snapshot, buffered: number): void;
  resetSequence(): void;
  /** Whether a snapshot may be asked for now (the connection is open and subscribed, the book not failed). */
  canRequestSnapshot(): boolean;
  /** Asks for a snapshot; a REST answer comes back to snapshotArrived/snapshotFailed with this epoch. */
  acquireSnapshot(epoch: number): void;
  applySnapshot(book: OrderBook, snapshot: Snapshot): void;
  /** Applies a delta (or an in-band snapshot); false: its levels are unreadable (counted by the venue). */
  applyDelta(book: OrderBook, delta: Delta, isSnapshot: boolean): boolean;
  /** undefined when the book passes the venue's integrity check (a checksum), else the gap's detail. */
  verify?(book: OrderBook, item: Delta | Snapshot): string | undefined;
  emitSnapshot(snapshot: Snapshot, first: Delta | undefined): void;
  emitDelta(delta: Delta, isSnapshot: boolean): void;
  /** Writes the gaps row(s) of this book. */
  gap(reason: GapReason, detail: string): void;
  /** The detail of a `gap`, `backwards` or `snapshot_too_old` delta, or of one whose levels are unreadable. */
  describe(verdict: SequenceVerdict | "unreadable", delta: Delta): string;
  crossedDetail(book: OrderBook, item: Delta | Snapshot, isSnapshot: boolean): string;
  /** Log lines, each reported once per episode under the engine's keys. */
  resyncLine(reason: GapReason, detail: string): string;
  brakeLine(count: number, delayMs: number, why: string | undefined): string;
  /** Called on each delta not applied (stale, duplicate, snapshot too old), for the venue's own log lines. */
  skipped?(verdict: SequenceVerdict, delta: Delta): void;
  snapshotFailureLogged?(why: string, delayMs: number): void;
  crossedSnapshotTolerated?(): void;
  /** The buffer was full and starts over (`whenBufferFull: "start_over"`). */
  bufferOverflowed?(count: number): void;
  /** The book's pending work was voided (epoch bumped): the venue drops its own timers and fetches. */
  cancelled?(): void;
  /** The snapshot_failed gap's detail. */
  snapshotFailedDetail(why: string): string;
}

export interface BookSyncOptions {
  readonly rules: BookSyncRules;
  readonly brake: ResyncBrakeOptions;
  /** Backoff of failed REST snapshots. */
  readonly retry: BackoffOptions;
  readonly faults: FaultLog;
  /** Names the book in fault-log keys (one episode of brake lines per book). */
  readonly name: string;
  readonly now?: () => number;
}

export class BookSync<Delta, Snapshot> {
  phase: BookPhase = "idle";
  readonly book = new OrderBook();
  private buffer: Delta[] = [];
  /** A fetched snapshot waiting for its straddling delta. */
  private held: Snapshot | undefined;
  /** A snapshot is being fetched, or the brake holds its request back. */
  private requesting = false;
  private epochValue = 0;
  /** Consecutive failed REST snapshots (the first one writes the episode's gap row). */
  private failures = 0;
  private crossedTolerated = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly brake: ResyncBrake;
  private readonly rules: BookSyncRules;

  constructor(
    private readonly host: BookSyncHost<Delta, Snapshot>,
    private readonly options: BookSyncOptions,
  ) {
    this.rules = options.rules;
    this.brake = new ResyncBrake(options.brake, options.now);
  }

  /** Bumped by forget: results of an older episode are ignored. */
  get epoch(): number {
    return this.epochValue;
  }

  /** The deltas kept while awaiting a snapshot, oldest first (a venue aligns its REST snapshot with them). */
  get pending(): readonly Delta[] {
    return this.buffer;
  }

  /** The subscription is live: await a snapshot (not braked: reconnects and subscribes have their own pacing). */
  start(): void {
    this.clearState();
    this.phase = "awaiting";
    this.request(undefined, false);
  }

  /** The subscription was (re)sent: the snapshot will come in-band; anything pending is void. */
  subscribed(): void {
    this.forget();
    this.phase = "awaiting";
  }

  /** One delta (or in-band snapshot) routed to this book: the hot path. */
  delta(delta: Delta): void {
    if (this.phase === "idle") {
      if (this.rules.idle === "await_subscription") this.start();
      else if (this.rules.idle === "ignore_deltas") return;
    }
    const verdict = this.host.judge(delta);
    switch (verdict) {
      case "apply":
        if (this.held !== undefined) this.install(this.held, delta);
        if (this.phase === "live") this.applyLive(delta, false);
        return;
      case "snapshot":
        this.phase = "live";
        this.failures = 0;
        this.buffer.length = 0;
        this.applyLive(delta, true);
        return;
      case "covered":
        // Its every update is in the snapshot: the snapshot alone is that state.
        if (this.held !== undefined) this.install(this.held, delta);
        return;
      case "no_snapshot":
        this.keep(delta);
        return;
      case "stale":
      case "duplicate":
        this.host.skipped?.(verdict, delta);
        return;
      case "snapshot_too_old": {
        // Nothing was emitted from this snapshot: fetch a newer one, keeping the delta.
        const why = this.host.describe(verdict, delta);
        this.host.skipped?.(verdict, delta);
        this.held = undefined;
        this.host.resetSequence();
        this.buffer.push(delta);
        this.request(why, true);
        return;
      }
      case "gap":
      case "backwards":
        this.restart(verdict === "gap" ? "sequence" : "id_reset", this.host.describe(verdict, delta));
        // The delta after the break may follow the next REST snapshot.
        if (this.rules.snapshotSource === "rest") this.buffer.push(delta);
        return;
    }
  }

  /** A delta that could not be read is a delta missed: a live book restarts. */
  unreadable(detail: string): void {
    if (this.phase === "live") this.restart("sequence", detail);
  }

  /**
   * An integrity break or an outside request: counted, marked by a gaps row, and rebuilt from a fresh
   * snapshot, through the resync brake when `braked` (the pipeline's own requests are paced by it).
   */
  restart(reason: GapReason, detail: string, braked = true): void {
    for (const subscription of this.host.subscriptions) subscription.stats.resyncs++;
    // One episode per reason across books: an overload resyncs every book at once (each has its gap row).
    this.options.faults.report(`resync:${reason}`, this.host.resyncLine(reason, detail));
    this.host.gap(reason, detail);
    if (this.phase === "idle" && this.rules.idle === "await_subscription") return;
    if (this.rules.snapshotSource === "in_band") this.cancel();
    this.clearState();
    if (!this.host.canRequestSnapshot()) {
      this.phase = "idle";
      return;
    }
    this.phase = "awaiting";
    // A REST snapshot already in flight is kept: the policy refuses it if it is older than the new deltas.
    this.request(undefined, braked);
  }

  /**
   * The connection carrying this book was lost, its subscription failed or the connector stops: forget
   * everything, and every pending request and timer, until it is subscribed again.
   */
  forget(): void {
    this.cancel();
    this.phase = "idle";
    this.clearState();
  }

  /** A snapshot the venue sent in-band (OKX's books snapshot): replaces the book in any phase but idle. */
  snapshotInBand(snapshot: Snapshot): void {
    if (this.phase === "idle") return;
    this.cancel();
    this.clearState();
    this.host.begin(snapshot, 0);
    this.install(snapshot, undefined);
  }

  /** A fetched snapshot (`epoch`: the one acquireSnapshot was given). */
  snapshotArrived(epoch: number, snapshot: Snapshot): void {
    if (epoch !== this.epochValue) return;
    this.requesting = false;
    this.failures = 0;
    if (this.phase !== "awaiting") return;
    const buffered = this.buffer;
    this.buffer = [];
    this.host.begin(snapshot, buffered.length);
    if (this.rules.snapshotWaitsForStraddle) this.held = snapshot;
    else if (!this.install(snapshot, undefined)) return;
    for (let i = 0; i < buffered.length; i++) {
      if (epoch !== this.epochValue) return;
      this.delta(buffered[i]!);
    }
  }

  /** A failed snapshot fetch: retried with backoff (at least `retryAfterMs`); one gaps row per episode. */
  snapshotFailed(epoch: number, why: string, retryAfterMs: number | undefined): void {
    if (epoch !== this.epochValue) return;
    this.failures++;
    if (this.failures === 1) this.host.gap("snapshot_failed", this.host.snapshotFailedDetail(why));
    const delay = Math.max(retryAfterMs ?? 0, backoffDelay(this.options.retry, this.failures - 1));
    this.host.snapshotFailureLogged?.(why, delay);
    this.wait(delay);
  }

  /** Replaces the book with `snapshot` and emits it; false when it was refused (a restart has begun). */
  private install(snapshot: Snapshot, first: Delta | undefined): boolean {
    this.held = undefined;
    this.failures = 0;
    const book = this.book;
    this.host.applySnapshot(book, snapshot);
    if (book.isCrossed()) {
      if (!this.rules.toleratesCrossedSnapshot) {
        this.restart("crossed_book", this.host.crossedDetail(book, snapshot, true));
        return false;
      }
      this.crossedTolerated = true;
      this.host.crossedSnapshotTolerated?.();
    }
    this.phase = "live";
    const broken = this.host.verify?.(book, snapshot);
    if (broken !== undefined) {
      this.restart("checksum", broken);
      return false;
    }
    this.host.emitSnapshot(snapshot, first);
    return true;
  }

  private applyLive(delta: Delta, isSnapshot: boolean): void {
    const book = this.book;
    if (!this.host.applyDelta(book, delta, isSnapshot)) {
      this.restart("sequence", this.host.describe("unreadable", delta));
      return;
    }
    if (book.isCrossed()) {
      if (!this.crossedTolerated) {
        this.restart("crossed_book", this.host.crossedDetail(book, delta, isSnapshot));
        return;
      }
    } else {
      this.crossedTolerated = false;
    }
    const broken = this.host.verify?.(book, delta);
    if (broken !== undefined) {
      this.restart("checksum", broken);
      return;
    }
    this.host.emitDelta(delta, isSnapshot);
  }

  private keep(delta: Delta): void {
    const limit = this.rules.bufferLimit;
    if (limit === 0) return;
    if (this.buffer.length >= limit) {
      if (this.rules.whenBufferFull === "drop_oldest") {
        this.buffer.shift();
      } else {
        this.host.bufferOverflowed?.(this.buffer.length);
        this.buffer = [];
      }
    }
    this.buffer.push(delta);
  }

  /**
   * Asks for a snapshot once the resync brake allows. A held-back request writes no gap row of its own:
   * a live book that restarted has written one already, and a book still syncing keeps its deltas.
   */
  private request(why: string | undefined, braked: boolean): void {
    if (this.requesting) return;
    this.requesting = true;
    const delay = braked ? this.brake.next() : 0;
    if (delay === 0) {
      this.acquire();
      return;
    }
    for (const subscription of this.host.subscriptions) subscription.stats.resyncsDelayed++;
    this.options.faults.report(`brake:${this.options.name}`, this.host.brakeLine(this.brake.count, delay, why));
    if (this.rules.snapshotSource === "in_band") this.phase = "idle";
    this.wait(delay);
  }

  private acquire(): void {
    const inBand = this.rules.snapshotSource === "in_band";
    if (inBand) this.requesting = false;
    if (!this.host.canRequestSnapshot()) return;
    // A book that went live meanwhile keeps applying deltas until the fresh snapshot replaces it.
    if (inBand && this.phase !== "live") this.phase = "awaiting";
    this.host.acquireSnapshot(this.epochValue);
  }

  /** Voids the pending work of the episode: a late answer or timer of it does nothing. */
  private cancel(): void {
    this.epochValue++;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.requesting = false;
    this.host.cancelled?.();
  }

  private wait(ms: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.acquire();
    }, ms);
  }

  private clearState(): void {
    this.buffer = [];
    this.held = undefined;
    this.crossedTolerated = false;
    this.host.resetSequence();
    this.book.clear();
  }
}

/**
 * Binance L2 on the book-sync engine (kit/book-sync.ts). `BinanceDepthBook` is what USDⓈ-M futures and
 * spot share: a REST depth snapshot that waits for its straddling delta, the snapshot request and its
 * answer, and the words of its gaps rows and log lines. `DepthBook` adds the futures U/u/pu policy
 * (kit/sequence/binance-futures.ts) and rows; spot's host is in binance-spot-book.ts.
 */
import { errorMessage } from "../core/errors.ts";
import type { BookChange, GapReason, MarketEvent } from "../core/events.ts";
import { gapEvent } from "../core/events.ts";
import type { FaultLog } from "../core/fault-log.ts";
import type { Logger } from "../core/log.ts";
import type { OrderBook } from "../core/order-book.ts";
import type { Subscription } from "../core/subscriptions.ts";
import { depthDelta, parseSnapshot, SIZING, type DepthSnapshot, type DepthUpdate } from "./binance-futures-normalize.ts";
import type { RestResult } from "./binance-futures-rest.ts";
import { BookSync, type BookSyncHost, type BookSyncOptions } from "./kit/book-sync.ts";
import { DepthSequencer } from "./kit/sequence/binance-futures.ts";
import type { SequenceVerdict } from "./kit/sequence/verdict.ts";

/** Binance's "Invalid symbol." error code. */
const INVALID_SYMBOL = -1121;

/** What a depth book needs from its connector (built once per connector). */
export interface DepthBookPort {
  readonly log: Logger;
  readonly faults: FaultLog;
  /** The deepest snapshot asked for; a deeper answer is refused. */
  readonly depthLimit: number;
  /** False once the subscription failed or the connector stops. */
  active(subscription: Subscription): boolean;
  /** GET of the depth snapshot of a native symbol, through the REST weight gate. */
  fetchDepth(symbol: string): Promise<RestResult>;
  emit(subscription: Subscription, event: MarketEvent): void;
  /** The venue refused the symbol: the subscription fails alone. */
  fail(subscription: Subscription, why: string): void;
}

/** What both Binance depth events have: the update ids they cover, the receive time, flat levels. */
export interface BinanceDepthUpdate {
  readonly firstId: number;
  readonly finalId: number;
  readonly receivedAt: number;
  readonly bids: number[];
  readonly asks: number[];
}

/** What both Binance REST depth snapshots have. */
export interface BinanceDepthSnapshot {
  readonly lastUpdateId: number;
  readonly receivedAt: number;
  readonly bids: number[];
  readonly asks: number[];
}

/** What the host needs of a sequence policy besides its venue-specific `check`. */
export interface SnapshotSequence {
  /** The book's update id: the last applied `u`, or the snapshot's before the first (-1 before any). */
  readonly position: number;
  begin(lastUpdateId: number): void;
  reset(): void;
}

/** How a Binance venue reads its REST depth body (undefined: malformed). */
export type SnapshotReader<Snapshot> = (body: unknown, receivedAt: number) => Snapshot | undefined;

/** The book host both Binance venues share; each adds its sequence verdicts, its rows and its break wording. */
export abstract class BinanceDepthBook<Update extends BinanceDepthUpdate, Snapshot extends BinanceDepthSnapshot, Sequence extends SnapshotSequence>
  implements BookSyncHost<Update, Snapshot>
{
  readonly subscriptions: readonly Subscription[];
  readonly sync: BookSync<Update, Snapshot>;

  constructor(
    protected readonly port: DepthBookPort,
    protected readonly subscription: Subscription,
    options: Omit<BookSyncOptions, "name" | "faults">,
    protected readonly sequencer: Sequence,
    private readonly readSnapshot: SnapshotReader<Snapshot>,
  ) {
    this.subscriptions = [subscription];
    this.sync = new BookSync(this, { ...options, name: subscription.key, faults: port.faults });
  }

  abstract judge(update: Update): SequenceVerdict;
  abstract emitSnapshot(snapshot: Snapshot, first: Update | undefined): void;
  abstract emitDelta(update: Update): void;
  /** The detail of a delta that does not continue the book (how the venue chains its events). */
  protected abstract breakDetail(update: Update, position: number): string;

  begin(snapshot: Snapshot): void {
    this.sequencer.begin(snapshot.lastUpdateId);
  }

  resetSequence(): void {
    this.sequencer.reset();
  }

  describe(verdict: SequenceVerdict | "unreadable", update: Update): string {
    const position = this.sequencer.position;
    switch (verdict) {
      case "gap":
        return this.breakDetail(update, position);
      case "backwards":
        return `depth update u=${update.finalId} is below the last applied u=${position} and was not applied before`;
      case "snapshot_too_old":
        return `depth snapshot ${position} predates the stream (delta U=${update.firstId})`;
      default:
        return "unreadable depth update";
    }
  }

  canRequestSnapshot(): boolean {
    return this.port.active(this.subscription);
  }

  acquireSnapshot(epoch: number): void {
    void this.port
      .fetchDepth(this.subscription.instrument)
      .then((result) => this.onSnapshot(epoch, result))
      .catch((error: unknown) => this.port.log.error(`${this.subscription.key}: snapshot handling failed: ${errorMessage(error)}`));
  }

  private onSnapshot(epoch: number, result: RestResult): void {
    if (!this.port.active(this.subscription) || epoch !== this.sync.epoch) return;
    const limit = this.port.depthLimit;
    const parsed = result.ok ? this.readSnapshot(result.body, result.receivedAt) : undefined;
    // The venue answers at most the depth asked for; more is a broken or hostile answer, not a book.
    const levels = parsed ? Math.max(parsed.bids.length, parsed.asks.length) / 2 : 0;
    const snapshot = levels <= limit ? parsed : undefined;
    if (snapshot) {
      this.sync.snapshotArrived(epoch, snapshot);
      return;
    }
    if (result.code === INVALID_SYMBOL) {
      this.port.fail(this.subscription, `Binance rejected the depth snapshot for '${this.subscription.instrument}': ${result.message}`);
      return;
    }
    const why = parsed
      ? `${levels} levels a side, more than the ${limit} asked for`
      : result.ok ? "malformed snapshot body" : result.message;
    if (parsed || result.oversized) this.subscription.stats.parseErrors++;
    this.sync.snapshotFailed(epoch, why, result.retryAfterMs);
  }

  applySnapshot(book: OrderBook, snapshot: Snapshot): void {
    book.apply(snapshot.bids, snapshot.asks, true);
  }

  applyDelta(book: OrderBook, update: Update): boolean {
    book.apply(update.bids, update.asks);
    return true;
  }

  gap(reason: GapReason, detail: string): void {
    this.port.emit(this.subscription, gapEvent(this.subscription, reason, detail));
  }

  skipped(verdict: SequenceVerdict, update: Update): void {
    if (verdict === "snapshot_too_old") this.port.log.debug(`${this.subscription.key}: ${this.describe(verdict, update)}; refetching`);
  }

  crossedDetail(book: OrderBook, item: Update | Snapshot, isSnapshot: boolean): string {
    if (isSnapshot) return `REST snapshot ${(item as Snapshot).lastUpdateId} is crossed`;
    return `book crossed after u=${(item as Update).finalId} (bid ${book.bids.best()} >= ask ${book.asks.best()})`;
  }

  resyncLine(reason: GapReason, detail: string): string {
    return `${this.subscription.key}: resync (${reason}: ${detail})`;
  }

  brakeLine(count: number, delayMs: number, why: string | undefined): string {
    return `${this.subscription.key}: ${why ? `${why}; ` : ""}resync ${count} in a row: next depth snapshot in ${Math.ceil(delayMs / 1000)} s`;
  }

  snapshotFailedDetail(why: string): string {
    return `depth snapshot failed: ${why}; retrying`;
  }

  snapshotFailureLogged(why: string, delayMs: number): void {
    const key = this.subscription.key;
    this.port.faults.report(`snapshot:${key}`, `${key}: depth snapshot failed (${why}); retry in ${Math.ceil(delayMs / 1000)} s`);
  }
}

/** USDⓈ-M futures: the U/u/pu policy, the snapshot body's own time, futures rows. */
export class DepthBook extends BinanceDepthBook<DepthUpdate, DepthSnapshot, DepthSequencer> {
  constructor(port: DepthBookPort, subscription: Subscription, options: Omit<BookSyncOptions, "name" | "faults">) {
    super(port, subscription, options, new DepthSequencer(), parseSnapshot);
  }

  judge(update: DepthUpdate): SequenceVerdict {
    return this.sequencer.check(update.firstId, update.finalId, update.previousFinalId);
  }

  /**
   * The snapshot's rows carry the time of the state they hold: the REST body's `T` (or `E`) is the time
   * of the response, which can be later than `first`'s own transaction time (Order Book: "E: Message
   * output time, T: Transaction time",
   * https://developers.binance.com/docs/derivatives/usds-margined-futures/market-data/rest-api/Order-Book),
   * while the state at lastUpdateId is no later than `first`, which ends at or after it. So that ordering
   * rows by (timestamp, sequence) replays the snapshot before `first`, the snapshot gets the earlier of the two.
   */
  emitSnapshot(snapshot: DepthSnapshot, first: DepthUpdate | undefined): void {
    this.port.emit(this.subscription, {
      type: "book_change",
      exchange: "BINANCE_FUTURES",
      symbol: this.subscription.symbol,
      timestamp: first ? Math.min(snapshot.timestamp, first.timestamp) : snapshot.timestamp,
      localTimestamp: snapshot.receivedAt,
      isSnapshot: true,
      sequence: snapshot.lastUpdateId,
      bids: snapshot.bids,
      asks: snapshot.asks,
      amountUnit: SIZING.amountUnit,
      contractValue: SIZING.contractValue,
    } satisfies BookChange);
  }

  emitDelta(update: DepthUpdate): void {
    this.port.emit(this.subscription, depthDelta(update, this.subscription));
  }

  protected breakDetail(update: DepthUpdate, position: number): string {
    return `depth update pu=${update.previousFinalId} does not follow u=${position}`;
  }
}

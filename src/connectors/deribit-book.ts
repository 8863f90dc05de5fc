/**
 * Deribit books on the book-sync engine (kit/book-sync.ts): change_id/prev_change_id continuity
 * (kit/sequence/deribit.ts) with the snapshot in-band (the first notification after a subscribe), a
 * resubscribe to get a fresh one, and the words of its gaps rows and log lines
 * (https://docs.deribit.com/subscriptions/orderbook/bookinstrument_nameinterval).
 */
import type { GapReason, MarketEvent } from "../core/events.ts";
import type { FaultLog } from "../core/fault-log.ts";
import type { Logger } from "../core/log.ts";
import type { OrderBook } from "../core/order-book.ts";
import type { Subscription } from "../core/subscriptions.ts";
import { bookChange, type DeribitInstrumentContext } from "./deribit-normalize.ts";
import { flattenLevels } from "./deribit-scan.ts";
import { BookSync, type BookSyncHost, type BookSyncOptions, type BookSyncRules } from "./kit/book-sync.ts";
import { ChangeIdSequence } from "./kit/sequence/deribit.ts";
import type { SequenceVerdict } from "./kit/sequence/verdict.ts";

/** Deribit sends the whole book first on every subscribe; a delta without one is of no use. */
export const DERIBIT_BOOK_RULES: BookSyncRules = {
  idle: "judge_deltas",
  bufferLimit: 0,
  whenBufferFull: "drop_oldest",
  snapshotWaitsForStraddle: false,
  snapshotSource: "in_band",
  toleratesCrossedSnapshot: false,
};

/** One book notification; the book keeps one and refills it for each (no object per message). */
interface BookNotification {
  changeId: number;
  prevChangeId: number | undefined;
  time: number;
  /** The levels as parsed from JSON, or undefined when the scanner already flattened them. */
  raw: { bids?: unknown; asks?: unknown } | undefined;
  bids: number[] | undefined;
  asks: number[] | undefined;
  receivedAt: number;
  text: string;
}

/** What a book needs of its connector (built once per connector). */
export interface DeribitBookPort {
  readonly log: Logger;
  readonly faults: FaultLog;
  /** The connection may subscribe (authenticated when credentials are set), the channel has not failed. */
  mayResubscribe(channel: string): boolean;
  /** Unsubscribes and subscribes the channel again: Deribit answers with a fresh snapshot. */
  resubscribe(channel: string): void;
  emit(subscription: Subscription, event: MarketEvent): void;
  emitGap(subscription: Subscription, reason: GapReason, detail: string): void;
  parseError(channel: string, what: string, text: string): void;
}

export class DeribitBook implements BookSyncHost<BookNotification, never> {
  readonly sync: BookSync<BookNotification, never>;
  private readonly sequence = new ChangeIdSequence();
  private readonly notification: BookNotification = {
    changeId: 0,
    prevChangeId: undefined,
    time: 0,
    raw: undefined,
    bids: undefined,
    asks: undefined,
    receivedAt: 0,
    text: "",
  };

  /** `subscriptions` and `contexts`: the channel's lists (several subscriptions may share one channel). */
  constructor(
    private readonly port: DeribitBookPort,
    private readonly channel: string,
    readonly subscriptions: readonly Subscription[],
    private readonly contexts: readonly DeribitInstrumentContext[],
    options: Omit<BookSyncOptions, "name" | "faults" | "rules">,
  ) {
    this.sync = new BookSync<BookNotification, never>(this, { ...options, rules: DERIBIT_BOOK_RULES, name: channel, faults: port.faults });
  }

  /**
   * One readable book notification: levels from `raw` (parsed JSON), or already flattened by
   * deribit-scan.ts in `flatBids`/`flatAsks`.
   */
  onChange(
    changeId: number,
    prevChangeId: number | undefined,
    time: number,
    raw: { bids?: unknown; asks?: unknown } | undefined,
    flatBids: number[] | undefined,
    flatAsks: number[] | undefined,
    receivedAt: number,
    text: string,
  ): void {
    const notification = this.notification;
    notification.changeId = changeId;
    notification.prevChangeId = prevChangeId;
    notification.time = time;
    notification.raw = raw;
    notification.bids = flatBids;
    notification.asks = flatAsks;
    notification.receivedAt = receivedAt;
    notification.text = text;
    this.sync.delta(notification);
  }

  judge(notification: BookNotification): SequenceVerdict {
    return this.sequence.check(notification.changeId, notification.prevChangeId);
  }

  begin(): void {}

  resetSequence(): void {
    this.sequence.reset();
  }

  canRequestSnapshot(): boolean {
    return this.port.mayResubscribe(this.channel);
  }

  acquireSnapshot(): void {
    this.port.resubscribe(this.channel);
  }

  applySnapshot(): void {}

  applyDelta(book: OrderBook, notification: BookNotification, isSnapshot: boolean): boolean {
    const raw = notification.raw;
    if (raw !== undefined) {
      const bids: number[] = [];
      const asks: number[] = [];
      if (!flattenLevels(raw.bids, bids) || !flattenLevels(raw.asks, asks)) {
        this.port.parseError(this.channel, "unreadable book level", notification.text);
        return false;
      }
      notification.bids = bids;
      notification.asks = asks;
    }
    book.apply(notification.bids ?? [], notification.asks ?? [], isSnapshot);
    return true;
  }

  emitSnapshot(): void {}

  emitDelta(notification: BookNotification, isSnapshot: boolean): void {
    const { subscriptions, contexts } = this;
    const { changeId, time, receivedAt } = notification;
    const bids = notification.bids ?? [];
    const asks = notification.asks ?? [];
    for (let i = 0; i < subscriptions.length; i++) {
      this.port.emit(subscriptions[i]!, bookChange(contexts[i]!, isSnapshot, changeId, time, receivedAt, bids, asks));
    }
  }

  gap(reason: GapReason, detail: string): void {
    for (const subscription of this.subscriptions) this.port.emitGap(subscription, reason, detail);
  }

  describe(verdict: SequenceVerdict | "unreadable", notification: BookNotification): string {
    const last = this.sequence.lastChangeId;
    if (verdict === "gap") return `prev_change_id ${notification.prevChangeId} != last change_id ${last}`;
    if (verdict === "backwards") return `change_id ${notification.changeId} is below the last change_id ${last} and was not seen before`;
    return `unreadable level in change_id ${notification.changeId}`;
  }

  skipped(verdict: SequenceVerdict, notification: BookNotification): void {
    if (verdict === "duplicate") this.port.log.debug(`DERIBIT: ${this.channel}: change_id ${notification.changeId} already applied, ignored`);
  }

  crossedDetail(book: OrderBook, notification: BookNotification): string {
    return `best bid ${book.bids.best()} >= best ask ${book.asks.best()} after change_id ${notification.changeId}`;
  }

  resyncLine(reason: GapReason, detail: string): string {
    return `DERIBIT: ${this.channel}: ${reason} (${detail}); resubscribing for a fresh snapshot`;
  }

  brakeLine(count: number, delayMs: number): string {
    return `DERIBIT: ${this.channel}: resync ${count} in a row: fresh snapshot in ${Math.ceil(delayMs / 1000)} s`;
  }

  snapshotFailedDetail(why: string): string {
    return why;
  }
}

/**
 * The bounded channel between connectors and the sink.
 *
 * Bound: the total number of rows queued (one per L2 level, one per other event), so memory is bounded
 * however large snapshots are. A ring buffer of (subscription, event) pairs: no allocation per push.
 *
 * Policy when the sink cannot keep up (documented in docs/architecture.md):
 * - A push that does not fit is dropped and counted on its subscription; the drop callback fires so the
 *   pipeline can log it and resync the book.
 * - Gap markers are small and rare and are what tells a consumer that data is missing, so they are
 *   admitted into a reserve above the bound (`reserveRows`), and only dropped (counted) past that.
 * - High-water mark and depth are kept for telemetry.
 *
 * Waking the consumer: Bun runs the microtasks after every WebSocket message, so a consumer woken at each
 * push took one event per turn in a burst (180,000 batches for 180,000 events), paying its loop, a promise
 * and a sink call per event. A push wakes it at once only when WAKE_EVENTS are queued; below that, once at
 * the end of the current event-loop turn (setImmediate), so a lone message still goes straight through.
 */
import { rowCount, type MarketEvent } from "./events.ts";
import type { Subscription } from "./subscriptions.ts";

/** Queued events that wake the consumer at once (a batch worth its overhead; ~0.4 ms of a burst). */
export const WAKE_EVENTS = 64;

export class BoundedChannel {
  private events: (MarketEvent | undefined)[];
  private subscriptions: (Subscription | undefined)[];
  private head = 0;
  private length = 0;
  private waiter: (() => void) | undefined;
  private wakeScheduled = false;
  private readonly scheduledWake = (): void => {
    this.wakeScheduled = false;
    if (this.length > 0) this.wake();
  };
  /** Rows currently queued. */
  depthRows = 0;
  highWaterRows = 0;
  droppedEvents = 0;
  droppedRows = 0;
  closed = false;

  constructor(
    readonly capacityRows: number,
    private readonly onDrop: (subscription: Subscription, event: MarketEvent) => void = () => {},
    readonly reserveRows = 4096,
  ) {
    // Slots grow on demand (up to one per row); start small so an idle collector stays small.
    this.events = new Array(Math.min(1024, capacityRows + reserveRows));
    this.subscriptions = new Array(this.events.length);
  }

  get depthEvents(): number {
    return this.length;
  }

  /** Queues an event; returns false (and counts the drop) when it does not fit. */
  push(subscription: Subscription, event: MarketEvent): boolean {
    const rows = rowCount(event);
    const limit = event.type === "gap" ? this.capacityRows + this.reserveRows : this.capacityRows;
    // An event larger than the whole bound is admitted into an empty queue so it can never wedge a book.
    if (this.closed || (this.depthRows + rows > limit && this.depthRows > 0)) {
      this.droppedEvents++;
      this.droppedRows += rows;
      subscription.stats.dropped++;
      this.onDrop(subscription, event);
      return false;
    }
    if (this.length === this.events.length) this.grow();
    const tail = (this.head + this.length) % this.events.length;
    this.events[tail] = event;
    this.subscriptions[tail] = subscription;
    this.length++;
    this.depthRows += rows;
    if (this.depthRows > this.highWaterRows) this.highWaterRows = this.depthRows;
    if (this.waiter) {
      if (this.length >= WAKE_EVENTS) this.wake();
      else if (!this.wakeScheduled) {
        this.wakeScheduled = true;
        setImmediate(this.scheduledWake);
      }
    }
    return true;
  }

  /**
   * Moves up to `max` queued events into `events`/`subscriptions` (cleared first) and returns how many.
   * The arrays are the caller's and are reused between calls.
   */
  takeBatch(events: MarketEvent[], subscriptions: Subscription[], max: number): number {
    events.length = 0;
    subscriptions.length = 0;
    const size = this.events.length;
    while (this.length > 0 && events.length < max) {
      const event = this.events[this.head]!;
      events.push(event);
      subscriptions.push(this.subscriptions[this.head]!);
      this.events[this.head] = undefined;
      this.subscriptions[this.head] = undefined;
      this.head = (this.head + 1) % size;
      this.length--;
      this.depthRows -= rowCount(event);
    }
    return events.length;
  }

  /** Resolves when an event is queued or the channel is closed. */
  whenReadable(): Promise<void> {
    if (this.length > 0 || this.closed) return Promise.resolve();
    return new Promise((resolve) => (this.waiter = resolve));
  }

  /** No more pushes are accepted; queued events can still be taken. */
  close(): void {
    this.closed = true;
    this.wake();
  }

  private wake(): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.();
  }

  private grow(): void {
    const size = this.events.length;
    const grown = size * 2;
    const events = new Array<MarketEvent | undefined>(grown);
    const subscriptions = new Array<Subscription | undefined>(grown);
    for (let i = 0; i < this.length; i++) {
      events[i] = this.events[(this.head + i) % size];
      subscriptions[i] = this.subscriptions[(this.head + i) % size];
    }
    this.events = events;
    this.subscriptions = subscriptions;
    this.head = 0;
  }
}

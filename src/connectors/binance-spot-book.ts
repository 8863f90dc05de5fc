/**
 * Binance spot L2 on the book-sync engine: the Binance depth book host (binance-futures-book.ts) with
 * spot's U/u rule (kit/sequence/binance-spot.ts: no `pu`, an event applies when `U <= p + 1 <= u`), a
 * REST body without any time, and spot rows (docs/venues/binance-spot.md, *L2 integrity*).
 */
import type { Subscription } from "../core/subscriptions.ts";
import { BinanceDepthBook, type DepthBookPort } from "./binance-futures-book.ts";
import { depthRow, parseSnapshot, type SpotDepthSnapshot, type SpotDepthUpdate } from "./binance-spot-normalize.ts";
import type { BookSyncOptions } from "./kit/book-sync.ts";
import { SpotDepthSequencer } from "./kit/sequence/binance-spot.ts";
import type { SequenceVerdict } from "./kit/sequence/verdict.ts";

export class SpotDepthBook extends BinanceDepthBook<SpotDepthUpdate, SpotDepthSnapshot, SpotDepthSequencer> {
  constructor(port: DepthBookPort, subscription: Subscription, options: Omit<BookSyncOptions, "name" | "faults">) {
    super(port, subscription, options, new SpotDepthSequencer(), parseSnapshot);
  }

  judge(update: SpotDepthUpdate): SequenceVerdict {
    return this.sequencer.check(update.firstId, update.finalId);
  }

  /**
   * The REST body carries no time. The state at `lastUpdateId` is no later than the first event applied
   * on it (which starts at or before lastUpdateId + 1), so the snapshot rows get that event's `E`, and
   * ordering rows by (timestamp, sequence) replays the snapshot first; without one, the receive time.
   */
  emitSnapshot(snapshot: SpotDepthSnapshot, first: SpotDepthUpdate | undefined): void {
    const timeMs = first ? first.time : snapshot.receivedAt / 1000;
    this.port.emit(this.subscription, depthRow(this.subscription, true, snapshot.lastUpdateId, timeMs, snapshot.receivedAt, snapshot.bids, snapshot.asks));
  }

  emitDelta(update: SpotDepthUpdate): void {
    this.port.emit(this.subscription, depthRow(this.subscription, false, update.finalId, update.time, update.receivedAt, update.bids, update.asks));
  }

  protected breakDetail(update: SpotDepthUpdate, position: number): string {
    return `depth update U=${update.firstId} does not follow u=${position}`;
  }
}

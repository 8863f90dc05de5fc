/**
 * Sequence policy for Bybit v5 order books, pure: it only sees ids. One class serves both book feeds:
 *
 * - `orderbook.{depth}.{symbol}` with in-band snapshots
 *   (https://bybit-exchange.github.io/docs/v5/websocket/public/orderbook): the first message after
 *   subscribing is a `snapshot`; a later `snapshot` resets the book (Bybit re-sends one "if there is a
 *   problem on Bybit's end"); `u` is the update id of the topic; "occasionally, you'll receive `u`=1, which
 *   is a snapshot data due to the restart of the service". The page gives no continuity rule for deltas;
 *   the full-book page states the one `u` follows on the same service ("the `u` value of each delta packet
 *   increments by one from the previous"), applied here to both.
 * - `orderbook.full.{symbol}`, deltas only, on a REST snapshot (`GET /v5/market/full_orderbook`)
 *   (https://bybit-exchange.github.io/docs/v5/websocket/public/full-ob, *Full Order Book Synchronization
 *   Procedure*): buffer deltas; a snapshot whose `seq` is below the first buffered delta's is too old;
 *   deltas with `seq` below the snapshot's are discarded; equal `seq` with a different `u` means the
 *   snapshot does not match (fetch again); once the snapshot's `seq` and `u` match a delta the book's
 *   version is the snapshot's `u`; then `u` below the book's → ignore, above the book's + 1 → missed
 *   events (start over), `u` = 1 → the service restarted or the instrument changed (start over).
 *
 * As for the other venues (sequence/binance-futures.ts): a delta whose `u` is not above the book's is a
 * `duplicate` only when that `u` was applied moments ago; one below that never was means the ids went
 * back (`backwards`), so a single too-high `u` cannot silence the book.
 */
import { RecentKeys } from "../../dedup.ts";

/**
 * The verdicts of this policy. Local until the kit's unified verdict type lands; how each maps onto it is
 * noted per member.
 */
export type BybitBookVerdict =
  /** A snapshot: reset the book to it and emit it. */
  | "snapshot"
  /** A snapshot with `u` = 1, the service restarted: reset the book to it and emit it; mark the restart (`id_reset`). */
  | "restart_snapshot"
  /** Apply this delta and emit it. */
  | "apply"
  /** Applied moments ago, or inside the REST snapshot: drop it, no row, no gap. */
  | "duplicate"
  /** The REST snapshot's own version: in sync, nothing to apply (its rows are the snapshot's). */
  | "covered"
  /** `u` skipped ahead: deltas were missed. Gap, fresh snapshot (resubscribe, or REST for the full book). */
  | "gap"
  /** `u` below the book's and never applied: the ids went back. Gap (`id_reset`), fresh snapshot. */
  | "backwards"
  /** A delta with `u` = 1 on the full book: the venue re-initialised it. Gap, fresh REST snapshot. */
  | "restart"
  /** No snapshot yet: in-band, drop the delta (the snapshot will come); full book, buffer it. */
  | "awaiting_snapshot"
  /** Full book: the REST snapshot predates (or disagrees with) the buffered deltas. Fetch it again, no gap. */
  | "snapshot_too_old";

/** The minimal shape the kit's book sync needs from this policy. */
export interface BybitBookPolicy {
  /** The book's version: the last applied `u` (NaN before any snapshot). */
  readonly position: number;
  reset(): void;
  /** An in-band `snapshot` message with update id `u`. */
  snapshot(updateId: number): BybitBookVerdict;
  /** A REST full-depth snapshot (`u`, `seq`): the next deltas are matched against it. */
  begin(updateId: number, crossSequence: number): void;
  /** A `delta` message. */
  delta(updateId: number, crossSequence: number): BybitBookVerdict;
}

export class BybitBookSequence implements BybitBookPolicy {
  private last = Number.NaN;
  /** The REST snapshot's (u, seq) while its first delta has not come; undefined otherwise. */
  private bridge: { readonly updateId: number; readonly crossSequence: number } | undefined;
  private readonly applied = new RecentKeys();

  get position(): number {
    return this.last;
  }

  reset(): void {
    this.last = Number.NaN;
    this.bridge = undefined;
    this.applied.clear();
  }

  snapshot(updateId: number): BybitBookVerdict {
    const restarted = updateId === 1 && !Number.isNaN(this.last);
    this.bridge = undefined;
    this.applied.clear();
    this.advance(updateId);
    return restarted ? "restart_snapshot" : "snapshot";
  }

  begin(updateId: number, crossSequence: number): void {
    this.applied.clear();
    this.last = updateId;
    this.bridge = { updateId, crossSequence };
  }

  delta(updateId: number, crossSequence: number): BybitBookVerdict {
    if (Number.isNaN(this.last)) return "awaiting_snapshot";
    const bridge = this.bridge;
    if (bridge !== undefined) return this.bridgeFrom(bridge, updateId, crossSequence);
    if (updateId === 1) return "restart";
    if (updateId === this.last + 1) return this.advance(updateId);
    if (updateId > this.last) return "gap";
    if (this.applied.has(updateId)) return "duplicate";
    return updateId < this.last ? "backwards" : "duplicate";
  }

  /** The first deltas after a REST snapshot, matched on `seq` first as the procedure says, then on `u`. */
  private bridgeFrom(bridge: { readonly updateId: number; readonly crossSequence: number }, updateId: number, crossSequence: number): BybitBookVerdict {
    if (crossSequence < bridge.crossSequence) return "duplicate";
    if (crossSequence === bridge.crossSequence) {
      if (updateId !== bridge.updateId) return "snapshot_too_old";
      this.bridge = undefined;
      this.applied.take(updateId);
      return "covered";
    }
    if (updateId === bridge.updateId + 1) {
      this.bridge = undefined;
      return this.advance(updateId);
    }
    if (updateId === 1) return "restart";
    // A later delta (higher `seq`) that does not continue the snapshot's `u`: the snapshot is behind the
    // stream, or disagrees with it; nothing was emitted on it yet, so fetch it again.
    return "snapshot_too_old";
  }

  private advance(updateId: number): "apply" {
    this.last = updateId;
    this.applied.take(updateId);
    return "apply";
  }
}

/**
 * Sequence policy for Binance USDⓈ-M diff depth (U/u/pu against a REST snapshot): pure, it only sees ids.
 *
 * The documented procedure ("How to manage a local order book correctly",
 * https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams/How-to-manage-a-local-order-book-correctly):
 *  1. buffer the stream's events, 2. fetch the REST snapshot (`lastUpdateId`),
 *  3. drop events with `u < lastUpdateId`,
 *  4. the first processed event must have `U <= lastUpdateId AND u >= lastUpdateId`,
 *  5. every later event's `pu` must equal the previous event's `u`; otherwise start over from step 2.
 *
 * Beyond the document: an event whose `pu` does not continue the chain is judged by applied-ids.ts: a
 * repeat of a `u` applied moments ago is dropped as `stale` rather than re-applied (re-applying absolute
 * quantities from an older event would undo newer ones), one below the last applied `u` is `backwards`
 * (the book restarts, as for a gap), any other a `gap`. An event wholly inside the snapshot
 * (`u == lastUpdateId`) is `covered`: it syncs the chain, and there is nothing to apply.
 */
import { AppliedIds } from "./applied-ids.ts";
import type { SequenceVerdict } from "./verdict.ts";

/**
 * The verdicts this policy gives (kit/sequence/verdict.ts): `no_snapshot` (keep buffering), `stale`,
 * `covered`, `snapshot_too_old`, `apply`, `gap`, `backwards`.
 */
export type DepthVerdict = Extract<SequenceVerdict, "apply" | "covered" | "stale" | "gap" | "backwards" | "snapshot_too_old" | "no_snapshot">;

export class DepthSequencer {
  private snapshotId = -1;
  /** `u` of the applied events (-1 before the first after the snapshot), and the recent ones. */
  private readonly applied = new AppliedIds(-1);

  /** The `u` of the last applied event, or the snapshot id before the first one (-1 before any snapshot). */
  get position(): number {
    return this.applied.last >= 0 ? this.applied.last : this.snapshotId;
  }

  /** True once the first event after the snapshot has been accepted. */
  get synced(): boolean {
    return this.applied.last >= 0;
  }

  get hasSnapshot(): boolean {
    return this.snapshotId >= 0;
  }

  reset(): void {
    this.snapshotId = -1;
    this.applied.restart();
  }

  /** Starts validation from a REST snapshot's `lastUpdateId`. */
  begin(lastUpdateId: number): void {
    this.snapshotId = lastUpdateId;
    this.applied.restart();
  }

  /** Classifies one diff event (`U` first id, `u` final id, `pu` previous event's final id). */
  check(firstId: number, finalId: number, previousFinalId: number): DepthVerdict {
    if (this.snapshotId < 0) return "no_snapshot";
    const last = this.applied.last;
    if (last < 0) {
      if (finalId < this.snapshotId) return "stale";
      if (firstId > this.snapshotId) return "snapshot_too_old";
      this.applied.take(finalId);
      return finalId === this.snapshotId ? "covered" : "apply";
    }
    if (previousFinalId === last && finalId > last) {
      this.applied.take(finalId);
      return "apply";
    }
    return this.applied.judgeBreak(finalId, "stale");
  }
}

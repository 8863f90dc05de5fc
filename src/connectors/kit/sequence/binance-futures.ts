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
 * Beyond the document: an event whose `pu` does not continue the chain but whose `u` was applied moments
 * ago is a repeat (a re-sent frame, a handover overlap); it is dropped rather than re-applied
 * (re-applying absolute quantities from an older event would undo newer ones). One whose `u` is below
 * the last applied `u` and was never applied means the ids went back (or the last was too high): the
 * book restarts, as for a gap. Dropping every `u` not above the last one would let a single too-high
 * `u` silence the book for good. An event wholly inside the snapshot (`u == lastUpdateId`) is
 * `covered`: it syncs the chain, and there is nothing to apply.
 */
import { RecentKeys } from "../../dedup.ts";
import type { SequenceVerdict } from "./verdict.ts";

/**
 * The verdicts this policy gives (kit/sequence/verdict.ts): `no_snapshot` (keep buffering), `stale`,
 * `covered`, `snapshot_too_old`, `apply`, `gap`, `backwards`.
 */
export type DepthVerdict = Extract<SequenceVerdict, "apply" | "covered" | "stale" | "gap" | "backwards" | "snapshot_too_old" | "no_snapshot">;

export class DepthSequencer {
  private snapshotId = -1;
  private lastApplied = -1;
  /** `u` of recently applied events, to tell a repeat from ids going back. */
  private readonly applied = new RecentKeys();

  /** The `u` of the last applied event, or the snapshot id before the first one (-1 before any snapshot). */
  get position(): number {
    return this.lastApplied >= 0 ? this.lastApplied : this.snapshotId;
  }

  /** True once the first event after the snapshot has been accepted. */
  get synced(): boolean {
    return this.lastApplied >= 0;
  }

  get hasSnapshot(): boolean {
    return this.snapshotId >= 0;
  }

  reset(): void {
    this.snapshotId = -1;
    this.lastApplied = -1;
  }

  /** Starts validation from a REST snapshot's `lastUpdateId`. */
  begin(lastUpdateId: number): void {
    this.snapshotId = lastUpdateId;
    this.lastApplied = -1;
  }

  /** Classifies one diff event (`U` first id, `u` final id, `pu` previous event's final id). */
  check(firstId: number, finalId: number, previousFinalId: number): DepthVerdict {
    if (this.snapshotId < 0) return "no_snapshot";
    if (this.lastApplied < 0) {
      if (finalId < this.snapshotId) return "stale";
      if (firstId > this.snapshotId) return "snapshot_too_old";
      this.advance(finalId);
      return finalId === this.snapshotId ? "covered" : "apply";
    }
    if (previousFinalId === this.lastApplied && finalId > this.lastApplied) {
      this.advance(finalId);
      return "apply";
    }
    if (this.applied.has(finalId)) return "stale";
    return finalId < this.lastApplied ? "backwards" : "gap";
  }

  private advance(finalId: number): void {
    this.lastApplied = finalId;
    this.applied.take(finalId);
  }
}

/**
 * Sequence policy for Binance spot diff depth (U/u against a REST snapshot, no `pu`): pure, it only sees ids.
 *
 * The documented procedure ("How to manage a local order book correctly",
 * https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams#how-to-manage-a-local-order-book-correctly):
 *  - buffer the stream's events, fetch the REST snapshot (`lastUpdateId`);
 *  - if `lastUpdateId` is below the first buffered `U`, the snapshot predates the stream: fetch again;
 *  - discard buffered events with `u <= lastUpdateId`; the book's update id is now `lastUpdateId`;
 *  - for every event: `u` below the book's id → ignore; `U` above the book's id + 1 → events were missed,
 *    start over; otherwise apply it and the book's id becomes `u` ("normally, U of the next event is
 *    equal to u + 1 of the previous event").
 *
 * So one rule covers the first event and every later one: with `p` the book's id, an event applies when
 * `U <= p + 1 <= u`. The documentation asks the first event to hold `lastUpdateId` itself (`U <= p <= u`),
 * stricter than needed: an event starting at exactly `p + 1` continues the snapshot (the snapshot fell
 * between two events), and its own update rule applies it. An event overlapping what was applied
 * (`U <= p < u`) applies too, as documented: quantities are absolute.
 *
 * Beyond the document, as for futures (sequence/binance-futures.ts): an event whose `u` is not above `p`
 * is `stale` when that `u` was applied moments ago (a re-sent frame, a handover overlap) or lies within
 * the snapshot; once synced, one whose `u` is below `p` and was never applied means the ids went back (or
 * `p` was too high): `backwards`, and the book restarts. An event wholly inside the snapshot is dropped
 * without a row (the snapshot rows hold it), unlike futures' `covered`, since spot has no `pu` chain to
 * sync through it.
 */
import { RecentKeys } from "../../dedup.ts";
import type { SequenceVerdict } from "./verdict.ts";

/**
 * The verdicts this policy gives (kit/sequence/verdict.ts): `no_snapshot` (keep buffering), `stale`
 * (already in the snapshot or applied moments ago: drop, no row, no gap), `snapshot_too_old` (the first
 * event starts past the snapshot: refetch, no gap since nothing was emitted), `apply`, `gap` (`U` past the
 * book's id + 1) and `backwards` (`u` below the book's id and never applied: gap `id_reset`).
 */
export type SpotDepthVerdict = Extract<SequenceVerdict, "apply" | "stale" | "gap" | "backwards" | "snapshot_too_old" | "no_snapshot">;

export class SpotDepthSequencer {
  private snapshotId = -1;
  private lastApplied = -1;
  private readonly applied = new RecentKeys();

  get position(): number {
    return this.lastApplied >= 0 ? this.lastApplied : this.snapshotId;
  }

  /** True once an event after the snapshot has been applied. */
  get synced(): boolean {
    return this.lastApplied >= 0;
  }

  reset(): void {
    this.snapshotId = -1;
    this.lastApplied = -1;
    this.applied.clear();
  }

  /** Starts validation from a REST snapshot's `lastUpdateId`. */
  begin(lastUpdateId: number): void {
    this.snapshotId = lastUpdateId;
    this.lastApplied = -1;
    this.applied.clear();
  }

  /** Classifies one diff event (`U` first update id, `u` final update id) and, when it applies, advances. */
  check(firstId: number, finalId: number): SpotDepthVerdict {
    if (this.snapshotId < 0) return "no_snapshot";
    const position = this.position;
    if (finalId <= position) {
      if (!this.synced || this.applied.has(finalId)) return "stale";
      return finalId < position ? "backwards" : "stale";
    }
    if (firstId > position + 1) return this.synced ? "gap" : "snapshot_too_old";
    this.lastApplied = finalId;
    this.applied.take(finalId);
    return "apply";
  }
}

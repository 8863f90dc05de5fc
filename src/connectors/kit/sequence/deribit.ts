/**
 * Sequence policy for Deribit books (change_id/prev_change_id), pure: it only sees ids
 * (https://docs.deribit.com/subscriptions/orderbook/bookinstrument_nameinterval).
 */
import { RecentKeys } from "../../dedup.ts";
import type { SequenceVerdict } from "./verdict.ts";

/** The verdicts this policy gives (kit/sequence/verdict.ts). */
export type ChangeIdVerdict = Extract<SequenceVerdict, "snapshot" | "apply" | "no_snapshot" | "duplicate" | "gap" | "backwards">;

/**
 * change_id continuity of one book, apart from transport: a message without `prev_change_id` is a
 * snapshot; otherwise `prev_change_id` must equal the last `change_id` seen. A change that breaks the
 * chain is a duplicate only when its change_id was taken moments ago (dedup.ts); one below the last
 * that was never taken is `backwards` (the ids went back, or the last one was too high), any other a `gap`.
 */
export class ChangeIdSequence {
  private last: number | undefined;
  private readonly taken = new RecentKeys();

  get lastChangeId(): number | undefined {
    return this.last;
  }

  reset(): void {
    this.last = undefined;
  }

  check(changeId: number, prevChangeId: number | undefined): ChangeIdVerdict {
    if (prevChangeId === undefined) {
      this.advance(changeId);
      return "snapshot";
    }
    if (this.last === undefined) return "no_snapshot";
    if (prevChangeId === this.last) {
      this.advance(changeId);
      return "apply";
    }
    if (this.taken.has(changeId)) return "duplicate";
    return changeId < this.last ? "backwards" : "gap";
  }

  private advance(changeId: number): void {
    this.last = changeId;
    this.taken.take(changeId);
  }
}

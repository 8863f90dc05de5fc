/**
 * Sequence policy for Deribit books (change_id/prev_change_id), pure: it only sees ids
 * (https://docs.deribit.com/subscriptions/orderbook/bookinstrument_nameinterval).
 */
import { AppliedIds } from "./applied-ids.ts";
import type { SequenceVerdict } from "./verdict.ts";

/** The verdicts this policy gives (kit/sequence/verdict.ts). */
export type ChangeIdVerdict = Extract<SequenceVerdict, "snapshot" | "apply" | "no_snapshot" | "duplicate" | "gap" | "backwards">;

/**
 * change_id continuity of one book, apart from transport: a message without `prev_change_id` is a
 * snapshot; otherwise `prev_change_id` must equal the last `change_id` seen. A change that breaks the
 * chain is judged by applied-ids.ts: a `duplicate` when its change_id was taken moments ago, `backwards`
 * when below the last one, any other a `gap`.
 */
export class ChangeIdSequence {
  /** The change_ids taken (none before the first snapshot), and the recent ones. */
  private readonly taken = new AppliedIds(0);

  get lastChangeId(): number | undefined {
    return this.taken.started ? this.taken.last : undefined;
  }

  reset(): void {
    this.taken.restart();
  }

  check(changeId: number, prevChangeId: number | undefined): ChangeIdVerdict {
    if (prevChangeId === undefined) {
      this.taken.take(changeId);
      return "snapshot";
    }
    if (!this.taken.started) return "no_snapshot";
    if (prevChangeId === this.taken.last) {
      this.taken.take(changeId);
      return "apply";
    }
    return this.taken.judgeBreak(changeId, "duplicate");
  }
}

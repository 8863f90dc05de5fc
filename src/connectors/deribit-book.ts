/**
 * Deribit book integrity, apart from transport: the change_id chain of one book and the reading of
 * `[action, price, amount]` levels (https://docs.deribit.com/subscriptions/orderbook/bookinstrument_nameinterval).
 */

export type SequenceVerdict = "snapshot" | "next" | "awaiting_snapshot" | "duplicate" | "gap";

/**
 * change_id continuity of one book, apart from transport: a message without `prev_change_id` is a
 * snapshot; otherwise `prev_change_id` must equal the last `change_id` seen.
 */
export class ChangeIdSequence {
  private last: number | undefined;

  get lastChangeId(): number | undefined {
    return this.last;
  }

  reset(): void {
    this.last = undefined;
  }

  check(changeId: number, prevChangeId: number | undefined): SequenceVerdict {
    if (prevChangeId === undefined) {
      this.last = changeId;
      return "snapshot";
    }
    if (this.last === undefined) return "awaiting_snapshot";
    if (prevChangeId === this.last) {
      this.last = changeId;
      return "next";
    }
    return changeId <= this.last ? "duplicate" : "gap";
  }
}

/** `[action, price, amount]` levels into `[price, amount, ...]`; `delete` becomes amount 0. */
export function flattenLevels(levels: unknown, out: number[]): boolean {
  if (levels === undefined) return true;
  if (!Array.isArray(levels)) return false;
  for (const level of levels) {
    if (!Array.isArray(level) || level.length < 3) return false;
    const action = level[0];
    const price = Number(level[1]);
    const amount = action === "delete" ? 0 : Number(level[2]);
    if ((action !== "new" && action !== "change" && action !== "delete") || !Number.isFinite(price) || !(amount >= 0)) {
      return false;
    }
    out.push(price, amount);
  }
  return true;
}

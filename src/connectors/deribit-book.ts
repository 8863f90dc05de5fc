/**
 * Deribit book integrity, apart from transport: the change_id chain of one book and the reading of
 * `[action, price, amount]` levels (https://docs.deribit.com/subscriptions/orderbook/bookinstrument_nameinterval).
 */

import { RecentKeys } from "./dedup.ts";
import { jsonFinite } from "./json-scan.ts";

export type SequenceVerdict = "snapshot" | "next" | "awaiting_snapshot" | "duplicate" | "gap" | "backwards";

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

  check(changeId: number, prevChangeId: number | undefined): SequenceVerdict {
    if (prevChangeId === undefined) {
      this.advance(changeId);
      return "snapshot";
    }
    if (this.last === undefined) return "awaiting_snapshot";
    if (prevChangeId === this.last) {
      this.advance(changeId);
      return "next";
    }
    if (this.taken.has(changeId)) return "duplicate";
    return changeId < this.last ? "backwards" : "gap";
  }

  private advance(changeId: number): void {
    this.last = changeId;
    this.taken.take(changeId);
  }
}

/**
 * `[action, price, amount]` levels into `[price, amount, ...]`; `delete` becomes amount 0. A price must
 * be a finite JSON number above 0, an amount one of 0 or more (json-scan.ts); false otherwise.
 */
export function flattenLevels(levels: unknown, out: number[]): boolean {
  if (levels === undefined) return true;
  if (!Array.isArray(levels)) return false;
  for (const level of levels) {
    if (!Array.isArray(level) || level.length < 3) return false;
    const action = level[0];
    const price = jsonFinite(level[1]);
    const amount = action === "delete" ? 0 : jsonFinite(level[2]);
    if ((action !== "new" && action !== "change" && action !== "delete") || !(price > 0) || !(amount >= 0)) {
      return false;
    }
    out.push(price, amount);
  }
  return true;
}

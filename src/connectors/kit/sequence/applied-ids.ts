/**
 * What every id-chain policy whose ids only grow (Binance U/u/pu, Deribit change_id) does with a delta
 * that does not continue the chain. It is a repeat when its id was applied moments ago (a re-sent frame,
 * a handover overlap: dropped, never re-applied); `backwards` when it is below the last applied id and
 * was never applied (the ids went back, or the last one was too high: the book restarts); otherwise a
 * `gap`. Dropping every id not above the last one instead would let a single too-high id silence the book
 * for good.
 */
import { RecentKeys } from "../../dedup.ts";
import type { SequenceVerdict } from "./verdict.ts";

export class AppliedIds {
  private readonly none: number;
  private lastId: number;
  private taken = false;
  private readonly recent = new RecentKeys();

  /**
   * `none`: what `last` is before the first id of a chain is applied. `started` tells whether one was, so
   * a policy need not reserve a value: a NaN sentinel made the frame loop around the Deribit policy
   * several times slower under JSC in a same-input micro-benchmark.
   */
  constructor(none: number) {
    this.none = none;
    this.lastId = none;
  }

  /** The id applied last in this chain, or `none`. */
  get last(): number {
    return this.lastId;
  }

  /** True once an id has been applied in this chain. */
  get started(): boolean {
    return this.taken;
  }

  /** Notes `id` as applied: the chain continues from it. */
  take(id: number): void {
    this.lastId = id;
    this.taken = true;
    this.recent.take(id);
  }

  /** A new chain (after a snapshot or a reset): no id applied in it yet; recent ids stay known as repeats. */
  restart(): void {
    this.lastId = this.none;
    this.taken = false;
  }

  /**
   * The verdict on a delta with id `id` that does not continue the chain; `repeat` is the policy's own
   * verdict for a repeat (`stale` or `duplicate`).
   */
  judgeBreak<Repeat extends SequenceVerdict>(id: number, repeat: Repeat): Repeat | "backwards" | "gap" {
    if (this.recent.has(id)) return repeat;
    return id < this.lastId ? "backwards" : "gap";
  }
}

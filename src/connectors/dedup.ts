/**
 * Duplicate suppression for a venue stream whose events carry a growing key (trade id, update id,
 * change_id, event time), shared by every connector that drops repeats.
 *
 * Repeats come from two overlaps only: a make-before-break handover, where two connections deliver the
 * same events for a moment, and a venue sending again what a connection already delivered (a re-sent
 * frame, a replay after a reconnect). Both repeat keys taken moments ago, so a key is a duplicate only
 * when it is one of the last `capacity` keys taken. A key below the last one that was never taken is a
 * **reset**: the venue's ids went backwards (a relisted symbol restarts its trade ids), an earlier key was
 * too high, or an event came late. It is taken, and the caller marks it with a gap row (`id_reset`). A
 * rule of "anything not above the highest key is a duplicate" would let one too-high id silence a stream
 * for good.
 *
 * Cost: a key above every remembered one is one comparison and one store into a ring; only other keys
 * (repeats, resets, and keys after a reset while the too-high one is remembered) scan the ring.
 */

/** Keys remembered per stream: far more than the few events two overlapping connections share. */
export const RECENT_KEYS = 256;

export type KeyVerdict =
  /** Above the last key: take it. */
  | "new"
  /** One of the recently taken keys: drop it. */
  | "duplicate"
  /** Below the last key and not recently taken: take it, and mark the reset. */
  | "reset";

export class RecentKeys {
  private readonly ring: Float64Array;
  private next = 0;
  private size = 0;
  private lastKey = Number.NEGATIVE_INFINITY;
  /**
   * At least the largest key in the ring. Above it a key cannot be a repeat: the common case costs one
   * comparison. After a reset the ring holds keys above the last one (the too-high one), and keys up to
   * this bound are looked up until it leaves the ring.
   */
  private highest = Number.NEGATIVE_INFINITY;

  constructor(capacity = RECENT_KEYS) {
    this.ring = new Float64Array(capacity);
  }

  /** The key taken last (-Infinity before the first). */
  get last(): number {
    return this.lastKey;
  }

  /** Classifies `key` and, unless it is a duplicate, takes it: it becomes the last key. */
  take(key: number): KeyVerdict {
    if (key > this.highest) {
      this.record(key);
      return "new";
    }
    if (this.has(key)) return "duplicate";
    const verdict = key > this.lastKey ? "new" : "reset";
    this.record(key);
    return verdict;
  }

  /** True when `key` is one of the recently taken keys. */
  has(key: number): boolean {
    const ring = this.ring;
    // Newest first: a repeat is nearly always of the last few keys.
    for (let n = 0, i = this.next; n < this.size; n++) {
      i = i === 0 ? ring.length - 1 : i - 1;
      if (ring[i] === key) return true;
    }
    return false;
  }

  clear(): void {
    this.next = 0;
    this.size = 0;
    this.lastKey = Number.NEGATIVE_INFINITY;
    this.highest = Number.NEGATIVE_INFINITY;
  }

  private record(key: number): void {
    const ring = this.ring;
    const evicted = this.size === ring.length ? ring[this.next]! : Number.NEGATIVE_INFINITY;
    ring[this.next] = key;
    this.next = this.next + 1 === ring.length ? 0 : this.next + 1;
    if (this.size < ring.length) this.size++;
    this.lastKey = key;
    if (key > this.highest) this.highest = key;
    else if (evicted === this.highest) {
      // The largest key left the ring (only after a reset, keys growing never evict it): find the next.
      let highest = Number.NEGATIVE_INFINITY;
      for (let i = 0; i < this.size; i++) if (ring[i]! > highest) highest = ring[i]!;
      this.highest = highest;
    }
  }
}

/**
 * Request pacing shared by every venue: how fast subscribe requests, new connections and REST calls may
 * go. Two shapes cover the documented limits:
 * - a token bucket (`burst` at once, then `perSecond` sustained): Binance's messages per second per
 *   connection, Deribit's subscribe credits, OKX's connections and REST calls per IP (burst 1 = even
 *   spacing);
 * - a sliding window (at most `count` in any `windowMs`): OKX's subscribe operations per hour.
 */
import { sleep } from "../../core/clock.ts";

export class TokenBucket {
  private tokens: number;
  private refilledAt: number;

  constructor(
    private readonly burst: number,
    private readonly perSecond: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tokens = burst;
    this.refilledAt = now();
  }

  /** Takes a token and returns 0, or takes none and returns how many ms until one is available. */
  take(): number {
    this.refill();
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - this.tokens) / this.perSecond) * 1000);
  }

  /** Books the next free slot, even one in the future; resolves when it comes (callers keep their order). */
  async reserve(): Promise<void> {
    this.refill();
    this.tokens -= 1;
    if (this.tokens < 0) await sleep((-this.tokens / this.perSecond) * 1000);
  }

  private refill(): void {
    const now = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.refilledAt) / 1000) * this.perSecond);
    this.refilledAt = now;
  }
}

/** At most `count` takes in any `windowMs`. */
export class SlidingWindow {
  private readonly times: number[] = [];

  constructor(
    private readonly count: number,
    private readonly windowMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Takes `n` slots at once and returns true, or takes none and returns false when they do not fit. */
  take(n = 1): boolean {
    const now = this.now();
    while (this.times.length > 0 && now - this.times[0]! > this.windowMs) this.times.shift();
    if (this.times.length + n > this.count) return false;
    for (let i = 0; i < n; i++) this.times.push(now);
    return true;
  }

  /** Forgets every take (a new connection has a fresh budget). */
  clear(): void {
    this.times.length = 0;
  }
}

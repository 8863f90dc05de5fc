/**
 * Event-loop responsiveness, for /healthz and the `xtrader_event_loop_lag_seconds` histogram.
 *
 * A timer fires every `intervalMs`; how late it fires is the time the loop spent on other work (parsing a
 * burst, a long GC, a blocking call). Measured with a plain timer rather than perf_hooks so the number
 * means the same under Bun's compiled binary as anywhere else. The counts are plain numbers, read at
 * scrape time like every other counter.
 */

/** Upper bounds (seconds) of the lag histogram buckets; the last slot counts everything above. */
export const EVENT_LOOP_LAG_BUCKETS_SECONDS: readonly number[] = [
  0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];

export interface EventLoopMonitorOptions {
  /** How often the probe timer fires (default 200 ms). */
  readonly intervalMs?: number;
  /** How far back /healthz looks for a stall (default 30 s): the worst lag of the last 1–2 windows counts. */
  readonly windowMs?: number;
}

export class EventLoopMonitor {
  readonly intervalMs: number;
  readonly windowMs: number;
  /** counts[i] = samples with lag <= bound i (not cumulative); the last slot = above every bound. */
  readonly counts = new Float64Array(EVENT_LOOP_LAG_BUCKETS_SECONDS.length + 1);
  count = 0;
  sumSeconds = 0;
  private timer: ReturnType<typeof setInterval> | undefined;
  private lastTickAt = 0;
  private windowStartedAt = 0;
  private currentWindowMaxMs = 0;
  private previousWindowMaxMs = 0;

  constructor(options: EventLoopMonitorOptions = {}) {
    this.intervalMs = options.intervalMs ?? 200;
    this.windowMs = options.windowMs ?? 30_000;
  }

  start(): void {
    if (this.timer) return;
    this.lastTickAt = performance.now();
    this.windowStartedAt = this.lastTickAt;
    this.timer = setInterval(() => this.tick(), this.intervalMs);
    // The probe must never be what keeps the process alive.
    this.timer.unref?.();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /**
   * The worst lag (seconds) seen within the last one to two windows, including a delay still in progress
   * (the probe timer is overdue right now).
   */
  recentMaxLagSeconds(): number {
    const overdueMs = this.timer ? Math.max(0, performance.now() - this.lastTickAt - this.intervalMs) : 0;
    return Math.max(this.currentWindowMaxMs, this.previousWindowMaxMs, overdueMs) / 1000;
  }

  private tick(): void {
    const now = performance.now();
    const lagMs = Math.max(0, now - this.lastTickAt - this.intervalMs);
    this.lastTickAt = now;
    if (now - this.windowStartedAt >= this.windowMs) {
      this.previousWindowMaxMs = this.currentWindowMaxMs;
      this.currentWindowMaxMs = 0;
      this.windowStartedAt = now;
    }
    if (lagMs > this.currentWindowMaxMs) this.currentWindowMaxMs = lagMs;
    this.record(lagMs / 1000);
  }

  private record(lagSeconds: number): void {
    let i = 0;
    while (i < EVENT_LOOP_LAG_BUCKETS_SECONDS.length && lagSeconds > EVENT_LOOP_LAG_BUCKETS_SECONDS[i]!) i++;
    this.counts[i]!++;
    this.count++;
    this.sumSeconds += lagSeconds;
  }
}

/**
 * `--verbose` telemetry: one line per subscription every interval (10 s; XTRADER_TELEMETRY_INTERVAL_SECONDS
 * for trials), with rates over the interval and totals since start. Reads the same counters as /metrics.
 */
import type { BoundedChannel } from "./channel.ts";
import type { Logger } from "./log.ts";
import type { SinkStats } from "./stats.ts";
import type { Subscription } from "./subscriptions.ts";

interface Previous {
  messages: number;
  events: number;
  at: number;
  lag: Float64Array;
}

export function formatMicros(micros: number | undefined): string {
  if (micros === undefined) return "-";
  if (!Number.isFinite(micros)) return ">60s";
  if (micros < 1000) return `${micros}us`;
  if (micros < 1_000_000) return `${+(micros / 1000).toFixed(1)}ms`;
  return `${+(micros / 1_000_000).toFixed(1)}s`;
}

export function telemetryLine(
  subscription: Subscription,
  previous: Previous,
  now: number,
  queueRows: number,
  rssBytes: number,
): string {
  const stats = subscription.stats;
  const seconds = Math.max(0.001, (now - previous.at) / 1000);
  const rate = (value: number) => (value / seconds).toFixed(1);
  return [
    subscription.key,
    `msgs/s=${rate(stats.messages - previous.messages)}`,
    `events/s=${rate(stats.events - previous.events)}`,
    `rows=${stats.rowsWritten}`,
    `reconnects=${stats.reconnects}`,
    `gaps=${stats.gaps}`,
    `resyncs=${stats.resyncs}`,
    `parse_errors=${stats.parseErrors}`,
    `dropped=${stats.dropped}`,
    `lag_p50=${formatMicros(stats.lag.quantile(0.5, previous.lag))}`,
    `lag_p99=${formatMicros(stats.lag.quantile(0.99, previous.lag))}`,
    `queue=${queueRows}`,
    `rss=${Math.round(rssBytes / (1024 * 1024))}MB`,
  ].join(" ");
}

/** Starts the periodic report; returns a function that stops it. */
export function startTelemetry(
  subscriptions: readonly Subscription[],
  channel: BoundedChannel,
  sinkStats: SinkStats,
  log: Logger,
  intervalMs: number,
): () => void {
  const previous = new Map<Subscription, Previous>();
  const remember = (subscription: Subscription, at: number) =>
    previous.set(subscription, {
      messages: subscription.stats.messages,
      events: subscription.stats.events,
      at,
      lag: subscription.stats.lag.snapshot(),
    });
  const started = performance.now();
  for (const subscription of subscriptions) remember(subscription, started);
  const timer = setInterval(() => {
    const now = performance.now();
    const rss = process.memoryUsage.rss();
    for (const subscription of subscriptions) {
      log.info(telemetryLine(subscription, previous.get(subscription)!, now, channel.depthRows, rss));
      remember(subscription, now);
    }
    log.info(
      `sink rows_written=${sinkStats.rowsWritten} buffered=${sinkStats.bufferedRows} dropped=${sinkStats.droppedRows} errors=${sinkStats.errors} queue_high_water=${channel.highWaterRows}`,
    );
  }, intervalMs);
  timer.unref?.();
  return () => clearInterval(timer);
}

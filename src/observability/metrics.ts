/**
 * The Prometheus registry behind /metrics, on prom-client (exposition format, escaping, content type).
 *
 * Nothing here is updated on the hot path: every value is read at scrape time from the counters in
 * src/core/stats.ts (SubscriptionStats per subscription, SinkStats) and the pipeline's channel — the same
 * objects the `--verbose` telemetry lines read — so the two can never disagree. Counters are therefore
 * rebuilt in each metric's `collect()`, and the two histograms are already bucketed where they are
 * recorded, so they are exposed by a small Histogram subclass that reports those buckets as they are.
 *
 * Labels: per subscription `exchange`, `stream`, `symbol`; per sink `sink`. Times in seconds, sizes in
 * bytes, as Prometheus naming asks.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { socketCounters } from "../connectors/websocket.ts";
import type { BoundedChannel } from "../core/channel.ts";
import { LAG_BUCKETS_US, type LagHistogram, type SinkStats, type SubscriptionStats } from "../core/stats.ts";
import type { Subscription } from "../core/subscriptions.ts";
import { EVENT_LOOP_LAG_BUCKETS_SECONDS, type EventLoopMonitor } from "./event-loop.ts";
import type { Readiness } from "./readiness.ts";

export interface MetricsSources {
  readonly subscriptions: readonly Subscription[];
  readonly sinkName: string;
  readonly sinkStats: SinkStats;
  readonly channel: Pick<BoundedChannel, "depthRows" | "highWaterRows" | "capacityRows" | "droppedEvents" | "droppedRows">;
  readonly eventLoop: EventLoopMonitor;
  readonly readiness: Readiness;
}

const SUBSCRIPTION_LABELS = ["exchange", "stream", "symbol"] as const;
type SubscriptionLabel = (typeof SUBSCRIPTION_LABELS)[number];
type SubscriptionLabels = Record<SubscriptionLabel, string>;

/** Bucket counts as recorded (not cumulative; last slot = above every bound), with their sum and count. */
interface BucketedSamples {
  readonly counts: ArrayLike<number>;
  readonly sum: number;
  readonly count: number;
}

type HistogramOutput<L extends string> = Awaited<ReturnType<Histogram<L>["get"]>>;
type GaugeOutput<L extends string> = Awaited<ReturnType<Gauge<L>["get"]>>;

/**
 * One sample as prom-client's registry renders it. `sharedLabels` is the form prom-client's own histograms
 * use: the registry flattens such a label set once and caches the text by object identity (a WeakMap), so a
 * label set kept from scrape to scrape is escaped and joined once, not on every scrape; of `labels`
 * (complete, for getMetricsAsJSON()) only what is not shared is formatted per sample. With 280
 * subscriptions, formatting every label set on every scrape was most of a ~13 ms scrape of a ~0.9 MB page.
 */
interface PromValue {
  readonly labels: Readonly<Record<string, string | number>>;
  readonly sharedLabels: Readonly<Record<string, string>>;
  readonly value: number;
  readonly metricName?: string;
}

/**
 * A counter or gauge with one sample per subscription, read at scrape time (nothing to reset or set on
 * every scrape, no label hashing). prom-client writes `# TYPE` from `type`, so one class serves both.
 * For the Prometheus text format, the registry's default (in OpenMetrics mode prom-client would append a
 * second `_total` to these counter names).
 */
class PerSubscriptionMetric extends Gauge<SubscriptionLabel> {
  constructor(
    private readonly metricName: string,
    private readonly helpText: string,
    private readonly type: "counter" | "gauge",
    private readonly samples: () => Iterable<readonly [Readonly<SubscriptionLabels>, number]>,
    registry: Registry,
  ) {
    super({ name: metricName, help: helpText, labelNames: SUBSCRIPTION_LABELS, registers: [registry] });
  }

  override async get(): Promise<GaugeOutput<SubscriptionLabel>> {
    const values: PromValue[] = [];
    // `labels` too, so getMetricsAsJSON() has them; the text renderer skips labels that are shared.
    for (const [labels, value] of this.samples()) values.push({ labels, sharedLabels: labels, value });
    const output = { name: this.metricName, help: this.helpText, type: this.type, aggregator: "sum", values };
    return output as unknown as GaugeOutput<SubscriptionLabel>;
  }
}

/**
 * A Histogram whose buckets are counted elsewhere (LagHistogram, EventLoopMonitor) and only reported
 * here; `observe()` is never used. prom-client renders a histogram from `get()` (or, in v15, from
 * `getForPromString()` when present), so both report the pre-counted buckets.
 */
class BucketedHistogram<L extends string> extends Histogram<L> {
  constructor(
    private readonly metricName: string,
    private readonly helpText: string,
    labelNames: readonly L[],
    private readonly bounds: readonly number[],
    private readonly read: () => Iterable<readonly [Readonly<Record<L, string>>, BucketedSamples]>,
    registry: Registry,
  ) {
    super({ name: metricName, help: helpText, labelNames, buckets: [...bounds], registers: [registry] });
  }

  /** Per label set, its labels plus `le` for every bucket, made once: only the counts change. */
  private readonly bucketLabels = new WeakMap<object, readonly Readonly<Record<string, string | number>>[]>();

  override async get(): Promise<HistogramOutput<L>> {
    const bucket = `${this.metricName}_bucket`;
    const sum = `${this.metricName}_sum`;
    const count = `${this.metricName}_count`;
    const values: PromValue[] = [];
    for (const [labels, samples] of this.read()) {
      let withLe = this.bucketLabels.get(labels);
      if (!withLe) {
        withLe = [...this.bounds.map((le) => ({ ...labels, le })), { ...labels, le: "+Inf" }];
        this.bucketLabels.set(labels, withLe);
      }
      let cumulative = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        cumulative += samples.counts[i]!;
        values.push({ labels: withLe[i]!, sharedLabels: labels, value: cumulative, metricName: bucket });
      }
      values.push({ labels: withLe[this.bounds.length]!, sharedLabels: labels, value: samples.count, metricName: bucket });
      values.push({ labels, sharedLabels: labels, value: samples.sum, metricName: sum });
      values.push({ labels, sharedLabels: labels, value: samples.count, metricName: count });
    }
    // `type` is the string written after "# TYPE" (the .d.ts declares an enum that does not exist at run time).
    const output = { name: this.metricName, help: this.helpText, type: "histogram", aggregator: "sum", values };
    return output as unknown as HistogramOutput<L>;
  }

  async getForPromString(): Promise<HistogramOutput<L>> {
    return this.get();
  }
}

const LAG_BUCKETS_SECONDS = LAG_BUCKETS_US.map((micros) => micros / 1e6);

function lagSamples(lag: LagHistogram): BucketedSamples {
  return { counts: lag.counts, sum: lag.sumMicros / 1e6, count: lag.count };
}

export function createMetricsRegistry(sources: MetricsSources): Registry {
  const registry = new Registry();
  const { subscriptions, sinkStats, channel, readiness } = sources;
  const labelsOf = new Map<Subscription, SubscriptionLabels>(
    subscriptions.map((subscription) => [
      subscription,
      { exchange: subscription.exchange, stream: subscription.stream, symbol: subscription.symbol },
    ]),
  );
  const sinkLabels = { sink: sources.sinkName };

  const perSubscription = (read: (subscription: Subscription) => number) =>
    function* () {
      for (const subscription of subscriptions) yield [labelsOf.get(subscription)!, read(subscription)] as const;
    };
  const subscriptionCounter = (name: string, help: string, read: (stats: SubscriptionStats) => number) =>
    new PerSubscriptionMetric(name, help, "counter", perSubscription((subscription) => read(subscription.stats)), registry);
  const subscriptionGauge = (name: string, help: string, read: (subscription: Subscription) => number) =>
    new PerSubscriptionMetric(name, help, "gauge", perSubscription(read), registry);
  const sinkCounter = (name: string, help: string, read: () => number) =>
    new Counter({
      name,
      help,
      labelNames: ["sink"],
      registers: [registry],
      collect() {
        this.reset();
        this.inc(sinkLabels, read());
      },
    });
  const sinkGauge = (name: string, help: string, read: () => number) =>
    new Gauge({ name, help, labelNames: ["sink"], registers: [registry], collect() { this.set(sinkLabels, read()); } });
  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({ name, help, registers: [registry], collect() { this.set(read()); } });
  const counter = (name: string, help: string, read: () => number) =>
    new Counter({ name, help, registers: [registry], collect() { this.reset(); this.inc(read()); } });

  // Per subscription.
  subscriptionCounter("xtrader_messages_received_total", "Exchange messages received for the subscription", (s) => s.messages);
  subscriptionCounter("xtrader_events_received_total", "Normalized events produced for the subscription (gap markers included)", (s) => s.events);
  subscriptionCounter("xtrader_rows_written_total", "Rows of the subscription accepted by the sink (one per level for L2)", (s) => s.rowsWritten);
  subscriptionCounter("xtrader_parse_errors_total", "Exchange messages that could not be parsed", (s) => s.parseErrors);
  subscriptionCounter("xtrader_reconnects_total", "Reconnections of the subscription's connection", (s) => s.reconnects);
  subscriptionCounter("xtrader_gaps_total", "Gap markers written (data may be missing around them)", (s) => s.gaps);
  subscriptionCounter("xtrader_resyncs_total", "Order book resyncs (fresh snapshot requested)", (s) => s.resyncs);
  subscriptionCounter("xtrader_resyncs_delayed_total", "Book snapshots held back because the book kept resyncing", (s) => s.resyncsDelayed);
  subscriptionCounter("xtrader_events_dropped_total", "Events dropped because the queue was full or the sink failed", (s) => s.dropped);
  // Before the first message the age counts from the start of the process, so an alert on it also fires
  // for a subscription that never received anything.
  subscriptionGauge(
    "xtrader_seconds_since_last_message",
    "Seconds since the last exchange message of the subscription (since start when none yet)",
    (subscription) => readiness.secondsSinceLastMessage(subscription) ?? process.uptime(),
  );
  subscriptionGauge(
    "xtrader_last_message_timestamp_seconds",
    "Receive time of the last exchange message, Unix seconds (0 before the first)",
    (subscription) => subscription.stats.lastMessageAt / 1e6,
  );
  subscriptionGauge(
    "xtrader_staleness_window_seconds",
    "Staleness window used by /readyz (+Inf when the stream is not checked)",
    (subscription) => readiness.windowOf(subscription) ?? Number.POSITIVE_INFINITY,
  );
  subscriptionGauge(
    "xtrader_subscription_ready",
    "1 when the subscription received data within its staleness window, else 0",
    (subscription) => (readiness.subscriptionProblem(subscription) === undefined ? 1 : 0),
  );
  new BucketedHistogram(
    "xtrader_exchange_lag_seconds",
    "Exchange event time to local receive time",
    SUBSCRIPTION_LABELS,
    LAG_BUCKETS_SECONDS,
    () => subscriptions.map((subscription) => [labelsOf.get(subscription)!, lagSamples(subscription.stats.lag)] as const),
    registry,
  );

  // Sink.
  sinkCounter("xtrader_sink_rows_written_total", "Rows durably handed to the destination (flushed)", () => sinkStats.rowsWritten);
  sinkGauge("xtrader_sink_buffered_rows", "Rows accepted by the sink and not yet flushed", () => sinkStats.bufferedRows);
  sinkCounter("xtrader_sink_dropped_rows_total", "Rows lost by the sink (buffer bound exceeded, unrecoverable error)", () => sinkStats.droppedRows);
  sinkCounter("xtrader_sink_refused_rows_total", "Rows the destination refused (QuestDB: a table whose columns do not match), set aside in a file", () => sinkStats.refusedRows);
  sinkCounter("xtrader_sink_flushes_total", "Successful flushes", () => sinkStats.flushes);
  sinkCounter("xtrader_sink_flush_seconds_total", "Time spent in successful flushes (divide by flushes for the mean latency)", () => sinkStats.flushSecondsTotal);
  sinkGauge("xtrader_sink_last_flush_seconds", "Duration of the last successful flush", () => sinkStats.lastFlushSeconds);
  sinkCounter("xtrader_sink_errors_total", "Write and flush failures", () => sinkStats.errors);
  sinkCounter("xtrader_sink_files_opened_total", "Files opened by the sink", () => sinkStats.filesOpened);
  sinkCounter("xtrader_sink_files_closed_total", "Files closed (complete) by the sink", () => sinkStats.filesClosed);
  sinkGauge("xtrader_sink_files_open", "Files currently open", () => sinkStats.filesOpened - sinkStats.filesClosed);
  sinkCounter("xtrader_sink_outage_seconds_total", "Seconds the destination was unreachable, the current outage included", () => sinkStats.outageSeconds());
  sinkGauge("xtrader_sink_outage", "1 while the destination is unreachable", () => (sinkStats.outageSince > 0 ? 1 : 0));
  sinkGauge("xtrader_sink_writable", "1 when /readyz considers the sink writable", () => (readiness.sink.problem() === undefined ? 1 : 0));

  // Queue between connectors and the sink.
  gauge("xtrader_queue_rows", "Rows queued between connectors and the sink", () => channel.depthRows);
  gauge("xtrader_queue_capacity_rows", "Bound of the queue, in rows", () => channel.capacityRows);
  gauge("xtrader_queue_high_water_rows", "Most rows ever queued at once", () => channel.highWaterRows);
  counter("xtrader_queue_dropped_events_total", "Events that did not fit in the queue", () => channel.droppedEvents);
  counter("xtrader_queue_dropped_rows_total", "Rows that did not fit in the queue", () => channel.droppedRows);

  // Connections.
  counter(
    "xtrader_oversized_frames_total",
    "WebSocket messages over XTRADER_MAX_FRAME_BYTES; each closed its connection (gap rows, resync)",
    () => socketCounters.oversizedFrames,
  );

  // Process. Standard names so existing dashboards work; only what Bun reports truthfully.
  gauge("process_resident_memory_bytes", "Resident memory size in bytes", () => process.memoryUsage.rss());
  const cpu = () => process.cpuUsage();
  counter("process_cpu_user_seconds_total", "User CPU time spent, seconds", () => cpu().user / 1e6);
  counter("process_cpu_system_seconds_total", "System CPU time spent, seconds", () => cpu().system / 1e6);
  const startTimeSeconds = Math.floor(Date.now() - process.uptime() * 1000) / 1000;
  gauge("process_start_time_seconds", "Start time of the process since the Unix epoch, seconds", () => startTimeSeconds);
  const eventLoop = sources.eventLoop;
  new BucketedHistogram(
    "xtrader_event_loop_lag_seconds",
    `How late a ${eventLoop.intervalMs} ms probe timer fired: time the event loop was busy elsewhere`,
    [],
    EVENT_LOOP_LAG_BUCKETS_SECONDS,
    () => [[{}, { counts: eventLoop.counts, sum: eventLoop.sumSeconds, count: eventLoop.count }] as const],
    registry,
  );
  gauge("xtrader_event_loop_lag_recent_max_seconds", "Worst event-loop lag within the /healthz window", () => eventLoop.recentMaxLagSeconds());
  return registry;
}

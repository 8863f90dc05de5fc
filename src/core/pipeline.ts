/**
 * The pipeline owns the lifecycle: it starts the sink and one connector per exchange, routes every
 * normalized event through the bounded channel to the sink, and stops in order on shutdown:
 * connectors first (no new events), then the channel is drained into the sink, then the sink is flushed
 * and closed.
 *
 * Overflow policy (the sink cannot keep up and the channel is full), see docs/architecture.md:
 * - the event is dropped and counted (SubscriptionStats.dropped, channel counters) and a warning is logged
 *   at most once per 10 s per subscription with the count;
 * - for an L2 subscription, every further delta of that book is dropped until a fresh snapshot arrives,
 *   and once the queue has drained below half its bound the connector is asked to resync (gap marker +
 *   snapshot), so a consumer never applies deltas to a book with holes. Waiting for room means a sink that
 *   is away for long (QuestDB down) does not make every book refetch its snapshot again and again;
 * - for other streams, a gap marker (reason "overflow") is queued at the first drop of an episode.
 */
import { edenGC } from "bun:jsc";
import type { Connector, ExchangeRegistry, ExchangeSpec } from "./connector.ts";
import { lostRowCount, type CloseReport, type InterruptedStream, type Sink } from "./sink.ts";
import { TABLE_OF_EVENT, type TableName } from "./tables.ts";
import { BoundedChannel } from "./channel.ts";
import type { Config } from "./config.ts";
import { errorMessage } from "./errors.ts";
import { FaultLog } from "./fault-log.ts";
import { gapEvent, rowCount, type ExchangeId, type MarketEvent } from "./events.ts";
import type { Logger } from "./log.ts";
import { SinkStats } from "./stats.ts";
import type { Subscription } from "./subscriptions.ts";

export interface PipelineOptions {
  readonly config: Config;
  readonly registry: ExchangeRegistry;
  readonly sink: Sink;
  readonly sinkStats?: SinkStats;
  readonly log: Logger;
  /** Longest a graceful stop may take before the process gives up (default 15 s, env XTRADER_SHUTDOWN_TIMEOUT_SECONDS). */
  readonly shutdownTimeoutMs?: number;
  /** Longest the stop waits for the sink to take the queued rows before closing it anyway (default 4 s). */
  readonly drainTimeoutMs?: number;
  /** Events handed to the sink per write call. */
  readonly batchSize?: number;
  /** Rows handed to the sink between two young-generation collections (default 200,000; 0: never). */
  readonly youngCollectionRows?: number;
  /** The young-generation collection (default `bun:jsc` edenGC; tests count the calls). */
  readonly collectYoung?: () => void;
}

/** Exit code of a stop that completed but lost rows (0: nothing lost, 1: the stop failed or timed out). */
export const EXIT_ROWS_LOST = 3;

/** What a stop could not deliver: rows still queued plus the sink's CloseReport. */
export type StopOutcome = CloseReport;

/**
 * Why the consumer collects the young generation itself: JSC starts a collection only once ~188 MB were
 * allocated since the last one, and in a burst most of that is short-lived (frames, events, the sinks'
 * typed arrays: sealed pages, journal records, compressed output). Until it is collected every new
 * allocation takes fresh memory: page faults (~1.5 µs each here) and cold caches on the event loop, the
 * bottleneck of a burst. An eden collection every 200,000 rows (~12,000 messages; every few seconds at
 * steady load) is cheap, since almost nothing young survives, and keeps the allocator reusing warm memory.
 * Measured in docs/performance.md ("Consumer and pipeline").
 */
const YOUNG_COLLECTION_ROWS = 200_000;

export class Pipeline {
  readonly channel: BoundedChannel;
  readonly sinkStats: SinkStats;
  private readonly connectors = new Map<ExchangeId, Connector>();
  /** L2 subscriptions whose deltas are dropped until the next snapshot (after an overflow). */
  private readonly awaitingSnapshot = new Set<Subscription>();
  /** Non-L2 subscriptions inside an overflow episode (gap marker already queued). */
  private readonly overflowing = new Set<Subscription>();
  private readonly faults: FaultLog;
  /** L2 subscriptions to resync once the queue has room for their snapshot. */
  private readonly resyncWanted = new Set<Subscription>();
  private consumer: Promise<void> = Promise.resolve();
  private stopping: Promise<StopOutcome> | undefined;
  /** Set by a stop that closes the sink before it took the queue: the consumer hands it nothing more. */
  private abandonQueue = false;

  constructor(private readonly options: PipelineOptions) {
    this.sinkStats = options.sinkStats ?? new SinkStats();
    this.faults = new FaultLog(options.log);
    this.channel = new BoundedChannel(options.config.queueCapacityRows, (subscription, event) =>
      this.onDrop(subscription, event),
    );
  }

  get subscriptions(): readonly Subscription[] {
    return this.options.config.subscriptions;
  }

  get registry(): ExchangeRegistry {
    return this.options.registry;
  }

  /** Starts the sink, then every connector. Connection faults are handled inside connectors. */
  async start(): Promise<void> {
    const { config, registry, log, sink } = this.options;
    sink.onStreamsLost?.((lost) => this.restartLostStreams(lost));
    await sink.start();
    await this.markInterruptedStreams();
    this.consumer = this.consume();
    const byExchange = new Map<ExchangeId, Subscription[]>();
    for (const subscription of config.subscriptions) {
      const list = byExchange.get(subscription.exchange) ?? [];
      list.push(subscription);
      byExchange.set(subscription.exchange, list);
    }
    for (const [exchange, subscriptions] of byExchange) {
      const spec: ExchangeSpec = registry[exchange]!;
      const connector = spec.create({ emit: this.emit, log: log.withTag(exchange), config }, subscriptions);
      this.connectors.set(exchange, connector);
    }
    for (const [exchange, connector] of this.connectors) {
      log.info(
        `starting ${exchange}: ${byExchange
          .get(exchange)!
          .map((subscription) => `${subscription.stream}@${subscription.symbol}`)
          .join(", ")}`,
      );
      connector.start();
    }
  }

  /**
   * A previous run that died without a clean stop lost the rows it had not yet made durable: each stream
   * the sink found unfinished gets an `unclean_stop` gap, so the hole is marked in the data, not only in
   * a log line. Streams that are no longer subscribed are marked too (their rows are the ones lost).
   */
  private async markInterruptedStreams(): Promise<void> {
    const { config, registry, log, sink } = this.options;
    const interrupted = sink.interruptedStreams?.() ?? [];
    if (interrupted.length === 0) return;
    const detail = "the previous run stopped without a clean shutdown (killed, crashed or power lost); rows it received shortly before may be missing";
    const unsubscribed: MarketEvent[] = [];
    let marked = 0;
    for (const { exchange, symbol, stream } of interrupted) {
      // Partitions are named from our own events, so this is only a directory someone else made.
      if (!Object.hasOwn(registry, exchange)) continue;
      const target = { exchange, symbol, stream };
      const subscription = config.subscriptions.find((s) => s.exchange === exchange && s.symbol === symbol && s.stream === stream);
      if (subscription) this.emit(subscription, gapEvent(target, "unclean_stop", detail));
      else unsubscribed.push(gapEvent(target, "unclean_stop", detail));
      marked++;
    }
    // Streams no longer subscribed have no queue slot: handed to the sink directly, before the consumer
    // starts (one write at a time), and never silently lost.
    if (unsubscribed.length > 0) {
      try {
        await sink.write(unsubscribed);
      } catch (error) {
        this.sinkStats.droppedRows += unsubscribed.length;
        this.sinkStats.errors++;
        log.error(`sink ${sink.name} failed to accept ${unsubscribed.length} unclean_stop gap row(s): ${errorMessage(error)}`);
      }
    }
    log.warn(`the previous run did not stop cleanly: marked ${marked} stream(s) with an unclean_stop gap`);
  }

  /**
   * The sink lost rows it had stored (its files were deleted under it) and wrote an `output_lost` gap row
   * per stream: count those, and restart lost books from a fresh snapshot, as after an overflow.
   */
  private restartLostStreams(lost: readonly InterruptedStream[]): void {
    for (const { exchange, symbol, stream } of lost) {
      const subscription = this.subscriptions.find((s) => s.exchange === exchange && s.symbol === symbol && s.stream === stream);
      if (!subscription) continue;
      subscription.stats.gaps++;
      if (stream === "L2") {
        this.connectors.get(subscription.exchange)?.resync(subscription, "output_lost", "the stored book was lost with its output file; a fresh snapshot follows");
      }
    }
  }

  /** The connectors' emit: counts, applies the overflow policy and queues. Hot path. */
  readonly emit = (subscription: Subscription, event: MarketEvent): void => {
    const stats = subscription.stats;
    stats.events++;
    if (event.type === "gap") {
      stats.gaps++;
    } else {
      stats.lag.record(event.localTimestamp - event.timestamp);
      if (event.type === "book_change") {
        if (event.isSnapshot) {
          this.awaitingSnapshot.delete(subscription);
        } else if (this.awaitingSnapshot.has(subscription)) {
          stats.dropped++;
          this.channel.droppedEvents++;
          this.channel.droppedRows += rowCount(event);
          return;
        }
      }
    }
    // A normal event that fits ends the subscription's overflow episode (its own gap marker does not).
    if (this.channel.push(subscription, event) && this.overflowing.size > 0 && event.type !== "gap") {
      this.overflowing.delete(subscription);
    }
  };

  private onDrop(subscription: Subscription, event: MarketEvent): void {
    if (this.channel.closed) return;
    // One line per overload episode for the whole pipeline, not per subscription: with hundreds of
    // subscriptions a per-subscription line every 10 s buried everything else. The per-subscription
    // counts are in `dropped` (telemetry, /metrics).
    this.faults.report(
      "queue-full",
      () =>
        `sink is behind and the queue is full (${this.channel.depthRows} rows): dropping events, ` +
        `${this.channel.droppedEvents} so far (latest ${subscription.key})`,
    );

    if (subscription.stream === "L2") {
      const snapshotLost = event.type === "book_change" && event.isSnapshot;
      if (this.awaitingSnapshot.has(subscription) && !snapshotLost) return;
      const episodeStarts = !this.awaitingSnapshot.has(subscription);
      this.awaitingSnapshot.add(subscription);
      this.resyncWanted.add(subscription);
      // Mark the hole now (gaps fit in the channel's reserve): the resync's own gap and snapshot wait until
      // the queue drains, which may be never before a stop or a kill.
      if (episodeStarts && event.type !== "gap") {
        this.emit(
          subscription,
          gapEvent(subscription, "overflow", "book events dropped because the sink was behind; a fresh snapshot follows", event.localTimestamp),
        );
      }
      return;
    }
    if (event.type === "gap" || this.overflowing.has(subscription)) return;
    this.overflowing.add(subscription);
    this.emit(
      subscription,
      gapEvent(subscription, "overflow", "events dropped because the sink was behind", event.localTimestamp),
    );
  }

  private async consume(): Promise<void> {
    const { sink } = this.options;
    const batchSize = this.options.batchSize ?? 4096;
    const events: MarketEvent[] = [];
    const subscriptions: Subscription[] = [];
    const youngCollectionRows = this.options.youngCollectionRows ?? YOUNG_COLLECTION_ROWS;
    const collectYoung = this.options.collectYoung ?? edenGC;
    let rowsSinceCollection = 0;
    for (;;) {
      await this.channel.whenReadable();
      if (this.abandonQueue) return;
      const taken = this.channel.takeBatch(events, subscriptions, batchSize);
      if (taken === 0) {
        if (this.channel.closed) return;
        continue;
      }
      try {
        await sink.write(events);
        for (let i = 0; i < taken; i++) {
          const rows = rowCount(events[i]!);
          subscriptions[i]!.stats.rowsWritten += rows;
          rowsSinceCollection += rows;
        }
        if (this.resyncWanted.size > 0) this.requestResyncs();
      } catch (error) {
        // Sinks handle their own faults; an exception here is a bug or an unrecoverable write. Never
        // silent: count the rows as dropped and log.
        let rows = 0;
        for (let i = 0; i < taken; i++) {
          rows += rowCount(events[i]!);
          subscriptions[i]!.stats.dropped++;
        }
        this.sinkStats.droppedRows += rows;
        this.sinkStats.errors++;
        this.faults.report("sink-failed", `sink ${sink.name} failed to accept ${rows} row(s): ${errorMessage(error)}`, "error");
      }
      if (youngCollectionRows > 0 && rowsSinceCollection >= youngCollectionRows) {
        rowsSinceCollection = 0;
        collectYoung();
      }
      // A full batch means more is waiting: let sockets and timers run between batches.
      if (taken === batchSize) await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** Asks connectors for fresh snapshots of books that lost deltas, once half the queue is free for them. */
  private requestResyncs(): void {
    if (this.channel.closed || this.channel.depthRows > this.channel.capacityRows / 2) return;
    for (const subscription of this.resyncWanted) {
      this.resyncWanted.delete(subscription);
      this.connectors
        .get(subscription.exchange)
        ?.resync(subscription, "overflow", "events dropped because the sink was behind");
    }
  }

  /**
   * Stops connectors, drains the channel into the sink, closes the sink. Idempotent. Resolves with what
   * could not be delivered (rows still queued when the sink was closed, and the sink's CloseReport);
   * rejects if a step fails; the caller bounds the total time.
   */
  stop(reason: string): Promise<StopOutcome> {
    this.stopping ??= (async () => {
      const { log, sink } = this.options;
      log.info(
        `stopping (${reason}): closing connections, then flushing ${this.channel.depthRows} queued row(s) and ` +
          `${this.sinkStats.bufferedRows} buffered in the sink`,
      );
      this.resyncWanted.clear();
      const stopStarted = performance.now();
      const elapsed = () => `${Math.round(performance.now() - stopStarted)} ms`;
      const results = await Promise.allSettled([...this.connectors.values()].map((connector) => connector.stop()));
      for (const result of results) {
        if (result.status === "rejected") log.warn(`a connector did not stop cleanly: ${errorMessage(result.reason)}`);
      }
      log.debug(`stop: connections closed after ${elapsed()}`);
      this.channel.close();
      // A sink that holds the pipeline (QuestDB away, disk full) would keep the drain waiting forever:
      // give it a while, then close it anyway; what it has not taken by then is counted below.
      const drainMs = this.options.drainTimeoutMs ?? 4000;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const drained = await Promise.race([
        this.consumer.then(() => true),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), drainMs))),
      ]);
      clearTimeout(timer);
      if (!drained) {
        log.warn(
          `sink ${sink.name} has not taken the last ${this.channel.depthRows} queued row(s) within ${drainMs / 1000} s; closing it now`,
        );
        this.abandonQueue = true;
      }
      log.debug(`stop: queue drained after ${elapsed()}`);
      const report = await sink.close();
      this.abandonQueue = true;
      await this.consumer;
      log.debug(`stop: sink closed after ${elapsed()}`);
      this.faults.flush();
      const outcome = this.withQueuedRows(report);
      const lost = lostRowCount(outcome);
      const kept = outcome.keptRows > 0 ? `${outcome.keptRows} row(s) not delivered are kept in ${outcome.keptWhere ?? "the sink's files"} for the next start` : "";
      if (lost > 0) {
        log.error(`stopped; ${lost} row(s) were lost (${perTable(outcome.lostRows)})${kept ? `; ${kept}` : ""}`);
      } else if (kept) {
        log.warn(`stopped; ${kept}`);
      } else {
        log.info("stopped; all data flushed");
      }
      return outcome;
    })();
    return this.stopping;
  }

  /**
   * Adds the rows still queued (the sink was closed before it took them; they never reached it) to the
   * sink's report, counted as dropped on their subscriptions.
   */
  private withQueuedRows(report: CloseReport): StopOutcome {
    const lostRows: Partial<Record<TableName, number>> = { ...report.lostRows };
    const events: MarketEvent[] = [];
    const subscriptions: Subscription[] = [];
    let rows = 0;
    while (this.channel.takeBatch(events, subscriptions, 4096) > 0) {
      for (let i = 0; i < events.length; i++) {
        const event = events[i]!;
        const eventRows = rowCount(event);
        const table = TABLE_OF_EVENT[event.type];
        lostRows[table] = (lostRows[table] ?? 0) + eventRows;
        subscriptions[i]!.stats.dropped++;
        rows += eventRows;
      }
    }
    if (rows === 0) return report;
    this.sinkStats.droppedRows += rows;
    return { ...report, lostRows };
  }

  /**
   * Runs until `--shutdown-after` elapses or SIGINT/SIGTERM arrives, then stops gracefully. Resolves with the
   * exit code: 0 after a stop that lost nothing (rows kept for the next start included), EXIT_ROWS_LOST (3)
   * after a stop that lost rows, 1 when the stop failed or timed out. A second signal exits 130 at once.
   */
  async run(): Promise<number> {
    const { config, log } = this.options;
    const timeoutMs =
      this.options.shutdownTimeoutMs ?? (Number(config.env.XTRADER_SHUTDOWN_TIMEOUT_SECONDS) || 15) * 1000;
    await this.start();
    return new Promise<number>((resolve) => {
      let stopRequested = false;
      const stopWith = (reason: string) => {
        if (stopRequested) return;
        stopRequested = true;
        const timeout = setTimeout(() => {
          log.error(`graceful stop did not finish within ${timeoutMs / 1000} s; exiting with data possibly unflushed`);
          resolve(1);
        }, timeoutMs);
        this.stop(reason).then(
          (outcome) => {
            clearTimeout(timeout);
            resolve(lostRowCount(outcome) > 0 ? EXIT_ROWS_LOST : 0);
          },
          (error) => {
            clearTimeout(timeout);
            log.error(`stop failed: ${errorMessage(error)}`);
            resolve(1);
          },
        );
      };
      const onSignal = (signal: NodeJS.Signals) => {
        if (stopRequested) {
          log.warn(`${signal} again: exiting now without waiting for the flush`);
          process.exit(130);
        }
        stopWith(signal);
      };
      process.on("SIGINT", onSignal);
      process.on("SIGTERM", onSignal);
      if (config.shutdownAfterSeconds !== undefined) {
        setTimeout(() => stopWith(`--shutdown-after ${config.shutdownAfterSeconds}`), config.shutdownAfterSeconds * 1000);
      }
    });
  }
}

/** "trades 12, l2 3400" */
function perTable(rows: Readonly<Partial<Record<TableName, number>>>): string {
  return Object.entries(rows)
    .filter(([, count]) => (count ?? 0) > 0)
    .map(([table, count]) => `${table} ${count}`)
    .join(", ");
}

import { describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildConfig } from "../src/cli/config.ts";
import { EXCHANGE_REGISTRY } from "../src/connectors/index.ts";
import type { Connector, ConnectorContext, ExchangeRegistry, ExchangeSpec } from "../src/core/connector.ts";
import { BoundedChannel, WAKE_EVENTS } from "../src/core/channel.ts";
import { BASE_SIZING, type BookChange, type MarketEvent, type Trade } from "../src/core/events.ts";
import { createLogger } from "../src/core/log.ts";
import { Pipeline } from "../src/core/pipeline.ts";
import type { Subscription } from "../src/core/subscriptions.ts";
import { waitUntil } from "./support/fake-venue.ts";
import { MemorySink } from "./support/memory-sink.ts";

const log = createLogger("error");

function trade(subscription: Subscription, id: number): Trade {
  return {
    type: "trade",
    exchange: subscription.exchange,
    symbol: subscription.symbol,
    timestamp: 1_700_000_000_000_000 + id,
    localTimestamp: 1_700_000_000_001_000 + id,
    id: String(id),
    side: "buy",
    price: 100,
    amount: 1,
    ...BASE_SIZING,
  };
}

function book(subscription: Subscription, sequence: number, isSnapshot: boolean, levels = 1): BookChange {
  const bids: number[] = [];
  for (let i = 0; i < levels; i++) bids.push(100 - i, sequence);
  return {
    type: "book_change",
    exchange: subscription.exchange,
    symbol: subscription.symbol,
    timestamp: 1_700_000_000_000_000 + sequence,
    localTimestamp: 1_700_000_000_000_500 + sequence,
    isSnapshot,
    sequence,
    bids,
    asks: [],
    ...BASE_SIZING,
  };
}

/** A scripted connector: the test drives `context.emit` directly; resync emits a gap and a snapshot. */
class ScriptedConnector implements Connector {
  started = false;
  stopped = false;
  readonly resyncs: string[] = [];
  constructor(readonly context: ConnectorContext, readonly subscriptions: readonly Subscription[]) {}
  start(): void {
    this.started = true;
  }
  async stop(): Promise<void> {
    this.stopped = true;
  }
  resync(subscription: Subscription, reason: string): void {
    this.resyncs.push(`${subscription.key}:${reason}`);
    subscription.stats.resyncs++;
    this.context.emit(subscription, {
      type: "gap",
      exchange: subscription.exchange,
      symbol: subscription.symbol,
      timestamp: 1,
      localTimestamp: 1,
      stream: subscription.stream,
      reason: "overflow",
      detail: "test",
    });
    this.context.emit(subscription, book(subscription, 1_000_000, true));
  }
}

function setUp(
  subscriptions: string,
  sink: MemorySink,
  queueCapacity = 100_000,
  options: { drainTimeoutMs?: number; batchSize?: number; youngCollectionRows?: number; collectYoung?: () => void } = {},
) {
  let connector: ScriptedConnector | undefined;
  const scripted: ExchangeSpec = {
    ...EXCHANGE_REGISTRY.BINANCE_FUTURES,
    create: (context, subs) => (connector = new ScriptedConnector(context, subs)),
  };
  const registry: ExchangeRegistry = { ...EXCHANGE_REGISTRY, BINANCE_FUTURES: scripted };
  const { config } = buildConfig(
    { subscriptions, "output-directory": mkdtempSync(join(tmpdir(), "xtrader-pipeline-")) },
    { XTRADER_QUEUE_CAPACITY: String(queueCapacity) },
    registry,
  );
  const pipeline = new Pipeline({ config, registry, sink, log, shutdownTimeoutMs: 5000, ...options });
  return { pipeline, config, connector: () => connector! };
}

describe("BoundedChannel", () => {
  const subscription = buildConfig(
    { subscriptions: "L2:BINANCE_FUTURES@BTCUSDT", "output-directory": mkdtempSync(join(tmpdir(), "xtrader-ch-")) },
    {},
  ).config.subscriptions[0]!;

  test("bounds the queue by rows, counts drops and keeps a high-water mark", () => {
    const drops: MarketEvent[] = [];
    const channel = new BoundedChannel(10, (_, event) => drops.push(event), 5);
    expect(channel.push(subscription, book(subscription, 1, false, 6))).toBe(true);
    expect(channel.push(subscription, book(subscription, 2, false, 4))).toBe(true);
    expect(channel.depthRows).toBe(10);
    expect(channel.push(subscription, book(subscription, 3, false, 1))).toBe(false);
    expect(channel.droppedEvents).toBe(1);
    expect(channel.droppedRows).toBe(1);
    expect(drops.map((event) => (event as BookChange).sequence)).toEqual([3]);
    const events: MarketEvent[] = [];
    const subscriptions: Subscription[] = [];
    expect(channel.takeBatch(events, subscriptions, 1)).toBe(1);
    expect(channel.depthRows).toBe(4);
    expect(channel.highWaterRows).toBe(10);
    expect(channel.push(subscription, book(subscription, 4, false, 6))).toBe(true);
  });

  test("gap markers use the reserve above the bound", () => {
    const channel = new BoundedChannel(2, () => {}, 1);
    channel.push(subscription, book(subscription, 1, false, 2));
    const gap: MarketEvent = {
      type: "gap",
      exchange: "BINANCE_FUTURES",
      symbol: "BTCUSDT",
      timestamp: 1,
      localTimestamp: 1,
      stream: "L2",
      reason: "overflow",
      detail: "",
    };
    expect(channel.push(subscription, gap)).toBe(true);
    expect(channel.push(subscription, gap)).toBe(false);
  });

  test("an event larger than the bound still enters an empty queue", () => {
    const channel = new BoundedChannel(2);
    expect(channel.push(subscription, book(subscription, 1, true, 50))).toBe(true);
  });

  test("wakes a waiting consumer once at the end of the turn, or at once when a batch is queued", async () => {
    const channel = new BoundedChannel(1_000_000);
    const turn = () => new Promise((resolve) => setImmediate(resolve));
    let wakes = 0;
    void channel.whenReadable().then(() => wakes++);
    channel.push(subscription, book(subscription, 1, false));
    channel.push(subscription, book(subscription, 2, false));
    await Promise.resolve();
    await Promise.resolve();
    expect(wakes).toBe(0); // not per push: the consumer would take one event per turn
    await turn();
    expect(wakes).toBe(1);
    const events: MarketEvent[] = [];
    const subscriptions: Subscription[] = [];
    expect(channel.takeBatch(events, subscriptions, 100)).toBe(2);

    void channel.whenReadable().then(() => wakes++);
    for (let i = 0; i < WAKE_EVENTS; i++) channel.push(subscription, book(subscription, 10 + i, false));
    await Promise.resolve();
    expect(wakes).toBe(2); // a full batch wakes without waiting for the turn to end
    expect(channel.takeBatch(events, subscriptions, 1000)).toBe(WAKE_EVENTS);
    await turn(); // the wake scheduled by the first of those pushes finds nothing queued
    expect(wakes).toBe(2);

    void channel.whenReadable().then(() => wakes++);
    channel.close();
    await Promise.resolve();
    expect(wakes).toBe(3); // closing wakes at once
  });

  test("keeps order across growth and wrap-around", () => {
    const channel = new BoundedChannel(1_000_000);
    const events: MarketEvent[] = [];
    const subscriptions: Subscription[] = [];
    const seen: number[] = [];
    let next = 0;
    for (let round = 0; round < 50; round++) {
      for (let i = 0; i < 97; i++) channel.push(subscription, book(subscription, next++, false));
      channel.takeBatch(events, subscriptions, 61);
      seen.push(...events.map((event) => (event as BookChange).sequence));
    }
    while (channel.takeBatch(events, subscriptions, 1000) > 0) seen.push(...events.map((event) => (event as BookChange).sequence));
    expect(seen).toEqual(Array.from({ length: next }, (_, i) => i));
    expect(channel.depthRows).toBe(0);
  });
});

describe("Pipeline", () => {
  test("collects the young generation after each write that brings youngCollectionRows more rows to the sink", async () => {
    const sink = new MemorySink();
    let collections = 0;
    const { pipeline, config } = setUp("L2:BINANCE_FUTURES@BTCUSDT", sink, 100_000, {
      youngCollectionRows: 100,
      collectYoung: () => collections++,
    });
    await pipeline.start();
    const [l2] = config.subscriptions;
    pipeline.emit(l2!, book(l2!, 1, true, 60));
    await waitUntil(() => sink.buffered.length === 1, 2000, undefined, "the snapshot at the sink");
    expect(collections).toBe(0); // 60 rows so far
    pipeline.emit(l2!, book(l2!, 2, false, 50));
    await waitUntil(() => sink.buffered.length === 2, 2000, undefined, "the delta at the sink");
    await waitUntil(() => collections === 1, 2000, undefined, "a collection at 110 rows");
    for (let sequence = 3; sequence < 13; sequence++) {
      pipeline.emit(l2!, book(l2!, sequence, false, 20));
      await waitUntil(() => sink.buffered.length === sequence, 2000, undefined, `delta ${sequence} at the sink`);
    }
    await waitUntil(() => collections === 3, 2000, undefined, "two more collections for 200 more rows");
    expect(l2!.stats.rowsWritten).toBe(310);
    await pipeline.stop("test");
    expect(collections).toBe(3);
  });

  test("routes events to the sink and counts rows per subscription", async () => {
    const sink = new MemorySink();
    const { pipeline, config, connector } = setUp("TRADES:BINANCE_FUTURES@BTCUSDT,L2:BINANCE_FUTURES@BTCUSDT", sink);
    await pipeline.start();
    expect(sink.started).toBe(true);
    expect(connector().started).toBe(true);
    const [trades, l2] = config.subscriptions;
    for (let i = 0; i < 10; i++) pipeline.emit(trades!, trade(trades!, i));
    pipeline.emit(l2!, book(l2!, 1, true, 5));
    await waitUntil(() => sink.buffered.length === 11, 2000, undefined, "events at the sink");
    expect(trades!.stats).toMatchObject({ events: 10, rowsWritten: 10 });
    expect(l2!.stats).toMatchObject({ events: 1, rowsWritten: 5 });
    expect(trades!.stats.lag.count).toBe(10);
    expect(trades!.stats.lag.quantile(0.5)).toBe(1000);
    await pipeline.stop("test");
  });

  test("streams the sink found unfinished get one unclean_stop gap each, subscribed or not; foreign exchanges are skipped", async () => {
    const sink = new (class extends MemorySink {
      interruptedStreams() {
        return [
          { exchange: "BINANCE_FUTURES", symbol: "BTCUSDT", stream: "TRADES" as const }, // subscribed
          { exchange: "OKX_SWAP", symbol: "ETHUSDT", stream: "L2" as const }, // subscribed by the dead run only
          { exchange: "SOMEWHERE", symbol: "X", stream: "TRADES" as const }, // a directory we did not make
        ];
      }
    })();
    const { pipeline, config } = setUp("TRADES:BINANCE_FUTURES@BTCUSDT,L2:BINANCE_FUTURES@BTCUSDT", sink);
    await pipeline.start();
    await waitUntil(() => sink.buffered.length === 2, 2000, undefined, "two gap rows at the sink");
    const gaps = sink.buffered.filter((event) => event.type === "gap");
    expect(gaps.map((gap) => `${gap.stream}:${gap.exchange}@${gap.symbol}:${gap.reason}`).sort()).toEqual([
      "L2:OKX_SWAP@ETHUSDT:unclean_stop",
      "TRADES:BINANCE_FUTURES@BTCUSDT:unclean_stop",
    ]);
    const [trades, l2] = config.subscriptions;
    expect(trades!.stats.gaps).toBe(1);
    expect(l2!.stats.gaps).toBe(0);
    // Written before any connector could emit: the marks come first.
    expect(sink.buffered.every((event) => event.type === "gap")).toBe(true);
    await pipeline.stop("test");
    expect(sink.flushed).toHaveLength(2);
  });

  test("graceful stop stops connectors, drains the queue and flushes the sink", async () => {
    const sink = new MemorySink({ writeDelayMs: 5, closeDelayMs: 50 });
    const { pipeline, config, connector } = setUp("TRADES:BINANCE_FUTURES@BTCUSDT", sink);
    await pipeline.start();
    const subscription = config.subscriptions[0]!;
    for (let i = 0; i < 20_000; i++) pipeline.emit(subscription, trade(subscription, i));
    expect(pipeline.channel.depthRows).toBeGreaterThan(0);
    await pipeline.stop("test");
    expect(connector().stopped).toBe(true);
    expect(sink.closed).toBe(true);
    expect(sink.flushed.map((event) => (event as Trade).id)).toEqual(Array.from({ length: 20_000 }, (_, i) => String(i)));
    expect(subscription.stats.rowsWritten).toBe(20_000);
  });

  test("--shutdown-after stops the run with exit code 0 and a flushed sink", async () => {
    const sink = new MemorySink();
    const { config } = setUp("TRADES:BINANCE_FUTURES@BTCUSDT", sink);
    const subscription = config.subscriptions[0]!;
    const timed = new Pipeline({
      config: { ...config, shutdownAfterSeconds: 0.2 },
      registry: { ...EXCHANGE_REGISTRY, BINANCE_FUTURES: { ...EXCHANGE_REGISTRY.BINANCE_FUTURES, create: (context) => ({
        start: () => context.emit(subscription, trade(subscription, 7)),
        stop: async () => {},
        resync: () => {},
      }) } },
      sink,
      log,
    });
    expect(await timed.run()).toBe(0);
    expect(sink.flushed.map((event) => (event as Trade).id)).toEqual(["7"]);
  });

  test("overflow: drops are counted, L2 deltas are held back until a resync snapshot", async () => {
    const sink = new MemorySink({ writeDelayMs: 200 });
    const { pipeline, config, connector } = setUp("L2:BINANCE_FUTURES@BTCUSDT,TRADES:BINANCE_FUTURES@BTCUSDT", sink, 1000);
    await pipeline.start();
    const [l2, trades] = config.subscriptions;
    pipeline.emit(l2!, book(l2!, 1, true, 10));
    // The consumer takes the first batch and is then busy for 200 ms; fill the queue past its bound.
    await Bun.sleep(20);
    for (let sequence = 2; sequence < 1200; sequence++) pipeline.emit(l2!, book(l2!, sequence, false));
    for (let i = 0; i < 10; i++) pipeline.emit(trades!, trade(trades!, i));
    expect(l2!.stats.dropped).toBeGreaterThan(0);
    expect(trades!.stats.dropped).toBe(10);
    // The resync is requested once the queue has drained below half its bound, so its snapshot fits.
    await waitUntil(
      () => sink.buffered.some((event) => event.type === "book_change" && event.isSnapshot && event.sequence === 1_000_000),
      5000,
      undefined,
      "resync snapshot at the sink",
    );
    expect(new Set(connector().resyncs)).toEqual(new Set(["L2:BINANCE_FUTURES@BTCUSDT:overflow"]));
    // Deltas after the drop and before the snapshot never reach the sink.
    pipeline.emit(l2!, book(l2!, 5000, false));
    await pipeline.stop("test");
    const sequences: string[] = [];
    for (const event of sink.flushed) {
      if (event.type === "gap" && event.stream === "L2") sequences.push("gap");
      if (event.type === "book_change") sequences.push(`${event.sequence}${event.isSnapshot ? "S" : ""}`);
    }
    const gapAt = sequences.indexOf("gap");
    // Only the last gap before the accepted snapshot matters if a snapshot had to be retried.
    const lastGap = sequences.lastIndexOf("gap");
    expect(gapAt).toBeGreaterThan(0);
    expect(sequences[lastGap + 1]).toBe("1000000S");
    expect(sequences.filter((entry) => entry === "1000000S")).toHaveLength(1);
    expect(sequences).toContain("5000");
    // Everything before the gap is an unbroken run of deltas from 2.
    const before = sequences.slice(1, gapAt).map(Number);
    expect(before).toEqual(Array.from({ length: before.length }, (_, i) => i + 2));
    // Trades that did not fit are marked by one overflow gap.
    const tradeGaps = sink.flushed.filter((event) => event.type === "gap" && event.stream === "TRADES");
    expect(tradeGaps).toHaveLength(1);
    expect(tradeGaps[0]).toMatchObject({ reason: "overflow" });
    expect(pipeline.channel.droppedEvents).toBe(l2!.stats.dropped + trades!.stats.dropped);
  });

  test("stop is bounded when the sink holds the pipeline: it is closed after the drain timeout, leftovers counted", async () => {
    const sink = new MemorySink();
    let release: () => void = () => {};
    sink.write = async (events) => {
      if (sink.closed) throw new Error("the sink is closed");
      sink.buffered.push(...events);
      await new Promise<void>((resolve) => (release = resolve)); // QuestDB away, buffer full
    };
    const close = sink.close.bind(sink);
    sink.close = async () => {
      release();
      return close();
    };
    const { pipeline, config } = setUp("TRADES:BINANCE_FUTURES@BTCUSDT", sink, 100_000, {
      drainTimeoutMs: 200,
      batchSize: 10,
    });
    const subscription = config.subscriptions[0]!;
    await pipeline.start();
    for (let i = 0; i < 35; i++) pipeline.emit(subscription, trade(subscription, i));
    await waitUntil(() => sink.buffered.length === 10, 2000, undefined, "first batch at the sink");
    const started = performance.now();
    const outcome = await pipeline.stop("test");
    expect(performance.now() - started).toBeGreaterThanOrEqual(200);
    expect(sink.closed).toBe(true);
    expect(sink.flushed).toHaveLength(10);
    // The 25 rows still queued could not be taken: counted, reported per table, never silent.
    expect(outcome.lostRows).toEqual({ trades: 25 });
    expect(subscription.stats.dropped).toBe(25);
    expect(pipeline.sinkStats.droppedRows).toBe(25);
  });

  test("a sink that throws loses no count: rows are recorded as dropped", async () => {
    const sink = new MemorySink();
    sink.write = async () => {
      throw new Error("disk on fire");
    };
    const { pipeline, config } = setUp("TRADES:BINANCE_FUTURES@BTCUSDT", sink);
    await pipeline.start();
    const subscription = config.subscriptions[0]!;
    pipeline.emit(subscription, trade(subscription, 1));
    await waitUntil(() => pipeline.sinkStats.droppedRows === 1, 2000, undefined, "drop count");
    expect(subscription.stats.dropped).toBe(1);
    expect(pipeline.sinkStats.errors).toBe(1);
    await pipeline.stop("test");
  });
});

/**
 * A memory sink that keeps SinkStats the way the real sinks do (buffered rows on write, a flush record
 * with rows on flush), so metrics and readiness tests can watch the sink counters move without a disk
 * or a database.
 */
import { rowCount, type MarketEvent } from "../../src/core/events.ts";
import type { SinkStats } from "../../src/core/stats.ts";
import { MemorySink } from "./memory-sink.ts";

export class StatsMemorySink extends MemorySink {
  constructor(readonly stats: SinkStats) {
    super();
  }

  override async write(events: readonly MarketEvent[]): Promise<void> {
    await super.write(events);
    for (const event of events) this.stats.bufferedRows += rowCount(event);
  }

  override async flush(): Promise<void> {
    let rows = 0;
    for (const event of this.buffered) rows += rowCount(event);
    await super.flush();
    this.stats.bufferedRows -= rows;
    this.stats.recordFlush(0.004, rows);
  }
}

/**
 * A test sink: buffers what it is given and moves it to `flushed` on flush/close, like a real sink whose
 * rows only count once flushed. Optionally slow, to make the pipeline's channel fill up.
 */
import type { MarketEvent } from "../../src/core/events.ts";
import { CLEAN_CLOSE, type CloseReport, type Sink } from "../../src/core/sink.ts";

export class MemorySink implements Sink {
  readonly name = "memory";
  readonly buffered: MarketEvent[] = [];
  readonly flushed: MarketEvent[] = [];
  started = false;
  closed = false;
  writeCalls = 0;

  constructor(private readonly options: { writeDelayMs?: number; closeDelayMs?: number } = {}) {}

  async start(): Promise<void> {
    this.started = true;
  }

  async write(events: readonly MarketEvent[]): Promise<void> {
    if (this.closed) throw new Error("write after close");
    this.writeCalls++;
    this.buffered.push(...events);
    if (this.options.writeDelayMs) await Bun.sleep(this.options.writeDelayMs);
  }

  async flush(): Promise<void> {
    this.flushed.push(...this.buffered.splice(0));
  }

  async close(): Promise<CloseReport> {
    if (this.options.closeDelayMs) await Bun.sleep(this.options.closeDelayMs);
    await this.flush();
    this.closed = true;
    return CLEAN_CLOSE;
  }
}

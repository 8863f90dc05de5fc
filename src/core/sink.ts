/**
 * What every sink implements. Sinks know nothing about exchanges: they receive normalized events and
 * store them by event type (one table per stream, plus `gaps`).
 */
import type { MarketEvent, Stream } from "./events.ts";
import type { TableName } from "./tables.ts";

export interface Sink {
  readonly name: string;
  /** Opens files or connections. A sink that cannot reach its target still starts and buffers. */
  start(): Promise<void>;
  /**
   * Accepts a batch. Resolving means the rows are the sink's responsibility (buffered or written); the
   * batch array is reused by the caller after this returns, so keep the events, not the array.
   */
  write(events: readonly MarketEvent[]): void | Promise<void>;
  /** Pushes buffered rows to their destination. */
  flush(): Promise<void>;
  /**
   * Finishes every open file now (SIGHUP), so readers see what the sink holds; the next rows start new
   * files. Sinks without files (QuestDB) do not have it: flush() serves instead.
   */
  closeOpenFiles?(): Promise<{ readonly closed: number; readonly pending: number }>;
  /**
   * Flushes and closes; every file is complete afterwards. Resolves with what could not be delivered:
   * the pipeline's stop reports it and exits non-zero when rows were lost. Idempotent.
   */
  close(): Promise<CloseReport>;
  /**
   * After start(): the streams whose last rows the previous run may have lost because it died without a
   * clean stop (a sink that cannot tell returns nothing). The pipeline marks each with an `unclean_stop` gap.
   */
  interruptedStreams?(): readonly InterruptedStream[];
  /**
   * Registers who is told when the sink lost rows it had already accepted (Parquet: its open files were
   * deleted or moved away under it). The sink marks the loss in the data itself (an `output_lost` gap row
   * per stream); the handler restarts the lost books from snapshots.
   */
  onStreamsLost?(handler: (streams: readonly InterruptedStream[]) => void): void;
}

/** What a sink's close could not deliver to its destination. */
export interface CloseReport {
  /** Rows accepted but neither delivered nor kept anywhere: lost, per table. */
  readonly lostRows: Readonly<Partial<Record<TableName, number>>>;
  /** Rows not delivered but kept durably (journals, a QuestDB pending file) for the next start. */
  readonly keptRows: number;
  /** Where the kept rows are (a directory or file), for the stop's log line. */
  readonly keptWhere?: string;
}

/** Nothing lost, nothing left behind. */
export const CLEAN_CLOSE: CloseReport = Object.freeze({ lostRows: Object.freeze({}), keptRows: 0 });

export function lostRowCount(report: CloseReport): number {
  let total = 0;
  for (const rows of Object.values(report.lostRows)) total += rows ?? 0;
  return total;
}

export interface InterruptedStream {
  readonly exchange: string;
  readonly symbol: string;
  readonly stream: Stream;
}

/**
 * Counters for one subscription. Connectors, the pipeline and the sink all write here; the `--verbose`
 * telemetry line and the metrics endpoint both read from here, so the two never disagree.
 */

/** Upper bounds (microseconds) of the exchange→receive lag histogram buckets; the last is +Inf. */
export const LAG_BUCKETS_US: readonly number[] = [
  100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
  2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

export class LagHistogram {
  /** counts[i] = samples with lag <= LAG_BUCKETS_US[i] (not cumulative); last slot = above all bounds. */
  readonly counts = new Float64Array(LAG_BUCKETS_US.length + 1);
  count = 0;
  sumMicros = 0;

  record(lagMicros: number): void {
    let i = 0;
    while (i < LAG_BUCKETS_US.length && lagMicros > LAG_BUCKETS_US[i]!) i++;
    this.counts[i]!++;
    this.count++;
    this.sumMicros += lagMicros;
  }

  snapshot(): Float64Array {
    return this.counts.slice();
  }

  /**
   * Quantile (0..1) of the samples recorded since `since` (a previous snapshot), as the upper bound of
   * the bucket that holds it; undefined when there were no samples.
   */
  quantile(q: number, since?: Float64Array): number | undefined {
    let total = 0;
    for (let i = 0; i < this.counts.length; i++) total += this.counts[i]! - (since?.[i] ?? 0);
    if (total === 0) return undefined;
    const rank = q * total;
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]! - (since?.[i] ?? 0);
      if (seen >= rank) return i < LAG_BUCKETS_US.length ? LAG_BUCKETS_US[i]! : Number.POSITIVE_INFINITY;
    }
    return Number.POSITIVE_INFINITY;
  }
}

export class SubscriptionStats {
  /** Exchange messages attributed to this subscription. */
  messages = 0;
  /** Normalized events emitted. */
  events = 0;
  /** Rows the sink accepted (one per level for L2). */
  rowsWritten = 0;
  reconnects = 0;
  /** Gap markers emitted (disconnects, sequence breaks, overflow...). */
  gaps = 0;
  /** Book resyncs started (fresh snapshot requested). */
  resyncs = 0;
  /** Snapshots of a book that kept resyncing, held back by the resync backoff. */
  resyncsDelayed = 0;
  parseErrors = 0;
  /** Events dropped because the channel was full. */
  dropped = 0;
  /** Receive time (µs) of the last message, 0 before the first. */
  lastMessageAt = 0;
  readonly lag = new LagHistogram();
}

/** Counters of the sink, whichever it is; read by telemetry and the metrics endpoint. */
export class SinkStats {
  /** Rows durably handed to the destination (flushed to a file / sent to QuestDB). */
  rowsWritten = 0;
  /** Rows accepted but not yet flushed. */
  bufferedRows = 0;
  /** Rows lost (buffer bound exceeded, unrecoverable disk error); always logged too. */
  droppedRows = 0;
  /**
   * Rows the destination refused (QuestDB: a table whose columns do not match); kept in a file when
   * possible (docs/sinks/questdb.md), else also counted in droppedRows.
   */
  refusedRows = 0;
  flushes = 0;
  flushSecondsTotal = 0;
  lastFlushSeconds = 0;
  /** Write/flush failures (disk errors, connection failures). */
  errors = 0;
  filesOpened = 0;
  filesClosed = 0;
  /** Total seconds the destination was unreachable (closed outages), plus the open one via outageSince. */
  outageSecondsTotal = 0;
  /** performance.now() when the current outage began, 0 when none. */
  outageSince = 0;

  recordFlush(seconds: number, rows: number): void {
    this.flushes++;
    this.flushSecondsTotal += seconds;
    this.lastFlushSeconds = seconds;
    this.rowsWritten += rows;
  }

  outageSeconds(): number {
    return this.outageSecondsTotal + (this.outageSince > 0 ? (performance.now() - this.outageSince) / 1000 : 0);
  }
}

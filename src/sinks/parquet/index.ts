/**
 * The Parquet sink: one table per stream, Hive-partitioned by exchange, symbol and UTC date, rotated at
 * interval boundaries and row/byte limits, crash-safe through a journal beside every open file.
 * Layout, types, durability and recovery: docs/sinks/parquet.md.
 *
 * Rows are appended to per-file column buffers on the hot path; a timer makes them durable every flush
 * interval (journal append + fdatasync) and writes row groups when a buffer reaches its row or age
 * limit. Disk faults are counted, logged and retried; rows stay in memory meanwhile, and `write` makes
 * the pipeline wait once the memory bound is reached, so its overflow policy (gap rows) takes over.
 */
import type { CompressionCodec } from "hyparquet";
import type { ParquetSettings } from "../../core/config.ts";
import { nowMicros } from "../../core/clock.ts";
import { errorMessage } from "../../core/errors.ts";
import { rowCount, type MarketEvent } from "../../core/events.ts";
import type { Logger } from "../../core/log.ts";
import type { SinkStats } from "../../core/stats.ts";
import { STREAM_OF_TABLE, TABLE_OF_EVENT, type TableName } from "../tables.ts";
import type { InterruptedStream, Sink } from "../types.ts";
import type { IntegerReport } from "./columns.ts";
import { EncodeError, NameAllocator, PartFile, errorCode } from "./part-file.ts";
import { recoverDirectory, type RecoveryReport } from "./recovery.ts";
import { CODEC } from "./schema.ts";
import { parquetTuningFromEnv, type ParquetTuning } from "./settings.ts";

export { DEFAULT_TUNING, parquetTuningFromEnv, type ParquetTuning } from "./settings.ts";

export interface ParquetSinkOptions {
  readonly directory: string;
  readonly settings: ParquetSettings;
  readonly log: Logger;
  readonly stats: SinkStats;
  /** Integer-µs wall clock (names, partitions, rotation); injectable for tests. Default nowMicros. */
  readonly now?: () => number;
  /** Defaults come from PARQUET_* environment variables (settings.ts). */
  readonly tuning?: Partial<ParquetTuning>;
  /** How long close() keeps retrying files the disk refuses before it gives up (default 10 s). */
  readonly closeTimeoutMs?: number;
  /** Journal size past which a file's journal is rewritten (default 32 MiB; tests lower it). */
  readonly journalReplaceBytes?: number;
}

const DAY_MICROS = 86_400_000_000;
const ERROR_LOG_INTERVAL_MS = 30_000;

export class ParquetSink implements Sink {
  readonly name = "parquet";
  readonly tuning: ParquetTuning;
  /** What start() recovered from a previous run; undefined before start. */
  recovery: RecoveryReport | undefined;
  private readonly now: () => number;
  private readonly codec: CompressionCodec;
  /** Open files by table, exchange, symbol. */
  private readonly files = new Map<TableName, Map<string, Map<string, PartFile>>>();
  /** Rotated files whose close has not completed yet (retried until it does). */
  private readonly closing = new Set<PartFile>();
  /** The disk step each file is running, so a file never has two launched at once. */
  private readonly inFlight = new Map<PartFile, Promise<void>>();
  private readonly names = new NameAllocator();
  private readonly integerReport: IntegerReport = { invalid: 0 };
  /** Files already counted in filesOpened. */
  private readonly counted = new WeakSet<PartFile>();
  private integersReported = 0;
  private timer: ReturnType<typeof setInterval> | undefined;
  private closed = false;
  private closePromise: Promise<void> | undefined;
  /** Rows in memory across files (approximate between ticks; recomputed after every step). */
  private memoryRows = 0;
  /** Rows made durable since the last recordFlush. */
  private durableSinceFlush = 0;
  private flushStartedAt = performance.now();
  private waiters: (() => void)[] = [];
  private errorsInOutage = 0;
  private lastErrorLogAt = 0;
  private backpressureLogged = false;
  /** Row groups of open and closing files: their footer metadata is in memory (approximate between steps). */
  private rowGroupsInMemory = 0;

  constructor(private readonly options: ParquetSinkOptions) {
    this.now = options.now ?? nowMicros;
    this.codec = CODEC[options.settings.compression];
    this.tuning = { ...parquetTuningFromEnv(process.env), ...options.tuning };
    for (const [key, value] of Object.entries(this.tuning)) {
      if (!Number.isFinite(value) || value <= 0) throw new Error(`parquet tuning ${key} must be positive, got ${value}`);
    }
  }

  async start(): Promise<void> {
    const { log, directory } = this.options;
    try {
      this.recovery = await recoverDirectory(directory, {
        log,
        rowGroupRows: this.tuning.rowGroupRows,
        integerReport: this.integerReport,
      });
      const { recoveredFiles, recoveredRows, lostRows, unrecoverable } = this.recovery;
      if (recoveredFiles.length > 0 || unrecoverable.length > 0) {
        log.info(
          `parquet: recovered ${recoveredRows} row(s) into ${recoveredFiles.length} file(s) left by the previous run` +
            (lostRows > 0 ? `; ${lostRows} row(s) could not be recovered` : "") +
            (unrecoverable.length > 0 ? `; ${unrecoverable.length} leftover(s) could not be read (see errors above)` : ""),
        );
      }
      this.options.stats.errors += unrecoverable.length;
    } catch (error) {
      this.options.stats.errors++;
      log.error(`parquet: crash recovery in ${directory} failed: ${errorMessage(error)}; leftovers stay for the next start`);
    }
    this.timer ??= setInterval(() => this.tick(), this.tuning.flushIntervalMs);
  }

  interruptedStreams(): readonly InterruptedStream[] {
    const streams = new Map<string, InterruptedStream>();
    for (const { table, exchange, symbol } of this.recovery?.interrupted ?? []) {
      // A lost gap row leaves its stream's other rows intact; the gap itself cannot be re-marked.
      if (table === "gaps") continue;
      const stream = STREAM_OF_TABLE[table];
      // One per stream, though a kill around midnight leaves files in two date partitions.
      streams.set(`${stream}:${exchange}@${symbol}`, { exchange, symbol, stream });
    }
    return [...streams.values()];
  }

  write(events: readonly MarketEvent[]): void | Promise<void> {
    if (this.closed) throw new Error("the parquet sink is closed");
    const now = this.now();
    const { maxFileRows, maxFileBytes } = this.options.settings;
    const rowGroupRows = this.tuning.rowGroupRows;
    let added = 0;
    for (let i = 0; i < events.length; i++) {
      const event = events[i]!;
      const table = TABLE_OF_EVENT[event.type];
      let file = this.files.get(table)?.get(event.exchange)?.get(event.symbol);
      if (
        file === undefined ||
        now >= file.rotateAt ||
        (file.rows > 0 && (file.rows + rowCount(event) > maxFileRows || file.estimatedBytes() >= maxFileBytes))
      ) {
        if (file) this.retire(file);
        file = this.startFile(table, event.exchange, event.symbol, now);
      }
      added += file.add(event);
      if (file.buffer.rows >= rowGroupRows) this.seal(file, rowGroupRows);
    }
    this.memoryRows += added;
    this.options.stats.bufferedRows += added;
    if (this.memoryRows >= this.tuning.maxBufferedRows || this.rowGroupsInMemory > this.tuning.maxOpenRowGroups) {
      return this.waitForRoom();
    }
  }

  /** Encodes the file's full row groups now (their rows leave the buffer) and starts writing them. */
  private seal(file: PartFile, rowGroupRows: number): void {
    try {
      file.seal(rowGroupRows);
    } catch (error) {
      this.stepFailed(file, error);
    }
    if (!this.inFlight.has(file)) this.launchSync(file, false);
  }

  /** Makes every accepted row durable (journal or row group); resolves when done or failed (logged). */
  async flush(): Promise<void> {
    // A step already running may have started before the newest rows arrived: go round until none is left.
    for (let round = 0; round < 3; round++) {
      const waiting = [...this.openFiles()].filter((file) => file.notDurableRows > 0 || file.sealedRows > 0);
      if (waiting.length === 0 && this.inFlight.size === 0) break;
      for (const file of waiting) this.launchSync(file, false);
      await Promise.all([...this.inFlight.values()]);
    }
    this.recordFlush();
  }

  close(): Promise<void> {
    this.closePromise ??= this.closeAll();
    return this.closePromise;
  }

  /** The time-driven work: rotation, durability, row groups by age or memory pressure, retries. */
  private tick(): void {
    if (this.closed) return;
    const now = this.now();
    const nowMs = performance.now();
    const { rowGroupRows, rowGroupSeconds, maxBufferedRows } = this.tuning;
    for (const file of [...this.openFiles()]) {
      // An idle file is closed at its boundary; the next row starts a new one.
      if (now >= file.rotateAt) this.retire(file);
    }
    this.retireForFooterMemory();
    for (const file of this.closing) this.launchClose(file);
    // Under memory pressure, the biggest buffers become row groups first.
    const underPressure = new Set<PartFile>();
    if (this.memoryRows > maxBufferedRows / 2) {
      let excess = this.memoryRows - maxBufferedRows / 2;
      for (const file of [...this.openFiles()].sort((a, b) => b.memoryRows - a.memoryRows)) {
        if (excess <= 0) break;
        underPressure.add(file);
        excess -= file.memoryRows;
      }
    }
    for (const file of this.openFiles()) {
      // Capacity a burst grew goes back once a file is quiet (trimming busy files only made them grow again).
      if (file.rows === file.rowsAtLastTick) file.buffer.trim();
      file.rowsAtLastTick = file.rows;
      const old = file.oldestPendingAt > 0 && nowMs - file.oldestPendingAt >= rowGroupSeconds * 1000;
      const writeRowGroup = old || underPressure.has(file) || file.buffer.rows >= rowGroupRows;
      if (writeRowGroup || file.notDurableRows > 0 || file.sealedRows > 0) this.launchSync(file, writeRowGroup);
    }
    this.recordFlush();
    this.reportInvalidIntegers();
  }

  /**
   * Every row group's footer metadata (~20 kB) stays in memory until its file is closed. Under overload
   * row groups come small and fast (memory pressure writes the buffers out whatever their size), and an
   * hour-long file gathered them by the hundred thousand: 1.4 GB in 150 s, kept until the rotation. Past
   * PARQUET_MAX_OPEN_ROW_GROUPS (open and closing files together) the open files with the most row groups
   * are closed now, down to half the budget so a busy sink does not close one file per tick (the next rows
   * start new files); while closes are pending above it, write() holds the pipeline (waitForRoom).
   */
  private retireForFooterMemory(): void {
    let open = 0;
    for (const file of this.openFiles()) open += file.rowGroupCount;
    let closing = 0;
    for (const file of this.closing) closing += file.rowGroupCount;
    if (open + closing <= this.tuning.maxOpenRowGroups) return;
    for (const file of [...this.openFiles()].sort((a, b) => b.rowGroupCount - a.rowGroupCount)) {
      if (open <= this.tuning.maxOpenRowGroups / 2 || file.rowGroupCount === 0) break;
      open -= file.rowGroupCount;
      this.retire(file);
    }
  }

  private *openFiles(): Generator<PartFile> {
    for (const byExchange of this.files.values()) {
      for (const bySymbol of byExchange.values()) yield* bySymbol.values();
    }
  }

  /** Takes a file out of service and starts closing it (retried until it completes). */
  private retire(file: PartFile): void {
    this.files.get(file.table)?.get(file.exchange)?.delete(file.symbol);
    this.closing.add(file);
    this.launchClose(file);
  }

  private startFile(table: TableName, exchange: string, symbol: string, now: number): PartFile {
    let byExchange = this.files.get(table);
    if (!byExchange) this.files.set(table, (byExchange = new Map()));
    let bySymbol = byExchange.get(exchange);
    if (!bySymbol) byExchange.set(exchange, (bySymbol = new Map()));
    const interval = this.options.settings.rotateIntervalSeconds * 1_000_000;
    // Files never span a UTC date, whatever the interval, so the date partition is exact.
    const rotateAt = Math.min((Math.floor(now / interval) + 1) * interval, (Math.floor(now / DAY_MICROS) + 1) * DAY_MICROS);
    const file = new PartFile({
      root: this.options.directory,
      table,
      exchange,
      symbol,
      openedAt: now,
      rotateAt,
      codec: this.codec,
      integerReport: this.integerReport,
      names: this.names,
      journalReplaceBytes: this.options.journalReplaceBytes,
      rowGroupRows: this.tuning.rowGroupRows,
    });
    bySymbol.set(symbol, file);
    return file;
  }

  private launchSync(file: PartFile, writeRowGroup: boolean): void {
    if (this.inFlight.has(file)) return;
    const step = this.runStep(file, () => file.sync(this.tuning.rowGroupRows, writeRowGroup)).finally(() =>
      this.inFlight.delete(file),
    );
    this.inFlight.set(file, step);
  }

  /** Starts closing a file unless a step of it is running; says whether it started. */
  private launchClose(file: PartFile): boolean {
    if (this.inFlight.has(file)) return false;
    const step = this.runStep(file, () => file.close(this.tuning.rowGroupRows))
      .then(() => {
        if (file.state === "closed") {
          this.closing.delete(file);
          if (this.counted.has(file)) this.options.stats.filesClosed++;
        }
      })
      .finally(() => this.inFlight.delete(file));
    this.inFlight.set(file, step);
    return true;
  }

  /** Runs one disk step of a file and does the bookkeeping: stats, errors, memory, backpressure. */
  private async runStep(file: PartFile, step: () => Promise<void>): Promise<void> {
    const durableBefore = file.durableRows;
    try {
      await step();
      this.diskRecovered();
    } catch (error) {
      this.stepFailed(file, error);
    } finally {
      if (file.state !== "new" && !this.counted.has(file)) {
        this.counted.add(file);
        this.options.stats.filesOpened++;
      }
      const durable = file.durableRows - durableBefore;
      if (durable > 0) this.durableSinceFlush += durable;
      this.recount();
    }
  }

  private stepFailed(file: PartFile, error: unknown): void {
    const { log, stats } = this.options;
    stats.errors++;
    if (error instanceof EncodeError) {
      // Retrying would fail the same way: drop these rows, loudly.
      if (!error.removed) file.dropRows(error.rows);
      stats.droppedRows += error.rows;
      log.error(`parquet: ${error.message} for ${file.directory}; the rows were dropped`);
      return;
    }
    const now = performance.now();
    if (stats.outageSince === 0) stats.outageSince = now;
    this.errorsInOutage++;
    if (this.errorsInOutage === 1 || now - this.lastErrorLogAt >= ERROR_LOG_INTERVAL_MS) {
      this.lastErrorLogAt = now;
      const code = errorCode(error);
      log.error(
        `parquet: cannot write in ${file.directory}: ${errorMessage(error)}${code === "ENOSPC" ? " (disk full)" : code === "EACCES" || code === "EPERM" ? " (permission denied)" : ""}; ` +
          `${this.memoryRows} row(s) kept in memory, retrying every ${this.tuning.flushIntervalMs} ms (${this.errorsInOutage} failure(s) so far)`,
      );
    }
  }

  private diskRecovered(): void {
    const { stats, log } = this.options;
    if (stats.outageSince === 0) return;
    const seconds = (performance.now() - stats.outageSince) / 1000;
    stats.outageSecondsTotal += seconds;
    stats.outageSince = 0;
    log.info(`parquet: writing again after ${seconds.toFixed(1)} s of disk errors (${this.errorsInOutage} failure(s))`);
    this.errorsInOutage = 0;
  }

  /** Recomputes rows in memory and not yet durable, and lets a waiting writer go when there is room. */
  private recount(): void {
    let memory = 0;
    let notDurable = 0;
    let rowGroups = 0;
    for (const file of this.openFiles()) {
      memory += file.memoryRows;
      notDurable += file.notDurableRows;
      rowGroups += file.rowGroupCount;
    }
    for (const file of this.closing) {
      memory += file.memoryRows;
      notDurable += file.notDurableRows;
      // A close that just completed is still in the set (it leaves after this count).
      if (file.state !== "closed") rowGroups += file.rowGroupCount;
    }
    this.memoryRows = memory;
    this.rowGroupsInMemory = rowGroups;
    this.options.stats.bufferedRows = notDurable;
    if (memory < this.tuning.maxBufferedRows * 0.9 && rowGroups <= this.tuning.maxOpenRowGroups && this.waiters.length > 0) {
      for (const resolve of this.waiters.splice(0)) resolve();
      this.backpressureLogged = false;
    }
  }

  private waitForRoom(): Promise<void> {
    const rowsFull = this.memoryRows >= this.tuning.maxBufferedRows;
    if (!this.backpressureLogged) {
      this.backpressureLogged = true;
      this.options.log.warn(
        rowsFull
          ? `parquet: ${this.memoryRows} row(s) waiting in memory (limit ${this.tuning.maxBufferedRows}); holding the pipeline until the disk catches up`
          : `parquet: ${this.rowGroupsInMemory} row group(s) in open and closing files (limit ${this.tuning.maxOpenRowGroups}, PARQUET_MAX_OPEN_ROW_GROUPS); holding the pipeline until files are closed`,
      );
    }
    if (rowsFull) {
      // Writing row groups is what frees memory; start it now rather than at the next tick.
      for (const file of this.openFiles()) if (file.memoryRows > 0) this.launchSync(file, true);
    } else {
      // Closing files is what frees footer memory (more row groups would only add to it).
      this.retireForFooterMemory();
      for (const file of this.closing) this.launchClose(file);
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private recordFlush(): void {
    const now = performance.now();
    if (this.durableSinceFlush > 0) {
      this.options.stats.recordFlush((now - this.flushStartedAt) / 1000, this.durableSinceFlush);
      this.durableSinceFlush = 0;
    }
    this.flushStartedAt = now;
  }

  private reportInvalidIntegers(): void {
    if (this.integerReport.invalid === this.integersReported) return;
    this.options.log.warn(
      `parquet: ${this.integerReport.invalid - this.integersReported} timestamp/sequence value(s) were not integers; stored truncated (non-finite as 0)`,
    );
    this.integersReported = this.integerReport.invalid;
  }

  private async closeAll(): Promise<void> {
    const { stats } = this.options;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    for (const file of [...this.openFiles()]) this.retire(file);
    const deadline = performance.now() + (this.options.closeTimeoutMs ?? 10_000);
    for (;;) {
      let allStarted = true;
      const busy: Promise<boolean>[] = [];
      for (const file of this.closing) {
        if (this.launchClose(file)) continue;
        // A file busy with a step (a journal append, a row group) starts closing as soon as that step
        // ends: waiting for every other close first put a second wave of closes behind the first.
        // (That step may have been this file's own close, launched by retire(): then it is done, or it
        // failed and is tried once more at once; later attempts wait for the pause below.)
        busy.push(this.inFlight.get(file)!.then(() => !this.closing.has(file) || this.launchClose(file)));
      }
      for (const started of await Promise.all(busy)) allStarted &&= started;
      await Promise.all([...this.inFlight.values()]);
      if (this.closing.size === 0 || performance.now() >= deadline) break;
      // Closes that failed are retried after a pause; one that waited for a running step, at once.
      if (allStarted) await Bun.sleep(Math.min(this.tuning.flushIntervalMs, Math.max(0, deadline - performance.now())));
    }
    this.recordFlush();
    for (const resolve of this.waiters.splice(0)) resolve();
    if (this.closing.size === 0) return;
    let durable = 0;
    let lost = 0;
    for (const file of this.closing) {
      durable += file.durableRows;
      lost += file.notDurableRows;
      await file.abandon();
    }
    stats.droppedRows += lost;
    stats.bufferedRows = 0;
    const count = this.closing.size;
    this.closing.clear();
    throw new Error(
      `parquet: ${count} file(s) could not be closed because the disk keeps failing; ${durable} row(s) are in their journals and the next start recovers them, ${lost} row(s) only in memory are lost`,
    );
  }
}

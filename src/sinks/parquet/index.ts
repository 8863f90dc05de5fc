/**
 * The Parquet sink: one table per stream, Hive-partitioned by exchange, symbol and UTC date, rotated at
 * interval boundaries and row/byte limits, crash-safe through a journal with every open file (both in
 * DIR/.inprogress, out of the table trees).
 * Layout, types, durability and recovery: docs/sinks/parquet.md.
 *
 * Rows are appended to per-file column buffers on the hot path; a timer makes them durable every flush
 * interval (journal append + fdatasync) and writes row groups when a buffer reaches its row or age
 * limit. Disk faults are counted, logged and retried; rows stay in memory meanwhile, and `write` makes
 * the pipeline wait once the memory bound is reached, so its overflow policy (gap rows) takes over.
 * The same timer notices open files deleted or moved away under the sink (findLostFiles) and marks what
 * they held with `output_lost` gap rows.
 */
import type { CompressionCodec } from "hyparquet";
import { nowMicros } from "../../core/clock.ts";
import { errorMessage } from "../../core/errors.ts";
import { gapEvent, rowCount, type BookChange, type ExchangeId, type Gap, type MarketEvent } from "../../core/events.ts";
import { FaultLog } from "../../core/fault-log.ts";
import type { Logger } from "../../core/log.ts";
import type { SinkStats } from "../../core/stats.ts";
import { STREAM_OF_TABLE, TABLE_OF_EVENT, type TableName } from "../../core/tables.ts";
import { CLEAN_CLOSE, type CloseReport, type InterruptedStream, type Sink } from "../../core/sink.ts";
import type { IntegerReport } from "./columns.ts";
import { utcParts } from "./layout.ts";
import { PENDING_MARKERS_FILE, readPendingMarkers, streamKey, writePendingMarkers } from "./markers.ts";
import { EncodeError, NameAllocator, PartFile, errorCode } from "./part-file.ts";
import { recoverDirectory, type InterruptedPartition, type RecoveryReport } from "./recovery.ts";
import { RowsLog } from "./rows-log.ts";
import { IN_PROGRESS_DIRECTORY } from "./layout.ts";
import { join } from "node:path";
import { CODEC } from "./schema.ts";
import { parquetTuningFromEnv, type ParquetSettings, type ParquetTuning } from "./settings.ts";

export { DEFAULT_TUNING, parquetTuningFromEnv, type ParquetSettings, type ParquetTuning } from "./settings.ts";

export interface ParquetSinkOptions {
  readonly directory: string;
  readonly settings: ParquetSettings;
  /**
   * The venue ids of this build (the connectors' registry): a partition or pending marker of another
   * exchange is a directory someone else made, never marked as a stream of ours.
   */
  readonly exchanges: readonly ExchangeId[];
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
  /**
   * Told the final path of every file once it is complete under its final name (upload to object storage
   * listens here; the sink knows nothing of it). Files recovered at start are not announced: a listener
   * that needs them scans the table trees after start().
   */
  readonly onFileClosed?: (path: string) => void;
  /** Size past which the rows log starts a new segment (default 64 MiB; tests lower it). */
  readonly rowsLogSegmentBytes?: number;
}

const DAY_MICROS = 86_400_000_000;
/** Open files a flush tick checks for having been deleted under the sink (findLostFiles); the rest wait their turn. */
const LOST_CHECKS_PER_TICK = 32;
/** Flush ticks without a new row before a file's buffers give back the capacity a burst grew. */
const QUIET_TICKS_BEFORE_TRIM = 30;

/** A stream owed an `unclean_stop` gap row, and that row once the pipeline has written it. */
interface OwedMarker {
  readonly stream: InterruptedStream;
  written?: { readonly event: Gap; readonly file: PartFile; readonly row: number };
}

export class ParquetSink implements Sink {
  readonly name = "parquet";
  readonly tuning: ParquetTuning;
  /** What start() recovered from a previous run; undefined before start. */
  recovery: RecoveryReport | undefined;
  private readonly now: () => number;
  private readonly codec: CompressionCodec;
  private readonly exchanges: ReadonlySet<ExchangeId>;
  /** Open files by table, exchange, symbol. */
  private readonly files = new Map<TableName, Map<string, Map<string, PartFile>>>();
  /** Rotated files whose close has not completed yet (retried until it does). */
  private readonly closing = new Set<PartFile>();
  /** The disk step each file is running, so a file never has two launched at once. */
  private readonly inFlight = new Map<PartFile, Promise<void>>();
  private readonly names = new NameAllocator();
  /** One write-ahead log for the pending rows of every open file (rows-log.ts). */
  private readonly rowsLog: RowsLog;
  private readonly integerReport: IntegerReport = { invalid: 0 };
  /** Files already counted in filesOpened. */
  private readonly counted = new WeakSet<PartFile>();
  private integersReported = 0;
  private timer: ReturnType<typeof setInterval> | undefined;
  private closed = false;
  private closePromise: Promise<CloseReport> | undefined;
  /** Rows in memory across files (approximate between ticks; recomputed after every step). */
  private memoryRows = 0;
  /** Rows made durable since the last recordFlush. */
  private durableSinceFlush = 0;
  private flushStartedAt = performance.now();
  private waiters: (() => void)[] = [];
  /** Repeating faults: one log line per episode with counts. */
  private readonly faults: FaultLog;
  /** Files whose last disk step failed; the outage lasts until every one of them has written again. */
  private readonly failing = new Set<PartFile>();
  private failuresInOutage = 0;
  /** Files whose check for being lost is running (one per file: a file stuck on a slow disk step does not hold up the others). */
  private readonly checking = new Set<PartFile>();
  /** Where the next tick's checks start among the open files (they take turns, see findLostFiles). */
  private lostCheckCursor = 0;
  /** Rounds of those checks still running. */
  private readonly lostChecks = new Set<Promise<void>>();
  /** Books whose file was lost, by `exchange@symbol`: their deltas are dropped (and counted) until a snapshot. */
  private readonly awaitingSnapshot = new Map<string, number>();
  private lossHandler: ((streams: readonly InterruptedStream[]) => void) | undefined;
  /** Streams owed an `unclean_stop` gap row, by streamKey (see markers.ts). */
  private readonly owedMarkers = new Map<string, OwedMarker>();
  /** The running update of the pending-markers file. */
  private markersUpdate: Promise<void> | undefined;
  /** Row groups of open and closing files: their footer metadata is in memory (approximate between steps). */
  private rowGroupsInMemory = 0;

  constructor(private readonly options: ParquetSinkOptions) {
    this.now = options.now ?? nowMicros;
    this.codec = CODEC[options.settings.compression];
    this.exchanges = new Set(options.exchanges);
    this.tuning = { ...parquetTuningFromEnv(process.env), ...options.tuning };
    this.faults = new FaultLog(options.log);
    this.rowsLog = new RowsLog(join(options.directory, IN_PROGRESS_DIRECTORY), options.rowsLogSegmentBytes);
    for (const [key, value] of Object.entries(this.tuning)) {
      if (!Number.isFinite(value) || value <= 0) throw new Error(`parquet tuning ${key} must be positive, got ${value}`);
    }
  }

  async start(): Promise<void> {
    const { log, directory } = this.options;
    try {
      // Streams a start that was killed before its gap rows were durable still owes.
      const owed = await readPendingMarkers(directory, this.exchanges).catch((error: unknown) => {
        this.options.stats.errors++;
        log.error(`parquet: cannot read ${PENDING_MARKERS_FILE} in ${directory} (${errorMessage(error)}); the streams it listed are not marked again`);
        return [];
      });
      let recorded = owed;
      this.recovery = await recoverDirectory(directory, {
        log,
        rowGroupRows: this.tuning.rowGroupRows,
        integerReport: this.integerReport,
        // Durable before any leftover is completed or removed: a kill from here on still marks these streams.
        beforeChanges: async (partitions) => {
          recorded = unionOfStreams(owed, streamsOf(partitions, this.exchanges));
          if (recorded.length > owed.length) await writePendingMarkers(directory, recorded);
        },
      });
      // Candidates whose file turned out complete are not owed a marker: the record keeps only what is.
      const interrupted = unionOfStreams(owed, streamsOf(this.recovery.interrupted, this.exchanges));
      for (const stream of interrupted) this.owedMarkers.set(streamKey(stream), { stream });
      if (interrupted.length !== recorded.length) await writePendingMarkers(directory, interrupted);
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

  /**
   * The streams owed an `unclean_stop` gap row: those whose file the previous run left open, and those a
   * start killed before its own gap rows were durable left in the pending-markers file. The sink keeps
   * that file until it has made the pipeline's gap rows for them durable.
   */
  interruptedStreams(): readonly InterruptedStream[] {
    return [...this.owedMarkers.values()].map((owed) => owed.stream);
  }

  onStreamsLost(handler: (streams: readonly InterruptedStream[]) => void): void {
    this.lossHandler = handler;
  }

  write(events: readonly MarketEvent[]): void | Promise<void> {
    if (this.closed) throw new Error("the parquet sink is closed");
    const now = this.now();
    const { maxFileRows, maxFileBytes } = this.options.settings;
    const rowGroupRows = this.tuning.rowGroupRows;
    let added = 0;
    for (let i = 0; i < events.length; i++) {
      const event = events[i]!;
      if (this.awaitingSnapshot.size > 0 && event.type === "book_change" && this.deltaOfLostBook(event)) continue;
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
      if (this.owedMarkers.size > 0 && event.type === "gap" && event.reason === "unclean_stop") this.markerWritten(event, file);
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
    this.recount();
    this.recordFlush();
  }

  /**
   * Closes every open file now (SIGHUP): what the sink holds becomes finished files that readers see,
   * without waiting for the rotation; the next rows start new files. Resolves with how many files were
   * closed and how many are still closing (a disk fault: retried by the tick, as at a rotation).
   */
  async closeOpenFiles(): Promise<{ readonly closed: number; readonly pending: number }> {
    if (this.closed) return { closed: 0, pending: 0 };
    const files = [...this.openFiles()];
    for (const file of files) this.retire(file);
    // A file with a step running when it was retired starts its close after that step.
    for (let round = 0; round < 3 && files.some((file) => this.closing.has(file)); round++) {
      await Promise.all(files.map((file) => this.inFlight.get(file)));
      for (const file of files) if (this.closing.has(file)) this.launchClose(file);
      await Promise.all(files.map((file) => this.inFlight.get(file)));
    }
    const pending = files.filter((file) => this.closing.has(file)).length;
    await this.rowsLog.removeUnneeded();
    return { closed: files.length - pending, pending };
  }

  close(): Promise<CloseReport> {
    this.closePromise ??= this.closeAll().finally(async () => {
      await this.settleMarkers();
      this.faults.flush();
    });
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
    const logOnly: PartFile[] = [];
    for (const file of this.openFiles()) {
      // Capacity a burst grew goes back once a file has been quiet for a while (trimming busy files only
      // made them grow again, and a stream of a message or two a second has a quiet tick every few seconds).
      file.quietTicks = file.rows === file.rowsAtLastTick ? file.quietTicks + 1 : 0;
      if (file.quietTicks === QUIET_TICKS_BEFORE_TRIM) file.buffer.trim();
      file.rowsAtLastTick = file.rows;
      const old = file.oldestPendingAt > 0 && nowMs - file.oldestPendingAt >= rowGroupSeconds * 1000;
      const writeRowGroup = old || underPressure.has(file) || file.buffer.rows >= rowGroupRows;
      // A file whose last step failed is tried again even with nothing new to write: the outage ends
      // only once every failing file has written again.
      const needsStep = writeRowGroup || file.sealedRows > 0 || this.failing.has(file) || !file.canLogAgain;
      if (needsStep) {
        if (writeRowGroup || file.notDurableRows > 0 || file.sealedRows > 0 || this.failing.has(file)) this.launchSync(file, writeRowGroup);
      } else if (file.notDurableRows > 0 && !this.inFlight.has(file)) {
        logOnly.push(file);
      }
    }
    if (logOnly.length > 0) this.logRows(logOnly);
    this.recordFlush();
    this.reportInvalidIntegers();
    void this.findLostFiles(LOST_CHECKS_PER_TICK);
    if (this.owedMarkers.size > 0) void this.settleMarkers();
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
      rowsLog: this.rowsLog,
    });
    bySymbol.set(symbol, file);
    return file;
  }

  /**
   * The common case of a tick: files whose new rows only need to reach the rows log join its next write
   * directly, and the bookkeeping is done once for all of them (no disk step per file).
   */
  private logRows(files: readonly PartFile[]): void {
    const durableBefore = files.map((file) => file.durableRows);
    const written = Promise.allSettled(files.map((file) => file.logRows()));
    const done = written.then((results) => {
      results.forEach((result, index) => {
        const file = files[index]!;
        if (result.status === "fulfilled") this.stepSucceeded(file);
        else if (!file.lost) this.stepFailed(file, result.reason);
        const durable = file.durableRows - durableBefore[index]!;
        if (durable > 0) this.durableSinceFlush += durable;
        if (this.inFlight.get(file) === done) this.inFlight.delete(file);
      });
      this.recount();
    });
    for (const file of files) this.inFlight.set(file, done);
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
        if (file.state === "closed" && !file.lost) {
          this.closing.delete(file);
          if (this.counted.has(file)) this.options.stats.filesClosed++;
          const path = file.finalPath;
          if (path !== undefined) this.options.onFileClosed?.(path);
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
      this.stepSucceeded(file);
    } catch (error) {
      // A lost file's handles are closed under its steps: the loss is reported once, not these errors.
      if (!file.lost) this.stepFailed(file, error);
    } finally {
      if (file.state !== "new" && !this.counted.has(file)) {
        this.counted.add(file);
        this.options.stats.filesOpened++;
      }
      const durable = file.durableRows - durableBefore;
      if (durable > 0) this.durableSinceFlush += durable;
      // Once for all the steps that end in this turn: a recount visits every file.
      this.recountSoon();
    }
  }

  private stepFailed(file: PartFile, error: unknown): void {
    const { stats } = this.options;
    stats.errors++;
    if (error instanceof EncodeError) {
      // Retrying would fail the same way: drop these rows, loudly.
      if (!error.removed) file.dropRows(error.rows);
      stats.droppedRows += error.rows;
      this.faults.report("encode", `parquet: ${error.message} for ${file.directory}; the rows were dropped`, "error", error.rows);
      return;
    }
    if (stats.outageSince === 0) stats.outageSince = performance.now();
    this.failing.add(file);
    this.failuresInOutage++;
    const code = errorCode(error);
    // Which file fails changes from step to step (a lost permission fails creates but not appends to open
    // files): one episode for the whole disk, whose message names the latest directory and cause.
    this.faults.report(
      "disk",
      `parquet: cannot write in ${file.directory}: ${errorMessage(error)}${code === "ENOSPC" ? " (disk full)" : code === "EACCES" || code === "EPERM" ? " (permission denied)" : ""}; ` +
        `${this.memoryRows} row(s) kept in memory, retrying every ${this.tuning.flushIntervalMs} ms`,
      "error",
    );
    // A table directory that vanished fails the close's link: find out now whether the file was lost.
    if (code === "ENOENT") void this.findLostFiles();
  }

  /** The outage ends when every file that failed has written again, not at the first step that succeeds. */
  private stepSucceeded(file: PartFile): void {
    if (this.failing.delete(file) && this.failing.size === 0) this.outageEnded();
  }

  private outageEnded(): void {
    const { stats, log } = this.options;
    if (stats.outageSince === 0) return;
    const seconds = (performance.now() - stats.outageSince) / 1000;
    stats.outageSecondsTotal += seconds;
    stats.outageSince = 0;
    log.info(`parquet: writing again after ${seconds.toFixed(1)} s of disk errors (${this.failuresInOutage} failure(s))`);
    this.failuresInOutage = 0;
  }

  /**
   * Finds open files whose journal is no longer where it was created: the output directory, a table or
   * partition directory was deleted or replaced while they were being written. Writes to such files still
   * succeed (the handles keep the unlinked inodes), so no disk error would ever say so. One stat per file
   * checked: on the flush timer at most `limit` files a tick, taking turns (with 1,000 subscriptions a stat
   * of every file every second was a thread-pool job and a wake-up each, ~15 % of the sink's steady cost);
   * every file at a stop and after a disk step found a directory missing.
   */
  private findLostFiles(limit = Number.POSITIVE_INFINITY): Promise<void> {
    const round = this.checkFiles(limit);
    this.lostChecks.add(round);
    void round.finally(() => this.lostChecks.delete(round));
    // Resolves when every running round is done, so close() acts on what earlier rounds find too.
    return Promise.all([...this.lostChecks]).then(() => undefined);
  }

  private async checkFiles(limit: number): Promise<void> {
    let files = [...this.openFiles(), ...this.closing].filter((file) => file.state === "open" && !this.checking.has(file));
    if (files.length > limit) {
      const start = this.lostCheckCursor % files.length;
      files = [...files, ...files].slice(start, start + limit);
      this.lostCheckCursor = start + limit;
    }
    for (const file of files) this.checking.add(file);
    const lost = await Promise.all(
      files.map((file) =>
        file
          .isLost()
          .catch((error: unknown) => {
            this.options.log.error(`parquet: checking whether ${file.directory} still exists failed: ${errorMessage(error)}`);
            return false;
          })
          .finally(() => this.checking.delete(file)),
      ),
    );
    const gone = files.filter((file, index) => lost[index] && !file.lost);
    if (gone.length > 0) this.filesLost(gone);
  }

  /**
   * Drops files that were deleted under the sink and marks what they held: an `output_lost` gap row per
   * stream (written here, so it is stored even when the loss is found at shutdown), the handler restarts
   * the books, and a book's deltas are dropped until its snapshot, so no file begins with deltas whose
   * snapshot is gone. New files start in a recreated tree (create() makes the directories).
   */
  private filesLost(gone: PartFile[]): void {
    const { stats, log } = this.options;
    const lostFromTree = new Set(gone);
    // A newer file of the same book that began with deltas (a rotation since the deletion) cannot be
    // replayed without the lost one: it goes too, and the book restarts from a snapshot.
    for (const newer of [...this.openFiles(), ...this.closing]) {
      if (newer.table !== "l2" || newer.startsWithSnapshot !== false || newer.state === "closed" || lostFromTree.has(newer)) continue;
      const sameBook = (file: PartFile) => file.table === "l2" && file.exchange === newer.exchange && file.symbol === newer.symbol;
      if (gone.some((file) => sameBook(file) && file.order < newer.order)) gone.push(newer);
    }
    const byStream = new Map<string, { target: InterruptedStream; rows: number; since: number; lastAt: number; path: string }>();
    const remarked: Gap[] = [];
    let rows = 0;
    for (const file of gone) {
      if (this.files.get(file.table)?.get(file.exchange)?.get(file.symbol) === file) this.files.get(file.table)!.get(file.exchange)!.delete(file.symbol);
      this.closing.delete(file);
      this.failing.delete(file);
      // A newer file dropped with a lost one is still in the tree: its leftovers go too.
      file.discard(!lostFromTree.has(file)).catch((error: unknown) =>
        log.error(`parquet: cannot remove the leftovers of ${file.finalPath}: ${errorMessage(error)}; the next start recovers it`),
      );
      rows += file.rows;
      stats.droppedRows += file.rows;
      stats.errors++;
      if (file.table === "gaps") {
        // Owed unclean_stop rows that were in it are written again; other gap rows cannot be re-marked.
        for (const owed of this.owedMarkers.values()) {
          if (owed.written?.file !== file) continue;
          remarked.push(owed.written.event);
          owed.written = undefined; // taken again by markerWritten() when the row is written anew
        }
        continue;
      }
      if (!this.exchanges.has(file.exchange)) continue;
      const target = { exchange: file.exchange, symbol: file.symbol, stream: STREAM_OF_TABLE[file.table] };
      const key = streamKey(target);
      const lost = byStream.get(key) ?? { target, rows: 0, since: file.openedAt, lastAt: 0, path: file.finalPath ?? file.directory };
      lost.rows += file.rows;
      lost.since = Math.min(lost.since, file.openedAt);
      lost.lastAt = Math.max(lost.lastAt, file.lastReceivedAt);
      byStream.set(key, lost);
      if (file.table === "l2") this.awaitingSnapshot.set(`${file.exchange}@${file.symbol}`, 0);
    }
    const gaps: Gap[] = [...remarked];
    for (const { target, rows, since, lastAt, path } of byStream.values()) {
      const detail = `the output file ${path} was deleted or moved away while being written; its ${rows} row(s) received since ${isoTime(since)} are lost`;
      // Stamped with the receive time of the last lost row (as an overflow gap is with the dropped event's):
      // rows still queued for the sink when the loss was noticed were received before it, and the gap
      // must sit between the lost rows and the kept ones.
      gaps.push(gapEvent(target, "output_lost", detail, lastAt || this.now()));
    }
    if (gaps.length > 0) {
      if (this.closed) {
        log.error(`parquet: ${gaps.length} gap row(s) marking the loss could not be written: the sink is closed`);
      } else {
        // Small, and they must be stored: past the memory bound too.
        void this.write(gaps);
      }
    }
    this.faults.report(
      "lost",
      `parquet: ${gone.length} open file(s) under ${this.options.directory} were deleted or moved away while being written ` +
        `(e.g. ${gone[0]!.finalPath ?? gone[0]!.directory}); their ${rows} row(s) are lost, marked by output_lost gap rows; ` +
        `new files start in a recreated directory tree`,
      "error",
    );
    this.recount();
    if (this.failing.size === 0) this.outageEnded();
    if (byStream.size > 0) this.lossHandler?.([...byStream.values()].map((lost) => lost.target));
  }

  /** Hot path while a lost book waits for its snapshot: true for a delta to drop (counted). */
  private deltaOfLostBook(event: BookChange): boolean {
    const key = `${event.exchange}@${event.symbol}`;
    const dropped = this.awaitingSnapshot.get(key);
    if (dropped === undefined) return false;
    if (!event.isSnapshot) {
      this.awaitingSnapshot.set(key, dropped + rowCount(event));
      this.options.stats.droppedRows += rowCount(event);
      return true;
    }
    this.awaitingSnapshot.delete(key);
    this.options.log.info(
      `parquet: L2 ${key} restarts from a snapshot after its file was lost; ${dropped} delta row(s) received before it were dropped`,
    );
    return false;
  }

  /** The pipeline's `unclean_stop` gap row for an owed stream: it is owed no more once this row is durable. */
  private markerWritten(event: Gap, file: PartFile): void {
    const owed = this.owedMarkers.get(streamKey(event));
    if (owed && !owed.written) owed.written = { event, file, row: file.rows };
  }

  /** Takes the streams whose gap rows are durable off the pending-markers file. */
  private settleMarkers(): Promise<void> {
    this.markersUpdate ??= (async () => {
      const settled: [string, OwedMarker][] = [];
      for (const [key, owed] of this.owedMarkers) {
        const written = owed.written;
        if (written && !written.file.lost && written.file.durableRows > written.row) settled.push([key, owed]);
      }
      if (settled.length === 0) return;
      for (const [key] of settled) this.owedMarkers.delete(key);
      try {
        await writePendingMarkers(this.options.directory, [...this.owedMarkers.values()].map((owed) => owed.stream));
      } catch (error) {
        for (const [key, owed] of settled) this.owedMarkers.set(key, owed);
        this.faults.report(
          "markers",
          `parquet: cannot update ${PENDING_MARKERS_FILE} in ${this.options.directory} (${errorMessage(error)}); retrying`,
          "error",
        );
      }
    })().finally(() => (this.markersUpdate = undefined));
    return this.markersUpdate;
  }

  private recountScheduled = false;

  private recountSoon(): void {
    if (this.recountScheduled) return;
    this.recountScheduled = true;
    setImmediate(() => {
      this.recountScheduled = false;
      this.recount();
    });
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
    }
  }

  private waitForRoom(): Promise<void> {
    const rowsFull = this.memoryRows >= this.tuning.maxBufferedRows;
    if (rowsFull) {
      this.faults.report(
        "backpressure",
        `parquet: ${this.memoryRows} row(s) waiting in memory (limit ${this.tuning.maxBufferedRows}); holding the pipeline until the disk catches up`,
      );
      // Writing row groups is what frees memory; start it now rather than at the next tick.
      for (const file of this.openFiles()) if (file.memoryRows > 0) this.launchSync(file, true);
    } else {
      this.faults.report(
        "backpressure",
        `parquet: ${this.rowGroupsInMemory} row group(s) in open and closing files (limit ${this.tuning.maxOpenRowGroups}, PARQUET_MAX_OPEN_ROW_GROUPS); holding the pipeline until files are closed`,
      );
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
    const count = this.integerReport.invalid - this.integersReported;
    this.faults.report("integers", `parquet: ${count} timestamp/sequence value(s) were not integers; stored truncated (non-finite as 0)`, "warn", count);
    this.integersReported = this.integerReport.invalid;
  }

  /**
   * Closes every file; files the disk keeps refusing until the close timeout are reported: rows in their
   * journals are kept (the next start recovers them), rows only in memory are lost, per table.
   */
  private async closeAll(): Promise<CloseReport> {
    const { stats } = this.options;
    // Files deleted under the sink since the last tick are marked while gap rows can still be written.
    await this.findLostFiles();
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
    if (this.closing.size === 0) {
      await this.rowsLog.close();
      return CLEAN_CLOSE;
    }
    let durable = 0;
    let lost = 0;
    const lostRows: Partial<Record<TableName, number>> = {};
    for (const file of this.closing) {
      // Journal rows are kept only while the journal is still where the next start looks for it (the
      // directory may have been deleted or moved during the close retries).
      const kept = (await file.journalInPlace()) ? file.durableRows : 0;
      const gone = file.notDurableRows + file.durableRows - kept;
      durable += kept;
      lost += gone;
      if (gone > 0) lostRows[file.table] = (lostRows[file.table] ?? 0) + gone;
      await file.abandon();
    }
    // Segments these files still need stay for the next start.
    await this.rowsLog.close();
    stats.droppedRows += lost;
    stats.bufferedRows = 0;
    const count = this.closing.size;
    this.closing.clear();
    this.options.log.error(
      `parquet: ${count} file(s) could not be closed because the disk keeps failing; ${durable} row(s) are kept on disk (the rows log and the files' journals) and the next start recovers them, ${lost} row(s) are lost`,
    );
    return { lostRows, keptRows: durable, keptWhere: durable > 0 ? `journals under ${this.options.directory}` : undefined };
  }
}

/** The streams of partitions (one per stream, though a kill around midnight leaves two date partitions). */
function streamsOf(partitions: readonly InterruptedPartition[], exchanges: ReadonlySet<ExchangeId>): InterruptedStream[] {
  const streams: InterruptedStream[] = [];
  for (const { table, exchange, symbol } of partitions) {
    // A lost gap row leaves its stream's other rows intact; the gap itself cannot be re-marked. Partitions
    // are named from our own events, so another exchange is only a directory someone else made.
    if (table === "gaps" || !exchanges.has(exchange)) continue;
    streams.push({ exchange, symbol, stream: STREAM_OF_TABLE[table] });
  }
  return streams;
}

function unionOfStreams(...lists: (readonly InterruptedStream[])[]): InterruptedStream[] {
  const byKey = new Map<string, InterruptedStream>();
  for (const list of lists) for (const stream of list) byKey.set(streamKey(stream), stream);
  return [...byKey.values()];
}

function isoTime(micros: number): string {
  const { date, time } = utcParts(micros);
  return `${date} ${time.slice(0, 2)}:${time.slice(2, 4)}:${time.slice(4, 6)} UTC`;
}

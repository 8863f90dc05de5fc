/**
 * One Parquet file being written: a temporary data file that grows by whole row groups, its journal
 * (journal.ts), and the rows of this file still in memory.
 *
 * Every disk step of one file runs in order on its own queue; each step either completes or leaves the
 * file as it was, so a failed step (disk full, permission) is simply tried again later. Writes are
 * positional, so bytes a failed write left behind are overwritten by the retry, and the footer write
 * truncates whatever lies past it.
 *
 * Order of durability (what a crash at any moment leaves, see recovery.ts):
 * 1. open: the journal (header) is created and fsync'ed, then the temporary file with its `PAR1` magic;
 * 2. every flush interval: pending rows are appended to the journal and fdatasync'ed;
 * 3. a row group: its bytes are written to the temporary file and fdatasync'ed; then its metadata is
 *    appended to the journal and fdatasync'ed (it stands for the first journaled rows, journal.ts); once
 *    the journal outgrows JOURNAL_REPLACE_BYTES, a new one (header, every row group's metadata, the rows
 *    still pending) is fsync'ed and renamed over it instead;
 * 4. close: the remaining rows as row groups and the footer are written in one go, the file fsync'ed and
 *    hard-linked to its final name (a link never replaces an existing file), then the temporary file and
 *    the journal are removed. Until the link exists the journal still describes a valid prefix.
 * The temporary file and the journal live in the work directory (layout.ts, `DIR/.inprogress/...`), the
 * final name in the table tree, so readers of a table never meet a file being written.
 */
import { link, mkdir, open, readdir, rename, stat, unlink, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import type { CompressionCodec } from "hyparquet";
import { ByteWriter, ParquetWriter } from "hyparquet-writer";
import { VERSION } from "../../core/version.ts";
import type { MarketEvent } from "../../core/events.ts";
import { TABLES, type Column, type TableName } from "../../core/tables.ts";
import { EVENT_ROWS_SLACK, PER_EVENT_COLUMNS, TableBuffer, rowAppender, type ByteBuilder, type IntegerReport, type RowAppender } from "./columns.ts";
import {
  JOURNAL_FORMAT,
  JOURNAL_VERSION,
  headerRecord,
  positionedRowsRecord,
  rowGroupRecord,
  skipRecord,
  type JournaledRowGroup,
  type JournalHeader,
} from "./journal.ts";
import {
  dataFileName,
  IN_PROGRESS_DIRECTORY,
  inProgressDirectory,
  journalFileName,
  nextCounter,
  nextJournalFileName,
  partitionDirectory,
  tempFileName,
  utcParts,
} from "./layout.ts";
import { fastEncodable, planAndCompressRowGroup, type RowGroupWrite } from "./row-group.ts";
import { RowsLog, rowsLogKey, type LoggedFile } from "./rows-log.ts";
import { syncDirectory, writeAll } from "./write.ts";
import { COMPRESSORS, schemaOf } from "./schema.ts";
import { NotEncodable, writeFooter } from "./thrift.ts";

export { syncDirectory, writeAll } from "./write.ts";

export const CREATED_BY = `xtrader version ${VERSION}`;
const MAGIC = new TextEncoder().encode("PAR1");

export interface PartFileOptions {
  readonly root: string;
  readonly table: TableName;
  readonly exchange: string;
  readonly symbol: string;
  /** When the file is opened (names it and its date partition), integer µs. */
  readonly openedAt: number;
  /** When the file must be closed (the next rotation boundary), integer µs. */
  readonly rotateAt: number;
  readonly codec: CompressionCodec;
  /** Counts values of integer columns that were not integers (see columns.ts). */
  readonly integerReport: IntegerReport;
  /** Hands out file counters in the order files were started (absent in recovery, which never creates). */
  readonly names?: NameAllocator;
  /** Recovery only: the columns and directory recorded by the killed run, and where its leftovers are. */
  readonly columns?: readonly Column[];
  readonly directory?: string;
  readonly workDirectory?: string;
  /** Journal size past which it is rewritten instead of appended to (default JOURNAL_REPLACE_BYTES; tests lower it). */
  readonly journalReplaceBytes?: number;
  /** Rows per row group the sink seals at, so column buffers are sized for no more (absent: they just grow). */
  readonly rowGroupRows?: number;
  /** Where pending rows are made durable (rows-log.ts); absent: a log of the file's own (a file driven alone). */
  readonly rowsLog?: RowsLog;
}

/** What a file looks like when it is resumed from a journal (recovery.ts). */
export interface ResumeState {
  readonly header: JournalHeader;
  readonly rowGroups: readonly JournaledRowGroup[];
  /** Length of the temporary file's complete part (magic and row groups). */
  readonly rowGroupEnd: number;
  /** A position past every row any record of the killed run holds: the buffer's rows are numbered from it. */
  readonly firstRow: number;
}

type State = "new" | "open" | "closed";

/** A row group encoded from the buffer (its rows freed), compressing on the thread pool, waiting to be written. */
interface SealedGroup {
  readonly rows: number;
  /** Position of its first row in the file. */
  readonly start: number;
  /**
   * Of its leading rows, how many are in the journal or the rows log: those logged when it was sealed,
   * raised when a log write in flight then completes (see logged()).
   */
  journaled: number;
  readonly write: Promise<RowGroupWrite>;
}

/** Hands out PartFile.order. */
let filesStarted = 0;

export class PartFile implements LoggedFile {
  readonly buffer: TableBuffer;
  /** Files are numbered in the order they were started (two can share an opening time). */
  readonly order = ++filesStarted;
  readonly directory: string;
  /** Where the temporary file and the journal are (layout.ts): outside the table tree. */
  readonly workDirectory: string;
  readonly rotateAt: number;
  /** The final file name, chosen when the file is created on disk. */
  finalName: string | undefined;
  state: State = "new";
  /** Rows already in row groups of the temporary file. */
  committedRows = 0;
  /** Bytes of the temporary file that hold the magic and complete row groups. */
  committedBytes = 0;
  /** Position in the file of the buffer's first row (rows are numbered from 0, journal.ts version 5). */
  private bufferStart = 0;
  /** Rows at positions before this are in the rows log or the journal (those of the buffer are durable). */
  private journaledEnd = 0;
  /** Position after the last row in a row group of the temporary file. */
  committedThrough = 0;
  /** Row groups sealed from the buffer and not yet written, oldest first (see seal()). */
  private readonly sealed: SealedGroup[] = [];
  /** Rows in `sealed`. */
  sealedRows = 0;
  rowGroupCount = 0;
  /** performance.now() when the oldest row of `buffer` arrived; 0 when the buffer is empty. */
  oldestPendingAt = 0;
  /** `rows` at the sink's previous flush tick (a file that got none since is quiet). */
  rowsAtLastTick = 0;
  /** Flush ticks in a row without a new row. */
  quietTicks = 0;
  /** Receive time of the newest event added, integer µs (0 before the first). */
  lastReceivedAt = 0;
  /** Whether the file's first event was a book snapshot (undefined before its first event). */
  startsWithSnapshot: boolean | undefined;
  /** Its files were deleted or moved away under the sink (see isLost()); the sink dropped it. */
  lost = false;
  private appendRows: RowAppender | undefined;
  private readonly header: Omit<JournalHeader, "finalName">;
  private readonly bytes = new ByteWriter();
  /** Row groups of tables without nullable columns are encoded by row-group.ts, the rest by hyparquet-writer. */
  private readonly encodesFast: boolean;
  private parquet: ParquetWriter | undefined;
  private dataFile: FileHandle | undefined;
  private journal: FileHandle | undefined;
  /** Device and inode of the journal (from its handle, at the first check), to tell whether its path still leads to it. */
  private journalIdentity: FileIdentity | undefined;
  private journalLength = 0;
  private headerBytes: Uint8Array | undefined;
  private readonly rowGroupRecords: Uint8Array[] = [];
  private tail: Promise<unknown> = Promise.resolve();
  /** Close progress, so a close that failed half-way resumes where it stopped. */
  private footerWritten = false;
  private linked = false;
  /**
   * The journal no longer matches memory (it holds rows the buffer dropped, or a resumed journal's header
   * is older than the records this run writes): its next write replaces it instead of appending.
   */
  private journalOutOfStep = false;
  /** The encoded rest of the file (row groups and footer) while the close is writing it. */
  private closingTail: { readonly bytes: Uint8Array; readonly rows: number; readonly bufferRows: number } | undefined;

  /** The counter reserved for this file's name when it was started. */
  private reservedCounter: Promise<number> | undefined;

  constructor(private readonly options: PartFileOptions) {
    const { root, table, exchange, symbol, openedAt, codec } = options;
    this.rotateAt = options.rotateAt;
    this.directory = options.directory ?? partitionDirectory(root, table, exchange, symbol, utcParts(openedAt).date);
    // A directory given as is (recovery of an earlier build's leftovers) holds the file's leftovers too.
    this.workDirectory = options.workDirectory ?? (options.directory ?? inProgressDirectory(root, this.directory));
    this.reservedCounter = options.names?.reserve(`${table}/${exchange}/${symbol}`, this.directory, this.workDirectory, utcParts(openedAt).time);
    // A failed reservation is retried by create(); do not let it surface as an unhandled rejection.
    this.reservedCounter?.catch(() => undefined);
    const columns = options.columns ?? TABLES[table];
    this.encodesFast = fastEncodable(columns);
    const growthLimit = this.encodesFast && options.rowGroupRows ? options.rowGroupRows + EVENT_ROWS_SLACK : Number.POSITIVE_INFINITY;
    this.buffer = new TableBuffer(columns, { exchange, symbol }, { growthLimit, perEvent: PER_EVENT_COLUMNS[table] });
    this.header = { format: JOURNAL_FORMAT, version: JOURNAL_VERSION, table, exchange, symbol, columns, codec, openedAt, perEvent: this.buffer.runColumns };
  }

  get table(): TableName {
    return this.options.table;
  }

  get exchange(): string {
    return this.options.exchange;
  }

  get symbol(): string {
    return this.options.symbol;
  }

  /** Rows accepted for this file: in row groups or in memory. */
  get rows(): number {
    return this.committedRows + this.memoryRows;
  }

  /** Rows in memory: in the buffer or in sealed row groups not yet written. */
  get memoryRows(): number {
    return this.sealedRows + this.buffer.rows;
  }

  /** Rows on disk (row groups and journal): survive a crash. */
  get durableRows(): number {
    return this.committedRows + this.sealedJournaledRows + this.journaledRows;
  }

  /** Rows only in memory: a crash now would lose them. */
  get notDurableRows(): number {
    return this.sealedRows - this.sealedJournaledRows + this.buffer.rows - this.journaledRows;
  }

  /** Leading rows of `buffer` that are in the rows log or the journal (durable, not yet in a row group). */
  get journaledRows(): number {
    return Math.min(this.buffer.rows, Math.max(0, this.journaledEnd - this.bufferStart));
  }

  /** Rows of sealed groups that are in the rows log or the journal. */
  private get sealedJournaledRows(): number {
    let rows = 0;
    for (const group of this.sealed) rows += group.journaled;
    return rows;
  }

  // ── the rows log's side (rows-log.ts) ──

  /** The file's final path under the output directory, which names it in the rows log; set once it exists on disk. */
  logKey: string | undefined;

  logRecord(out: ByteBuilder, again: boolean): { readonly from: number; readonly to: number } | undefined {
    if (this.state !== "open") return undefined;
    const from = again ? 0 : this.journaledRows;
    const to = this.buffer.rows;
    if (to <= from) return undefined;
    out.float64(this.bufferStart + from);
    this.buffer.encodeRows(out, from, to);
    return { from: this.bufferStart + from, to: this.bufferStart + to };
  }

  logged(from: number, to: number): void {
    // Sealed meanwhile: a group whose journaled rows reach the record's first row takes its share.
    for (const group of this.sealed) {
      if (from <= group.start + group.journaled) group.journaled = Math.max(group.journaled, Math.min(group.rows, to - group.start));
    }
    if (from <= Math.max(this.journaledEnd, this.bufferStart)) this.journaledEnd = Math.max(this.journaledEnd, to);
  }

  get logDone(): boolean {
    return this.lost || (this.state === "closed" && this.linked);
  }

  get canLogAgain(): boolean {
    return this.state === "open" && this.sealed.length === 0 && !this.journalOutOfStep;
  }

  /** Approximate size the file would have now, for the byte limit. */
  estimatedBytes(): number {
    const perRow = this.committedRows > 0 ? this.committedBytes / this.committedRows : 0;
    return this.committedBytes + this.memoryRows * perRow;
  }

  get finalPath(): string | undefined {
    return this.finalName && join(this.directory, this.finalName);
  }

  get openedAt(): number {
    return this.options.openedAt;
  }

  /** Hot path: appends the event's rows to the column buffers. */
  add(event: MarketEvent): number {
    if (this.buffer.rows === 0) {
      this.oldestPendingAt = performance.now();
      this.startsWithSnapshot ??= event.type === "book_change" && event.isSnapshot;
    }
    this.lastReceivedAt = event.localTimestamp;
    this.appendRows ??= rowAppender(this.options.table, this.buffer);
    return this.appendRows(event);
  }

  /** Runs disk steps of this file one after another. */
  private enqueue<T>(step: () => Promise<T>): Promise<T> {
    const result = this.tail.then(step);
    this.tail = result.catch(() => undefined);
    return result;
  }

  /**
   * Encodes every full row group of the buffer now and frees its rows; compression continues on the
   * thread pool and the next disk step writes the groups in order. Called on the hot path when a buffer
   * fills: memory stays at about one row group per file however far the disk lags (fsyncs of many files
   * at once), and column buffers never grow (and get copied) past it. Tables hyparquet-writer encodes are
   * left to commitRowGroup. Throws EncodeError (the rows stay in the buffer).
   */
  seal(rowGroupRows: number): void {
    if (!this.encodesFast || this.state === "closed") return;
    while (this.buffer.rows >= rowGroupRows) this.sealOne(rowGroupRows);
  }

  /** Seals the first `count` buffer rows as one row group (rows stay in the buffer on EncodeError). */
  private sealOne(count: number): void {
    let write: Promise<RowGroupWrite>;
    try {
      write = planAndCompressRowGroup(this.buffer, count, this.options.codec, this.options.integerReport);
    } catch (error) {
      throw new EncodeError(count, error);
    }
    write.catch(() => undefined); // awaited by the disk step; not unhandled meanwhile
    const group: SealedGroup = { rows: count, start: this.bufferStart, journaled: Math.min(count, this.journaledRows), write };
    this.sealed.push(group);
    this.sealedRows += count;
    this.buffer.discard(count);
    this.bufferStart += count;
    if (this.buffer.rows === 0) this.oldestPendingAt = 0;
  }

  /**
   * Makes pending rows durable: sealed and full row groups are written, then the rest either as one more
   * row group (`writeRemainder`: age limit or memory pressure) or appended to the journal.
   */
  sync(rowGroupRows: number, writeRemainder: boolean): Promise<void> {
    return this.enqueue(async () => {
      if (this.state === "closed") return;
      if (this.state === "new") {
        if (this.memoryRows === 0) return;
        await this.create();
      }
      while (this.sealed.length > 0) await this.writeSealed();
      while (this.buffer.rows >= rowGroupRows) await this.commitRowGroup(rowGroupRows);
      if (writeRemainder && this.buffer.rows > 0) {
        await this.commitRowGroup(this.buffer.rows);
      } else {
        // Rows dropped from memory that the log still holds: the journal says they are not pending.
        if (this.journalOutOfStep && this.sealed.length === 0) await this.rewriteJournal();
        if (this.journaledRows < this.buffer.rows) await this.rowsLog().append(this);
      }
    });
  }

  /**
   * Makes the buffer's rows durable in the rows log, outside the file's queue of disk steps: for an open
   * file with no step running and nothing but rows to log (the sink's tick, ParquetSink.logRows).
   */
  logRows(): Promise<void> {
    return this.rowsLog().append(this);
  }

  /** Forgets the first `count` pending rows (they could not be encoded). */
  dropRows(count: number): void {
    const dropped = Math.min(count, this.buffer.rows);
    this.buffer.discard(dropped);
    // Logged rows (or rows a log write in flight may hold) are no longer pending: the journal must say so.
    if (dropped > 0 && this.state === "open") this.journalOutOfStep = true;
    this.bufferStart += dropped;
    this.oldestPendingAt = this.buffer.rows > 0 ? this.oldestPendingAt : 0;
  }

  /** Writes every pending row, the footer, and moves the file to its final name. */
  close(rowGroupRows: number): Promise<void> {
    return this.enqueue(async () => {
      if (this.state === "closed") return;
      if (this.state === "new") {
        if (this.memoryRows === 0) {
          this.state = "closed";
          return;
        }
        await this.create();
      }
      await this.finish(rowGroupRows);
    });
  }

  /**
   * True when the file is open but its journal is no longer at its path: the output tree (or a part of it)
   * was deleted or replaced while the file was being written, so neither this run nor the next start can
   * make a file of what it held. Runs between the file's disk steps (a journal replacement renames a new
   * journal over the path).
   */
  isLost(): Promise<boolean> {
    return this.enqueue(async () => this.state === "open" && !(await this.journalAtPath()));
  }

  /**
   * True when the file's journal is where the next start looks for it, so the rows it holds are
   * recovered then; false when it has none or the path now leads elsewhere (the tree was deleted).
   */
  journalInPlace(): Promise<boolean> {
    return this.enqueue(() => this.journalAtPath());
  }

  private async journalAtPath(): Promise<boolean> {
    if (!this.finalName || !this.journal) return false;
    try {
      this.journalIdentity ??= identityOf(await this.journal.stat({ bigint: true }));
      const atPath = identityOf(await stat(join(this.workDirectory, journalFileName(this.finalName)), { bigint: true }));
      return atPath.dev === this.journalIdentity.dev && atPath.ino === this.journalIdentity.ino;
    } catch (error) {
      const code = errorCode(error);
      // Anything else (a permission lost on the directory, EIO) says nothing about whether the file is there.
      return !(code === "ENOENT" || code === "ENOTDIR");
    }
  }

  /**
   * Takes the file out of service after it was lost: handles closed, rows dropped (the sink counts them).
   * A file still in the tree that is dropped with a lost one (`removeLeftovers`) has its temporary file
   * and journal removed, so the next start does not bring it back.
   */
  discard(removeLeftovers = false): Promise<void> {
    this.lost = true;
    return this.enqueue(async () => {
      const remove = removeLeftovers && this.finalName !== undefined && (await this.journalAtPath());
      await this.abandon();
      if (!remove) return;
      await Promise.all([
        unlink(join(this.workDirectory, tempFileName(this.finalName!))).catch(ignoreMissing),
        unlink(join(this.workDirectory, journalFileName(this.finalName!))).catch(ignoreMissing),
      ]);
      await syncDirectory(this.workDirectory);
    });
  }

  /** Lets go of file handles after close gave up (the journal stays for the next start). */
  async abandon(): Promise<void> {
    await this.dataFile?.close().catch(() => undefined);
    await this.journal?.close().catch(() => undefined);
    this.dataFile = undefined;
    this.journal = undefined;
    this.state = "closed";
  }

  private newParquetWriter(): ParquetWriter {
    const { table, exchange, symbol } = this.options;
    return new ParquetWriter({
      writer: this.bytes,
      schema: schemaOf(this.header.columns),
      codec: this.options.codec,
      compressors: COMPRESSORS,
      createdBy: CREATED_BY,
      kvMetadata: [
        { key: "xtrader.table", value: table },
        { key: "xtrader.exchange", value: exchange },
        { key: "xtrader.symbol", value: symbol },
      ],
    });
  }

  /** Creates the journal and the temporary file under the first free name. */
  private async create(): Promise<void> {
    const time = utcParts(this.options.openedAt).time;
    await mkdir(this.workDirectory, { recursive: true });
    const reserved = this.reservedCounter;
    this.reservedCounter = undefined;
    let counter = reserved ? await reserved.catch(() => undefined) : undefined;
    counter ??= nextCounter(await namesIn(this.directory, this.workDirectory), time);
    for (;;) {
      const finalName = dataFileName(time, counter);
      let journal: FileHandle | undefined;
      let dataFile: FileHandle | undefined;
      try {
        journal = await open(join(this.workDirectory, journalFileName(finalName)), "wx");
        dataFile = await open(join(this.workDirectory, tempFileName(finalName)), "wx");
        const header = headerRecord({ ...this.header, finalName });
        await writeAll(journal, header, 0);
        await journal.datasync();
        await writeAll(dataFile, MAGIC, 0);
        await syncDirectory(this.workDirectory);
        this.finalName = finalName;
        this.logKey = this.keyOf(finalName);
        this.journal = journal;
        this.dataFile = dataFile;
        this.headerBytes = header;
        this.journalLength = header.length;
        this.parquet = this.newParquetWriter();
        // The writer put the magic into its buffer; it is on disk already.
        this.bytes.index = 0;
        this.committedBytes = MAGIC.length;
        this.state = "open";
        return;
      } catch (error) {
        await journal?.close().catch(() => undefined);
        await dataFile?.close().catch(() => undefined);
        if (journal) await unlink(join(this.workDirectory, journalFileName(finalName))).catch(() => undefined);
        if (dataFile) await unlink(join(this.workDirectory, tempFileName(finalName))).catch(() => undefined);
        // Another writer took this name between readdir and open: take the next one.
        if (errorCode(error) === "EEXIST") {
          counter++;
          continue;
        }
        throw error;
      }
    }
  }

  /** Continues a file a killed run left behind: its temporary file already holds `rowGroups`. */
  async resume(finalName: string, state: ResumeState, dataFile: FileHandle, journal: FileHandle, journalLength: number): Promise<void> {
    this.finalName = finalName;
    this.logKey = this.keyOf(finalName);
    this.dataFile = dataFile;
    this.journal = journal;
    this.journalLength = journalLength;
    // This run's records follow this run's header (version, columns held as runs); the old journal's header
    // may be older, so the next journal write replaces the journal instead of appending to it.
    this.headerBytes = headerRecord({ ...state.header, version: JOURNAL_VERSION, perEvent: this.buffer.runColumns });
    this.journalOutOfStep = true;
    this.parquet = this.newParquetWriter();
    this.bytes.index = 0;
    this.bytes.offset = state.rowGroupEnd;
    for (const { rowGroup, endOffset } of state.rowGroups) {
      this.parquet.row_groups.push(rowGroup);
      this.parquet.num_rows += rowGroup.num_rows;
      this.rowGroupRecords.push(rowGroupRecord(rowGroup, endOffset));
      this.committedRows += Number(rowGroup.num_rows);
    }
    this.rowGroupCount = state.rowGroups.length;
    this.committedBytes = state.rowGroupEnd;
    // Numbered past every row the killed run's records hold: a rewrite (journalOutOfStep) skips those.
    this.bufferStart = state.firstRow;
    this.committedThrough = state.firstRow;
    this.journaledEnd = state.firstRow + this.buffer.rows;
    this.state = "open";
  }

  /** A file driven alone (tests) logs its rows in a log of its own, closed with the file. */
  private ownLog: RowsLog | undefined;

  private rowsLog(): RowsLog {
    return this.options.rowsLog ?? (this.ownLog ??= new RowsLog(join(this.options.root, IN_PROGRESS_DIRECTORY)));
  }

  /** The file's key in the rows log: its final path under the output directory. */
  private keyOf(finalName: string): string {
    return rowsLogKey(this.options.root, this.directory, finalName);
  }

  /**
   * The journal as it would be written anew: header, row groups, that positions before the buffer's are
   * not pending (rows dropped from memory, or a killed run's numbering), and the buffer's journaled rows.
   */
  private rewrittenJournal(extra: readonly Uint8Array[] = [], pendingFrom = 0, pendingTo = this.journaledRows): Uint8Array[] {
    const records = [this.headerBytes!, ...this.rowGroupRecords, ...extra, skipRecord(this.bufferStart + pendingFrom)];
    if (pendingTo > pendingFrom) records.push(positionedRowsRecord(this.buffer, pendingFrom, pendingTo, this.bufferStart + pendingFrom));
    return records;
  }

  private async rewriteJournal(): Promise<void> {
    await this.replaceJournal(this.rewrittenJournal());
    this.journalOutOfStep = false;
  }

  /** Appends one record and makes it durable; a failed append is cut off again. */
  private async appendToJournal(record: Uint8Array): Promise<void> {
    try {
      await writeAll(this.journal!, record, this.journalLength);
      await this.journal!.datasync();
    } catch (error) {
      await this.journal!.truncate(this.journalLength).catch(() => undefined);
      throw error;
    }
    this.journalLength += record.length;
  }

  /** Encodes the first `count` buffer rows as one row group and makes it durable. */
  private async commitRowGroup(count: number): Promise<void> {
    // Encoding is synchronous: one slice of row groups per turn of the event loop, across all files.
    await encodeTurns.next();
    if (this.encodesFast) {
      // While this step waited for its turn, the hot path may have sealed some of these rows already.
      const rows = Math.min(count, this.buffer.rows);
      if (rows > 0) this.sealOne(rows);
      while (this.sealed.length > 0) await this.writeSealed();
      return;
    }
    // hyparquet-writer's path (tables with nullable columns): nothing seals these buffers meanwhile.
    const parquet = this.parquet!;
    const journaled = Math.min(count, this.journaledRows);
    await this.commitEncoded(count, journaled, count, this.bufferStart + count, () =>
      parquet.write({ columnData: this.buffer.columnData(count, this.options.integerReport), rowGroupSize: count }),
    );
    this.buffer.discard(count);
    this.bufferStart += count;
    this.oldestPendingAt = this.buffer.rows > 0 ? performance.now() : 0;
  }

  /** Writes the oldest sealed row group and makes it durable. */
  private async writeSealed(): Promise<void> {
    const group = this.sealed[0]!;
    let write: RowGroupWrite;
    try {
      write = await group.write;
    } catch (error) {
      // Its rows are gone from the buffer: drop the group; the journal (which may hold some of them) is
      // rewritten from memory at the next chance.
      this.forgetSealed();
      if (group.journaled > 0) this.journalOutOfStep = true;
      throw new EncodeError(group.rows, error, true);
    }
    await this.commitEncoded(group.rows, group.journaled, 0, group.start + group.rows, () => {
      this.bytes.ensure(write.bytes);
      this.parquet!.row_groups.push(write(this.bytes));
      this.parquet!.num_rows += BigInt(group.rows);
    });
    this.forgetSealed();
  }

  private forgetSealed(): void {
    const group = this.sealed.shift()!;
    this.sealedRows -= group.rows;
  }

  /**
   * Writes one row group after the committed ones (`encode` puts it into the writer) and records it in
   * the journal; `pendingFrom` is the first buffer row not in it (for a journal rewrite), `through` the
   * position after its last row.
   */
  private async commitEncoded(rows: number, journaled: number, pendingFrom: number, through: number, encode: () => void): Promise<void> {
    const parquet = this.parquet!;
    const before = { rowGroups: parquet.row_groups.length, rows: parquet.num_rows, indexes: parquet.pendingIndexes.length };
    const rollback = () => {
      parquet.row_groups.length = before.rowGroups;
      parquet.num_rows = before.rows;
      parquet.pendingIndexes.length = before.indexes;
      this.bytes.index = 0;
      this.bytes.offset = this.committedBytes;
    };
    let bytes: Uint8Array;
    try {
      this.bytes.index = 0;
      this.bytes.offset = this.committedBytes;
      encode();
      bytes = this.takeBytes();
    } catch (error) {
      rollback();
      throw new EncodeError(rows, error);
    }
    const rowGroup = parquet.row_groups.at(-1)!;
    const endOffset = this.committedBytes + bytes.length;
    const rowGroupBytes = rowGroupRecord(rowGroup, endOffset, journaled, through);
    try {
      await writeAll(this.dataFile!, bytes, this.committedBytes);
      await this.dataFile!.datasync();
      // A rewrite needs every journaled row in memory, which sealed row groups (other than this one) no
      // longer have: it waits until they are written.
      // (The group being written is sealed[0] when it came from seal().)
      const canRewrite = this.sealed.length <= 1;
      const limit = this.options.journalReplaceBytes ?? JOURNAL_REPLACE_BYTES;
      if (canRewrite && (this.journalOutOfStep || this.journalLength + rowGroupBytes.length > limit)) {
        // Header, row groups, and only the rows that were durable already (rows never journaled are
        // logged by the next flush, as usual): buffer rows from pendingFrom that are journaled.
        await this.replaceJournal(this.rewrittenJournal([rowGroupBytes], pendingFrom, Math.max(pendingFrom, this.journaledRows)));
        this.journalOutOfStep = false;
      } else {
        // The record takes the `journaled` oldest pending rows (journal.ts): one append and one sync
        // instead of a new journal, a rename and a directory sync per row group.
        await this.appendToJournal(rowGroupBytes);
      }
    } catch (error) {
      rollback();
      throw error;
    }
    this.rowGroupRecords.push(rowGroupBytes);
    this.committedThrough = Math.max(this.committedThrough, through);
    this.committedBytes = endOffset;
    this.committedRows += rows;
    this.rowGroupCount++;
  }

  /** Writes a complete new journal beside the current one and renames it over. */
  private async replaceJournal(records: readonly Uint8Array[]): Promise<void> {
    const nextPath = join(this.workDirectory, nextJournalFileName(this.finalName!));
    const next = await open(nextPath, "w");
    let length = 0;
    try {
      for (const record of records) {
        await writeAll(next, record, length);
        length += record.length;
      }
      await next.datasync();
      await rename(nextPath, join(this.workDirectory, journalFileName(this.finalName!)));
    } catch (error) {
      await next.close().catch(() => undefined);
      await unlink(nextPath).catch(() => undefined);
      throw error;
    }
    await this.journal!.close().catch(() => undefined);
    this.journal = next;
    this.journalIdentity = undefined; // taken from the new handle by the next check
    this.journalLength = length;
    await syncDirectory(this.workDirectory);
  }

  /** Every pending row as row groups (rows stay in the buffer until written), then the footer. */
  private async encodeTail(rowGroupRows: number): Promise<{ bytes: Uint8Array; rows: number; bufferRows: number }> {
    const parquet = this.parquet!;
    // A sealed group whose compression failed is dropped (counted) and the close tried again without it.
    for (const group of this.sealed) {
      try {
        await group.write;
      } catch (error) {
        this.sealed.splice(this.sealed.indexOf(group), 1);
        this.sealedRows -= group.rows;
        if (group.journaled > 0) this.journalOutOfStep = true;
        throw new EncodeError(group.rows, error, true);
      }
    }
    const rows = this.buffer.rows;
    const before = { rowGroups: parquet.row_groups.length, rows: parquet.num_rows, indexes: parquet.pendingIndexes.length };
    this.bytes.index = 0;
    this.bytes.offset = this.committedBytes;
    try {
      // Every row group is planned (sockets and timers run between them) and compressed on the thread pool
      // concurrently, then written in order.
      const groups: { count: number; write: Promise<RowGroupWrite> }[] = this.sealed.map((group) => ({
        count: group.rows,
        write: group.write,
      }));
      for (let done = 0; done < rows; ) {
        const count = Math.min(rows - done, rowGroupRows);
        await encodeTurns.next();
        // Borrowed: a closing file's buffer takes no more rows and keeps these until the file is written
        // (a retried close reuses closingTail), so its pages need no copy.
        const write = planAndCompressRowGroup(this.buffer, count, this.options.codec, this.options.integerReport, done, true);
        write.catch(() => undefined); // awaited below; a failure must not count as unhandled meanwhile
        groups.push({ count, write });
        done += count;
      }
      const writes = await Promise.all(groups.map((group) => group.write));
      // Room for everything at once (the footer lists every row group of the file): the writer would
      // otherwise double its way up from 1 KiB, copying at every step.
      this.bytes.ensure(writes.reduce((sum, write) => sum + write.bytes, 0) + FOOTER_BYTES_PER_ROW_GROUP * (parquet.row_groups.length + writes.length + 1));
      for (const [index, write] of writes.entries()) {
        parquet.row_groups.push(write(this.bytes));
        parquet.num_rows += BigInt(groups[index]!.count);
      }
      this.appendFooter();
      return { bytes: this.takeBytes(), rows: this.sealedRows + rows, bufferRows: rows };
    } catch (error) {
      parquet.row_groups.length = before.rowGroups;
      parquet.num_rows = before.rows;
      parquet.pendingIndexes.length = before.indexes;
      this.bytes.index = 0;
      this.bytes.offset = this.committedBytes;
      throw new EncodeError(rows, error);
    }
  }

  /**
   * Every pending row as row groups, then the footer, in one write and one fsync; then the final name and
   * cleanup. Each part is done once even when close is retried.
   *
   * Why no journal replacement per row group here (as commitRowGroup does): until the file has its final
   * name, the journal still describes a valid prefix (the row groups it lists and the rows it holds), and
   * recovery cuts off any bytes after the last listed row group, so a crash during the close recovers
   * exactly what was durable before it began. Closing all files at a rotation boundary or at shutdown
   * then costs one sync per file instead of three per row group.
   */
  private async finish(rowGroupRows: number): Promise<void> {
    const finalName = this.finalName!;
    const tempPath = join(this.workDirectory, tempFileName(finalName));
    if (!this.footerWritten) {
      // Tables hyparquet-writer encodes (nullable columns: funding, a trickle) take the per-row-group path.
      if (!this.encodesFast) {
        while (this.buffer.rows > 0) await this.commitRowGroup(Math.min(this.buffer.rows, rowGroupRows));
      }
      // Kept across a retry: the row groups are in the writer's metadata already.
      this.closingTail ??= await this.encodeTail(rowGroupRows);
      const { bytes, rows, bufferRows } = this.closingTail;
      await writeAll(this.dataFile!, bytes, this.committedBytes);
      await this.dataFile!.truncate(this.committedBytes + bytes.length);
      await this.dataFile!.sync();
      await this.dataFile!.close();
      this.dataFile = undefined;
      this.footerWritten = true;
      this.closingTail = undefined;
      this.committedBytes += bytes.length;
      this.committedRows += rows;
      this.rowGroupCount = this.parquet!.row_groups.length;
      this.buffer.discard(bufferRows);
      this.bufferStart += bufferRows;
      this.committedThrough = this.bufferStart;
      this.sealed.length = 0;
      this.sealedRows = 0;
      this.oldestPendingAt = 0;
    }
    if (!this.linked) {
      await mkdir(this.directory, { recursive: true });
      this.finalName = await linkUnderFreeName(this.directory, tempPath, finalName);
      // The name is made durable before the journal goes (they are in different directories).
      await syncDirectory(this.directory);
      this.linked = true;
    }
    // The two removals are independent, and need no sync of their own: a crash that undoes them leaves
    // leftovers beside a complete file, which the next start only removes (recovery.ts). At a shutdown or a
    // rotation every file queues its steps on the same thread pool, so fewer steps in a row end sooner.
    const journal = this.journal;
    this.journal = undefined;
    await Promise.all([
      unlink(tempPath).catch(ignoreMissing),
      (journal ? journal.close().catch(() => undefined) : Promise.resolve()).then(() =>
        unlink(join(this.workDirectory, journalFileName(finalName))).catch(ignoreMissing),
      ),
    ]);
    this.state = "closed";
    await this.ownLog?.close();
  }

  /** The footer after the last row group: thrift.ts's writer, hyparquet-writer's for what that does not know. */
  private appendFooter(): void {
    const parquet = this.parquet!;
    if (parquet.pendingIndexes.length === 0 && parquet.statisticsTruncateLength === undefined) {
      try {
        writeFooter(this.bytes, { version: 2, created_by: parquet.createdBy, schema: parquet.schema, num_rows: parquet.num_rows, row_groups: parquet.row_groups, key_value_metadata: parquet.kvMetadata });
        return;
      } catch (error) {
        if (!(error instanceof NotEncodable)) throw error;
      }
    }
    parquet.finish();
  }

  /**
   * Hands out what the writer encoded and gives it a new small buffer, so idle files hold no bytes. No
   * copy: the writer was sized for what it got (ensure() before writing), so its buffer is little more.
   */
  private takeBytes(): Uint8Array {
    const bytes = this.bytes.getBytes();
    this.bytes.buffer = new ArrayBuffer(1024);
    this.bytes.view = new DataView(this.bytes.buffer);
    this.bytes.index = 0;
    return bytes;
  }
}

/**
 * Hands out turns for row-group encoding (synchronous, ~1-3 ms a group). Encodes run back to back for
 * up to ENCODE_SLICE_MS; then the next one waits for a turn of the event loop (setImmediate: sockets and
 * timers are serviced before it runs; setTimeout(0) cost ~1.1 ms of idle time per hop in Bun, an eighth of
 * every slice), so no stall is longer than a slice plus one encode. A hop before every encode (as before)
 * meant one encode per event-loop iteration, and under a flood of frames an iteration is long, so row
 * groups fell behind the frames, buffers grew to hundreds of thousands of rows and were copied on
 * every doubling.
 */
const ENCODE_SLICE_MS = 8;

/** Footer metadata of one row group (its column chunks, encodings and statistics), about. */
const FOOTER_BYTES_PER_ROW_GROUP = 2048;

/** A journal longer than this is replaced (compacted) at the next row group instead of appended to. */
const JOURNAL_REPLACE_BYTES = 32 * 1024 * 1024;

class EncodeTurns {
  private tail: Promise<void> = Promise.resolve();
  private sliceStartedAt = Number.NEGATIVE_INFINITY;

  next(): Promise<void> {
    const turn = this.tail.then(() => {
      if (performance.now() - this.sliceStartedAt < ENCODE_SLICE_MS) return;
      return new Promise<void>((resolve) =>
        setImmediate(() => {
          this.sliceStartedAt = performance.now();
          resolve();
        }),
      );
    });
    this.tail = turn;
    return turn;
  }
}

const encodeTurns = new EncodeTurns();

/**
 * Reserves file counters per partition in the order files are started, so that names sort in write
 * order even though files are created on disk asynchronously (and possibly out of order).
 */
export class NameAllocator {
  private readonly last = new Map<string, { directory: string; time: string; counter: Promise<number> }>();

  reserve(partition: string, directory: string, workDirectory: string, time: string): Promise<number> {
    const previous = this.last.get(partition);
    const fresh = async () => nextCounter(await namesIn(directory, workDirectory), time);
    const counter =
      previous && previous.directory === directory && previous.time === time
        ? previous.counter.then((value) => value + 1, fresh)
        : fresh();
    this.last.set(partition, { directory, time, counter });
    return counter;
  }
}

/** Names in a partition directory and in its work directory (finished files and files being written). */
async function namesIn(directory: string, workDirectory: string): Promise<string[]> {
  const [finished, inProgress] = await Promise.all([
    readdir(directory).catch(emptyWhenMissing),
    directory === workDirectory ? [] : readdir(workDirectory).catch(emptyWhenMissing),
  ]);
  return [...finished, ...inProgress];
}

function emptyWhenMissing(error: unknown): string[] {
  if (errorCode(error) === "ENOENT") return [];
  throw error;
}

/** Encoding failed: a bug or a value the writer rejects; retrying would fail again. */
export class EncodeError extends Error {
  constructor(
    readonly rows: number,
    cause: unknown,
    /** The rows are no longer in the buffer (a sealed row group whose compression failed). */
    readonly removed = false,
  ) {
    super(`could not encode ${rows} row(s) as Parquet: ${cause instanceof Error ? cause.message : String(cause)}`);
  }
}

interface FileIdentity {
  readonly dev: bigint;
  readonly ino: bigint;
}

function identityOf(stats: { readonly dev: bigint; readonly ino: bigint }): FileIdentity {
  return { dev: stats.dev, ino: stats.ino };
}

export function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

function ignoreMissing(error: unknown): void {
  if (errorCode(error) !== "ENOENT") throw error;
}

/**
 * Gives the complete temporary file its final name without ever replacing an existing file: link()
 * fails with EEXIST where rename() would overwrite. Returns the name used.
 */
export async function linkUnderFreeName(directory: string, tempPath: string, wanted: string): Promise<string> {
  let name = wanted;
  for (;;) {
    try {
      await link(tempPath, join(directory, name));
      return name;
    } catch (error) {
      if (errorCode(error) !== "EEXIST") throw error;
      const time = wanted.slice(0, 6);
      name = dataFileName(time, nextCounter(await readdir(directory), time));
    }
  }
}

/**
 * QuestDB sink: every event becomes ILP rows (one table per stream plus `gaps`, see schema.ts) sent
 * over TCP (default, QUESTDB_HOST:QUESTDB_ILP_PORT) or whatever QDB_CLIENT_CONF selects.
 *
 * Flow: write() encodes rows into the open chunk (encoder.ts); a chunk is sealed after QUESTDB_FLUSH_ROWS
 * rows or by the QUESTDB_FLUSH_INTERVAL_MS timer (the client only checks its auto-flush when a row is
 * added, so a quiet stream would otherwise sit in the buffer) and queued in the outbox (outbox.ts); one
 * pump sends chunks in order through the client's transport (connection.ts).
 *
 * Tables (ddl.ts): at start, over QuestDB's HTTP endpoint, each table is created when missing (PARTITION
 * BY DAY, WAL, DEDUP UPSERT KEYS) and an existing one is checked: columns QuestDB cannot store our values
 * in stop the start (exit 2, one line naming table, column, expected and found type). Until that has
 * run, no row is sent (ILP would create the tables without DEDUP keys, for good): while the endpoint does
 * not answer, rows are held (an outage) and the DDL is retried with backoff. QUESTDB_CREATE_TABLES=false
 * skips all of it.
 *
 * QuestDB away (down at start, restarting, dropping the connection): collecting goes on; rows stay in
 * memory up to QUESTDB_BUFFER_MAX_BYTES, the pump reconnects with exponential backoff, and over TCP the
 * rows of the last QUESTDB_RESEND_WINDOW_MS are sent again (ILP/TCP has no acknowledgement; the DEDUP
 * keys make this idempotent). At the bound write() holds the pipeline (as it does while QuestDB is
 * connected but slower than the feed), so the pipeline's bounded queue applies the one overflow policy:
 * drops counted and logged, `gaps` rows, and fresh snapshots for order books, which a sink cannot ask
 * for itself. The outage and its length go to SinkStats. A stop that cannot deliver keeps the rows in a
 * pending file (files.ts) that the next start sends first; close() reports what it kept and lost.
 *
 * Refused rows: QuestDB refuses a line it cannot store (a cast error: a table whose columns do not
 * match), over TCP by closing the connection, over HTTP with a 400 for the whole request. Sending the
 * same chunk again would be refused again, for ever, and every table behind it would starve. So a
 * connection QuestDB closes right after the same chunk twice, or a 400, starts an isolation: the chunk is
 * sent piece by piece (halving, TCP: a piece counts as accepted when the connection stays open
 * QUESTDB_REFUSAL_PROBE_MS after it) until the refused line is found. That line, and every row of its
 * table when QuestDB's HTTP endpoint confirms the table does not match (or cannot tell), is set aside in
 * `refused.ilp` (files.ts) and counted (SinkStats.refusedRows); the other tables flow on.
 *
 * Nothing here throws into the pipeline or leaves a promise unobserved.
 */
import type { QuestDbSettings } from "./settings.ts";
import { UserError, errorMessage } from "../../core/errors.ts";
import { rowCount, type MarketEvent } from "../../core/events.ts";
import { FaultLog } from "../../core/fault-log.ts";
import type { Logger } from "../../core/log.ts";
import type { SinkStats } from "../../core/stats.ts";
import { TABLE_NAMES, TABLE_OF_EVENT, type TableName } from "../../core/tables.ts";
import type { CloseReport, Sink } from "../../core/sink.ts";
import { IlpConnection, RejectedDataError } from "./connection.ts";
import { checkTable, setUpTables } from "./ddl.ts";
import { IlpEncoder } from "./encoder.ts";
import { SinkFiles } from "./files.ts";
import { lineEnds, partitionByTable, rowsByTable, tableOfLine } from "./lines.ts";
import { Outbox, type Chunk } from "./outbox.ts";
import { resolveSettings, type ResolvedSettings } from "./settings.ts";

export interface QuestDbSinkOptions {
  readonly settings: QuestDbSettings;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly log: Logger;
  readonly stats: SinkStats;
  /**
   * The output directory: its `questdb/` subdirectory keeps rows a stop could not deliver and rows QuestDB
   * refused (files.ts). Without it such rows are lost, and reported as lost.
   */
  readonly directory?: string;
}

/** What one piece of rows sent while looking for a refused line came to. */
type Verdict = { readonly kind: "accepted" } | { readonly kind: "refused"; readonly reason: string } | { readonly kind: "unreachable"; readonly reason: string };

/** A connection used only to try pieces of rows (TCP), with how it was lost. */
interface ProbeConnection {
  readonly connection: IlpConnection;
  lost: string | undefined;
  /** QuestDB closed it (rather than a stalled write we gave up). */
  closedByPeer: boolean;
  readonly whenLost: Promise<void>;
}

/** Over TCP QuestDB says nothing when it refuses a line: it closes the connection (docs/sinks/questdb.md). */
const TCP_REFUSAL = "QuestDB closed the connection after this line; over ILP/TCP it gives its reason only in its own log";

/** A chunk is sealed at this size whatever its row count, so one send never grows unbounded. */
const CHUNK_MAX_BYTES = 4 << 20;
/** While connected, write() waits when this much (or a quarter of the bound) is waiting to be sent. */
const BACKPRESSURE_MAX_BYTES = 64 << 20;
const OUTAGE_REMINDER_MS = 60_000;
/** Reconnect delay cap while shutting down: keep trying until QUESTDB_CLOSE_TIMEOUT_MS. */
const CLOSING_RETRY_MS = 250;
/** A TCP connection lost sooner than this after opening counts as a failed attempt (backoff). */
const QUICK_LOSS_MS = 1000;

export class QuestDbSink implements Sink {
  readonly name = "questdb";
  readonly settings: ResolvedSettings;
  /** Events ILP cannot carry (see encoder.ts), dropped whole; also in droppedRows and logged. */
  rejectedEvents = 0;
  private readonly log: Logger;
  private readonly stats: SinkStats;
  private readonly faults: FaultLog;
  private readonly encoder: IlpEncoder;
  private readonly files: SinkFiles | undefined;
  /** Tables whose DDL has not run yet: while any is, no row is sent. */
  private readonly tablesPending = new Set<TableName>();
  private tablesTimer: ReturnType<typeof setTimeout> | undefined;
  private tablesRunning: Promise<unknown> | undefined;
  private tableFailures = 0;
  /** Tables QuestDB refuses, with why: their rows go to refused.ilp instead of QuestDB. */
  private readonly refusedTables = new Map<TableName, string>();
  /** Rows of refused tables, encoded as they would have been sent, until they are appended to the file. */
  private refusedEncoder: IlpEncoder | undefined;
  /** Rows that could be neither delivered nor kept in a file, per table (the close report). */
  private readonly lostRows: Partial<Record<TableName, number>> = {};
  /** Chunks sent on the current connection, and the first of them (a refused line is in there). */
  private sentOnConnection = 0;
  private firstSentChunk: Chunk | undefined;
  /** The first chunk of the last connection QuestDB closed right after opening. */
  private quickLossChunk: Chunk | undefined;
  /** Chunks to look through for a refused line before sending on (0: none suspected). */
  private suspectChunks = 0;
  /** QuestDB closed a connection before any row was sent on it: not a refused line, until one lives. */
  private refusingClients = false;
  private probeConnection: ProbeConnection | undefined;
  /** Pending files of earlier stops whose rows are queued; each is deleted once they are all sent. */
  private readonly loadedFiles = new Set<string>();
  /** Memory of chunks sent and released goes back to the encoder for later chunks. */
  private readonly outbox = new Outbox((bytes) => this.encoder.recycle(bytes));
  private readonly backpressureBytes: number;
  private connection: IlpConnection | undefined;
  private pumping = false;
  private pumpRequested = false;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private flushTimer: ReturnType<typeof setInterval> | undefined;
  /** Consecutive failed attempts: the backoff exponent. */
  private failures = 0;
  private connectedAt = 0;
  private droppedAtOutageStart = 0;
  private lastReminderAt = 0;
  private progressWaiters: Array<() => void> = [];
  private closing = false;
  /** write() is holding the pipeline because the buffer is full (logged once per episode). */
  private holding = false;
  private closed = false;
  private closingDone: Promise<CloseReport> | undefined;

  constructor(options: QuestDbSinkOptions) {
    this.log = options.log;
    this.stats = options.stats;
    this.settings = resolveSettings(options.settings, options.env, options.log);
    this.faults = new FaultLog(options.log);
    this.encoder = new IlpEncoder({ maxLineBytes: this.settings.maxLineBytes });
    this.files = options.directory === undefined ? undefined : new SinkFiles(options.directory);
    this.backpressureBytes = Math.min(BACKPRESSURE_MAX_BYTES, Math.floor(this.settings.bufferMaxBytes / 4));
    if (this.settings.ddl !== undefined) for (const table of TABLE_NAMES) this.tablesPending.add(table);
  }

  /** True while a connection is open (TCP) or usable (HTTP). */
  get connected(): boolean {
    return this.connection !== undefined;
  }

  /** Doubles and symbols sent as NULL because ILP cannot carry them (NaN, ±Infinity, empty symbol). */
  get nullifiedValues(): number {
    return this.encoder.nullifiedValues;
  }

  async start(): Promise<void> {
    const { kind, address, flushRows, flushIntervalMs, bufferMaxBytes, senderOptions } = this.settings;
    const secure = senderOptions.protocol === "tcps" || senderOptions.protocol === "https";
    this.log.info(
      `QuestDB sink: ILP over ${kind.toUpperCase()}${secure ? " (TLS)" : ""} to ${address}; sending every ${flushRows} rows or ${flushIntervalMs} ms; ` +
        `up to ${mebibytes(bufferMaxBytes)} MiB buffered while QuestDB is away`,
    );
    this.loadPendingFiles();
    if (this.tablesPending.size > 0) {
      // Before any row: a table QuestDB would refuse every line of is a mistake to fix now (exit 2).
      const incompatible = await this.setUpTables();
      if (incompatible.length > 0) {
        clearTimeout(this.tablesTimer);
        this.closed = true;
        throw new UserError(
          incompatible.map(({ table, problems }) => `QuestDB table ${table} does not match what xtrader writes: ${problems.join("; ")}`).join("; ") +
            "; change or drop the table (ALTER TABLE ... ALTER COLUMN ... TYPE ...), or point xtrader at another QuestDB; see docs/sinks/questdb.md",
        );
      }
    }
    this.flushTimer = setInterval(() => this.tick(), flushIntervalMs);
    // Connect in the background: a sink that cannot reach QuestDB still starts.
    this.requestPump();
  }

  write(events: readonly MarketEvent[]): void | Promise<void> {
    if (this.closed) throw new Error("the QuestDB sink is closed");
    for (let i = 0; i < events.length; i++) this.accept(events[i]!);
    this.updateBuffered();
    // Buffer full (QuestDB away for long): hold the pipeline until a tenth of the bound is free.
    if (!this.fits(0)) {
      if (!this.holding) {
        this.holding = true;
        this.log.warn(
          `QuestDB buffer is full (${mebibytes(this.settings.bufferMaxBytes)} MiB, QUESTDB_BUFFER_MAX_BYTES)` +
            `${this.stats.outageSince > 0 ? " while QuestDB is unreachable" : ""}: holding the pipeline; ` +
            "its queue counts and records what it cannot keep",
        );
      }
      return this.waitWhile(() => !this.closing && !this.fits(this.settings.bufferMaxBytes / 10)).then(() => {
        this.holding = false;
      });
    }
    // QuestDB connected but slower than the feed: hold the pipeline so its bounded queue applies the
    // overflow policy (gap + resync) instead of this buffer filling up.
    if (this.sending() && this.outbox.unsentBytes > this.backpressureBytes) {
      return this.waitWhile(() => this.sending() && this.outbox.unsentBytes > this.backpressureBytes / 2);
    }
  }

  /** Sends everything buffered; returns early (rows stay buffered) while QuestDB is unreachable. */
  async flush(): Promise<void> {
    if (this.closed) return;
    this.seal();
    await this.waitWhile(() => this.outbox.pendingChunks > 0 && this.deliverable());
    this.writeRefused();
  }

  /**
   * Flushes, keeps trying to deliver for QUESTDB_CLOSE_TIMEOUT_MS, then keeps what is left in a pending
   * file for the next start (or reports it lost) and closes the connection. Idempotent.
   */
  close(): Promise<CloseReport> {
    this.closingDone ??= this.shutDown();
    return this.closingDone;
  }

  private async shutDown(): Promise<CloseReport> {
    this.closing = true;
    clearInterval(this.flushTimer);
    this.seal();
    if (this.reconnectTimer !== undefined) {
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = undefined;
    }
    const deadline = performance.now() + this.settings.closeTimeoutMs;
    while (this.outbox.pendingChunks > 0 && performance.now() < deadline) {
      if (this.tablesPending.size > 0 && this.tablesTimer !== undefined) {
        clearTimeout(this.tablesTimer);
        this.tablesTimer = undefined;
        this.retryTables();
      }
      this.requestPump();
      await this.nextProgress(Math.max(1, Math.min(CLOSING_RETRY_MS, deadline - performance.now())));
    }
    this.closed = true;
    if (this.reconnectTimer !== undefined) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    if (this.tablesTimer !== undefined) clearTimeout(this.tablesTimer);
    this.tablesTimer = undefined;
    const kept = this.keepPending();
    this.writeRefused();
    this.faults.flush();
    const connection = this.connection;
    this.connection = undefined;
    await connection?.close();
    this.closeProbe();
    if (this.stats.outageSince > 0) {
      this.stats.outageSecondsTotal += (performance.now() - this.stats.outageSince) / 1000;
      this.stats.outageSince = 0;
    }
    this.updateBuffered();
    this.notifyProgress();
    return { lostRows: { ...this.lostRows }, keptRows: kept.rows, keptWhere: kept.where };
  }

  /**
   * At the end of a stop: what QuestDB did not get goes to a pending file the next start sends first;
   * if there is no directory or it cannot be written, it is lost, counted and logged.
   */
  private keepPending(): { rows: number; where?: string } {
    const pending = this.outbox.pending();
    let rows = 0;
    for (const chunk of pending) rows += chunk.rows;
    if (rows === 0) {
      this.outbox.abandonPending();
      return { rows: 0 };
    }
    const earlierFiles = new Set(pending.flatMap((chunk) => (chunk.file === undefined ? [] : [chunk.file])));
    let failure = "no output directory to keep them in";
    if (this.files !== undefined) {
      try {
        const path = this.files.savePending(pending.map((chunk) => chunk.bytes));
        this.outbox.abandonPending();
        // Their unsent rows are in the new file now.
        for (const file of earlierFiles) {
          this.loadedFiles.delete(file);
          this.removeFile(file);
        }
        this.log.warn(
          `QuestDB at ${this.settings.address} was unreachable until shutdown: ${rows} row(s) not delivered are kept in ${path} ` +
            "and sent at the next start",
        );
        return { rows, where: path };
      } catch (error) {
        failure = `they could not be written to ${this.files.directory}: ${errorMessage(error)}`;
      }
    }
    // Rows read from an earlier pending file are still in that file: kept, not lost.
    let keptRows = 0;
    let neverSentRows = 0;
    for (const chunk of pending) {
      if (chunk.file !== undefined && this.loadedFiles.has(chunk.file)) {
        keptRows += chunk.rows;
        continue;
      }
      rowsByTable(chunk.bytes, this.lostRows);
      if (!chunk.counted) neverSentRows += chunk.rows;
    }
    this.outbox.abandonPending();
    const lost = rows - keptRows;
    this.stats.droppedRows += neverSentRows;
    this.stats.errors++;
    this.log.error(
      `QuestDB at ${this.settings.address} was unreachable until shutdown: ${lost} buffered row(s) were not delivered and are lost (${failure})`,
    );
    return keptRows > 0 ? { rows: keptRows, where: [...earlierFiles].join(", ") } : { rows: 0 };
  }

  /** Queues the rows of pending files left by earlier stops, before any new row. */
  private loadPendingFiles(): void {
    if (this.files === undefined) return;
    for (const path of this.files.pendingFiles()) {
      let bytes: Uint8Array;
      try {
        bytes = this.files.read(path);
      } catch (error) {
        this.stats.errors++;
        this.log.error(`QuestDB sink: cannot read ${path}, left where it is: ${errorMessage(error)}`);
        continue;
      }
      const ends = lineEnds(bytes);
      let start = 0;
      let queuedLines = 0;
      // Chunks of at most CHUNK_MAX_BYTES, cut between lines, as if they had just been encoded.
      for (let i = 0; i < ends.length; i++) {
        const end = ends[i]!;
        if (i === ends.length - 1 || ends[i + 1]! - start > CHUNK_MAX_BYTES) {
          this.outbox.push(bytes.slice(start, end), i + 1 - queuedLines, path);
          queuedLines = i + 1;
          start = end;
        }
      }
      if (ends.length === 0) {
        this.removeFile(path);
        continue;
      }
      this.loadedFiles.add(path);
      this.log.info(`QuestDB sink: ${ends.length} row(s) a previous stop could not deliver (${path}) are sent first`);
    }
    this.updateBuffered();
  }

  private removeFile(path: string): void {
    try {
      this.files?.remove(path);
    } catch (error) {
      if ((error as { code?: unknown }).code === "ENOENT") return;
      // Left behind, its rows would be sent again at the next start: duplicates the DEDUP keys remove.
      this.log.warn(`QuestDB sink: could not delete ${path} (${errorMessage(error)}); its rows will be sent again at the next start`);
    }
  }

  // ---- accepting rows -------------------------------------------------------------------------------

  private accept(event: MarketEvent): void {
    if (this.refusedTables.size > 0 && this.refusedTables.has(TABLE_OF_EVENT[event.type])) {
      this.acceptRefused(event);
      return;
    }
    const written = this.encoder.encode(event);
    if (written < 0) {
      this.reject(event);
      return;
    }
    // Over the bound, rows already sent in the resend window give way first; a batch is never split
    // (write() then holds the pipeline), so the bound is exceeded by one batch at most.
    if (this.outbox.bytes + this.encoder.position > this.settings.bufferMaxBytes) this.makeRoom(0);
    if (this.encoder.rows >= this.settings.flushRows || this.encoder.position >= CHUNK_MAX_BYTES) this.seal();
  }

  /** True when the buffer, after freeing resend-window chunks, is at least `free` bytes under the bound. */
  private fits(free: number): boolean {
    return this.makeRoom(free);
  }

  /** Frees resend-window chunks until `extra` more bytes fit the bound; false if they cannot. */
  private makeRoom(extra: number): boolean {
    const bound = this.settings.bufferMaxBytes - extra;
    while (this.outbox.bytes + this.encoder.position > bound) {
      if (!this.outbox.releaseOldestSent()) return false;
      if (this.loadedFiles.size > 0) this.removeDeliveredFiles();
    }
    return true;
  }

  private reject(event: MarketEvent): void {
    this.rejectedEvents++;
    this.stats.droppedRows += rowCount(event);
    this.stats.errors++;
    this.faults.report("rejected", `QuestDB sink dropped an event ILP cannot carry: ${this.encoder.lastRejection}`);
  }

  private seal(): void {
    const rows = this.encoder.rows;
    const bytes = this.encoder.take();
    if (bytes === undefined) return;
    this.outbox.push(bytes, rows);
    this.requestPump();
  }

  private updateBuffered(): void {
    this.stats.bufferedRows = this.encoder.rows + this.outbox.pendingRows + (this.refusedEncoder?.rows ?? 0);
  }

  // ---- refused rows ---------------------------------------------------------------------------------

  /** A row of a table QuestDB refuses: encoded as it would have been sent, for refused.ilp. */
  private acceptRefused(event: MarketEvent): void {
    this.refusedEncoder ??= new IlpEncoder({ maxLineBytes: this.settings.maxLineBytes });
    if (this.refusedEncoder.encode(event) < 0) this.reject(event);
  }

  /** Appends the refused rows encoded since the last call to refused.ilp. */
  private writeRefused(): void {
    const encoder = this.refusedEncoder;
    if (encoder === undefined || encoder.rows === 0) return;
    const rows = encoder.rows;
    this.setAside(encoder.take()!, rows);
  }

  /** Refused lines go to refused.ilp; when they cannot, they are lost (counted, logged, in the close report). */
  private setAside(bytes: Uint8Array, rows: number): void {
    this.stats.refusedRows += rows;
    this.stats.errors++;
    if (this.files !== undefined) {
      try {
        this.files.appendRefused(bytes);
        return;
      } catch (error) {
        this.faults.report("refused-file", `QuestDB sink: refused rows could not be kept in ${this.files.refusedPath} (${errorMessage(error)}): they are lost`, "error", rows);
      }
    } else {
      this.faults.report("refused-file", "QuestDB sink: refused rows are lost: no output directory to keep them in", "error", rows);
    }
    this.stats.droppedRows += rows;
    rowsByTable(bytes, this.lostRows);
  }

  /**
   * From now on the rows of `table` are not sent (QuestDB refuses them): the queued ones and every later
   * one go to refused.ilp; the other tables are not affected.
   */
  private refuseTable(table: TableName, why: string, alreadySetAside = 0): void {
    if (this.refusedTables.has(table)) return;
    this.refusedTables.set(table, why);
    this.seal();
    const rows = alreadySetAside + this.divertRefusedRows();
    this.updateBuffered();
    this.notifyProgress();
    this.log.error(
      `QuestDB refuses the rows of table ${table}: ${why}. They are set aside in ${this.files?.refusedPath ?? "nowhere (no output directory): lost"} ` +
        `(${rows} so far; ILP, to send again once the table is fixed) and counted in xtrader_sink_refused_rows_total; the other tables go on. ` +
        "Fix or drop the table, then restart xtrader",
    );
  }

  /**
   * Sets aside the queued rows of refused tables (they would only be refused again); returns how many.
   * Runs when a table is refused and when a lost connection puts the resend window back in the queue.
   */
  private divertRefusedRows(): number {
    const tables = new Set(this.refusedTables.keys());
    let rows = 0;
    this.outbox.rewriteUnsent((chunk) => {
      const split = partitionByTable(chunk.bytes, tables);
      if (split.takenRows === 0) return undefined;
      this.setAside(split.taken, split.takenRows);
      rows += split.takenRows;
      return { bytes: split.kept, rows: split.keptRows };
    });
    this.removeDeliveredFiles();
    return rows;
  }

  /**
   * A line QuestDB refused: set aside. Its table's other rows are set aside too unless QuestDB's HTTP
   * endpoint shows the table matches (then this one line was the problem): a table that does not match
   * would have every later chunk isolated the same slow way, starving the others.
   */
  private async refuseLine(line: Uint8Array, reason: string): Promise<void> {
    const table = tableOfLine(line, 0);
    this.setAside(line, 1);
    if (table === undefined || this.refusedTables.has(table)) return;
    let check: Awaited<ReturnType<typeof checkTable>> | undefined;
    if (this.settings.ddl !== undefined) check = await checkTable(this.settings.ddl, table, this.log, this.settings.connectTimeoutMs);
    if (check?.kind === "compatible") {
      this.faults.report(
        `refused:${table}`,
        `QuestDB refused a row of table ${table} (${reason.slice(0, 300)}); it is set aside in ${this.files?.refusedPath ?? "nowhere (lost)"}; ` +
          "the table's columns match, so its other rows are still sent",
        "error",
      );
      return;
    }
    this.refuseTable(
      table,
      check?.kind === "incompatible" ? `its columns do not match (${check.problems.join("; ")})` : `QuestDB refused a row (${reason.slice(0, 300)})`,
      1,
    );
  }

  // ---- tables ---------------------------------------------------------------------------------------

  /**
   * Runs the DDL for the tables still pending. Returns the incompatible ones (at start they stop xtrader;
   * later they are refused, see refuseTable). While QuestDB's HTTP endpoint does not answer, rows are held
   * and the DDL is retried with backoff.
   */
  private async setUpTables(): Promise<Array<{ table: TableName; problems: readonly string[] }>> {
    const endpoint = this.settings.ddl!;
    const result = await setUpTables(endpoint, [...this.tablesPending], this.log, this.settings.connectTimeoutMs);
    const incompatible: Array<{ table: TableName; problems: readonly string[] }> = [];
    for (const setup of result.tables) {
      this.tablesPending.delete(setup.table);
      if (setup.kind === "failed") {
        this.stats.errors++;
        this.log.warn(
          `QuestDB could not create table ${setup.table}: ${setup.error}; its rows are sent anyway and ILP creates it without DEDUP keys`,
        );
      } else if (setup.kind === "incompatible") {
        incompatible.push({ table: setup.table, problems: setup.problems });
      }
    }
    if (result.kind === "unreachable") {
      this.tableFailures++;
      this.stats.errors++;
      this.beginOutage(
        `its HTTP endpoint ${endpoint.baseUrl} does not answer (${result.reason}), so the tables cannot be created or checked: ` +
          "no row is sent until they are (otherwise QuestDB would create them without DEDUP keys); set QUESTDB_CREATE_TABLES=false " +
          "if that endpoint cannot be reached from here",
      );
      this.scheduleTables();
      return incompatible;
    }
    this.tableFailures = 0;
    if (incompatible.length === 0) {
      this.log.info("QuestDB tables ready (created when missing: PARTITION BY DAY, WAL, DEDUP UPSERT KEYS; existing ones checked)");
    }
    if (this.connection !== undefined) this.endOutage();
    this.requestPump();
    return incompatible;
  }

  private scheduleTables(): void {
    if (this.closed || this.tablesTimer !== undefined) return;
    const delay = this.closing ? CLOSING_RETRY_MS : this.backoffMs(this.tableFailures);
    this.tablesTimer = setTimeout(() => {
      this.tablesTimer = undefined;
      this.retryTables();
    }, delay);
  }

  /** A later DDL attempt: a table found incompatible now is refused (xtrader is running by now). */
  private retryTables(): void {
    if (this.closed || this.tablesRunning !== undefined || this.tablesPending.size === 0) return;
    this.tablesRunning = this.setUpTables()
      .then((incompatible) => {
        for (const { table, problems } of incompatible) this.refuseTable(table, `its columns do not match (${problems.join("; ")})`);
      })
      .catch((error: unknown) => {
        this.stats.errors++;
        this.log.error(`QuestDB sink: unexpected error while setting up tables: ${errorMessage(error)}`);
        this.scheduleTables();
      })
      .finally(() => {
        this.tablesRunning = undefined;
        this.notifyProgress();
      });
  }

  // ---- sending --------------------------------------------------------------------------------------

  private requestPump(): void {
    if (this.closed) return;
    void this.pump();
  }

  /** The single sender: connects when needed and sends chunks in order. Never rejects. */
  private async pump(): Promise<void> {
    if (this.pumping) {
      this.pumpRequested = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.pumpRequested = false;
        await this.drain();
      } while (this.pumpRequested && !this.closed);
    } catch (error) {
      this.stats.errors++;
      this.log.error(`QuestDB sink: unexpected error while sending: ${errorMessage(error)}`);
    } finally {
      // No notifyProgress() here: a waiter woken by a pump that did nothing would request another pump
      // at once, a loop of microtasks that starves timers. Waiters wake on real progress (or their timer).
      this.pumping = false;
    }
  }

  private async drain(): Promise<void> {
    for (;;) {
      if (this.closed) return;
      // Nothing is sent before the tables exist with their DEDUP keys (see setUpTables).
      if (this.tablesPending.size > 0) return;
      if (this.suspectChunks > 0) {
        await this.isolate();
        continue;
      }
      if (this.connection === undefined) {
        if (this.reconnectTimer !== undefined) return;
        if (!(await this.connect())) return;
        continue;
      }
      const connection = this.connection;
      this.expireResendWindow();
      const chunk = this.outbox.takeNext();
      if (chunk === undefined) return;
      const wasCounted = chunk.counted;
      const started = performance.now();
      this.sentOnConnection++;
      this.firstSentChunk ??= chunk;
      try {
        await connection.send(chunk.bytes);
      } catch (error) {
        if (error instanceof RejectedDataError) {
          // QuestDB refuses something in this batch (HTTP 400): find the line, send the rest.
          await this.bisect(chunk, errorMessage(error));
          continue;
        }
        this.connectionLost(connection, errorMessage(error));
        return;
      }
      if (this.connection !== connection) continue; // lost meanwhile: the chunk was queued again
      this.delivered(chunk, started, wasCounted);
      if (this.settings.kind === "http") {
        this.failures = 0;
        this.endOutage();
      }
    }
  }

  /** The chunk in flight reached QuestDB (HTTP: acknowledged; TCP: taken by the kernel). */
  private delivered(chunk: Chunk, started: number, wasCounted: boolean): void {
    const now = performance.now();
    this.outbox.sent(chunk, now, this.settings.resendWindowMs > 0);
    this.stats.recordFlush((now - started) / 1000, wasCounted ? 0 : chunk.rows);
    if (chunk.file !== undefined) this.removeDeliveredFiles();
    this.updateBuffered();
    this.notifyProgress();
  }

  /**
   * Deletes the pending files of earlier stops whose rows have all been sent and left the resend window:
   * over TCP a sent row is only handed to the kernel, and the window is what is sent again after a drop.
   */
  private removeDeliveredFiles(): void {
    for (const file of this.loadedFiles) {
      if (this.outbox.holdsFile(file)) continue;
      this.loadedFiles.delete(file);
      this.removeFile(file);
    }
  }

  private async connect(): Promise<boolean> {
    const connection = await this.openConnection();
    if (typeof connection === "string") {
      this.attemptFailed(connection);
      return false;
    }
    if (this.closed) {
      await connection.close();
      return false;
    }
    this.connection = connection;
    this.connectedAt = performance.now();
    this.sentOnConnection = 0;
    this.firstSentChunk = undefined;
    if (this.settings.kind === "tcp") this.endOutageOnceStable(connection);
    this.notifyProgress();
    return true;
  }

  /** A connection that was open is gone: queue the unacknowledged rows again and reconnect. */
  private connectionLost(connection: IlpConnection, reason: string, byPeer = false): void {
    if (this.connection !== connection) return;
    this.connection = undefined;
    void connection.close();
    const resent = this.outbox.requeue();
    if (this.refusedTables.size > 0) this.divertRefusedRows();
    this.updateBuffered();
    this.notifyProgress();
    if (this.closed) return;
    if (this.settings.kind === "http") {
      // Over HTTP the failed send is the first sign that QuestDB is away.
      this.attemptFailed(reason);
      return;
    }
    // A connection closed soon after opening (QuestDB refusing us, a proxy without backend) must not
    // turn into a reconnect loop: back off. One that lived reconnects at once.
    const quick = performance.now() - this.connectedAt < QUICK_LOSS_MS;
    const first = this.firstSentChunk;
    this.firstSentChunk = undefined;
    if (!quick) {
      this.quickLossChunk = undefined;
      this.refusingClients = false;
    } else if (byPeer && first !== undefined && !this.refusingClients && this.settings.resendWindowMs > 0) {
      // Closed right after the same chunk twice: QuestDB most likely refuses a line in it (a cast error
      // closes the connection, https://questdb.com/docs/ingestion/ilp/advanced-settings/#error-handling).
      // Sending it again would be refused again, for ever: look for the line first.
      if (first === this.quickLossChunk) {
        this.suspectChunks = Math.max(1, this.sentOnConnection);
        this.quickLossChunk = undefined;
        this.requestPump();
        return;
      }
      this.quickLossChunk = first;
    }
    this.failures = quick ? this.failures + 1 : 0;
    if (quick && this.failures >= 2) {
      // Closed right after opening, again: QuestDB refuses us. With authentication that is most likely its
      // answer to a key it does not accept (https://questdb.io/docs/reference/api/ilp/authenticate/: it
      // disconnects, with no message); rows sent meanwhile come back through the resend window.
      this.failures--; // attemptFailed counts this one
      const refusing = this.refusingConnections(reason);
      this.attemptFailed(refusing.reason, refusing.level);
      return;
    }
    const pending = this.outbox.pendingRows;
    if (pending === 0) {
      this.log.debug(`QuestDB closed the idle connection (${reason}); reconnecting`);
    } else {
      this.stats.errors++;
      this.log.warn(
        `connection to QuestDB at ${this.settings.address} lost (${reason}); reconnecting, then sending ${pending} row(s)` +
          (resent > 0 ? `, of which ${resent} were sent in the last ${this.settings.resendWindowMs / 1000} s and may not have arrived` : ""),
      );
    }
    this.scheduleReconnect(quick ? this.backoffMs() : 0);
  }

  /** QuestDB closes every connection right after opening it: why, as far as we can tell. */
  private refusingConnections(reason: string): { reason: string; level: "warn" | "error" } {
    const keyId = this.settings.senderOptions.jwk?.kid; // set for authenticated ILP/TCP (settings.ts)
    return keyId === undefined
      ? { reason: `it closes every connection right after accepting it (${reason})`, level: "warn" }
      : {
          reason:
            `it closes every connection right after authentication: QuestDB probably does not accept key id '${keyId}' ` +
            "(or drops the connection for another reason); check QDB_CLIENT_CONF's username and token against QuestDB's authentication file",
          level: "error",
        };
  }

  // ---- finding a refused line -----------------------------------------------------------------------

  /**
   * TCP: QuestDB closed two connections right after the same chunk. Each chunk that was sent on the last
   * one is tried alone; one that is refused is searched for its line (bisect). Nothing else is sent
   * meanwhile (order is kept).
   */
  private async isolate(): Promise<void> {
    const count = this.suspectChunks;
    this.suspectChunks = 0;
    this.faults.report(
      "isolate",
      `QuestDB at ${this.settings.address} closed the connection right after the same rows twice: looking for a line it refuses ` +
        "(sending them piece by piece; the other rows wait)",
    );
    try {
      for (let i = 0; i < count && !this.closed; i++) {
        const chunk = this.outbox.takeNext();
        if (chunk === undefined) return;
        const started = performance.now();
        const wasCounted = chunk.counted;
        const verdict = await this.probe(chunk.bytes);
        if (this.closed) return;
        if (verdict.kind === "unreachable") {
          this.outbox.requeue();
          this.probeFailed(verdict.reason);
          return;
        }
        if (verdict.kind === "refused") {
          await this.bisect(chunk, verdict.reason);
          return;
        }
        this.delivered(chunk, started, wasCounted);
      }
      this.log.info(`QuestDB at ${this.settings.address} took those rows piece by piece: no line is refused; sending on`);
    } finally {
      this.closeProbe();
    }
  }

  /**
   * `chunk` (in flight) holds a line QuestDB refuses: halves of what is left are tried until the first
   * refused line is found (lines before it arrive on the way); it is set aside, the rest is queued first.
   */
  private async bisect(chunk: Chunk, reason: string): Promise<void> {
    const ends = lineEnds(chunk.bytes);
    const startOf = (line: number) => (line === 0 ? 0 : ends[line - 1]!);
    const piece = (from: number, to: number) => chunk.bytes.subarray(startOf(from), ends[to - 1]);
    let refusal = reason;
    let low = 0; // lines before `low` have arrived
    let high = ends.length; // the refused line is before `high`
    // Whether line `low` was itself refused when sent alone. A refusal of several lines may come from
    // their size (HTTP 413 behind a proxy), not from one of them: a line is set aside only once it was
    // refused on its own, never by elimination.
    let refusedAlone = false;
    const started = performance.now();
    try {
      while (!refusedAlone) {
        const middle = high - low > 1 ? (low + high) >>> 1 : high;
        const verdict = await this.probe(piece(low, middle));
        if (this.closed) return;
        if (verdict.kind === "unreachable") {
          this.replaceInFlight(chunk, ends, low);
          this.probeFailed(verdict.reason);
          return;
        }
        if (verdict.kind === "accepted") {
          low = middle;
          if (low === ends.length) break;
          if (high <= low) high = ends.length;
        } else {
          high = middle;
          refusal = verdict.reason;
          refusedAlone = high - low === 1;
        }
      }
    } finally {
      if (!chunk.counted && low > 0 && !this.closed) this.stats.recordFlush((performance.now() - started) / 1000, low);
    }
    if (!refusedAlone) {
      // Every line went through on its own or in smaller pieces: nothing is refused.
      this.replaceInFlight(chunk, ends, ends.length);
      this.log.warn(`QuestDB refused a chunk whose lines it took in smaller pieces (${refusal.slice(0, 300)}); sending on`);
      this.updateBuffered();
      this.notifyProgress();
      return;
    }
    const line = chunk.bytes.slice(startOf(low), ends[low]);
    this.replaceInFlight(chunk, ends, low + 1);
    this.log.debug(`QuestDB refuses line ${low + 1} of ${ends.length} of a chunk: ${refusal.slice(0, 300)}`);
    await this.refuseLine(line, this.settings.kind === "tcp" && refusal === TCP_REFUSAL ? TCP_REFUSAL : refusal);
    this.updateBuffered();
    this.notifyProgress();
  }

  /** Looking for a refused line ran into an outage (or a QuestDB that refuses connections, not lines). */
  private probeFailed(reason: string): void {
    if (this.refusingClients) {
      const refusing = this.refusingConnections(reason);
      this.attemptFailed(refusing.reason, refusing.level);
    } else {
      this.attemptFailed(reason);
    }
  }

  /** The in-flight chunk is done with except its lines from `from` on, which go first in the queue. */
  private replaceInFlight(chunk: Chunk, ends: readonly number[], from: number): void {
    this.outbox.discardInFlight();
    if (from < ends.length) {
      const start = from === 0 ? 0 : ends[from - 1]!;
      this.outbox.pushFront(chunk.bytes.slice(start), ends.length - from, chunk.counted, chunk.file);
    }
    this.removeDeliveredFiles();
  }

  /**
   * Sends a piece of rows on its own. HTTP: QuestDB's answer says. TCP: QuestDB answers nothing and closes
   * the connection on a line it refuses, so the piece counts as accepted when the connection is still open
   * QUESTDB_REFUSAL_PROBE_MS later; a new connection must first stay open that long without any row, or
   * QuestDB is refusing connections, not lines.
   */
  private async probe(bytes: Uint8Array): Promise<Verdict> {
    if (this.settings.kind === "http") {
      const connection = this.connection ?? (await this.openConnection());
      if (typeof connection === "string") return { kind: "unreachable", reason: connection };
      this.connection = connection;
      try {
        await connection.send(bytes);
        return { kind: "accepted" };
      } catch (error) {
        return error instanceof RejectedDataError ? { kind: "refused", reason: errorMessage(error) } : { kind: "unreachable", reason: errorMessage(error) };
      }
    }
    let probe = this.probeConnection;
    if (probe === undefined || probe.lost !== undefined) {
      this.closeProbe();
      const opened = await this.openProbe();
      if (typeof opened === "string") return { kind: "unreachable", reason: opened };
      probe = opened;
    }
    try {
      await probe.connection.send(bytes);
    } catch (error) {
      if (!probe.closedByPeer) return { kind: "unreachable", reason: errorMessage(error) };
    }
    await Promise.race([probe.whenLost, Bun.sleep(this.settings.refusalProbeMs)]);
    if (probe.lost === undefined) return { kind: "accepted" };
    // A write QuestDB stopped reading is an outage, not a refusal.
    return probe.closedByPeer ? { kind: "refused", reason: TCP_REFUSAL } : { kind: "unreachable", reason: probe.lost };
  }

  private async openConnection(): Promise<IlpConnection | string> {
    const { kind, senderOptions, nativeTcp, connectTimeoutMs, sendTimeoutMs } = this.settings;
    const connection: IlpConnection = new IlpConnection(
      kind,
      senderOptions,
      { connectTimeoutMs, sendTimeoutMs },
      (reason, byPeer) => this.connectionLost(connection, reason, byPeer),
      nativeTcp,
    );
    try {
      await connection.open();
      return connection;
    } catch (error) {
      return errorMessage(error);
    }
  }

  private async openProbe(): Promise<ProbeConnection | string> {
    const { kind, senderOptions, nativeTcp, connectTimeoutMs, sendTimeoutMs } = this.settings;
    let lost: () => void = () => {};
    const whenLost = new Promise<void>((resolve) => (lost = resolve));
    const probe: { connection?: IlpConnection; lost: string | undefined; closedByPeer: boolean; whenLost: Promise<void> } = {
      lost: undefined,
      closedByPeer: false,
      whenLost,
    };
    const connection = new IlpConnection(
      kind,
      senderOptions,
      { connectTimeoutMs, sendTimeoutMs },
      (reason, byPeer) => {
        probe.lost = reason;
        probe.closedByPeer = byPeer;
        lost();
      },
      nativeTcp,
    );
    probe.connection = connection;
    try {
      await connection.open();
    } catch (error) {
      return errorMessage(error);
    }
    this.probeConnection = probe as ProbeConnection;
    await Promise.race([whenLost, Bun.sleep(this.settings.refusalProbeMs)]);
    if (probe.lost !== undefined) {
      this.refusingClients = true;
      return `${probe.lost}, before any row was sent`;
    }
    return probe as ProbeConnection;
  }

  private closeProbe(): void {
    const probe = this.probeConnection;
    this.probeConnection = undefined;
    if (probe !== undefined) void probe.connection.close();
  }

  // ---- outages --------------------------------------------------------------------------------------

  private attemptFailed(reason: string, level: "warn" | "error" = "warn"): void {
    this.failures++;
    this.stats.errors++;
    this.beginOutage(reason, level);
    this.scheduleReconnect(this.backoffMs());
    this.notifyProgress();
  }

  /** Exponential in the consecutive failures, with jitter to spread collectors sharing one QuestDB. */
  private backoffMs(failures = this.failures): number {
    const { reconnectMinMs, reconnectMaxMs } = this.settings;
    const base = Math.min(reconnectMaxMs, reconnectMinMs * 2 ** Math.min(Math.max(failures - 1, 0), 30));
    return Math.round(base * (0.8 + 0.4 * Math.random()));
  }

  private scheduleReconnect(delayMs: number): void {
    if (this.closed || this.reconnectTimer !== undefined) return;
    const delay = this.closing ? Math.min(delayMs, CLOSING_RETRY_MS) : delayMs;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.requestPump();
    }, delay);
  }

  private beginOutage(reason: string, level: "warn" | "error" = "warn"): void {
    if (this.stats.outageSince > 0) {
      this.log.debug(`QuestDB still unreachable: ${reason}`);
      return;
    }
    this.stats.outageSince = performance.now();
    this.lastReminderAt = this.stats.outageSince;
    this.droppedAtOutageStart = this.stats.droppedRows;
    this.log[level](
      `QuestDB at ${this.settings.address} is unreachable (${reason}); collecting continues, rows are buffered ` +
        `in memory (up to ${mebibytes(this.settings.bufferMaxBytes)} MiB) and sent when it is back`,
    );
  }

  /**
   * Over TCP, QuestDB is back once a connection has stayed open a moment: it answers a key it does not
   * accept (and a proxy without a backend answers everything) by closing a connection it just accepted.
   */
  private endOutageOnceStable(connection: IlpConnection): void {
    if (this.stats.outageSince === 0) return;
    const timer = setTimeout(() => {
      if (this.connection === connection) this.endOutage();
    }, QUICK_LOSS_MS);
    timer.unref?.();
  }

  private endOutage(): void {
    if (this.stats.outageSince === 0 || this.tablesPending.size > 0) return;
    const seconds = (performance.now() - this.stats.outageSince) / 1000;
    this.stats.outageSecondsTotal += seconds;
    this.stats.outageSince = 0;
    const dropped = this.stats.droppedRows - this.droppedAtOutageStart;
    this.log.info(
      `QuestDB at ${this.settings.address} is reachable again after ${seconds.toFixed(1)} s; sending ${this.encoder.rows + this.outbox.pendingRows} buffered row(s)` +
        (dropped > 0 ? `; ${dropped} row(s) were dropped during the outage (see the gaps table)` : ""),
    );
  }

  private expireResendWindow(): void {
    if (this.settings.resendWindowMs > 0) this.outbox.expire(performance.now() - this.settings.resendWindowMs);
    if (this.loadedFiles.size > 0) this.removeDeliveredFiles();
  }

  /** The flush timer: seals a quiet stream's rows, keeps the connection and reports a long outage. */
  private tick(): void {
    try {
      if (this.encoder.rows > 0) this.seal();
      this.writeRefused();
      this.expireResendWindow();
      this.updateBuffered();
      const now = performance.now();
      if (this.stats.outageSince > 0 && now - this.lastReminderAt >= OUTAGE_REMINDER_MS) {
        this.lastReminderAt = now;
        this.log.warn(
          `QuestDB at ${this.settings.address} unreachable for ${((now - this.stats.outageSince) / 1000).toFixed(0)} s; ` +
            `${this.outbox.pendingRows} row(s) (${mebibytes(this.outbox.bytes)} MiB) buffered, ${this.stats.droppedRows} dropped so far`,
        );
      }
      const wantsConnection = this.outbox.pendingChunks > 0 || this.settings.kind === "tcp";
      if (wantsConnection && !this.pumping && this.reconnectTimer === undefined) this.requestPump();
    } catch (error) {
      this.stats.errors++;
      this.log.error(`QuestDB sink: unexpected error in the flush timer: ${errorMessage(error)}`);
    }
  }

  // ---- waiting --------------------------------------------------------------------------------------

  /** Waits while `condition` holds (re-checked at every send, loss, or 250 ms) and the sink is open. */
  private async waitWhile(condition: () => boolean): Promise<void> {
    while (!this.closed && condition()) {
      this.requestPump();
      await this.nextProgress(CLOSING_RETRY_MS);
    }
  }

  /** Rows are flowing: connected, and the tables are set up. */
  private sending(): boolean {
    return this.connection !== undefined && this.tablesPending.size === 0;
  }

  /** Sending, or about to without an outage having been declared. */
  private deliverable(): boolean {
    if (this.stats.outageSince > 0) return this.sending();
    return this.sending() || this.pumping || this.reconnectTimer !== undefined || this.tablesRunning !== undefined;
  }

  private nextProgress(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.progressWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private notifyProgress(): void {
    const waiters = this.progressWaiters;
    this.progressWaiters = [];
    for (const wake of waiters) wake();
  }
}

function mebibytes(bytes: number): string {
  return (bytes / (1 << 20)).toFixed(bytes < 10 << 20 ? 1 : 0);
}

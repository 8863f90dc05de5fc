/**
 * QuestDB sink: every event becomes ILP rows (one table per stream plus `gaps`, see schema.ts) sent
 * over TCP (default, QUESTDB_HOST:QUESTDB_ILP_PORT) or whatever QDB_CLIENT_CONF selects.
 *
 * Flow: write() encodes rows into the open chunk (encoder.ts); a chunk is sealed after QUESTDB_FLUSH_ROWS
 * rows or by the QUESTDB_FLUSH_INTERVAL_MS timer (the client only checks its auto-flush when a row is
 * added, so a quiet stream would otherwise sit in the buffer) and queued in the outbox (outbox.ts); one
 * pump sends chunks in order through the client's transport (connection.ts).
 *
 * QuestDB away (down at start, restarting, dropping the connection): collecting goes on; rows stay in
 * memory up to QUESTDB_BUFFER_MAX_BYTES, the pump reconnects with exponential backoff, and over TCP the
 * rows of the last QUESTDB_RESEND_WINDOW_MS are sent again (ILP/TCP has no acknowledgement; the DEDUP
 * keys make this idempotent). At the bound write() holds the pipeline (as it does while QuestDB is
 * connected but slower than the feed), so the pipeline's bounded queue applies the one overflow policy:
 * drops counted and logged, `gaps` rows, and fresh snapshots for order books, which a sink cannot ask
 * for itself. The outage and its length go to SinkStats. Nothing here throws into the pipeline or
 * leaves a promise unobserved.
 *
 * On start, when QuestDB's HTTP endpoint answers, missing tables are created (PARTITION BY DAY, WAL,
 * DEDUP UPSERT KEYS) before the first row is sent; otherwise ILP auto-creates them and we say so.
 */
import type { QuestDbSettings } from "../../core/config.ts";
import { errorMessage } from "../../core/errors.ts";
import { rowCount, type MarketEvent } from "../../core/events.ts";
import type { Logger } from "../../core/log.ts";
import type { SinkStats } from "../../core/stats.ts";
import type { TableName } from "../tables.ts";
import type { CloseReport, Sink } from "../types.ts";
import { IlpConnection, RejectedDataError } from "./connection.ts";
import { createTables } from "./ddl.ts";
import { IlpEncoder } from "./encoder.ts";
import { rowsByTable } from "./lines.ts";
import { Outbox } from "./outbox.ts";
import { resolveSettings, type ResolvedSettings } from "./settings.ts";

export interface QuestDbSinkOptions {
  readonly settings: QuestDbSettings;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly log: Logger;
  readonly stats: SinkStats;
}

/** A chunk is sealed at this size whatever its row count, so one send never grows unbounded. */
const CHUNK_MAX_BYTES = 4 << 20;
/** While connected, write() waits when this much (or a quarter of the bound) is waiting to be sent. */
const BACKPRESSURE_MAX_BYTES = 64 << 20;
const OUTAGE_REMINDER_MS = 60_000;
const REJECTION_LOG_INTERVAL_MS = 10_000;
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
  private readonly encoder: IlpEncoder;
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
  private tablesPending: boolean;
  private droppedAtOutageStart = 0;
  private lastReminderAt = 0;
  private lastRejectionLogAt = Number.NEGATIVE_INFINITY;
  private rejectionsSinceLog = 0;
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
    this.encoder = new IlpEncoder({ maxLineBytes: this.settings.maxLineBytes });
    this.backpressureBytes = Math.min(BACKPRESSURE_MAX_BYTES, Math.floor(this.settings.bufferMaxBytes / 4));
    this.tablesPending = this.settings.ddl !== undefined;
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
    this.flushTimer = setInterval(() => this.tick(), flushIntervalMs);
    // Connect (and create tables) in the background: a sink that cannot reach QuestDB still starts.
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
    if (this.connection !== undefined && this.outbox.unsentBytes > this.backpressureBytes) {
      return this.waitWhile(() => this.connection !== undefined && this.outbox.unsentBytes > this.backpressureBytes / 2);
    }
  }

  /** Sends everything buffered; returns early (rows stay buffered) while QuestDB is unreachable. */
  async flush(): Promise<void> {
    if (this.closed) return;
    this.seal();
    await this.waitWhile(() => this.outbox.pendingChunks > 0 && this.deliverable());
  }

  /**
   * Flushes, keeps trying to deliver for QUESTDB_CLOSE_TIMEOUT_MS, then closes the connection; resolves
   * with the rows it could not deliver, per table. Idempotent.
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
      this.requestPump();
      await this.nextProgress(Math.max(1, Math.min(CLOSING_RETRY_MS, deadline - performance.now())));
    }
    this.closed = true;
    if (this.reconnectTimer !== undefined) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const lostRows: Partial<Record<TableName, number>> = {};
    for (const chunk of this.outbox.pending()) rowsByTable(chunk.bytes, lostRows);
    const { rows, neverSentRows } = this.outbox.abandonPending();
    if (rows > 0) {
      this.stats.droppedRows += neverSentRows;
      this.stats.errors++;
      this.log.error(
        `QuestDB at ${this.settings.address} was unreachable until shutdown: ${rows} buffered row(s) were not delivered and are lost`,
      );
    }
    const connection = this.connection;
    this.connection = undefined;
    await connection?.close();
    if (this.stats.outageSince > 0) {
      this.stats.outageSecondsTotal += (performance.now() - this.stats.outageSince) / 1000;
      this.stats.outageSince = 0;
    }
    this.updateBuffered();
    this.notifyProgress();
    return { lostRows, keptRows: 0 };
  }

  // ---- accepting rows -------------------------------------------------------------------------------

  private accept(event: MarketEvent): void {
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
    }
    return true;
  }

  private reject(event: MarketEvent): void {
    this.rejectedEvents++;
    this.rejectionsSinceLog++;
    this.stats.droppedRows += rowCount(event);
    this.stats.errors++;
    const now = performance.now();
    if (now - this.lastRejectionLogAt >= REJECTION_LOG_INTERVAL_MS) {
      this.log.warn(`QuestDB sink dropped ${this.rejectionsSinceLog} event(s) ILP cannot carry; last: ${this.encoder.lastRejection}`);
      this.lastRejectionLogAt = now;
      this.rejectionsSinceLog = 0;
    }
  }

  private seal(): void {
    const rows = this.encoder.rows;
    const bytes = this.encoder.take();
    if (bytes === undefined) return;
    this.outbox.push(bytes, rows);
    this.requestPump();
  }

  private updateBuffered(): void {
    this.stats.bufferedRows = this.encoder.rows + this.outbox.pendingRows;
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
      try {
        await connection.send(chunk.bytes);
      } catch (error) {
        if (error instanceof RejectedDataError) {
          this.outbox.discardInFlight();
          if (!wasCounted) this.stats.droppedRows += chunk.rows;
          this.stats.errors++;
          this.log.error(`QuestDB rejected ${chunk.rows} row(s), which are dropped: ${error.message.slice(0, 300)}`);
          this.updateBuffered();
          continue;
        }
        this.connectionLost(connection, errorMessage(error));
        return;
      }
      if (this.connection !== connection) continue; // lost meanwhile: the chunk was queued again
      const now = performance.now();
      this.outbox.sent(chunk, now, this.settings.resendWindowMs > 0);
      this.stats.recordFlush((now - started) / 1000, wasCounted ? 0 : chunk.rows);
      if (this.settings.kind === "http") {
        this.failures = 0;
        this.endOutage();
      }
      this.updateBuffered();
      this.notifyProgress();
    }
  }

  private async connect(): Promise<boolean> {
    const { kind, senderOptions, nativeTcp, connectTimeoutMs, sendTimeoutMs } = this.settings;
    const connection: IlpConnection = new IlpConnection(
      kind,
      senderOptions,
      { connectTimeoutMs, sendTimeoutMs },
      (reason) => this.connectionLost(connection, reason),
      nativeTcp,
    );
    try {
      await connection.open();
    } catch (error) {
      this.attemptFailed(errorMessage(error));
      return false;
    }
    if (this.tablesPending) {
      const unreachable = await this.setUpTables();
      if (unreachable !== undefined) {
        await connection.close();
        this.attemptFailed(unreachable);
        return false;
      }
    }
    if (this.closed) {
      await connection.close();
      return false;
    }
    this.connection = connection;
    this.connectedAt = performance.now();
    if (kind === "tcp") this.endOutageOnceStable(connection);
    this.notifyProgress();
    return true;
  }

  /**
   * CREATE TABLE IF NOT EXISTS for every table before the first row. Returns a reason when QuestDB
   * itself must be considered unreachable (HTTP transport), else undefined.
   */
  private async setUpTables(): Promise<string | undefined> {
    const endpoint = this.settings.ddl!;
    const result = await createTables(endpoint, this.log, this.settings.connectTimeoutMs);
    if (result.kind === "unreachable") {
      if (this.settings.kind === "http") return `HTTP endpoint ${endpoint.baseUrl}: ${result.reason}`;
      this.tablesPending = false;
      this.log.warn(
        `QuestDB HTTP endpoint ${endpoint.baseUrl} is unreachable (${result.reason}), so tables are not created up front: ` +
          "QuestDB auto-creates them from the first ILP rows (partitioned by day, WAL), but without DEDUP keys, so rows " +
          "re-sent after a reconnect can be duplicated. Set QUESTDB_HTTP_PORT, or create the tables with the SQL in docs/sinks/questdb.md",
      );
      return undefined;
    }
    this.tablesPending = false;
    if (result.failed.length === 0) {
      this.log.info("QuestDB tables ready (created when missing: PARTITION BY DAY, WAL, DEDUP UPSERT KEYS)");
    } else {
      this.stats.errors++;
      this.log.warn(`QuestDB tables not created: ${result.failed.join(", ")}; ILP will auto-create them without DEDUP keys`);
    }
    return undefined;
  }

  /** A connection that was open is gone: queue the unacknowledged rows again and reconnect. */
  private connectionLost(connection: IlpConnection, reason: string): void {
    if (this.connection !== connection) return;
    this.connection = undefined;
    void connection.close();
    const resent = this.outbox.requeue();
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
    this.failures = quick ? this.failures + 1 : 0;
    if (quick && this.failures >= 2) {
      // Closed right after opening, again: QuestDB refuses us. With authentication that is most likely its
      // answer to a key it does not accept (https://questdb.io/docs/reference/api/ilp/authenticate/: it
      // disconnects, with no message); rows sent meanwhile come back through the resend window.
      const keyId = this.settings.senderOptions.jwk?.kid; // set for authenticated ILP/TCP (settings.ts)
      this.failures--; // attemptFailed counts this one
      this.attemptFailed(
        keyId === undefined
          ? `it closes every connection right after accepting it (${reason})`
          : `it closes every connection right after authentication: QuestDB probably does not accept key id '${keyId}' (or drops the connection for another reason); check QDB_CLIENT_CONF's username and token against QuestDB's authentication file`,
        keyId === undefined ? "warn" : "error",
      );
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

  private attemptFailed(reason: string, level: "warn" | "error" = "warn"): void {
    this.failures++;
    this.stats.errors++;
    this.beginOutage(reason, level);
    this.scheduleReconnect(this.backoffMs());
    this.notifyProgress();
  }

  /** Exponential in the consecutive failures, with jitter to spread collectors sharing one QuestDB. */
  private backoffMs(): number {
    const { reconnectMinMs, reconnectMaxMs } = this.settings;
    const base = Math.min(reconnectMaxMs, reconnectMinMs * 2 ** Math.min(Math.max(this.failures - 1, 0), 30));
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
    if (this.stats.outageSince === 0) return;
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
  }

  /** The flush timer: seals a quiet stream's rows, keeps the connection and reports a long outage. */
  private tick(): void {
    try {
      if (this.encoder.rows > 0) this.seal();
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

  /** Connected, or connecting/reconnecting without an outage having been declared. */
  private deliverable(): boolean {
    return this.connection !== undefined || (this.stats.outageSince === 0 && (this.pumping || this.reconnectTimer !== undefined));
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

/**
 * The Parquet journal's replay rule (src/sinks/parquet/journal.ts): ROWS records add pending rows at the
 * end, a ROW_GROUP record takes its num_rows from the front (or all, when fewer were journaled), and
 * version 1 journals (row groups first, then rows) replay as before. Records are built with the sink's
 * own writers; rows are read back by decoding them into a fresh buffer.
 */
import { describe, expect, test } from "bun:test";
import type { RowGroup } from "hyparquet";
import { BooleanColumn, ByteBuilder, ByteReader, NumberColumn, PER_EVENT_COLUMNS, rowAppender, RunColumn, StringColumn, SymbolColumn, TableBuffer } from "../src/sinks/parquet/columns.ts";
import { decodePositionedRows, decodeRows, headerRecord, JOURNAL_FORMAT, JOURNAL_VERSION, positionedRowsRecord, readJournal, rowGroupRecord, rowsRecord, skipRecord } from "../src/sinks/parquet/journal.ts";
import { TABLES } from "../src/core/tables.ts";
import { readSegment, readRowsLogs, RowsLog, type LoggedFile } from "../src/sinks/parquet/rows-log.ts";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bookAt, seededRandom, tradeAt } from "./support/parquet-helpers.ts";

const COLUMNS = TABLES.trades;
const CONSTANTS = { exchange: "BINANCE_FUTURES", symbol: "BTCUSDT" };

function header(version = 4): Uint8Array {
  return headerRecord({
    format: JOURNAL_FORMAT,
    version,
    table: "trades",
    exchange: "BINANCE_FUTURES",
    symbol: "BTCUSDT",
    columns: COLUMNS,
    codec: "ZSTD",
    finalName: "120000-0000.parquet",
    openedAt: 0,
  });
}

/** A buffer holding trades t0 … t(count - 1). */
function tradesBuffer(count: number): TableBuffer {
  const buffer = new TableBuffer(COLUMNS, CONSTANTS);
  const append = rowAppender("trades", buffer);
  for (let i = 0; i < count; i++) append(tradeAt(i));
  return buffer;
}

function rowGroup(rows: number, endOffset: number): Uint8Array {
  const group: RowGroup = { columns: [], total_byte_size: 0n, num_rows: BigInt(rows) };
  return rowGroupRecord(group, endOffset);
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** Replays a journal and returns the ids of its pending rows. */
function pendingIds(bytes: Uint8Array): string[] {
  const journal = readJournal(bytes);
  expect(journal.header).toBeDefined();
  expect(journal.tornBytes).toBe(0);
  const buffer = new TableBuffer(COLUMNS, CONSTANTS);
  const rows = decodeRows(bytes, journal.rows, buffer, journal.skipRows);
  expect(rows).toBe(buffer.rows);
  return buffer.column("id", StringColumn).head(0, buffer.rows).slice(0, buffer.rows) as string[];
}

const ids = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `t${from + i}`);

describe("Parquet journal replay", () => {
  const buffer = tradesBuffer(200);

  test("a row group takes the journaled rows it contains, also part of a record", () => {
    const bytes = concat([
      header(),
      rowsRecord(buffer, 0, 120), // t0..t119 journaled
      rowGroup(100, 1000), // t0..t99 now in a row group: 20 of the first record remain
      rowsRecord(buffer, 120, 150), // t120..t149
      rowGroup(30, 2000), // takes t100..t129: the first record is used up, 10 of the second taken
      rowsRecord(buffer, 150, 160),
    ]);
    expect(readJournal(bytes).rowGroups.map((group) => group.endOffset)).toEqual([1000, 2000]);
    expect(pendingIds(bytes)).toEqual(ids(130, 160));
  });

  test("rows of a row group that were never journaled take nothing beyond what is pending", () => {
    const bytes = concat([
      header(),
      rowsRecord(buffer, 0, 40), // t0..t39 journaled, t40..t99 only in memory
      rowGroup(100, 1000), // t0..t99 in a row group: takes the 40 journaled ones
      rowsRecord(buffer, 100, 130), // the next flush journals what came after
    ]);
    expect(pendingIds(bytes)).toEqual(ids(100, 130));
  });

  test("a torn row-group record leaves the rows it would have taken pending", () => {
    const complete = concat([header(), rowsRecord(buffer, 0, 50), rowGroup(50, 1000)]);
    const torn = complete.subarray(0, complete.length - 3);
    const journal = readJournal(torn);
    expect(journal.rowGroups).toHaveLength(0);
    expect(journal.tornBytes).toBeGreaterThan(0);
    const decoded = new TableBuffer(COLUMNS, CONSTANTS);
    decodeRows(torn, journal.rows, decoded, journal.skipRows);
    expect(decoded.rows).toBe(50);
  });

  test("a version 1 journal (row groups first, then the pending rows) replays as before", () => {
    const bytes = concat([header(1), rowGroup(100, 1000), rowGroup(100, 2000), rowsRecord(buffer, 0, 25)]);
    expect(readJournal(bytes).rowGroups).toHaveLength(2);
    expect(pendingIds(bytes)).toEqual(ids(0, 25));
  });

  test("symbol columns round-trip as their values and a code byte per row (version 3)", () => {
    const mixed = new TableBuffer(COLUMNS, CONSTANTS);
    const append = rowAppender("trades", mixed);
    for (let i = 0; i < 40; i++) append({ ...tradeAt(i), side: i % 3 === 0 ? "sell" : "buy" });
    const bytes = concat([header(), rowsRecord(mixed, 5, 40)]);
    const decoded = new TableBuffer(COLUMNS, CONSTANTS);
    decodeRows(bytes, readJournal(bytes).rows, decoded);
    expect(decoded.column("side", SymbolColumn).data(35)).toEqual(mixed.column("side", SymbolColumn).data(40).slice(5));
    // A code with no value behind it is a corrupt record, not a row with a made-up side.
    const out = new ByteBuilder();
    out.json(["buy"]);
    out.bytes(new Uint8Array([0, 5]));
    const side = new SymbolColumn({ name: "side", kind: "symbol" });
    expect(() => side.decode(new ByteReader(out.view(), 0, 0, out.length), 2, true)).toThrow("code without a value");
  });

  test("a version 2 journal (symbol columns as JSON strings) replays as before", () => {
    // The version 2 writer, rebuilt: the same record with every symbol column as a JSON array of its
    // rows' strings, under the old record kind (3).
    const encode = SymbolColumn.prototype.encode;
    SymbolColumn.prototype.encode = function (this: SymbolColumn, out: ByteBuilder, from: number, to: number) {
      out.json(this.data(to).slice(from));
    };
    let legacy: Uint8Array;
    try {
      legacy = rowsRecord(buffer, 0, 30).slice();
    } finally {
      SymbolColumn.prototype.encode = encode;
    }
    legacy[8] = 3;
    legacy.set(new Uint8Array(new Uint32Array([Bun.hash.crc32(legacy.subarray(8))]).buffer), 4);
    const bytes = concat([header(2), legacy, rowGroup(10, 1000)]);
    expect(pendingIds(bytes)).toEqual(ids(10, 30));
    const decoded = new TableBuffer(COLUMNS, CONSTANTS);
    decodeRows(bytes, readJournal(bytes).rows, decoded, readJournal(bytes).skipRows);
    expect(decoded.column("side", SymbolColumn).data(20)).toEqual(buffer.column("side", SymbolColumn).data(30).slice(10));
  });

  test("an unknown journal version is not replayed", () => {
    const bytes = concat([header(99), rowsRecord(buffer, 0, 10)]);
    expect(readJournal(bytes).header).toBeUndefined();
  });
});

describe("per-event columns (RunColumn)", () => {
  test("rows read back as appended, through discards that cut a run, for integers and flags", () => {
    const random = seededRandom(5);
    const numbers = new RunColumn({ name: "sequence", kind: "long" });
    const flags = new RunColumn({ name: "is_snapshot", kind: "boolean" });
    let expectedNumbers: number[] = [];
    let expectedFlags: number[] = [];
    for (let step = 0; step < 400; step++) {
      if (random() < 0.15 && numbers.length > 0) {
        // A row group sealed off the front: any count, usually in the middle of a run.
        const count = Math.floor(random() * numbers.length) + 1;
        numbers.discard(count, numbers.length - count);
        flags.discard(count, flags.length - count);
        expectedNumbers = expectedNumbers.slice(count);
        expectedFlags = expectedFlags.slice(count);
      } else {
        const rows = Math.floor(random() * 25);
        const value = Math.floor(random() * 4) * 1_000_003; // repeats, so neighbouring runs merge
        const flag = random() < 0.3 ? 1 : 0;
        numbers.pushRun(value, rows);
        flags.pushRun(flag, rows);
        for (let i = 0; i < rows; i++) expectedNumbers.push(value), expectedFlags.push(flag);
      }
      expect(numbers.length).toBe(expectedNumbers.length);
      expect([...numbers.expand(0, numbers.length)]).toEqual(expectedNumbers);
      expect([...flags.flags(0, flags.length)]).toEqual(expectedFlags);
      // Any window, as a row group or a journal record reads it.
      const from = Math.floor(random() * (expectedNumbers.length + 1));
      const count = Math.floor(random() * (expectedNumbers.length - from + 1));
      expect([...numbers.expand(from, count)]).toEqual(expectedNumbers.slice(from, from + count));
    }
  });

  test("journal rows (version 4: runs; version 3: per row) read the same into per-row and per-event buffers", () => {
    const books = Array.from({ length: 300 }, (_, i) => ({ ...bookAt(i, "BTC-USDT-SWAP", 1 + (i % 7)), isSnapshot: i % 50 === 0 }));
    const perEvent = new TableBuffer(TABLES.l2, CONSTANTS, { perEvent: PER_EVENT_COLUMNS.l2 });
    const append = rowAppender("l2", perEvent);
    for (const book of books) append(book);
    // Rows 37..(end - 11): both ends cut through a message.
    const from = 37;
    const to = perEvent.rows - 11;
    const perRows = <T>(pick: (book: (typeof books)[number]) => T) =>
      books.flatMap((book) => Array.from({ length: (book.bids.length + book.asks.length) >> 1 }, () => pick(book))).slice(from, to);
    const expected = {
      timestamp: perRows((book) => book.timestamp),
      local_timestamp: perRows((book) => book.localTimestamp),
      sequence: perRows((book) => book.sequence),
      is_snapshot: perRows((book) => (book.isSnapshot ? 1 : 0)),
    };
    // A version 4 journal: the message fields as runs, as the header says.
    expect(perEvent.runColumns.sort()).toEqual([...PER_EVENT_COLUMNS.l2!].sort());
    const journal = concat([l2Header(4, perEvent.runColumns), rowsRecord(perEvent, from, to)]);
    const replay = readJournal(journal);
    // Into per-row columns (the layout before version 4).
    const perRow = new TableBuffer(TABLES.l2, CONSTANTS);
    expect(decodeRows(journal, replay.rows, perRow, replay.skipRows)).toBe(to - from);
    for (const name of ["timestamp", "local_timestamp", "sequence"] as const) {
      expect([...perRow.column(name, NumberColumn).head(0, perRow.rows)]).toEqual(expected[name]);
    }
    expect([...perRow.column("is_snapshot", BooleanColumn).head(0, perRow.rows)]).toEqual(expected.is_snapshot);
    // Written again from per-row columns, as version 3 wrote every journal, and read into runs: the same rows.
    const again = new TableBuffer(TABLES.l2, CONSTANTS, { perEvent: PER_EVENT_COLUMNS.l2 });
    const rewritten = concat([l2Header(3, undefined), rowsRecord(perRow, 0, perRow.rows)]);
    decodeRows(rewritten, readJournal(rewritten).rows, again, 0);
    for (const name of ["timestamp", "local_timestamp", "sequence"] as const) {
      expect([...again.column(name, RunColumn).expand(0, again.rows)]).toEqual(expected[name]);
    }
    expect([...again.column("is_snapshot", RunColumn).flags(0, again.rows)]).toEqual(expected.is_snapshot);
    expect([...again.column("price", NumberColumn).head(0, again.rows)]).toEqual([...perEvent.column("price", NumberColumn).head(from, to - from)]);
  });
});

function l2Header(version: number, perEvent: readonly string[] | undefined): Uint8Array {
  return headerRecord({ format: JOURNAL_FORMAT, version, table: "l2", exchange: "OKX_SWAP", symbol: "BTC-USDT-SWAP", columns: TABLES.l2, codec: "ZSTD", finalName: "120000-0000.parquet", openedAt: 0, perEvent });
}

/** A file the rows log takes records from, logging rows [from, to) of `buffer` at their positions. */
function loggedRows(key: string, buffer: TableBuffer, ranges: [number, number][]): LoggedFile {
  let next = 0;
  return {
    logKey: key,
    committedThrough: 0,
    logDone: false,
    canLogAgain: false,
    logRecord(out) {
      const range = ranges[next++];
      if (!range) return undefined;
      out.float64(range[0]);
      buffer.encodeRows(out, range[0], range[1]);
      return { from: range[0], to: range[1] };
    },
    logged() {},
  };
}

/** Writes the ranges through a real rows log (one write each) and reads every segment back. */
async function throughRowsLog(key: string, buffer: TableBuffer, ranges: [number, number][], runs: readonly string[] = []) {
  const directory = mkdtempSync(join(tmpdir(), "xtrader-rows-log-"));
  try {
    const log = new RowsLog(directory);
    const file = loggedRows(key, buffer, ranges);
    for (let i = 0; i < ranges.length; i++) await log.append(file);
    const contents = await readRowsLogs(directory, () => runs);
    const [segment] = readdirSync(directory);
    const segmentBytes = new Uint8Array(readFileSync(join(directory, segment!)));
    await log.close();
    return { contents, segmentBytes };
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

describe("Parquet journal replay, version 5 (positions and the rows log)", () => {
  const buffer = tradesBuffer(200);
  const KEY = "trades/exchange=BINANCE_FUTURES/symbol=BTCUSDT/date=2026-01-05/120000-0000.parquet";

  function positionedGroup(rows: number, endOffset: number, through: number): Uint8Array {
    const group: RowGroup = { columns: [], total_byte_size: 0n, num_rows: BigInt(rows) };
    return rowGroupRecord(group, endOffset, undefined, through);
  }

  function idsOf(replay: TableBuffer): string[] {
    return replay.column("id", StringColumn).head(0, replay.rows).slice(0, replay.rows) as string[];
  }

  test("pending rows start at the highest row-group position and come from the log, each row once though records overlap", async () => {
    // t0..t59 logged, t60..t119 logged, then t100..t159 logged again (a file moving to a new segment).
    const { contents } = await throughRowsLog(KEY, buffer, [[0, 60], [60, 120], [100, 160]]);
    const journal = concat([header(JOURNAL_VERSION), positionedGroup(80, 1000, 80)]);
    const replay = readJournal(journal);
    expect(replay.pendingFrom).toBe(80);
    const records = contents.byKey.get(KEY)!;
    expect(records.map((record) => [record.firstRow, record.rowCount])).toEqual([[0, 60], [60, 60], [100, 60]]);
    const pending = new TableBuffer(COLUMNS, CONSTANTS);
    expect(decodePositionedRows(records, replay.pendingFrom, pending)).toEqual({ rows: 80, missing: 0 });
    expect(idsOf(pending)).toEqual(ids(80, 160));
  });

  test("a rewritten journal (SKIP and its own rows) overrides what the log holds before it; a hole is reported, not filled", async () => {
    const { contents } = await throughRowsLog(KEY, buffer, [[0, 50], [120, 150]]);
    // Rows t0..t39 were dropped from memory: the rewrite skips them and holds t40..t69 itself.
    const rewritten = concat([header(JOURNAL_VERSION), skipRecord(40), positionedRowsRecord(buffer, 40, 70, 40)]);
    const replay = readJournal(rewritten);
    expect(replay.pendingFrom).toBe(40);
    const records = [...replay.rows.map((location) => ({ bytes: rewritten, location, firstRow: location.firstRow!, rowCount: location.rowCount! })), ...contents.byKey.get(KEY)!];
    const pending = new TableBuffer(COLUMNS, CONSTANTS);
    // t70..t119 were in memory only (a row group being written when the run died): 50 missing.
    expect(decodePositionedRows(records, replay.pendingFrom, pending)).toEqual({ rows: 60, missing: 50 });
    expect(idsOf(pending)).toEqual([...ids(40, 70), ...ids(120, 150)]);
  });

  test("a torn log tail is cut at the last intact record; a segment without its header holds nothing", async () => {
    const { segmentBytes } = await throughRowsLog(KEY, buffer, [[0, 10], [10, 20]]);
    const torn = segmentBytes.subarray(0, segmentBytes.length - 5);
    const found: [number, number][] = [];
    expect(readSegment(torn, (_key, record) => found.push([record.firstRow, record.rowCount]))).toBeGreaterThan(0);
    expect(found).toEqual([[0, 10]]);
    const headerless = segmentBytes.slice();
    headerless[9] ^= 0xff; // the header's payload no longer matches its checksum
    const none: unknown[] = [];
    readSegment(headerless, (key) => none.push(key));
    expect(none).toEqual([]);
  });

  test("L2 rows with message fields as runs: a log record overlapping the last row group, cut mid-message, reads back exactly", async () => {
    const books = Array.from({ length: 40 }, (_, i) => bookAt(i, "BTC-USDT-SWAP", 1 + (i % 5)));
    const l2 = new TableBuffer(TABLES.l2, CONSTANTS, { perEvent: PER_EVENT_COLUMNS.l2 });
    const append = rowAppender("l2", l2);
    for (const book of books) append(book);
    const { contents } = await throughRowsLog("l2/x", l2, [[0, l2.rows]], l2.runColumns);
    const pending = new TableBuffer(TABLES.l2, CONSTANTS, { perEvent: PER_EVENT_COLUMNS.l2 });
    const from = 13; // inside a message
    expect(decodePositionedRows(contents.byKey.get("l2/x")!, from, pending)).toEqual({ rows: l2.rows - from, missing: 0 });
    for (const name of ["timestamp", "local_timestamp", "sequence"] as const) {
      expect([...pending.column(name, RunColumn).expand(0, pending.rows)]).toEqual([...l2.column(name, RunColumn).expand(from, l2.rows - from)]);
    }
    expect([...pending.column("price", NumberColumn).head(0, pending.rows)]).toEqual([...l2.column("price", NumberColumn).head(from, l2.rows - from)]);
  });
});


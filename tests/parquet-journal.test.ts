/**
 * The Parquet journal's replay rule (src/sinks/parquet/journal.ts): ROWS records add pending rows at the
 * end, a ROW_GROUP record takes its num_rows from the front (or all, when fewer were journaled), and
 * version 1 journals (row groups first, then rows) replay as before. Records are built with the sink's
 * own writers; rows are read back by decoding them into a fresh buffer.
 */
import { describe, expect, test } from "bun:test";
import type { RowGroup } from "hyparquet";
import { ByteBuilder, ByteReader, rowAppender, StringColumn, SymbolColumn, TableBuffer } from "../src/sinks/parquet/columns.ts";
import { decodeRows, headerRecord, JOURNAL_FORMAT, JOURNAL_VERSION, readJournal, rowGroupRecord, rowsRecord } from "../src/sinks/parquet/journal.ts";
import { TABLES } from "../src/sinks/tables.ts";
import { tradeAt } from "./support/parquet-helpers.ts";

const COLUMNS = TABLES.trades;
const CONSTANTS = { exchange: "BINANCE_FUTURES", symbol: "BTCUSDT" };

function header(version = JOURNAL_VERSION): Uint8Array {
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
    expect(() => side.decode(new ByteReader(out.contents(), 0, 0, out.length), 2, true)).toThrow("code without a value");
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

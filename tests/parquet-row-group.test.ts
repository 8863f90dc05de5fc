/**
 * The Parquet sink's own row-group encoder (src/sinks/parquet/row-group.ts) against hyparquet-writer's
 * generic one: the same seeded rows written both ways must read back identically (DuckDB and hyparquet),
 * with the encodings the data model promises and the same column statistics.
 */
import { afterAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { CompressionCodec } from "hyparquet";
import { ByteWriter, ParquetWriter } from "hyparquet-writer";
import type { BookChange, MarketEvent } from "../src/core/events.ts";
import { BooleanColumn, EVENT_ROWS_SLACK, NumberColumn, PER_EVENT_COLUMNS, rowAppender, RunColumn, SymbolColumn, TableBuffer } from "../src/sinks/parquet/columns.ts";
import { Bytes } from "../src/sinks/parquet/bytes.ts";
import { deltaBinaryPacked, deltaBinaryPackedRuns, encodeRowGroup, fastEncodable, writeIndexesRle } from "../src/sinks/parquet/row-group.ts";
import { writeRleBitPackedHybrid } from "hyparquet-writer/src/encoding.js";
import { COMPRESSORS, schemaOf } from "../src/sinks/parquet/schema.ts";
import { TABLES, type TableName } from "../src/core/tables.ts";
import {
  bboAt,
  bookAt,
  gapAt,
  hyparquetMetadata,
  liquidationAt,
  query,
  readWithHyparquet,
  removeTempDirectories,
  seededRandom,
  tempDirectory,
  tradeAt,
} from "./support/parquet-helpers.ts";

afterAll(removeTempDirectories);

const directory = tempDirectory("xtrader-row-group-");

/** Writes `events` as row groups of `groupRows` with either encoder; returns the file path. */
function writeFile(table: TableName, events: readonly MarketEvent[], groupRows: number, fast: boolean, codec: CompressionCodec, name: string): string {
  const columns = TABLES[table];
  const buffer = new TableBuffer(columns, { exchange: events[0]!.exchange, symbol: events[0]!.symbol }, { perEvent: PER_EVENT_COLUMNS[table] });
  const append = rowAppender(table, buffer);
  const writer = new ByteWriter();
  const parquet = new ParquetWriter({ writer, schema: schemaOf(columns), codec, compressors: COMPRESSORS });
  const report = { invalid: 0 };
  const commit = (count: number) => {
    if (fast) {
      parquet.row_groups.push(encodeRowGroup(writer, buffer, count, codec, report));
      parquet.num_rows += BigInt(count);
    } else {
      parquet.write({ columnData: buffer.columnData(count, report), rowGroupSize: count });
    }
    buffer.discard(count);
  };
  for (const event of events) {
    append(event);
    while (buffer.rows >= groupRows) commit(groupRows);
  }
  if (buffer.rows > 0) commit(buffer.rows);
  parquet.finish();
  const path = join(directory, `${name}-${fast ? "fast" : "generic"}.parquet`);
  writeFileSync(path, writer.getBytes());
  return path;
}

/**
 * Seeded L2 changes with awkward values: NaN, tiny prices, mixed snapshot flags. (No -0: hyparquet-writer
 * dictionary-encodes such columns through a Map, which stores it as 0, while PLAIN keeps the sign.)
 */
function awkwardBooks(count: number): BookChange[] {
  const random = seededRandom(42);
  const books: BookChange[] = [];
  for (let i = 0; i < count; i++) {
    const book = bookAt(i, "BTC-USDT-SWAP", 1 + Math.floor(random() * 12));
    const bids = [...book.bids];
    if (i % 89 === 7) bids[1] = Number.NaN;
    if (i % 83 === 3) bids[0] = 1e-9 * random();
    books.push({ ...book, bids, localTimestamp: book.localTimestamp + Math.floor(random() * 5000), sequence: book.sequence + Math.floor(random() * 40) * i });
  }
  return books;
}

const CASES: ReadonlyArray<{ table: TableName; events: () => MarketEvent[]; order: string }> = [
  { table: "l2", events: () => awkwardBooks(3000), order: "timestamp, side, price" },
  { table: "trades", events: () => Array.from({ length: 5000 }, (_, i) => ({ ...tradeAt(i), id: i % 50 === 0 ? `t${i}-é€😀` : `t${i}` })), order: "timestamp" },
  { table: "bbo", events: () => Array.from({ length: 4000 }, (_, i) => bboAt(i)), order: "timestamp" },
  { table: "liquidations", events: () => Array.from({ length: 700 }, (_, i) => liquidationAt(i)), order: "timestamp" },
  { table: "gaps", events: () => Array.from({ length: 300 }, (_, i) => ({ ...gapAt(i), reason: i % 3 === 0 ? "overflow" : "sequence" }) as MarketEvent), order: "timestamp" },
];

for (const { table, events, order } of CASES) {
  test(`${table}: row groups from row-group.ts read back exactly like hyparquet-writer's`, async () => {
    expect(fastEncodable(TABLES[table])).toBe(true);
    const list = events();
    const fast = writeFile(table, list, 1024, true, "ZSTD", table);
    const generic = writeFile(table, list, 1024, false, "ZSTD", table);
    const select = (path: string) =>
      query(
        `SELECT * REPLACE (epoch_us(timestamp) AS timestamp, epoch_us(local_timestamp) AS local_timestamp) FROM read_parquet('${path}') ORDER BY ${order}, local_timestamp`,
      );
    const [fastRows, genericRows] = await Promise.all([select(fast), select(generic)]);
    expect(fastRows.length).toBeGreaterThan(0);
    expect(fastRows).toEqual(genericRows);
    expect(await readWithHyparquet(fast)).toEqual(await readWithHyparquet(generic));

    const [fastMeta, genericMeta] = await Promise.all([hyparquetMetadata(fast), hyparquetMetadata(generic)]);
    expect(fastMeta.row_groups.length).toBe(genericMeta.row_groups.length);
    for (let group = 0; group < fastMeta.row_groups.length; group++) {
      const fastColumns = fastMeta.row_groups[group]!.columns;
      const genericColumns = genericMeta.row_groups[group]!.columns;
      for (let c = 0; c < fastColumns.length; c++) {
        const ours = fastColumns[c]!.meta_data!;
        const theirs = genericColumns[c]!.meta_data!;
        expect(ours.num_values).toBe(theirs.num_values);
        expect(ours.statistics?.min_value).toEqual(theirs.statistics?.min_value);
        expect(ours.statistics?.max_value).toEqual(theirs.statistics?.max_value);
        const column = TABLES[table][c]!;
        if (column.kind === "symbol") expect(ours.encodings).toContain("RLE_DICTIONARY");
        if (column.kind === "timestamp" || column.kind === "long") expect(ours.encodings).toEqual(["DELTA_BINARY_PACKED"]);
        if (column.kind === "double") expect(ours.encodings).toEqual(["PLAIN"]);
        expect(ours.codec).toBe("ZSTD");
      }
    }
  });
}

test("integers whose deltas need more than 32 bits are written PLAIN and read back exactly", async () => {
  const random = seededRandom(7);
  const books = awkwardBooks(600).map((book, i) => ({
    ...book,
    // Jumps of up to 2^50 between consecutive rows, near the top of the safe range.
    sequence: i % 2 === 0 ? 2 ** 52 + Math.floor(random() * 2 ** 50) : Math.floor(random() * 1000),
  }));
  const fast = writeFile("l2", books, 512, true, "SNAPPY", "wide");
  const generic = writeFile("l2", books, 512, false, "SNAPPY", "wide");
  const meta = await hyparquetMetadata(fast);
  const sequence = meta.row_groups[0]!.columns.find((column) => column.meta_data!.path_in_schema[0] === "sequence")!;
  expect(sequence.meta_data!.encodings).toEqual(["PLAIN"]);
  expect(sequence.meta_data!.codec).toBe("SNAPPY");
  const select = (path: string) => query(`SELECT sequence, price, side FROM read_parquet('${path}') ORDER BY timestamp, side, price, sequence`);
  const rows = await select(fast);
  expect(rows).toEqual(await select(generic));
  expect(rows.some((row) => BigInt(row.sequence as bigint) > 2n ** 52n)).toBe(true);
});

test("uncompressed files from row-group.ts are valid too", async () => {
  const list = Array.from({ length: 2500 }, (_, i) => tradeAt(i));
  const fast = writeFile("trades", list, 1000, true, "UNCOMPRESSED", "plain");
  const [{ rows }] = (await query(`SELECT count(*)::INTEGER AS rows FROM read_parquet('${fast}')`)) as [{ rows: number }];
  expect(rows).toBe(2500);
  const codecs = await query(`SELECT DISTINCT compression FROM parquet_metadata('${fast}')`);
  expect(codecs.map((row) => row.compression)).toEqual(["UNCOMPRESSED"]);
});

test("column buffers of a table the sink seals stop growing at a row group plus one event", () => {
  const rowGroupRows = 16_384;
  const buffer = new TableBuffer(TABLES.l2, { exchange: "OKX_SWAP", symbol: "BTC-USDT-SWAP" }, { growthLimit: rowGroupRows + EVENT_ROWS_SLACK, perEvent: PER_EVENT_COLUMNS.l2 });
  const append = rowAppender("l2", buffer);
  const price = buffer.column("price", NumberColumn);
  const prices: number[] = [];
  // 20-row depth messages until the buffer holds a row group, as the sink appends before it seals.
  for (let i = 0; buffer.rows < rowGroupRows; i++) {
    const book = bookAt(i, "BTC-USDT-SWAP", 10);
    append(book);
    for (const side of [book.bids, book.asks]) for (let j = 0; j < side.length; j += 2) prices.push(side[j]!);
  }
  expect(buffer.rows).toBeGreaterThan(rowGroupRows);
  // Doubling would have made 32,768.
  expect(price.capacity).toBe(rowGroupRows + EVENT_ROWS_SLACK);
  expect([...price.head(0, buffer.rows)]).toEqual(prices);
  // An event bigger than the slack (a deep snapshot) still fits: the limit only applies while it is enough.
  const snapshot = { ...bookAt(99_999, "BTC-USDT-SWAP", 1500), isSnapshot: true };
  append(snapshot);
  expect(price.capacity).toBeGreaterThanOrEqual(buffer.rows);
  expect(price.head(buffer.rows - 1, 1)[0]).toBe(snapshot.asks.at(-2)!);
});

test("dictionary indexes are RLE/bit-packed exactly as hyparquet-writer packs them", () => {
  const random = seededRandom(11);
  for (let round = 0; round < 300; round++) {
    const distinct = 1 + Math.floor(random() * 5);
    const length = Math.floor(random() * 400);
    // Runs of every length around the RLE threshold of 8.
    const codes = new Uint8Array(length);
    for (let i = 0; i < length; ) {
      const run = 1 + Math.floor(random() * 14);
      codes.fill(Math.floor(random() * distinct), i, Math.min(length, i + run));
      i += run;
    }
    // Codes map one to one to indexes in another order, as a dictionary of first appearances does.
    const indexOf = Int16Array.from({ length: distinct }, (_, code) => (code + round) % distinct);
    const bitWidth = distinct <= 1 ? 0 : 32 - Math.clz32(distinct - 1);
    const ours = new Bytes();
    writeIndexesRle(ours, codes, indexOf, bitWidth);
    const reference = new ByteWriter();
    writeRleBitPackedHybrid(reference, Int32Array.from(codes, (code) => indexOf[code]!), bitWidth);
    expect(ours.view()).toEqual(reference.getBytes());
  }
});

test("DELTA_BINARY_PACKED from runs is byte for byte the encoding of the expanded rows, refusals included", () => {
  const random = seededRandom(23);
  let refused = 0;
  let unsorted = 0;
  for (let round = 0; round < 2000; round++) {
    // Counts around block (128) and miniblock (32) edges; runs from single rows to longer than a block.
    const count = [0, 1, 2, 31, 32, 33, 127, 128, 129, 130, 257][round % 11]! + (round % 3 === 0 ? Math.floor(random() * 600) : 0);
    const longest = [1, 3, 20, 40, 200][round % 5]!;
    const shape = round % 4; // 0 rising (timestamps), 1 rising with falls, 2 near the safe limit, 3 jumps past 32 bits
    const values: number[] = [];
    const lengths: number[] = [];
    let value = shape === 2 ? 2 ** 53 - 2 ** 40 : 1_767_225_600_000_000 + Math.floor(random() * 1e9);
    for (let rows = 0; rows < count; ) {
      const length = Math.min(count - rows, 1 + Math.floor(random() * longest));
      values.push(value);
      lengths.push(length);
      rows += length;
      const step = Math.floor(random() * 5000);
      value += shape === 1 && random() < 0.3 ? -step : shape === 3 && random() < 0.05 ? 2 ** 33 + step : step;
    }
    const expanded = new Float64Array(count);
    for (let run = 0, row = 0; run < values.length; row += lengths[run]!, run++) expanded.fill(values[run]!, row, row + lengths[run]!);
    const reference = new Bytes();
    reference.byte(0xee); // output after other bytes, as in a page
    const referenceOk = deltaBinaryPacked(reference, expanded);
    const ours = new Bytes();
    ours.byte(0xee);
    const oursOk = deltaBinaryPackedRuns(ours, Float64Array.from(values), Float64Array.from(lengths), values.length, count);
    expect(oursOk).toBe(referenceOk);
    expect(ours.view()).toEqual(reference.view());
    if (!oursOk) refused++;
    if (shape === 1 && count > 100) unsorted++;
  }
  expect(refused).toBeGreaterThan(0);
  expect(unsorted).toBeGreaterThan(0);
});

test("an L2 row group from per-event runs is byte for byte the one from per-row columns", () => {
  const books = awkwardBooks(1500).map((book, i) => ({
    ...book,
    // Non-integers in integer columns are repaired (and counted) the same way either way.
    sequence: i % 211 === 5 ? book.sequence + 0.5 : i % 307 === 9 ? Number.NaN : book.sequence,
    timestamp: i % 97 === 0 ? book.timestamp - 3000 : book.timestamp,
  }));
  const constants = { exchange: "OKX_SWAP", symbol: "BTC-USDT-SWAP" };
  const runBuffer = new TableBuffer(TABLES.l2, constants, { perEvent: PER_EVENT_COLUMNS.l2 });
  const append = rowAppender("l2", runBuffer);
  for (const book of books) append(book);
  // The same rows in per-row columns (the layout before RunColumn), copied column by column.
  const rowBuffer = new TableBuffer(TABLES.l2, constants);
  const rows = runBuffer.rows;
  for (const name of ["timestamp", "local_timestamp", "sequence"]) {
    const column = rowBuffer.column(name, NumberColumn);
    for (const value of runBuffer.column(name, RunColumn).expand(0, rows).slice()) column.push(value);
  }
  for (const flag of runBuffer.column("is_snapshot", RunColumn).flags(0, rows).slice()) rowBuffer.column("is_snapshot", BooleanColumn).push(flag === 1);
  for (const book of books) {
    rowBuffer.column("side", SymbolColumn).pushRepeated("bid", book.bids.length >> 1);
    rowBuffer.column("side", SymbolColumn).pushRepeated("ask", book.asks.length >> 1);
  }
  for (const name of ["price", "amount", "base_amount"]) {
    const column = rowBuffer.column(name, NumberColumn);
    for (const value of runBuffer.column(name, NumberColumn).head(0, rows).slice()) column.push(value);
  }
  rowBuffer.rows = rows;
  const encode = (buffer: TableBuffer, from: number, count: number, codec: CompressionCodec) => {
    const writer = new ByteWriter();
    const report = { invalid: 0 };
    const rowGroup = encodeRowGroup(writer, buffer, count, codec, report, from);
    return { bytes: writer.getBytes(), rowGroup, invalid: report.invalid, runColumns: buffer.runColumns };
  };
  for (const [from, count, codec] of [[0, 4000, "ZSTD"], [37, 1000, "UNCOMPRESSED"], [1234, 5, "UNCOMPRESSED"], [500, 1, "ZSTD"]] as const) {
    const fromRuns = encode(runBuffer, from, count, codec);
    const fromRows = encode(rowBuffer, from, count, codec);
    expect(fromRuns.runColumns.length).toBe(4);
    expect(fromRows.runColumns).toEqual([]);
    expect(fromRuns.bytes).toEqual(fromRows.bytes);
    expect(fromRuns.rowGroup).toEqual(fromRows.rowGroup);
    expect(fromRuns.invalid).toBe(fromRows.invalid);
  }
  expect(rows).toBeGreaterThan(4000 + 1234);
  expect(encode(runBuffer, 0, 4000, "UNCOMPRESSED").invalid).toBeGreaterThan(0);
});

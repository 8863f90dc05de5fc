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
import { EVENT_ROWS_SLACK, NumberColumn, PER_EVENT_COLUMNS, rowAppender, TableBuffer } from "../src/sinks/parquet/columns.ts";
import { Bytes, encodeRowGroup, fastEncodable, writeIndexesRle } from "../src/sinks/parquet/row-group.ts";
import { writeRleBitPackedHybrid } from "hyparquet-writer/src/encoding.js";
import { COMPRESSORS, schemaOf } from "../src/sinks/parquet/schema.ts";
import { TABLES, type TableName } from "../src/sinks/tables.ts";
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

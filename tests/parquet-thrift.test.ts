/**
 * The hand-written Thrift metadata (src/sinks/parquet/thrift.ts) against hyparquet-writer's generic
 * serializer: page headers and footers of the same metadata must be the same bytes, for the row groups our
 * encoder and hyparquet-writer's produce, and for awkward statistics (long and multi-byte strings that get
 * truncated, NaN, signed zero, negative and 64-bit integers).
 */
import { expect, test } from "bun:test";
import type { FileMetaData, RowGroup, SchemaElement, Statistics } from "hyparquet";
import { parquetMetadata } from "hyparquet";
import { ByteWriter, ParquetWriter } from "hyparquet-writer";
import { writePageHeader } from "hyparquet-writer/src/datapage.js";
import { writeMetadata } from "hyparquet-writer/src/metadata.js";
import type { MarketEvent, Trade } from "../src/core/events.ts";
import { PER_EVENT_COLUMNS, rowAppender, TableBuffer } from "../src/sinks/parquet/columns.ts";
import { encodeRowGroup, fastEncodable } from "../src/sinks/parquet/row-group.ts";
import { COMPRESSORS, schemaOf } from "../src/sinks/parquet/schema.ts";
import { NotEncodable, writeDataPageV2Header, writeDictionaryPageHeader, writeFooter } from "../src/sinks/parquet/thrift.ts";
import { TABLES, type TableName } from "../src/core/tables.ts";
import { bboAt, bookAt, fundingAt, gapAt, liquidationAt, seededRandom, tradeAt } from "./support/parquet-helpers.ts";

function bytesOf(write: (writer: ByteWriter) => void): Uint8Array {
  const writer = new ByteWriter();
  write(writer);
  return writer.getBytes().slice();
}

/** hyparquet-writer's footer: what ParquetWriter.finish() writes after page indexes and bloom filters. */
function referenceFooter(metadata: Omit<FileMetaData, "metadata_length">): Uint8Array {
  return bytesOf((writer) => {
    writeMetadata(writer, metadata as FileMetaData);
    writer.appendUint32(0x31524150);
  });
}

test("page headers are hyparquet-writer's bytes", () => {
  const sizes = [0, 1, 127, 128, 16_383, 16_384, 1_048_576, 2 ** 28 + 5, 2 ** 31 - 1];
  for (const uncompressed of sizes) {
    for (const compressed of [1, 300, uncompressed]) {
      for (const values of [1, 14, 15, 16_384, 1_000_000]) {
        expect(bytesOf((writer) => writeDictionaryPageHeader(writer, uncompressed, compressed, values))).toEqual(
          bytesOf((writer) =>
            writePageHeader(writer, {
              type: "DICTIONARY_PAGE",
              uncompressed_page_size: uncompressed,
              compressed_page_size: compressed,
              dictionary_page_header: { num_values: values, encoding: "PLAIN" },
            }),
          ),
        );
        for (const encoding of ["PLAIN", "DELTA_BINARY_PACKED", "RLE_DICTIONARY"] as const) {
          expect(bytesOf((writer) => writeDataPageV2Header(writer, uncompressed, compressed, values, encoding))).toEqual(
            bytesOf((writer) =>
              writePageHeader(writer, {
                type: "DATA_PAGE_V2",
                uncompressed_page_size: uncompressed,
                compressed_page_size: compressed,
                data_page_header_v2: {
                  num_values: values,
                  num_nulls: 0,
                  num_rows: values,
                  encoding,
                  definition_levels_byte_length: 0,
                  repetition_levels_byte_length: 0,
                  is_compressed: true,
                },
              }),
            ),
          );
        }
      }
    }
  }
});

/** Trades whose ids make the statistics interesting: long (truncated), multi-byte, high code points. */
function awkwardTrades(count: number): Trade[] {
  const random = seededRandom(7);
  const ids = ["", "1", "x".repeat(16), "y".repeat(17), "ünïcödé-trade-identifier", "€€€€€€€€€", "a\u{10FFFF}\u{10FFFF}\u{10FFFF}\u{10FFFF}\u{10FFFF}", "abcdefghijklmno\uD7FF-tail", "\u{10FFFF}".repeat(6), "zzzzzzzzzzzzzzzzzzzzzz"];
  return Array.from({ length: count }, (_, i) => ({ ...tradeAt(i), id: ids[i % ids.length]! + (i % 3 === 0 ? "" : String(Math.floor(random() * 1e9))), price: i % 97 === 5 ? Number.NaN : i % 89 === 4 ? -0 : tradeAt(i).price }));
}

const TABLE_EVENTS: ReadonlyArray<{ table: TableName; events: () => MarketEvent[] }> = [
  { table: "l2", events: () => Array.from({ length: 700 }, (_, i) => bookAt(i, "BTC-USDT-SWAP", 1 + (i % 9))) },
  { table: "trades", events: () => awkwardTrades(900) },
  { table: "bbo", events: () => Array.from({ length: 500 }, (_, i) => bboAt(i)) },
  { table: "liquidations", events: () => Array.from({ length: 300 }, (_, i) => liquidationAt(i)) },
  { table: "gaps", events: () => Array.from({ length: 170 }, (_, i) => gapAt(i)) },
  { table: "funding", events: () => Array.from({ length: 400 }, (_, i) => fundingAt(i)) },
];

/** A file's metadata as the sink builds it: 17 row groups (a long list header), each encoder as the sink uses it. */
function metadataOf(table: TableName, events: readonly MarketEvent[]): Omit<FileMetaData, "metadata_length"> {
  const columns = TABLES[table];
  const buffer = new TableBuffer(columns, { exchange: events[0]!.exchange, symbol: events[0]!.symbol }, { perEvent: PER_EVENT_COLUMNS[table] });
  const append = rowAppender(table, buffer);
  for (const event of events) append(event);
  const writer = new ByteWriter();
  const kvMetadata = [{ key: "xtrader.table", value: table }, { key: "xtrader.symbol", value: "BTC-USDT-SWAP" }];
  const parquet = new ParquetWriter({ writer, schema: schemaOf(columns), codec: "ZSTD", compressors: COMPRESSORS, createdBy: "xtrader test", kvMetadata });
  const report = { invalid: 0 };
  const groups = 17;
  const groupRows = Math.ceil(buffer.rows / groups);
  while (buffer.rows > 0) {
    const count = Math.min(groupRows, buffer.rows);
    if (fastEncodable(columns)) parquet.row_groups.push(encodeRowGroup(writer, buffer, count, "ZSTD", report));
    else parquet.write({ columnData: buffer.columnData(count, report), rowGroupSize: count });
    parquet.num_rows += BigInt(count);
    buffer.discard(count);
  }
  return { version: 2, created_by: parquet.createdBy, schema: parquet.schema, num_rows: parquet.num_rows, row_groups: parquet.row_groups, key_value_metadata: parquet.kvMetadata };
}

for (const { table, events } of TABLE_EVENTS) {
  test(`the footer of a ${table} file is hyparquet-writer's bytes and reads back`, () => {
    const metadata = metadataOf(table, events());
    const ours = bytesOf((writer) => writeFooter(writer, metadata));
    expect(ours).toEqual(referenceFooter(metadata));
    // And a reader takes it: the footer alone (with a leading magic) parses to the same row groups.
    const file = new Uint8Array(4 + ours.length);
    file.set(new TextEncoder().encode("PAR1"));
    file.set(ours, 4);
    const parsed = parquetMetadata(file.buffer);
    expect(parsed.num_rows).toBe(metadata.num_rows);
    expect(parsed.row_groups.length).toBe(17);
    expect(parsed.key_value_metadata).toEqual(metadata.key_value_metadata);
  });
}

test("statistics edge cases are encoded as hyparquet-writer encodes them", () => {
  const stringColumn: SchemaElement = { name: "id", type: "BYTE_ARRAY", converted_type: "UTF8", logical_type: { type: "STRING" }, repetition_type: "REQUIRED" };
  const schema: SchemaElement[] = [
    { name: "schema", num_children: 5 },
    stringColumn,
    { name: "price", type: "DOUBLE", repetition_type: "OPTIONAL" },
    { name: "sequence", type: "INT64", repetition_type: "REQUIRED" },
    { name: "flag", type: "BOOLEAN", repetition_type: "REQUIRED" },
    { name: "at", type: "INT64", converted_type: "TIMESTAMP_MICROS", logical_type: { type: "TIMESTAMP", isAdjustedToUTC: false, unit: "MICROS" }, repetition_type: "REQUIRED" },
  ];
  const strings = ["", "short", "exactly-16-bytes", "seventeen-bytes-x", "ÿÿÿÿÿÿÿÿÿ", "€".repeat(7), "\u{10FFFF}".repeat(5), "abcdefghijklmn\uD7FF\uD7FF", "a".repeat(15) + "€"];
  const random = seededRandom(3);
  const chunk = (name: string, type: "BYTE_ARRAY" | "DOUBLE" | "INT64" | "BOOLEAN", statistics: Statistics) => ({
    file_offset: BigInt(Math.floor(random() * 2 ** 40)),
    meta_data: {
      type,
      encodings: ["PLAIN" as const, "RLE_DICTIONARY" as const],
      path_in_schema: [name],
      codec: "ZSTD" as const,
      num_values: 2n ** 40n + 3n,
      total_uncompressed_size: 123_456_789n,
      total_compressed_size: 98_765n,
      data_page_offset: 4n,
      dictionary_page_offset: 2n ** 33n,
      statistics,
      encoding_stats: [{ page_type: "DATA_PAGE_V2" as const, encoding: "PLAIN" as const, count: 1 }],
    },
  });
  const rowGroups: RowGroup[] = [];
  for (const [index, max] of strings.entries()) {
    const min = strings[(index + 3) % strings.length]!;
    rowGroups.push({
      columns: [
        chunk("id", "BYTE_ARRAY", { min_value: min, max_value: max, null_count: 0n }),
        chunk("price", "DOUBLE", { min_value: index % 2 === 0 ? -0 : -1.5e300, max_value: index % 3 === 0 ? 0 : Number.MAX_VALUE, null_count: BigInt(index), nan_count: 2n } as Statistics),
        chunk("sequence", "INT64", { min_value: -(2 ** 53) + 1, max_value: 2n ** 62n, null_count: 0n }),
        chunk("flag", "BOOLEAN", { min_value: false, max_value: true, null_count: 0n }),
        chunk("at", "INT64", { min_value: 1_700_000_000_000_000, max_value: 1_800_000_000_000_000n, null_count: 0n }),
      ],
      total_byte_size: 2n ** 45n,
      num_rows: BigInt(index),
      total_compressed_size: 77n,
    });
  }
  const metadata = { version: 2, created_by: "xtrader €", schema, num_rows: 2n ** 50n, row_groups: rowGroups, key_value_metadata: [] };
  expect(bytesOf((writer) => writeFooter(writer, metadata))).toEqual(referenceFooter(metadata));
  // Raw byte bounds that are not valid UTF-8 are truncated byte-wise.
  const raw = { ...metadata, row_groups: [{ ...rowGroups[0]!, columns: [chunk("id", "BYTE_ARRAY", { min_value: new Uint8Array(20).fill(0xfe), max_value: new Uint8Array([...new Uint8Array(17).fill(0xc3), 0xff]), null_count: 0n } as Statistics)] }] };
  expect(bytesOf((writer) => writeFooter(writer, raw))).toEqual(referenceFooter(raw));
});

test("metadata the writer does not know is refused before anything is written", () => {
  const metadata = metadataOf("trades", awkwardTrades(50));
  const decimal = { ...metadata, schema: [metadata.schema[0]!, { name: "price", type: "INT64", converted_type: "DECIMAL", scale: 2, precision: 18, logical_type: { type: "DECIMAL", scale: 2, precision: 18 } } as SchemaElement] };
  const writer = new ByteWriter();
  expect(() => writeFooter(writer, decimal)).toThrow(NotEncodable);
  expect(writer.offset).toBe(0);
});

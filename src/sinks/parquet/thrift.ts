/**
 * Parquet's Thrift metadata written by hand in the compact protocol: page headers and the file footer.
 *
 * Why not hyparquet-writer's writePageHeader/writeMetadata: they build a tree of `{ field_N }` objects and
 * serialize it generically (Object.entries and parseInt per field, a type guessed per value, a TextEncoder
 * per string). Closing the 280 files of a busy instance (a rotation, a shutdown) spent 50-70 ms of the event
 * loop in footers, and JSC compiled that polymorphic code (~0.2 s on the other core) the first time files
 * closed. The bytes are exactly hyparquet-writer's, field for field (tests/parquet-thrift.test.ts); anything
 * this writer does not know (geospatial statistics, encrypted columns, unusual logical types) throws
 * NotEncodable and the caller lets hyparquet-writer write it instead.
 *
 * Compact protocol: https://github.com/apache/thrift/blob/master/doc/specs/thrift-compact-protocol.md
 * Structures: https://github.com/apache/parquet-format/blob/master/src/main/thrift/parquet.thrift
 */
import type { ColumnChunk, ColumnMetaData, FileMetaData, KeyValue, RowGroup, SchemaElement, Statistics } from "hyparquet";
import type { ByteWriter } from "hyparquet-writer";
import { Bytes } from "./bytes.ts";

// Compact protocol type codes.
const TRUE = 1;
const FALSE = 2;
const I32 = 5;
const I64 = 6;
const DOUBLE = 7;
const BINARY = 8;
const LIST = 9;
const STRUCT = 12;

const PARQUET_TYPES = ["BOOLEAN", "INT32", "INT64", "INT96", "FLOAT", "DOUBLE", "BYTE_ARRAY", "FIXED_LEN_BYTE_ARRAY"];
const REPETITION_TYPES = ["REQUIRED", "OPTIONAL", "REPEATED"];
const CONVERTED_TYPES = [
  "UTF8", "MAP", "MAP_KEY_VALUE", "LIST", "ENUM", "DECIMAL", "DATE", "TIME_MILLIS", "TIME_MICROS", "TIMESTAMP_MILLIS",
  "TIMESTAMP_MICROS", "UINT_8", "UINT_16", "UINT_32", "UINT_64", "INT_8", "INT_16", "INT_32", "INT_64", "JSON", "BSON", "INTERVAL",
];
const ENCODINGS = [
  "PLAIN", "GROUP_VAR_INT", "PLAIN_DICTIONARY", "RLE", "BIT_PACKED", "DELTA_BINARY_PACKED", "DELTA_LENGTH_BYTE_ARRAY",
  "DELTA_BYTE_ARRAY", "RLE_DICTIONARY", "BYTE_STREAM_SPLIT",
];
const CODECS = ["UNCOMPRESSED", "SNAPPY", "GZIP", "LZO", "BROTLI", "LZ4", "ZSTD", "LZ4_RAW"];
const PAGE_TYPES = ["DATA_PAGE", "INDEX_PAGE", "DICTIONARY_PAGE", "DATA_PAGE_V2"];

/** Index of a Parquet enum name, as hyparquet-writer writes it (-1 when unknown, as indexOf gives). */
export function encodingIndex(encoding: string): number {
  return ENCODINGS.indexOf(encoding);
}

/** Statistics byte arrays longer than this are truncated (hyparquet-writer's default). */
const STATISTICS_TRUNCATE_LENGTH = 16;

/** Metadata this writer does not handle; the caller falls back to hyparquet-writer. */
export class NotEncodable extends Error {}

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** A compact-protocol writer over one reused, growing buffer. */
class CompactWriter extends Bytes {
  /** Field id last written in the current struct, and those of the structs around it. */
  private lastField = 0;
  private readonly outer: number[] = [];

  override reset(): void {
    super.reset();
    this.lastField = 0;
    this.outer.length = 0;
  }

  /** Unsigned LEB128 of a 32-bit value, with hyparquet-writer's 32-bit arithmetic. */
  varint(value: number): void {
    this.ensure(5);
    while ((value & ~0x7f) !== 0) {
      this.buffer[this.length++] = (value & 0x7f) | 0x80;
      value >>>= 7;
    }
    this.buffer[this.length++] = value;
  }

  /** Zig-zag of a 32-bit integer (a number beyond int32 wraps, as hyparquet-writer's does). */
  zigzag32(value: number): void {
    this.varint((value << 1) ^ (value >> 31));
  }

  float64(value: number): void {
    this.ensure(8);
    this.dataView.setFloat64(this.length, value, true);
    this.length += 8;
  }

  binary(value: string | Uint8Array): void {
    if (typeof value !== "string") {
      this.varint(value.length);
      this.bytes(value);
      return;
    }
    let ascii = true;
    for (let i = 0; i < value.length; i++) {
      if (value.charCodeAt(i) > 0x7f) {
        ascii = false;
        break;
      }
    }
    if (!ascii) {
      this.binary(utf8.encode(value));
      return;
    }
    this.varint(value.length);
    this.ensure(value.length);
    for (let i = 0; i < value.length; i++) this.buffer[this.length++] = value.charCodeAt(i);
  }

  fieldHeader(field: number, type: number): void {
    const delta = field - this.lastField;
    if (delta > 0 && delta <= 15) this.byte((delta << 4) | type);
    else {
      this.byte(type);
      this.zigzag32(field);
    }
    this.lastField = field;
  }

  beginStruct(): void {
    this.outer.push(this.lastField);
    this.lastField = 0;
  }

  endStruct(): void {
    this.byte(0);
    this.lastField = this.outer.pop() ?? 0;
  }

  /** A struct field; `body` writes its fields. */
  structField(field: number, body: () => void): void {
    this.fieldHeader(field, STRUCT);
    this.beginStruct();
    body();
    this.endStruct();
  }

  /** An empty struct field (a union member without data, like LogicalType.STRING). */
  emptyStructField(field: number): void {
    this.fieldHeader(field, STRUCT);
    this.byte(0);
  }

  listHeader(size: number, elementType: number): void {
    if (size > 14) {
      this.byte(0xf0 | elementType);
      this.varint(size);
    } else {
      this.byte((size << 4) | elementType);
    }
  }

  /** A list of structs; `body` writes one element's fields. */
  structListField<T>(field: number, values: readonly T[], body: (value: T) => void): void {
    this.fieldHeader(field, LIST);
    this.listHeader(values.length, values.length === 0 ? 0 : STRUCT);
    for (const value of values) {
      this.beginStruct();
      body(value);
      this.endStruct();
    }
  }

  /**
   * A field whose compact type follows the JavaScript value, as hyparquet-writer decides it: integers
   * are i32, other numbers doubles, bigints i64, strings and bytes binary, booleans in the header.
   */
  valueField(field: number, value: unknown): void {
    if (value === undefined) return;
    const type = typeOf(value);
    this.fieldHeader(field, type);
    if (type !== TRUE && type !== FALSE) this.value(type, value);
  }

  /** A list of primitive values, element type as hyparquet-writer infers it. */
  valueListField(field: number, values: readonly unknown[] | undefined): void {
    if (values === undefined) return;
    let elementType = 0;
    for (const value of values) {
      let type = typeOf(value);
      if (type === STRUCT || type === LIST) throw new NotEncodable("nested list");
      if (type === TRUE) type = FALSE;
      if (elementType === 0) elementType = type;
      else if (elementType === I32 && type === DOUBLE) elementType = DOUBLE;
      else if (!(elementType === DOUBLE && type === I32) && type !== elementType) throw new NotEncodable("mixed list");
    }
    this.fieldHeader(field, LIST);
    this.listHeader(values.length, elementType);
    for (const value of values) {
      if (elementType === FALSE) this.byte(value ? 1 : 0);
      else this.value(elementType, value);
    }
  }

  private value(type: number, value: unknown): void {
    if (type === I32 && typeof value === "number") this.zigzag32(value);
    else if (type === I64 && typeof value === "bigint") this.zigzag(value);
    else if (type === DOUBLE && typeof value === "number") this.float64(value);
    else if (type === BINARY && (typeof value === "string" || value instanceof Uint8Array)) this.binary(value);
    else throw new NotEncodable(`a ${typeof value} where compact type ${type} is expected`);
  }

}

function typeOf(value: unknown): number {
  if (value === true) return TRUE;
  if (value === false) return FALSE;
  if (typeof value === "number") return Number.isInteger(value) ? I32 : DOUBLE;
  if (typeof value === "bigint") return I64;
  if (typeof value === "string" || value instanceof Uint8Array) return BINARY;
  if (Array.isArray(value)) return LIST;
  if (value !== null && typeof value === "object") return STRUCT;
  throw new NotEncodable(`no compact type for ${String(value)}`);
}

const out = new CompactWriter();

function appendTo(writer: ByteWriter): void {
  writer.appendBytes(out.view());
}

// ── page headers ──

/** PageHeader of a dictionary page (PLAIN values). */
export function writeDictionaryPageHeader(writer: ByteWriter, uncompressedSize: number, compressedSize: number, values: number): void {
  pageHeader(writer, "DICTIONARY_PAGE", uncompressedSize, compressedSize, 7, () => {
    out.valueField(1, values);
    out.valueField(2, encodingIndex("PLAIN"));
  });
}

/** PageHeader of a compressed v2 data page of a required column (no levels, no nulls). */
export function writeDataPageV2Header(writer: ByteWriter, uncompressedSize: number, compressedSize: number, rows: number, encoding: string): void {
  pageHeader(writer, "DATA_PAGE_V2", uncompressedSize, compressedSize, 8, () => {
    out.valueField(1, rows);
    out.valueField(2, 0);
    out.valueField(3, rows);
    out.valueField(4, encodingIndex(encoding));
    out.valueField(5, 0);
    out.valueField(6, 0);
    // is_compressed defaults to true: left out.
  });
}

/** A PageHeader: type, sizes, and the header struct of its kind (field `field`, written by `body`). */
function pageHeader(writer: ByteWriter, type: string, uncompressedSize: number, compressedSize: number, field: number, body: () => void): void {
  out.reset();
  out.valueField(1, PAGE_TYPES.indexOf(type));
  out.valueField(2, uncompressedSize);
  out.valueField(3, compressedSize);
  out.structField(field, body);
  out.byte(0);
  appendTo(writer);
}

// ── file footer ──

/**
 * The footer: FileMetaData, its length and the closing magic (what ParquetWriter.finish() writes after
 * its page indexes and bloom filters, of which our files have none). Throws NotEncodable, having written
 * nothing, for metadata outside what this writer knows.
 */
export function writeFooter(writer: ByteWriter, metadata: Omit<FileMetaData, "metadata_length">): void {
  out.reset();
  const schema = metadata.schema;
  out.valueField(1, metadata.version);
  out.structListField(2, schema, schemaElement);
  out.valueField(3, metadata.num_rows);
  out.structListField(4, metadata.row_groups, (rowGroup) => writeRowGroup(rowGroup, schema));
  if (metadata.key_value_metadata) out.structListField(5, metadata.key_value_metadata, keyValue);
  out.valueField(6, metadata.created_by);
  // column_orders: TypeDefinedOrder for every leaf.
  out.structListField(7, schema.filter((element) => element.type), () => out.emptyStructField(1));
  out.byte(0);
  const length = out.length;
  appendTo(writer);
  writer.appendUint32(length);
  writer.appendUint32(0x31524150); // "PAR1"
}

function keyValue(entry: KeyValue): void {
  out.valueField(1, entry.key);
  out.valueField(2, entry.value);
}

function schemaElement(element: SchemaElement): void {
  out.valueField(1, element.type && PARQUET_TYPES.indexOf(element.type));
  out.valueField(2, element.type_length);
  out.valueField(3, element.repetition_type && REPETITION_TYPES.indexOf(element.repetition_type));
  out.valueField(4, element.name);
  out.valueField(5, element.num_children);
  out.valueField(6, element.converted_type && CONVERTED_TYPES.indexOf(element.converted_type));
  out.valueField(7, element.scale);
  out.valueField(8, element.precision);
  out.valueField(9, element.field_id);
  const logical = element.logical_type;
  if (!logical) return;
  if (logical.type === "STRING") {
    out.structField(10, () => out.emptyStructField(1));
  } else if (logical.type === "TIMESTAMP") {
    out.structField(10, () =>
      out.structField(8, () => {
        out.valueField(1, logical.isAdjustedToUTC);
        out.structField(2, () => out.emptyStructField(logical.unit === "NANOS" ? 3 : logical.unit === "MICROS" ? 2 : 1));
      }),
    );
  } else {
    throw new NotEncodable(`logical type ${logical.type}`);
  }
}

function writeRowGroup(rowGroup: RowGroup, schema: readonly SchemaElement[]): void {
  out.structListField(1, rowGroup.columns, (column) => columnChunk(column, schema));
  out.valueField(2, rowGroup.total_byte_size);
  out.valueField(3, rowGroup.num_rows);
  if (rowGroup.sorting_columns) {
    out.structListField(4, rowGroup.sorting_columns, (sorting) => {
      out.valueField(1, sorting.column_idx);
      out.valueField(2, sorting.descending);
      out.valueField(3, sorting.nulls_first);
    });
  }
  out.valueField(5, rowGroup.file_offset);
  out.valueField(6, rowGroup.total_compressed_size);
}

function columnChunk(chunk: ColumnChunk, schema: readonly SchemaElement[]): void {
  out.valueField(1, chunk.file_path);
  out.valueField(2, chunk.file_offset);
  const meta = chunk.meta_data;
  if (meta) out.structField(3, () => columnMetaData(meta, schema));
  out.valueField(4, chunk.offset_index_offset);
  out.valueField(5, chunk.offset_index_length);
  out.valueField(6, chunk.column_index_offset);
  out.valueField(7, chunk.column_index_length);
  if (chunk.encrypted_column_metadata !== undefined) throw new NotEncodable("encrypted column metadata");
}

function columnMetaData(meta: ColumnMetaData, schema: readonly SchemaElement[]): void {
  out.valueField(1, PARQUET_TYPES.indexOf(meta.type));
  out.valueListField(2, meta.encodings.map(encodingIndex));
  out.valueListField(3, meta.path_in_schema);
  out.valueField(4, CODECS.indexOf(meta.codec));
  out.valueField(5, meta.num_values);
  out.valueField(6, meta.total_uncompressed_size);
  out.valueField(7, meta.total_compressed_size);
  if (meta.key_value_metadata) out.structListField(8, meta.key_value_metadata, keyValue);
  out.valueField(9, meta.data_page_offset);
  out.valueField(10, meta.index_page_offset);
  out.valueField(11, meta.dictionary_page_offset);
  if (meta.statistics) {
    const statistics = meta.statistics;
    const element = leafOf(schema, meta.path_in_schema);
    out.structField(12, () => writeStatistics(statistics, element));
  }
  if (meta.encoding_stats) {
    out.structListField(13, meta.encoding_stats, (stats) => {
      out.valueField(1, PAGE_TYPES.indexOf(stats.page_type));
      out.valueField(2, encodingIndex(stats.encoding));
      out.valueField(3, stats.count);
    });
  }
  out.valueField(14, meta.bloom_filter_offset);
  out.valueField(15, meta.bloom_filter_length);
  const size = meta.size_statistics;
  if (size) {
    out.structField(16, () => {
      out.valueField(1, size.unencoded_byte_array_data_bytes);
      out.valueListField(2, size.repetition_level_histogram);
      out.valueListField(3, size.definition_level_histogram);
    });
  }
  if (meta.geospatial_statistics) throw new NotEncodable("geospatial statistics");
}

/** The schema element of a top-level column (our schemas are flat). */
function leafOf(schema: readonly SchemaElement[], path: readonly string[]): SchemaElement {
  if (path.length !== 1) throw new NotEncodable("nested column");
  for (let i = 1; i < schema.length; i++) if (schema[i]!.name === path[0]) return schema[i]!;
  throw new NotEncodable(`column ${path[0]} is not in the schema`);
}

// ── statistics (hyparquet-writer's unconvertStatistics for the types of our schemas) ──

function writeStatistics(stats: Statistics, element: SchemaElement): void {
  const max = minMaxBytes(stats.max, element, true);
  const min = minMaxBytes(stats.min, element, false);
  const maxValue = minMaxBytes(stats.max_value, element, true);
  const minValue = minMaxBytes(stats.min_value, element, false);
  out.valueField(1, max);
  out.valueField(2, min);
  out.valueField(3, stats.null_count);
  out.valueField(4, stats.distinct_count);
  out.valueField(5, maxValue);
  out.valueField(6, minValue);
  out.valueField(7, stats.is_max_value_exact ?? isExact(stats.max_value ?? stats.max, element, true));
  out.valueField(8, stats.is_min_value_exact ?? isExact(stats.min_value ?? stats.min, element, false));
  out.valueField(9, (stats as { nan_count?: unknown }).nan_count);
}

function isByteArrayString(element: SchemaElement): boolean {
  if (element.type !== "BYTE_ARRAY") return false;
  const utf8Typed = element.converted_type === "UTF8" || element.logical_type?.type === "STRING";
  // Only plain strings: JSON/BSON bounds stay whole, DECIMAL ones are numbers.
  if (!utf8Typed || element.converted_type === "DECIMAL" || element.converted_type === "JSON" || element.converted_type === "BSON") {
    throw new NotEncodable(`byte array statistics of ${element.converted_type ?? element.logical_type?.type}`);
  }
  return true;
}

type MinMax = Statistics["min_value"];

function minMaxBytes(value: MinMax, element: SchemaElement, isMax: boolean): Uint8Array | undefined {
  if (value === undefined || value === null) return undefined;
  if ((element.logical_type && element.logical_type.type !== "STRING" && element.logical_type.type !== "TIMESTAMP") || element.converted_type === "DECIMAL") {
    throw new NotEncodable(`statistics of ${element.logical_type?.type ?? element.converted_type}`);
  }
  switch (element.type) {
    case "BOOLEAN":
      return new Uint8Array([value ? 1 : 0]);
    case "BYTE_ARRAY":
      if (!isByteArrayString(element)) break;
      return truncated(stringBytes(value), isMax) ?? stringBytes(value);
    case "DOUBLE": {
      if (typeof value !== "number") break;
      const bytes = new Uint8Array(8);
      new DataView(bytes.buffer).setFloat64(0, value, true);
      return bytes;
    }
    case "INT64": {
      if (!(typeof value === "bigint" || (typeof value === "number" && Number.isInteger(value)))) break;
      const bytes = new Uint8Array(8);
      new DataView(bytes.buffer).setBigInt64(0, BigInt(value), true);
      return bytes;
    }
  }
  throw new NotEncodable(`statistics of ${element.type} ${String(value)}`);
}

function stringBytes(value: NonNullable<MinMax>): Uint8Array {
  return value instanceof Uint8Array ? value : utf8.encode(value.toString());
}

/** false when a string bound had to be truncated; undefined (left out) when it is exact. */
function isExact(value: MinMax, element: SchemaElement, isMax: boolean): false | undefined {
  if (value === undefined || value === null || element.type !== "BYTE_ARRAY" || !isByteArrayString(element)) return undefined;
  return truncated(stringBytes(value), isMax) === undefined ? undefined : false;
}

/**
 * A bound of more than 16 bytes, shortened on a code point boundary: a min becomes its prefix, a max the
 * shortest prefix whose last code point is raised by one (still at least the value). Undefined when the
 * bound stays whole (short enough, or no shorter upper bound exists).
 */
function truncated(bytes: Uint8Array, isMax: boolean): Uint8Array | undefined {
  const limit = STATISTICS_TRUNCATE_LENGTH;
  if (bytes.length <= limit) return undefined;
  let end = limit;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  if (!isMax) return bytes.slice(0, end);
  let text: string;
  try {
    text = utf8Strict.decode(bytes.subarray(0, end));
  } catch {
    return truncatedBytes(bytes, isMax);
  }
  const codePoints = Array.from(text, (character) => character.codePointAt(0) ?? 0);
  for (let i = codePoints.length - 1; i >= 0; i--) {
    // Drop this code point's bytes from the prefix, then try it raised by one in their place.
    end--;
    while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
    const code = codePoints[i]!;
    if (code === 0x10ffff) continue;
    const raised = utf8.encode(String.fromCodePoint(code === 0xd7ff ? 0xe000 : code + 1));
    if (end + raised.length > limit) continue;
    const bound = new Uint8Array(end + raised.length);
    bound.set(bytes.subarray(0, end));
    bound.set(raised, end);
    return bound;
  }
  return undefined;
}

/** Byte-wise, for bounds that are not valid UTF-8: a max raises the last byte below 0xFF. */
function truncatedBytes(bytes: Uint8Array, isMax: boolean): Uint8Array | undefined {
  const prefix = bytes.slice(0, STATISTICS_TRUNCATE_LENGTH);
  if (!isMax) return prefix;
  let last = prefix.length - 1;
  while (last >= 0 && prefix[last] === 0xff) last--;
  if (last < 0) return undefined;
  const bound = prefix.slice(0, last + 1);
  bound[last]! += 1;
  return bound;
}

/**
 * Parquet types of the stored columns (src/core/tables.ts), per the data model:
 * timestamps INT64 TIMESTAMP(MICROS, isAdjustedToUTC), strings BYTE_ARRAY STRING, prices and amounts
 * DOUBLE, booleans BOOLEAN, sequence numbers INT64. Low-cardinality strings (`symbol` kind) are always
 * dictionary-encoded; required integers use DELTA_BINARY_PACKED (timestamps and sequences are nearly
 * sorted, so their deltas pack into a few bits).
 */
import type { CompressionCodec, Encoding, SchemaElement } from "hyparquet";
import type { ParquetSettings } from "./settings.ts";
import type { Column } from "../../core/tables.ts";

export const CODEC: Readonly<Record<ParquetSettings["compression"], CompressionCodec>> = {
  zstd: "ZSTD",
  snappy: "SNAPPY",
  none: "UNCOMPRESSED",
};

/** Bun ships zstd; hyparquet-writer brings snappy itself. */
export const COMPRESSORS = {
  ZSTD: (input: Uint8Array): Uint8Array => Bun.zstdCompressSync(input),
};

export function schemaOf(columns: readonly Column[]): SchemaElement[] {
  const root: SchemaElement = { name: "schema", num_children: columns.length };
  return [root, ...columns.map(elementOf)];
}

function elementOf(column: Column): SchemaElement {
  const repetition_type = column.nullable ? "OPTIONAL" : "REQUIRED";
  switch (column.kind) {
    case "symbol":
    case "string":
      return { name: column.name, type: "BYTE_ARRAY", converted_type: "UTF8", logical_type: { type: "STRING" }, repetition_type };
    case "double":
      return { name: column.name, type: "DOUBLE", repetition_type };
    case "long":
      return { name: column.name, type: "INT64", repetition_type };
    case "timestamp":
      return {
        name: column.name,
        type: "INT64",
        converted_type: "TIMESTAMP_MICROS",
        logical_type: { type: "TIMESTAMP", isAdjustedToUTC: true, unit: "MICROS" },
        repetition_type,
      };
    case "boolean":
      return { name: column.name, type: "BOOLEAN", repetition_type };
  }
}

/** The encoding asked of the writer; undefined lets it choose (dictionary when that halves the size). */
export function encodingOf(column: Column): Encoding | undefined {
  if (column.kind === "symbol") return "RLE_DICTIONARY";
  if ((column.kind === "timestamp" || column.kind === "long") && !column.nullable) return "DELTA_BINARY_PACKED";
  return undefined;
}

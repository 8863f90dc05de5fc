/**
 * Reading our own ILP back, line by line: for the rare paths that must split a chunk (finding the line
 * QuestDB refuses, setting a table's rows aside, counting what a stop could not deliver per table).
 * Never on the hot path.
 *
 * A line ends at a newline that is not escaped: symbol values escape a newline as backslash + newline and
 * strings as backslash + newline too (encoder.ts), and a backslash always escapes the byte after it.
 */
import { TABLE_NAMES, type TableName } from "../../core/tables.ts";

const NEWLINE = 10;
const BACKSLASH = 92;
const COMMA = 44;
const SPACE = 32;

/** End offsets (after the newline) of the lines in `bytes`; a last line without newline is included. */
export function lineEnds(bytes: Uint8Array): number[] {
  const ends: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i]!;
    if (byte === BACKSLASH) i++;
    else if (byte === NEWLINE) ends.push(i + 1);
  }
  if (ends.length === 0 ? bytes.length > 0 : ends[ends.length - 1]! < bytes.length) ends.push(bytes.length);
  return ends;
}

const TABLE_PREFIXES = TABLE_NAMES.map((table) => ({ table, bytes: new TextEncoder().encode(table) }));

/** The table a line starting at `start` writes to (undefined: not one of ours). */
export function tableOfLine(bytes: Uint8Array, start: number): TableName | undefined {
  for (const { table, bytes: name } of TABLE_PREFIXES) {
    const after = bytes[start + name.length];
    if (after !== COMMA && after !== SPACE) continue;
    let same = true;
    for (let i = 0; i < name.length && same; i++) same = bytes[start + i] === name[i];
    if (same) return table;
  }
  return undefined;
}

/** Rows (lines) per table. */
export function rowsByTable(bytes: Uint8Array, into: Partial<Record<TableName, number>> = {}): Partial<Record<TableName, number>> {
  let start = 0;
  for (const end of lineEnds(bytes)) {
    const table = tableOfLine(bytes, start) ?? "gaps";
    into[table] = (into[table] ?? 0) + 1;
    start = end;
  }
  return into;
}

/** Splits `bytes` into the lines of `tables` and the others, each a copy; `rows` counts lines. */
export function partitionByTable(
  bytes: Uint8Array,
  tables: ReadonlySet<TableName>,
): { kept: Uint8Array; keptRows: number; taken: Uint8Array; takenRows: number } {
  const kept: Uint8Array[] = [];
  const taken: Uint8Array[] = [];
  let start = 0;
  for (const end of lineEnds(bytes)) {
    const table = tableOfLine(bytes, start);
    (table !== undefined && tables.has(table) ? taken : kept).push(bytes.subarray(start, end));
    start = end;
  }
  return { kept: concat(kept), keptRows: kept.length, taken: concat(taken), takenRows: taken.length };
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

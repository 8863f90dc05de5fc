/**
 * The journal kept with every file being written (in the work directory, layout.ts): what a later start
 * needs to turn a killed run's temporary file into valid Parquet.
 *
 * A journal is a sequence of records, each `[u32 payload length][u32 CRC-32 of payload][payload]`, the
 * payload starting with a kind byte:
 * - HEADER (first): table, partition, columns, codec and final name, as JSON;
 * - ROW_GROUP: the footer metadata of one row group already in the temporary file, with the file length
 *   after it (JSON; bigints, byte arrays and non-finite numbers tagged so they round-trip exactly);
 * - ROWS: rows not yet in a row group, column by column (columns.ts). Since version 3 a symbol column is
 *   its list of values (JSON) and one code byte per row (kind CODED_ROWS); versions 1 and 2 wrote every
 *   row's string in a JSON array (kind ROWS), which cost more than the rest of the record together. Since
 *   version 4 the columns the header lists in `perEvent` (an L2 message's timestamps, sequence and
 *   snapshot flag) are runs: a value and a row count per run, instead of a value per row.
 *
 * Rows are appended (and fdatasync'ed) every flush interval. When a row group is written, its ROW_GROUP
 * record is appended too, saying how many of its rows were journaled, so a reader replays the records in
 * order: ROWS add pending rows at the end, ROW_GROUP takes its journaled rows from the front. Once the journal outgrows a bound, it is replaced whole
 * (written beside, fsync'ed, renamed over): header, every row group so far, and the rows still pending.
 * Version 1 journals (always replaced, so their row groups precede their rows) replay the same way.
 * Reading stops at the first record that is short or fails its checksum: that is the tail a crash tore,
 * and everything before it is intact.
 */
import type { RowGroup } from "hyparquet";
import type { Column, TableName } from "../../core/tables.ts";
import { ByteBuilder, ByteReader, type TableBuffer } from "./columns.ts";

export const JOURNAL_FORMAT = "xtrader-parquet-journal";
export const JOURNAL_VERSION = 4;
/** Versions this reader replays (see above). */
const READABLE_VERSIONS: readonly number[] = [1, 2, 3, 4];

export const HEADER = 1;
const ROW_GROUP = 2;
/** Versions 1 and 2: symbol columns as JSON arrays of strings. */
export const ROWS = 3;
/** Version 3: symbol columns as their values and a code byte per row. */
export const CODED_ROWS = 4;
const RECORD_HEADER_BYTES = 8;
/** ROWS records from this size on are built in reused memory (released once written). */
const REUSE_MIN_BYTES = 64 << 10;
/** Most memory kept for reuse between a record's release and the next record. */
const REUSE_POOL_BYTES = 16 << 20;

export interface JournalHeader {
  readonly format: typeof JOURNAL_FORMAT;
  readonly version: number;
  readonly table: TableName;
  readonly exchange: string;
  readonly symbol: string;
  readonly columns: readonly Column[];
  readonly codec: string;
  /** The data file's final name in its partition directory (the journal sits in the matching work directory). */
  readonly finalName: string;
  /** When the file was opened, integer µs. */
  readonly openedAt: number;
  /** Version 4: columns whose rows ROWS records hold as runs (absent: none). */
  readonly perEvent?: readonly string[];
}

export interface JournaledRowGroup {
  readonly rowGroup: RowGroup;
  /** Length of the temporary file once this row group was written. */
  readonly endOffset: number;
  /** How many of its rows were journaled (the pending rows it takes); absent: up to num_rows. */
  readonly journaled?: number;
}

/** A ROWS record's location in the journal bytes, for decoding into a TableBuffer. */
export interface RowsLocation {
  readonly recordStart: number;
  readonly payloadStart: number;
  readonly payloadEnd: number;
  /** Symbol columns as values + code bytes (version 3), else as JSON strings. */
  readonly coded: boolean;
  /** Columns held as runs (the header's `perEvent`). */
  readonly runs: readonly string[];
}

export interface ParsedJournal {
  readonly header: JournalHeader | undefined;
  readonly rowGroups: readonly JournaledRowGroup[];
  /** ROWS records holding rows still pending after the replay, in order. */
  readonly rows: readonly RowsLocation[];
  /** Leading rows of the first of `rows` that a row group took (skipped when decoding). */
  readonly skipRows: number;
  /** Bytes after the last intact record (a torn write), 0 when the journal ends cleanly. */
  readonly tornBytes: number;
}

function record(kind: number, fill: (out: ByteBuilder) => void, capacity?: number): Uint8Array {
  const out = new ByteBuilder(capacity === undefined ? undefined : reusedMemory(capacity));
  out.uint32(0);
  out.uint32(0);
  out.byte(kind);
  fill(out);
  const bytes = out.view();
  const view = new DataView(bytes.buffer);
  view.setUint32(0, bytes.length - RECORD_HEADER_BYTES, true);
  view.setUint32(4, Bun.hash.crc32(bytes.subarray(RECORD_HEADER_BYTES)), true);
  return bytes;
}

export function headerRecord(header: JournalHeader): Uint8Array {
  return record(HEADER, (out) => out.bytes(new TextEncoder().encode(JSON.stringify(header))));
}

export function rowGroupRecord(rowGroup: RowGroup, endOffset: number, journaled?: number): Uint8Array {
  const json = JSON.stringify(toTagged({ endOffset, rowGroup, journaled }));
  return record(ROW_GROUP, (out) => out.bytes(new TextEncoder().encode(json)));
}

/**
 * Rows [from, to) of a buffer. Give the record back with releaseRowsRecord() once it is written and not
 * kept: fresh memory for every record cost page faults on the event loop (a second's rows of a busy book
 * are megabytes).
 */
export function rowsRecord(buffer: TableBuffer, from: number, to: number): Uint8Array {
  // Sized up front (8 bytes per value and column, plus padding and symbol values) so it is not grown by copying.
  return record(CODED_ROWS, (out) => buffer.encodeRows(out, from, to), 64 + buffer.columns.length * 4096 + (to - from) * (buffer.columns.length * 9 + 8));
}

const reusable: ArrayBuffer[] = [];
let reusableBytes = 0;

/** Memory of at least `size` bytes: a released record's if one fits (up to twice the size), else new. */
function reusedMemory(size: number): ArrayBuffer {
  if (size >= REUSE_MIN_BYTES) {
    for (let i = 0; i < reusable.length; i++) {
      const memory = reusable[i]!;
      if (memory.byteLength >= size && memory.byteLength <= size * 2) {
        reusable.splice(i, 1);
        reusableBytes -= memory.byteLength;
        return memory;
      }
    }
  }
  return new ArrayBuffer(size);
}

/** Hands a written ROWS record's memory back for the next one (nothing may read the record afterwards). */
export function releaseRowsRecord(record: Uint8Array): void {
  const memory = record.buffer;
  if (!(memory instanceof ArrayBuffer) || memory.byteLength < REUSE_MIN_BYTES || reusable.includes(memory)) return;
  reusable.push(memory);
  reusableBytes += memory.byteLength;
  while (reusableBytes > REUSE_POOL_BYTES) reusableBytes -= reusable.shift()!.byteLength;
}

export function readJournal(bytes: Uint8Array): ParsedJournal {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let header: JournalHeader | undefined;
  const rowGroups: JournaledRowGroup[] = [];
  // Pending ROWS records with their row counts; `skipRows` of the first one are taken already.
  const pending: { location: RowsLocation; rows: number }[] = [];
  let skipRows = 0;
  let position = 0;
  while (position + RECORD_HEADER_BYTES <= bytes.length) {
    const length = view.getUint32(position, true);
    const checksum = view.getUint32(position + 4, true);
    const payloadStart = position + RECORD_HEADER_BYTES;
    const payloadEnd = payloadStart + length;
    if (length < 1 || payloadEnd > bytes.length) break;
    if (Bun.hash.crc32(bytes.subarray(payloadStart, payloadEnd)) !== checksum) break;
    const kind = bytes[payloadStart];
    const text = () => new TextDecoder().decode(bytes.subarray(payloadStart + 1, payloadEnd));
    if (kind === HEADER && header === undefined && position === 0) {
      const parsed = JSON.parse(text()) as JournalHeader;
      if (parsed.format !== JOURNAL_FORMAT || !READABLE_VERSIONS.includes(parsed.version)) break;
      header = parsed;
    } else if (kind === ROW_GROUP && header) {
      const rowGroup = fromTagged(JSON.parse(text())) as JournaledRowGroup;
      rowGroups.push(rowGroup);
      // The row group took the first `journaled` pending rows (older writers: up to num_rows of them).
      let taken = rowGroup.journaled ?? Number(rowGroup.rowGroup.num_rows);
      while (taken > 0 && pending.length > 0) {
        const available = pending[0]!.rows - skipRows;
        if (taken < available) {
          skipRows += taken;
          break;
        }
        taken -= available;
        pending.shift();
        skipRows = 0;
      }
    } else if ((kind === ROWS || kind === CODED_ROWS) && header && payloadEnd - payloadStart >= 5) {
      // The payload starts with the record's row count (TableBuffer.encodeRows).
      const location = { recordStart: position, payloadStart: payloadStart + 1, payloadEnd, coded: kind === CODED_ROWS, runs: header.perEvent ?? [] };
      pending.push({ location, rows: view.getUint32(payloadStart + 1, true) });
    } else {
      break;
    }
    position = payloadEnd;
  }
  return { header, rowGroups, rows: pending.map((entry) => entry.location), skipRows, tornBytes: bytes.length - position };
}

/** Appends the pending rows of the ROWS records to an empty buffer, the first `skipRows` left out; returns how many. */
export function decodeRows(bytes: Uint8Array, locations: readonly RowsLocation[], buffer: TableBuffer, skipRows = 0): number {
  let rows = 0;
  for (const [index, location] of locations.entries()) {
    const reader = new ByteReader(bytes, location.payloadStart, location.recordStart, location.payloadEnd);
    rows += buffer.decodeRows(reader, location.coded, location.runs);
    if (index === 0 && skipRows > 0) {
      buffer.discard(skipRows);
      rows -= skipRows;
    }
  }
  return rows;
}

/**
 * JSON that keeps what the Parquet footer metadata holds: bigints, byte arrays, -0, NaN and infinities
 * (statistics), which plain JSON would change or drop.
 */
export function toTagged(value: unknown): unknown {
  if (typeof value === "bigint") return { $bigint: value.toString() };
  if (typeof value === "number") {
    if (Number.isFinite(value) && !Object.is(value, -0)) return value;
    return { $number: Object.is(value, -0) ? "-0" : String(value) };
  }
  if (value instanceof Uint8Array) return { $bytes: Buffer.from(value).toString("base64") };
  if (Array.isArray(value)) return value.map(toTagged);
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [key, entry] of Object.entries(value)) if (entry !== undefined) out[key] = toTagged(entry);
    return out;
  }
  return value;
}

export function fromTagged(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(fromTagged);
  if (value !== null && typeof value === "object") {
    const record = value as Record<string, unknown>;
    if (typeof record.$bigint === "string") return BigInt(record.$bigint);
    if (typeof record.$number === "string") return record.$number === "-0" ? -0 : Number(record.$number);
    if (typeof record.$bytes === "string") return new Uint8Array(Buffer.from(record.$bytes, "base64"));
    const out: Record<string, unknown> = {};
    for (const [key, entry] of Object.entries(record)) out[key] = fromTagged(entry);
    return out;
  }
  return value;
}

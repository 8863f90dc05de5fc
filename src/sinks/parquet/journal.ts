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
 * Up to version 4, rows were appended (and fdatasync'ed) to each file's own journal every flush interval:
 * ROWS records add pending rows at the end, a ROW_GROUP record (saying how many of its rows were journaled)
 * takes its journaled rows from the front. Version 1 journals (always replaced, so their row groups precede
 * their rows) replay the same way.
 *
 * Since version 5, rows are numbered by their position in the file (0 = its first row), and the rows of
 * every open file are appended to one log per process (rows-log.ts: one write and one fdatasync per flush
 * interval, whatever the number of files), each record naming its file and the position of its first row.
 * A file's own journal keeps its header and one ROW_GROUP record per row group, which says through which
 * position (`through`) rows are in row groups. A rewrite of the journal (rows dropped from memory, a
 * resumed file, or past a size bound) holds header, row groups, a SKIP record (positions before it are not
 * pending) and the still-pending journaled rows as POSITIONED_ROWS. Replay: the pending rows are those at
 * positions from the highest `through` or SKIP on, from whichever record (log or journal) holds them.
 * Reading stops at the first record that is short or fails its checksum: that is the tail a crash tore,
 * and everything before it is intact.
 */
import type { RowGroup } from "hyparquet";
import type { Column, TableName } from "../../core/tables.ts";
import { ByteBuilder, ByteReader, type TableBuffer } from "./columns.ts";

export const JOURNAL_FORMAT = "xtrader-parquet-journal";
export const JOURNAL_VERSION = 5;
/** Versions this reader replays (see above). */
const READABLE_VERSIONS: readonly number[] = [1, 2, 3, 4, 5];
/** From this version on, rows have positions and live in the rows log too (see above). */
export const POSITIONED_VERSION = 5;

export const HEADER = 1;
const ROW_GROUP = 2;
/** Versions 1 and 2: symbol columns as JSON arrays of strings. */
export const ROWS = 3;
/** Version 3: symbol columns as their values and a code byte per row. */
export const CODED_ROWS = 4;
/** Version 5: rows with the position of their first row (a journal rewrite); also the rows log's rows (rows-log.ts). */
export const POSITIONED_ROWS = 5;
/** Version 5: rows at positions before `before` are not pending (rows dropped from memory, a rewrite). */
const SKIP = 6;
export const RECORD_HEADER_BYTES = 8;
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
  /** Up to version 4: how many of its rows were journaled (the pending rows it takes); absent: up to num_rows. */
  readonly journaled?: number;
  /** Version 5: the position after its last row (rows before it are in row groups). */
  readonly through?: number;
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
  /** Version 5: position of the record's first row in the file, and its row count. */
  readonly firstRow?: number;
  readonly rowCount?: number;
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
  /** Version 5: rows at positions before this are not pending (the highest `through` or SKIP). */
  readonly pendingFrom: number;
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

export function rowGroupRecord(rowGroup: RowGroup, endOffset: number, journaled?: number, through?: number): Uint8Array {
  const json = JSON.stringify(toTagged({ endOffset, rowGroup, journaled, through }));
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

/** Rows [from, to) of a buffer whose row `from` is at `position` in the file (version 5). */
export function positionedRowsRecord(buffer: TableBuffer, from: number, to: number, position: number): Uint8Array {
  return record(POSITIONED_ROWS, (out) => {
    out.float64(position);
    buffer.encodeRows(out, from, to);
  });
}

export function skipRecord(before: number): Uint8Array {
  return record(SKIP, (out) => out.bytes(new TextEncoder().encode(JSON.stringify({ before }))));
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
  let pendingFrom = 0;
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
      if (header.version >= POSITIONED_VERSION) {
        pendingFrom = Math.max(pendingFrom, rowGroup.through ?? 0);
        position = payloadEnd;
        continue;
      }
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
    } else if (kind === POSITIONED_ROWS && header && header.version >= POSITIONED_VERSION && payloadEnd - payloadStart >= 13) {
      const firstRow = view.getFloat64(payloadStart + 1, true);
      const rowCount = view.getUint32(payloadStart + 9, true);
      pending.push({ location: { recordStart: position, payloadStart: payloadStart + 9, payloadEnd, coded: true, runs: header.perEvent ?? [], firstRow, rowCount }, rows: rowCount });
    } else if (kind === SKIP && header && header.version >= POSITIONED_VERSION) {
      pendingFrom = Math.max(pendingFrom, (JSON.parse(text()) as { before: number }).before);
    } else if ((kind === ROWS || kind === CODED_ROWS) && header && payloadEnd - payloadStart >= 5) {
      // The payload starts with the record's row count (TableBuffer.encodeRows).
      const location = { recordStart: position, payloadStart: payloadStart + 1, payloadEnd, coded: kind === CODED_ROWS, runs: header.perEvent ?? [] };
      pending.push({ location, rows: view.getUint32(payloadStart + 1, true) });
    } else {
      break;
    }
    position = payloadEnd;
  }
  return { header, rowGroups, rows: pending.map((entry) => entry.location), skipRows, tornBytes: bytes.length - position, pendingFrom };
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

/** Rows with positions (version 5): from a file's journal or from the rows log. */
export interface PositionedRows {
  readonly bytes: Uint8Array;
  readonly location: RowsLocation;
  readonly firstRow: number;
  readonly rowCount: number;
}

/**
 * Appends to an empty buffer the rows at positions from `from` on, in order, each taken from whichever
 * record holds it (records may overlap: a rewrite or the log's copy of the same rows). Returns the rows
 * added and the positions no record held (a hole: rows lost, never expected).
 */
export function decodePositionedRows(records: readonly PositionedRows[], from: number, buffer: TableBuffer): { rows: number; missing: number } {
  const sorted = [...records].sort((a, b) => a.firstRow - b.firstRow || b.rowCount - a.rowCount);
  let next = from;
  let rows = 0;
  let missing = 0;
  const scratch = new ByteBuilder();
  for (const record of sorted) {
    const end = record.firstRow + record.rowCount;
    if (end <= next) continue;
    if (record.firstRow > next) {
      missing += record.firstRow - next;
      next = record.firstRow;
    }
    const reader = () => new ByteReader(record.bytes, record.location.payloadStart, record.location.recordStart, record.location.payloadEnd);
    if (next === record.firstRow) {
      rows += buffer.decodeRows(reader(), true, record.location.runs);
    } else {
      // Only the record's tail is new: decoded apart, its rows from `next` on copied over.
      const part = buffer.emptyLike();
      part.decodeRows(reader(), true, record.location.runs);
      scratch.reset();
      part.encodeRows(scratch, next - record.firstRow, record.rowCount);
      rows += buffer.decodeRows(new ByteReader(scratch.view(), 0, 0, scratch.length), true, buffer.runColumns);
    }
    next = end;
  }
  return { rows, missing };
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

/**
 * From a Scan to the report's numbers per (exchange, symbol, stream): when rows were received, how much
 * of that time is covered, every gap with its length, the silences no gap row explains, and the files
 * still open. docs/report.md defines each figure.
 *
 * Times are receive times (`local_timestamp`, integer µs): the clock that stamps gap rows and names files.
 * Rows of one stream arrive in receive-time order, so the footers' per-row-group bounds locate every row
 * to within its row group; only a row group that a gap falls inside has its time column read, to find the
 * rows just before and after the gap.
 */
import { closeSync, fstatSync, openSync } from "node:fs";
import { relative } from "node:path";
import { parquetRead, type AsyncBuffer, type FileMetaData } from "hyparquet";
import { errorMessage } from "../core/errors.ts";
import { STREAMS } from "../core/events.ts";
import { readAt, readChunkLocation, type ChunkLocation } from "./footer.ts";
import { DECOMPRESSORS, TIME_COLUMN, streamKey, type OpenFile, type RowGroupSpan, type Scan, type Unreadable } from "./scan.ts";
import { STREAM_OF_TABLE } from "../core/tables.ts";

/**
 * A silence is a stretch of at least this long without a row and without a gap row. Row groups are
 * written at the latest PARQUET_ROW_GROUP_SECONDS (default 300) after their first row, so the footers see
 * every quiet stretch at least this long (a shorter one may hide inside a row group).
 */
export const SILENCE_MICROS = 300 * 1_000_000;

export interface Interval {
  readonly from: number;
  readonly to: number;
}

export interface GapEntry {
  readonly reason: string;
  readonly detail: string;
  /** When the gap was noticed (µs). */
  readonly at: number;
  /** Receive times of the stream's last row before the gap and first row after it, when there are such rows. */
  readonly previous: number | undefined;
  readonly next: number | undefined;
  /** Set when the rows around the gap could not be read (the file is listed as unreadable). */
  readonly unreadable?: true;
}

export interface StreamReport {
  readonly exchange: string;
  readonly symbol: string;
  readonly stream: string;
  readonly files: number;
  readonly rows: number;
  readonly first: number | undefined;
  readonly last: number | undefined;
  /** Stretches with rows, none of them apart by a silence (sorted, disjoint). */
  readonly runs: readonly Interval[];
  /** Time with rows and no gap: the runs less the gaps' intervals (µs). */
  readonly covered: number;
  /** Rows per minute of covered time; undefined without covered time. */
  readonly rowsPerMinute: number | undefined;
  readonly gaps: readonly GapEntry[];
  readonly silences: readonly Interval[];
  readonly uncleanStops: number;
  readonly openFiles: readonly OpenFile[];
}

export interface Report {
  readonly root: string;
  /** Finished files read. */
  readonly files: number;
  /** The time range of everything shown (rows, gaps, open files); undefined for an empty directory. */
  readonly from: number | undefined;
  readonly to: number | undefined;
  readonly streams: readonly StreamReport[];
  /** Open files of the gaps table: the gap rows in them are not in this report. */
  readonly openGapFiles: readonly OpenFile[];
  readonly unreadable: readonly Unreadable[];
}

export async function buildReport(scan: Scan): Promise<Report> {
  const columnReader = new TimeColumnReader(scan.root);
  // Every stream with rows, gap rows or an open file.
  const identities = new Map<string, { readonly exchange: string; readonly symbol: string; readonly stream: string }>();
  const add = (exchange: string, symbol: string, stream: string) => {
    const key = streamKey(exchange, symbol, stream);
    if (!identities.has(key)) identities.set(key, { exchange, symbol, stream });
  };
  for (const files of scan.streams.values()) add(files.exchange, files.symbol, files.stream);
  for (const gap of scan.gaps) add(gap.exchange, gap.symbol, gap.stream);
  for (const file of scan.open) if (file.table !== "gaps") add(file.exchange, file.symbol, STREAM_OF_TABLE[file.table]);

  const gapsByStream = new Map<string, typeof scan.gaps>();
  for (const gap of scan.gaps) {
    const key = streamKey(gap.exchange, gap.symbol, gap.stream);
    const list = gapsByStream.get(key);
    if (list) list.push(gap);
    else gapsByStream.set(key, [gap]);
  }

  const streams: StreamReport[] = [];
  for (const [key, { exchange, symbol, stream }] of identities) {
    const files = scan.streams.get(key);
    const spans = (files?.spans ?? []).slice().sort((a, b) => a.min - b.min || a.max - b.max);
    const gapRows = (gapsByStream.get(key) ?? []).slice().sort((a, b) => a.at - b.at);
    const gaps: GapEntry[] = [];
    const locator = new SpanLocator(spans);
    for (const gap of gapRows) {
      const around = await locator.around(gap.at, columnReader);
      gaps.push({ reason: gap.reason, detail: gap.detail, at: gap.at, ...around });
    }
    const { runs, holes } = runsOf(spans);
    const gapIntervals = gaps.filter((gap) => gap.previous !== undefined && gap.next !== undefined).map((gap) => ({ from: gap.previous!, to: gap.next! }));
    const covered = coveredTime(runs, gapIntervals);
    // A hole a gap falls into is that gap's; the others are silences (both lists are in time order).
    const silences: Interval[] = [];
    let g = 0;
    for (const hole of holes) {
      while (g < gaps.length && gaps[g]!.at < hole.from) g++;
      if (g === gaps.length || gaps[g]!.at >= hole.to) silences.push(hole);
    }
    const rows = files?.rows ?? 0;
    streams.push({
      exchange,
      symbol,
      stream,
      files: files?.files ?? 0,
      rows,
      first: spans.length > 0 ? spans[0]!.min : undefined,
      last: spans.length > 0 ? locator.lastTime : undefined,
      runs,
      covered,
      rowsPerMinute: covered > 0 ? rows / (covered / 60_000_000) : undefined,
      gaps,
      silences,
      uncleanStops: gaps.filter((gap) => gap.reason === "unclean_stop").length,
      openFiles: scan.open.filter((file) => file.table !== "gaps" && streamKey(file.exchange, file.symbol, STREAM_OF_TABLE[file.table]) === key),
    });
  }
  const streamOrder = (stream: string) => {
    const index = (STREAMS as readonly string[]).indexOf(stream);
    return index < 0 ? STREAMS.length : index;
  };
  streams.sort((a, b) => compare(a.exchange, b.exchange) || compare(a.symbol, b.symbol) || streamOrder(a.stream) - streamOrder(b.stream) || compare(a.stream, b.stream));

  let from = Infinity;
  let to = -Infinity;
  const include = (time: number) => {
    if (time < from) from = time;
    if (time > to) to = time;
  };
  for (const stream of streams) {
    if (stream.first !== undefined) include(stream.first);
    if (stream.last !== undefined) include(stream.last);
    for (const gap of stream.gaps) include(gap.at);
    for (const file of stream.openFiles) include(file.openedAt);
  }
  return {
    root: scan.root,
    files: scan.files,
    from: Number.isFinite(from) ? from : undefined,
    to: Number.isFinite(to) ? to : undefined,
    streams,
    openGapFiles: scan.open.filter((file) => file.table === "gaps"),
    unreadable: [...scan.unreadable, ...columnReader.failures],
  };
}

const compare = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Row groups joined into runs where less than a silence apart; the spaces between runs are holes. */
function runsOf(spans: readonly RowGroupSpan[]): { runs: Interval[]; holes: Interval[] } {
  const runs: Interval[] = [];
  const holes: Interval[] = [];
  let from = 0;
  let to = 0;
  for (let i = 0; i < spans.length; i++) {
    const span = spans[i]!;
    if (i > 0 && span.min - to >= SILENCE_MICROS) {
      runs.push({ from, to });
      holes.push({ from: to, to: span.min });
      from = span.min;
    } else if (i === 0) from = span.min;
    to = i === 0 ? span.max : Math.max(to, span.max);
  }
  if (spans.length > 0) runs.push({ from, to });
  return { runs, holes };
}

/** Total length of `runs` less their overlap with the (unsorted, possibly overlapping) `cuts`. */
function coveredTime(runs: readonly Interval[], cuts: readonly Interval[]): number {
  const merged: Interval[] = [];
  for (const cut of cuts.slice().sort((a, b) => a.from - b.from)) {
    const last = merged.at(-1);
    if (last && cut.from <= last.to) merged[merged.length - 1] = { from: last.from, to: Math.max(last.to, cut.to) };
    else merged.push(cut);
  }
  let total = 0;
  let c = 0;
  for (const run of runs) {
    total += run.to - run.from;
    while (c < merged.length && merged[c]!.to <= run.from) c++;
    for (let k = c; k < merged.length && merged[k]!.from < run.to; k++) {
      total -= Math.min(run.to, merged[k]!.to) - Math.max(run.from, merged[k]!.from);
    }
  }
  return total;
}

/**
 * Finds the rows of one stream just before and after a time: from the row groups' bounds, reading the time
 * column only of the groups whose bounds enclose it.
 */
class SpanLocator {
  /** Largest `max` of spans[0..i] (spans are sorted by min). */
  private readonly prefixMax: number[] = [];

  constructor(private readonly spans: readonly RowGroupSpan[]) {
    let max = -Infinity;
    for (const span of spans) this.prefixMax.push((max = Math.max(max, span.max)));
  }

  /** The latest receive time of the stream. */
  get lastTime(): number {
    return this.prefixMax.at(-1)!;
  }

  /** The last receive time <= at and the first > at. */
  async around(at: number, reader: TimeColumnReader): Promise<{ previous: number | undefined; next: number | undefined; unreadable?: true }> {
    const spans = this.spans;
    // Last span starting at or before `at`.
    let low = 0;
    let high = spans.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (spans[middle]!.min <= at) low = middle + 1;
      else high = middle;
    }
    const last = low - 1;
    let previous: number | undefined;
    let next: number | undefined = last + 1 < spans.length ? spans[last + 1]!.min : undefined;
    // Walk back over the spans that may end after `at` (prefixMax is non-decreasing).
    let i = last;
    for (; i >= 0 && this.prefixMax[i]! > at; i--) {
      const span = spans[i]!;
      if (span.max <= at) {
        previous = Math.max(previous ?? -Infinity, span.max);
        continue;
      }
      // `at` lies within this group's bounds: its rows say which are before and after.
      const times = await reader.read(span);
      // Unreadable (listed in the report): the rows around the gap are unknown, so is its length.
      if (times === undefined) return { previous: undefined, next: undefined, unreadable: true };
      for (const time of times) {
        if (time <= at) previous = Math.max(previous ?? -Infinity, time);
        else if (next === undefined || time < next) next = time;
      }
    }
    if (i >= 0) previous = Math.max(previous ?? -Infinity, this.prefixMax[i]!);
    return { previous, next };
  }
}

/** Parquet's enum names (parquet.thrift) of the values a footer stores, as hyparquet names them. */
const PHYSICAL_TYPES = ["BOOLEAN", "INT32", "INT64", "INT96", "FLOAT", "DOUBLE", "BYTE_ARRAY", "FIXED_LEN_BYTE_ARRAY"] as const;
const CODECS = ["UNCOMPRESSED", "SNAPPY", "GZIP", "LZO", "BROTLI", "LZ4", "ZSTD", "LZ4_RAW"] as const;

/**
 * Reads one row group's time column with hyparquet. Its metadata parser decodes the whole footer (and
 * reads the last 512 KiB of the file to find it), about a millisecond per file of 40 row groups, so the
 * footer walker locates the one column chunk instead and hyparquet is handed a file description of just
 * that chunk; the bytes come from synchronous reads of exactly the ranges it asks for.
 */
class TimeColumnReader {
  readonly failures: Unreadable[] = [];

  constructor(private readonly root: string) {}

  /** The group's receive times, or undefined (recorded in `failures`) when they cannot be read. */
  async read(span: RowGroupSpan): Promise<number[] | undefined> {
    let fd: number | undefined;
    try {
      fd = openSync(span.path, "r");
      const opened = fd;
      const size = fstatSync(fd).size;
      const chunk = readChunkLocation(fd, TIME_COLUMN, span.rowGroup);
      const file: AsyncBuffer = {
        byteLength: size,
        slice: (start, end = size) => {
          const bytes = readAt(opened, start, end - start);
          return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
        },
      };
      let values: number[] = [];
      await parquetRead({ file, metadata: chunkMetadata(chunk, span.rows), columns: [TIME_COLUMN], compressors: DECOMPRESSORS, onComplete: (rows: unknown[][]) => {
        values = rows.map((row) => Number(row[0]));
      } });
      return values;
    } catch (error) {
      this.failures.push({ path: relative(this.root, span.path), reason: `${TIME_COLUMN} of row group ${span.rowGroup} cannot be read: ${errorMessage(error)}` });
      return undefined;
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }
}

/** A file of one row group holding one INT64 column (its times as plain integers: no Date conversion). */
function chunkMetadata(chunk: ChunkLocation, rows: number): FileMetaData {
  const type = PHYSICAL_TYPES[chunk.type];
  const codec = CODECS[chunk.codec];
  if (type !== "INT64" || codec === undefined) throw new Error(`${TIME_COLUMN} is stored as type ${chunk.type} with codec ${chunk.codec}, not as xtrader writes it`);
  return {
    version: 2,
    schema: [{ name: "schema", num_children: 1 }, { name: TIME_COLUMN, type, repetition_type: "REQUIRED" }],
    num_rows: BigInt(rows),
    metadata_length: 0,
    row_groups: [
      {
        num_rows: BigInt(rows),
        total_byte_size: BigInt(chunk.uncompressedSize),
        columns: [
          {
            file_offset: BigInt(chunk.dictionaryPageOffset ?? chunk.dataPageOffset),
            meta_data: {
              type,
              encodings: [],
              path_in_schema: [TIME_COLUMN],
              codec,
              num_values: BigInt(chunk.values),
              total_uncompressed_size: BigInt(chunk.uncompressedSize),
              total_compressed_size: BigInt(chunk.compressedSize),
              data_page_offset: BigInt(chunk.dataPageOffset),
              dictionary_page_offset: chunk.dictionaryPageOffset === undefined ? undefined : BigInt(chunk.dictionaryPageOffset),
            },
          },
        ],
      },
    ],
  };
}

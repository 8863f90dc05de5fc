/**
 * What an output directory holds, read without scanning the data: every finished file's footer (rows and
 * receive-time bounds per row group), every row of the `gaps` table (small: one row per fault), the files
 * still open (a journal or temporary file in the work directory `DIR/.inprogress/`, or beside the final name
 * where earlier builds kept them, whose final name does not exist yet) and anything that could not be
 * read. Layout: docs/sinks/parquet.md.
 */
import { existsSync, readdirSync, readFileSync, statSync, type Dirent } from "node:fs";
import { join, relative } from "node:path";
import { parquetReadObjects } from "hyparquet";
import type { Stream } from "../core/events.ts";
import { UserError, errorMessage } from "../core/errors.ts";
import { decodePartitionValue, IN_PROGRESS_DIRECTORY, parseInProgressName } from "../sinks/parquet/layout.ts";
import { STREAM_OF_TABLE, TABLE_NAMES, type TableName } from "../core/tables.ts";
import { readFooter } from "./footer.ts";

/** The column the report measures time with: the receive time, the clock that also stamps gap rows. */
export const TIME_COLUMN = "local_timestamp";

export interface RowGroupSpan {
  /** Receive times (µs) of the group's first and last rows by value. */
  readonly min: number;
  readonly max: number;
  readonly rows: number;
  readonly path: string;
  /** Index of the group in its file. */
  readonly rowGroup: number;
}

export interface GapRow {
  readonly exchange: string;
  readonly symbol: string;
  readonly stream: string;
  readonly reason: string;
  readonly detail: string;
  /** Receive time (µs) at which the gap was noticed. */
  readonly at: number;
}

export interface OpenFile {
  /** The final name's path relative to the root (the file itself is in the work directory). */
  readonly path: string;
  readonly table: TableName;
  readonly exchange: string;
  readonly symbol: string;
  /** When it was opened (µs), from its date partition and name. */
  readonly openedAt: number;
}

export interface Unreadable {
  /** Relative to the root. */
  readonly path: string;
  readonly reason: string;
}

export interface StreamFiles {
  readonly exchange: string;
  readonly symbol: string;
  readonly stream: Stream;
  files: number;
  rows: number;
  readonly spans: RowGroupSpan[];
}

export interface Scan {
  readonly root: string;
  /** Finished files read, every table. */
  files: number;
  readonly streams: Map<string, StreamFiles>;
  readonly gaps: GapRow[];
  readonly open: OpenFile[];
  readonly unreadable: Unreadable[];
}

export const streamKey = (exchange: string, symbol: string, stream: string): string => `${exchange}\u0000${symbol}\u0000${stream}`;

/** Decompressors for reading: Bun ships zstd; hyparquet decodes snappy itself. */
export const DECOMPRESSORS = {
  ZSTD: (input: Uint8Array): Uint8Array => new Uint8Array(Bun.zstdDecompressSync(input)),
};

/** Timestamps as integer µs numbers (hyparquet's default is a Date, which keeps only milliseconds). */
export const MICROS_PARSERS = { timestampFromMicroseconds: (micros: bigint) => Number(micros) };

export async function scanDirectory(root: string): Promise<Scan> {
  let stats;
  try {
    stats = statSync(root);
  } catch (error) {
    throw new UserError(`cannot read output directory '${root}': ${(error as NodeJS.ErrnoException).code ?? errorMessage(error)}`);
  }
  if (!stats.isDirectory()) throw new UserError(`'${root}' is not a directory; expected an xtrader output directory (--output-directory)`);
  const workRoot = join(root, IN_PROGRESS_DIRECTORY);
  // In the first interval of a new directory only the work directory has a table yet.
  const tables = TABLE_NAMES.filter((table) => isDirectory(join(root, table)) || isDirectory(join(workRoot, table)));
  if (tables.length === 0) {
    throw new UserError(`'${root}' is not an xtrader output directory: it has none of the table directories ${TABLE_NAMES.join(", ")}`);
  }
  const scan: Scan = { root, files: 0, streams: new Map(), gaps: [], open: [], unreadable: [] };
  const openPaths = new Set<string>();
  for (const table of tables) {
    for (const base of [root, workRoot]) {
      for (const partition of partitions(scan, base, table)) {
        const finalDirectory = join(root, relative(base, partition.directory));
        const names = new Set(partition.entries.map((entry) => entry.name));
        for (const entry of partition.entries) {
          if (!entry.isFile()) continue;
          const path = join(partition.directory, entry.name);
          const inProgress = parseInProgressName(entry.name);
          if (inProgress) {
            // A replacement beside its journal is the same file; beside its final name, a close in progress.
            if (inProgress.kind === "journal.next") continue;
            if (base === root ? names.has(inProgress.finalName) : existsSync(join(finalDirectory, inProgress.finalName))) continue;
            const finalPath = relative(root, join(finalDirectory, inProgress.finalName));
            if (openPaths.has(finalPath)) continue;
            openPaths.add(finalPath);
            scan.open.push({ path: finalPath, table, exchange: partition.exchange, symbol: partition.symbol, openedAt: openedAt(partition.date, inProgress.finalName) });
          } else if (entry.name.endsWith(".unrecoverable")) {
            scan.unreadable.push({ path: relative(root, path), reason: "left by a killed run and could not be recovered (kept for inspection)" });
          } else if (entry.name.endsWith(".parquet") && base === root) {
            if (table === "gaps") await readGaps(scan, path);
            else readDataFile(scan, table, partition, path);
          }
        }
      }
    }
  }
  return scan;
}

interface Partition {
  readonly directory: string;
  readonly exchange: string;
  readonly symbol: string;
  readonly date: string;
  readonly entries: Dirent[];
}

const DATE = /^\d{4}-\d{2}-\d{2}$/;

/** BASE/<table>/exchange=*\/symbol=*\/date=*, in name order (BASE: the root or its work directory). */
function* partitions(scan: Scan, base: string, table: TableName): Generator<Partition> {
  if (!isDirectory(join(base, table))) return;
  for (const exchangeDirectory of subdirectories(scan, join(base, table), "exchange=")) {
    for (const symbolDirectory of subdirectories(scan, exchangeDirectory.path, "symbol=")) {
      for (const dateDirectory of subdirectories(scan, symbolDirectory.path, "date=")) {
        let exchange: string;
        let symbol: string;
        try {
          exchange = decodePartitionValue(exchangeDirectory.value);
          symbol = decodePartitionValue(symbolDirectory.value);
          if (!DATE.test(dateDirectory.value)) throw new Error("not a date");
        } catch {
          scan.unreadable.push({ path: relative(scan.root, dateDirectory.path), reason: "not a partition xtrader writes (percent-encoded exchange and symbol, date=YYYY-MM-DD)" });
          continue;
        }
        const entries = list(scan, dateDirectory.path);
        if (entries) yield { directory: dateDirectory.path, exchange, symbol, date: dateDirectory.value, entries };
      }
    }
  }
}

function subdirectories(scan: Scan, directory: string, prefix: string): { path: string; value: string }[] {
  return (list(scan, directory) ?? [])
    .filter((entry) => entry.isDirectory() && entry.name.startsWith(prefix))
    .map((entry) => ({ path: join(directory, entry.name), value: entry.name.slice(prefix.length) }));
}

function list(scan: Scan, directory: string): Dirent[] | undefined {
  try {
    return readdirSync(directory, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  } catch (error) {
    scan.unreadable.push({ path: relative(scan.root, directory), reason: `cannot list: ${errorMessage(error)}` });
    return undefined;
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** A file's open time from its partition date and `HHMMSS-NNNN.parquet` name (µs). */
function openedAt(date: string, finalName: string): number {
  const [year, month, day] = date.split("-").map(Number);
  const time = finalName.slice(0, 6);
  return Date.UTC(year!, month! - 1, day!, Number(time.slice(0, 2)), Number(time.slice(2, 4)), Number(time.slice(4, 6))) * 1000;
}

function readDataFile(scan: Scan, table: Exclude<TableName, "gaps">, partition: Partition, path: string): void {
  let footer;
  try {
    footer = readFooter(path, TIME_COLUMN);
  } catch (error) {
    scan.unreadable.push({ path: relative(scan.root, path), reason: errorMessage(error) });
    return;
  }
  const spans: RowGroupSpan[] = [];
  let rows = 0;
  for (let rowGroup = 0; rowGroup < footer.rowGroups.length; rowGroup++) {
    const group = footer.rowGroups[rowGroup]!;
    if (group.rows === 0) continue;
    if (group.min === undefined || group.max === undefined) {
      scan.unreadable.push({ path: relative(scan.root, path), reason: `a row group has no ${TIME_COLUMN} statistics` });
      return;
    }
    spans.push({ min: group.min, max: group.max, rows: group.rows, path, rowGroup });
    rows += group.rows;
  }
  scan.files++;
  const stream = STREAM_OF_TABLE[table];
  const key = streamKey(partition.exchange, partition.symbol, stream);
  let files = scan.streams.get(key);
  if (!files) scan.streams.set(key, (files = { exchange: partition.exchange, symbol: partition.symbol, stream, files: 0, rows: 0, spans: [] }));
  files.files++;
  files.rows += rows;
  for (const span of spans) files.spans.push(span);
}

const GAP_COLUMNS = ["exchange", "symbol", "stream", "reason", "detail", TIME_COLUMN];

async function readGaps(scan: Scan, path: string): Promise<void> {
  let rows: Record<string, unknown>[];
  try {
    const bytes = readFileSync(path);
    const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    rows = await parquetReadObjects({ file, columns: GAP_COLUMNS, compressors: DECOMPRESSORS, parsers: MICROS_PARSERS });
  } catch (error) {
    scan.unreadable.push({ path: relative(scan.root, path), reason: errorMessage(error) });
    return;
  }
  scan.files++;
  for (const row of rows) {
    scan.gaps.push({
      exchange: String(row.exchange),
      symbol: String(row.symbol),
      stream: String(row.stream),
      reason: String(row.reason),
      detail: String(row.detail),
      at: Number(row[TIME_COLUMN]),
    });
  }
}

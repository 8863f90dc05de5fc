/**
 * Where files go and what they are called (documented in docs/sinks/parquet.md):
 *
 *   DIR/<table>/exchange=<EXCHANGE>/symbol=<SYMBOL>/date=<YYYY-MM-DD>/<HHMMSS>-<NNNN>.parquet
 *
 * `HHMMSS` is the UTC time the file was opened and `NNNN` a counter that makes names unique within one
 * second, so names sort in the order the files were written. Partition values are percent-encoded
 * (Hive's convention: DuckDB, Polars and pyarrow decode `%XX` in partition values), so any symbol maps
 * to a safe directory name and back.
 *
 * A file being written lives outside the table trees, in one hidden work directory at the output root,
 * under the same relative path: `DIR/.inprogress/<table>/.../.<name>.tmp` with its journal
 * `.<name>.journal`. Any read of a table, by directory (Polars `scan_parquet("data/trades/")`, pandas) or
 * by glob (DuckDB's `read_parquet` of every file under a table), sees finished files only; the work
 * directory is not under any table. At close the finished file is linked to its final name in the table
 * tree (the same file system, so the link is atomic). Earlier builds kept the two files beside the final
 * name; recovery still looks there too.
 */
import { join, relative } from "node:path";

/** The hidden work directory at the output root that holds every file being written. */
export const IN_PROGRESS_DIRECTORY = ".inprogress";

/** Where the files being written of a partition directory live (the same path under the work directory). */
export function inProgressDirectory(root: string, partition: string): string {
  return join(root, IN_PROGRESS_DIRECTORY, relative(root, partition));
}

/** Bytes kept as they are in a partition value; everything else becomes %XX of its UTF-8 bytes. */
const SAFE_BYTE = /^[A-Za-z0-9_.-]$/;

export function encodePartitionValue(value: string): string {
  let out = "";
  const bytes = new TextEncoder().encode(value);
  for (let i = 0; i < bytes.length; i++) {
    const char = String.fromCharCode(bytes[i]!);
    // A leading dot would hide the directory (and "." / ".." are not names at all).
    if (bytes[i]! < 0x80 && SAFE_BYTE.test(char) && !(i === 0 && char === ".")) out += char;
    else out += `%${bytes[i]!.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

export function decodePartitionValue(encoded: string): string {
  return decodeURIComponent(encoded);
}

/** UTC date (YYYY-MM-DD) and time (HHMMSS) of a microsecond timestamp. */
export function utcParts(micros: number): { readonly date: string; readonly time: string } {
  const iso = new Date(Math.floor(micros / 1000)).toISOString(); // 2026-01-05T12:34:56.789Z
  return { date: iso.slice(0, 10), time: iso.slice(11, 13) + iso.slice(14, 16) + iso.slice(17, 19) };
}

export function partitionDirectory(root: string, table: string, exchange: string, symbol: string, date: string): string {
  return join(
    root,
    table,
    `exchange=${encodePartitionValue(exchange)}`,
    `symbol=${encodePartitionValue(symbol)}`,
    `date=${date}`,
  );
}

export function dataFileName(time: string, counter: number): string {
  return `${time}-${String(counter).padStart(4, "0")}.parquet`;
}

export const tempFileName = (finalName: string): string => `.${finalName}.tmp`;
export const journalFileName = (finalName: string): string => `.${finalName}.journal`;
/** The next generation of a journal, renamed over the current one once complete. */
export const nextJournalFileName = (finalName: string): string => `.${finalName}.journal.next`;
/** Where leftovers that could not be turned into Parquet are moved, for a human to inspect. */
export const unrecoverableFileName = (name: string): string => `${name}.unrecoverable`;

const DATA_FILE = /^(\d{6})-(\d+)\.parquet$/;
const IN_PROGRESS = /^\.(\d{6}-\d+\.parquet)\.(tmp|journal|journal\.next)$/;

/** The counter of a data file name of this time, or undefined when the name is not one. */
export function counterOf(name: string, time: string): number | undefined {
  const inProgress = IN_PROGRESS.exec(name);
  const match = DATA_FILE.exec(inProgress ? inProgress[1]! : name);
  return match && match[1] === time ? Number(match[2]) : undefined;
}

/** For a leftover of a killed run: the final name it belongs to and what it is. */
export function parseInProgressName(
  name: string,
): { readonly finalName: string; readonly kind: "tmp" | "journal" | "journal.next" } | undefined {
  const match = IN_PROGRESS.exec(name);
  return match ? { finalName: match[1]!, kind: match[2] as "tmp" | "journal" | "journal.next" } : undefined;
}

/** The first counter above every name of this time in the directory (final, temporary or journal). */
export function nextCounter(existingNames: readonly string[], time: string): number {
  let next = 0;
  for (const name of existingNames) {
    const counter = counterOf(name, time);
    if (counter !== undefined && counter >= next) next = counter + 1;
  }
  return next;
}

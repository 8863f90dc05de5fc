/**
 * Crash recovery, run by ParquetSink.start(): finds what a killed run left in the output directory and
 * turns it into complete Parquet files under their final names, or says clearly what it could not.
 *
 * Leftovers are looked for in the work directory (`DIR/.inprogress/<table>/...`, layout.ts) and, for files
 * an earlier build left, beside the final names in the table tree.
 *
 * For each `.<name>.journal` (see journal.ts and part-file.ts for the write order):
 * - the final `<name>` exists already: the run died after linking it; only the leftovers are removed;
 * - otherwise the temporary file is cut back to the end of the last journaled row group, the journaled
 *   rows are written after it as one more row group, then the footer, and the file gets its name;
 * - when the temporary file is missing or shorter than the journal says (a disk that lied about fsync),
 *   its row groups are reported lost and the journaled rows still become a file.
 * Journals of version 5 have their pending rows in the rows log (rows-log.ts): every segment is read first,
 * each file takes the rows its key names from the position its journal says are pending, and the segments
 * are removed once every file with a journal was recovered (else they stay for the next start).
 * A temporary file without a journal cannot be read without its footer: it is kept as
 * `.<name>.tmp.unrecoverable` and reported. A half-written replacement journal (`.journal.next`) is
 * ignored: the journal it was meant to replace is intact.
 */
import { open, readdir, readFile, rename, rmdir, stat, unlink, type FileHandle } from "node:fs/promises";
import type { CompressionCodec } from "hyparquet";
import { join, relative, sep } from "node:path";
import { errorMessage } from "../../core/errors.ts";
import type { Logger } from "../../core/log.ts";
import { TABLE_NAMES, type TableName } from "../../core/tables.ts";
import type { IntegerReport } from "./columns.ts";
import { decodePositionedRows, decodeRows, POSITIONED_VERSION, readJournal, type JournaledRowGroup, type PositionedRows } from "./journal.ts";
import {
  decodePartitionValue,
  IN_PROGRESS_DIRECTORY,
  journalFileName,
  nextJournalFileName,
  parseInProgressName,
  tempFileName,
  unrecoverableFileName,
} from "./layout.ts";
import { PartFile, linkUnderFreeName, syncDirectory, writeAll } from "./part-file.ts";
import { readRowsLogs, removeRowsLogs, rowsLogKey } from "./rows-log.ts";
import { PER_EVENT_COLUMNS } from "./columns.ts";

const MAGIC = new TextEncoder().encode("PAR1");

export interface RecoveryReport {
  /** Final paths of files completed from leftovers. */
  readonly recoveredFiles: string[];
  readonly recoveredRows: number;
  /** Rows the journal knew of that could not be recovered (logged with the reason). */
  readonly lostRows: number;
  /** Leftovers kept aside under `*.unrecoverable` names, or left in place after an error. */
  readonly unrecoverable: string[];
  /**
   * Partitions whose file the previous run still had open when it died (killed, crashed, power lost): rows
   * it received within its last flush interval never reached the journal. One entry per partition (a
   * stream may have two: a file of the previous date still closing and the new one).
   */
  readonly interrupted: InterruptedPartition[];
}

export interface InterruptedPartition {
  readonly table: TableName;
  readonly exchange: string;
  readonly symbol: string;
}

interface Leftovers {
  tmp: boolean;
  journal: boolean;
  next: boolean;
}

export interface RecoveryOptions {
  readonly log: Logger;
  readonly rowGroupRows: number;
  readonly integerReport: IntegerReport;
  /**
   * Called with every partition that has leftovers, before recovery changes anything: the leftovers are
   * the only trace that the previous run died, so what must outlive them is recorded here.
   */
  readonly beforeChanges?: (partitions: readonly InterruptedPartition[]) => Promise<void>;
}

export async function recoverDirectory(root: string, options: RecoveryOptions): Promise<RecoveryReport> {
  const report = { recoveredFiles: [] as string[], recoveredRows: 0, lostRows: 0, unrecoverable: [] as string[], interrupted: [] as InterruptedPartition[] };
  const found: { directory: string; workDirectory: string; byFile: Map<string, Leftovers> }[] = [];
  const workRoot = join(root, IN_PROGRESS_DIRECTORY);
  const workDirectories = await partitionDirectories(workRoot);
  // Log records name their file by its path under the output directory, which starts with its table.
  const log = await readRowsLogs(workRoot, (key) => PER_EVENT_COLUMNS[key.split("/")[0] as TableName] ?? []);
  if (log.tornBytes > 0) {
    options.log.warn(`parquet recovery: the rows log ends with ${log.tornBytes} byte(s) of a write the crash interrupted; those rows were never acknowledged and are skipped`);
  }
  let keepLog = false;
  const places = [
    ...workDirectories.map((workDirectory) => ({ workDirectory, directory: join(root, relative(workRoot, workDirectory)) })),
    // Leftovers of earlier builds, which kept them beside the final names.
    ...(await partitionDirectories(root)).map((directory) => ({ workDirectory: directory, directory })),
  ];
  for (const { directory, workDirectory } of places) {
    let names: string[];
    try {
      names = await readdir(workDirectory);
    } catch (error) {
      options.log.error(`parquet recovery: cannot list ${workDirectory}: ${errorMessage(error)}`);
      report.unrecoverable.push(workDirectory);
      continue;
    }
    const byFile = new Map<string, Leftovers>();
    for (const name of names) {
      const parsed = parseInProgressName(name);
      if (!parsed) continue;
      const leftovers = byFile.get(parsed.finalName) ?? { tmp: false, journal: false, next: false };
      if (parsed.kind === "tmp") leftovers.tmp = true;
      else if (parsed.kind === "journal") leftovers.journal = true;
      else leftovers.next = true;
      byFile.set(parsed.finalName, leftovers);
    }
    if (byFile.size > 0) found.push({ directory, workDirectory, byFile });
  }
  if (options.beforeChanges) {
    const partitions = found
      .filter(({ byFile }) => [...byFile.values()].some((leftovers) => leftovers.tmp || leftovers.journal))
      .map(({ directory }) => partitionOf(root, directory))
      .filter((partition) => partition !== undefined);
    if (partitions.length > 0) await options.beforeChanges(partitions);
  }
  for (const { directory, workDirectory, byFile } of found) {
    let interrupted = false;
    for (const [finalName, leftovers] of byFile) {
      try {
        const logged = log.byKey.get(rowsLogKey(root, directory, finalName)) ?? [];
        interrupted = (await recoverFile(directory, workDirectory, finalName, leftovers, options, report, logged)) || interrupted;
      } catch (error) {
        keepLog = true;
        // Not marked: the leftovers stay for the next start, which would mark the stream again on every
        // start until they are recovered. The error log and `errors` say where data may be missing.
        options.log.error(
          `parquet recovery: could not recover ${join(directory, finalName)}: ${errorMessage(error)}; its leftovers stay in place for the next start`,
        );
        report.unrecoverable.push(join(directory, finalName));
      }
    }
    const partition = interrupted ? partitionOf(root, directory) : undefined;
    if (partition) report.interrupted.push(partition);
  }
  if (!keepLog) await removeRowsLogs(log.segments);
  await removeEmptyWorkDirectories(workRoot, workDirectories);
  return report;
}

/**
 * The work directories of closed files stay behind empty (removing one while a file is being created in
 * it would race); at start no file is open, so the empty ones go, up to the work root.
 */
async function removeEmptyWorkDirectories(workRoot: string, workDirectories: readonly string[]): Promise<void> {
  for (const leaf of workDirectories) {
    // date=, symbol=, exchange=, table: each removed only if empty (rmdir refuses otherwise).
    let directory = leaf;
    for (let level = 0; level < 4 && directory !== workRoot; level++) {
      if (!(await rmdir(directory).then(() => true, () => false))) break;
      directory = join(directory, "..");
    }
  }
}

/** DIR/<table>/exchange=<E>/symbol=<S>/date=<D> back to its table, exchange and symbol (undefined for a
 * directory we did not name: a hand-made `symbol=100%` does not decode). */
function partitionOf(root: string, directory: string): InterruptedPartition | undefined {
  const [table, exchange, symbol] = relative(root, directory).split(sep);
  const value = (segment: string) => decodePartitionValue(segment.slice(segment.indexOf("=") + 1));
  try {
    return { table: table as TableName, exchange: value(exchange!), symbol: value(symbol!) };
  } catch {
    return undefined;
  }
}

/** DIR/<table>/exchange=*\/symbol=*\/date=*: the only places files are written. */
async function partitionDirectories(root: string): Promise<string[]> {
  const found: string[] = [];
  const subdirectories = async (directory: string, prefix: string): Promise<string[]> => {
    try {
      const entries = await readdir(directory, { withFileTypes: true });
      return entries
        .filter((entry) => entry.isDirectory() && entry.name.startsWith(prefix))
        .map((entry) => join(directory, entry.name));
    } catch {
      return [];
    }
  };
  for (const table of TABLE_NAMES) {
    for (const exchange of await subdirectories(join(root, table), "exchange=")) {
      for (const symbol of await subdirectories(exchange, "symbol=")) {
        found.push(...(await subdirectories(symbol, "date=")));
      }
    }
  }
  return found;
}

async function recoverFile(
  directory: string,
  workDirectory: string,
  finalName: string,
  leftovers: Leftovers,
  options: RecoveryOptions,
  report: { recoveredFiles: string[]; recoveredRows: number; lostRows: number; unrecoverable: string[] },
  logged: readonly PositionedRows[],
): Promise<boolean> {
  const { log } = options;
  const finalPath = join(directory, finalName);
  const tempPath = join(workDirectory, tempFileName(finalName));
  const journalPath = join(workDirectory, journalFileName(finalName));
  if (leftovers.next) await unlink(join(workDirectory, nextJournalFileName(finalName))).catch(() => undefined);

  if (await isCompleteParquet(finalPath)) {
    // Died after the final link: the data is complete; the leftovers are copies of it.
    if (leftovers.tmp) await unlink(tempPath).catch(() => undefined);
    if (leftovers.journal) await unlink(journalPath).catch(() => undefined);
    log.info(`parquet recovery: ${finalPath} was complete; removed what the previous run left beside it`);
    return false;
  }

  if (!leftovers.journal) {
    if (!leftovers.tmp) return false;
    if (await isCompleteParquet(tempPath)) {
      const name = await linkUnderFreeName(directory, tempPath, finalName);
      if (workDirectory !== directory) await syncDirectory(directory);
      await unlink(tempPath);
      await syncDirectory(workDirectory);
      report.recoveredFiles.push(join(directory, name));
      log.info(`parquet recovery: ${join(directory, name)} was complete but not yet named; renamed`);
      return false;
    }
    await rename(tempPath, unrecoverableFileName(tempPath));
    report.unrecoverable.push(unrecoverableFileName(tempPath));
    log.error(
      `parquet recovery: ${tempPath} has no journal and no footer, so its rows cannot be read; kept as ${unrecoverableFileName(tempPath)}`,
    );
    return true;
  }

  const journalBytes = new Uint8Array(await readFile(journalPath));
  const journal = readJournal(journalBytes);
  if (!journal.header) {
    const tempSize = leftovers.tmp ? (await stat(tempPath)).size : 0;
    if (journalBytes.length < 4096 && tempSize <= MAGIC.length) {
      // Died while creating the file: nothing was written to it yet.
      if (leftovers.tmp) await unlink(tempPath);
      await unlink(journalPath);
      log.info(`parquet recovery: removed ${finalPath}'s empty leftovers (the previous run died while creating it)`);
      return true;
    }
    for (const path of [journalPath, ...(leftovers.tmp ? [tempPath] : [])]) {
      await rename(path, unrecoverableFileName(path));
      report.unrecoverable.push(unrecoverableFileName(path));
    }
    log.error(`parquet recovery: the journal of ${finalPath} has no valid header; its leftovers were kept as *.unrecoverable`);
    return true;
  }
  const header = journal.header;
  const validJournalLength = journalBytes.length - journal.tornBytes;
  if (journal.tornBytes > 0) {
    log.warn(
      `parquet recovery: ${journalPath} ends with ${journal.tornBytes} byte(s) of a write the crash interrupted; those rows were never acknowledged and are skipped`,
    );
  }

  let rowGroups: readonly JournaledRowGroup[] = journal.rowGroups;
  let rowGroupEnd = rowGroups.at(-1)?.endOffset ?? MAGIC.length;
  let dataFile: FileHandle | undefined;
  let journalFile: FileHandle | undefined;
  try {
    dataFile = leftovers.tmp ? await open(tempPath, "r+") : undefined;
    const size = dataFile ? (await dataFile.stat()).size : 0;
    const head = new Uint8Array(MAGIC.length);
    if (dataFile && size >= MAGIC.length) await dataFile.read(head, 0, MAGIC.length, 0);
    if (!dataFile || size < rowGroupEnd || !sameBytes(head, MAGIC)) {
      const lost = rowGroups.reduce((sum, { rowGroup }) => sum + Number(rowGroup.num_rows), 0);
      if (lost > 0) {
        report.lostRows += lost;
        log.error(
          `parquet recovery: ${lost} row(s) in ${rowGroups.length} row group(s) of ${finalPath} are lost: the temporary file is ${dataFile ? `${size} bytes, shorter than the ${rowGroupEnd} its journal records` : "missing"}`,
        );
      }
      rowGroups = [];
      rowGroupEnd = MAGIC.length;
      await dataFile?.close();
      dataFile = await open(tempPath, "w");
      await writeAll(dataFile, MAGIC, 0);
    }
    await dataFile.truncate(rowGroupEnd);
    journalFile = await open(journalPath, "r+");
    await journalFile.truncate(validJournalLength);

    const file = new PartFile({
      root: "",
      table: header.table,
      exchange: header.exchange,
      symbol: header.symbol,
      openedAt: header.openedAt,
      rotateAt: header.openedAt,
      codec: header.codec as CompressionCodec,
      integerReport: options.integerReport,
      columns: header.columns,
      directory,
      workDirectory,
    });
    let pendingRows = 0;
    // Version 5: past every position a record holds (the resumed file numbers its rows from there).
    let firstRow = 0;
    try {
      if (header.version >= POSITIONED_VERSION) {
        const valid = journalBytes.subarray(0, validJournalLength);
        const records = [...journal.rows.map((location) => ({ bytes: valid, location, firstRow: location.firstRow!, rowCount: location.rowCount! })), ...logged];
        const { rows, missing } = decodePositionedRows(records, journal.pendingFrom, file.buffer);
        pendingRows = rows;
        firstRow = records.reduce((end, record) => Math.max(end, record.firstRow + record.rowCount), journal.pendingFrom);
        // A row group that was being written when the run died held rows never logged: they were in memory only.
        if (missing > 0) log.warn(`parquet recovery: ${missing} row(s) of ${finalPath} were in memory only when the run died (a row group being written); the rows after them are recovered`);
      } else {
        pendingRows = decodeRows(journalBytes.subarray(0, validJournalLength), journal.rows, file.buffer, journal.skipRows);
      }
    } catch (error) {
      log.error(`parquet recovery: the journaled rows of ${finalPath} cannot be decoded (${errorMessage(error)}); only its row groups are recovered`);
      file.buffer.discard(file.buffer.rows);
    }
    await file.resume(finalName, { header, rowGroups, rowGroupEnd, firstRow }, dataFile, journalFile, validJournalLength);
    dataFile = undefined;
    journalFile = undefined;
    await file.close(options.rowGroupRows);
    const rows = file.committedRows;
    report.recoveredFiles.push(file.finalPath!);
    report.recoveredRows += rows;
    log.info(
      `parquet recovery: completed ${file.finalPath} with ${rows} row(s) (${rowGroups.length} row group(s) from the temporary file, ${pendingRows} row(s) from the journal)`,
    );
    return true;
  } finally {
    await dataFile?.close().catch(() => undefined);
    await journalFile?.close().catch(() => undefined);
  }
}

/** Magic at both ends and a footer length that fits: a file some writer finished. */
export async function isCompleteParquet(path: string): Promise<boolean> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(path, "r");
    const size = (await handle.stat()).size;
    if (size < 12) return false;
    const head = new Uint8Array(4);
    const tail = new Uint8Array(8);
    await handle.read(head, 0, 4, 0);
    await handle.read(tail, 0, 8, size - 8);
    const footerLength = new DataView(tail.buffer).getUint32(0, true);
    return sameBytes(head, MAGIC) && sameBytes(tail.subarray(4), MAGIC) && footerLength > 0 && footerLength <= size - 12;
  } catch {
    return false;
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((value, index) => value === b[index]);
}

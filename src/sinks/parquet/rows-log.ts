/**
 * The rows log: one write-ahead log per process for the rows of every open Parquet file (journal.ts,
 * version 5). Each flush interval the rows received since the last one, of all files together, are one
 * write and one fdatasync here, instead of one append and one fdatasync per open file (280 a second for
 * 280 subscriptions): the syncs, thread-pool jobs and wake-ups of a steady collector no longer grow with
 * the number of files (docs/performance.md).
 *
 * A segment `DIR/.inprogress/rows-<µs>-<n>.log` starts with a HEADER record; then LOG_ROWS records:
 * `[u32 length][u32 CRC-32][kind][u32 key length][key][f64 position of the first row][rows]`, the key being
 * the file's final path under the output directory (`<table>/exchange=…/date=…/<name>`), the rows as
 * TableBuffer.encodeRows writes them, and each record padded to 8 bytes so its float columns stay aligned.
 * Files join the next write while one is in flight (group commit), so a file that was just created need
 * not wait for the next tick.
 *
 * A segment grows to SEGMENT_BYTES, then the next write starts a new one. An old segment is removed once
 * no file needs it: every file with rows in it has closed, was lost, or has those rows in row groups. A
 * file that still needs it (a quiet file waits up to PARQUET_ROW_GROUP_SECONDS for its row group) has its
 * pending rows written again into the new segment, once none of them is in a sealed group in flight. At a
 * clean stop every file is closed and the log is removed; files the stop could not close keep it for the
 * next start, whose recovery (recovery.ts) reads every segment back into the files it names.
 */
import { mkdir, open, readdir, readFile, stat, unlink, type FileHandle } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import { ByteBuilder } from "./columns.ts";
import { HEADER, POSITIONED_ROWS, RECORD_HEADER_BYTES, type PositionedRows } from "./journal.ts";
import { syncDirectory, writeAll } from "./write.ts";

export const ROWS_LOG_FORMAT = "xtrader-parquet-rows-log";
const ROWS_LOG_VERSION = 1;
/** Initial size of the buffer a write's records are built in (reused from write to write). */
const OUT_BYTES = 1 << 16;
/** Size past which the next write starts a new segment. */
const SEGMENT_BYTES = 64 * 1024 * 1024;

/** What the log needs of a file being written (part-file.ts). */
export interface LoggedFile {
  /** The file's key (rowsLogKey); undefined until it exists on disk. */
  readonly logKey: string | undefined;
  /**
   * Appends a LOG_ROWS record (no framing) of its rows not yet logged, or, with `again`, of every pending
   * row it holds; returns their positions, or undefined when there are none.
   */
  logRecord(out: ByteBuilder, again: boolean): { readonly from: number; readonly to: number } | undefined;
  /** The rows [from, to) are durable. */
  logged(from: number, to: number): void;
  /** Position through which rows are in row groups: log records below it are no longer needed. */
  readonly committedThrough: number;
  /** Closed with its final name, or lost: no log record of it is needed any more. */
  readonly logDone: boolean;
  /** Every pending row it has logged is in its buffer (none in a sealed group), so it can log them again. */
  readonly canLogAgain: boolean;
}

interface Segment {
  readonly path: string;
  readonly handle: FileHandle;
  /** Device and inode of the file when it was created, to tell whether its path still leads to it. */
  readonly identity: { readonly dev: bigint; readonly ino: bigint };
  length: number;
  /** Files with records here, and the end position of their last one. */
  readonly holders: Map<LoggedFile, number>;
}

interface Batch {
  readonly files: Set<LoggedFile>;
  readonly done: Promise<void>;
}

export class RowsLog {
  private current: Segment | undefined;
  private readonly retired: Segment[] = [];
  private next: Batch | undefined;
  private tail: Promise<unknown> = Promise.resolve();
  private out = new ByteBuilder(OUT_BYTES);
  private counter = 0;
  /** A segment whose path no longer leads to it (inPlace()). */
  private currentGone: Segment | undefined;

  constructor(
    /** The work root, `DIR/.inprogress`. */
    readonly directory: string,
    private readonly segmentBytes: number = SEGMENT_BYTES,
  ) {}

  /**
   * Makes the file's rows received so far durable: they join the next write of the log (with those of
   * every file that asks before it starts). Rejects when the write fails (the rows stay pending).
   */
  append(file: LoggedFile): Promise<void> {
    let batch = this.next;
    if (!batch) {
      const files = new Set<LoggedFile>();
      // One turn of the event loop first: the files of one flush tick all join the same write.
      const done = this.tail.then(() => new Promise<void>((resolve) => setImmediate(resolve))).then(() => this.write(files));
      batch = this.next = { files, done };
      this.tail = done.catch(() => undefined);
    }
    batch.files.add(file);
    return batch.done;
  }

  /**
   * Removes every segment no open file needs (SIGHUP closed them all): nothing stays in the work directory
   * for files that are finished. The next write starts a new segment.
   */
  removeUnneeded(): Promise<void> {
    const done = this.tail.then(async () => {
      for (const segment of [...this.retired, ...(this.current ? [this.current] : [])]) {
        releaseDone(segment);
        if (segment.holders.size > 0) continue;
        if (segment === this.current) this.current = undefined;
        else this.retired.splice(this.retired.indexOf(segment), 1);
        await segment.handle.close().catch(() => undefined);
        await unlink(segment.path).catch(() => undefined);
      }
    });
    this.tail = done.catch(() => undefined);
    return done;
  }

  /** Segments still needed by files that did not close (kept for the next start); the rest are removed. */
  async close(): Promise<void> {
    await this.tail;
    for (const segment of [...this.retired, ...(this.current ? [this.current] : [])]) {
      releaseDone(segment);
      await segment.handle.close().catch(() => undefined);
      if (segment.holders.size === 0) await unlink(segment.path).catch(() => undefined);
    }
    this.retired.length = 0;
    this.current = undefined;
  }

  /** Bytes of every segment on disk (tests). */
  get bytesOnDisk(): number {
    return [...this.retired, ...(this.current ? [this.current] : [])].reduce((sum, segment) => sum + segment.length, 0);
  }

  get segments(): number {
    return this.retired.length + (this.current ? 1 : 0);
  }

  private async write(files: Set<LoggedFile>): Promise<void> {
    if (this.next?.files === files) this.next = undefined;
    // The work directory deleted or replaced under the sink (seen after the last write): writes to the
    // segment would still succeed, into a file the next start cannot find. A new one takes over, and the
    // files log their rows again.
    if (this.current && this.currentGone === this.current) {
      this.retired.push(this.current);
      this.current = undefined;
    }
    if (!this.current || this.current.length >= this.segmentBytes) await this.startSegment();
    const segment = this.current!;
    // Files holding an old segment log their pending rows again here, so that segment can go.
    const again = new Set<LoggedFile>();
    for (const old of this.retired) {
      releaseDone(old);
      for (const file of old.holders.keys()) {
        if (file.canLogAgain) {
          again.add(file);
          files.add(file);
        }
      }
    }
    const out = this.out;
    out.reset();
    const written: { file: LoggedFile; from: number; to: number }[] = [];
    for (const file of files) {
      if (file.logKey === undefined) continue;
      const start = out.length;
      out.uint32(0);
      out.uint32(0);
      out.byte(POSITIONED_ROWS);
      const key = new TextEncoder().encode(file.logKey);
      out.uint32(key.length);
      out.bytes(key);
      const range = file.logRecord(out, again.has(file));
      if (!range) {
        out.length = start;
        continue;
      }
      // Padded so the next record starts 8-aligned (float columns are aligned to their record's start).
      while ((out.length - start) % 8 !== 0) out.byte(0);
      out.setUint32(start, out.length - start - RECORD_HEADER_BYTES);
      out.setUint32(start + 4, Bun.hash.crc32(out.buffer.subarray(start + RECORD_HEADER_BYTES, out.length)));
      written.push({ file, ...range });
    }
    if (out.length === 0) return;
    try {
      await writeAll(segment.handle, out.view(), segment.length);
      await segment.handle.datasync();
    } catch (error) {
      await segment.handle.truncate(segment.length).catch(() => undefined);
      throw error;
    }
    segment.length += out.length;
    // Checked beside the next turns, not before this write: its records are built the moment it starts.
    void inPlace(segment).then((found) => {
      if (!found) this.currentGone = segment;
    });
    // A burst's write grows the buffer to tens of MB: give that back once writes are small again.
    if (out.buffer.length > OUT_BYTES * 64 && out.length < out.buffer.length / 8) this.out = new ByteBuilder(OUT_BYTES);
    for (const { file, from, to } of written) {
      file.logged(from, to);
      segment.holders.set(file, Math.max(to, segment.holders.get(file) ?? 0));
      if (again.has(file)) for (const old of this.retired) old.holders.delete(file);
    }
    for (const old of [...this.retired]) {
      releaseDone(old);
      if (old.holders.size > 0) continue;
      // No sync: a removal a crash undoes leaves records the next start finds unneeded.
      this.retired.splice(this.retired.indexOf(old), 1);
      await old.handle.close().catch(() => undefined);
      await unlink(old.path).catch(() => undefined);
    }
  }

  private async startSegment(): Promise<void> {
    for (;;) {
      const path = join(this.directory, rowsLogName(Math.floor(performance.timeOrigin + performance.now()) * 1000, this.counter++));
      let handle: FileHandle | undefined;
      try {
        await mkdir(this.directory, { recursive: true });
        handle = await open(path, "wx");
        const header = new ByteBuilder(256);
        header.uint32(0);
        header.uint32(0);
        header.byte(HEADER);
        header.bytes(new TextEncoder().encode(JSON.stringify({ format: ROWS_LOG_FORMAT, version: ROWS_LOG_VERSION })));
        header.setUint32(0, header.length - RECORD_HEADER_BYTES);
        header.setUint32(4, Bun.hash.crc32(header.buffer.subarray(RECORD_HEADER_BYTES, header.length)));
        await writeAll(handle, header.view(), 0);
        await handle.datasync();
        await syncDirectory(this.directory);
        const { dev, ino } = await handle.stat({ bigint: true });
        if (this.current) this.retired.push(this.current);
        this.current = { path, handle, identity: { dev, ino }, length: header.length, holders: new Map() };
        return;
      } catch (error) {
        await handle?.close().catch(() => undefined);
        if (handle) await unlink(path).catch(() => undefined);
        if ((error as { code?: string }).code === "EEXIST") continue;
        throw error;
      }
    }
  }
}

/** Whether the segment's path still leads to the file written (errors other than a missing path say nothing). */
async function inPlace(segment: Segment): Promise<boolean> {
  try {
    const found = await stat(segment.path, { bigint: true });
    return found.dev === segment.identity.dev && found.ino === segment.identity.ino;
  } catch (error) {
    const code = (error as { code?: string }).code;
    return !(code === "ENOENT" || code === "ENOTDIR");
  }
}

/** Holders whose records are no longer needed leave the segment. */
function releaseDone(segment: Segment): void {
  for (const [file, end] of segment.holders) {
    if (file.logDone || file.committedThrough >= end) segment.holders.delete(file);
  }
}

/** A file's name in the log: its final path under the output directory, with `/` on every platform. */
export function rowsLogKey(root: string, directory: string, finalName: string): string {
  return relative(root, join(directory, finalName)).split(sep).join("/");
}

export function rowsLogName(micros: number, counter: number): string {
  return `rows-${micros}-${counter}.log`;
}

export function isRowsLogName(name: string): boolean {
  return /^rows-\d+-\d+\.log$/.test(name);
}

/** What the segments of earlier runs hold: rows by file key, and the segments' paths. */
export interface RowsLogContents {
  readonly segments: readonly string[];
  readonly byKey: ReadonlyMap<string, readonly PositionedRows[]>;
  /** Bytes after the last intact record of each segment (a torn write), summed. */
  readonly tornBytes: number;
}

/** Reads every segment in the work root (a missing root: none). */
export async function readRowsLogs(directory: string, runsOf: (key: string) => readonly string[]): Promise<RowsLogContents> {
  let names: string[];
  try {
    names = (await readdir(directory)).filter(isRowsLogName).sort();
  } catch {
    names = [];
  }
  const byKey = new Map<string, PositionedRows[]>();
  let tornBytes = 0;
  for (const name of names) {
    const bytes = new Uint8Array(await readFile(join(directory, name)));
    tornBytes += readSegment(bytes, (key, record) => {
      const list = byKey.get(key) ?? [];
      list.push({ ...record, location: { ...record.location, runs: runsOf(key) } });
      byKey.set(key, list);
    });
  }
  return { segments: names.map((name) => join(directory, name)), byKey, tornBytes };
}

/** Calls `found` for each LOG_ROWS record of a segment; returns the bytes after the last intact record. */
export function readSegment(bytes: Uint8Array, found: (key: string, record: PositionedRows) => void): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let position = 0;
  let headerSeen = false;
  while (position + RECORD_HEADER_BYTES <= bytes.length) {
    const length = view.getUint32(position, true);
    const payloadStart = position + RECORD_HEADER_BYTES;
    const payloadEnd = payloadStart + length;
    if (length < 1 || payloadEnd > bytes.length) break;
    if (Bun.hash.crc32(bytes.subarray(payloadStart, payloadEnd)) !== view.getUint32(position + 4, true)) break;
    const kind = bytes[payloadStart];
    if (!headerSeen) {
      if (kind !== HEADER) break;
      const header = JSON.parse(new TextDecoder().decode(bytes.subarray(payloadStart + 1, payloadEnd))) as { format?: string; version?: number };
      if (header.format !== ROWS_LOG_FORMAT || header.version !== ROWS_LOG_VERSION) break;
      headerSeen = true;
    } else if (kind === POSITIONED_ROWS) {
      const keyLength = view.getUint32(payloadStart + 1, true);
      const keyEnd = payloadStart + 5 + keyLength;
      const key = new TextDecoder().decode(bytes.subarray(payloadStart + 5, keyEnd));
      const firstRow = view.getFloat64(keyEnd, true);
      const rowCount = view.getUint32(keyEnd + 8, true);
      found(key, { bytes, firstRow, rowCount, location: { recordStart: position, payloadStart: keyEnd + 8, payloadEnd, coded: true, runs: [], firstRow, rowCount } });
    } else {
      break;
    }
    position = payloadEnd;
  }
  return bytes.length - position;
}

/** Removes the segments of earlier runs once recovery no longer needs them. */
export async function removeRowsLogs(segments: readonly string[]): Promise<void> {
  for (const path of segments) await unlink(path).catch(() => undefined);
}

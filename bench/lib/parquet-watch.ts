/**
 * Exchange→disk lag of the Parquet sink, seen from outside the process: the sink makes rows durable by
 * appending them to its rows log (one per process, `.inprogress/rows-*.log`; builds before journal version
 * 5: the journal beside each open file) and fdatasync'ing it every flush interval, so the moment a row
 * shows up there is the moment it is on disk. This polls the logs and journals, reads only the bytes
 * appended since the last look, and takes each new row's `timestamp` (exchange time) from the rows records
 * (formats: src/sinks/parquet/rows-log.ts, journal.ts, columns.ts).
 *
 * Rows that reach disk without passing through a journal (a row group written straight from memory) are
 * counted as `unobserved`. Polling every `intervalMs` makes each sample up to that much late.
 */
import { closeSync, openSync, readdirSync, readSync, statSync } from "node:fs";
import { join } from "node:path";
import { ByteReader } from "../../src/sinks/parquet/columns.ts";
import { CODED_ROWS, HEADER, POSITIONED_ROWS, ROWS, type JournalHeader } from "../../src/sinks/parquet/journal.ts";
import { PER_EVENT_COLUMNS } from "../../src/sinks/parquet/columns.ts";
import { isRowsLogName } from "../../src/sinks/parquet/rows-log.ts";
import type { TableName } from "../../src/core/tables.ts";
import { epochMs } from "./proc.ts";

const RECORD_HEADER_BYTES = 8;

interface Tracked {
  inode: number;
  offset: number;
  /** The header lists `timestamp` among the columns ROWS records hold as runs (journal version 4). */
  timestampRuns: boolean;
}

export class ParquetJournalWatch {
  readonly lags: number[] = [];
  rowsSeen = 0;
  private readonly tracked = new Map<string, Tracked>();
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly root: string,
    /** Rows with an exchange time before this (µs) are not sampled (snapshots taken before the run). */
    private readonly sinceMicros: number,
  ) {}

  start(intervalMs = 25): void {
    this.timer = setInterval(() => this.poll(), intervalMs);
  }

  stop(): void {
    clearInterval(this.timer);
    this.poll();
  }

  private poll(): void {
    const now = epochMs() * 1000;
    let names: string[];
    try {
      names = readdirSync(this.root, { recursive: true }) as string[];
    } catch {
      return;
    }
    for (const name of names) {
      if (!name.endsWith(".journal") && !isRowsLogName(name.split("/").at(-1)!)) continue;
      const path = join(this.root, name);
      try {
        this.read(path, now);
      } catch {
        // Renamed or removed between readdir and read: the next poll sees its successor.
      }
    }
  }

  private read(path: string, nowMicros: number): void {
    const stat = statSync(path);
    let tracked = this.tracked.get(path);
    if (!tracked || tracked.inode !== stat.ino) {
      // A new journal, or one replaced after a row group: its pending rows were seen in the old one.
      const fresh = !tracked;
      tracked = { inode: stat.ino, offset: fresh ? 0 : stat.size, timestampRuns: tracked?.timestampRuns ?? false };
      this.tracked.set(path, tracked);
      if (!fresh) return;
    }
    if (stat.size <= tracked.offset) return;
    const bytes = new Uint8Array(stat.size - tracked.offset);
    const fd = openSync(path, "r");
    try {
      readSync(fd, bytes, 0, bytes.length, tracked.offset);
    } finally {
      closeSync(fd);
    }
    const view = new DataView(bytes.buffer);
    let position = 0;
    while (position + RECORD_HEADER_BYTES <= bytes.length) {
      const length = view.getUint32(position, true);
      const payloadStart = position + RECORD_HEADER_BYTES;
      const payloadEnd = payloadStart + length;
      if (length < 1 || payloadEnd > bytes.length) break; // still being written
      if (bytes[payloadStart] === POSITIONED_ROWS && isRowsLogName(path.split("/").at(-1)!)) {
        // A rows-log record: its key (the file's path, starting with its table), position, then the rows.
        const keyLength = view.getUint32(payloadStart + 1, true);
        const table = new TextDecoder().decode(bytes.subarray(payloadStart + 5, payloadStart + 5 + keyLength)).split("/")[0] as TableName;
        this.sample(new ByteReader(bytes, payloadStart + 5 + keyLength + 8, position, payloadEnd), PER_EVENT_COLUMNS[table]?.includes("timestamp") ?? false, nowMicros);
      } else if (bytes[payloadStart] === HEADER) {
        const header = JSON.parse(new TextDecoder().decode(bytes.subarray(payloadStart + 1, payloadEnd))) as JournalHeader;
        tracked.timestampRuns = header.perEvent?.includes("timestamp") ?? false;
      }
      // Pending rows, either format: the timestamp column comes first in both.
      if (bytes[payloadStart] === ROWS || bytes[payloadStart] === CODED_ROWS) {
        this.sample(new ByteReader(bytes, payloadStart + 1, position, payloadEnd), tracked.timestampRuns, nowMicros);
      }
      position = payloadEnd;
    }
    tracked.offset += position;
  }

  /** Lag samples of one rows record (the reader at its row count). */
  private sample(reader: ByteReader, timestampRuns: boolean, nowMicros: number): void {
    const rows = reader.uint32();
    // Every table starts with exchange and symbol (constant, not stored per row), then timestamp: one
    // value per row, or (L2, journal version 4 on) runs: their count, values, then row counts.
    const runs = timestampRuns ? reader.uint32() : rows;
    const timestamps = reader.float64s(runs);
    const lengths = timestampRuns ? reader.float64s(runs) : undefined;
    for (let i = 0; i < runs; i++) {
      if (timestamps[i]! < this.sinceMicros) continue;
      for (let row = 0; row < (lengths?.[i] ?? 1); row++) this.lags.push(nowMicros - timestamps[i]!);
    }
    this.rowsSeen += rows;
  }
}

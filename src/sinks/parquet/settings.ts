/**
 * Tuning of the Parquet sink beyond the CLI's rotation and compression settings, read from the
 * environment (documented in docs/sinks/parquet.md).
 */
import { UserError } from "../../core/errors.ts";

/** The CLI's rotation and compression settings (--rotate-interval, --max-file-rows, ...). */
export interface ParquetSettings {
  /** New file at every multiple of this many seconds since the epoch (UTC boundaries). */
  readonly rotateIntervalSeconds: number;
  readonly maxFileRows: number;
  readonly maxFileBytes: number;
  readonly compression: "zstd" | "snappy" | "none";
}

export interface ParquetTuning {
  /** How often pending rows are appended to the journal and fdatasync'ed: the most a crash can lose. */
  readonly flushIntervalMs: number;
  /** Rows per row group; a row group is encoded in one go on the event loop, so keep it moderate. */
  readonly rowGroupRows: number;
  /** Longest rows wait in memory before they are written as a row group, however few they are. */
  readonly rowGroupSeconds: number;
  /** Rows held in memory across all files before `write` makes the pipeline wait (backpressure). */
  readonly maxBufferedRows: number;
  /**
   * Row groups of open files, all files together. Each one's footer metadata (~20 kB) stays in memory
   * until its file is closed; past this many, the files with the most are closed early.
   */
  readonly maxOpenRowGroups: number;
}

export const DEFAULT_TUNING: ParquetTuning = {
  flushIntervalMs: 1000,
  rowGroupRows: 16_384,
  rowGroupSeconds: 300,
  maxBufferedRows: 1_000_000,
  maxOpenRowGroups: 10_000,
};

const VARIABLES: Readonly<Record<keyof ParquetTuning, { readonly name: string; readonly min: number; readonly max: number }>> = {
  flushIntervalMs: { name: "PARQUET_FLUSH_INTERVAL_MS", min: 10, max: 60_000 },
  rowGroupRows: { name: "PARQUET_ROW_GROUP_ROWS", min: 1, max: 10_000_000 },
  rowGroupSeconds: { name: "PARQUET_ROW_GROUP_SECONDS", min: 1, max: 86_400 },
  maxBufferedRows: { name: "PARQUET_MAX_BUFFERED_ROWS", min: 1_000, max: 1_000_000_000 },
  maxOpenRowGroups: { name: "PARQUET_MAX_OPEN_ROW_GROUPS", min: 16, max: 10_000_000 },
};

/** Reads PARQUET_* tuning variables; a bad value is a UserError naming the variable and the range. */
export function parquetTuningFromEnv(env: Readonly<Record<string, string | undefined>>): ParquetTuning {
  const tuning: Record<string, number> = { ...DEFAULT_TUNING };
  for (const [key, { name, min, max }] of Object.entries(VARIABLES)) {
    const raw = env[name]?.trim();
    if (raw === undefined || raw === "") continue;
    // Digits (and _ separators) only: Number() would also take "0x10", "1e3" or "Infinity".
    const value = /^\d[\d_]*$/.test(raw) ? Number(raw.replaceAll("_", "")) : Number.NaN;
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new UserError(`invalid ${name} '${raw}': expected an integer from ${min} to ${max}`);
    }
    tuning[key] = value;
  }
  return tuning as unknown as ParquetTuning;
}

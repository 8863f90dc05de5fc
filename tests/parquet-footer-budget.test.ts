/**
 * The Parquet sink's bound on footer memory: every row group's metadata stays in memory until its file is
 * closed, so past PARQUET_MAX_OPEN_ROW_GROUPS (open and closing files together) files are closed early.
 * Before the bound, a file kept every row group until its rotation: one row per row group under memory
 * pressure meant one ~20 kB metadata object per row, for an hour.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { hyparquetMetadata, makeSink, parquetFiles, query, removeTempDirectories, tempDirectory, tradeAt } from "./support/parquet-helpers.ts";

afterAll(removeTempDirectories);

describe("open row groups", () => {
  test("past the budget files are closed early, each within budget + buffered rows / row-group rows, every row kept", async () => {
    const root = tempDirectory();
    const tuning = { rowGroupRows: 1, maxOpenRowGroups: 32, maxBufferedRows: 1000 };
    const { sink, stats } = makeSink(root, { tuning });
    await sink.start();
    const symbols = ["AUSDT", "BUSDT", "CUSDT"];
    const perSymbol = 1500;
    for (let i = 0; i < perSymbol; i++) await sink.write(symbols.map((symbol, s) => tradeAt(i * symbols.length + s, symbol)));
    await sink.close();

    const files = parquetFiles(root);
    expect(files.length).toBeGreaterThan(symbols.length);
    for (const file of files) {
      const metadata = await hyparquetMetadata(join(root, file));
      expect(metadata.row_groups.length).toBeLessThanOrEqual(tuning.maxOpenRowGroups + tuning.maxBufferedRows / tuning.rowGroupRows);
    }
    const rows = await query(
      `SELECT symbol, count(*)::INTEGER AS n, count(DISTINCT id)::INTEGER AS ids FROM read_parquet('${root}/trades/**/*.parquet', hive_partitioning = true) GROUP BY symbol ORDER BY symbol`,
    );
    expect(rows).toEqual(symbols.map((symbol) => ({ symbol, n: perSymbol, ids: perSymbol })));
    expect(stats.droppedRows).toBe(0);
  });
});

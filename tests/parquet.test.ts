/**
 * Parquet sink: what lands on disk, read back with DuckDB (hive partitioning, one glob) and hyparquet.
 * Crash recovery and the SIGKILL test are in parquet-recovery.test.ts.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { cpSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { baseAmount, type MarketEvent } from "../src/core/events.ts";
import { readJournal } from "../src/sinks/parquet/journal.ts";
import { decodePartitionValue, encodePartitionValue, journalFileName } from "../src/sinks/parquet/layout.ts";
import { PartFile } from "../src/sinks/parquet/part-file.ts";
import { TABLES } from "../src/core/tables.ts";
import type { InterruptedStream } from "../src/core/sink.ts";
import { SinkWritability } from "../src/observability/readiness.ts";
import {
  BASE_TIME,
  bboAt,
  bookAt,
  fundingAt,
  gapAt,
  hyparquetMetadata,
  liquidationAt,
  listFiles,
  makeSink,
  parquetFiles,
  pollUntil,
  query,
  readWithHyparquet,
  removeTempDirectories,
  seededRandom,
  tempDirectory,
  tradeAt,
} from "./support/parquet-helpers.ts";

afterAll(removeTempDirectories);

const HOUR = 3_600_000_000;
const DUCK_TYPE: Record<string, string> = {
  symbol: "VARCHAR",
  string: "VARCHAR",
  double: "DOUBLE",
  long: "BIGINT",
  timestamp: "TIMESTAMP WITH TIME ZONE",
  boolean: "BOOLEAN",
};

/** Rows we expect for an event, computed here from the data model (not with the sink's code). */
function expectedRows(event: MarketEvent): Record<string, unknown>[] {
  const envelope = {
    exchange: event.exchange,
    symbol: event.symbol,
    timestamp: event.timestamp,
    local_timestamp: event.localTimestamp,
  };
  switch (event.type) {
    case "trade":
    case "liquidation":
      return [
        {
          ...envelope,
          id: event.id,
          side: event.side,
          price: event.price,
          amount: event.amount,
          base_amount: event.amountUnit === "base" ? event.amount * event.contractValue : (event.amount * event.contractValue) / event.price,
        },
      ];
    case "book_change": {
      const rows: Record<string, unknown>[] = [];
      for (const [side, flat] of [["bid", event.bids], ["ask", event.asks]] as const) {
        for (let i = 0; i < flat.length; i += 2) {
          const price = flat[i]!;
          const amount = flat[i + 1]!;
          rows.push({
            ...envelope,
            is_snapshot: event.isSnapshot,
            side,
            price,
            amount,
            base_amount: event.amountUnit === "base" ? amount * event.contractValue : (amount * event.contractValue) / price,
            sequence: event.sequence,
          });
        }
      }
      return rows;
    }
    case "bbo":
      return [{ ...envelope, bid_price: event.bidPrice, bid_amount: event.bidAmount, ask_price: event.askPrice, ask_amount: event.askAmount }];
    case "funding":
      return [
        {
          ...envelope,
          mark_price: event.markPrice ?? null,
          index_price: event.indexPrice ?? null,
          funding_rate: event.fundingRate ?? null,
          next_funding_time: event.nextFundingTime ?? null,
          current_funding_rate: event.currentFundingRate ?? null,
        },
      ];
    case "gap":
      return [{ ...envelope, stream: event.stream, reason: event.reason, detail: event.detail }];
  }
}

/** Reads a table with DuckDB through one glob; timestamps as µs numbers, bigints as numbers. */
async function duckRows(directory: string, table: keyof typeof TABLES): Promise<Record<string, unknown>[]> {
  const columns = TABLES[table].map((column) =>
    column.kind === "timestamp" ? `epoch_us("${column.name}") AS "${column.name}"` : `"${column.name}"`,
  );
  const rows = await query(
    `SELECT ${columns.join(", ")}, CAST(date AS VARCHAR) AS date, filename FROM read_parquet('${directory}/${table}/**/*.parquet', hive_partitioning = true, filename = true)`,
  );
  return rows.map((row) => Object.fromEntries(Object.entries(row).map(([key, value]) => [key, typeof value === "bigint" ? Number(value) : value])));
}

const withoutFile = ({ filename: _f, date: _d, ...row }: Record<string, unknown>) => row;
const byJson = (a: unknown, b: unknown) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1);

describe("ParquetSink output", () => {
  test("every table round-trips through DuckDB and hyparquet with the documented types and partitions", async () => {
    const directory = tempDirectory();
    const { sink, stats } = makeSink(directory);
    await sink.start();
    const random = seededRandom(6);
    const oddSymbol = "ETH/USDT=PERP 1%";
    const events: MarketEvent[] = [];
    for (let i = 0; i < 600; i++) {
      const pick = random();
      if (pick < 0.3) events.push(tradeAt(i, random() < 0.5 ? "BTCUSDT" : oddSymbol));
      else if (pick < 0.5) events.push(bookAt(i, "BTC-USD-SWAP", 1 + Math.floor(random() * 4)));
      else if (pick < 0.65) events.push(bboAt(i));
      else if (pick < 0.8) events.push(fundingAt(i));
      else if (pick < 0.9) events.push(liquidationAt(i));
      else events.push(gapAt(i));
    }
    // The pipeline hands over one reused array; the sink must keep rows, not the array.
    const batch: MarketEvent[] = [];
    for (let start = 0; start < events.length; start += 64) {
      batch.length = 0;
      batch.push(...events.slice(start, start + 64));
      await sink.write(batch);
    }
    await sink.close();

    const expectedByTable = new Map<string, Record<string, unknown>[]>();
    for (const event of events) {
      const table = { trade: "trades", book_change: "l2", bbo: "bbo", funding: "funding", liquidation: "liquidations", gap: "gaps" }[event.type];
      expectedByTable.set(table, [...(expectedByTable.get(table) ?? []), ...expectedRows(event)]);
    }
    let totalRows = 0;
    for (const table of Object.keys(TABLES) as (keyof typeof TABLES)[]) {
      const expected = expectedByTable.get(table) ?? [];
      totalRows += expected.length;
      const rows = await duckRows(directory, table);
      expect(rows.map(withoutFile).sort(byJson)).toEqual([...expected].sort(byJson));
      expect(new Set(rows.map((row) => row.date))).toEqual(new Set(["2026-01-05"]));

      const described = await query(`DESCRIBE SELECT * FROM read_parquet('${directory}/${table}/**/*.parquet', hive_partitioning = true)`);
      const types = Object.fromEntries(described.map((row) => [row.column_name, row.column_type]));
      for (const column of TABLES[table]) expect(`${column.name}: ${types[column.name]}`).toBe(`${column.name}: ${DUCK_TYPE[column.kind]}`);
      expect(types.date).toBe("DATE");

      // Every file read on its own with hyparquet holds exactly the rows of its partition.
      for (const filename of new Set(rows.map((row) => row.filename as string))) {
        const fromHyparquet = await readWithHyparquet(filename);
        const fromDuck = rows.filter((row) => row.filename === filename).map(withoutFile);
        const normalized = fromHyparquet.map((row) =>
          Object.fromEntries(Object.entries(row).map(([key, value]) => [key, typeof value === "bigint" ? Number(value) : value])),
        );
        expect(normalized.sort(byJson)).toEqual(fromDuck.sort(byJson));

        const metadata = await hyparquetMetadata(filename);
        const timestamp = metadata.schema.find((element) => element.name === "timestamp")!;
        expect(timestamp.logical_type).toEqual({ type: "TIMESTAMP", isAdjustedToUTC: true, unit: "MICROS" });
        expect(metadata.schema.find((element) => element.name === "symbol")!.logical_type).toEqual({ type: "STRING" });
        for (const chunk of metadata.row_groups[0]!.columns) {
          const column = TABLES[table].find((candidate) => candidate.name === chunk.meta_data!.path_in_schema[0])!;
          expect(chunk.meta_data!.codec).toBe("ZSTD");
          if (column.kind === "symbol") expect(chunk.meta_data!.encodings).toContain("RLE_DICTIONARY");
        }
      }
    }

    // Layout: one glob per table, partitions in the path, the odd symbol encoded reversibly.
    const files = parquetFiles(directory);
    expect(files).toContain(`trades/exchange=BINANCE_FUTURES/symbol=${encodePartitionValue(oddSymbol)}/date=2026-01-05/120000-0000.parquet`);
    expect(files).toContain("l2/exchange=OKX_SWAP/symbol=BTC-USD-SWAP/date=2026-01-05/120000-0000.parquet");
    expect(encodePartitionValue(oddSymbol)).toBe("ETH%2FUSDT%3DPERP%201%25");
    expect(decodePartitionValue(encodePartitionValue(oddSymbol))).toBe(oddSymbol);
    // Nothing temporary is left once closed.
    expect(listFiles(directory)).toEqual(files);

    expect(stats.rowsWritten).toBe(totalRows);
    expect(stats.bufferedRows).toBe(0);
    expect(stats.droppedRows).toBe(0);
    expect(stats.errors).toBe(0);
    expect(stats.filesOpened).toBe(files.length);
    expect(stats.filesClosed).toBe(files.length);
  });

  test("a new file starts at every UTC hour boundary, by write or by the timer alone, and at midnight", async () => {
    const directory = tempDirectory();
    const { sink, clock } = makeSink(directory);
    await sink.start();
    clock.now = BASE_TIME + 59 * 60_000_000 + 59_900_000; // 12:59:59.9
    await sink.write(Array.from({ length: 10 }, (_, i) => tradeAt(i)));
    clock.now = BASE_TIME + HOUR; // 13:00:00.000 exactly
    await sink.write(Array.from({ length: 10 }, (_, i) => tradeAt(10 + i)));
    const partition = "trades/exchange=BINANCE_FUTURES/symbol=BTCUSDT";
    expect(await pollUntil(() => parquetFiles(directory).length === 1 && parquetFiles(directory), 5000, "12:59 file")).toEqual([
      `${partition}/date=2026-01-05/125959-0000.parquet`,
    ]);

    // No more rows: the timer alone closes the 13:00 file once its hour is over.
    clock.now = BASE_TIME + 2 * HOUR + 1;
    await pollUntil(() => parquetFiles(directory).length === 2, 5000, "13:00 file closed by the timer");

    // Across midnight the date partition changes.
    clock.now = BASE_TIME + 11 * HOUR + 59 * 60_000_000 + 59_000_000; // 23:59:59
    await sink.write([tradeAt(20)]);
    clock.now = BASE_TIME + 12 * HOUR; // 00:00:00 next day
    await sink.write([tradeAt(21)]);
    await sink.close();

    expect(parquetFiles(directory)).toEqual([
      `${partition}/date=2026-01-05/125959-0000.parquet`,
      `${partition}/date=2026-01-05/130000-0000.parquet`,
      `${partition}/date=2026-01-05/235959-0000.parquet`,
      `${partition}/date=2026-01-06/000000-0000.parquet`,
    ]);
    const ids = async (file: string) => (await readWithHyparquet(join(directory, file))).map((row) => row.id);
    expect(await ids(`${partition}/date=2026-01-05/125959-0000.parquet`)).toEqual(Array.from({ length: 10 }, (_, i) => `t${i}`));
    expect(await ids(`${partition}/date=2026-01-05/130000-0000.parquet`)).toEqual(Array.from({ length: 10 }, (_, i) => `t${10 + i}`));
    expect(await ids(`${partition}/date=2026-01-06/000000-0000.parquet`)).toEqual(["t21"]);
    const dates = await query(`SELECT DISTINCT CAST(date AS VARCHAR) AS d FROM read_parquet('${directory}/trades/**/*.parquet', hive_partitioning = true) ORDER BY d`);
    expect(dates.map((row) => row.d)).toEqual(["2026-01-05", "2026-01-06"]);
  });

  test("a shorter --rotate-interval rotates at its own boundaries", async () => {
    const directory = tempDirectory();
    const { sink, clock } = makeSink(directory, { settings: { rotateIntervalSeconds: 900 } });
    await sink.start();
    // 12:00, 12:14 | 12:15, 12:29 | 12:30 | 12:59 (the 12:30 file ended at 12:45)
    for (const minute of [0, 14, 15, 29, 30, 59]) {
      clock.now = BASE_TIME + minute * 60_000_000;
      await sink.write([tradeAt(minute)]);
    }
    await sink.close();
    expect(parquetFiles(directory).map((path) => path.split("/").at(-1))).toEqual([
      "120000-0000.parquet",
      "121500-0000.parquet",
      "123000-0000.parquet",
      "125900-0000.parquet",
    ]);
  });

  test("the row limit starts a new file without splitting an L2 message", async () => {
    const directory = tempDirectory();
    const { sink } = makeSink(directory, { settings: { maxFileRows: 100 } });
    await sink.start();
    await sink.write(Array.from({ length: 35 }, (_, i) => bookAt(i, "BTC-USD-SWAP", 3))); // 6 rows each
    await sink.close();
    const rows = await duckRows(directory, "l2");
    const files = [...new Set(rows.map((row) => row.filename as string))].sort();
    expect(files.map((file) => file.split("/").at(-1))).toEqual(["120000-0000.parquet", "120000-0001.parquet", "120000-0002.parquet"]);
    expect(files.map((file) => rows.filter((row) => row.filename === file).length)).toEqual([96, 96, 18]);
    const filesOfMessage = new Map<number, Set<string>>();
    for (const row of rows) filesOfMessage.set(row.sequence as number, (filesOfMessage.get(row.sequence as number) ?? new Set()).add(row.filename as string));
    expect([...filesOfMessage.values()].every((set) => set.size === 1)).toBe(true);
  });

  test("the byte limit starts a new file once the written row groups reach it", async () => {
    const directory = tempDirectory();
    const maxFileBytes = 4000;
    const { sink } = makeSink(directory, { settings: { maxFileBytes }, tuning: { rowGroupRows: 50 } });
    await sink.start();
    for (let start = 0; start < 600; start += 50) {
      await sink.write(Array.from({ length: 50 }, (_, i) => tradeAt(start + i)));
      await sink.flush();
    }
    await sink.close();
    const files = parquetFiles(directory);
    expect(files.length).toBeGreaterThan(1);
    let rows = 0;
    for (const file of files) {
      const metadata = await hyparquetMetadata(join(directory, file));
      rows += Number(metadata.num_rows);
      // Rotation happens as soon as the limit is reached: everything before the last row group fits.
      const beforeLast = metadata.row_groups.slice(0, -1).reduce((sum, group) => sum + Number(group.total_compressed_size), 0);
      expect(beforeLast).toBeLessThan(maxFileBytes);
    }
    expect(rows).toBe(600);
  });

  test("a restart never overwrites an existing file, even one that is not ours", async () => {
    const directory = tempDirectory();
    const partition = join(directory, "trades/exchange=BINANCE_FUTURES/symbol=BTCUSDT/date=2026-01-05");
    const first = makeSink(directory);
    await first.sink.start();
    await first.sink.write(Array.from({ length: 10 }, (_, i) => tradeAt(i)));
    await first.sink.close();
    const firstBytes = readFileSync(join(partition, "120000-0000.parquet"));

    const second = makeSink(directory); // same clock: the same second
    await second.sink.start();
    await second.sink.write(Array.from({ length: 5 }, (_, i) => tradeAt(100 + i)));
    await second.sink.close();
    writeFileSync(join(partition, "120000-0002.parquet"), "not written by xtrader");

    const third = makeSink(directory);
    await third.sink.start();
    await third.sink.write([tradeAt(200)]);
    await third.sink.close();

    expect(listFiles(partition)).toEqual(["120000-0000.parquet", "120000-0001.parquet", "120000-0002.parquet", "120000-0003.parquet"]);
    expect(readFileSync(join(partition, "120000-0000.parquet")).equals(firstBytes)).toBe(true);
    expect(readFileSync(join(partition, "120000-0002.parquet"), "utf8")).toBe("not written by xtrader");
    expect((await readWithHyparquet(join(partition, "120000-0001.parquet"))).map((row) => row.id)).toEqual(["t100", "t101", "t102", "t103", "t104"]);
    expect((await readWithHyparquet(join(partition, "120000-0003.parquet"))).map((row) => row.id)).toEqual(["t200"]);
  });

  for (const [compression, codec] of [
    ["zstd", "ZSTD"],
    ["snappy", "SNAPPY"],
    ["none", "UNCOMPRESSED"],
  ] as const) {
    test(`--compression ${compression} writes ${codec} column chunks`, async () => {
      const directory = tempDirectory();
      const { sink } = makeSink(directory, { settings: { compression } });
      await sink.start();
      await sink.write(Array.from({ length: 300 }, (_, i) => tradeAt(i)));
      await sink.close();
      const glob = `${directory}/trades/**/*.parquet`;
      const codecs = await query(`SELECT DISTINCT compression FROM parquet_metadata('${glob}')`);
      expect(codecs.map((row) => row.compression)).toEqual([codec]);
      const [summary] = await query(`SELECT count(*) AS n, sum(price) AS total FROM read_parquet('${glob}')`);
      expect(Number(summary!.n)).toBe(300);
      expect(summary!.total).toBeCloseTo(Array.from({ length: 300 }, (_, i) => tradeAt(i).price).reduce((a, b) => a + b), 6);
    });
  }
});

/** A trades file of its own, driven directly (no sink around it). */
function tradesFile(options: { root?: string; journalReplaceBytes?: number } = {}): PartFile {
  return new PartFile({
    root: options.root ?? tempDirectory(),
    table: "trades",
    exchange: "BINANCE_FUTURES",
    symbol: "BTCUSDT",
    openedAt: BASE_TIME,
    rotateAt: BASE_TIME + 3_600_000_000,
    codec: "ZSTD",
    integerReport: { invalid: 0 },
    journalReplaceBytes: options.journalReplaceBytes,
  });
}

describe("PartFile sealing", () => {
  test("a remainder commit waiting for its turn while the hot path seals the same rows writes each row once, in order", async () => {
    const file = tradesFile();
    file.add(tradeAt(0));
    await file.sync(8, false); // the file exists on disk, t0 is journaled
    for (let i = 1; i < 5; i++) file.add(tradeAt(i));
    await Bun.sleep(20); // the encoding slice has expired: the next row group waits for a turn of the event loop
    // The tick asks for the remainder (5 rows) as a row group; while it waits for its turn, more rows
    // arrive and the hot path seals a full group (8) out of the same buffer.
    const remainder = file.sync(8, true);
    for (let i = 0; i < 10; i++) await null; // the step has counted its rows and waits for its turn
    for (let i = 5; i < 10; i++) file.add(tradeAt(i));
    file.seal(8);
    await remainder;
    await file.close(8);
    const path = file.finalPath!;
    expect((await readWithHyparquet(path)).map((row) => row.id)).toEqual(Array.from({ length: 10 }, (_, i) => `t${i}`));
    expect(file.committedRows).toBe(10);
  });

  test("rows sealed while a journal append is in flight: the group takes the rows the append journaled, the journal replays exactly", async () => {
    const root = tempDirectory();
    const file = tradesFile({ root });
    file.add(tradeAt(0));
    await file.sync(8, false); // the file exists on disk, t0 is journaled
    for (let i = 1; i < 5; i++) file.add(tradeAt(i));
    const append = file.sync(8, false); // logs t1..t4
    // The log write gathers the files of a tick for one turn of the event loop, then is in flight.
    for (let i = 0; i < 10; i++) await null;
    await new Promise((resolve) => setImmediate(resolve));
    for (let i = 5; i < 10; i++) file.add(tradeAt(i));
    file.seal(8); // t0..t7 sealed at once (the append does not hold the hot path up)
    expect(file.sealedRows).toBe(8);
    await append;
    // t0..t4 are journaled, all of them now inside the sealed group; t5..t9 are not durable yet.
    expect(file.journaledRows).toBe(0);
    expect(file.durableRows).toBe(5);
    expect(file.notDurableRows).toBe(5);
    await file.sync(8, false); // writes the group (its record takes t0..t4 from the journal), journals t8, t9
    expect(file.notDurableRows).toBe(0);
    // What a crash now would recover: one row group through t7 in the file, and t8, t9 from the rows log.
    const journal = readJournal(readFileSync(join(file.workDirectory, journalFileName(file.finalName!))));
    expect(journal.rowGroups.map((group) => [group.journaled, group.through])).toEqual([[5, 8]]);
    const image = tempDirectory();
    cpSync(root, image, { recursive: true });
    const { sink, stats } = makeSink(image);
    await sink.start();
    await sink.close();
    expect(stats.errors).toBe(0);
    expect((await duckRows(image, "trades")).map((row) => row.id)).toEqual(Array.from({ length: 10 }, (_, i) => `t${i}`));
    await file.close(8);
    expect((await readWithHyparquet(file.finalPath!)).map((row) => row.id)).toEqual(Array.from({ length: 10 }, (_, i) => `t${i}`));
  });
});

describe("PartFile journal rewrite", () => {
  test("no rewrite while another sealed group holds journaled rows: a crash between two group writes loses nothing durable", async () => {
    const root = tempDirectory();
    // A 1-byte bound: every row-group commit would like to rewrite the journal.
    const file = tradesFile({ root, journalReplaceBytes: 1 });
    for (let i = 0; i < 8; i++) file.add(tradeAt(i));
    await file.sync(100, false); // t0..t7 journaled
    file.seal(4); // two groups, t0..t3 and t4..t7, both made of journaled rows
    expect(file.sealedRows).toBe(8);
    expect(file.durableRows).toBe(8);
    // A crash image after each group write of the next disk step.
    const images: string[] = [];
    const internals = file as unknown as { writeSealed: () => Promise<void> };
    const writeSealed = internals.writeSealed.bind(file);
    internals.writeSealed = async () => {
      await writeSealed();
      const image = tempDirectory();
      cpSync(root, image, { recursive: true });
      images.push(image);
    };
    await file.sync(4, false);
    expect(images).toHaveLength(2);
    // Rewriting after the first group would have kept only buffer rows (none): t4..t7, durable in the
    // journal but held by the second sealed group, would be gone after a crash at that point.
    for (const image of images) {
      const { sink, stats } = makeSink(image);
      await sink.start();
      await sink.close();
      expect(stats.errors).toBe(0);
      expect((await duckRows(image, "trades")).map((row) => row.id).sort()).toEqual(Array.from({ length: 8 }, (_, i) => `t${i}`));
    }
    await file.close(4);
  });
});

describe("PartFile sealed groups in sequence", () => {
  test("row groups sealed and written one after another read back exactly, in order", async () => {
    const file = tradesFile();
    for (let group = 0; group < 6; group++) {
      for (let i = group * 8; i < group * 8 + 8; i++) file.add(tradeAt(i));
      file.seal(8);
      await file.sync(8, false); // compressed and written before the next group is sealed
    }
    await file.close(8);
    const rows = await readWithHyparquet(file.finalPath!);
    expect(rows.map((row) => row.id)).toEqual(Array.from({ length: 48 }, (_, i) => `t${i}`));
    expect(rows.map((row) => row.price)).toEqual(Array.from({ length: 48 }, (_, i) => tradeAt(i).price));
    expect(rows.map((row) => row.amount)).toEqual(Array.from({ length: 48 }, (_, i) => tradeAt(i).amount));
  });
});

describe("PartFile page memory", () => {
  for (const codec of ["ZSTD", "UNCOMPRESSED"] as const) {
    test(`${codec}: sealed groups ending mid-message keep their rows: pages never see the rows appended after them`, async () => {
      await sealedGroupsReadBack(codec);
    });
  }

  async function sealedGroupsReadBack(codec: "ZSTD" | "UNCOMPRESSED"): Promise<void> {
    const file = new PartFile({
      root: tempDirectory(),
      table: "l2",
      exchange: "OKX_SWAP",
      symbol: "BTC-USDT-SWAP",
      openedAt: BASE_TIME,
      rotateAt: BASE_TIME + 3_600_000_000,
      codec,
      integerReport: { invalid: 0 },
    });
    // 2-10 rows a message and groups of 64: nearly every group ends inside a message, so rows follow it in
    // the buffer when it is sealed, and more are appended at once, before its pages are compressed (on the
    // thread pool for ZSTD). Promise callbacks run between messages while earlier groups still wait to be
    // written; now and then they are written. (It caught page bodies sharing memory with the buffer.)
    const books = Array.from({ length: 400 }, (_, i) => bookAt(i, "BTC-USDT-SWAP", 1 + (i % 5)));
    for (const [i, book] of books.entries()) {
      file.add(book);
      file.seal(64);
      await Bun.sleep(0);
      if (i % 150 === 149) await file.sync(64, false);
    }
    await file.close(64);
    const levels = books.flatMap((book) =>
      [...pairs(book.bids), ...pairs(book.asks)].map(([price, amount]) => ({ price, amount, base: baseAmount(book, price, amount) })),
    );
    const rows = await readWithHyparquet(file.finalPath!);
    expect(rows.length).toBe(levels.length);
    expect(rows.map((row) => row.price)).toEqual(levels.map((level) => level.price));
    expect(rows.map((row) => row.amount)).toEqual(levels.map((level) => level.amount));
    expect(rows.map((row) => row.base_amount)).toEqual(levels.map((level) => level.base));
    const meta = await hyparquetMetadata(file.finalPath!);
    expect(meta.row_groups.length).toBeGreaterThan(20);
  }
});

function pairs(flat: readonly number[]): [number, number][] {
  return Array.from({ length: flat.length >> 1 }, (_, i) => [flat[2 * i]!, flat[2 * i + 1]!]);
}

describe("PartFile footer", () => {
  test("a footer the hand-written Thrift writer does not take is written by hyparquet-writer, and reads back", async () => {
    const files = [tradesFile(), tradesFile()];
    for (const file of files) {
      for (let i = 0; i < 30; i++) file.add({ ...tradeAt(i), id: `trade-identifier-longer-than-sixteen-bytes-${i}` });
      await file.sync(8, false);
    }
    // A statistics truncation length of its own is one thing thrift.ts leaves to hyparquet-writer.
    (files[1] as unknown as { parquet: { statisticsTruncateLength: number } }).parquet.statisticsTruncateLength = 64;
    for (const file of files) await file.close(8);
    const [ours, fallback] = await Promise.all(files.map((file) => readWithHyparquet(file.finalPath!)));
    expect(ours!.map((row) => row.id)).toEqual(Array.from({ length: 30 }, (_, i) => `trade-identifier-longer-than-sixteen-bytes-${i}`));
    expect(fallback).toEqual(ours!);
    // The fallback really ran: its string statistics are longer than thrift.ts's 16 bytes.
    const [oursMeta, fallbackMeta] = await Promise.all(files.map((file) => hyparquetMetadata(file.finalPath!)));
    const maxId = (meta: Awaited<ReturnType<typeof hyparquetMetadata>>) => meta.row_groups[0]!.columns.find((c) => c.meta_data!.path_in_schema[0] === "id")!.meta_data!.statistics!.max_value as string;
    expect(maxId(oursMeta).length).toBeLessThanOrEqual(16);
    expect(maxId(fallbackMeta).length).toBeGreaterThan(16);
  });
});

describe("ParquetSink close", () => {
  test("a file busy with a disk step at shutdown starts closing when that step ends, not after every other close", async () => {
    const directory = tempDirectory();
    const { sink, stats } = makeSink(directory, { tuning: { flushIntervalMs: 60_000 } });
    await sink.start();
    await sink.write([tradeAt(0, "BUSYUSDT"), tradeAt(1, "SLOWUSDT")]);
    await sink.flush(); // both files exist on disk
    const files = (sink as unknown as { files: Map<string, Map<string, Map<string, PartFile>>> }).files.get("trades")!.get("BINANCE_FUTURES")!;
    const busy = files.get("BUSYUSDT")!;
    const slow = files.get("SLOWUSDT")!;
    // BUSY's disk step (a journal append) stays in flight until released; SLOW's close until released.
    const gate = () => {
      let open!: () => void;
      return { opened: new Promise<void>((resolve) => (open = resolve)), open: () => open() };
    };
    const busyStep = gate();
    const slowClose = gate();
    const sync = busy.sync.bind(busy);
    busy.sync = async (...args) => {
      await busyStep.opened;
      return sync(...args);
    };
    const close = slow.close.bind(slow);
    slow.close = async (...args) => {
      await slowClose.opened;
      return close(...args);
    };
    let busyCloseStarted = false;
    const busyClose = busy.close.bind(busy);
    busy.close = (...args) => {
      busyCloseStarted = true;
      return busyClose(...args);
    };
    await sink.write([tradeAt(2, "BUSYUSDT")]);
    const flushed = sink.flush(); // launches BUSY's step, which now waits at the gate
    const closed = sink.close();
    await Bun.sleep(20);
    expect(busyCloseStarted).toBe(false); // its step is still running
    busyStep.open();
    await pollUntil(() => busyCloseStarted, 5000, "BUSY's close to start while SLOW's close is still running");
    slowClose.open();
    await Promise.all([flushed, closed]);
    expect(stats.filesClosed).toBe(2); // each file closed once
    expect(stats.errors).toBe(0);
    expect((await duckRows(directory, "trades")).map((row) => row.id).sort()).toEqual(["t0", "t1", "t2"]);
  });
});

describe("ParquetSink disk faults", () => {
  test("a write error is reported and counted, rows wait in memory, and writing resumes when the disk recovers", async () => {
    const directory = tempDirectory();
    // A regular file where the table directory must go: every mkdir below it fails with ENOTDIR.
    writeFileSync(join(directory, "trades"), "in the way");
    const { sink, stats, logs } = makeSink(directory);
    await sink.start();
    await sink.write(Array.from({ length: 20 }, (_, i) => tradeAt(i)));
    await pollUntil(() => stats.errors >= 2, 5000, "failed write attempts");
    expect(stats.outageSince).toBeGreaterThan(0);
    expect(stats.rowsWritten).toBe(0);
    expect(stats.bufferedRows).toBe(20);
    expect(logs.some((line) => line.startsWith("error:") && line.includes("cannot write") && line.includes("ENOTDIR"))).toBe(true);
    // Other tables are not held up by the broken one.
    await sink.write([bboAt(1)]);
    await sink.write(Array.from({ length: 5 }, (_, i) => tradeAt(20 + i)));

    rmSync(join(directory, "trades"));
    await pollUntil(() => stats.outageSince === 0, 5000, "recovery from the disk error");
    expect(logs.some((line) => line.includes("writing again"))).toBe(true);
    await sink.close();

    expect(stats.outageSecondsTotal).toBeGreaterThan(0);
    expect(stats.droppedRows).toBe(0);
    expect(stats.rowsWritten).toBe(26);
    const rows = await duckRows(directory, "trades");
    expect(rows.map((row) => row.id).sort()).toEqual(Array.from({ length: 25 }, (_, i) => `t${i}`).sort());
  });

  test("past the memory bound, write() holds the pipeline until the disk takes rows again", async () => {
    const directory = tempDirectory();
    writeFileSync(join(directory, "trades"), "in the way");
    const { sink, stats, logs } = makeSink(directory, { tuning: { maxBufferedRows: 1000, rowGroupRows: 200 } });
    await sink.start();
    let released = false;
    const pending = Promise.resolve(sink.write(Array.from({ length: 1200 }, (_, i) => tradeAt(i)))).then(() => {
      released = true;
    });
    await pollUntil(() => stats.errors >= 3, 5000, "retries while the disk is broken");
    expect(released).toBe(false);
    expect(logs.some((line) => line.includes("holding the pipeline"))).toBe(true);

    rmSync(join(directory, "trades"));
    await pending;
    expect(released).toBe(true);
    await sink.close();
    expect((await duckRows(directory, "trades")).length).toBe(1200);
  });

  test("close() gives up on a disk that never recovers, and reports what is lost, per table", async () => {
    const directory = tempDirectory();
    writeFileSync(join(directory, "trades"), "in the way");
    const { sink, stats, logs } = makeSink(directory, { closeTimeoutMs: 100 });
    await sink.start();
    await sink.write(Array.from({ length: 7 }, (_, i) => tradeAt(i)));
    expect(await sink.close()).toEqual({ lostRows: { trades: 7 }, keptRows: 0, keptWhere: undefined });
    expect(logs.some((line) => line.includes("7 row(s) are lost"))).toBe(true);
    expect(stats.droppedRows).toBe(7);
    expect(() => sink.write([tradeAt(8)])).toThrow("closed");
  });
});

describe("ParquetSink disk fault logging", () => {
  test("one table failing while others write: one line for the episode, 'writing again' once, when every file writes again", async () => {
    const directory = tempDirectory();
    // trades cannot be created (ENOTDIR: a regular file where its directory must go); bbo writes fine.
    writeFileSync(join(directory, "trades"), "in the way");
    const { sink, stats, logs } = makeSink(directory);
    await sink.start();
    // Both tables get rows for many flush ticks: every tick fails trades and succeeds bbo.
    for (let i = 0; i < 25; i++) {
      await sink.write([tradeAt(i), bboAt(i)]);
      await pollUntil(() => stats.errors > i, 5000, `failure ${i + 1}`);
    }
    expect(stats.outageSince).toBeGreaterThan(0);
    const faultLines = () => logs.filter((line) => /cannot write|writing again/.test(line));
    expect(faultLines()).toHaveLength(1);
    expect(faultLines()[0]).toStartWith("error: parquet: cannot write in");

    rmSync(join(directory, "trades"));
    await pollUntil(() => stats.outageSince === 0, 5000, "the end of the outage");
    const writingAgain = logs.filter((line) => line.includes("writing again"));
    expect(writingAgain).toHaveLength(1);
    expect(Number(/\((\d+) failure\(s\)\)/.exec(writingAgain[0]!)![1])).toBeGreaterThanOrEqual(25);
    await sink.close();
    expect((await duckRows(directory, "trades")).length).toBe(25);
    expect((await duckRows(directory, "bbo")).length).toBe(25);
  });
});

describe("ParquetSink output directory deleted while running", () => {
  /** The rows of `table` per file in file order, with `file_row_number`. */
  const rowsByFile = (root: string, table: string, columns: string) =>
    query(`SELECT filename, file_row_number, ${columns} FROM read_parquet('${root}/${table}/**/*.parquet', hive_partitioning = true, filename = true, file_row_number = true) ORDER BY filename, file_row_number`);

  test("found on the next tick: the loss is marked by output_lost gaps, books restart from a snapshot, rows after it are stored", async () => {
    const root = join(tempDirectory(), "data");
    const { sink, stats, logs } = makeSink(root);
    const lost: InterruptedStream[] = [];
    sink.onStreamsLost((streams) => lost.push(...streams));
    const writable = new SinkWritability(stats);
    await sink.start();
    // Before: 100 trades, book messages 0..9 (0 a snapshot, 6 rows each), 10 BBO rows; all durable.
    await sink.write(Array.from({ length: 100 }, (_, i) => tradeAt(i)));
    await sink.write(Array.from({ length: 10 }, (_, i) => bookAt(i)));
    await sink.write(Array.from({ length: 10 }, (_, i) => bboAt(i)));
    await sink.flush();
    expect(writable.problem()).toBeUndefined();

    rmSync(root, { recursive: true });
    // Writes into the deleted files still succeed: only the check on the flush tick can tell.
    await pollUntil(() => writable.problem() !== undefined, 5000, "the sink to report itself not writable");
    expect(lost.map((stream) => `${stream.stream}:${stream.exchange}@${stream.symbol}`).sort()).toEqual([
      "BBO:DERIBIT@BTC-PERPETUAL",
      "L2:OKX_SWAP@BTC-USD-SWAP",
      "TRADES:BINANCE_FUTURES@BTCUSDT",
    ]);
    expect(stats.droppedRows).toBe(100 + 60 + 10);
    expect(logs.filter((line) => line.includes("deleted or moved away"))).toHaveLength(1);

    // After: trades go on; the book's deltas are dropped until its next snapshot (message 50).
    await sink.write(Array.from({ length: 50 }, (_, i) => tradeAt(100 + i)));
    await sink.write(Array.from({ length: 50 }, (_, i) => bookAt(10 + i)));
    await sink.write(Array.from({ length: 5 }, (_, i) => bboAt(10 + i)));
    await sink.flush();
    expect(writable.problem()).toBeUndefined(); // the recreated tree takes rows again
    await sink.close(); // nothing left to promise: it closes cleanly
    expect(stats.droppedRows).toBe(100 + 60 + 10 + 40 * 6);
    expect(listFiles(root).filter((path) => path.split("/").at(-1)!.startsWith("."))).toEqual([]);

    expect((await duckRows(root, "trades")).map((row) => row.id)).toEqual(Array.from({ length: 50 }, (_, i) => `t${100 + i}`));
    expect((await duckRows(root, "bbo")).length).toBe(5);
    const book = await rowsByFile(root, "l2", "is_snapshot, sequence");
    expect([...new Set(book.map((row) => Number(row.sequence)))]).toEqual(Array.from({ length: 10 }, (_, i) => bookAt(50 + i).sequence));
    for (const row of book.filter((row) => Number(row.file_row_number) === 0)) expect(row.is_snapshot).toBe(true);

    const gaps = await duckRows(root, "gaps");
    expect(gaps.map((gap) => `${gap.stream}:${gap.reason}`).sort()).toEqual(["BBO:output_lost", "L2:output_lost", "TRADES:output_lost"]);
    const tradeGap = gaps.find((gap) => gap.stream === "TRADES")!;
    expect(tradeGap.detail).toContain("100 row(s)");
    // Between the lost rows and the kept ones: stamped with the last lost row's receive time.
    expect(tradeGap.local_timestamp).toBe(tradeAt(99).localTimestamp);
  });

  test("a book file started with deltas after the deletion (a rotation) goes with the lost one", async () => {
    const root = join(tempDirectory(), "data");
    // No tick: the loss is found when the rotated file's close fails to name it.
    const { sink, stats, clock } = makeSink(root, { tuning: { flushIntervalMs: 60_000 } });
    await sink.start();
    await sink.write(Array.from({ length: 10 }, (_, i) => bookAt(i)));
    await sink.flush();
    rmSync(root, { recursive: true });
    // The hour ends: the next deltas start a new file in a recreated tree, with no snapshot before them.
    clock.now += HOUR;
    await sink.write(Array.from({ length: 5 }, (_, i) => bookAt(10 + i)));
    await sink.flush();
    await pollUntil(() => stats.droppedRows === 15 * 6, 5000, "both files to be dropped");
    await sink.write([bookAt(50), bookAt(51)]);
    await sink.close();
    const book = await rowsByFile(root, "l2", "is_snapshot, sequence");
    expect([...new Set(book.map((row) => Number(row.sequence)))]).toEqual([bookAt(50).sequence, bookAt(51).sequence]);
    expect(book[0]!.is_snapshot).toBe(true);
    expect(listFiles(root).filter((path) => path.startsWith("l2/"))).toHaveLength(1);
    const gaps = await duckRows(root, "gaps");
    expect(gaps.map((gap) => `${gap.stream}:${gap.reason}`)).toEqual(["L2:output_lost"]);
    expect(gaps[0]!.detail).toContain("90 row(s)");
  });

  test("deleted just before the stop: close() marks the loss and promises no recovery", async () => {
    const root = join(tempDirectory(), "data");
    const { sink, stats, logs } = makeSink(root, { tuning: { flushIntervalMs: 60_000 }, closeTimeoutMs: 300 });
    await sink.start();
    await sink.write(Array.from({ length: 30 }, (_, i) => tradeAt(i)));
    await sink.flush();
    await sink.write(Array.from({ length: 5 }, (_, i) => tradeAt(30 + i)));
    rmSync(root, { recursive: true });
    await sink.close();
    expect(stats.droppedRows).toBe(35);
    expect(logs.some((line) => line.includes("next start recovers"))).toBe(false);
    expect(listFiles(root).filter((path) => path.split("/").at(-1)!.startsWith("."))).toEqual([]);
    const gaps = await duckRows(root, "gaps");
    expect(gaps.map((gap) => `${gap.stream}:${gap.reason}:${gap.symbol}`)).toEqual(["TRADES:output_lost:BTCUSDT"]);
    expect(gaps[0]!.detail).toContain("35 row(s)");
  });
});

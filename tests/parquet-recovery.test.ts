/**
 * Crash safety of the Parquet sink: a child process killed with SIGKILL mid-stream, and crash images
 * (copies of the output directory taken while a sink is running, as a power cut would leave it) with
 * the torn writes a crash can add. A new sink's start() must turn each into valid files.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { appendFileSync, cpSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { open } from "node:fs/promises";
import { NumberColumn, PER_EVENT_COLUMNS, rowAppender, TableBuffer } from "../src/sinks/parquet/columns.ts";
import { decodePositionedRows, decodeRows, headerRecord, JOURNAL_FORMAT, JOURNAL_VERSION, readJournal, rowsRecord } from "../src/sinks/parquet/journal.ts";
import { journalFileName, nextJournalFileName, tempFileName } from "../src/sinks/parquet/layout.ts";
import { PartFile } from "../src/sinks/parquet/part-file.ts";
import { isRowsLogName, readRowsLogs } from "../src/sinks/parquet/rows-log.ts";
import { TABLES } from "../src/core/tables.ts";
import {
  BASE_TIME,
  bookAt,
  fundingAt,
  listFiles,
  makeSink,
  markInterrupted,
  parquetFiles,
  query,
  readWithHyparquet,
  removeTempDirectories,
  seededRandom,
  tempDirectory,
  tradeAt,
} from "./support/parquet-helpers.ts";

afterAll(removeTempDirectories);

const PARTITION = "trades/exchange=BINANCE_FUTURES/symbol=BTCUSDT/date=2026-01-05";
/** Where the files being written of PARTITION are: the work directory at the root (layout.ts). */
const WORK = `.inprogress/${PARTITION}`;
const NAME = "120000-0000.parquet";
const ids = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `t${from + i}`);

/**
 * Runs a sink that has written 3 row groups (300 rows) and journaled 50 more, with 20 rows only in
 * memory, then copies its directory: what a power cut at that moment would leave.
 */
async function crashImage(): Promise<string> {
  const live = tempDirectory();
  // A long flush interval: only the explicit flush() below makes rows durable.
  const { sink } = makeSink(live, { tuning: { rowGroupRows: 100, flushIntervalMs: 60_000 } });
  await sink.start();
  await sink.write(Array.from({ length: 350 }, (_, i) => tradeAt(i)));
  await sink.flush();
  await sink.write(Array.from({ length: 20 }, (_, i) => tradeAt(350 + i)));
  const image = tempDirectory();
  cpSync(live, image, { recursive: true });
  await sink.close();
  return image;
}

async function tradeIds(directory: string): Promise<string[]> {
  const rows = await query(
    `SELECT id FROM read_parquet('${directory}/trades/**/*.parquet', hive_partitioning = true) ORDER BY timestamp, filename`,
  );
  return rows.map((row) => row.id as string);
}

describe("ParquetSink crash recovery", () => {
  test("a child killed with SIGKILL mid-stream loses nothing it had made durable", async () => {
    const directory = tempDirectory();
    const child = Bun.spawn([process.execPath, "tests/support/parquet-writer-child.ts", directory, "50", "500"], {
      cwd: join(import.meta.dir, ".."),
      stdout: "pipe",
      stderr: "pipe",
    });
    let durable = 0;
    const reader = child.stdout.getReader();
    const decoder = new TextDecoder();
    let text = "";
    // Wait until several row groups are on disk and more rows are journaled, then kill mid-stream.
    while (durable < 6000) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`child exited early: ${await new Response(child.stderr).text()}`);
      text += decoder.decode(value);
      const lines = text.split("\n");
      text = lines.pop()!;
      for (const line of lines) if (line.startsWith("durable ")) durable = Number(line.slice(8));
    }
    child.kill("SIGKILL");
    await child.exited;
    expect(child.signalCode).toBe("SIGKILL");
    expect(listFiles(directory).some((path) => path.endsWith(".journal"))).toBe(true);

    const { sink, logs } = makeSink(directory);
    await sink.start();
    await markInterrupted(sink);
    await sink.close();
    expect(sink.recovery!.lostRows).toBe(0);
    expect(sink.recovery!.unrecoverable).toEqual([]);
    expect(sink.recovery!.recoveredFiles.length).toBeGreaterThanOrEqual(3);
    expect(logs.some((line) => line.includes("completed"))).toBe(true);
    // Only complete files remain (the gap rows marking the kill are durable: nothing is owed any more).
    expect(listFiles(directory)).toEqual(parquetFiles(directory));

    // Every stream is an exact, gap-free prefix of what the child generated.
    let total = 0;
    for (const symbol of ["BTCUSDT", "ETHUSDT"]) {
      const rows = await query(
        `SELECT id, epoch_us(timestamp) AS ts, price, amount, side FROM read_parquet('${directory}/trades/**/*.parquet', hive_partitioning = true) WHERE symbol = '${symbol}' ORDER BY ts`,
      );
      total += rows.length;
      expect(rows.length).toBeGreaterThan(0);
      rows.forEach((row, i) => {
        const trade = tradeAt(i, symbol);
        expect({ id: row.id, ts: Number(row.ts), price: row.price, amount: row.amount, side: row.side }).toEqual({
          id: trade.id,
          ts: trade.timestamp,
          price: trade.price,
          amount: trade.amount,
          side: trade.side,
        });
      });
    }
    const books = await query(
      `SELECT sequence, count(*) AS levels, bool_and(is_snapshot = (sequence % 50 = 0)) AS snapshot_ok FROM read_parquet('${directory}/l2/**/*.parquet', hive_partitioning = true) GROUP BY sequence ORDER BY sequence`,
    );
    books.forEach((row, i) => {
      expect(Number(row.sequence)).toBe(bookAt(i).sequence);
      // A row group may end inside a message, so the last message can lose its tail with the rows of the
      // last flush interval (docs/sinks/parquet.md: the unclean_stop gap marks it); every other is whole.
      if (i < books.length - 1) expect(Number(row.levels)).toBe(6);
      else expect(Number(row.levels)).toBeGreaterThan(0);
      expect(row.snapshot_ok).toBe(true);
      total += Number(row.levels);
    });
    // At most the rows after the last flush the child saw complete are missing.
    expect(total).toBeGreaterThanOrEqual(durable);

    // hyparquet reads every recovered file too.
    for (const file of parquetFiles(directory)) expect((await readWithHyparquet(join(directory, file))).length).toBeGreaterThan(0);
  });

  test("a restart killed right after its recovery leaves the unclean_stop markers to the next start", async () => {
    const image = await crashImage();
    const child = Bun.spawn([process.execPath, "tests/support/parquet-restart-child.ts", image], {
      cwd: join(import.meta.dir, ".."),
      stdout: "pipe",
      stderr: "pipe",
    });
    const reader = child.stdout.getReader();
    let text = "";
    while (!text.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`child exited early: ${await new Response(child.stderr).text()}`);
      text += new TextDecoder().decode(value);
    }
    // The restart recovered the file (its leftovers are gone) and was given its gap row, not yet durable.
    expect(text).toBe("marked 1\n");
    child.kill("SIGKILL");
    await child.exited;
    expect(listFiles(join(image, PARTITION))).toEqual([NAME]);

    const { sink } = makeSink(image);
    await sink.start();
    expect(sink.interruptedStreams()).toEqual([{ exchange: "BINANCE_FUTURES", symbol: "BTCUSDT", stream: "TRADES" }]);
    await markInterrupted(sink, BASE_TIME + 1);
    await sink.close();
    const gaps = await query(
      `SELECT stream, reason, exchange, symbol FROM read_parquet('${image}/gaps/**/*.parquet', hive_partitioning = true)`,
    );
    expect(gaps).toEqual([{ stream: "TRADES", reason: "unclean_stop", exchange: "BINANCE_FUTURES", symbol: "BTCUSDT" }]);
    expect(await tradeIds(image)).toEqual(ids(0, 350));
    // Marked durably once: the next start owes nothing.
    expect(listFiles(image).filter((path) => !path.endsWith(".parquet"))).toEqual([]);
    const { sink: again } = makeSink(image);
    await again.start();
    expect(again.interruptedStreams()).toEqual([]);
    await again.close();
  });

  test("a power-cut image: row groups and journaled rows come back, unflushed rows are the only loss", async () => {
    const image = await crashImage();
    const leftovers = listFiles(join(image, WORK));
    expect(leftovers).toEqual([journalFileName(NAME), tempFileName(NAME)]);
    // A file being written is not in its table's tree: a reader of the table sees finished files only.
    expect(existsSync(join(image, "trades"))).toBe(false);

    const { sink, stats, logs } = makeSink(image);
    await sink.start();
    expect(sink.recovery).toEqual({
      recoveredFiles: [join(image, PARTITION, NAME)],
      recoveredRows: 350,
      lostRows: 0,
      unrecoverable: [],
      interrupted: [{ table: "trades", exchange: "BINANCE_FUTURES", symbol: "BTCUSDT" }],
    });
    // The stream the dead run had open: the pipeline marks it with an unclean_stop gap.
    expect(sink.interruptedStreams()).toEqual([{ exchange: "BINANCE_FUTURES", symbol: "BTCUSDT", stream: "TRADES" }]);
    expect(logs.some((line) => line.includes("3 row group(s) from the temporary file, 50 row(s) from the journal"))).toBe(true);
    // Writing on after recovery takes a new name and leaves the recovered file alone.
    await sink.write([tradeAt(1000)]);
    await sink.close();
    expect(stats.errors).toBe(0);
    expect(listFiles(join(image, PARTITION))).toEqual([NAME, "120000-0001.parquet"]);
    expect(listFiles(join(image, ".inprogress"))).toEqual([]);
    expect((await readWithHyparquet(join(image, PARTITION, NAME))).map((row) => row.id)).toEqual(ids(0, 350));
    expect(await tradeIds(image)).toEqual([...ids(0, 350), "t1000"]);
  });

  test("a stream left open in two date partitions (a kill around midnight) is one interrupted stream", async () => {
    const image = await crashImage();
    cpSync(join(image, WORK), join(image, WORK.replace("date=2026-01-05", "date=2026-01-06")), { recursive: true });
    const { sink } = makeSink(image);
    await sink.start();
    expect(sink.recovery!.interrupted).toHaveLength(2);
    expect(sink.interruptedStreams()).toEqual([{ exchange: "BINANCE_FUTURES", symbol: "BTCUSDT", stream: "TRADES" }]);
    await sink.close();
  });

  test("streams of the venues the sink is given are marked, whatever the venue; a partition of another exchange is not", async () => {
    const image = await crashImage();
    // A venue added to the registry after this sink's code was written, and a directory someone else made.
    cpSync(join(image, WORK), join(image, WORK.replace("BINANCE_FUTURES", "NEW_VENUE")), { recursive: true });
    cpSync(join(image, WORK), join(image, WORK.replace("BINANCE_FUTURES", "STRANGER")), { recursive: true });
    const { sink } = makeSink(image, { exchanges: ["BINANCE_FUTURES", "NEW_VENUE"] });
    await sink.start();
    expect(sink.recovery!.interrupted).toHaveLength(3);
    const byExchange = (a: { exchange: string }, b: { exchange: string }) => a.exchange.localeCompare(b.exchange);
    expect(sink.interruptedStreams().toSorted(byExchange)).toEqual([
      { exchange: "BINANCE_FUTURES", symbol: "BTCUSDT", stream: "TRADES" },
      { exchange: "NEW_VENUE", symbol: "BTCUSDT", stream: "TRADES" },
    ]);
    await sink.close();
  });

  test("rows log segments: a quiet file's rows move to the new segment, old segments go, and every image recovers exactly", async () => {
    const live = tempDirectory();
    // Tiny segments: every flush of the busy file starts a new one.
    const { sink } = makeSink(live, { tuning: { rowGroupRows: 10_000, flushIntervalMs: 60_000 }, rowsLogSegmentBytes: 1024 });
    await sink.start();
    const quiet = Array.from({ length: 5 }, (_, i) => ({ ...tradeAt(i), symbol: "ETHUSDT", id: `q${i}` }));
    await sink.write(quiet);
    await sink.flush(); // the quiet file's only rows, in the first segment
    const images: { image: string; busyRows: number }[] = [];
    for (let step = 0; step < 6; step++) {
      await sink.write(Array.from({ length: 40 }, (_, i) => tradeAt(step * 40 + i)));
      await sink.flush();
      const segments = listFiles(join(live, ".inprogress")).filter(isRowsLogName);
      // The quiet file logged its rows again into the newest segment, so older ones were removed.
      expect(segments.length).toBeLessThanOrEqual(2);
      const image = tempDirectory();
      cpSync(live, image, { recursive: true });
      images.push({ image, busyRows: (step + 1) * 40 });
    }
    await sink.close();
    expect(listFiles(join(live, ".inprogress")).filter(isRowsLogName)).toEqual([]);
    for (const { image, busyRows } of images) {
      const { sink: recovering, stats } = makeSink(image);
      await recovering.start();
      await recovering.close();
      expect(stats.errors).toBe(0);
      expect(recovering.recovery).toMatchObject({ recoveredRows: busyRows + quiet.length, lostRows: 0 });
      const rows = await query(`SELECT id, symbol FROM read_parquet('${image}/trades/**/*.parquet', hive_partitioning = true) ORDER BY timestamp, filename`);
      expect(rows.filter((row) => row.symbol === "ETHUSDT").map((row) => row.id)).toEqual(quiet.map((trade) => trade.id));
      expect(rows.filter((row) => row.symbol === "BTCUSDT").map((row) => row.id)).toEqual(ids(0, busyRows));
      // Recovery read every segment and removed them.
      expect(listFiles(join(image, ".inprogress")).filter(isRowsLogName)).toEqual([]);
    }
  });

  test("a rows log segment deleted under the sink: a new one takes over and every file logs its rows again", async () => {
    const live = tempDirectory();
    const { sink } = makeSink(live, { tuning: { rowGroupRows: 10_000, flushIntervalMs: 60_000 } });
    await sink.start();
    await sink.write(Array.from({ length: 30 }, (_, i) => tradeAt(i)));
    await sink.flush();
    const [deleted] = listFiles(join(live, ".inprogress")).filter(isRowsLogName);
    rmSync(join(live, ".inprogress", deleted!));
    await sink.write(Array.from({ length: 20 }, (_, i) => tradeAt(30 + i)));
    await sink.flush(); // into the deleted segment; the check after it finds the path gone
    await Bun.sleep(50);
    await sink.write([tradeAt(50)]);
    await sink.flush(); // a new segment, with every pending row
    const segments = listFiles(join(live, ".inprogress")).filter(isRowsLogName);
    expect(segments).toHaveLength(1);
    expect(segments[0]).not.toBe(deleted);
    const image = tempDirectory();
    cpSync(live, image, { recursive: true });
    await sink.close();
    const { sink: recovering, stats } = makeSink(image);
    await recovering.start();
    await recovering.close();
    expect(stats.errors).toBe(0);
    // t0..t49 were only in the deleted segment until they were logged again.
    expect(await tradeIds(image)).toEqual(ids(0, 51));
  });

  test("row groups sealed from journaled rows: images before and after the group is written recover exactly the durable rows", async () => {
    const live = tempDirectory();
    const { sink } = makeSink(live, { tuning: { rowGroupRows: 100, flushIntervalMs: 60_000 } });
    await sink.start();
    await sink.write(Array.from({ length: 60 }, (_, i) => tradeAt(i)));
    await sink.flush(); // t0..t59 journaled
    // Fills the buffer past a row group: t0..t99 are sealed at once (60 of them journaled), t100..t139 wait.
    await sink.write(Array.from({ length: 80 }, (_, i) => tradeAt(60 + i)));
    const beforeWrite = tempDirectory();
    cpSync(live, beforeWrite, { recursive: true });
    await sink.flush(); // the group is written (its record takes the 60 journaled rows), t100..t139 journaled
    await sink.write(Array.from({ length: 30 }, (_, i) => tradeAt(140 + i)));
    await sink.flush();
    const afterWrite = tempDirectory();
    cpSync(live, afterWrite, { recursive: true });
    await sink.close();
    expect(await tradeIds(live)).toEqual(ids(0, 170));

    for (const [image, rows] of [
      [beforeWrite, 60],
      [afterWrite, 170],
    ] as const) {
      const { sink: recovering, stats } = makeSink(image);
      await recovering.start();
      await recovering.close();
      expect(stats.errors).toBe(0);
      expect(recovering.recovery).toMatchObject({ recoveredRows: rows, lostRows: 0 });
      expect(await tradeIds(image)).toEqual(ids(0, rows));
    }
  });

  test("journals rewritten past their size bound (sealed trades, hyparquet-writer funding) recover exactly the durable rows", async () => {
    const live = tempDirectory();
    // A tiny bound: every row group after the first rewrites its journal.
    const { sink } = makeSink(live, { tuning: { rowGroupRows: 100, flushIntervalMs: 60_000 }, journalReplaceBytes: 2048 });
    await sink.start();
    for (let step = 0; step < 5; step++) {
      // 70 rows per step: journaled by the flush, then part of the next row group (journaled and not).
      await sink.write(Array.from({ length: 70 }, (_, i) => tradeAt(step * 70 + i)));
      await sink.write(Array.from({ length: 70 }, (_, i) => fundingAt(step * 70 + i)));
      await sink.flush();
    }
    const image = tempDirectory();
    cpSync(live, image, { recursive: true });
    await sink.close();
    const journals = listFiles(image).filter((name) => name.endsWith(".journal"));
    expect(journals).toHaveLength(2);
    // Rewritten journals hold the pending rows only, so they stay small (an append-only one would not).
    for (const journal of journals) expect(readFileSync(join(image, journal)).length).toBeLessThan(20_000);

    const { sink: recovering, stats } = makeSink(image);
    await recovering.start();
    await recovering.close();
    expect(stats.errors).toBe(0);
    expect(recovering.recovery).toMatchObject({ recoveredRows: 700, lostRows: 0 });
    expect(await tradeIds(image)).toEqual(ids(0, 350));
    const funding = await query(`SELECT timestamp FROM read_parquet('${image}/funding/**/*.parquet') ORDER BY timestamp`);
    // DuckDB hands timestamps back as milliseconds; the funding rows are 1 ms apart.
    expect(funding.map((row) => Number(row.timestamp))).toEqual(Array.from({ length: 350 }, (_, i) => BASE_TIME / 1000 + i));
  });

  test("a torn journal tail and a half-written replacement journal are ignored", async () => {
    const image = await crashImage();
    const random = seededRandom(42);
    appendFileSync(join(image, WORK, journalFileName(NAME)), Uint8Array.from({ length: 37 }, () => Math.floor(random() * 256)));
    writeFileSync(join(image, WORK, nextJournalFileName(NAME)), "half a journal");
    const { sink, logs } = makeSink(image);
    await sink.start();
    await sink.close();
    expect(sink.recovery!.recoveredRows).toBe(350);
    expect(logs.some((line) => line.startsWith("warn:") && line.includes("37 byte(s)"))).toBe(true);
    expect(listFiles(join(image, PARTITION))).toEqual([NAME]);
    expect(listFiles(join(image, ".inprogress"))).toEqual([]);
    expect(await tradeIds(image)).toEqual(ids(0, 350));
  });

  test("bytes of a row group the journal never recorded are cut off", async () => {
    const image = await crashImage();
    // A crash after a row group's bytes hit the disk but before the journal was replaced.
    appendFileSync(join(image, WORK, tempFileName(NAME)), new Uint8Array(5000).fill(7));
    const { sink } = makeSink(image);
    await sink.start();
    await sink.close();
    expect(sink.recovery!.recoveredRows).toBe(350);
    expect(await tradeIds(image)).toEqual(ids(0, 350));
  });

  test("a temporary file shorter than its journal says: journaled rows recovered, lost row groups reported", async () => {
    const image = await crashImage();
    truncateSync(join(image, WORK, tempFileName(NAME)), 100);
    const { sink, logs } = makeSink(image);
    await sink.start();
    await sink.close();
    expect(sink.recovery!.lostRows).toBe(300);
    expect(sink.recovery!.recoveredRows).toBe(50);
    expect(logs.some((line) => line.startsWith("error:") && line.includes("300 row(s) in 3 row group(s)") && line.includes("are lost"))).toBe(true);
    expect(await tradeIds(image)).toEqual(ids(300, 350));
  });

  test("leftovers beside a file that was already named are removed; the file is untouched", async () => {
    const image = await crashImage();
    const partition = join(image, PARTITION);
    const work = join(image, WORK);
    const journal = readFileSync(join(work, journalFileName(NAME)));
    const temp = readFileSync(join(work, tempFileName(NAME)));
    // Recover once to get the complete file, then put the leftovers back: a crash right after link().
    const first = makeSink(image);
    await first.sink.start();
    await markInterrupted(first.sink);
    await first.sink.close();
    const complete = readFileSync(join(partition, NAME));
    mkdirSync(work, { recursive: true }); // the start removed it, empty
    writeFileSync(join(work, journalFileName(NAME)), journal);
    writeFileSync(join(work, tempFileName(NAME)), temp);

    const second = makeSink(image);
    await second.sink.start();
    await second.sink.close();
    expect(second.sink.recovery!.recoveredFiles).toEqual([]);
    // The run died after the file was complete: none of its rows can be missing, so no gap is asked for.
    expect(second.sink.interruptedStreams()).toEqual([]);
    expect(listFiles(partition)).toEqual([NAME]);
    expect(listFiles(join(image, ".inprogress"))).toEqual([]);
    expect(readFileSync(join(partition, NAME)).equals(complete)).toBe(true);
  });

  test("leftovers an earlier build kept beside the final name are recovered the same way", async () => {
    const image = await crashImage();
    const partition = join(image, PARTITION);
    mkdirSync(partition, { recursive: true });
    for (const name of [journalFileName(NAME), tempFileName(NAME)]) renameSync(join(image, WORK, name), join(partition, name));
    // The work tree goes; the rows log stays (it holds the journaled rows since journal version 5).
    rmSync(join(image, ".inprogress", "trades"), { recursive: true });
    const { sink, stats } = makeSink(image);
    await sink.start();
    expect(sink.recovery).toEqual({
      recoveredFiles: [join(partition, NAME)],
      recoveredRows: 350,
      lostRows: 0,
      unrecoverable: [],
      interrupted: [{ table: "trades", exchange: "BINANCE_FUTURES", symbol: "BTCUSDT" }],
    });
    expect(sink.interruptedStreams()).toEqual([{ exchange: "BINANCE_FUTURES", symbol: "BTCUSDT", stream: "TRADES" }]);
    await sink.write([tradeAt(1000)]);
    await sink.close();
    expect(stats.errors).toBe(0);
    expect(listFiles(partition)).toEqual([NAME, "120000-0001.parquet"]);
    expect(await tradeIds(image)).toEqual([...ids(0, 350), "t1000"]);
  });

  test("what cannot be read is kept aside and reported, and empty leftovers are cleaned up", async () => {
    const directory = tempDirectory();
    const partition = join(directory, PARTITION);
    const { sink: seed } = makeSink(directory);
    await seed.start();
    await seed.write([tradeAt(0)]);
    await seed.close();
    const clean = makeSink(directory);
    await clean.sink.start();
    expect(clean.sink.interruptedStreams()).toEqual([]); // after a clean stop, nothing to mark
    await clean.sink.close();
    // Where earlier builds kept them, beside the final names: a temporary file with no journal and no
    // footer, and a file whose creation died before its header.
    writeFileSync(join(partition, tempFileName("120000-0005.parquet")), "PAR1 and then nothing useful");
    writeFileSync(join(partition, journalFileName("120000-0006.parquet")), new Uint8Array([1, 2, 3]));
    writeFileSync(join(partition, tempFileName("120000-0006.parquet")), "PAR1");

    const { sink, stats, logs } = makeSink(directory);
    await sink.start();
    await sink.close();
    expect(sink.recovery!.unrecoverable).toEqual([join(partition, `${tempFileName("120000-0005.parquet")}.unrecoverable`)]);
    // Both dead files were open in the killed run (one unreadable, one never written): one gap for the stream.
    expect(sink.interruptedStreams()).toEqual([{ exchange: "BINANCE_FUTURES", symbol: "BTCUSDT", stream: "TRADES" }]);
    expect(stats.errors).toBe(1);
    expect(logs.some((line) => line.startsWith("error:") && line.includes("no journal and no footer"))).toBe(true);
    expect(listFiles(partition)).toEqual([`${tempFileName("120000-0005.parquet")}.unrecoverable`, NAME]);
    expect(await tradeIds(directory)).toEqual(["t0"]);
  });

  test("a recovered file keeps its original name and date partition, whatever the clock says at recovery", async () => {
    const image = await crashImage();
    const { sink, clock } = makeSink(image);
    clock.now = BASE_TIME + 50 * 3_600_000_000; // two days later
    await sink.start();
    await sink.close();
    const metadata = await query(
      `SELECT DISTINCT CAST(date AS VARCHAR) AS date FROM read_parquet('${image}/trades/**/*.parquet', hive_partitioning = true)`,
    );
    expect(metadata.map((row) => row.date)).toEqual(["2026-01-05"]);
    expect(parquetFiles(image)).toEqual([`${PARTITION}/${NAME}`]);
  });
});

describe("PartFile resumed from an older journal", () => {
  test("its next journal write replaces the version 3 journal with a whole current one, and no row is lost", async () => {
    const directory = tempDirectory();
    const finalName = "120000-0000.parquet";
    const journalPath = join(directory, journalFileName(finalName));
    const tempPath = join(directory, tempFileName(finalName));
    const books = Array.from({ length: 20 }, (_, i) => bookAt(i, "BTC-USDT-SWAP", 3));
    // What version 3 left: the L2 message fields one value per row.
    const header = { format: JOURNAL_FORMAT, version: 3, table: "l2", exchange: "OKX_SWAP", symbol: "BTC-USDT-SWAP", columns: TABLES.l2, codec: "ZSTD", finalName, openedAt: BASE_TIME } as const;
    const constants = { exchange: "OKX_SWAP", symbol: "BTC-USDT-SWAP" };
    const appended = new TableBuffer(TABLES.l2, constants, { perEvent: PER_EVENT_COLUMNS.l2 });
    const append = rowAppender("l2", appended);
    for (const book of books.slice(0, 10)) append(book);
    // Per-row columns (the layout before version 4) write the record as version 3 did.
    const current = new Uint8Array([...headerRecord({ ...header, version: JOURNAL_VERSION, perEvent: appended.runColumns }), ...rowsRecord(appended, 0, appended.rows)]);
    const old = new TableBuffer(TABLES.l2, constants);
    decodeRows(current, readJournal(current).rows, old);
    const journalBytes = new Uint8Array([...headerRecord(header), ...rowsRecord(old, 0, old.rows)]);
    writeFileSync(journalPath, journalBytes);
    writeFileSync(tempPath, "PAR1");

    // As recovery resumes it.
    const journal = readJournal(journalBytes);
    const file = new PartFile({
      root: directory,
      table: "l2",
      exchange: "OKX_SWAP",
      symbol: "BTC-USDT-SWAP",
      openedAt: BASE_TIME,
      rotateAt: BASE_TIME + 3_600_000_000,
      codec: "ZSTD",
      integerReport: { invalid: 0 },
      columns: TABLES.l2,
      directory,
      rowGroupRows: 16_384,
    });
    expect(decodeRows(journalBytes, journal.rows, file.buffer, journal.skipRows)).toBe(60);
    await file.resume(finalName, { header, rowGroups: [], rowGroupEnd: 4, firstRow: 0 }, await open(tempPath, "r+"), await open(journalPath, "r+"), journalBytes.length);

    for (const book of books.slice(10)) file.add(book);
    await file.sync(16_384, false);
    const replaced = new Uint8Array(readFileSync(journalPath));
    const replay = readJournal(replaced);
    expect(replay.header?.version).toBe(JOURNAL_VERSION);
    expect(replay.header?.perEvent).toEqual(file.buffer.runColumns);
    // Its 60 rows in the rewritten journal, the 60 new ones in the rows log: read back as recovery would.
    const log = await readRowsLogs(join(directory, ".inprogress"), () => file.buffer.runColumns);
    const records = [
      ...replay.rows.map((location) => ({ bytes: replaced, location, firstRow: location.firstRow!, rowCount: location.rowCount! })),
      ...(log.byKey.get(finalName) ?? []),
    ];
    expect(records.map((record) => [record.firstRow, record.rowCount])).toEqual([[0, 60], [60, 60]]);
    const pending = new TableBuffer(TABLES.l2, { exchange: "OKX_SWAP", symbol: "BTC-USDT-SWAP" });
    expect(decodePositionedRows(records, replay.pendingFrom, pending)).toEqual({ rows: 120, missing: 0 });
    const sequences = books.flatMap((book) => [book.sequence, book.sequence, book.sequence, book.sequence, book.sequence, book.sequence]);
    expect([...pending.column("sequence", NumberColumn).head(0, 120)]).toEqual(sequences);

    await file.close(16_384);
    const rows = await readWithHyparquet(file.finalPath!);
    expect(rows.map((row) => Number(row.sequence))).toEqual(sequences);
  });
});

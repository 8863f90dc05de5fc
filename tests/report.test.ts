/**
 * `xtrader report`: the coverage report over a directory the real Parquet sink wrote (three runs: a clean
 * stop, a run killed with files open, and the run that recovered them), checked against DuckDB queries
 * over the same files; the terminal table, the exit codes, and the HTML page rendered by headless
 * Chromium and looked at pixel by pixel.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { closeSync, cpSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, truncateSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { gapEvent, type MarketEvent } from "../src/core/events.ts";
import { buildReport, SILENCE_MICROS, type Report, type StreamReport } from "../src/report/coverage.ts";
import { readChunkLocation, readFooter } from "../src/report/footer.ts";
import { COLOURS, TIMELINE_WIDTH } from "../src/report/html.ts";
import { scanDirectory } from "../src/report/scan.ts";
import { journalFileName, tempFileName } from "../src/sinks/parquet/layout.ts";
import { isRowsLogName } from "../src/sinks/parquet/rows-log.ts";
import { runBinary } from "./support/binary.ts";
import {
  BASE_TIME,
  bookAt,
  fundingAt,
  hyparquetMetadata,
  listFiles,
  makeSink,
  parquetFiles,
  pollUntil,
  query,
  removeTempDirectories,
  tempDirectory,
  tradeAt,
} from "./support/parquet-helpers.ts";
import { colourAt, decodePng } from "./support/png.ts";

afterAll(removeTempDirectories);

const S = 1_000_000;
const M = 60 * S;
const H = 60 * M;
const at = (hours: number, minutes = 0, seconds = 0) => BASE_TIME + hours * H + minutes * M + seconds * S;

const TRADES = { exchange: "BINANCE_FUTURES", symbol: "BTCUSDT", stream: "TRADES" } as const;
const L2 = { exchange: "OKX_SWAP", symbol: "BTC-USD-SWAP", stream: "L2" } as const;
const FUNDING = { exchange: "OKX_SWAP", symbol: "BTC-USDT-SWAP", stream: "FUNDING" } as const;
const LIQUIDATIONS = { exchange: "BINANCE_FUTURES", symbol: "BTCUSDT", stream: "LIQUIDATIONS" } as const;

/** A trade every 2 s from `from` until before `to`, received 300 µs after its exchange time. */
function trades(from: number, to: number, skip: (time: number) => boolean = () => false): MarketEvent[] {
  const events: MarketEvent[] = [];
  for (let time = from; time < to; time += 2 * S) {
    if (!skip(time)) events.push({ ...tradeAt((time - BASE_TIME) / S), timestamp: time, localTimestamp: time + 300 });
  }
  return events;
}

/** An L2 message (3 levels a side: 6 rows) every 10 s. */
function books(from: number, to: number, skip: (time: number) => boolean = () => false): MarketEvent[] {
  const events: MarketEvent[] = [];
  for (let time = from; time < to; time += 10 * S) {
    if (!skip(time)) events.push({ ...bookAt((time - BASE_TIME) / (10 * S), L2.symbol, 3), timestamp: time - 50, localTimestamp: time });
  }
  return events;
}

const byTime = (events: MarketEvent[]) => events.sort((a, b) => a.localTimestamp - b.localTimestamp);

/**
 * The directory under test (times from 12:00 UTC):
 * - run A, 12:00-15:00, stopped cleanly: trades every 2 s with a disconnect at 12:30:01 (rows 12:30:02 to
 *   12:30:58 missing), L2 every 10 s with a sequence gap at 13:15:05 (13:15:10 to 13:15:50 missing),
 *   funding every minute, and a liquidations subscription that failed (a gap row, no rows);
 * - run B, 16:00-16:20 (so 15:00-16:00 is a silence), killed with its files open;
 * - run C, from 17:00: recovers B's files, marks trades and L2 with unclean_stop gaps as the pipeline does,
 *   writes until 18:05; the directory is copied while C's 18:00 trades file is still open.
 */
async function buildDirectory(): Promise<string> {
  const live = tempDirectory("xtrader-report-");
  const tuning = { rowGroupRows: 1000 };
  const a = makeSink(live, { tuning });
  await a.sink.start();
  for (let hour = 0; hour < 3; hour++) {
    a.clock.now = at(hour);
    const events = [
      ...trades(at(hour), at(hour + 1), (time) => time > at(0, 30, 0) && time < at(0, 31, 0)),
      ...books(at(hour), at(hour + 1), (time) => time > at(1, 15, 0) && time < at(1, 16, 0)),
      ...Array.from({ length: 60 }, (_, i) => ({ ...fundingAt(hour * 60 + i), localTimestamp: at(hour, i, 0) + 10 })),
    ];
    if (hour === 0) {
      events.push(gapEvent(TRADES, "disconnect", "websocket closed (code 1006)", at(0, 30, 1)));
      events.push(gapEvent(LIQUIDATIONS, "subscription_error", "Invalid symbol <BTCUSDT>", at(0, 0, 5)));
    }
    if (hour === 1) events.push(gapEvent(L2, "sequence", "expected 9000000453, got 9000000459", at(1, 15, 5)));
    await a.sink.write(byTime(events));
  }
  a.clock.now = at(3);
  await a.sink.close();

  const b = makeSink(live, { tuning, now: at(4) });
  await b.sink.start();
  await b.sink.write(byTime([...trades(at(4), at(4, 20)), ...books(at(4), at(4, 20))]));
  await b.sink.flush();
  const crashed = tempDirectory("xtrader-report-");
  cpSync(live, crashed, { recursive: true });
  await b.sink.close();

  const c = makeSink(crashed, { tuning, now: at(5) });
  await c.sink.start();
  expect(c.sink.interruptedStreams()).toHaveLength(2);
  const unclean = c.sink.interruptedStreams().map((stream) =>
    // At start, before any connection is open: a second before the first row.
    gapEvent({ ...stream, exchange: stream.exchange as "OKX_SWAP" }, "unclean_stop", "the previous run stopped without a clean shutdown", at(5) - S),
  );
  await c.sink.write([...unclean, ...byTime([...trades(at(5), at(6)), ...books(at(5), at(6))])]);
  c.clock.now = at(6);
  await c.sink.write(trades(at(6), at(6, 5)));
  // The 17:00 files (trades, L2, gaps) close at the tick after the boundary; the 18:00 trades file stays open.
  const open18 = [journalFileName("180000-0000.parquet"), tempFileName("180000-0000.parquet")];
  const hidden = () => listFiles(crashed).map((path) => path.split("/").at(-1)!).filter((name) => name.startsWith("."));
  await pollUntil(() => JSON.stringify(hidden().sort()) === JSON.stringify(open18), 5000, "the 17:00 files to close");
  await c.sink.flush();
  const directory = tempDirectory("xtrader-report-");
  cpSync(crashed, directory, { recursive: true });
  await c.sink.close();
  return directory;
}

let directory: string;
let report: Report;

beforeAll(async () => {
  directory = await buildDirectory();
  report = await buildReport(await scanDirectory(directory));
});

const TABLE_OF_STREAM: Record<string, string> = { TRADES: "trades", L2: "l2", FUNDING: "funding", LIQUIDATIONS: "liquidations" };

function streamOf(target: { exchange: string; symbol: string; stream: string }): StreamReport {
  const found = report.streams.find((s) => s.exchange === target.exchange && s.symbol === target.symbol && s.stream === target.stream);
  if (!found) throw new Error(`no ${target.stream} ${target.exchange} ${target.symbol} in the report`);
  return found;
}

/** What DuckDB reads from the same files, and the figures the report defines (docs/report.md), row by row. */
async function expected(target: { exchange: string; symbol: string; stream: string }) {
  const table = TABLE_OF_STREAM[target.stream]!;
  const where = `exchange = '${target.exchange}' AND symbol = '${target.symbol}'`;
  const gaps = (
    await query(
      `SELECT reason, detail, epoch_us(local_timestamp) AS "at" FROM read_parquet('${directory}/gaps/**/*.parquet')
       WHERE ${where} AND stream = '${target.stream}' ORDER BY "at"`,
    )
  ).map((row) => ({ reason: row.reason as string, detail: row.detail as string, at: Number(row.at) }));
  const glob = `${directory}/${table}/**/*.parquet`;
  const hasFiles = listFiles(directory).some((path) => path.startsWith(`${table}/`) && path.endsWith(".parquet") && !path.split("/").at(-1)!.startsWith("."));
  if (!hasFiles) return { rows: 0, first: undefined, last: undefined, covered: 0, silences: [], gaps: gaps.map((gap) => ({ ...gap, previous: undefined, next: undefined })) };
  const [summary] = await query(
    `SELECT count(*) AS rows, min(epoch_us(local_timestamp)) AS first, max(epoch_us(local_timestamp)) AS last FROM read_parquet('${glob}') WHERE ${where}`,
  );
  const withLengths = [];
  for (const gap of gaps) {
    const [around] = await query(
      `SELECT max(epoch_us(local_timestamp)) FILTER (WHERE epoch_us(local_timestamp) <= ${gap.at}) AS previous,
              min(epoch_us(local_timestamp)) FILTER (WHERE epoch_us(local_timestamp) > ${gap.at}) AS next
       FROM read_parquet('${glob}') WHERE ${where}`,
    );
    withLengths.push({ ...gap, previous: around!.previous === null ? undefined : Number(around!.previous), next: around!.next === null ? undefined : Number(around!.next) });
  }
  // Consecutive rows by receive time: time between them is covered unless it is a silence or a gap.
  const pairs = await query(
    `SELECT previous, next FROM (
       SELECT epoch_us(local_timestamp) AS previous, lead(epoch_us(local_timestamp)) OVER (ORDER BY local_timestamp) AS next
       FROM read_parquet('${glob}') WHERE ${where}) WHERE next IS NOT NULL`,
  );
  let covered = 0;
  const silences: { from: number; to: number }[] = [];
  for (const pair of pairs) {
    const previous = Number(pair.previous);
    const next = Number(pair.next);
    const gapInside = gaps.some((gap) => gap.at >= previous && gap.at < next);
    if (gapInside) continue;
    if (next - previous >= SILENCE_MICROS) silences.push({ from: previous, to: next });
    else covered += next - previous;
  }
  return { rows: Number(summary!.rows), first: Number(summary!.first), last: Number(summary!.last), covered, silences, gaps: withLengths };
}

describe("the numbers", () => {
  test("rows, first and last row, covered time, gaps with their lengths and silences equal DuckDB's reading of the same files", async () => {
    expect(report.streams.map((s) => `${s.exchange} ${s.symbol} ${s.stream}`)).toEqual([
      "BINANCE_FUTURES BTCUSDT TRADES",
      "BINANCE_FUTURES BTCUSDT LIQUIDATIONS",
      "OKX_SWAP BTC-USD-SWAP L2",
      "OKX_SWAP BTC-USDT-SWAP FUNDING",
    ]);
    for (const target of [TRADES, L2, FUNDING, LIQUIDATIONS]) {
      const { gaps, ...figures } = await expected(target);
      const got = streamOf(target);
      expect({ stream: target.stream, rows: got.rows, first: got.first, last: got.last, covered: got.covered, silences: got.silences }).toEqual({
        stream: target.stream,
        ...figures,
      });
      expect(got.gaps).toEqual(gaps);
      expect(got.rowsPerMinute).toEqual(got.covered > 0 ? got.rows / (got.covered / M) : undefined);
    }
  });

  test("each fault is where and as long as it was made", () => {
    const tradesReport = streamOf(TRADES);
    expect(tradesReport.gaps.map((gap) => [gap.reason, gap.previous, gap.next])).toEqual([
      ["disconnect", at(0, 30, 0) + 300, at(0, 31, 0) + 300],
      // The killed run's last journaled row, and the recovering run's first.
      ["unclean_stop", at(4, 19, 58) + 300, at(5) + 300],
    ]);
    // The disconnect lies within a row group's bounds: its rows were read to find those around it.
    const firstFile = readFooter(join(directory, "trades/exchange=BINANCE_FUTURES/symbol=BTCUSDT/date=2026-01-05/120000-0000.parquet"), "local_timestamp");
    expect(firstFile.rowGroups[0]!.min! < at(0, 30, 1) && firstFile.rowGroups[0]!.max! > at(0, 30, 1)).toBe(true);
    expect(tradesReport.uncleanStops).toBe(1);
    // The clean stop: no gap row, one silence.
    expect(tradesReport.silences).toEqual([{ from: at(2, 59, 58) + 300, to: at(4) + 300 }]);
    expect(tradesReport.openFiles.map((file) => [file.path, file.openedAt])).toEqual([
      ["trades/exchange=BINANCE_FUTURES/symbol=BTCUSDT/date=2026-01-05/180000-0000.parquet", at(6)],
    ]);
    // The 18:00 file is open: its rows are not counted.
    expect(tradesReport.last).toBe(at(5, 59, 58) + 300);

    const l2 = streamOf(L2);
    expect(l2.gaps.map((gap) => [gap.reason, gap.previous, gap.next])).toEqual([
      ["sequence", at(1, 15, 0), at(1, 16, 0)],
      ["unclean_stop", at(4, 19, 50), at(5)],
    ]);
    expect(l2.openFiles).toEqual([]);

    const liquidations = streamOf(LIQUIDATIONS);
    expect(liquidations.rows).toBe(0);
    expect(liquidations.gaps).toEqual([{ reason: "subscription_error", detail: "Invalid symbol <BTCUSDT>", at: at(0, 0, 5), previous: undefined, next: undefined }]);

    expect(report.openGapFiles).toEqual([]);
    expect(report.unreadable).toEqual([]);
    expect([report.from, report.to]).toEqual([at(0), at(6)]);
  });

  test("the footer reader agrees with hyparquet on every file: rows, row groups and receive-time bounds", async () => {
    const files = parquetFiles(directory).filter((path) => !path.split("/").at(-1)!.startsWith("."));
    expect(files.length).toBe(17);
    for (const path of files) {
      const footer = readFooter(join(directory, path), "local_timestamp");
      const metadata = await hyparquetMetadata(join(directory, path));
      const column = metadata.schema.slice(1).findIndex((element) => element.name === "local_timestamp");
      expect(footer.rows).toBe(Number(metadata.num_rows));
      expect(footer.rowGroups.map((group) => group.rows)).toEqual(metadata.row_groups.map((group) => Number(group.num_rows)));
      // hyparquet gives the bounds as Dates (milliseconds); DuckDB checked them to the microsecond above.
      metadata.row_groups.forEach((group, i) => {
        const statistics = group.columns[column]!.meta_data!.statistics!;
        expect(Math.floor(footer.rowGroups[i]!.min! / 1000)).toBe((statistics.min_value as Date).getTime());
        expect(Math.floor(footer.rowGroups[i]!.max! / 1000)).toBe((statistics.max_value as Date).getTime());
      });
      expect(footer.keyValue.get("xtrader.table")).toBe(path.split("/")[0]);
    }
  });
});

describe("a live directory (the copy was taken with the 18:00 trades file open)", () => {
  const OPEN_PARTITION = "trades/exchange=BINANCE_FUTURES/symbol=BTCUSDT/date=2026-01-05";
  const OPEN_NAME = "180000-0000.parquet";

  test("the table trees hold finished files only: a directory listing and DuckDB's glob of every file read them all", async () => {
    const files = listFiles(join(directory, "trades"));
    expect(files.filter((path) => !path.endsWith(".parquet") || path.split("/").at(-1)!.startsWith("."))).toEqual([]);
    // The open file's journal and temporary file, and the rows log holding its pending rows.
    const work = listFiles(join(directory, ".inprogress"));
    expect(work.filter((name) => !isRowsLogName(name))).toEqual([`${OPEN_PARTITION}/${journalFileName(OPEN_NAME)}`, `${OPEN_PARTITION}/${tempFileName(OPEN_NAME)}`]);
    expect(work.filter(isRowsLogName)).toHaveLength(1);
    // The glob that failed on journals ('No magic bytes found'): every file under the table, no suffix.
    const [everything] = await query(`SELECT count(*) AS rows FROM read_parquet('${directory}/trades/**/*')`);
    expect(Number(everything!.rows)).toBe(streamOf(TRADES).rows);
  });

  test("a file left open where earlier builds kept it (beside its final name) is still reported open", async () => {
    const old = tempDirectory("xtrader-report-");
    cpSync(directory, old, { recursive: true });
    for (const name of [journalFileName(OPEN_NAME), tempFileName(OPEN_NAME)]) {
      renameSync(join(old, ".inprogress", OPEN_PARTITION, name), join(old, OPEN_PARTITION, name));
    }
    rmSync(join(old, ".inprogress"), { recursive: true });
    const opened = (await scanDirectory(old)).open.map((file) => file.path);
    expect(opened).toEqual([`${OPEN_PARTITION}/${OPEN_NAME}`]);
    expect((await scanDirectory(directory)).open.map((file) => file.path)).toEqual(opened);
  });
});

describe("xtrader report in a terminal", () => {
  test("an aligned table with the same figures, every gap and silence, and the file still open", async () => {
    const result = await runBinary(["report", directory]);
    expect(result.stderr).toBe("");
    expect(result.exitCode).toBe(0);
    const lines = result.stdout.split("\n");
    const header = lines.find((line) => line.startsWith("EXCHANGE"))!;
    expect(header).toBeDefined();
    const tradesLine = lines.find((line) => line.startsWith("BINANCE_FUTURES") && line.includes(" TRADES "))!;
    const l2Line = lines.find((line) => line.startsWith("OKX_SWAP") && line.includes(" L2 "))!;
    const rows = streamOf(TRADES).rows.toLocaleString("en-US");
    expect(tradesLine).toContain(` ${rows} `);
    expect(l2Line).toContain(` ${streamOf(L2).rows.toLocaleString("en-US")} `);
    // Aligned: every row's cells end where the header's numeric cells end and start where its text cells start.
    for (const line of [tradesLine, l2Line]) {
      expect(line.indexOf(" 20") + 1).toBe(header.indexOf("FIRST"));
      expect(line.length).toBe(header.length);
    }
    expect(tradesLine.slice(header.indexOf("ROWS") + 4 - rows.length, header.indexOf("ROWS") + 4)).toBe(rows);
    expect(result.stdout).toMatch(/\n {4}2026-01-05 12:30:01\.000 {2}disconnect +1m 00s +websocket closed \(code 1006\)\n/);
    expect(result.stdout).toMatch(/\n {4}2026-01-05 14:59:58\.000 {2}silence +1h 00m +no rows and no gap row/);
    expect(result.stdout).toMatch(/\n {4}2026-01-05 16:59:59\.000 {2}unclean_stop +40m 02s +the previous run stopped/);
    expect(result.stdout).toMatch(/\n {4}2026-01-05 12:00:05\.000 {2}subscription_error {2}unknown \(no rows around it\) {2}Invalid symbol <BTCUSDT>\n/);
    expect(result.stdout).toContain("trades/exchange=BINANCE_FUTURES/symbol=BTCUSDT/date=2026-01-05/180000-0000.parquet  opened 2026-01-05 18:00:00");
    // No colour codes: the table pipes and mails as it is.
    expect(result.stdout).not.toContain("\u001b[");
  });

  test("DIR defaults to OUTPUT_DIRECTORY, as for the collector", async () => {
    const result = await runBinary(["report"], { env: { OUTPUT_DIRECTORY: directory } });
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toContain(`Coverage of ${directory} `);
  });

  test("a gap inside a row group whose time column cannot be read: length unknown, the file listed", async () => {
    const damaged = tempDirectory("xtrader-report-");
    cpSync(directory, damaged, { recursive: true });
    const path = join(damaged, "trades/exchange=BINANCE_FUTURES/symbol=BTCUSDT/date=2026-01-05/120000-0000.parquet");
    const fd = openSync(path, "r+");
    const chunk = readChunkLocation(fd, "local_timestamp", 0);
    writeSync(fd, new Uint8Array(chunk.compressedSize).fill(0xee), 0, chunk.compressedSize, chunk.dictionaryPageOffset ?? chunk.dataPageOffset);
    closeSync(fd);
    const damagedReport = await buildReport(await scanDirectory(damaged));
    const disconnect = damagedReport.streams.find((s) => s.stream === "TRADES")!.gaps[0]!;
    expect(disconnect).toMatchObject({ reason: "disconnect", previous: undefined, next: undefined, unreadable: true });
    expect(damagedReport.unreadable).toEqual([
      { path: "trades/exchange=BINANCE_FUTURES/symbol=BTCUSDT/date=2026-01-05/120000-0000.parquet", reason: expect.stringContaining("local_timestamp of row group 0 cannot be read: ") },
    ]);
    const result = await runBinary(["report", damaged]);
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toMatch(/ disconnect +unknown \(the rows around it are unreadable\) +websocket closed/);
  });

  test("unreadable files are listed and counted nowhere else; the rest of the report stands", async () => {
    const damaged = tempDirectory("xtrader-report-");
    cpSync(directory, damaged, { recursive: true });
    const partition = join(damaged, "l2/exchange=OKX_SWAP/symbol=BTC-USD-SWAP/date=2026-01-05");
    const victim = join(partition, "160000-0000.parquet");
    const victimRows = readFooter(victim, "local_timestamp").rows;
    truncateSync(victim, 100);
    writeFileSync(join(partition, "190000-0000.parquet"), "not parquet at all");
    const result = await runBinary(["report", damaged]);
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toContain("Unreadable (not counted above)");
    expect(result.stdout).toContain("l2/exchange=OKX_SWAP/symbol=BTC-USD-SWAP/date=2026-01-05/160000-0000.parquet: no Parquet footer");
    expect(result.stdout).toContain("l2/exchange=OKX_SWAP/symbol=BTC-USD-SWAP/date=2026-01-05/190000-0000.parquet: no Parquet footer");
    const damagedReport = await buildReport(await scanDirectory(damaged));
    const l2 = damagedReport.streams.find((s) => s.stream === "L2")!;
    expect(l2.rows).toBe(streamOf(L2).rows - victimRows);
    expect(damagedReport.unreadable).toHaveLength(2);
  });

  test("bad arguments and directories that are not xtrader output: one line, exit 2", async () => {
    const notOutput = tempDirectory("xtrader-report-");
    writeFileSync(join(notOutput, "notes.txt"), "hello");
    const cases: [string[], string][] = [
      [["report", "--bogus"], "xtrader: error: unknown option '--bogus' for report; accepted: --html FILE, --help\n"],
      [["report", directory, "--html"], "xtrader: error: option --html needs a file name, e.g. --html coverage.html\n"],
      [["report", directory, directory], `xtrader: error: unexpected argument '${directory}': report takes one directory (see xtrader report --help)\n`],
      [["report", join(notOutput, "missing")], `xtrader: error: cannot read output directory '${join(notOutput, "missing")}': ENOENT\n`],
      [["report", join(notOutput, "notes.txt")], `xtrader: error: '${join(notOutput, "notes.txt")}' is not a directory; expected an xtrader output directory (--output-directory)\n`],
      [["report", notOutput], `xtrader: error: '${notOutput}' is not an xtrader output directory: it has none of the table directories trades, l2, bbo, funding, liquidations, gaps\n`],
      [["report", directory, "--html", join(notOutput, "missing", "page.html")], `xtrader: error: cannot write --html file '${join(notOutput, "missing", "page.html")}': ENOENT\n`],
    ];
    for (const [args, stderr] of cases) {
      const result = await runBinary(args);
      expect({ args, stderr: result.stderr, code: result.exitCode, stdout: result.stdout }).toEqual({ args, stderr, code: 2, stdout: "" });
    }
  });

  test("--help of the subcommand, and the collector's --help points to it", async () => {
    const help = await runBinary(["report", "--help"]);
    expect(help.exitCode).toBe(0);
    expect(help.stdout).toContain("USAGE xtrader report [DIR] [--html FILE]");
    const main = await runBinary(["--help"]);
    expect(main.stdout).toContain("xtrader report --help");
  });

  test("an output directory with nothing written yet is an empty report, not an error", async () => {
    const empty = tempDirectory("xtrader-report-");
    mkdirSync(join(empty, "trades"));
    const result = await runBinary(["report", empty]);
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toContain("0 finished file(s); no rows and no gap rows yet.");
  });
});

describe("xtrader report --html", () => {
  test("one self-contained page; in headless Chromium each timeline shows rows, gaps, the silence and the open file where they are", async () => {
    const chromium = Bun.which("chromium") ?? Bun.which("chromium-browser");
    if (!chromium) throw new Error("chromium is not installed (Debian: apt-get install chromium; .ci/run installs it when run as root)");
    const out = tempDirectory("xtrader-report-html-");
    const page = join(out, "coverage.html");
    const result = await runBinary(["report", directory, "--html", page]);
    expect(result.exitCode).toBe(0);
    const html = readFileSync(page, "utf8");
    // Self-contained: no script, nothing fetched.
    expect(html).not.toMatch(/<script/i);
    expect(html).not.toMatch(/\b(src|href)\s*=/i);
    expect(html).not.toMatch(/url\(|@import/i);
    // Text from the data is escaped, not markup.
    expect(html).toContain("Invalid symbol &lt;BTCUSDT&gt;");

    const screenshot = join(out, "coverage.png");
    const browser = Bun.spawn(
      [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", `--user-data-dir=${join(out, "profile")}`,
        "--force-device-scale-factor=1", "--window-size=1400,1000", `--screenshot=${screenshot}`, `file://${page}`],
      { stdout: "pipe", stderr: "pipe" },
    );
    const timer = setTimeout(() => browser.kill("SIGKILL"), 25_000);
    const [code, stderr] = await Promise.all([browser.exited, new Response(browser.stderr).text()]);
    clearTimeout(timer);
    if (code !== 0) console.error(stderr);
    expect(code).toBe(0);
    const image = decodePng(new Uint8Array(readFileSync(screenshot)));

    // Timelines: the pixel rows drawn in the timeline colours (960 px, but for the few pixels where rows
    // cover part of a pixel's time and green is drawn paler).
    const palette = new Set<string>(Object.values(COLOURS));
    const bands: { top: number; bottom: number; left: number }[] = [];
    for (let y = 0; y < image.height; y++) {
      let count = 0;
      let left = -1;
      for (let x = 0; x < image.width; x++) {
        if (palette.has(colourAt(image, x, y))) {
          count++;
          if (left < 0) left = x;
        }
      }
      if (count < TIMELINE_WIDTH - 10 || count > TIMELINE_WIDTH) continue;
      const last = bands.at(-1);
      if (last && last.bottom === y - 1) last.bottom = y;
      else bands.push({ top: y, bottom: y, left });
    }
    expect(bands).toHaveLength(report.streams.length);
    const from = report.from!;
    const span = report.to! - from;
    const colourOf = (band: (typeof bands)[number], time: number) =>
      colourAt(image, band.left + Math.min(TIMELINE_WIDTH - 1, Math.floor(((time - from) / span) * TIMELINE_WIDTH)), (band.top + band.bottom) >> 1);

    const tradesBand = bands[report.streams.indexOf(streamOf(TRADES))]!;
    expect(colourOf(tradesBand, at(0, 10))).toBe(COLOURS.rows);
    // The one-minute disconnect is a few seconds of a 6-hour page: still drawn (at least 2 px).
    expect(colourOf(tradesBand, at(0, 30, 30))).toBe(COLOURS.gap);
    expect(colourOf(tradesBand, at(3, 30))).toBe(COLOURS.none); // the clean stop's silence
    expect(colourOf(tradesBand, at(4, 40))).toBe(COLOURS.unclean); // killed at 16:20, restarted at 17:00
    expect(colourOf(tradesBand, at(5, 30))).toBe(COLOURS.rows);
    expect(colourOf(tradesBand, at(6))).toBe(COLOURS.open);

    const l2Band = bands[report.streams.indexOf(streamOf(L2))]!;
    expect(colourOf(l2Band, at(1, 15, 30))).toBe(COLOURS.gap);
    expect(colourOf(l2Band, at(2, 30))).toBe(COLOURS.rows);
    expect(colourOf(l2Band, at(3, 30))).toBe(COLOURS.none);

    const liquidationsBand = bands[report.streams.indexOf(streamOf(LIQUIDATIONS))]!;
    expect(colourOf(liquidationsBand, at(0, 0, 5))).toBe(COLOURS.gap);
    expect(colourOf(liquidationsBand, at(3))).toBe(COLOURS.none);
  }, 30_000);
});

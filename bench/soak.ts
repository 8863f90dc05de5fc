/**
 * Soak: runs the compiled binary against the fake venues (Binance USD-M, OKX swap, Deribit) at a steady,
 * realistic rate for a configurable time, and prints the process's RSS, CPU and open file descriptors
 * every minute. Not part of the test run; the one-hour result is recorded in docs/reliability.md.
 *
 *   bun bench/soak.ts [--minutes 60] [--warmup-minutes 10] [--rate 10] [--trades 5]
 *                     [--sample-seconds 60] [--sink parquet] [--keep]
 *
 * `--rate` book updates per second per instrument (Binance's depth@100ms is 10/s), `--trades` trades per
 * second per instrument. Seven instruments on three venues, TRADES + L2 + BBO each (FUNDING on Binance),
 * Parquet files rotating every 5 minutes. The binary is copied first, so a rebuild of dist/xtrader during
 * the run does not touch the process under test.
 *
 * RSS is read every 5 s; each line shows the period's mean and maximum (a single reading swings by
 * ±10 % with the garbage collector). Verdict: RSS growth after warm-up = median of the per-period means
 * over the last (up to) 10 periods against the median over the first (up to) 10 periods after warm-up.
 * Exits 1 when that exceeds 5 %, when the process died, or when its stop was not clean (exit code other
 * than 0, or unfinished files left behind).
 */
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ensureBinary } from "../tests/support/binary.ts";
import { FakeBinanceFutures } from "../tests/support/fake-binance.ts";
import { FakeDeribit } from "../tests/support/fake-deribit.ts";
import { FakeOkx } from "../tests/support/fake-okx.ts";

const { values: args } = parseArgs({
  options: {
    minutes: { type: "string", default: "60" },
    "warmup-minutes": { type: "string" },
    rate: { type: "string", default: "10" },
    trades: { type: "string", default: "5" },
    "sample-seconds": { type: "string", default: "60" },
    sink: { type: "string", default: "parquet" },
    keep: { type: "boolean", default: false },
  },
});
const minutes = Number(args.minutes);
const warmupMinutes = args["warmup-minutes"] === undefined ? Math.min(10, minutes / 6) : Number(args["warmup-minutes"]);
const bookRate = Number(args.rate);
const tradeRate = Number(args.trades);
const sampleSeconds = Number(args["sample-seconds"]);
if (![minutes, warmupMinutes, bookRate, tradeRate, sampleSeconds].every((n) => Number.isFinite(n) && n >= 0) || minutes <= 0) {
  console.error("soak: --minutes, --warmup-minutes, --rate, --trades and --sample-seconds take non-negative numbers");
  process.exit(2);
}
if (args.sink !== "parquet") {
  console.error("soak: only --sink parquet is supported (QuestDB needs a server; see docs/reliability.md)");
  process.exit(2);
}

const BINANCE = ["BTCUSDT", "ETHUSDT", "SOLUSDT"];
const OKX = ["BTC-USDT-SWAP", "ETH-USDT-SWAP"];
const DERIBIT = ["BTC-PERPETUAL", "ETH-PERPETUAL"];
const CLOCK_TICKS_PER_SECOND = 100; // Linux USER_HZ, what /proc/<pid>/stat counts in

const work = mkdtempSync(join(tmpdir(), "xtrader-soak-"));
const binary = join(work, "xtrader");
copyFileSync(ensureBinary(), binary);
const dataDirectory = join(work, "data");

const binance = FakeBinanceFutures.start({ symbols: BINANCE, seed: 101 });
const okx = FakeOkx.start({
  instruments: OKX.map((instId, i) => ({ instId, mid: i === 0 ? 60_000 : 3_000, depth: 20 })),
  seed: 102,
});
const deribit = FakeDeribit.start({ seed: 103, instruments: DERIBIT });

const subscriptions = [
  ...BINANCE.flatMap((s) => [`TRADES:BINANCE_FUTURES@${s}`, `L2:BINANCE_FUTURES@${s}`, `BBO:BINANCE_FUTURES@${s}`, `FUNDING:BINANCE_FUTURES@${s}`]),
  ...OKX.flatMap((s) => [`TRADES:OKX_SWAP@${s}`, `L2:OKX_SWAP@${s}`, `BBO:OKX_SWAP@${s}`]),
  ...DERIBIT.flatMap((s) => [`TRADES:DERIBIT@${s}`, `L2:DERIBIT@${s}`, `BBO:DERIBIT@${s}`]),
];

const child = Bun.spawn(
  [binary, "--subscriptions", subscriptions.join(","), "--output-directory", dataDirectory, "--rotate-interval", "5m", "--metrics-addr", "127.0.0.1:0"],
  {
    cwd: work,
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      RUST_LOG: "info",
      ...binance.env,
      ...okx.env("OKX_SWAP"),
      ...deribit.env(),
    },
    stdout: "pipe",
    stderr: "pipe",
  },
);

// Keep the child's log: warnings and errors are reported in the summary.
const logLines: string[] = [];
let metricsUrl: string | undefined;
async function collect(stream: ReadableStream<Uint8Array>): Promise<void> {
  const decoder = new TextDecoder();
  let rest = "";
  for await (const chunk of stream) {
    rest += decoder.decode(chunk, { stream: true });
    let newline = rest.indexOf("\n");
    while (newline >= 0) {
      const line = rest.slice(0, newline);
      rest = rest.slice(newline + 1);
      newline = rest.indexOf("\n");
      metricsUrl ??= /metrics on (http:\/\/[^ ]+) /.exec(line)?.[1];
      if (/\b(WARN|ERROR|warn|error)\b|\[warn\]|\[error\]/.test(line)) logLines.push(line);
    }
  }
}
const logsDone = Promise.all([collect(child.stdout), collect(child.stderr)]);

// ── the market: book updates at `--rate`, trades at `--trades`, Binance mark price every second ──

const sent = { book: 0, trades: 0, other: 0 };
const tickMs = 100;
let tickCount = 0;
let tradeCredit = 0;
const random = binance.random;
const driver = setInterval(() => {
  tickCount++;
  const booksThisTick = (bookRate * tickMs) / 1000;
  // Fractional rates: accumulate and step when a whole update is due.
  const bookSteps = Math.floor(tickCount * booksThisTick) - Math.floor((tickCount - 1) * booksThisTick);
  tradeCredit += (tradeRate * tickMs) / 1000;
  const tradeSteps = Math.floor(tradeCredit);
  tradeCredit -= tradeSteps;
  for (let i = 0; i < bookSteps; i++) {
    for (const symbol of BINANCE) if (binance.depthStep(symbol)) sent.book++;
    for (const instId of OKX) {
      okx.step(instId, 1, 0);
      sent.book++;
    }
    for (const instrument of DERIBIT) {
      deribit.bookStep(instrument);
      deribit.sendQuote(instrument);
      sent.book++;
      sent.other++;
    }
  }
  for (let i = 0; i < tradeSteps; i++) {
    for (const symbol of BINANCE) if (random() < 0.9) (binance.trade(symbol), sent.trades++);
    for (const instId of OKX) if (random() < 0.9) (okx.sendTrade(instId, {}), sent.trades++);
    for (const instrument of DERIBIT) if (random() < 0.9) (deribit.sendTrades(instrument, [{}]), sent.trades++);
  }
  if (tickCount % (1000 / tickMs) === 0) {
    for (const symbol of BINANCE) binance.markPrice(symbol);
    sent.other += BINANCE.length;
  }
}, tickMs);

/** The fakes keep everything they sent (for tests); a soak only needs the current book. */
function trimFakeRecords(): void {
  for (const market of binance.markets.values()) {
    market.depthEvents.length = 0;
    market.trades.length = 0;
    market.bookTickers.length = 0;
  }
  binance.snapshotsServed.length = 0;
  binance.restLog.length = 0;
  for (const market of okx.markets.values()) {
    market.sentBooks.length = 0;
    market.trades.length = 0;
  }
  for (const market of deribit.markets.values()) market.trades.length = 0;
  deribit.snapshotsSent.length = 0;
  for (const exchange of [binance.exchange, okx.exchange, deribit.exchange]) {
    exchange.requests.length = 0;
    for (const connection of exchange.connections) connection.received.length = 0;
  }
}

// ── sampling ──

interface Sample {
  readonly minute: number;
  /** Mean of the readings taken every 5 s during the period. */
  readonly rssMiB: number;
  readonly rssMaxMiB: number;
  readonly hwmMiB: number;
  readonly cpuPercent: number;
  readonly fds: number;
  readonly files: number;
  readonly rowsWritten: number;
}

function procStatus(pid: number): { rssKiB: number; hwmKiB: number } {
  const text = readFileSync(`/proc/${pid}/status`, "utf8");
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? Number.NaN);
  return { rssKiB: field("VmRSS"), hwmKiB: field("VmHWM") };
}

function cpuTicks(pid: number): number {
  // Fields after the parenthesised command name: utime and stime are the 12th and 13th.
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

function countParquetFiles(directory: string): number {
  let count = 0;
  const walk = (path: string) => {
    let entries;
    try {
      entries = readdirSync(path, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      if (entry.isDirectory()) walk(join(path, entry.name));
      else if (entry.name.endsWith(".parquet")) count++;
    }
  };
  walk(directory);
  return count;
}

async function sinkRowsWritten(): Promise<number> {
  if (!metricsUrl) return Number.NaN;
  try {
    const text = await (await fetch(`${metricsUrl}/metrics`)).text();
    return Number(/^xtrader_sink_rows_written_total\{[^}]*\} (\S+)$/m.exec(text)?.[1] ?? Number.NaN);
  } catch {
    return Number.NaN;
  }
}

const fmt = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : "n/a");
const mean = (values: readonly number[]) => values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);
function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length === 0 ? Number.NaN : sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}
const samples: Sample[] = [];
const startedAt = performance.now();
let lastTicks = cpuTicks(child.pid);
let lastAt = startedAt;
let died = false;
child.exited.then((code) => {
  if (!stopping) {
    died = true;
    console.log(`soak: xtrader exited early with code ${code}`);
  }
});
let stopping = false;

console.log(
  `soak: ${minutes} min, warm-up ${warmupMinutes} min, ${subscriptions.length} subscriptions on ${BINANCE.length + OKX.length + DERIBIT.length} instruments, ` +
    `${bookRate} book updates/s and ${tradeRate} trades/s per instrument; pid ${child.pid}; data in ${dataDirectory}`,
);
console.log("minute  rss_mean_MiB  rss_max_MiB  hwm_MiB  cpu_%  fds  files  rows_written  sent_book  sent_trades");

const RSS_READING_MS = 5000;

const totalSamples = Math.round((minutes * 60) / sampleSeconds);
for (let n = 1; n <= totalSamples && !died; n++) {
  const due = startedAt + n * sampleSeconds * 1000;
  const readings: number[] = [];
  let nextReading = performance.now() + RSS_READING_MS;
  while (performance.now() < due && !died) {
    await Bun.sleep(Math.max(0, Math.min(1000, due - performance.now(), nextReading - performance.now())));
    if (!died && performance.now() >= nextReading) {
      readings.push(procStatus(child.pid).rssKiB / 1024);
      nextReading += RSS_READING_MS;
    }
  }
  if (died) break;
  const now = performance.now();
  const ticks = cpuTicks(child.pid);
  const { rssKiB, hwmKiB } = procStatus(child.pid);
  readings.push(rssKiB / 1024);
  const sample: Sample = {
    minute: Math.round(((n * sampleSeconds) / 60) * 100) / 100,
    rssMiB: mean(readings),
    rssMaxMiB: Math.max(...readings),
    hwmMiB: hwmKiB / 1024,
    cpuPercent: ((ticks - lastTicks) / CLOCK_TICKS_PER_SECOND / ((now - lastAt) / 1000)) * 100,
    fds: readdirSync(`/proc/${child.pid}/fd`).length,
    files: countParquetFiles(dataDirectory),
    rowsWritten: await sinkRowsWritten(),
  };
  lastTicks = ticks;
  lastAt = now;
  samples.push(sample);
  console.log(
    `${String(sample.minute).padStart(6)}  ${fmt(sample.rssMiB).padStart(12)}  ${fmt(sample.rssMaxMiB).padStart(11)}  ${fmt(sample.hwmMiB).padStart(7)}  ${fmt(sample.cpuPercent).padStart(5)}  ` +
      `${String(sample.fds).padStart(3)}  ${String(sample.files).padStart(5)}  ${String(sample.rowsWritten).padStart(12)}  ` +
      `${String(sent.book).padStart(9)}  ${String(sent.trades).padStart(11)}`,
  );
  trimFakeRecords();
}

// ── stop and verdict ──

stopping = true;
clearInterval(driver);
const totalCpuSeconds = cpuTicksSafe() / CLOCK_TICKS_PER_SECOND;
if (!died) child.kill("SIGTERM");
const exitCode = await Promise.race([child.exited, Bun.sleep(30_000).then(() => "timeout" as const)]);
if (exitCode === "timeout") child.kill("SIGKILL");
await Promise.race([logsDone, Bun.sleep(2000)]);
await Promise.all([binance.stop(), okx.stop(), deribit.stop()]);

function cpuTicksSafe(): number {
  try {
    return cpuTicks(child.pid);
  } catch {
    return Number.NaN;
  }
}

function leftovers(directory: string): string[] {
  const out: string[] = [];
  const walk = (path: string) => {
    for (const entry of readdirSync(path, { withFileTypes: true })) {
      if (entry.isDirectory()) walk(join(path, entry.name));
      else if (entry.name.startsWith(".")) out.push(join(path, entry.name));
    }
  };
  walk(directory);
  return out;
}

const afterWarmup = samples.filter((sample) => sample.minute > warmupMinutes);
const window = Math.max(1, Math.min(10, Math.floor(afterWarmup.length / 2)));
const baseline = median(afterWarmup.slice(0, window).map((s) => s.rssMiB));
const final = median(afterWarmup.slice(-window).map((s) => s.rssMiB));
const growth = afterWarmup.length >= 2 ? (final - baseline) / baseline : Number.NaN;
const elapsedSeconds = (performance.now() - startedAt) / 1000;
const unfinished = existsDirectory(dataDirectory) ? leftovers(dataDirectory) : [];
const bytes = directorySize(dataDirectory);

function existsDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

function directorySize(path: string): number {
  if (!existsDirectory(path)) return 0;
  let total = 0;
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    const full = join(path, entry.name);
    total += entry.isDirectory() ? directorySize(full) : statSync(full).size;
  }
  return total;
}

const summary = {
  minutes: Math.round((elapsedSeconds / 60) * 10) / 10,
  warmupMinutes,
  samples: samples.length,
  rssMiB: { first: samples[0]?.rssMiB, afterWarmup: baseline, final, max: Math.max(...samples.map((s) => s.rssMaxMiB)), comparedPeriods: window },
  growthAfterWarmupPercent: Math.round(growth * 1000) / 10,
  cpuPercentMean: Math.round((totalCpuSeconds / elapsedSeconds) * 1000) / 10,
  fds: { min: Math.min(...samples.map((s) => s.fds)), max: Math.max(...samples.map((s) => s.fds)) },
  parquetFiles: countParquetFiles(dataDirectory),
  parquetMiB: Math.round((bytes / 1024 / 1024) * 10) / 10,
  rowsWritten: samples.at(-1)?.rowsWritten,
  sent,
  exitCode,
  died,
  unfinishedFiles: unfinished.length,
  warningsAndErrors: logLines.length,
};
console.log(`soak: summary ${JSON.stringify(summary)}`);
for (const line of logLines.slice(0, 20)) console.log(`soak: child log: ${line}`);
if (logLines.length > 20) console.log(`soak: ... ${logLines.length - 20} more warning/error line(s)`);

const failures: string[] = [];
if (died) failures.push("xtrader died during the run");
if (exitCode !== 0) failures.push(`xtrader exited with ${exitCode} after SIGTERM`);
if (unfinished.length > 0) failures.push(`${unfinished.length} unfinished file(s) after a clean stop`);
if (!(growth <= 0.05)) failures.push(`RSS grew ${fmt(growth * 100)} % after warm-up (limit 5 %)`);
console.log(failures.length === 0 ? "soak: PASS" : `soak: FAIL: ${failures.join("; ")}`);
if (!args.keep) rmSync(work, { recursive: true, force: true });
process.exit(failures.length === 0 ? 0 : 1);

/**
 * One run of the compiled xtrader binary against the load server:
 * - `throughput`: a fixed count of pre-built frames pushed as fast as xtrader takes them (queue bounds
 *   raised, see UNBOUNDED), after a warm-up burst and a pause (bursts hit a collector that has been
 *   running: its code compiled, books built, files open); once xtrader has read every frame it gets
 *   SIGTERM, and the clock runs from the first measured frame until every row is stored (Parquet: the
 *   process exited, so every file is closed, warm-up rows included; QuestDB: the stand-in server received
 *   the last row). Rows stored are then checked against the rows the frames make (Parquet: the footers of
 *   the files, which must all be readable).
 * - `steady`: frames at a fixed rate, stamped with their send time, for the exchange→disk lag.
 * Both report CPU time per message and peak RSS of the xtrader process.
 */
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { asyncBufferFromFile, parquetMetadataAsync } from "hyparquet";
import type { CeilingResult } from "./ceilings.ts";
import type { CounterProcess } from "./counter-process.ts";
import { LoadServer, WARM_UP_PAUSE_MS } from "./load-server.ts";
import { parseUnit, unitEnvironment } from "../../tests/support/ship-systemd.ts";
import { ParquetJournalWatch } from "./parquet-watch.ts";
import { cpuMicros, epochMs, freePort, histogramQuantile, memory, quantile, sumMetrics } from "./proc.ts";
import { buildWorkload, type WorkloadName } from "./workloads.ts";

export type SinkName = "parquet" | "questdb";

export interface RunOptions {
  /** The xtrader command: the compiled binary, or e.g. [bun, --cpu-prof, src/main.ts] for profiling. */
  readonly command: readonly string[];
  readonly sink: SinkName;
  readonly workload: WorkloadName;
  readonly scale: number;
  readonly counter: CounterProcess;
  /** Extra environment for xtrader (tuning under test). */
  readonly env?: Record<string, string>;
  readonly log?: (line: string) => void;
}

/** The figures a ceiling run gives, plus what xtrader's own runs add. */
export interface ThroughputResult extends CeilingResult {
  readonly peakRssBytes: number;
  /** Rows found in the destination vs rows the frames make (snapshots included). */
  readonly storedRows: number;
  readonly expectedRows: number;
  readonly gapRows: number;
  /** From the first measured frame until xtrader had read the last one (the rest is the stop and close). */
  readonly receiveSeconds: number;
}

export interface SteadyResult {
  readonly messages: number;
  readonly rate: number;
  readonly lagP50Micros: number;
  readonly lagP99Micros: number;
  readonly lagSamples: number;
  /** xtrader's own exchange→receive lag (its histogram), seconds. */
  readonly receiveP50Seconds: number | undefined;
  readonly receiveP99Seconds: number | undefined;
  readonly peakRssBytes: number;
  readonly cpuMicrosPerMessage: number;
  readonly subscriptions: number;
  /** CPU µs per message of each run a median was taken of (bench/run.ts). */
  readonly cpuSamples?: readonly number[];
}

interface Started {
  readonly child: Subprocess<"ignore", "pipe", "pipe">;
  readonly server: LoadServer;
  readonly directory: string;
  readonly metricsUrl: string;
  readonly stderr: Promise<string>;
}

/**
 * What the shipped unit (`Environment=` lines of systemd/xtrader@.service; the container image sets the
 * same) gives xtrader beyond its configuration: the binary is measured as it is deployed.
 */
export const DEPLOYED_ENV: Readonly<Record<string, string>> = unitEnvironment(
  parseUnit(readFileSync(join(import.meta.dir, "../../systemd/xtrader@.service"), "utf8")),
);

async function startXtrader(options: RunOptions, server: LoadServer): Promise<Started> {
  const directory = mkdtempSync(join(tmpdir(), `xtrader-bench-${options.sink}-`));
  const metricsPort = freePort();
  const child = Bun.spawn(
    [...options.command, "--sink", options.sink, "--output-directory", directory, "--metrics-addr", `127.0.0.1:${metricsPort}`],
    {
      cwd: directory,
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        SUBSCRIPTIONS: server.workload.streams.map((stream) => stream.subscription).join(","),
        RUST_LOG: "warn",
        ...DEPLOYED_ENV,
        ...server.env(),
        ...options.counter.env(),
        ...options.env,
      },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    },
  );
  // Drain output so the child never blocks on a full pipe; kept for error reports. BENCH_CHILD_LOG=FILE
  // also appends both streams to FILE (with RUST_LOG=info in the run's env, for timing a run's phases).
  const stdout = new Response(child.stdout).text();
  const stderr = new Response(child.stderr).text();
  const childLog = process.env.BENCH_CHILD_LOG;
  if (childLog) void Promise.all([stdout, stderr]).then((texts) => appendFileSync(childLog, texts.join("")));
  return { child, server, directory, metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`, stderr };
}

async function metrics(url: string): Promise<string> {
  const response = await fetch(url, { signal: AbortSignal.timeout(5000) });
  return response.text();
}

/** Waits until xtrader has received `frames` exchange messages (so stopping it loses nothing in flight). */
async function waitForMessages(started: Started, frames: number, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let received = 0;
  while (performance.now() < deadline) {
    if (started.child.exitCode !== null) throw new Error(`xtrader exited early (${started.child.exitCode}): ${(await started.stderr).slice(-2000)}`);
    try {
      received = sumMetrics(await metrics(started.metricsUrl)).get("xtrader_messages_received_total") ?? 0;
    } catch {
      // metrics endpoint busy or not up yet
    }
    if (received >= frames) return;
    await Bun.sleep(20);
  }
  throw new Error(`xtrader received ${received} of ${frames} messages within ${timeoutMs} ms`);
}

async function stopXtrader(started: Started): Promise<{ exitedAt: number; cpuMicros: number; maxRss: number }> {
  started.child.kill("SIGTERM");
  const code = await started.child.exited;
  const exitedAt = epochMs();
  if (code !== 0) throw new Error(`xtrader exited with ${code}: ${(await started.stderr).slice(-2000)}`);
  const usage = started.child.resourceUsage();
  return { exitedAt, cpuMicros: Number(usage?.cpuTime.total ?? 0), maxRss: Number(usage?.maxRSS ?? 0) };
}

/** Rows per table in every Parquet file under `root` (each footer must parse). */
async function parquetRows(root: string): Promise<Map<string, number>> {
  const rows = new Map<string, number>();
  for (const name of readdirSync(root, { recursive: true }) as string[]) {
    if (!name.endsWith(".parquet")) continue;
    const table = name.split("/")[0]!;
    const metadata = await parquetMetadataAsync(await asyncBufferFromFile(join(root, name)));
    rows.set(table, (rows.get(table) ?? 0) + Number(metadata.num_rows));
  }
  return rows;
}

function peakSampler(pid: number): { stop(): number } {
  let peak = 0;
  const sample = () => {
    try {
      peak = Math.max(peak, memory(pid).peak);
    } catch {
      // exited
    }
  };
  const timer = setInterval(sample, 100);
  return {
    stop() {
      sample();
      clearInterval(timer);
      return peak;
    },
  };
}

/**
 * Frames arrive faster than any sink stores them, so in production the bounded queue would overflow and
 * xtrader would drop (and mark) data. For a capacity figure the bounds are raised so that nothing is
 * dropped: the clock then stops when the slowest stage has stored the last row, so messages/s is the rate
 * that stage sustains. (Peak RSS of these runs reflects the raised bounds; the steady runs give RSS.)
 */
const UNBOUNDED = { XTRADER_QUEUE_CAPACITY: "100000000", PARQUET_MAX_BUFFERED_ROWS: "100000000" };

export async function runThroughput(options: RunOptions & { readonly count: number; readonly warmup: number }): Promise<ThroughputResult> {
  const workload = buildWorkload(options.workload, options.scale);
  const server = new LoadServer(workload);
  const warm = options.warmup > 0 ? server.prebuild(options.warmup) : undefined;
  const prebuilt = server.prebuild(options.count);
  await options.counter.reset();
  const started = await startXtrader({ ...options, env: { ...UNBOUNDED, ...options.env } }, server);
  try {
    await server.whenReady(90_000);
    if (server.unexpected.length > 0) throw new Error(`load server got unexpected requests: ${server.unexpected.slice(0, 3).join("; ")}`);
    const pid = started.child.pid;
    const peak = peakSampler(pid);
    if (warm) {
      await server.burst(warm);
      await waitForMessages(started, server.sentFrames, 120_000);
      if (options.sink === "questdb") await options.counter.waitForRows(server.expectedRows, 120_000);
      await Bun.sleep(WARM_UP_PAUSE_MS);
    }
    const framesBefore = server.sentFrames;
    const cpuBefore = cpuMicros(pid);
    const startedAt = epochMs();
    await server.burst(prebuilt);
    await server.whenDelivered(120_000);
    const deliveredAt = epochMs();
    let endedAt: number;
    let cpuAfter: number;
    let storedRows: number;
    let gapRows = 0;
    if (options.sink === "questdb") {
      // As for Parquet, the burst ends with a graceful stop, which sends what the sink still holds at
      // once; waiting for its flush timer instead added up to QUESTDB_FLUSH_INTERVAL_MS (1 s) to a run of
      // about two seconds, depending on where the timer stood (runs were bimodal). The clock stops when
      // the last row arrives at the stand-in.
      const stopped = await stopXtrader(started);
      endedAt = await options.counter.waitForRows(server.expectedRows, 120_000);
      cpuAfter = stopped.cpuMicros;
      storedRows = (await options.counter.stats()).rows;
    } else {
      const stopped = await stopXtrader(started);
      endedAt = stopped.exitedAt;
      cpuAfter = stopped.cpuMicros;
      const rows = await parquetRows(started.directory);
      gapRows = rows.get("gaps") ?? 0;
      storedRows = [...rows.values()].reduce((sum, value) => sum + value, 0) - gapRows;
    }
    const peakRssBytes = peak.stop();
    const seconds = (endedAt - startedAt) / 1000;
    const messages = server.sentFrames - framesBefore;
    return {
      messages,
      rows: prebuilt.rows,
      seconds,
      messagesPerSecond: messages / seconds,
      rowsPerSecond: prebuilt.rows / seconds,
      cpuMicrosPerMessage: (cpuAfter - cpuBefore) / messages,
      peakRssBytes,
      storedRows,
      expectedRows: server.expectedRows,
      gapRows,
      receiveSeconds: (deliveredAt - startedAt) / 1000,
    };
  } finally {
    if (started.child.exitCode === null) started.child.kill("SIGKILL");
    server.stop();
    rmSync(started.directory, { recursive: true, force: true });
  }
}

export async function runSteady(
  options: RunOptions & { readonly rate: number; readonly seconds: number; readonly warmupSeconds?: number; readonly settleMs?: number },
): Promise<SteadyResult> {
  const workload = buildWorkload(options.workload, options.scale);
  const server = new LoadServer(workload);
  await options.counter.reset();
  const started = await startXtrader(options, server);
  try {
    await server.whenReady(90_000);
    const pid = started.child.pid;
    // A collector spends weeks at this rate: the first seconds (JIT compilation, files being created) are not its steady cost.
    if (options.warmupSeconds) await server.steady(options.rate, options.warmupSeconds);
    const peak = peakSampler(pid);
    const sinceMicros = Math.floor(epochMs() * 1000);
    let watch: ParquetJournalWatch | undefined;
    if (options.sink === "questdb") {
      await options.counter.measureLagSince(sinceMicros);
    } else {
      watch = new ParquetJournalWatch(started.directory, sinceMicros - 1000);
      watch.start();
    }
    const cpuBefore = cpuMicros(pid);
    const framesBefore = server.sentFrames;
    await server.steady(options.rate, options.seconds);
    await waitForMessages(started, server.sentFrames, 30_000);
    const cpuAfter = cpuMicros(pid);
    // Rows reach disk at the sink's next flush (1 s by default for both sinks): wait for that.
    await Bun.sleep(options.settleMs ?? 1500);
    const text = await metrics(started.metricsUrl);
    let lags: number[];
    if (watch) {
      watch.stop();
      lags = watch.lags;
    } else {
      const stats = await options.counter.stats();
      lags = [];
      if (stats.lag.samples > 0) {
        return await finish(stats.lag.p50!, stats.lag.p99!, stats.lag.samples);
      }
    }
    lags.sort((a, b) => a - b);
    return await finish(quantile(lags, 0.5), quantile(lags, 0.99), lags.length);

    async function finish(p50: number, p99: number, samples: number): Promise<SteadyResult> {
      await stopXtrader(started);
      const messages = server.sentFrames - framesBefore;
      return {
        messages,
        rate: options.rate,
        lagP50Micros: p50,
        lagP99Micros: p99,
        lagSamples: samples,
        receiveP50Seconds: histogramQuantile(text, "xtrader_exchange_lag_seconds", 0.5),
        receiveP99Seconds: histogramQuantile(text, "xtrader_exchange_lag_seconds", 0.99),
        peakRssBytes: peak.stop(),
        cpuMicrosPerMessage: (cpuAfter - cpuBefore) / messages,
        subscriptions: workload.streams.length,
      };
    }
  } finally {
    if (started.child.exitCode === null) started.child.kill("SIGKILL");
    server.stop();
    rmSync(started.directory, { recursive: true, force: true });
  }
}

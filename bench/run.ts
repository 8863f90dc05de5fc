/**
 * xtrader's benchmark (`npm run bench`): builds the binary, then measures it against the bare ceilings and
 * a peer, and prints the tables that docs/performance.md records.
 *
 *   bun bench/run.ts [--runs 3] [--count 150000] [--warmup 30000] [--rate 2000] [--seconds 20] [--steady-warmup 10]
 *                    [--binary PATH] [--json FILE]
 *                    [--only parse,ilp,throughput,steady,memory] [--smoke]
 *
 * Sections (each reports medians of --runs runs; the machine is shared and noisy, so ratios of runs taken
 * back to back matter more than absolute figures):
 * - parse:      parse + normalize, xtrader's connectors vs tardis-node's mappers (bench/parse-normalize.ts)
 * - ilp:        ILP line encoding, official client vs xtrader's encoder vs a hand-built one (bench/ilp-encode.ts)
 * - throughput: a fixed count of frames as fast as they are taken: ceiling (a) receive + JSON.parse,
 *               ceiling (b) + hand-built ILP writer, and the compiled binary to Parquet (ZSTD; the clock
 *               stops when the process has exited and every file is closed) and to QuestDB (a counting
 *               stand-in); each on the `depth` and `mixed` workloads (bench/lib/workloads.ts). Every
 *               process (ceilings too) first takes --warmup frames and pauses, as a running collector
 *               meets a burst; --warmup 0 measures a cold start instead
 * - steady:     2,000 messages/s over 280 subscriptions (`mixed`) and over 1,000 (`wide`), after
 *               --steady-warmup seconds at that rate (JIT compilation settles, files are open): exchange→disk
 *               lag p50/p99, CPU, peak RSS, per sink; each run of every figure alternates with the others
 * - memory:     peak RSS with 50 subscriptions at the same rate, per sink
 * `--smoke` runs every section once with tiny counts (the test suite uses it: the scripts must start).
 * Exits 1 when a run fails or loses rows; missed targets are reported, not fatal.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { runCeiling, type CeilingResult } from "./lib/ceilings.ts";
import { CounterProcess } from "./lib/counter-process.ts";
import { DEPLOYED_ENV, runSteady, runThroughput, type SinkName, type SteadyResult, type ThroughputResult } from "./lib/e2e.ts";
import { median } from "./lib/proc.ts";
import type { WorkloadName } from "./lib/workloads.ts";
import type { IlpEncodeResult } from "./ilp-encode.ts";
import type { ParseNormalizeResult } from "./parse-normalize.ts";

const ROOT = join(import.meta.dir, "..");
const SECTIONS = ["parse", "ilp", "throughput", "steady", "memory"] as const;
type Section = (typeof SECTIONS)[number];

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "3" },
    count: { type: "string", default: "150000" },
    warmup: { type: "string", default: "30000" },
    rate: { type: "string", default: "2000" },
    seconds: { type: "string", default: "20" },
    "steady-warmup": { type: "string", default: "10" },
    binary: { type: "string" },
    json: { type: "string" },
    only: { type: "string" },
    smoke: { type: "boolean", default: false },
  },
});
const smoke = values.smoke!;
const runs = smoke ? 1 : Number(values.runs);
const count = smoke ? 1500 : Number(values.count);
const warmup = smoke ? 300 : Number(values.warmup);
const rate = smoke ? 400 : Number(values.rate);
const seconds = smoke ? 1 : Number(values.seconds);
const steadyWarmup = smoke ? 0 : Number(values["steady-warmup"]);
const scale = smoke ? 0.05 : 1;
const sections = new Set<Section>((values.only?.split(",") ?? SECTIONS) as Section[]);
for (const section of sections) if (!SECTIONS.includes(section)) throw new Error(`unknown section '${section}'; known: ${SECTIONS.join(", ")}`);
const workloads: WorkloadName[] = smoke ? ["mixed"] : ["depth", "mixed"];

const progress = (line: string) => process.stderr.write(`bench: ${line}\n`);
const failures: string[] = [];

/** Runs a bench script in its own process and returns its one JSON line. */
async function script<T>(name: string, args: string[]): Promise<T> {
  const child = Bun.spawn([process.execPath, join(import.meta.dir, name), ...args], { stdout: "pipe", stderr: "inherit", cwd: ROOT });
  const [text, code] = await Promise.all([new Response(child.stdout).text(), child.exited]);
  if (code !== 0) throw new Error(`${name} exited with ${code}`);
  return JSON.parse(text.trim().split("\n").at(-1)!) as T;
}

function buildBinary(): { binary: string; cleanup: () => void } {
  if (values.binary) return { binary: resolve(values.binary), cleanup: () => {} };
  const outdir = mkdtempSync(join(tmpdir(), "xtrader-bench-build-"));
  progress(`building the binary into ${outdir}`);
  const built = Bun.spawnSync([process.execPath, "build.ts", "--quiet", "--outdir", outdir], { cwd: ROOT, stdout: "inherit", stderr: "inherit" });
  if (!built.success) throw new Error("building the binary failed");
  return { binary: join(outdir, "xtrader"), cleanup: () => rmSync(outdir, { recursive: true, force: true }) };
}

const fmt = {
  int: (value: number) => (Number.isFinite(value) ? Math.round(value).toLocaleString("en-US") : "–"),
  k: (value: number) => (Number.isFinite(value) ? `${(value / 1000).toFixed(1)} k` : "–"),
  m: (value: number) => (Number.isFinite(value) ? `${(value / 1e6).toFixed(2)} M` : "–"),
  x: (value: number) => (Number.isFinite(value) ? `${value.toFixed(2)}×` : "–"),
  pct: (value: number) => (Number.isFinite(value) ? `${Math.round(value * 100)} %` : "–"),
  ms: (micros: number) => (Number.isFinite(micros) ? `${(micros / 1000).toFixed(1)} ms` : "–"),
  mib: (bytes: number) => (Number.isFinite(bytes) && bytes > 0 ? `${Math.round(bytes / 2 ** 20)} MiB` : "–"),
  us: (value: number) => (Number.isFinite(value) ? value.toFixed(1) : "–"),
  s: (seconds: number) => (Number.isFinite(seconds) ? `${seconds.toFixed(2)} s` : "–"),
};

function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}

interface Target {
  readonly name: string;
  readonly required: string;
  readonly measured: string;
  readonly met: boolean;
}

const report: Record<string, unknown> = { date: new Date().toISOString(), runs, count, warmup, rate, seconds, smoke };
const targets: Target[] = [];
const output: string[] = [];
const print = (text: string) => {
  output.push(text);
  console.log(text);
};

const { binary, cleanup } = buildBinary();
const counter = await CounterProcess.start();
try {
  print(`# xtrader benchmark — ${new Date().toISOString().slice(0, 10)}`);
  print(`\`${["bun bench/run.ts", ...process.argv.slice(2)].join(" ")}\`: ${runs} run(s) per figure (medians); ${navigatorLine()}\n`);

  if (sections.has("parse")) {
    const results: ParseNormalizeResult[] = [];
    for (const workload of workloads) {
      progress(`parse + normalize (${workload})`);
      try {
        results.push(await script<ParseNormalizeResult>("parse-normalize.ts", ["--workload", workload, "--count", String(smoke ? 2000 : 100_000), "--rounds", String(smoke ? 1 : Math.max(5, runs * 2 + 1)), "--scale", String(scale)]));
      } catch (error) {
        failures.push(`parse ${workload}: ${(error as Error).message}`);
      }
    }
    report.parse = results;
    print("## Parse + normalize (in process, same frames)\n");
    print(table(
      ["workload", "xtrader msgs/s", "tardis-node msgs/s", "ratio"],
      results.map((r) => [r.workload, fmt.int(r.xtraderMessagesPerSecond), fmt.int(r.peerMessagesPerSecond), fmt.x(r.ratio)]),
    ));
    for (const r of results) {
      targets.push({ name: `parse + normalize vs tardis-node (${r.workload})`, required: "≥ 1.70×", measured: fmt.x(r.ratio), met: r.ratio >= 1.7 });
    }
    print("");
  }

  if (sections.has("ilp")) {
    progress("ILP line encoding");
    try {
      const r = await script<IlpEncodeResult>("ilp-encode.ts", ["--ilp", `127.0.0.1:${counter.ilpPort}`, "--events", String(smoke ? 500 : 20_000), "--rounds", String(smoke ? 1 : Math.max(5, runs * 2 + 1))]);
      report.ilp = r;
      print(`## ILP line encoding (${fmt.int(r.rows)} rows of depth changes and trades, written to one TCP socket)\n`);
      print(table(
        ["encoder", "rows/s", "rows/s per core", "bytes"],
        [
          ["official client (SenderBuffer)", fmt.m(r.official.rowsPerSecond), fmt.m(r.official.rowsPerCpuSecond), fmt.int(r.official.bytes)],
          ["xtrader (src/sinks/questdb/encoder.ts)", fmt.m(r.xtrader.rowsPerSecond), fmt.m(r.xtrader.rowsPerCpuSecond), fmt.int(r.xtrader.bytes)],
          ["hand-built minimal writer", fmt.m(r.handBuilt.rowsPerSecond), fmt.m(r.handBuilt.rowsPerCpuSecond), fmt.int(r.handBuilt.bytes)],
        ],
      ));
      targets.push({ name: "ILP line encoding, rows/s per core", required: "≥ 1.00 M", measured: fmt.m(r.xtrader.rowsPerCpuSecond), met: r.xtrader.rowsPerCpuSecond >= 1e6 });
      if (r.xtrader.bytes !== r.official.bytes) failures.push(`ILP: xtrader wrote ${r.xtrader.bytes} bytes, the official client ${r.official.bytes}`);
      print("");
    } catch (error) {
      failures.push(`ilp: ${(error as Error).message}`);
    }
  }

  if (sections.has("throughput")) {
    const all: Record<string, unknown> = {};
    for (const workload of workloads) {
      const samples = { a: [] as CeilingResult[], b: [] as CeilingResult[], parquet: [] as ThroughputResult[], questdb: [] as ThroughputResult[] };
      const ratios = { b: [] as number[], parquet: [] as number[], questdb: [] as number[] };
      for (let run = 1; run <= runs; run++) {
        let a: CeilingResult | undefined;
        try {
          progress(`throughput ${workload} run ${run}/${runs}: ceiling (a)`);
          a = await runCeiling({ workload, scale, count, warmup, withIlp: false, counter });
          samples.a.push(a);
          progress(`throughput ${workload} run ${run}/${runs}: ceiling (b)`);
          const b = await runCeiling({ workload, scale, count, warmup, withIlp: true, counter });
          samples.b.push(b);
          ratios.b.push(b.messagesPerSecond / a.messagesPerSecond);
        } catch (error) {
          failures.push(`ceiling ${workload}: ${(error as Error).message}`);
        }
        for (const sink of ["parquet", "questdb"] as SinkName[]) {
          progress(`throughput ${workload} run ${run}/${runs}: xtrader → ${sink}`);
          try {
            const r = await runThroughput({ command: [binary], sink, workload, scale, count, warmup, counter, log: progress });
            samples[sink].push(r);
            if (r.storedRows !== r.expectedRows || r.gapRows > 0) {
              failures.push(`${sink} ${workload}: stored ${r.storedRows} of ${r.expectedRows} rows, ${r.gapRows} gap row(s) (the sink fell behind and data was dropped)`);
            }
            if (a) ratios[sink].push(r.messagesPerSecond / a.messagesPerSecond);
          } catch (error) {
            failures.push(`${sink} ${workload}: ${(error as Error).message}`);
          }
        }
      }
      all[workload] = { samples, ratios };
      const row = (name: string, list: Array<CeilingResult | ThroughputResult>, ratio: number[] | undefined) => [
        name,
        fmt.int(median(list.map((r) => r.messagesPerSecond))),
        fmt.m(median(list.map((r) => r.rowsPerSecond))),
        fmt.us(median(list.map((r) => r.cpuMicrosPerMessage))),
        fmt.mib(median(list.map((r) => ("peakRssBytes" in r ? r.peakRssBytes : Number.NaN)))),
        // Where an xtrader run's time went: reading the frames, then the stop (files closed, rows sent).
        list.length > 0 && "receiveSeconds" in list[0]!
          ? `${fmt.s(median(list.map((r) => (r as ThroughputResult).receiveSeconds)))} + ${fmt.s(Math.max(0, median(list.map((r) => r.seconds - (r as ThroughputResult).receiveSeconds))))}`
          : "–",
        ratio ? fmt.pct(median(ratio)) : "100 %",
      ];
      print(`## Throughput, \`${workload}\` workload (${fmt.int(count)} frames, as fast as they are taken, after ${fmt.int(warmup)} warm-up frames)\n`);
      print(table(
        ["", "msgs/s", "rows/s", "CPU µs/msg", "peak RSS", "receive + stop", "of ceiling (a)"],
        [
          row("ceiling (a): receive + JSON.parse", samples.a, undefined),
          row("ceiling (b): + hand-built ILP writer", samples.b, ratios.b),
          row("xtrader → Parquet (ZSTD, files closed)", samples.parquet, ratios.parquet),
          row("xtrader → QuestDB (ILP/TCP)", samples.questdb, ratios.questdb),
        ],
      ));
      print("");
      targets.push({ name: `end to end to Parquet, ${workload}`, required: "≥ 60 % of (a)", measured: fmt.pct(median(ratios.parquet)), met: median(ratios.parquet) >= 0.6 });
      if (workload === "depth" || smoke) {
        targets.push({ name: `end to end to QuestDB, ${workload}`, required: "≥ 60 % of (a)", measured: fmt.pct(median(ratios.questdb)), met: median(ratios.questdb) >= 0.6 });
      }
    }
    report.throughput = all;
  }

  if (sections.has("steady") || sections.has("memory")) {
    const steady: Array<{ sink: SinkName; workload: WorkloadName; result: SteadyResult }> = [];
    const plan: Array<[WorkloadName, number]> = [];
    if (sections.has("steady")) plan.push(["mixed", seconds]);
    if (sections.has("steady") && !smoke) plan.push(["wide", seconds]);
    if (sections.has("memory") && !smoke) plan.push(["memory", smoke ? seconds : Math.max(5, Math.round(seconds / 2))]);
    // CPU per message at this rate is the noisiest figure: --runs runs of each, taken in turns, and medians.
    const steadyRuns = sections.has("steady") ? runs : 1;
    const samples = new Map<string, { sink: SinkName; workload: WorkloadName; results: SteadyResult[] }>();
    for (let run = 1; run <= steadyRuns; run++) {
      for (const [workload, duration] of plan) {
        if (workload === "memory" && run > 1) continue;
        for (const sink of ["parquet", "questdb"] as SinkName[]) {
          progress(`steady ${rate}/s for ${duration} s (after ${steadyWarmup} s), ${workload}, xtrader → ${sink}, run ${run}/${steadyRuns}`);
          try {
            const result = await runSteady({ command: [binary], sink, workload, scale, counter, rate, seconds: duration, warmupSeconds: workload === "memory" ? 0 : steadyWarmup, settleMs: smoke ? 1100 : 1500 });
            const key = `${workload}/${sink}`;
            const entry = samples.get(key) ?? { sink, workload, results: [] };
            entry.results.push(result);
            samples.set(key, entry);
          } catch (error) {
            failures.push(`steady ${workload} ${sink}: ${(error as Error).message}`);
          }
        }
      }
    }
    for (const { sink, workload, results } of samples.values()) steady.push({ sink, workload, result: medianSteady(results) });
    report.steady = steady;
    print(`## Steady load: ${fmt.int(rate)} messages/s\n`);
    print(table(
      ["sink", "workload", "subscriptions", "exchange→disk p50", "p99", "exchange→receive p50 / p99", "CPU µs/msg", "peak RSS"],
      steady.map(({ sink, workload, result: r }) => [
        sink,
        workload,
        String(r.subscriptions),
        fmt.ms(r.lagP50Micros),
        fmt.ms(r.lagP99Micros),
        `≤ ${fmt.ms((r.receiveP50Seconds ?? Number.NaN) * 1e6)} / ≤ ${fmt.ms((r.receiveP99Seconds ?? Number.NaN) * 1e6)}`,
        r.cpuSamples && r.cpuSamples.length > 1 ? `${fmt.us(r.cpuMicrosPerMessage)} (${r.cpuSamples.map((value) => value.toFixed(1)).join(", ")})` : fmt.us(r.cpuMicrosPerMessage),
        fmt.mib(r.peakRssBytes),
      ]),
    ));
    print("");
    for (const { sink, workload, result } of steady) {
      if (workload === "memory") targets.push({ name: `RSS with ${result.subscriptions} subscriptions, ${sink}`, required: "< 150 MiB", measured: fmt.mib(result.peakRssBytes), met: result.peakRssBytes < 150 * 2 ** 20 });
    }
  }

  if (targets.length > 0) {
    print("## Targets\n");
    print(table(["target", "required", "measured", "met"], targets.map((t) => [t.name, t.required, t.measured, t.met ? "yes" : "**no**"])));
    print("");
  }
  report.targets = targets;
  report.failures = failures;
  if (failures.length > 0) {
    print("## Failures\n");
    for (const failure of failures) print(`- ${failure}`);
  }
  if (values.json) writeFileSync(values.json, JSON.stringify(report, null, 2));
} finally {
  counter.stop();
  cleanup();
}
process.exit(failures.length > 0 ? 1 : 0);

/** Field-wise medians of steady runs (each figure its own median; subscriptions and rate are equal). */
function medianSteady(results: readonly SteadyResult[]): SteadyResult {
  const of = (pick: (result: SteadyResult) => number | undefined) => median(results.map(pick).filter((value): value is number => value !== undefined));
  return {
    ...results[0]!,
    lagP50Micros: of((r) => r.lagP50Micros),
    lagP99Micros: of((r) => r.lagP99Micros),
    receiveP50Seconds: of((r) => r.receiveP50Seconds),
    receiveP99Seconds: of((r) => r.receiveP99Seconds),
    peakRssBytes: of((r) => r.peakRssBytes),
    cpuMicrosPerMessage: of((r) => r.cpuMicrosPerMessage),
    cpuSamples: results.map((r) => r.cpuMicrosPerMessage),
  };
}

function navigatorLine(): string {
  const cpus = navigator.hardwareConcurrency;
  const deployed = Object.entries(DEPLOYED_ENV).map(([key, value]) => `${key}=${value}`).join(" ");
  return `${cpus} CPU(s), Bun ${Bun.version}, ${process.platform}-${process.arch}; xtrader with the unit's environment (${deployed || "none"}).`;
}

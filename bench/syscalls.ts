/**
 * System calls per message of one xtrader process, counted by `strace -c -f` over the measured part of a
 * steady load or a burst (docs/performance.md: where steady CPU and burst time go on a machine whose system
 * calls are expensive). strace slows the process down a lot: its counts are the figure, not its timings.
 *
 *   bun bench/syscalls.ts --binary PATH [--sink parquet|questdb] [--workload mixed] [--mode steady|burst]
 *                         [--rate 2000] [--seconds 10] [--count 150000] [--warmup-seconds 10]
 *
 * Prints one JSON line: messages, CPU µs per message without strace (a run before the traced one), and
 * per system call the count per 1,000 messages. A burst is measured from its first frame until 1.5 s after
 * the load server delivered its last (a flush tick), so the stop and the files' close are not in it.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { CounterProcess } from "./lib/counter-process.ts";
import { DEPLOYED_ENV } from "./lib/e2e.ts";
import { LoadServer } from "./lib/load-server.ts";
import { cpuMicros, freePort } from "./lib/proc.ts";
import { buildWorkload, WORKLOAD_NAMES, type WorkloadName } from "./lib/workloads.ts";

const { values } = parseArgs({
  options: {
    binary: { type: "string" },
    sink: { type: "string", default: "parquet" },
    workload: { type: "string", default: "mixed" },
    mode: { type: "string", default: "steady" },
    rate: { type: "string", default: "2000" },
    seconds: { type: "string", default: "10" },
    count: { type: "string", default: "150000" },
    "warmup-seconds": { type: "string", default: "10" },
  },
});
if (!values.binary || !["parquet", "questdb"].includes(values.sink!) || !["steady", "burst"].includes(values.mode!) || !WORKLOAD_NAMES.includes(values.workload as WorkloadName)) {
  console.error(`bench/syscalls: --binary PATH is required; --sink parquet|questdb, --mode steady|burst, --workload ${WORKLOAD_NAMES.join("|")}`);
  process.exit(2);
}

const counter = await CounterProcess.start();
const workload = buildWorkload(values.workload as WorkloadName);
const server = new LoadServer(workload);
// Bursts are built before xtrader starts, each continuing the one before (load-server.ts prebuild()).
const bursts = values.mode === "burst" ? [server.prebuild(30_000), server.prebuild(Number(values.count)), server.prebuild(Number(values.count))] : [];
const directory = mkdtempSync(join(tmpdir(), "xtrader-syscalls-"));
const child = Bun.spawn([values.binary, "--sink", values.sink!, "--output-directory", directory, "--metrics-addr", `127.0.0.1:${freePort()}`], {
  cwd: directory,
  env: {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    SUBSCRIPTIONS: workload.subscriptions,
    RUST_LOG: "warn",
    ...DEPLOYED_ENV,
    ...server.env(),
    ...counter.env(),
    // A burst is taken whole, as in the throughput runs (bench/lib/e2e.ts): no queue overflow.
    ...(values.mode === "burst" ? { XTRADER_QUEUE_CAPACITY: "100000000", PARQUET_MAX_BUFFERED_ROWS: "100000000" } : {}),
  },
  stdin: "ignore",
  stdout: "inherit",
  stderr: "inherit",
});
try {
  await server.whenReady(90_000);
  const rate = Number(values.rate);
  const measure = async (): Promise<number> => {
    const before = server.sentFrames;
    if (values.mode === "steady") {
      await server.steady(rate, Number(values.seconds));
    } else {
      await server.burst(bursts.shift()!);
      await server.whenDelivered(120_000);
      // The flush tick after the burst: its rows reach the disk.
      await Bun.sleep(1500);
    }
    return server.sentFrames - before;
  };
  if (values.mode === "steady") {
    await server.steady(rate, Number(values["warmup-seconds"]));
  } else {
    // As a running collector meets a burst: compiled, books built, files open (bench/lib/e2e.ts).
    await server.burst(bursts.shift()!);
    await server.whenDelivered(120_000);
    await Bun.sleep(1500);
  }
  // Untraced first, for the CPU figure; then the same again under strace.
  const cpuBefore = cpuMicros(child.pid);
  const untraced = await measure();
  const cpuPerMessage = (cpuMicros(child.pid) - cpuBefore) / untraced;
  const output = join(directory, "strace.txt");
  const strace = Bun.spawn(["strace", "-c", "-f", "-p", String(child.pid), "-o", output], { stderr: "ignore" });
  await Bun.sleep(500);
  const messages = await measure();
  strace.kill("SIGINT");
  await strace.exited;
  const perThousand: Record<string, number> = {};
  for (const line of readFileSync(output, "utf8").split("\n")) {
    const fields = line.trim().split(/\s+/);
    // "% time  seconds  usecs/call  calls  [errors]  syscall"
    if (fields.length < 5 || !/^\d/.test(fields[0]!) || fields.at(-1) === "total") continue;
    perThousand[fields.at(-1)!] = Math.round((Number(fields[3]) / messages) * 1000 * 10) / 10;
  }
  console.log(JSON.stringify({ sink: values.sink, workload: values.workload, mode: values.mode, messages, cpuMicrosPerMessage: Math.round(cpuPerMessage * 10) / 10, syscallsPer1000Messages: perThousand }));
} finally {
  child.kill("SIGTERM");
  await child.exited;
  server.stop();
  counter.stop();
  rmSync(directory, { recursive: true, force: true });
}

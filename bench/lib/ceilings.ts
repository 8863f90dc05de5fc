/**
 * Runs bench/ceiling-client.ts against the load server with the same pre-built frames an xtrader run gets:
 * (a) receive + JSON.parse only, (b) the same plus a minimal hand-built ILP writer to the QuestDB stand-in.
 * Like an xtrader run, it is warmed up first with `warmup` frames and a pause (WARM_UP_PAUSE_MS).
 */
import { join } from "node:path";
import type { CounterProcess } from "./counter-process.ts";
import { LoadServer, WARM_UP_PAUSE_MS } from "./load-server.ts";
import { epochMs } from "./proc.ts";
import { buildWorkload, type WorkloadName } from "./workloads.ts";

export interface CeilingResult {
  readonly messages: number;
  readonly rows: number;
  readonly seconds: number;
  readonly messagesPerSecond: number;
  readonly rowsPerSecond: number;
  readonly cpuMicrosPerMessage: number;
}

async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const chunk of stream) {
    buffered += decoder.decode(chunk, { stream: true });
    let newline = buffered.indexOf("\n");
    while (newline !== -1) {
      yield buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      newline = buffered.indexOf("\n");
    }
  }
}

export async function runCeiling(options: {
  readonly workload: WorkloadName;
  readonly scale: number;
  readonly count: number;
  /** Frames sent and handled before the measured ones (0: measure a cold process). */
  readonly warmup: number;
  readonly withIlp: boolean;
  readonly counter: CounterProcess;
}): Promise<CeilingResult> {
  const server = new LoadServer(buildWorkload(options.workload, options.scale));
  const warm = options.warmup > 0 ? server.prebuild(options.warmup) : undefined;
  const prebuilt = server.prebuild(options.count);
  await options.counter.reset();
  const args = ["--urls", server.rawUrls().join(","), "--expect", String(options.count), "--warm", String(options.warmup)];
  if (options.withIlp) args.push("--ilp", `127.0.0.1:${options.counter.ilpPort}`);
  const child = Bun.spawn([process.execPath, join(import.meta.dir, "..", "ceiling-client.ts"), ...args], {
    stdout: "pipe",
    stderr: "inherit",
  });
  try {
    const output = lines(child.stdout);
    const next = async (type: string) => {
      for (;;) {
        const { value, done } = await output.next();
        if (done) throw new Error(`ceiling client exited (${await child.exited}) before '${type}'`);
        const message = JSON.parse(value) as { type: string; [key: string]: number | string };
        if (message.type === type) return message;
      }
    };
    await next("open");
    await server.whenReady(30_000);
    if (warm) {
      await server.burst(warm);
      await next("warm");
      if (options.withIlp) await options.counter.waitForRows(warm.rows, 60_000);
      await Bun.sleep(WARM_UP_PAUSE_MS);
    }
    const startedAt = epochMs();
    await server.burst(prebuilt);
    const done = await next("done");
    const endedAt = options.withIlp ? await options.counter.waitForRows((warm?.rows ?? 0) + prebuilt.rows, 60_000) : (done.lastAt as number);
    const seconds = (endedAt - startedAt) / 1000;
    return {
      messages: options.count,
      rows: prebuilt.rows,
      seconds,
      messagesPerSecond: options.count / seconds,
      rowsPerSecond: prebuilt.rows / seconds,
      cpuMicrosPerMessage: (done.cpuMicros as number) / options.count,
    };
  } finally {
    child.kill();
    server.stop();
  }
}
